import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { turnRestCredential } from '../../src/ice/ice-servers';
import { defaultConfig, ManualClock, req } from '../helpers';

describe('GET /iceServers', () => {
  test("defaults to the seed's STUN server", async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/iceServers');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ urls: ['stun:stun.cloudflare.com:3478'] });
  });

  test('static URLs with fixed TURN credentials', async () => {
    const { app } = createApp(defaultConfig({ iceUrls: ['stun:s:3478', 'turn:t:3478'], turnUsername: 'user', turnCredential: 'pass' }));
    expect((await req(app, 'GET', '/iceServers')).body).toEqual({ urls: ['stun:s:3478', 'turn:t:3478'], username: 'user', credential: 'pass' });
  });

  test('ephemeral TURN credentials expire TURN_TTL_S after the request and name the peer', async () => {
    const clock = new ManualClock(1_700_000_000_500);
    const { app } = createApp(defaultConfig({ iceUrls: ['turn:t:3478'], turnSecret: 'north', turnTtlS: 600 }), { clock });
    const res = await req(app, 'GET', '/iceServers?peerId=dashcam-7');
    expect(res.body.username).toBe('1700000600:dashcam-7');
    expect(res.body.credential).toBe(turnRestCredential('north', 'dashcam-7', 1_700_000_600).credential);
    expect(res.body.ttl).toBe(600);
    expect(res.body.urls).toEqual(['turn:t:3478']);
    expect((await req(app, 'GET', '/iceServers')).body.username).toBe('1700000600:anonymous');
  });

  test('a peer id that could not be a peer id is refused', async () => {
    const res = await req(createApp(defaultConfig()).app, 'GET', '/iceServers?peerId=a%0Ab');
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(res.body.message).toContain('peerId');
  });
});

test('TURN REST credential matches a vector computed with openssl', () => {
  // printf '%s' '1433895918:mike' | openssl dgst -sha1 -hmac north -binary | base64
  expect(turnRestCredential('north', 'mike', 1433895918)).toEqual({ username: '1433895918:mike', credential: 'bS4R7BAXXGqQNp6AfBgru5X6ngM=' });
});

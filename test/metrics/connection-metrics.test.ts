// The phases of WebRTC connections the server sees, and the relay's counts, in /metrics.
import { describe, expect, test } from 'bun:test';
import { createApp } from '../../src/app';
import { Exposition } from '../../src/metrics/exposition';
import { ConnectionMetrics } from '../../src/metrics/relay-metrics';
import { defaultConfig, req } from '../helpers';
import { parseExposition } from './scrape';

const exposed = (metrics: ConnectionMetrics) => {
  const out = new Exposition();
  metrics.collect(out);
  return parseExposition(out.toString());
};

describe('offer → answer in mesh sessions', () => {
  test('an answer closes the offer the other way, once; an answer without an offer counts nothing', () => {
    let now = 1000;
    const metrics = new ConnectionMetrics(() => now);
    metrics.meshSignal('s', 'a', 'b', 'offer');
    now += 120;
    metrics.meshSignal('s', 'c', 'a', 'answer'); // not to the one that offered
    metrics.meshSignal('s', 'a', 'b', 'answer'); // the offerer's own direction
    metrics.meshSignal('s', 'b', 'a', 'answer');
    metrics.meshSignal('s', 'b', 'a', 'answer'); // again: the offer is closed
    const m = exposed(metrics);
    const mesh = m.histogram('switchboard_offer_answer_seconds', { mode: 'mesh' });
    expect(mesh.count).toBe(1);
    expect(mesh.sum).toBeCloseTo(0.12, 6);
    expect(mesh.buckets.get(0.1)).toBe(0);
    expect(mesh.buckets.get(0.25)).toBe(1);
    expect(m.histogram('switchboard_offer_answer_seconds', { mode: 'relay' }).count).toBe(0);
  });

  test('offers never answered are forgotten oldest first: what the server holds for them is bounded', () => {
    const metrics = new ConnectionMetrics(() => 0);
    for (let i = 0; i < 10_000; i++) metrics.meshSignal('s', `p${i}`, 'v', 'offer');
    metrics.meshSignal('s', 'v', 'p0', 'answer');
    metrics.meshSignal('s', 'v', 'p9999', 'answer');
    expect(exposed(metrics).histogram('switchboard_offer_answer_seconds', { mode: 'mesh' }).count).toBe(1);
  });

  test('relay phases are observed as the relay reports them', () => {
    const metrics = new ConnectionMetrics(() => 0);
    metrics.answered(40);
    metrics.iceConnected(8);
    metrics.firstVideoPacket(60);
    metrics.firstVideoPacket(3000);
    const m = exposed(metrics);
    expect(m.histogram('switchboard_offer_answer_seconds', { mode: 'relay' }).count).toBe(1);
    expect(m.histogram('switchboard_answer_ice_connected_seconds', { mode: 'relay' }).sum).toBeCloseTo(0.008, 6);
    const first = m.histogram('switchboard_relay_first_video_packet_seconds');
    expect(first.count).toBe(2);
    expect(first.buckets.get(0.1)).toBe(1);
  });
});

describe('GET /metrics', () => {
  test('mesh offers and answers between peers are timed; the relay counts are there when relay sessions are allowed', async () => {
    let now = 0;
    const app = createApp(defaultConfig({ relayMode: 'off' }), { monotonic: () => now });
    for (const peer of ['a', 'b']) expect((await req(app.app, 'POST', `/register/s/${peer}`)).status).toBe(200);
    await req(app.app, 'POST', '/message/s/a', { target: 'b', type: 'offer', payload: { type: 'offer', sdp: 'v=0' } });
    now += 300;
    await req(app.app, 'POST', '/message/s/b', { target: 'a', type: 'answer', payload: { type: 'answer', sdp: 'v=0' } });
    const metrics = await app.app.handle(new Request('http://localhost/metrics'));
    const m = parseExposition(await metrics.text());
    const mesh = m.histogram('switchboard_offer_answer_seconds', { mode: 'mesh' });
    expect(mesh.count).toBe(1);
    expect(mesh.sum).toBeCloseTo(0.3, 6);
    expect(m.families.some((f) => f.name === 'switchboard_relay_sessions')).toBe(false);
    app.signalling.shutdown();

    const relay = createApp(defaultConfig({ relayMode: 'open' }));
    const r = parseExposition(await (await relay.app.handle(new Request('http://localhost/metrics'))).text());
    for (const name of [
      'switchboard_relay_sessions',
      'switchboard_relay_viewers',
      'switchboard_relay_packets_in_total',
      'switchboard_relay_packets_out_total',
      'switchboard_relay_retransmitted_total',
      'switchboard_relay_dropped_total',
      'switchboard_relay_keyframe_cache_bytes',
    ]) {
      expect(r.value(name)).toBe(0);
    }
    expect(r.histogram('switchboard_relay_first_video_packet_seconds').count).toBe(0);
    // Scraping does not load the relay engine.
    expect(relay.relay?.loaded).toBe(false);
    relay.signalling.shutdown();
  });
});

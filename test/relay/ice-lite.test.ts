// The relay's ICE as a browser meets it: the offer says "ICE lite" where browsers read it (the session
// level), and the server takes the first pair the browser proves with an authenticated check, without
// waiting for the nominating check that a browser sends only a check interval later. The peer here is a
// UDP socket speaking STUN by hand, so that each check is exactly the one a browser sends.
import { afterEach, describe, expect, test } from 'bun:test';
import { createSocket, type Socket } from 'node:dgram';
import { Message, parseMessage } from 'werift';
import { defaultConfig } from '../../src/config';
import { iceLiteAtSessionLevel } from '../../src/relay/ice-lite';
import { ServerLink } from '../../src/relay/link';
import { viewerConfig } from '../../src/relay/settings';
import { until } from '../helpers';

const PEER_UFRAG = 'peerufrag';
const PEER_PWD = 'peer-password-of-22-chars';

describe('the ice-lite attribute of the relay offer', () => {
  test('a media-level a=ice-lite becomes one line before the first media section', () => {
    const sdp = 'v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=ice-lite\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=ice-lite\r\na=mid:1\r\n';
    expect(iceLiteAtSessionLevel(sdp)).toBe('v=0\r\ns=-\r\nt=0 0\r\na=ice-lite\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\n');
  });

  test('an offer of a full agent is left as it is', () => {
    const sdp = 'v=0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n';
    expect(iceLiteAtSessionLevel(sdp)).toBe(sdp);
  });
});

describe('a relay connection meeting a browser-like peer', () => {
  const opened: { link: ServerLink; sockets: Socket[] }[] = [];
  afterEach(() => {
    for (const { link, sockets } of opened.splice(0)) {
      link.close();
      for (const socket of sockets) socket.close();
    }
  });

  /** A viewer's connection that has offered, taken the peer's answer, and waits for checks. */
  async function answeredLink() {
    const sent: { type: string; payload: { sdp?: string; candidate?: string } }[] = [];
    const link = new ServerLink('v1', viewerConfig(defaultConfig()), { send: (type, payload) => sent.push({ type, payload: payload as never }), log: () => {} });
    const entry = { link, sockets: [] as Socket[] };
    opened.push(entry);
    link.pc.addTransceiver('video', { direction: 'sendonly' });
    link.offer();
    await until(() => sent.some((m) => m.type === 'ice-candidate'), 'the server candidate', 4000);
    const offer = sent.find((m) => m.type === 'offer')?.payload.sdp ?? '';
    const candidate = sent.find((m) => m.type === 'ice-candidate')?.payload.candidate ?? '';
    const port = candidate.split(' ')[5];
    const ufrag = /^a=ice-ufrag:(\S+)/m.exec(offer)?.[1] ?? '';
    const pwd = /^a=ice-pwd:(\S+)/m.exec(offer)?.[1] ?? '';
    const answer = offer
      .replace(/^a=ice-lite\r\n/gm, '')
      .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${PEER_UFRAG}`)
      .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${PEER_PWD}`)
      .replace(/^a=setup:actpass/gm, 'a=setup:active')
      .replace(/^a=sendonly/gm, 'a=recvonly');
    link.handle({ type: 'answer', sdp: answer });
    await until(() => link.pc.iceConnectionState === 'checking', 'ICE checking', 4000);
    return { link, offer, server: { port: Number(port) }, ufrag, pwd, sockets: entry.sockets };
  }

  /** How long a check waits for an answer before it counts as dropped. */
  const UNANSWERED_MS = 300;

  /**
   * A check from a new socket, as the controlling side (a browser answering a lite offer); resolves with
   * the server's answer, or `ok: undefined` when none came.
   */
  async function check(target: { port: number }, ufrag: string, pwd: string, sockets: Socket[], nominate: boolean): Promise<{ ok: boolean | undefined; from: number }> {
    const socket = createSocket('udp4');
    sockets.push(socket);
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const from = socket.address().port;
    const request = new Message(1, 0);
    request.setAttribute('USERNAME', `${ufrag}:${PEER_UFRAG}`).setAttribute('PRIORITY', 1_845_501_695).setAttribute('ICE-CONTROLLING', 0x1234_5678_9abc_def0n);
    if (nominate) request.setAttribute('USE-CANDIDATE', null);
    request.addMessageIntegrity(Buffer.from(pwd, 'utf8')).addFingerprint();
    const answered = new Promise<{ ok: boolean | undefined; from: number }>((resolve) => {
      const timer = setTimeout(() => resolve({ ok: undefined, from }), UNANSWERED_MS);
      socket.once('message', (data) => {
        clearTimeout(timer);
        resolve({ ok: parseMessage(data)?.messageClass === 256, from });
      });
    });
    // The server's sockets listen on every address of the host: its loopback one is this machine's own.
    socket.send(request.bytes, target.port, '127.0.0.1');
    return answered;
  }

  test('the offer says a=ice-lite once, at the session level, as browsers read it', async () => {
    const { offer } = await answeredLink();
    expect(offer.match(/^a=ice-lite\r$/gm)?.length).toBe(1);
    expect(offer.indexOf('a=ice-lite')).toBeLessThan(offer.indexOf('\nm='));
  });

  test('the first authenticated check of the controlling peer connects, with no USE-CANDIDATE yet', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    expect(await check(server, ufrag, pwd, sockets, false)).toMatchObject({ ok: true });
    await until(() => link.pc.iceConnectionState === 'connected', 'ICE connected on the first check', 2000);
  });

  test('a check with the wrong password, or for another ufrag, is dropped unanswered and connects nothing', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    expect((await check(server, ufrag, 'not-the-password-at-all', sockets, true)).ok).toBeUndefined();
    expect((await check(server, 'zzzz', pwd, sockets, true)).ok).toBeUndefined();
    expect(link.pc.iceConnectionState).toBe('checking');
  });

  test('a later nomination of another pair is followed', async () => {
    const { link, server, ufrag, pwd, sockets } = await answeredLink();
    const first = await check(server, ufrag, pwd, sockets, false);
    await until(() => link.pc.iceConnectionState === 'connected', 'ICE connected', 2000);
    const connection = () => link.pc.iceTransports[0]?.connection as unknown as { nominated?: { remoteAddr: [string, number] } } | undefined;
    const selected = () => connection()?.nominated?.remoteAddr[1];
    expect(selected()).toBe(first.from);
    const nominated = await check(server, ufrag, pwd, sockets, true);
    expect(nominated.ok).toBe(true);
    await until(() => selected() === nominated.from, 'the nominated pair selected', 2000);
    // Someone without the password cannot move the media to an address of theirs.
    expect((await check(server, ufrag, 'not-the-password-at-all', sockets, true)).ok).toBeUndefined();
    expect(selected()).toBe(nominated.from);
  });
});

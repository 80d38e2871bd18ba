// The browser test client: the seed's SSE flow, as a publisher (the device's role) or a viewer, or the
// same flow over the WebSocket transport with `?transport=ws`.
type Role = 'publish' | 'view';
type Transport = 'sse' | 'ws';
interface Signal {
  type: string;
  senderId?: string;
  payload?: unknown;
}

const el = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const logList = el<HTMLOListElement>('log');
const status = el<HTMLParagraphElement>('status');

function log(text: string): void {
  const item = document.createElement('li');
  item.textContent = `${new Date().toISOString().slice(11, 23)} ${text}`;
  logList.prepend(item);
}

function setStatus(text: string): void {
  status.textContent = text;
  log(text);
}

async function api(method: string, path: string, body?: unknown): Promise<any> {
  const response = await fetch(path, { method, body: body === undefined ? undefined : JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${json.message ?? response.status}`);
  return json;
}

/** A camera if there is one, otherwise a moving test pattern. */
async function localMedia(): Promise<MediaStream> {
  try {
    return await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) {
    log(`no camera (${(e as Error).name}); sending a test pattern`);
    const canvas = document.createElement('canvas');
    canvas.width = 640;
    canvas.height = 480;
    const ctx = canvas.getContext('2d') as CanvasRenderingContext2D;
    const draw = () => {
      const t = Date.now() / 1000;
      ctx.fillStyle = `hsl(${(t * 40) % 360} 60% 40%)`;
      ctx.fillRect(0, 0, 640, 480);
      ctx.fillStyle = '#fff';
      ctx.font = '48px sans-serif';
      ctx.fillText(new Date().toISOString().slice(11, 22), 150 + Math.sin(t) * 100, 250);
      requestAnimationFrame(draw);
    };
    draw();
    return canvas.captureStream(30);
  }
}

/** How this page receives events and sends messages; both start after POST /register. */
interface Channel {
  send(type: string, payload: unknown, target: string): Promise<unknown>;
  close(): void;
}

/** The seed's transport: events over an EventSource, messages with POST /message. */
function sseChannel(base: string, onEvent: (msg: Signal) => void): Channel {
  const events = new EventSource(`/events/${base}`);
  events.onmessage = (e) => onEvent(JSON.parse(e.data));
  events.onerror = () => log(events.readyState === EventSource.CLOSED ? 'stream closed' : 'stream lost, reconnecting');
  return {
    send: (type, payload, target) => api('POST', `/message/${base}`, { type, payload, target }),
    close: () => events.close(),
  };
}

/**
 * One WebSocket for both directions. Frames with a `type` are events (with their `id`); the others are
 * acks of what this page sent. A lost socket reconnects with `?lastEventId=`; meanwhile messages go by
 * POST /message, which reaches the same session.
 */
function wsChannel(base: string, onEvent: (msg: Signal) => void): Channel {
  let socket: WebSocket | undefined;
  let lastEventId: number | undefined;
  let closed = false;
  const connect = () => {
    const query = lastEventId === undefined ? '' : `?lastEventId=${lastEventId}`;
    const ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws/${base}${query}`);
    ws.onopen = () => {
      socket = ws;
    };
    ws.onmessage = (e) => {
      const frame = JSON.parse(e.data);
      if (typeof frame.type === 'string') {
        lastEventId = frame.id;
        onEvent(frame);
      } else if (frame.status >= 400) {
        log(`error: ${frame.error}: ${frame.message}`);
      }
    };
    ws.onclose = (e) => {
      socket = undefined;
      if (closed) return;
      // 4000 + an HTTP status: the server refused this peer (gone, taken over); reconnecting will not help.
      if (e.code >= 4000) return setStatus(`Socket refused: ${e.reason} (${e.code})`);
      log(`socket lost (${e.code}), reconnecting`);
      setTimeout(connect, 1000);
    };
  };
  connect();
  return {
    async send(type, payload, target) {
      if (!socket) return api('POST', `/message/${base}`, { type, payload, target });
      socket.send(JSON.stringify({ type, payload, target }));
    },
    close() {
      closed = true;
      socket?.close();
    },
  };
}

async function start(role: Role, sessionId: string, transport: Transport): Promise<void> {
  const peerId = `${role === 'publish' ? 'device' : 'viewer'}-${crypto.randomUUID().slice(0, 8)}`;
  const iceServer = await api('GET', `/iceServers?peerId=${encodeURIComponent(peerId)}`);
  const media = role === 'publish' ? await localMedia() : undefined;
  if (media) el<HTMLVideoElement>('local').srcObject = media;
  const base = `${encodeURIComponent(sessionId)}/${encodeURIComponent(peerId)}`;
  let channel: Channel | undefined;
  const send = (type: string, payload: unknown, target: string) =>
    channel ? channel.send(type, payload, target) : api('POST', `/message/${base}`, { type, payload, target });
  const peers = new Map<string, { pc: RTCPeerConnection; pending: RTCIceCandidateInit[] }>();

  const connection = (remoteId: string) => {
    const existing = peers.get(remoteId);
    if (existing) return existing;
    const pc = new RTCPeerConnection({ iceServers: [iceServer] });
    const peer = { pc, pending: [] as RTCIceCandidateInit[] };
    peers.set(remoteId, peer);
    media?.getTracks().forEach((track) => pc.addTrack(track, media));
    pc.onicecandidate = (e) => e.candidate && void send('ice-candidate', e.candidate.toJSON(), remoteId);
    pc.onconnectionstatechange = () => log(`${remoteId}: ${pc.connectionState}`);
    pc.ontrack = (e) => {
      let video = document.getElementById(`remote-${remoteId}`) as HTMLVideoElement | null;
      if (!video) {
        const figure = document.createElement('figure');
        video = Object.assign(document.createElement('video'), { id: `remote-${remoteId}`, autoplay: true, playsInline: true, muted: true });
        figure.append(video, Object.assign(document.createElement('figcaption'), { textContent: remoteId }));
        el('videos').append(figure);
      }
      video.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    };
    return peer;
  };

  const offerTo = async (remoteId: string) => {
    const { pc } = connection(remoteId);
    await pc.setLocalDescription(await pc.createOffer());
    await send('offer', pc.localDescription, remoteId);
  };

  const handle = async (msg: Signal) => {
    const from = msg.senderId ?? '';
    if (msg.type !== 'ping') log(`← ${msg.type}${from ? ` from ${from}` : ''}`);
    switch (msg.type) {
      case 'new-peer':
        peers.get(from)?.pc.close();
        peers.delete(from);
        if (role === 'publish') await offerTo(from);
        break;
      case 'offer': {
        const peer = connection(from);
        await peer.pc.setRemoteDescription(msg.payload as RTCSessionDescriptionInit);
        for (const c of peer.pending.splice(0)) await peer.pc.addIceCandidate(c);
        await peer.pc.setLocalDescription(await peer.pc.createAnswer());
        await send('answer', peer.pc.localDescription, from);
        break;
      }
      case 'answer': {
        const peer = peers.get(from);
        if (!peer) break;
        await peer.pc.setRemoteDescription(msg.payload as RTCSessionDescriptionInit);
        for (const c of peer.pending.splice(0)) await peer.pc.addIceCandidate(c);
        break;
      }
      case 'ice-candidate': {
        const peer = connection(from);
        // Candidates can arrive before the description they belong to: hold them until it is set.
        if (peer.pc.remoteDescription) await peer.pc.addIceCandidate(msg.payload as RTCIceCandidateInit);
        else peer.pending.push(msg.payload as RTCIceCandidateInit);
        break;
      }
      case 'peer-left':
        peers.get(from)?.pc.close();
        peers.delete(from);
        document.getElementById(`remote-${from}`)?.parentElement?.remove();
        break;
      case 'session-closed':
        setStatus('The session was closed.');
        break;
    }
  };

  const registered = await api('POST', `/register/${base}`);
  setStatus(`${role === 'publish' ? 'Publishing' : 'Viewing'} session ${sessionId} as ${peerId} (${transport === 'ws' ? 'WebSocket' : 'SSE'})`);
  // Messages are handled one at a time, in the order they arrived.
  let queue = Promise.resolve();
  const onEvent = (msg: Signal) => {
    queue = queue.then(() => handle(msg)).catch((err) => log(`error: ${(err as Error).message}`));
  };
  channel = (transport === 'ws' ? wsChannel : sseChannel)(base, onEvent);
  if (role === 'publish') for (const id of registered.peers as string[]) await offerTo(id);
  addEventListener('pagehide', () => {
    channel?.close();
    fetch(`/register/${base}`, { method: 'DELETE', keepalive: true });
  });
}

const sessionInput = el<HTMLInputElement>('session');
const params = new URLSearchParams(location.search);
const transport: Transport = params.get('transport') === 'ws' ? 'ws' : 'sse';
sessionInput.value = params.get('session') ?? crypto.randomUUID().slice(0, 8);
for (const role of ['publish', 'view'] as const) {
  el<HTMLButtonElement>(role).onclick = () => {
    start(role, sessionInput.value, transport).catch((e) => setStatus(`Failed: ${(e as Error).message}`));
  };
}
const autoRole = params.get('role');
if (autoRole === 'publish' || autoRole === 'view') el<HTMLButtonElement>(autoRole).click();

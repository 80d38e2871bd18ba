// The page: controls, status, one card per connection, the signalling log. Text only goes in through
// textContent: ids and messages come from other peers.
import type { PeerInfo, PeerStats } from './sdk/switchboard';

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
};

const MAX_LOG = 500;

export type Role = 'publish' | 'view';

export class View {
  readonly session = byId<HTMLInputElement>('session');
  readonly peer = byId<HTMLInputElement>('peer');
  readonly source = byId<HTMLSelectElement>('source');
  readonly relay = byId<HTMLInputElement>('relay');
  readonly mode = byId<HTMLSelectElement>('mode');
  readonly form = byId<HTMLFormElement>('controls');
  readonly publishButton = byId<HTMLButtonElement>('publish');
  readonly viewButton = byId<HTMLButtonElement>('view');
  readonly leaveButton = byId<HTMLButtonElement>('leave');
  private readonly error = byId<HTMLParagraphElement>('error');
  private readonly status = byId<HTMLParagraphElement>('status');
  private readonly share = byId<HTMLElement>('share');
  private readonly viewerLink = byId<HTMLInputElement>('viewer-link');
  private readonly copyButton = byId<HTMLButtonElement>('copy-link');
  private readonly peers = byId<HTMLElement>('peers');
  private readonly localCard = byId<HTMLElement>('local-card');
  private readonly localVideo = byId<HTMLVideoElement>('local');
  private readonly localInfo = byId<HTMLParagraphElement>('local-info');
  private readonly streamState = byId<HTMLSpanElement>('stream-state');
  private readonly logList = byId<HTMLOListElement>('log');
  private readonly cards = new Map<string, PeerCard>();

  constructor() {
    this.copyButton.onclick = () => void this.copyLink();
  }

  log(text: string): void {
    const item = document.createElement('li');
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toISOString().slice(11, 23);
    item.append(time, ' ', text);
    this.logList.prepend(item);
    while (this.logList.childElementCount > MAX_LOG) this.logList.lastElementChild?.remove();
  }

  setStatus(text: string): void {
    this.status.textContent = text;
  }

  /** An error in plain words, or none. */
  showError(text: string | undefined): void {
    this.error.hidden = !text;
    this.error.textContent = text ?? '';
  }

  /** Locks the controls while a role runs. */
  setRunning(role: Role | undefined): void {
    for (const input of [this.session, this.peer, this.source, this.mode, this.relay, this.publishButton, this.viewButton]) input.disabled = role !== undefined;
    this.leaveButton.hidden = role === undefined;
    this.localCard.hidden = role === undefined;
    if (role === undefined) {
      this.share.hidden = true;
      this.localVideo.srcObject = null;
      for (const id of [...this.cards.keys()]) this.removePeer(id);
    }
  }

  showLocal(stream: MediaStream | undefined, info: string): void {
    this.localVideo.srcObject = stream ?? null;
    this.localVideo.hidden = !stream;
    this.localInfo.textContent = info;
  }

  showStreamState(state: string): void {
    this.streamState.textContent = `events ${state}`;
    this.streamState.className = `badge ${state === 'open' ? 'good' : state === 'closed' ? 'bad' : 'busy'}`;
  }

  showShareLink(link: string): void {
    this.share.hidden = false;
    this.viewerLink.value = link;
  }

  /** Creates or refreshes the card of a connection; `viaServer` for the server's own peer in a relay session. */
  showPeer(info: PeerInfo, withVideo: boolean, viaServer = false): void {
    let card = this.cards.get(info.id);
    if (!card) {
      card = new PeerCard(info.id, withVideo, viaServer);
      this.cards.set(info.id, card);
      this.peers.append(card.root);
    }
    card.update(info);
  }

  attachRemote(remoteId: string, stream: MediaStream): void {
    this.cards.get(remoteId)?.attach(stream);
  }

  remoteVideo(remoteId: string): HTMLVideoElement | undefined {
    return this.cards.get(remoteId)?.video;
  }

  removePeer(remoteId: string): void {
    this.cards.get(remoteId)?.root.remove();
    this.cards.delete(remoteId);
  }

  private async copyLink(): Promise<void> {
    const link = this.viewerLink.value;
    try {
      // The Clipboard API exists only in secure contexts; elsewhere the selected text is copied.
      if (navigator.clipboard?.writeText) await navigator.clipboard.writeText(link);
      else {
        this.viewerLink.select();
        if (!document.execCommand('copy')) throw new Error('copy refused');
      }
      this.copyButton.textContent = 'Copied';
      setTimeout(() => {
        this.copyButton.textContent = 'Copy viewer link';
      }, 1500);
    } catch {
      this.viewerLink.select();
      this.log('copying was refused by the browser: the link is selected, copy it by hand');
    }
  }
}

const STATE_CLASS: Record<string, string> = { connected: 'good', new: 'busy', connecting: 'busy', disconnected: 'busy', failed: 'bad', closed: 'bad' };

/** One remote peer: its video (for a viewer), connection state, path, rates. */
class PeerCard {
  readonly root = document.createElement('article');
  readonly video: HTMLVideoElement | undefined;
  private readonly badge = document.createElement('span');
  private readonly fields = new Map<string, HTMLElement>();
  private readonly failure = document.createElement('p');
  private readonly unmute = document.createElement('button');

  constructor(remoteId: string, withVideo: boolean, viaServer: boolean) {
    this.root.className = 'card peer';
    this.root.dataset.peer = remoteId;
    if (viaServer) this.root.dataset.relay = 'server';
    if (withVideo) {
      const video = document.createElement('video');
      video.autoplay = true;
      video.muted = true; // autoplay with sound needs a click; the button below unmutes
      video.playsInline = true;
      video.setAttribute('playsinline', '');
      video.dataset.peer = remoteId;
      this.video = video;
      this.root.append(video);
    }
    const header = document.createElement('header');
    const title = document.createElement('h2');
    title.textContent = viaServer ? `${remoteId} (the server relays the media)` : remoteId;
    this.badge.className = 'badge';
    header.append(title, this.badge);
    const list = document.createElement('dl');
    for (const name of ['ICE', 'path', 'kbit/s in / out', 'video', 'round trip']) {
      const dt = document.createElement('dt');
      dt.textContent = name;
      const dd = document.createElement('dd');
      this.fields.set(name, dd);
      list.append(dt, dd);
    }
    this.failure.className = 'failure';
    this.root.append(header, list, this.failure);
    if (this.video) {
      this.unmute.type = 'button';
      this.unmute.textContent = 'Unmute';
      this.unmute.hidden = true;
      this.unmute.onclick = () => {
        const video = this.video;
        if (!video) return;
        video.muted = !video.muted;
        this.unmute.textContent = video.muted ? 'Unmute' : 'Mute';
      };
      this.root.append(this.unmute);
    }
  }

  attach(stream: MediaStream): void {
    if (!this.video) return;
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    this.unmute.hidden = stream.getAudioTracks().length === 0;
    // Safari and phones may refuse autoplay until play() is called; muted video is always allowed.
    this.video.play().catch(() => undefined);
  }

  update(info: PeerInfo): void {
    const { stats } = info;
    const state = info.connectionState;
    this.root.dataset.state = state;
    this.badge.textContent = state;
    this.badge.className = `badge ${STATE_CLASS[state] ?? ''}`;
    this.set('ICE', `${info.iceConnectionState} · gathering ${info.iceGatheringState} · ${info.signalingState}`);
    const pair = stats?.pair;
    this.root.dataset.pair = pair ? `${pair.local}-${pair.remote}` : '';
    this.set(
      'path',
      pair ? `${pair.local} ↔ ${pair.remote} (${pair.relayProtocol ? `${pair.relayProtocol} to TURN, ` : ''}${pair.protocol}) ${pair.localAddress} → ${pair.remoteAddress}` : '—',
    );
    this.set('kbit/s in / out', stats ? `${Math.round(stats.inKbps)} / ${Math.round(stats.outKbps)}` : '—');
    this.set('video', stats ? describeVideo(stats) : '—');
    this.set('round trip', stats?.rttMs === undefined ? '—' : `${Math.round(stats.rttMs)} ms`);
    this.failure.textContent = info.failure ? `ICE failed: ${info.failure}` : '';
  }

  private set(name: string, text: string): void {
    const field = this.fields.get(name);
    if (field && field.textContent !== text) field.textContent = text;
  }
}

function describeVideo(s: PeerStats): string {
  if (s.framesDecoded > 0) {
    const size = s.frameWidth ? `${s.frameWidth}×${s.frameHeight} · ` : '';
    return `${size}${Math.round(s.framesPerSecond ?? 0)} fps · ${s.framesDecoded} frames decoded`;
  }
  if (s.framesSent > 0) return `sending ${Math.round(s.sentFramesPerSecond ?? 0)} fps · ${s.framesSent} frames sent`;
  return 'none yet';
}

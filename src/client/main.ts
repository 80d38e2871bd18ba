// The browser test client: start a stream (the device's role) or join one, as the seed describes, with
// the client library (./sdk). `/?session=S&peer=P&role=view` joins by itself; `&role=publish` fills in
// the form and waits for a click on Start stream: a link alone never turns a camera on. `&mode=relay`
// creates a relay session (media through the server); `&relay=1` forces TURN;
// `&source=camera|screen|pattern`; `&codec=h264|vp8` the video codec a publisher prefers.
import { SOURCES, type Source } from './media';
import { randomId } from './sdk/session';
import type { Transport } from './sdk/switchboard';
import { type ClientStatus, describeError, PageSession } from './session';
import { type Role, View } from './ui';

declare global {
  interface Window {
    /** The page's state, for whoever checks it from a script (the end-to-end tests do). */
    switchboard: ClientStatus;
  }
}

const ID = /^[A-Za-z0-9._:@|~-]{1,128}$/;

const view = new View();
const status: ClientStatus = { phase: 'idle', relay: false, stream: 'closed', resumes: 0, reRegistrations: 0, peers: {} };
window.switchboard = status;
let session: PageSession | undefined;

const params = new URLSearchParams(location.search);
view.session.value = params.get('session') ?? randomId();
view.peer.value = params.get('peer') ?? '';
view.relay.checked = params.get('relay') === '1';
// ?transport=ws signals over one WebSocket instead of Server-Sent Events and POST (the default).
const transport: Transport = params.get('transport') === 'ws' ? 'ws' : 'sse';
if (params.get('mode') === 'relay') view.mode.value = 'relay';
const codec = params.get('codec') ?? undefined;
const sourceParam = params.get('source');
if (sourceParam && (SOURCES as readonly string[]).includes(sourceParam)) view.source.value = sourceParam;

async function start(role: Role): Promise<void> {
  if (session) return;
  if (!view.form.reportValidity()) return;
  const sessionId = view.session.value.trim();
  const peerId = view.peer.value.trim() || `${role === 'publish' ? 'publisher' : 'viewer'}-${randomId(6)}`;
  if (!ID.test(sessionId) || !ID.test(peerId)) {
    view.showError('Session and peer ids are 1 to 128 of A-Z a-z 0-9 . _ : @ | ~ -');
    return;
  }
  view.showError(undefined);
  // The address bar now reloads into the same session and role.
  const url = new URLSearchParams({ session: sessionId, role });
  if (view.peer.value.trim()) url.set('peer', peerId);
  const mode = view.mode.value === 'relay' ? 'relay' : undefined;
  if (mode) url.set('mode', mode);
  if (view.relay.checked) url.set('relay', '1');
  if (role === 'publish') url.set('source', view.source.value);
  if (transport === 'ws') url.set('transport', 'ws');
  if (role === 'publish' && codec) url.set('codec', codec);
  history.replaceState(null, '', `?${url}`);

  const current = new PageSession({
    role,
    transport,
    sessionId,
    peerId,
    mode,
    codec,
    relay: view.relay.checked,
    source: view.source.value as Source,
    view,
    status,
    ended: () => {
      if (session === current) session = undefined;
    },
  });
  session = current;
  try {
    await current.start();
  } catch (e) {
    const text = describeError(e);
    view.log(`failed to start: ${text}`);
    view.showError(text);
    view.setStatus('Not connected.');
    status.phase = 'failed';
    status.error = text;
    current.stop();
  }
}

view.form.onsubmit = (e) => {
  e.preventDefault();
  void start('publish');
};
view.viewButton.onclick = () => void start('view');
view.leaveButton.onclick = () => {
  session?.stop();
  view.setStatus('Left the session.');
};

// Leaving on unload lets the others see peer-left at once rather than after the peer timeout.
addEventListener('pagehide', () => session?.stop());
// A page restored from the back/forward cache has left its session: start over.
addEventListener('pageshow', (e: PageTransitionEvent) => {
  if (e.persisted) location.reload();
});

const role = params.get('role');
if (role === 'view') void start(role);
else if (role === 'publish') {
  // Ready, not started: the camera opens, and the peer registers as publisher, on the user's click.
  status.phase = 'ready';
  status.role = 'publish';
  view.setStatus(`Ready to publish session ${view.session.value}: press Start stream to turn the camera on.`);
  view.publishButton.focus();
}

// The rendezvous service: devices online, peer sessions with the path they took (direct or relayed)
// and the ICE candidates each end offered, and the TURN allocations with their traffic. Polled
// every 3 s while the view is open; the service's routes answer 404 when it is not running.
import { api, ApiError, messageOf, serviceRunning } from './api.js';
import { bytes, clock, duration, h, hostPort, replace } from './dom.js';
import type { Allocation, CandidateCounts, PairEnd, RendezvousStatus } from './types.js';
import { poll, type View } from './view.js';

const POLL_MS = 3000;

function candidatesText(c: CandidateCounts | undefined): string {
  if (!c) return '-';
  const parts = Object.entries(c).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
  return parts.length > 0 ? parts.join(', ') : 'none';
}

type Session = RendezvousStatus['sessions'][number];

/** "relayed: relay udp 127.0.0.1:50000 ↔ host udp 127.0.0.1:41234 (as the device saw it)" */
function pathText(s: Session): string {
  const p = s.pair;
  if (!p) return s.path;
  const end = (e: PairEnd): string => `${e.type} ${e.protocol} ${hostPort(e.address, e.port)}`;
  return `${s.path}: ${end(p.local)} ↔ ${end(p.remote)} (as the ${p.reportedBy} saw it)`;
}

function table(id: string, caption: string, headers: string[], body: HTMLTableSectionElement): HTMLTableElement {
  return h('table', { class: 'grid', id }, h('caption', {}, caption), h('thead', {}, h('tr', {}, ...headers.map((t) => h('th', { scope: 'col' }, t)))), body);
}

function rows(body: HTMLTableSectionElement, columns: number, empty: string, list: HTMLTableRowElement[]): void {
  if (list.length === 0) replace(body, h('tr', {}, h('td', { colspan: columns }, empty)));
  else replace(body, ...list);
}

export class RendezvousView implements View {
  readonly id = 'rendezvous';
  readonly title = 'Rendezvous';
  readonly element: HTMLElement;
  private readonly state = h('p', { id: 'rendezvous-state', class: 'status', role: 'status' });
  private readonly content = h('div', { id: 'rendezvous-content', hidden: true });
  private readonly online = h('tbody');
  private readonly sessions = h('tbody');
  private readonly allocations = h('tbody');
  private stop: (() => void) | null = null;

  constructor() {
    replace(
      this.content,
      table('rendezvous-online', 'Devices online', ['User', 'Device', 'Online since'], this.online),
      table('rendezvous-sessions', 'Peer sessions', ['ID', 'User', 'Device', 'Opened', 'Path', 'Client candidates', 'Device candidates'], this.sessions),
      table('turn-allocations', 'TURN allocations', ['ID', 'User', 'Client', 'Transport', 'Relays', 'Relayed address', 'Up', 'Down', 'Expires in'], this.allocations),
    );
    this.element = h('section', { id: 'view-rendezvous', 'aria-labelledby': 'rendezvous-title', hidden: true }, h('h2', { id: 'rendezvous-title' }, 'Rendezvous'), this.state, this.content);
  }

  show(): void {
    this.stop?.();
    this.stop = poll(() => this.load(), POLL_MS);
  }

  hide(): void {
    this.stop?.();
    this.stop = null;
  }

  private async load(): Promise<void> {
    let status: RendezvousStatus;
    try {
      if (!(await serviceRunning('rendezvous'))) throw new ApiError(404, 'not_running', 'rendezvous is not running');
      status = await api<RendezvousStatus>('GET', '/api/v1/rendezvous/status');
    } catch (e) {
      this.content.hidden = true;
      this.state.textContent = e instanceof ApiError && e.status === 404 ? 'rendezvous is not running' : `rendezvous: ${messageOf(e)}`;
      return;
    }
    let allocations: Allocation[] = [];
    let allocationError = '';
    try {
      allocations = (await api<{ allocations: Allocation[] }>('GET', '/api/v1/turn/allocations')).allocations;
    } catch (e) {
      allocationError = `; TURN allocations: ${messageOf(e)}`;
    }
    this.content.hidden = false;
    const text = `${status.online.length} ${status.online.length === 1 ? 'device' : 'devices'} online, ${status.sessions.length} ${status.sessions.length === 1 ? 'session' : 'sessions'}, ${allocations.length} TURN ${allocations.length === 1 ? 'allocation' : 'allocations'}${allocationError}`;
    if (this.state.textContent !== text) this.state.textContent = text;
    rows(this.online, 3, 'no device online', status.online.map((o) => h('tr', {}, h('td', {}, o.user), h('td', {}, o.device), h('td', {}, clock(o.since)))));
    rows(
      this.sessions,
      7,
      'no sessions',
      status.sessions.map((s) =>
        h(
          'tr',
          {},
          h('td', {}, s.id),
          h('td', {}, s.user),
          h('td', {}, s.device),
          h('td', {}, clock(s.openedAt)),
          h('td', { class: `path-${s.path}` }, pathText(s)),
          h('td', {}, candidatesText(s.candidates?.client)),
          h('td', {}, candidatesText(s.candidates?.device)),
        ),
      ),
    );
    rows(
      this.allocations,
      9,
      'no allocations',
      allocations.map((a) =>
        h(
          'tr',
          {},
          h('td', {}, String(a.id)),
          h('td', {}, a.user),
          h('td', {}, hostPort(a.client.address, a.client.port)),
          h('td', {}, a.transport),
          h('td', {}, a.relayProtocol),
          h('td', {}, hostPort(a.relayed.address, a.relayed.port)),
          h('td', {}, bytes(a.bytes.up)),
          h('td', {}, bytes(a.bytes.down)),
          h('td', {}, duration(a.secondsLeft)),
        ),
      ),
    );
  }
}

// The open connections: who, where, which policy matched, the transport the kernel has in effect on
// the outgoing socket (MPTCP, congestion control, Nagle, the path manager's subflows), bytes and
// age. Polled every 2 s while the view is open; the table is virtual, so 10 000 rows scroll as
// smoothly as ten. A row's details show every subflow.
import { api, messageOf } from './api.js';
import { bytes, duration, field, h, hostPort, replace } from './dom.js';
import { keepAliveText, matchText, transportText } from './policy-text.js';
import type { Connection, Policy, Subflow } from './types.js';
import type { View } from './view.js';
import { poll } from './view.js';
import { VirtualTable, type Column } from './virtual-table.js';

const POLL_MS = 2000;
/** connections fetched at most per poll */
const LIMIT = 10_000;
const ROW_HEIGHT = 30;

function destinationText(c: Connection): string {
  const d = c.destination;
  if (d.host && d.host !== d.address) return `${hostPort(d.host, d.port)} (${d.address})`;
  return hostPort(d.address, d.port);
}

function subflowsText(c: Connection): string {
  const pm = c.inEffect?.pathManager;
  if (pm) {
    const list = pm.subflows.map((s) => `${hostPort(s.local.address, s.local.port)} → ${hostPort(s.remote.address, s.remote.port)}${s.backup ? ' (backup)' : ''}`);
    return `${pm.mode} ${pm.subflowsUp}/${pm.subflowsWanted}${list.length > 0 ? `: ${list.join('; ')}` : ''}`;
  }
  const list = c.inEffect?.subflowList;
  if (list && list.length > 0) return `${list.length}: ${list.map((s) => `${hostPort(s.local.address, s.local.port)} → ${hostPort(s.remote.address, s.remote.port)}`).join('; ')}`;
  if (c.inEffect?.subflows !== undefined) return String(c.inEffect.subflows);
  return '-';
}

/** A table of subflows: addresses, the backup flag where edgeward's path manager knows it, bytes. */
function subflowTable(subflows: Array<Omit<Subflow, 'backup'> & { backup?: boolean }>): HTMLElement {
  return h(
    'table',
    { class: 'grid' },
    h('caption', {}, 'Subflows'),
    h('thead', {}, h('tr', {}, ...['Local', 'Remote', 'Backup', 'Sent', 'Received'].map((t) => h('th', { scope: 'col' }, t)))),
    h(
      'tbody',
      {},
      ...subflows.map((s) =>
        h(
          'tr',
          {},
          h('td', {}, hostPort(s.local.address, s.local.port)),
          h('td', {}, hostPort(s.remote.address, s.remote.port)),
          h('td', {}, s.backup === undefined ? '-' : s.backup ? 'backup' : 'no'),
          h('td', {}, s.bytes ? bytes(s.bytes.sent) : '-'),
          h('td', {}, s.bytes ? bytes(s.bytes.received) : '-'),
        ),
      ),
    ),
  );
}

export class ConnectionsView implements View {
  readonly id = 'connections';
  readonly title = 'Connections';
  readonly element: HTMLElement;
  private readonly table: VirtualTable<Connection>;
  private readonly filter = h('input', { type: 'search', id: 'connections-filter', autocomplete: 'off', placeholder: 'client, destination or policy' });
  private readonly mptcpOnly = h('input', { type: 'checkbox', id: 'connections-mptcp' });
  private readonly count = h('p', { id: 'connections-count', class: 'count', role: 'status' }, 'loading...');
  private readonly error = h('p', { class: 'error', role: 'alert', id: 'connections-error' });
  private readonly details = h('section', { id: 'connection-details', class: 'details', 'aria-labelledby': 'connection-details-title', hidden: true });
  private all: Connection[] = [];
  private total = 0;
  private policies = new Map<number, string>();
  private selected: number | null = null;
  private stop: (() => void) | null = null;
  private fetchedAt = Date.now();

  constructor() {
    const columns: Array<Column<Connection>> = [
      { header: 'Client', className: 'c-client', render: (c, td) => (td.textContent = hostPort(c.client.address, c.client.port) + (c.user ? ` (${c.user})` : '')) },
      { header: 'Destination', className: 'c-dest', render: (c, td) => (td.textContent = destinationText(c)) },
      { header: 'Policy', className: 'c-policy', render: (c, td) => (td.textContent = this.policyText(c.policyId)) },
      { header: 'MPTCP', className: 'c-mptcp', render: (c, td) => (td.textContent = c.inEffect === null ? '-' : c.inEffect.mptcp ? 'yes' : 'no') },
      { header: 'Congestion', className: 'c-cc', render: (c, td) => (td.textContent = c.inEffect?.congestion ?? '-') },
      { header: 'Nagle', className: 'c-nagle', render: (c, td) => (td.textContent = c.inEffect?.noDelay === undefined ? '-' : c.inEffect.noDelay ? 'off (nodelay)' : 'on') },
      { header: 'Subflows', className: 'c-subflows', render: (c, td) => (td.textContent = subflowsText(c)) },
      { header: 'Up', className: 'c-num', render: (c, td) => (td.textContent = bytes(c.bytes.up)) },
      { header: 'Down', className: 'c-num', render: (c, td) => (td.textContent = bytes(c.bytes.down)) },
      { header: 'Age', className: 'c-age', render: (c, td) => (td.textContent = duration((this.fetchedAt - Date.parse(c.startedAt)) / 1000)) },
      {
        header: 'Details',
        className: 'c-more',
        render: (c, td) => {
          // the same button stays in the cell across polls, so that keyboard focus does too
          let b = td.firstElementChild as HTMLButtonElement | null;
          if (!b) {
            b = h('button', { type: 'button', class: 'small' }, 'Details');
            b.addEventListener('click', () => {
              const id = Number(b!.dataset.id);
              this.select(this.selected === id ? null : id);
            });
            td.append(b);
          }
          b.dataset.id = String(c.id);
          b.setAttribute('aria-label', `Details of connection ${c.id}`);
          b.setAttribute('aria-pressed', this.selected === c.id ? 'true' : 'false');
        },
      },
    ];
    this.table = new VirtualTable({ caption: 'Open connections', columns, rowHeight: ROW_HEIGHT, empty: 'no open connections', className: 'vt-connections', key: (c) => c.id });
    const refresh = h('button', { type: 'button', id: 'connections-refresh' }, 'Refresh');
    refresh.addEventListener('click', () => void this.load());
    this.filter.addEventListener('input', () => this.render());
    this.mptcpOnly.addEventListener('change', () => this.render());
    this.element = h(
      'section',
      { id: 'view-connections', 'aria-labelledby': 'connections-title', hidden: true },
      h('h2', { id: 'connections-title' }, 'Connections'),
      h(
        'div',
        { class: 'toolbar', role: 'search' },
        field('Filter', this.filter),
        h('div', { class: 'field check' }, this.mptcpOnly, h('label', { for: this.mptcpOnly.id }, 'MPTCP only')),
        refresh,
      ),
      this.count,
      this.error,
      this.table.element,
      this.details,
    );
  }

  show(): void {
    this.stop?.();
    this.stop = poll(() => this.load(), POLL_MS);
  }

  hide(): void {
    this.stop?.();
    this.stop = null;
  }

  reset(): void {
    this.all = [];
    this.select(null);
    this.render();
  }

  private policyText(id: number | null): string {
    if (id === null) return 'default';
    const m = this.policies.get(id);
    return m === undefined ? `#${id}` : `#${id} ${m}`;
  }

  private async load(): Promise<void> {
    try {
      const [list, policies] = await Promise.all([
        api<{ total: number; connections: Connection[] }>('GET', `/api/v1/connections?limit=${LIMIT}`),
        api<{ policies: Policy[] }>('GET', '/api/v1/policies'),
      ]);
      this.policies = new Map(policies.policies.map((p) => [p.id, matchText(p.match)]));
      this.all = list.connections;
      this.total = list.total;
      this.fetchedAt = Date.now();
      this.error.textContent = '';
      this.render();
    } catch (e) {
      this.error.textContent = `connections: ${messageOf(e)}`;
    }
  }

  private render(): void {
    const q = this.filter.value.trim().toLowerCase();
    const mptcp = this.mptcpOnly.checked;
    const rows = q === '' && !mptcp
      ? this.all
      : this.all.filter((c) => {
          if (mptcp && c.inEffect?.mptcp !== true) return false;
          if (q === '') return true;
          return `${hostPort(c.client.address, c.client.port)} ${c.user ?? ''} ${destinationText(c)} ${this.policyText(c.policyId)}`.toLowerCase().includes(q);
        });
    this.table.setRows(rows);
    const shown = rows.length === this.all.length ? '' : ` (${rows.length} shown by the filter)`;
    const limited = this.total > this.all.length ? `, the oldest ${this.all.length} listed` : '';
    const text = `${this.total} ${this.total === 1 ? 'connection' : 'connections'}${limited}${shown}`;
    if (this.count.textContent !== text) this.count.textContent = text;
    this.renderDetails();
  }

  private select(id: number | null): void {
    this.selected = id;
    this.render();
    if (id !== null) this.details.scrollIntoView({ block: 'nearest' });
  }

  private renderDetails(): void {
    const c = this.selected === null ? undefined : this.all.find((x) => x.id === this.selected);
    if (!c) {
      this.details.hidden = true;
      return;
    }
    this.details.hidden = false;
    const e = c.inEffect;
    const dl = h('dl', { class: 'kv' });
    const row = (k: string, v: string | null | undefined): void => {
      if (v !== null && v !== undefined && v !== '') dl.append(h('dt', {}, k), h('dd', {}, v));
    };
    row('client', hostPort(c.client.address, c.client.port));
    row('user', c.user);
    row('destination', destinationText(c));
    row('via', c.upstream);
    row('policy', this.policyText(c.policyId));
    row('transport asked', transportText(c.transport));
    row('MPTCP in effect', e === null ? 'no outgoing socket' : e.mptcp ? 'yes' : 'no');
    row('MPTCP note', e?.mptcpNote);
    row('congestion in effect', e?.congestion);
    row('Nagle', e?.noDelay === undefined ? undefined : e.noDelay ? 'off (nodelay)' : 'on');
    row('keepalive', keepAliveText(e?.keepAlive));
    row('not applied', e?.notApplied?.join('; '));
    row('bytes', `${bytes(c.bytes.up)} up, ${bytes(c.bytes.down)} down`);
    row('started', new Date(c.startedAt).toLocaleString());
    const pm = e?.pathManager;
    const parts: Array<HTMLElement> = [h('h3', { id: 'connection-details-title' }, `Connection ${c.id}`), dl];
    if (pm) {
      row('path manager', `${pm.mode}: ${pm.subflowsUp} up of ${pm.subflowsWanted} wanted, ${pm.subflowsPending} pending, ${pm.recreated} made again`);
      row('path manager error', pm.lastError);
      parts.push(subflowTable(pm.subflows));
    } else if (e?.subflowList && e.subflowList.length > 0) {
      parts.push(subflowTable(e.subflowList));
    }
    const close = h('button', { type: 'button' }, 'Close details');
    close.addEventListener('click', () => this.select(null));
    parts.push(close);
    replace(this.details, ...parts);
  }
}

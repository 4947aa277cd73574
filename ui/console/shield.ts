// The shield: its packet rates per layer as a live chart (SYN, UDP, bad TCP flags, new connections
// passed), attack events as they start, go on and end (from the shield's event stream, so a flood
// shows within a second), the per-service counters, and the block and allow lists with their
// seconds left. The shield's routes answer 404 when it is not running.
import { api, ApiError, messageOf, serviceRunning } from './api.js';
import { LiveChart } from './chart.js';
import { clock, duration, h, replace } from './dom.js';
import { FieldErrors } from './form-errors.js';
import type { Attack, AttackKind, ListEntry, ShieldRatesEvent, ShieldStatus } from './types.js';
import { poll, type AppContext, type View } from './view.js';
import { VirtualTable } from './virtual-table.js';

const STATUS_POLL_MS = 5000;
/** attack events kept in the list at most */
const MAX_EVENTS = 200;

const KIND_TITLES: Record<AttackKind, string> = { syn_flood: 'SYN flood', udp_flood: 'UDP flood', tcp_flags: 'bad TCP flags' };

function pps(v: number): string {
  if (v >= 1e6) return `${(v / 1e6).toFixed(2)} Mpps`;
  if (v >= 1e4) return `${(v / 1e3).toFixed(0)} kpps`;
  if (v >= 1e3) return `${(v / 1e3).toFixed(1)} kpps`;
  return `${Math.round(v)} pps`;
}

/** [80, 80] -> "80", [7000, 7010] -> "7000-7010", with the address when there is one. */
function portsText(address: string | null, ports: number[]): string {
  const [lo, hi] = ports;
  const range = lo === undefined ? '' : hi === undefined || hi === lo ? String(lo) : `${lo}-${hi}`;
  return address ? `${address} ${range}` : range;
}

/** One attack is the same event across its started/updated/ended messages (its id is 0 until stored). */
function attackKey(a: Attack): string {
  return `${a.kind}@${a.startedAt}`;
}

function topSourcesText(a: Attack): string {
  if (a.topSources.length === 0) return a.distinctSources > 0 ? `${a.distinctSources} sources` : '-';
  const top = a.topSources.slice(0, 3).map((s) => `${s.address} (${s.packets})`).join(', ');
  return a.distinctSources > 3 ? `${top}; ${a.distinctSources} sources in all` : top;
}

type ListName = 'blocklist' | 'allowlist';

/** One of the shield's lists: a virtual table (a flood can put thousands of sources on it) and a form to add to it. */
class ShieldList {
  readonly element: HTMLElement;
  private readonly table: VirtualTable<ListEntry>;
  private readonly count = h('p', { class: 'count' });
  private readonly error = h('p', { class: 'error', role: 'alert' });
  private readonly errors = new FieldErrors(this.error, ['body.', '']);
  private readonly address: HTMLInputElement;
  private readonly ttl: HTMLInputElement;
  private readonly reason: HTMLInputElement;
  private fetchedAt = Date.now();
  private entries: ListEntry[] = [];

  constructor(
    private readonly name: ListName,
    private readonly announce: (text: string) => void,
  ) {
    const what = name === 'blocklist' ? 'Blocklist' : 'Allowlist';
    this.count.id = `${name}-count`;
    this.error.id = `${name}-error`;
    this.address = h('input', { type: 'text', id: `${name}-address`, autocomplete: 'off', spellcheck: 'false', required: true, placeholder: '198.51.100.7 or 203.0.113.0/24' });
    this.ttl = h('input', { type: 'number', id: `${name}-ttl`, min: 1, inputmode: 'numeric', placeholder: 'until removed' });
    this.reason = h('input', { type: 'text', id: `${name}-reason`, autocomplete: 'off' });
    this.table = new VirtualTable<ListEntry>({
      caption: `${what} entries`,
      rowHeight: 32,
      empty: `the ${name} is empty`,
      className: 'vt-list',
      key: (e) => e.address,
      columns: [
        { header: 'Address', className: 'c-addr', render: (e, td) => (td.textContent = e.address) },
        { header: 'Source', className: 'c-source', render: (e, td) => (td.textContent = e.source) },
        { header: 'Reason', className: 'c-reason', render: (e, td) => (td.textContent = e.reason ?? '') },
        { header: 'Seconds left', className: 'c-num', render: (e, td) => (td.textContent = e.secondsLeft === null ? 'until removed' : String(Math.max(0, e.secondsLeft - Math.floor((Date.now() - this.fetchedAt) / 1000)))) },
        { header: 'Added', className: 'c-time', render: (e, td) => (td.textContent = e.createdAt ? clock(e.createdAt) : '-') },
        { header: 'Actions', className: 'c-actions', render: (e, td) => this.renderRemove(e, td) },
      ],
    });
    const form = h(
      'form',
      { id: `${name}-form`, novalidate: true, 'aria-label': `Add to the ${name}` },
      h(
        'div',
        { class: 'row' },
        this.errors.field('Address or block', this.address, ['address']),
        this.errors.field('TTL (seconds)', this.ttl, ['ttl']),
        this.errors.field('Reason', this.reason, ['reason']),
        h('div', { class: 'actions' }, h('button', { type: 'submit', id: `${name}-add` }, `Add to the ${name}`)),
      ),
      this.error,
    );
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.add();
    });
    this.element = h('section', { id: `shield-${name}`, 'aria-labelledby': `${name}-title` }, h('h3', { id: `${name}-title` }, what), this.count, this.table.element, form);
  }

  async load(): Promise<void> {
    try {
      this.entries = (await api<{ entries: ListEntry[] }>('GET', `/api/v1/shield/${this.name}`)).entries;
      this.fetchedAt = Date.now();
      this.table.setRows(this.entries);
      this.count.textContent = `${this.entries.length} ${this.entries.length === 1 ? 'entry' : 'entries'}`;
    } catch (e) {
      this.count.textContent = `${this.name}: ${messageOf(e)}`;
    }
  }

  /** Counts the seconds left down between two loads. */
  tick(): void {
    if (this.entries.some((e) => e.secondsLeft !== null)) this.table.setRows(this.entries);
  }

  private renderRemove(e: ListEntry, td: HTMLTableCellElement): void {
    let b = td.firstElementChild as HTMLButtonElement | null;
    if (!b) {
      const button = h('button', { type: 'button', class: 'small' }, 'Remove');
      button.addEventListener('click', () => void this.remove(button.dataset.address ?? ''));
      td.append(button);
      b = button;
    }
    b.dataset.address = e.address;
    b.disabled = e.source === 'config';
    b.setAttribute('aria-label', e.source === 'config' ? `Remove (not possible: ${e.address} comes from the configuration)` : `Remove ${e.address} from the ${this.name}`);
  }

  private async add(): Promise<void> {
    const body: { address: string; ttl?: number; reason?: string } = { address: this.address.value.trim() };
    if (this.ttl.value.trim() !== '') body.ttl = Number(this.ttl.value);
    if (this.reason.value.trim() !== '') body.reason = this.reason.value.trim();
    try {
      const entry = await api<ListEntry>('POST', `/api/v1/shield/${this.name}`, body);
      this.errors.clear();
      this.address.value = '';
      this.ttl.value = '';
      this.reason.value = '';
      this.announce(`${entry.address} added to the ${this.name}${entry.secondsLeft === null ? '' : ` for ${duration(entry.secondsLeft)}`}.`);
      await this.load();
    } catch (e) {
      this.errors.show(e, `Not added to the ${this.name}`);
    }
  }

  private async remove(address: string): Promise<void> {
    try {
      await api('DELETE', `/api/v1/shield/${this.name}/${encodeURIComponent(address)}`);
      this.announce(`${address} removed from the ${this.name}.`);
      await this.load();
    } catch (e) {
      this.announce(`${address} not removed: ${messageOf(e)}`);
    }
  }
}

export class ShieldView implements View {
  readonly id = 'shield';
  readonly title = 'Shield';
  readonly element: HTMLElement;
  private readonly state = h('p', { id: 'shield-state', class: 'status', role: 'status' });
  private readonly alert = h('p', { id: 'shield-alert', class: 'alert', role: 'alert' });
  private readonly content = h('div', { id: 'shield-content', hidden: true });
  private readonly chart = new LiveChart({
    title: 'Packets per second by layer',
    // drawn in this order: the attack layers over the passed connections (which a SYN flood on a
    // cookies service also counts as SYN)
    series: [
      { label: 'new connections passed', stroke: '#2f7a3b', dash: [6, 4] },
      { label: 'SYN', stroke: '#b3261e' },
      { label: 'UDP', stroke: '#1f5fa8' },
      { label: 'bad flags', stroke: '#7a5200' },
    ],
    format: pps,
  });
  private readonly eventsBody = h('tbody', { id: 'shield-events-rows' });
  private readonly servicesBody = h('tbody');
  private readonly counters = h('dl', { class: 'kv', id: 'shield-counters' });
  private readonly blocklist: ShieldList;
  private readonly allowlist: ShieldList;
  private events = new Map<string, Attack>();
  private running: boolean | null = null;
  private stop: (() => void) | null = null;
  private ticker: number | undefined;

  constructor(private readonly ctx: AppContext) {
    const announce = (text: string): void => {
      this.state.textContent = text;
    };
    this.blocklist = new ShieldList('blocklist', announce);
    this.allowlist = new ShieldList('allowlist', announce);
    const head = (...titles: string[]): HTMLTableSectionElement => h('thead', {}, h('tr', {}, ...titles.map((t) => h('th', { scope: 'col' }, t))));
    replace(
      this.content,
      this.chart.element,
      h('section', { 'aria-labelledby': 'shield-events-title' }, h('h3', { id: 'shield-events-title' }, 'Attacks'), h('table', { class: 'grid', id: 'shield-events' }, h('caption', { class: 'visually-hidden' }, 'Attack events, newest first'), head('Kind', 'Started', 'Ended', 'Peak', 'Packets', 'Top sources'), this.eventsBody)),
      h('section', { 'aria-labelledby': 'shield-services-title' }, h('h3', { id: 'shield-services-title' }, 'Protected services'), h('table', { class: 'grid', id: 'shield-services' }, h('caption', { class: 'visually-hidden' }, 'Per service counters since the shield started'), head('Service', 'Protocol', 'Ports', 'Passed', 'Over rate', 'Over connections', 'Synproxy'), this.servicesBody), this.counters),
      this.blocklist.element,
      this.allowlist.element,
    );
    this.element = h('section', { id: 'view-shield', 'aria-labelledby': 'shield-title', hidden: true }, h('h2', { id: 'shield-title' }, 'Shield'), this.state, this.alert, this.content);
    ctx.shieldStream.on<ShieldRatesEvent>('rates', (r) => this.onRates(r));
    ctx.shieldStream.on<{ type: 'started' | 'updated' | 'ended'; attack: Attack }>('attack', (m) => this.onAttack(m.type, m.attack));
  }

  show(): void {
    this.chart.draw();
    this.stop?.();
    this.stop = poll(() => this.load(), STATUS_POLL_MS);
    window.clearInterval(this.ticker);
    this.ticker = window.setInterval(() => {
      this.blocklist.tick();
      this.allowlist.tick();
    }, 1000);
  }

  hide(): void {
    this.stop?.();
    this.stop = null;
    window.clearInterval(this.ticker);
  }

  reset(): void {
    this.running = null;
    this.events.clear();
    this.eventsBody.replaceChildren();
  }

  private async load(): Promise<void> {
    let status: ShieldStatus;
    try {
      if (!(await serviceRunning('shield'))) throw new ApiError(404, 'not_running', 'shield is not running');
      status = await api<ShieldStatus>('GET', '/api/v1/shield');
    } catch (e) {
      this.content.hidden = true;
      if (e instanceof ApiError && e.status === 404) {
        this.running = false;
        this.ctx.shieldStream.close();
        this.state.textContent = 'shield is not running';
      } else {
        this.state.textContent = `shield: ${messageOf(e)}`;
      }
      return;
    }
    const first = this.running !== true;
    this.running = true;
    this.content.hidden = false;
    // the stream is opened once the shield is known to run (a refused stream would be an error)
    this.ctx.shieldStream.open();
    this.renderStatus(status);
    if (first) {
      try {
        const events = (await api<{ events: Attack[] }>('GET', '/api/v1/shield/events?limit=50')).events;
        for (const a of events) if (!this.events.has(attackKey(a))) this.events.set(attackKey(a), a);
      } catch (e) {
        this.alert.textContent = `attack events: ${messageOf(e)}`;
      }
      this.chart.draw();
    }
    for (const a of status.attacks) this.events.set(attackKey(a), a);
    this.renderEvents();
    await Promise.all([this.blocklist.load(), this.allowlist.load()]);
  }

  private renderStatus(s: ShieldStatus): void {
    const text = `${s.mode} mode, table ${s.table} ${s.loaded ? 'loaded' : 'NOT loaded'}${s.interfaces.length > 0 ? ` on ${s.interfaces.join(', ')}` : ''}${s.attacks.length > 0 ? `; ${s.attacks.length} attack${s.attacks.length === 1 ? '' : 's'} going on` : '; no attack going on'}${s.tightened.length > 0 ? `; tightened: ${s.tightened.join(', ')}` : ''}`;
    if (this.state.textContent !== text) this.state.textContent = text;
    replace(
      this.servicesBody,
      ...s.services.map((v) =>
        h('tr', {}, h('td', {}, v.name), h('td', {}, v.protocol), h('td', {}, portsText(v.address, v.ports)), h('td', {}, String(v.passed)), h('td', {}, String(v.overRate)), h('td', {}, String(v.overConns)), h('td', {}, String(v.synproxy))),
      ),
    );
    const flags = Object.entries(s.flags).map(([k, n]) => `${k} ${n}`).join(', ');
    replace(
      this.counters,
      h('dt', {}, 'blocked (manual / meter / global cap)'),
      h('dd', {}, `${s.blocked.manual} / ${s.blocked.meter} / ${s.blocked.globalCap} packets`),
      h('dt', {}, 'allowlisted'),
      h('dd', {}, `${s.allowlisted} packets`),
      h('dt', {}, 'bad flag drops'),
      h('dd', {}, flags || 'none'),
    );
  }

  private onRates(r: ShieldRatesEvent): void {
    let passed = 0;
    for (const [name, v] of Object.entries(r.rates)) if (/^svc_.+_passed$/.test(name)) passed += v;
    const s = r.signals;
    this.chart.push(Date.parse(r.at) || Date.now(), [Math.round(passed), s.syn_flood ?? 0, s.udp_flood ?? 0, s.tcp_flags ?? 0]);
  }

  private onAttack(type: 'started' | 'updated' | 'ended', a: Attack): void {
    this.events.set(attackKey(a), a);
    if (type === 'started') this.alert.textContent = `${KIND_TITLES[a.kind] ?? a.kind} started at ${clock(a.startedAt)}`;
    if (type === 'ended') this.alert.textContent = `${KIND_TITLES[a.kind] ?? a.kind} ended at ${clock(a.endedAt ?? new Date().toISOString())}, peak ${pps(a.peakPps)}`;
    this.renderEvents();
  }

  private renderEvents(): void {
    const list = [...this.events.values()].sort((x, y) => y.startedAt.localeCompare(x.startedAt));
    if (list.length > MAX_EVENTS) {
      for (const a of list.splice(MAX_EVENTS)) this.events.delete(attackKey(a));
    }
    if (list.length === 0) {
      replace(this.eventsBody, h('tr', {}, h('td', { colspan: 6 }, 'no attacks seen')));
      return;
    }
    replace(
      this.eventsBody,
      ...list.map((a) =>
        h(
          'tr',
          { class: a.endedAt === null ? 'ongoing' : '', 'data-kind': a.kind },
          h('td', {}, KIND_TITLES[a.kind] ?? a.kind),
          h('td', {}, clock(a.startedAt)),
          h('td', {}, a.endedAt === null ? 'ongoing' : clock(a.endedAt)),
          h('td', {}, pps(a.peakPps)),
          h('td', {}, String(a.packets)),
          h('td', {}, topSourcesText(a)),
        ),
      ),
    );
  }
}

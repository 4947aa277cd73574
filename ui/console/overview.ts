// The overview: each service's state, and the gateway's figures live from the `stats` events
// (throughput each way, connections per second, active connections, MPTCP share) as charts over
// the last five minutes. The charts are fed from sign-in on, whichever view is open.
import { api, messageOf } from './api.js';
import { LiveChart } from './chart.js';
import { bitRate, h, replace } from './dom.js';
import type { ServiceState, StatsEvent } from './types.js';
import type { AppContext, View } from './view.js';

const SERVICE_TITLES: Record<string, string> = { socks: 'SOCKS proxy', intercept: 'Transparent intercept', rendezvous: 'Rendezvous (STUN/TURN)', shield: 'Shield' };

export class OverviewView implements View {
  readonly id = 'overview';
  readonly title = 'Overview';
  readonly element: HTMLElement;
  private readonly services = h('ul', { class: 'services', id: 'overview-services' });
  private readonly status = h('p', { class: 'status', role: 'status' });
  private shownServices = '';
  private readonly figures: Record<string, HTMLElement> = {};
  private readonly throughput = new LiveChart({ title: 'Throughput', series: [{ label: 'up', stroke: '#1f5fa8' }, { label: 'down', stroke: '#b3461b' }], format: bitRate });
  private readonly rate = new LiveChart({ title: 'Connections', series: [{ label: 'new per second', stroke: '#5b2a86' }, { label: 'active', stroke: '#2f7a3b' }], format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)) });
  private readonly share = new LiveChart({ title: 'MPTCP share of new connections', series: [{ label: 'MPTCP', stroke: '#1f5fa8' }], format: (v) => `${Math.round(v)} %`, range: [0, 100] });

  constructor(ctx: AppContext) {
    const figure = (key: string, label: string): HTMLElement => {
      const dd = h('dd', { id: `figure-${key}` }, '-');
      this.figures[key] = dd;
      return h('div', { class: 'figure' }, h('dt', {}, label), dd);
    };
    this.element = h(
      'section',
      { id: 'view-overview', 'aria-labelledby': 'overview-title', hidden: true },
      h('h2', { id: 'overview-title' }, 'Overview'),
      this.status,
      h('h3', {}, 'Services'),
      this.services,
      h('h3', {}, 'Now'),
      h(
        'dl',
        { class: 'figures' },
        figure('active', 'active connections'),
        figure('cps', 'new connections per second'),
        figure('up', 'throughput up'),
        figure('down', 'throughput down'),
        figure('mptcp', 'MPTCP share'),
        figure('total', 'connections since start'),
        figure('fallbacks', 'MPTCP connections / fallbacks'),
      ),
      h('div', { class: 'charts' }, this.throughput.element, this.rate.element, this.share.element),
    );
    ctx.stream.on<StatsEvent>('stats', (s) => this.onStats(s));
  }

  show(): void {
    for (const c of [this.throughput, this.rate, this.share]) c.draw();
    api<{ services: ServiceState[] }>('GET', '/api/v1/services').then(
      (r) => this.renderServices(r.services),
      (e: unknown) => (this.status.textContent = `services: ${messageOf(e)}`),
    );
  }

  hide(): void {}

  private onStats(s: StatsEvent): void {
    const t = Date.parse(s.time) || Date.now();
    this.throughput.push(t, [s.bytesUpPerSecond, s.bytesDownPerSecond]);
    this.rate.push(t, [s.connectionsPerSecond, s.active]);
    this.share.push(t, [s.mptcpShare === null ? null : s.mptcpShare * 100]);
    const set = (k: string, v: string): void => {
      const e = this.figures[k];
      if (e && e.textContent !== v) e.textContent = v;
    };
    set('active', String(s.active));
    set('cps', s.connectionsPerSecond.toFixed(1));
    set('up', bitRate(s.bytesUpPerSecond));
    set('down', bitRate(s.bytesDownPerSecond));
    set('mptcp', s.mptcpShare === null ? 'no new connections' : `${Math.round(s.mptcpShare * 100)} %`);
    set('total', String(s.connectionsTotal));
    set('fallbacks', `${s.mptcpConnections} / ${s.mptcpFallbacks}`);
    if (Array.isArray(s.services)) this.renderServices(s.services);
    this.status.textContent = '';
  }

  private renderServices(list: ServiceState[]): void {
    const key = JSON.stringify(list);
    if (this.shownServices === key) return;
    this.shownServices = key;
    replace(
      this.services,
      ...list.map((s) =>
        h(
          'li',
          { 'data-service': s.name, class: s.running ? 'running' : 'stopped' },
          h('strong', {}, SERVICE_TITLES[s.name] ?? s.name),
          ' ',
          h('span', { class: 'state' }, s.running ? 'running' : 'not running'),
          s.listen.length > 0 ? h('span', { class: 'listen' }, `on ${s.listen.join(', ')}`) : null,
          s.detail ? h('span', { class: 'detail' }, s.detail) : null,
        ),
      ),
    );
  }
}

// The gateway's log: the last lines (GET /api/v1/logs), then each new line as it is written (`log`
// events of the shared stream), at or above the chosen level. The DOM holds the last 1000 lines at
// most, so a busy gateway cannot grow the page without bound.
import { api, messageOf } from './api.js';
import { clock, field, h, select } from './dom.js';
import type { LogLevel, LogLine } from './types.js';
import type { AppContext, View } from './view.js';

const MAX_LINES = 1000;
const LEVELS: LogLevel[] = ['debug', 'info', 'warn', 'error'];
const RANK: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };
const SKIP = new Set(['time', 'level', 'msg', 'thread']);

function fieldsText(line: LogLine): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(line)) {
    if (SKIP.has(k) || v === undefined) continue;
    parts.push(`${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`);
  }
  return parts.join(' ');
}

export class LogsView implements View {
  readonly id = 'logs';
  readonly title = 'Logs';
  readonly element: HTMLElement;
  private readonly level = select(LEVELS.map((l) => [l, l]), 'info');
  private readonly follow = h('input', { type: 'checkbox', id: 'logs-follow', checked: true });
  private readonly list = h('ol', { id: 'log-lines', class: 'log', tabindex: 0, 'aria-label': 'log lines, oldest first' });
  private readonly status = h('p', { id: 'logs-status', class: 'status', role: 'status' });
  private unsubscribe: (() => void) | null = null;
  /** lines that arrived while the last ones were being fetched */
  private queued: LogLine[] | null = null;
  private generation = 0;

  constructor(private readonly ctx: AppContext) {
    this.level.id = 'logs-level';
    this.level.addEventListener('change', () => void this.load());
    this.follow.addEventListener('change', () => {
      if (this.follow.checked) this.scrollToEnd();
    });
    this.element = h(
      'section',
      { id: 'view-logs', 'aria-labelledby': 'logs-title', hidden: true },
      h('h2', { id: 'logs-title' }, 'Logs'),
      h('div', { class: 'toolbar' }, field('Level at least', this.level), h('div', { class: 'field check' }, this.follow, h('label', { for: this.follow.id }, 'follow new lines'))),
      this.status,
      this.list,
    );
  }

  show(): void {
    this.unsubscribe?.();
    this.unsubscribe = this.ctx.stream.on<LogLine>('log', (l) => this.onLine(l));
    void this.load();
  }

  hide(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  reset(): void {
    this.list.replaceChildren();
  }

  private async load(): Promise<void> {
    const gen = ++this.generation;
    this.queued = [];
    try {
      const r = await api<{ lines: LogLine[] }>('GET', `/api/v1/logs?level=${encodeURIComponent(this.level.value)}&limit=${MAX_LINES}`);
      if (gen !== this.generation) return;
      this.list.replaceChildren(...r.lines.slice(-MAX_LINES).map((l) => this.lineElement(l)));
      const last = r.lines.slice(-20).map((l) => `${l.time}\n${l.msg}`);
      const queued = this.queued;
      this.queued = null;
      for (const l of queued) if (!last.includes(`${l.time}\n${l.msg}`)) this.append(l);
      this.status.textContent = '';
      this.scrollToEnd();
    } catch (e) {
      if (gen !== this.generation) return;
      this.queued = null;
      this.status.textContent = `logs: ${messageOf(e)}`;
    }
  }

  private onLine(l: LogLine): void {
    if ((RANK[l.level] ?? 1) < (RANK[this.level.value] ?? 1)) return;
    if (this.queued) {
      this.queued.push(l);
      return;
    }
    this.append(l);
    this.scrollToEnd();
  }

  private append(l: LogLine): void {
    this.list.append(this.lineElement(l));
    while (this.list.childElementCount > MAX_LINES) this.list.firstElementChild!.remove();
  }

  private scrollToEnd(): void {
    if (this.follow.checked) this.list.scrollTop = this.list.scrollHeight;
  }

  private lineElement(l: LogLine): HTMLLIElement {
    const fields = fieldsText(l);
    return h(
      'li',
      { class: `lvl-${LEVELS.includes(l.level) ? l.level : 'info'}` },
      h('time', { datetime: l.time }, clock(l.time)),
      ' ',
      h('span', { class: 'level' }, l.level),
      ' ',
      l.thread !== undefined ? h('span', { class: 'thread' }, `[${String(l.thread)}]`) : null,
      ' ',
      h('span', { class: 'msg' }, l.msg),
      fields ? h('span', { class: 'fields' }, ` ${fields}`) : null,
    );
  }
}

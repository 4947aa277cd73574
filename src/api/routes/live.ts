// Routes of what the console watches: the services' state, what the kernel offers, the recent log
// lines of every thread, and one server-sent event stream with the totals and rates each second and
// the log lines as they come.
import type { ServerResponse } from 'node:http';
import type { FastifyPluginAsync } from 'fastify';
import { availableCongestionControls, defaultCongestionControl, mptcpCapabilities } from '../../kernel/capabilities.js';
import { ALL_THREADS, recentLog, sinceFor } from '../../log/recent.js';
import { pathManagerChoices } from '../../policy/service.js';
import type { Stats } from '../../relay/metrics.js';
import { errors, type ApiDeps, type ThreadLogLines } from '../common.js';
import * as S from '../schemas.js';

/** Event streams open at once; more get 503. */
export const MAX_STREAMS = 32;
/** The window the stream's MPTCP share is taken over (connections opened in it). */
const SHARE_WINDOW_S = 10;
const LEVEL_RANK: Record<string, number> = { debug: 0, info: 1, warn: 2, error: 3 };

type LogLine = { time: string; level: string; msg: string; thread: number } & Record<string, unknown>;

/** One thread's JSON lines as the API shows them (the worker field becomes `thread`). */
function parseLines(t: ThreadLogLines): LogLine[] {
  const out: LogLine[] = [];
  for (const text of t.lines) {
    try {
      const { worker, ...rest } = JSON.parse(text) as Record<string, unknown>;
      out.push({ ...rest, time: String(rest.time ?? ''), level: String(rest.level ?? 'info'), msg: String(rest.msg ?? ''), thread: typeof worker === 'number' ? worker : t.thread });
    } catch {
      // a line that is not JSON (pretty format never reaches the ring: it keeps the JSON) is skipped
    }
  }
  return out;
}

/** This thread's lines after since[0], and every worker's after its own. */
async function collectLines(deps: ApiDeps, since: Record<number, number>): Promise<ThreadLogLines[]> {
  const here = { thread: 0, ...recentLog.since(sinceFor(since, 0)) };
  return [here, ...(deps.remote?.logs ? await deps.remote.logs(since) : [])];
}

/**
 * The event streams' one sampler: each second, while any stream is open, the totals are read once
 * (every thread's metrics, over messages) and the new log lines collected once, and the events go
 * to every stream. A new stream gets the last `stats` event at once.
 */
class LiveFeed {
  private readonly streams = new Set<ServerResponse>();
  private timer: NodeJS.Timeout | null = null;
  private cursors: Record<number, number> | null = null;
  private readonly history: Array<{ total: number; mptcp: number }> = [];
  private previous: { at: number; stats: Stats } | null = null;
  private last: string | null = null;
  private busy = false;

  constructor(
    private readonly deps: ApiDeps,
    private readonly snapshot: () => Promise<Stats>,
    private readonly services: () => S.ServiceStateType[],
  ) {}

  /** Adds a stream (false: too many); it leaves when it closes. */
  add(res: ServerResponse): boolean {
    if (this.streams.size >= MAX_STREAMS) return false;
    this.streams.add(res);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', connection: 'keep-alive' });
    res.on('close', () => {
      this.streams.delete(res);
      if (this.streams.size > 0 || !this.timer) return;
      clearInterval(this.timer);
      this.timer = null;
    });
    if (this.last !== null) res.write(this.last);
    if (!this.timer) {
      this.timer = setInterval(() => void this.tick(), 1000);
      void this.tick();
    }
    return true;
  }

  private async tick(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      // the lines logged before the first stream opened are GET /api/v1/logs's, not the stream's
      if (this.cursors === null) {
        this.cursors = {};
        for (const t of await collectLines(this.deps, { [ALL_THREADS]: Number.MAX_SAFE_INTEGER })) this.cursors[t.thread] = t.last;
      }
      const at = Date.now();
      const stats = await this.snapshot();
      this.history.push({ total: stats.connectionsTotal, mptcp: stats.mptcpConnections });
      while (this.history.length > SHARE_WINDOW_S + 1) this.history.shift();
      const first = this.history[0]!;
      const opened = stats.connectionsTotal - first.total;
      const previous = this.previous;
      const seconds = previous ? (at - previous.at) / 1000 : 0;
      const rate = (now: number, then: number | undefined): number => (seconds > 0 ? Math.max(0, (now - (then ?? now)) / seconds) : 0);
      this.last = event('stats', {
        time: new Date(at).toISOString(),
        active: stats.active,
        connectionsTotal: stats.connectionsTotal,
        bytesUp: stats.bytesUp,
        bytesDown: stats.bytesDown,
        mptcpConnections: stats.mptcpConnections,
        mptcpFallbacks: stats.mptcpFallbacks,
        connectionsPerSecond: rate(stats.connectionsTotal, previous?.stats.connectionsTotal),
        bytesUpPerSecond: rate(stats.bytesUp, previous?.stats.bytesUp),
        bytesDownPerSecond: rate(stats.bytesDown, previous?.stats.bytesDown),
        mptcpShare: opened > 0 ? (stats.mptcpConnections - first.mptcp) / opened : null,
        services: this.services(),
      });
      this.previous = { at, stats };
      const fresh = await collectLines(this.deps, this.cursors);
      for (const t of fresh) this.cursors[t.thread] = t.last;
      const lines = fresh.flatMap(parseLines).sort((a, b) => a.time.localeCompare(b.time));
      const out = this.last + lines.map((l) => event('log', l)).join('');
      for (const res of this.streams) if (!res.destroyed) res.write(out);
    } catch (e) {
      this.deps.logger.debug('api: event stream tick failed', { error: (e as Error).message });
    } finally {
      this.busy = false;
    }
  }
}

export function liveRoutes(deps: ApiDeps, snapshot: () => Promise<Stats>): FastifyPluginAsync {
  const services = (): S.ServiceStateType[] => deps.services?.() ?? [];
  const feed = new LiveFeed(deps, snapshot, services);
  return async (app) => {
    const tags = ['status'];

    app.get('/services', { schema: { tags, summary: "Each service's state: running or not, where it listens", response: { 200: S.ServiceStates, ...errors() } } }, async () => ({ services: services() }));

    app.get('/kernel', { schema: { tags, summary: 'What this kernel offers policies: congestion controls, MPTCP schedulers and path managers', response: { 200: S.KernelOffer, ...errors() } } }, async () => {
      const m = mptcpCapabilities();
      return {
        congestionControls: availableCongestionControls(),
        defaultCongestion: defaultCongestionControl() ?? null,
        mptcp: { enabled: m.enabled, schedulers: m.schedulers, pathManagers: pathManagerChoices(m.pathManagers), scheduler: m.scheduler, pathManager: m.pathManager },
      };
    });

    app.get<{ Querystring: { level?: string; limit?: string } }>(
      '/logs',
      { schema: { tags, summary: 'The last log lines of every thread, oldest first', querystring: S.LogsQuery, response: { 200: S.LogLines, ...errors(400) } } },
      async (req) => {
        const min = LEVEL_RANK[req.query.level ?? 'debug'] ?? 0;
        const limit = req.query.limit === undefined ? 200 : Number(req.query.limit);
        const lines = (await collectLines(deps, {})).flatMap(parseLines).filter((l) => (LEVEL_RANK[l.level] ?? 0) >= min);
        lines.sort((a, b) => a.time.localeCompare(b.time));
        return { lines: lines.slice(-limit) };
      },
    );

    app.get('/stream', { schema: { tags, summary: 'Server-sent events: `stats` each second (totals, rates, MPTCP share, services) and `log` (each new log line)', produces: ['text/event-stream'], response: { 503: S.ErrorBody } } }, async (_req, reply) => {
      reply.hijack();
      const res = reply.raw;
      if (!feed.add(res)) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'too_many_streams', field: null, message: `at most ${MAX_STREAMS} event streams at once` } }));
      }
    });
  };
}

/** One server-sent event. */
function event(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

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

export function liveRoutes(deps: ApiDeps, snapshot: () => Promise<Stats>): FastifyPluginAsync {
  let streams = 0;
  const services = (): S.ServiceStateType[] => deps.services?.() ?? [];
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

    app.get('/stream', { schema: { tags, summary: 'Server-sent events: `stats` each second (totals, rates, MPTCP share, services) and `log` (each new log line)', produces: ['text/event-stream'], response: { 503: S.ErrorBody } } }, async (req, reply) => {
      reply.hijack();
      const res = reply.raw;
      if (streams >= MAX_STREAMS) {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'too_many_streams', field: null, message: `at most ${MAX_STREAMS} event streams at once` } }));
        return;
      }
      streams++;
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', connection: 'keep-alive' });
      const cursors: Record<number, number> = {};
      for (const t of await collectLines(deps, { [ALL_THREADS]: Number.MAX_SAFE_INTEGER })) cursors[t.thread] = t.last;
      const history: Array<{ at: number; total: number; mptcp: number }> = [];
      let previous: { at: number; stats: Stats } | null = null;
      let busy = false;
      const tick = async (): Promise<void> => {
        if (busy || res.destroyed) return;
        busy = true;
        try {
          const at = Date.now();
          const stats = await snapshot();
          history.push({ at, total: stats.connectionsTotal, mptcp: stats.mptcpConnections });
          while (history.length > SHARE_WINDOW_S + 1) history.shift();
          const first = history[0]!;
          const opened = stats.connectionsTotal - first.total;
          const seconds = previous ? (at - previous.at) / 1000 : 0;
          const rate = (now: number, then: number | undefined): number => (previous && seconds > 0 ? Math.max(0, (now - (then ?? now)) / seconds) : 0);
          send(res, 'stats', {
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
            services: services(),
          });
          previous = { at, stats };
          const fresh = await collectLines(deps, cursors);
          for (const t of fresh) cursors[t.thread] = t.last;
          const lines = fresh.flatMap(parseLines).sort((a, b) => a.time.localeCompare(b.time));
          for (const l of lines) send(res, 'log', l);
        } catch (e) {
          deps.logger.debug('api: event stream tick failed', { error: (e as Error).message });
        } finally {
          busy = false;
        }
      };
      const timer = setInterval(() => void tick(), 1000);
      void tick();
      res.on('close', () => {
        clearInterval(timer);
        streams--;
      });
    });
  };
}

function send(res: ServerResponse, event: string, data: unknown): void {
  if (!res.destroyed) res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

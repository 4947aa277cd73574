// Routes of the gateway's state: open connections (every thread's), totals, Prometheus metrics.
import type { FastifyPluginAsync } from 'fastify';
import type { Stats } from '../../relay/metrics.js';
import { connectionView } from '../../relay/view.js';
import * as S from '../schemas.js';
import { errors, METRICS_CONTENT_TYPE, type ApiDeps } from '../common.js';

export function statusRoutes(deps: ApiDeps, snapshot: () => Promise<Stats>, metricsText: () => Promise<string>): FastifyPluginAsync {
  const { policies, users, registry } = deps;
  return async (app) => {

    app.get<{ Querystring: { limit?: string } }>(
      '/api/v1/connections',
      { schema: { tags: ['status'], summary: 'Open connections', querystring: S.ConnectionsQuery, response: { 200: S.ConnectionList, ...errors(400) } } },
      async (req) => {
        const limit = req.query.limit === undefined ? Infinity : Number(req.query.limit);
        const all = registry.list();
        const local = { total: all.length, connections: all.slice(0, limit).map(connectionView) };
        if (!deps.remote) return local;
        const others = await deps.remote.connections(limit);
        const connections = [...local.connections, ...others.connections]
          .sort((a, b) => String(a.startedAt).localeCompare(String(b.startedAt)) || Number(a.id) - Number(b.id))
          .slice(0, limit);
        return { total: local.total + others.total, connections };
      },
    );

    app.get('/api/v1/stats', { schema: { tags: ['status'], summary: 'Totals since start', response: { 200: S.Stats, ...errors() } } }, async () => ({
      ...(await snapshot()),
      policies: policies.list().length,
      users: await users.count(),
    }));

    app.get(
      '/metrics',
      {
        schema: {
          tags: ['status'],
          summary: 'Prometheus metrics',
          response: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } }, 401: S.ErrorBody },
        },
      },
      async (_req, reply) => {
        reply.type(METRICS_CONTENT_TYPE);
        return metricsText();
      },
    );
  };
}

// The REST API: policies, users, open connections, statistics, Prometheus metrics and the OpenAPI
// document, all behind one bearer token except /health and /api/docs. Routes talk to the services
// through their public surface; the TypeBox schemas in schemas.ts are the only validation.
import swagger from '@fastify/swagger';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { UserService } from '../auth/users.js';
import type { Logger } from '../log/logger.js';
import { legacyFieldOf, looksLegacy, translateLegacy, type LegacyPolicy } from '../policy/legacy.js';
import type { LiveUpdate } from '../transport/live.js';
import { PolicyError, type PolicyService } from '../policy/service.js';
import type { Transport as TransportValue } from '../policy/types.js';
import { mptcpCapabilities } from '../kernel/capabilities.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import { connectionView, mergeSnapshots, type Snapshot } from '../relay/view.js';
import { ApiError, errorReply, renameField, validationError, type ErrorReply } from './errors.js';
import { METRICS_CONTENT_TYPE, renderMetrics } from './metrics.js';
import * as S from './schemas.js';

export interface ApiDeps {
  policies: PolicyService;
  users: UserService;
  registry: ConnectionRegistry;
  /** the connections of the other threads (worker threads serving SOCKS), when there are any */
  remote?: RemoteConnections;
  /** checks a presented bearer token */
  verifyToken(token: string): boolean;
  /** re-applies policies to open connections; called after every policy change */
  reapply(): LiveUpdate | Promise<LiveUpdate>;
  logger: Logger;
  version: string;
}

/** Connections held by other threads, asked for over messages. */
export interface RemoteConnections {
  connections(limit: number): Promise<{ total: number; connections: Array<Record<string, unknown>> }>;
  snapshots(): Promise<Snapshot[]>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** reachable without the bearer token */
    public?: boolean;
    /** for a body schema that is a top-level anyOf: which alternative the body is meant to be */
    bodyBranch?: (body: unknown) => number;
  }
}

/** Largest request body, except bulk imports. */
export const BODY_LIMIT = 1024 * 1024;
export const BULK_BODY_LIMIT = 8 * 1024 * 1024;

const JSON_TYPES = ['application/json', 'application/merge-patch+json'];

function errors(...codes: number[]): Record<number, typeof S.ErrorBody> {
  const out: Record<number, typeof S.ErrorBody> = { 401: S.ErrorBody, 500: S.ErrorBody };
  for (const c of codes) out[c] = S.ErrorBody;
  return out;
}
const BODY_ERRORS = [400, 413, 415];

/** Defense in depth: no "__proto__" key reaches code that copies fields (the schemas reject it too). */
function rejectProto(key: string, value: unknown): unknown {
  if (key === '__proto__') throw new SyntaxError('"__proto__" is not allowed as a key');
  return value;
}

/** JSON body parser that says where the JSON is broken. */
function parseJson(req: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  const text = typeof body === 'string' ? body : body.toString('utf8');
  if (text.length === 0 && req.method === 'DELETE') {
    done(null, undefined); // some clients send a JSON content-type on every request
    return;
  }
  if (text.length === 0) {
    done(new ApiError(400, 'invalid_json', 'body', 'body is empty but content-type is JSON'));
    return;
  }
  try {
    done(null, JSON.parse(text, rejectProto));
  } catch (e) {
    done(new ApiError(400, 'invalid_json', 'body', `body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`));
  }
}

function sendError(reply: FastifyReply, r: ErrorReply): FastifyReply {
  if (r.status === 401) reply.header('www-authenticate', r.body.error.code === 'invalid_token' ? 'Bearer realm="edgeward", error="invalid_token"' : 'Bearer realm="edgeward"');
  return reply.code(r.status).type('application/json; charset=utf-8').send(r.body);
}

/** Builds the API (not listening: the caller calls `listen`). */
export async function createApi(deps: ApiDeps): Promise<FastifyInstance> {
  const { policies, users, registry, logger } = deps;
  const snapshot = async (): Promise<Snapshot> => {
    const local = registry.snapshot();
    return deps.remote ? (await deps.remote.snapshots()).reduce(mergeSnapshots, local) : local;
  };
  const app = Fastify({
    logger: false,
    bodyLimit: BODY_LIMIT,
    routerOptions: { maxParamLength: 300 },
    ajv: {
      // unknown fields are errors, never silently dropped; no type coercion: "1" is not 1
      customOptions: { removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, verbose: true, allowUnionTypes: true },
    },
  });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser(JSON_TYPES, { parseAs: 'string' }, parseJson);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'edgeward',
        version: deps.version,
        description: 'Transport policy (MPTCP, congestion control, Nagle, keepalive) per destination, users, connections and statistics of an edgeward gateway.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'the token from EDGEWARD_API_TOKEN or DATA/api-token' } } },
      security: [{ bearer: [] }],
    },
  });

  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config?.public === true) return;
    const header = req.headers.authorization;
    const m = header === undefined ? null : /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
    if (!m) {
      return sendError(reply, {
        status: 401,
        body: { error: { code: 'unauthorized', field: 'headers.authorization', message: 'missing bearer token: send "Authorization: Bearer TOKEN" (the token is EDGEWARD_API_TOKEN or the file DATA/api-token)' } },
      });
    }
    if (!deps.verifyToken(m[1]!)) {
      logger.warn('api: wrong bearer token', { ip: req.ip });
      return sendError(reply, { status: 401, body: { error: { code: 'invalid_token', field: 'headers.authorization', message: 'the bearer token is wrong' } } });
    }
  });

  app.addHook('onResponse', async (req, reply) => {
    if (logger.enabled('debug')) {
      logger.debug('api', { method: req.method, route: req.routeOptions.url ?? '(none)', status: reply.statusCode, ms: Math.round(reply.elapsedTime) });
    }
  });

  app.setErrorHandler((err: FastifyError, req, reply) => {
    let r: ErrorReply & { internal?: boolean };
    if (err.validation) {
      const branch = req.routeOptions.config?.bodyBranch;
      r = validationError(err.validation, err.validationContext ?? 'body', branch && err.validationContext === 'body' ? () => branch(req.body) : undefined);
    } else {
      r = errorReply(err);
    }
    if (r.internal) logger.error('api: internal error', { method: req.method, route: req.routeOptions.url ?? '(none)', error: err.stack ?? String(err) });
    return sendError(reply, r);
  });

  app.setNotFoundHandler((req, reply) =>
    sendError(reply, { status: 404, body: { error: { code: 'not_found', field: null, message: `no route ${req.method} ${req.url.split('?')[0]}` } } }),
  );

  // ---- public ----

  app.get('/health', { config: { public: true }, schema: { summary: 'Liveness', security: [], response: { 200: S.Health } } }, async () => ({
    status: 'ok' as const,
    version: deps.version,
  }));

  app.get('/api/docs', { config: { public: true }, schema: { hide: true } }, async () => app.swagger());

  // ---- policies ----

  const tags = { policies: ['policies'], users: ['users'], status: ['status'] };

  app.get('/api/v1/policies', { schema: { tags: tags.policies, summary: 'List policies', response: { 200: S.PolicyList, ...errors() } } }, async () => ({
    policies: policies.list(),
  }));

  app.post<{ Body: S.PolicyInputBody | S.LegacyPolicyBody }>(
    '/api/v1/policies',
    {
      config: { bodyBranch: (body) => (looksLegacy(body) ? 1 : 0) },
      schema: {
        tags: tags.policies,
        summary: 'Create a policy',
        description: 'Takes a policy, or the legacy body of the original system ({"enable","ip","scheduler","path_manager"}), which is translated; `notes` says how.',
        body: S.CreatePolicyBody,
        response: { 201: S.PolicyChanged, ...errors(...BODY_ERRORS, 409, 422) },
      },
    },
    async (req, reply) => {
      let created;
      let notes: string[] | undefined;
      if (looksLegacy(req.body)) {
        const t = translateLegacy(req.body as LegacyPolicy);
        if (!t.ok) {
          const available = t.error.field === 'path_manager' ? mptcpCapabilities().pathManagers : undefined;
          throw new ApiError(422, t.error.code, `body.${t.error.field}`, t.error.message, available);
        }
        notes = t.notes;
        try {
          created = await policies.create(t.input);
        } catch (e) {
          if (!(e instanceof PolicyError)) throw e;
          const legacy = legacyFieldOf(e.field);
          throw legacy && e.field ? renameField(e, e.field, `body.${legacy}`) : e;
        }
      } else {
        created = await policies.create(req.body as S.PolicyInputBody);
      }
      const liveUpdate = await deps.reapply();
      reply.code(201).header('location', `/api/v1/policies/${created.id}`);
      return notes && notes.length > 0 ? { ...created, liveUpdate, notes } : { ...created, liveUpdate };
    },
  );

  app.post<{ Body: S.BulkBodyType }>(
    '/api/v1/policies/bulk',
    {
      bodyLimit: BULK_BODY_LIMIT,
      schema: {
        tags: tags.policies,
        summary: 'Create many policies, all or none',
        description: `Up to ${S.MAX_BULK} policies in one transaction; an error names the first bad entry as policies[i].`,
        body: S.BulkBody,
        response: { 201: S.BulkCreated, ...errors(...BODY_ERRORS, 409, 422) },
      },
    },
    async (req, reply) => {
      const created = await policies.createMany(req.body.policies);
      const liveUpdate = await deps.reapply();
      reply.code(201);
      return { policies: created, liveUpdate };
    },
  );

  app.get('/api/v1/policies/default', { schema: { tags: tags.policies, summary: 'The default transport', description: 'Applies to destinations no policy matches, and fills the fields a matching policy leaves out.', response: { 200: S.Transport, ...errors() } } }, async () =>
    policies.getDefault(),
  );

  app.put<{ Body: TransportValue }>(
    '/api/v1/policies/default',
    { schema: { tags: tags.policies, summary: 'Replace the default transport', body: S.Transport, response: { 200: S.DefaultChanged, ...errors(...BODY_ERRORS, 422) } } },
    async (req) => {
      let t: TransportValue;
      try {
        t = await policies.setDefault(req.body);
      } catch (e) {
        throw e instanceof PolicyError ? renameField(e, 'transport', 'body') : e;
      }
      return { ...t, liveUpdate: await deps.reapply() };
    },
  );

  const idRoute = { tags: tags.policies, params: S.PolicyIdParams };

  app.get<{ Params: { id: string } }>('/api/v1/policies/:id', { schema: { ...idRoute, summary: 'One policy', response: { 200: S.Policy, ...errors(400, 404) } } }, async (req) =>
    policies.get(Number(req.params.id)),
  );

  app.put<{ Params: { id: string }; Body: S.PolicyInputBody }>(
    '/api/v1/policies/:id',
    { schema: { ...idRoute, summary: 'Replace a policy', body: S.PolicyInput, response: { 200: S.PolicyChanged, ...errors(...BODY_ERRORS, 404, 409, 422) } } },
    async (req) => {
      const p = await policies.replace(Number(req.params.id), req.body);
      return { ...p, liveUpdate: await deps.reapply() };
    },
  );

  app.patch<{ Params: { id: string }; Body: S.PolicyPatchBody }>(
    '/api/v1/policies/:id',
    {
      schema: {
        ...idRoute,
        summary: 'Change part of a policy (JSON merge patch)',
        description: 'Fields present replace the stored ones; null removes a field. Content-type application/json or application/merge-patch+json.',
        body: S.PolicyPatch,
        response: { 200: S.PolicyChanged, ...errors(...BODY_ERRORS, 404, 409, 422) },
      },
    },
    async (req) => {
      const p = await policies.patch(Number(req.params.id), req.body);
      return { ...p, liveUpdate: await deps.reapply() };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/api/v1/policies/:id',
    { schema: { ...idRoute, summary: 'Remove a policy', description: 'Open connections it applied to are matched again.', response: { 204: { type: 'null', description: 'removed' }, ...errors(400, 404) } } },
    async (req, reply) => {
      await policies.remove(Number(req.params.id));
      await deps.reapply();
      return reply.code(204).send();
    },
  );

  // ---- users ----

  app.get('/api/v1/users', { schema: { tags: tags.users, summary: 'List SOCKS users', response: { 200: S.UserList, ...errors() } } }, async () => ({
    users: (await users.list()).map((u) => ({ username: u.username, createdAt: u.createdAt })),
  }));

  app.post<{ Body: S.UserInputBody }>(
    '/api/v1/users',
    { schema: { tags: tags.users, summary: 'Add a SOCKS user', body: S.UserInput, response: { 201: S.User, ...errors(...BODY_ERRORS, 409, 422) } } },
    async (req, reply) => {
      const u = await users.create(req.body.username, req.body.password);
      reply.code(201);
      return { username: u.username, createdAt: u.createdAt };
    },
  );

  app.delete<{ Params: { username: string } }>(
    '/api/v1/users/:username',
    { schema: { tags: tags.users, summary: 'Remove a SOCKS user', params: S.UsernameParams, response: { 204: { type: 'null', description: 'removed' }, ...errors(400, 404) } } },
    async (req, reply) => {
      await users.remove(req.params.username);
      return reply.code(204).send();
    },
  );

  // ---- status ----

  app.get<{ Querystring: { limit?: string } }>(
    '/api/v1/connections',
    { schema: { tags: tags.status, summary: 'Open connections', querystring: S.ConnectionsQuery, response: { 200: S.ConnectionList, ...errors(400) } } },
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

  app.get('/api/v1/stats', { schema: { tags: tags.status, summary: 'Totals since start', response: { 200: S.Stats, ...errors() } } }, async () => ({
    ...(await snapshot()),
    policies: policies.list().length,
    users: await users.count(),
  }));

  app.get(
    '/metrics',
    {
      schema: {
        tags: tags.status,
        summary: 'Prometheus metrics',
        response: { 200: { description: 'Prometheus text format 0.0.4', content: { 'text/plain': { schema: { type: 'string' } } } }, 401: S.ErrorBody },
      },
    },
    async (_req, reply) => {
      reply.type(METRICS_CONTENT_TYPE);
      return renderMetrics({ snapshot: await snapshot(), policies: policies.list().length });
    },
  );

  return app;
}

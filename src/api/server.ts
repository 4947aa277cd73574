// The REST API's core: body parsing, the bearer token, errors as one JSON shape, the OpenAPI document,
// and the route plugins: policies, users, status (connections, stats, metrics), then each
// service's own routes under /api/v1. Routes talk to the services through their public
// surface; the TypeBox schemas in schemas.ts are the only validation.
import swagger from '@fastify/swagger';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import https from 'node:https';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Metrics, mergeMetrics } from '../metrics/registry.js';
import { registerRelayMetrics, statsFrom } from '../relay/metrics.js';
import { BODY_LIMIT, type ApiDeps } from './common.js';
import { ConsoleAuth, consolePages, consoleSessionRoutes } from './console.js';
import { ApiError, errorReply, validationError, type ErrorReply } from './errors.js';
import { deviceRoutes } from './routes/devices.js';
import { liveRoutes } from './routes/live.js';
import { policyRoutes } from './routes/policies.js';
import { statusRoutes } from './routes/status.js';
import { userRoutes } from './routes/users.js';
import * as S from './schemas.js';

export { BODY_LIMIT, BULK_BODY_LIMIT, type ApiDeps, type RemoteThreads } from './common.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** reachable without the bearer token */
    public?: boolean;
    /** for a body schema that is a top-level anyOf: which alternative the body is meant to be */
    bodyBranch?: (body: unknown) => number;
  }
}

const JSON_TYPES = ['application/json', 'application/merge-patch+json'];
/** JSON answers at least this long are gzipped for clients that accept it. */
const COMPRESS_FROM = 16 * 1024;
const gzipAsync = promisify(gzip);

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
  const { logger } = deps;
  let metrics = deps.metrics;
  if (!metrics) {
    metrics = new Metrics();
    registerRelayMetrics(metrics, deps.registry);
    metrics.gauge({ name: 'edgeward_policies', help: 'Transport policies stored.', aggregate: 'first', read: () => deps.policies.list().length });
  }
  const local = metrics;
  // every thread's metrics, merged (this thread first: "first" families take its values)
  const merged = async () => mergeMetrics([await local.json(), ...(deps.remote ? await deps.remote.metrics() : [])]);
  const snapshot = async () => statsFrom((await (await merged()).getMetricsAsJSON()) as Awaited<ReturnType<Metrics['json']>>);
  const metricsText = async () => (await merged()).metrics();
  const app = Fastify({
    // HTTPS when --api-tls-cert is given: the rendezvous login sends passwords
    ...(deps.tls ? { serverFactory: (handler: (req: IncomingMessage, res: ServerResponse) => void) => https.createServer({ cert: deps.tls!.cert, key: deps.tls!.key, minVersion: 'TLSv1.2' }, handler) as unknown as Server } : {}),
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

  const consoleAuth = new ConsoleAuth();
  app.addHook('onClose', async () => consoleAuth.close());
  // a removed user's console sessions end with them
  deps.users.on('removed', (username: string) => consoleAuth.sessions.endUser(username));
  app.decorateRequest('consoleSession', null);
  app.addHook('onRequest', async (req, reply) => {
    if (req.routeOptions.config?.public === true) return;
    const header = req.headers.authorization;
    if (header === undefined) {
      // the console's pages send their session cookie instead (CSRF checked for changes)
      req.consoleSession = consoleAuth.check(req);
      if (req.consoleSession) {
        consoleAuth.track(reply.raw, req.consoleSession);
        return;
      }
    }
    const m = header === undefined ? null : /^Bearer[ ]+([^\s]+)\s*$/i.exec(header);
    if (!m) {
      return sendError(reply, {
        status: 401,
        body: { error: { code: 'unauthorized', field: 'headers.authorization', message: 'missing bearer token: send "Authorization: Bearer TOKEN" (the token is EDGEWARD_API_TOKEN or the file DATA/api-token), or sign in to the console' } },
      });
    }
    if (!deps.verifyToken(m[1]!)) {
      logger.warn('api: wrong bearer token', { ip: req.ip });
      return sendError(reply, { status: 401, body: { error: { code: 'invalid_token', field: 'headers.authorization', message: 'the bearer token is wrong' } } });
    }
  });

  // large JSON answers (the connections of a busy gateway: ~0.3 KiB each) go gzipped to a client
  // that takes it; zlib runs on libuv's threads, not on the API's
  app.addHook('onSend', async (req, reply, payload) => {
    if (typeof payload !== 'string' || payload.length < COMPRESS_FROM) return payload;
    if (reply.getHeader('content-encoding') !== undefined || !/^application\/json/.test(String(reply.getHeader('content-type') ?? ''))) return payload;
    reply.header('vary', 'accept-encoding');
    if (!/\bgzip\b/.test(req.headers['accept-encoding'] ?? '')) return payload;
    reply.header('content-encoding', 'gzip');
    reply.removeHeader('content-length');
    return gzipAsync(payload, { level: 4 });
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

  await app.register(consoleSessionRoutes(deps, consoleAuth), { prefix: '/api/v1' });
  await app.register(consolePages(logger));
  await app.register(policyRoutes(deps), { prefix: '/api/v1' });
  await app.register(userRoutes(deps), { prefix: '/api/v1' });
  await app.register(deviceRoutes(deps), { prefix: '/api/v1' });
  await app.register(statusRoutes(deps, snapshot, metricsText));
  await app.register(liveRoutes(deps, snapshot), { prefix: '/api/v1' });
  for (const p of deps.plugins ?? []) await app.register(p.plugin, { prefix: p.prefix });
  return app;
}

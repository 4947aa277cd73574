// The console (/console): its sign-in, the session cookie, the CSRF check, and its static files.
// An operator signs in with the API token, or as a user with console access; the session is an
// HttpOnly, SameSite=Strict cookie that the browser sends with every API call of the page and with
// its event streams, and that the page's script cannot read. A change (POST, PUT, PATCH, DELETE)
// made with the cookie must carry the session's CSRF token in a header and, when the browser says
// where it comes from, come from this origin: a page elsewhere can neither read that token nor set
// that header without a CORS preflight, which this API never grants. The page runs under a strict
// Content-Security-Policy: this origin's script and style only, no inline code, no framing.
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import type { ServerResponse } from 'node:http';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { LoginSessions, type LoginSession } from '../auth/login-sessions.js';
import { SourceBuckets } from '../core/rate-limit.js';
import type { Logger } from '../log/logger.js';
import { canonicalIp } from '../net/address.js';
import { refuseInsecurePassword, type ApiDeps } from './common.js';
import { ApiError } from './errors.js';
import { ErrorBody } from './schemas.js';

/** The session cookie's name. */
export const CONSOLE_COOKIE = 'edgeward_console';
/** The header a change made with the cookie carries its CSRF token in. */
export const CSRF_HEADER = 'x-csrf-token';
/** How long a console session lasts (a new sign-in after). */
export const CONSOLE_SESSION_TTL_S = 12 * 3600;
/** Failed sign-ins per minute per source address (a burst of as many first); 429 beyond. */
const SIGN_IN_RATE = 10;
const TOKEN_PREFIX = 'ewc_';

/** The console's policy: this origin only, no inline code, no framing, no plugins. */
export const CONSOLE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; font-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/** The console's built files (npm run build writes them to dist/console). */
const ASSETS = new URL('../../dist/console/', import.meta.url); // from src/api and dist/api alike
const FILES: Record<string, { file: string; type: string }> = {
  '/console': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/console/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/console/app.css': { file: 'app.css', type: 'text/css; charset=utf-8' },
};

export type ConsoleSession = LoginSession<string | null>;

declare module 'fastify' {
  interface FastifyRequest {
    /** the console session this request came with (null: the bearer token, or a public route) */
    consoleSession: ConsoleSession | null;
  }
}

const SignInBody = Type.Union(
  [
    Type.Object({ token: Type.String({ minLength: 1, maxLength: 512, description: 'the API token' }) }, { additionalProperties: false }),
    Type.Object(
      {
        username: Type.String({ minLength: 1, maxLength: 255, description: 'a user with console access' }),
        password: Type.String({ minLength: 1, maxLength: 255 }),
      },
      { additionalProperties: false },
    ),
  ],
  { description: 'the API token, or a username and password of a user with console access' },
);
const SessionFields = {
  user: Type.Union([Type.String(), Type.Null()], { description: 'null: signed in with the API token' }),
  csrf: Type.String({ description: `send it as ${CSRF_HEADER} with every change (POST, PUT, PATCH, DELETE)` }),
  expiresAt: Type.String({ format: 'date-time' }),
};
const SessionView = Type.Object(SessionFields);
const SignedIn = Type.Object({ signedIn: Type.Literal(true), ...SessionFields });

/** The value of one cookie in a Cookie header, or null. */
export function cookieValue(header: string | undefined, name: string): string | null {
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** How often open responses of the console (event streams) are checked for a session that ended. */
const SWEEP_MS = 1000;

/** The console's sessions, and what the API's authentication asks of them. */
export class ConsoleAuth {
  readonly sessions: LoginSessions<string | null>;
  /** responses in progress per session: an event stream ends when its session does */
  private readonly open = new Map<ServerResponse, ConsoleSession>();
  private sweeper: NodeJS.Timeout | null = null;

  constructor(now: () => number = () => Date.now()) {
    this.sessions = new LoginSessions<string | null>(CONSOLE_SESSION_TTL_S * 1000, 10_000, now, TOKEN_PREFIX);
  }

  /** Keeps `res` (made with `session`) until it closes; it is cut when the session ends first. */
  track(res: ServerResponse, session: ConsoleSession): void {
    this.open.set(res, session);
    res.once('close', () => this.open.delete(res));
    this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  private sweep(): void {
    for (const [res, s] of this.open) {
      if (this.sessions.alive(s)) continue;
      this.open.delete(res);
      res.destroy();
    }
    if (this.open.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = null;
    }
  }

  /** Stops the sweeper (the API closes). */
  close(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }

  /**
   * The live session of a request's cookie, or null when it has none. Throws an ApiError for a
   * change without its CSRF token or from another origin, and for a cookie that is no longer live.
   */
  check(req: FastifyRequest): ConsoleSession | null {
    const token = cookieValue(req.headers.cookie, CONSOLE_COOKIE);
    if (token === null) return null;
    const session = this.sessions.lookup(token);
    if (!session) throw new ApiError(401, 'session_expired', 'headers.cookie', 'the console session has ended or expired: sign in again');
    if (!SAFE_METHODS.has(req.method)) {
      const origin = req.headers.origin;
      if (origin !== undefined && origin !== `${req.protocol}://${req.headers.host ?? ''}`) {
        throw new ApiError(403, 'cross_origin', 'headers.origin', `a change with the console's session must come from the console's own origin, not ${origin}`);
      }
      if (req.headers[CSRF_HEADER] !== session.csrf) {
        throw new ApiError(403, 'csrf', `headers.${CSRF_HEADER}`, `a change with the console's session needs the session's CSRF token in ${CSRF_HEADER}`);
      }
    }
    return session;
  }
}

function view(s: ConsoleSession): Static<typeof SessionView> {
  return { user: s.user, csrf: s.csrf, expiresAt: new Date(s.expiresAt).toISOString() };
}

function setCookie(reply: FastifyReply, req: FastifyRequest, value: string, maxAgeS: number): void {
  const secure = req.protocol === 'https' ? '; Secure' : '';
  reply.header('set-cookie', `${CONSOLE_COOKIE}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeS}${secure}`);
}

/** POST/GET/DELETE /api/v1/console/session. */
export function consoleSessionRoutes(deps: ApiDeps, auth: ConsoleAuth): FastifyPluginAsync {
  const failures = new SourceBuckets(SIGN_IN_RATE / 60, SIGN_IN_RATE);
  return async (app) => {
    const tags = ['console'];
    app.post<{ Body: Static<typeof SignInBody> }>(
      '/console/session',
      {
        config: { public: true, bodyBranch: (b) => (b !== null && typeof b === 'object' && 'token' in b ? 0 : 1) },
        schema: {
          tags,
          summary: 'Sign in to the console: sets the session cookie (HttpOnly, SameSite=Strict)',
          security: [],
          body: SignInBody,
          response: { 200: SessionView, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 429: ErrorBody },
        },
      },
      async (req, reply) => {
        const source = canonicalIp(req.ip);
        if (failures.spent(source)) {
          reply.header('retry-after', String(Math.ceil(60 / SIGN_IN_RATE)));
          throw new ApiError(429, 'too_many_failures', null, `too many failed sign-ins from ${source}: wait a minute`);
        }
        let user: string | null;
        if ('token' in req.body) {
          if (!deps.verifyToken(req.body.token)) {
            failures.take(source);
            deps.logger.warn('console: wrong API token at sign-in', { ip: req.ip });
            throw new ApiError(401, 'wrong_credentials', 'body.token', 'the API token is wrong');
          }
          user = null;
        } else {
          refuseInsecurePassword(req, deps.allowInsecureLogin === true);
          if (!(await deps.users.verify(req.body.username, req.body.password, 'console'))) {
            failures.take(source);
            deps.logger.warn('console: failed sign-in', { ip: req.ip, user: req.body.username });
            throw new ApiError(401, 'wrong_credentials', null, 'wrong username or password, or the user has no console access');
          }
          user = req.body.username;
        }
        const s = auth.sessions.issue(user);
        setCookie(reply, req, s.token, CONSOLE_SESSION_TTL_S);
        deps.logger.info('console: signed in', { ip: req.ip, user: user ?? '(API token)' });
        return view(s);
      },
    );

    // public, and 200 either way: the page asks it on every load, and a first visit is no error
    app.get('/console/session', { config: { public: true }, schema: { tags, summary: "This cookie's console session, if it has a live one (the page asks at each load)", security: [], response: { 200: Type.Union([SignedIn, Type.Object({ signedIn: Type.Literal(false) })]) } } }, async (req) => {
      const token = cookieValue(req.headers.cookie, CONSOLE_COOKIE);
      const s = token === null ? null : auth.sessions.lookup(token);
      return s ? { signedIn: true as const, ...view(s) } : { signedIn: false as const };
    });

    app.delete('/console/session', { schema: { tags, summary: 'Sign out: ends the session and clears its cookie', response: { 204: { type: 'null', description: 'ended' }, 401: ErrorBody } } }, async (req, reply) => {
      const token = cookieValue(req.headers.cookie, CONSOLE_COOKIE);
      if (!req.consoleSession || token === null) throw new ApiError(401, 'unauthorized', 'headers.cookie', 'no console session to end');
      auth.sessions.end(token);
      setCookie(reply, req, '', 0);
      return reply.code(204).send();
    });
  };
}

/**
 * GET /console and its files, read once at start. Without them (a checkout not built with
 * npm run build) the gateway runs all the same and /console answers 503 saying so.
 */
export function consolePages(logger: Logger): FastifyPluginAsync {
  let missing: string | null = null;
  const bodies = Object.entries(FILES).map(([path, f]) => {
    let body = Buffer.alloc(0);
    try {
      body = readFileSync(new URL(f.file, ASSETS));
    } catch (e) {
      missing ??= `the console is not built (${f.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}): run npm run build`;
    }
    // compressed once here: app.js is ~110 KiB, ~40 KiB gzipped, for an operator on a slow uplink
    return { path, body, gzipped: gzipSync(body, { level: 9 }), type: f.type };
  });
  if (missing) logger.warn(missing);
  return async (app) => {
    for (const f of bodies) {
      app.get(f.path, { config: { public: true }, schema: { hide: true } }, async (req, reply) => {
        if (missing) throw new ApiError(503, 'console_not_built', null, missing);
        const gzip = /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
        if (gzip) reply.header('content-encoding', 'gzip');
        return reply
          .type(f.type)
          .header('vary', 'accept-encoding')
          .header('content-security-policy', CONSOLE_CSP)
          .header('x-content-type-options', 'nosniff')
          .header('x-frame-options', 'DENY')
          .header('referrer-policy', 'no-referrer')
          .header('cache-control', 'no-cache')
          .send(gzip ? f.gzipped : f.body);
      });
    }
    app.get('/console/', { config: { public: true }, schema: { hide: true } }, async (_req, reply) => reply.redirect('/console', 301));
  };
}

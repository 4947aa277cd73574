// The rendezvous service's account routes: a user logs in with name and password and gets a session
// token; with it they list their own devices, and open the signaling WebSocket, where devices keep
// their presence connection with their device token. These routes carry their own credentials
// (session or device tokens), not the API token.
import websocket from '@fastify/websocket';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { WebSocket } from 'ws';
import { refuseInsecurePassword } from '../api/common.js';
import { ApiError } from '../api/errors.js';
import { ErrorBody } from '../api/schemas.js';
import type { DeviceService } from '../auth/devices.js';
import type { UserService } from '../auth/users.js';
import { canonicalIp } from '../net/address.js';
import { SourceBuckets } from '../core/rate-limit.js';
import type { LoginSessions } from '../auth/login-sessions.js';
import type { SignalingHub } from './signaling.js';

/** Largest signaling frame (an SDP with its candidates is a few KiB). */
export const MAX_SIGNAL_FRAME = 64 * 1024;
/** A peer that reads its frames slower than this many bytes pile up is closed. */
const MAX_SIGNAL_BACKLOG = 1024 * 1024;

export interface AccountRoutesDeps {
  users: UserService;
  devices: DeviceService;
  sessions: LoginSessions;
  hub: SignalingHub;
  allowInsecureLogin: boolean;
  /** failed logins per minute per source (a burst of as many first) */
  loginRate: number;
  /** seconds between pings on a signaling connection; one still unanswered at the next ends it */
  pingIntervalS: number;
}

const LoginBody = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 255 }),
    password: Type.String({ minLength: 1, maxLength: 255 }),
  },
  { additionalProperties: false },
);

const SessionReply = Type.Object({ token: Type.String({ description: 'the session token: "Authorization: Bearer TOKEN" here, and the hello of the signaling WebSocket' }), user: Type.String(), expiresAt: Type.String({ format: 'date-time' }) });
const MyDevices = Type.Object({ devices: Type.Array(Type.Object({ id: Type.Integer(), name: Type.String(), online: Type.Boolean() })) });

/** The live session token in "Authorization: Bearer ews_..." and its user, or a 401. */
function session(req: FastifyRequest, sessions: LoginSessions): { token: string; user: string } {
  const token = /^Bearer[ ]+([^\s]+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
  const user = token !== undefined ? sessions.userOf(token) : null;
  if (!token || !user) throw new ApiError(401, 'unauthorized', 'headers.authorization', 'a live session token is needed: "Authorization: Bearer TOKEN" from POST /api/v1/rendezvous/login');
  return { token, user };
}

export function accountRoutes(deps: AccountRoutesDeps): FastifyPluginAsync {
  const { users, sessions, hub } = deps;
  const failures = new SourceBuckets(deps.loginRate / 60, deps.loginRate);
  return async (app) => {
    const tags = ['rendezvous'];
    await app.register(websocket, { options: { maxPayload: MAX_SIGNAL_FRAME } });

    app.post<{ Body: Static<typeof LoginBody> }>(
      '/rendezvous/login',
      {
        config: { public: true },
        schema: { tags, summary: 'Log in as a user with rendezvous access: a session token', security: [], body: LoginBody, response: { 200: SessionReply, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 429: ErrorBody } },
      },
      async (req, reply) => {
        refuseInsecurePassword(req, deps.allowInsecureLogin);
        const source = canonicalIp(req.ip);
        if (failures.spent(source)) {
          reply.header('retry-after', String(Math.ceil(60 / deps.loginRate)));
          throw new ApiError(429, 'too_many_failures', null, `too many failed logins from ${source}: wait a minute`);
        }
        const { username, password } = req.body;
        if (!(await users.verify(username, password, 'rendezvous'))) {
          failures.take(source);
          throw new ApiError(401, 'wrong_credentials', null, 'wrong username or password, or the user has no rendezvous access');
        }
        const s = sessions.issue(username);
        return { token: s.token, user: username, expiresAt: new Date(s.expiresAt).toISOString() };
      },
    );

    app.post('/rendezvous/logout', { config: { public: true }, schema: { tags, summary: 'End this session token', security: [], response: { 204: { type: 'null', description: 'ended' }, 401: ErrorBody } } }, async (req, reply) => {
      sessions.end(session(req, sessions).token);
      return reply.code(204).send();
    });

    app.get('/rendezvous/devices', { config: { public: true }, schema: { tags, summary: "The session's user's devices, online or not", security: [], response: { 200: MyDevices, 401: ErrorBody } } }, async (req) => {
      const { user } = session(req, sessions);
      return { devices: (await deps.devices.list(user)).map((d) => ({ id: d.id, name: d.name, online: hub.isOnline(d.id) })) };
    });

    app.get('/rendezvous/signal', { websocket: true, config: { public: true }, schema: { hide: true } }, (socket: WebSocket) => {
      let alive = true;
      const conn = hub.attach({
        send: (text) => {
          if (socket.bufferedAmount > MAX_SIGNAL_BACKLOG) {
            socket.close(4429, 'frames are not being read');
            return;
          }
          socket.send(text);
        },
        close: (code, reason) => socket.close(code, reason),
      });
      const ping = setInterval(() => {
        if (!alive) {
          socket.terminate();
          return;
        }
        alive = false;
        socket.ping();
      }, deps.pingIntervalS * 1000);
      ping.unref();
      socket.on('pong', () => (alive = true));
      socket.on('message', (data: Buffer | ArrayBuffer | Buffer[]) => conn.frame(Buffer.isBuffer(data) ? data.toString('utf8') : Array.isArray(data) ? Buffer.concat(data).toString('utf8') : Buffer.from(data).toString('utf8')));
      socket.on('close', () => {
        clearInterval(ping);
        conn.closed();
      });
      socket.on('error', () => undefined);
    });
  };
}

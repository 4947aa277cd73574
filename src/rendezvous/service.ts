// The rendezvous service: a STUN/TURN server (UDP and TCP on one address, TLS on another), in the
// main thread: STUN Binding and TURN (clients over UDP, TCP or TLS; TURN REST credentials and users
// of the store). On the API: user logins, the user's devices, and the signaling WebSocket that
// pairs a user's client with that user's device (account-routes.ts, signaling.ts).
import { unwatchFile, watchFile, type Stats } from 'node:fs';
import { Type, type Static } from '@sinclair/typebox';
import type { FastifyPluginAsync } from 'fastify';
import { ApiError } from '../api/errors.js';
import { ErrorBody } from '../api/schemas.js';
import type { transportSection } from '../config/common.js';
import { parseListenAddress } from '../config/common.js';
import type { Logger } from '../log/logger.js';
import { formatHostPort } from '../net/address.js';
import { readPemPair } from '../net/tls-files.js';
import type { Service, ServiceDefinition, ThreadParts } from '../runtime/service.js';
import type { Allocation, AllocationTable } from './allocations.js';
import { parseRelayPorts, relayIpsOf, rendezvousSection, type RendezvousSettings } from './config.js';
import { parseBandwidth } from './limits.js';
import { PeerPolicy } from './peer-policy.js';
import { newStunCounters, StunServer } from './stun-server.js';
import { restCredential } from './turn-auth.js';
import { TurnHandler } from './turn-handler.js';
import { accountRoutes } from './account-routes.js';
import { pageRoutes } from './page.js';
import { LoginSessions } from '../auth/login-sessions.js';
import { SignalingHub, type IceServer } from './signaling.js';

export type RendezvousServiceSettings = RendezvousSettings & Static<typeof transportSection.schema>;

/** The running rendezvous service, as its routes see it. */
export interface RendezvousService extends Service {
  turn: TurnHandler;
  secrets: readonly string[];
  /** turn: URIs clients put in iceServers */
  uris(): string[];
  sessions: LoginSessions;
  hub: SignalingHub;
  /** what account-routes.ts needs besides the sessions and the hub */
  accounts: { users: ThreadParts['users']; devices: ThreadParts['devices']; allowInsecureLogin: boolean; loginRate: number; pingIntervalS: number };
}

/** Seconds the TURN REST credentials handed to the two ends of a session stay valid. */
const SESSION_TURN_TTL_S = 3600;

const AllocationView = Type.Object({
  id: Type.Integer(),
  user: Type.String({ description: 'the USER part of the TURN REST username' }),
  client: Type.Object({ address: Type.String(), port: Type.Integer() }),
  transport: Type.Union([Type.Literal('udp'), Type.Literal('tcp'), Type.Literal('tls')], { description: 'how the client talks to the server' }),
  relayProtocol: Type.Union([Type.Literal('udp'), Type.Literal('tcp')], { description: 'what the relay carries: UDP datagrams, or TCP connections (RFC 6062)' }),
  relayed: Type.Object({ address: Type.String(), port: Type.Integer() }, { description: 'as clients are told it (--turn-external-ip when set)' }),
  additionalRelayed: Type.Optional(Type.Object({ address: Type.String(), port: Type.Integer() }, { description: 'the IPv6 relayed address of a dual allocation (ADDITIONAL-ADDRESS-FAMILY)' })),
  permissions: Type.Array(Type.String(), { description: 'peer IPs the allocation may exchange datagrams with' }),
  channels: Type.Integer({ description: 'channels bound' }),
  bytes: Type.Object({ up: Type.Integer({ description: 'client to peers' }), down: Type.Integer({ description: 'peers to client' }) }),
  dropped: Type.Object({ up: Type.Integer(), down: Type.Integer() }, { description: 'datagrams dropped for --turn-bandwidth, each way' }),
  secondsLeft: Type.Integer(),
});

const CredentialsBody = Type.Object(
  {
    user: Type.String({ minLength: 1, maxLength: 200, pattern: '^[^:]+$', description: 'who the credential is for (no ":")' }),
    ttl: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 24 * 3600, description: 'seconds the credential is valid (default 86400)' })),
  },
  { additionalProperties: false },
);

function view(a: Allocation, table: AllocationTable): Static<typeof AllocationView> {
  return {
    id: a.id,
    user: a.user,
    client: a.client,
    transport: a.transport,
    relayProtocol: a.tcp ? 'tcp' : 'udp',
    relayed: table.announced(a)[0]!,
    ...(a.relays.length > 1 ? { additionalRelayed: table.announced(a)[1]! } : {}),
    permissions: [...a.permissions.keys()],
    channels: a.channels.size,
    bytes: a.bytes,
    dropped: a.dropped,
    secondsLeft: Math.max(0, Math.round((a.expiresAt - Date.now()) / 1000)),
  };
}

const Counts = Type.Object({ host: Type.Integer(), srflx: Type.Integer(), prflx: Type.Integer(), relay: Type.Integer() }, { description: 'candidates of each kind this end sent' });
const PairEnd = Type.Object({ type: Type.String(), address: Type.String(), port: Type.Integer(), protocol: Type.String() });
const HubStatus = Type.Object({
  online: Type.Array(Type.Object({ user: Type.String(), device: Type.String(), id: Type.Integer(), since: Type.String({ format: 'date-time' }) })),
  sessions: Type.Array(
    Type.Object({
      id: Type.String(),
      user: Type.String(),
      device: Type.String(),
      openedAt: Type.String({ format: 'date-time' }),
      path: Type.Union([Type.Literal('direct'), Type.Literal('relayed'), Type.Literal('unknown')], { description: 'unknown until an end reports the pair (edgeward peer does once connected)' }),
      pair: Type.Union([Type.Object({ reportedBy: Type.Union([Type.Literal('client'), Type.Literal('device')]), local: PairEnd, remote: PairEnd }), Type.Null()]),
      candidates: Type.Object({ client: Counts, device: Counts }),
    }),
  ),
});

function routes(service: RendezvousService): FastifyPluginAsync {
  return async (app) => {
    await app.register(accountRoutes({ ...service.accounts, sessions: service.sessions, hub: service.hub }));
    const tags = ['rendezvous'];
    const turn = (): TurnHandler => service.turn;
    app.get('/rendezvous/status', { schema: { tags, summary: 'Devices online, and open sessions with the candidate pair ICE chose (direct or relayed) as a peer reported it', response: { 200: HubStatus, 401: ErrorBody } } }, async () => service.hub.view());
    app.get('/turn/allocations', { schema: { tags, summary: 'TURN allocations', response: { 200: Type.Object({ allocations: Type.Array(AllocationView) }), 401: ErrorBody, 409: ErrorBody } } }, async () => ({
      allocations: turn().table.list().map((a) => view(a, turn().table)),
    }));
    app.delete<{ Params: { id: string } }>(
      '/turn/allocations/:id',
      { schema: { tags, summary: 'End a TURN allocation now', params: Type.Object({ id: Type.String({ pattern: '^[0-9]{1,12}$', title: 'an integer' }) }, { additionalProperties: false }), response: { 204: { type: 'null', description: 'ended' }, 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 409: ErrorBody } } },
      async (req, reply) => {
        const t = turn();
        const a = t.table.list().find((x) => x.id === Number(req.params.id));
        if (!a) throw new ApiError(404, 'not_found', 'params.id', `no TURN allocation with id ${req.params.id}`);
        t.table.remove(a);
        return reply.code(204).send();
      },
    );
    app.post<{ Body: Static<typeof CredentialsBody> }>(
      '/turn/credentials',
      {
        schema: {
          tags,
          summary: 'Issue a TURN REST credential',
          body: CredentialsBody,
          response: { 200: Type.Object({ username: Type.String(), password: Type.String(), ttl: Type.Integer(), uris: Type.Array(Type.String()) }), 400: ErrorBody, 401: ErrorBody, 409: ErrorBody },
        },
      },
      async (req) => {
        if (service.secrets.length === 0) throw new ApiError(409, 'turn_no_secret', null, 'TURN REST credentials need a secret: start edgeward with --turn-secret (or add users with TURN access: edgeward user add NAME --turn)');
        const c = restCredential(req.body.user, service.secrets[0]!, req.body.ttl ?? 86400);
        return { ...c, uris: service.uris() };
      },
    );
  };
}

/** The PEM files of --turn-tls, read and checked. */
function readTlsFiles(certFile: string, keyFile: string): { cert: Buffer; key: Buffer } {
  return readPemPair(certFile, keyFile, { cert: '--turn-tls-cert', key: '--turn-tls-key' });
}

/** Seconds between looks at the TLS files for a renewed certificate. */
export const TLS_RELOAD_INTERVAL_S = 2;

/**
 * Watches --turn-tls-cert and --turn-tls-key (polling their stat, which also sees a file replaced
 * by rename, as certificate tools do) and hands a renewed pair to `apply` for new connections.
 * A pair that does not load (half written, mismatched) is logged and the old one kept. Returns
 * the function that stops watching.
 */
function watchTlsFiles(certFile: string, keyFile: string, apply: (c: { cert: Buffer; key: Buffer }) => void, logger: Logger): () => void {
  const reload = (cur: Stats, prev: Stats): void => {
    if (cur.mtimeMs === prev.mtimeMs && cur.ino === prev.ino && cur.size === prev.size) return;
    try {
      apply(readTlsFiles(certFile, keyFile));
      logger.info('TURN TLS certificate reloaded', { cert: certFile, key: keyFile });
    } catch (e) {
      logger.warn('TURN TLS certificate not reloaded: keeping the one in use', { error: (e as Error).message });
    }
  };
  const opts = { interval: TLS_RELOAD_INTERVAL_S * 1000, persistent: false };
  watchFile(certFile, opts, reload);
  watchFile(keyFile, opts, reload);
  return () => {
    unwatchFile(certFile, reload);
    unwatchFile(keyFile, reload);
  };
}

export const rendezvousService: ServiceDefinition<RendezvousServiceSettings, RendezvousService> = {
  name: 'rendezvous',
  section: rendezvousSection,
  everyThread: false,
  enabled: (s) => s.turn !== '',
  create(ctx): RendezvousService {
    const { settings: s, parts, logger } = ctx;
    const counters = newStunCounters();
    const at = parseListenAddress(s.turn, '--turn');
    const tlsAt = s.turnTls !== '' ? parseListenAddress(s.turnTls, '--turn-tls') : null;
    const tlsCredentials = tlsAt ? readTlsFiles(s.turnTlsCert, s.turnTlsKey) : null;
    const turn = new TurnHandler({
      realm: s.turnRealm,
      secrets: s.turnSecret,
      relayIps: relayIpsOf(s.turnRelayIp, at.host, s.turn),
      peers: new PeerPolicy(s.turnAllowPeers, s.turnDenyPeers),
      maxAllocations: s.turnMaxAllocations,
      maxAllocationsPerUser: s.turnUserAllocations,
      bandwidth: parseBandwidth(s.turnBandwidth, '--turn-bandwidth'),
      authRate: s.turnAuthRate,
      relayPorts: parseRelayPorts(s.turnRelayPorts) ?? undefined,
      externalIp: s.turnExternalIp !== '' ? s.turnExternalIp : undefined,
      software: 'edgeward',
      userKey: (username) => parts.users.turnKey(username),
    });
    const server = new StunServer({ software: 'edgeward', counters, maxTcpClients: s.maxConnections, tcpIdleTimeout: s.idleTimeout * 1000, turn, logger });
    const stun = server;
    let bound: { address: string; port: number } | null = null;
    let tlsBound: { address: string; port: number } | null = null;
    let stopWatching = (): void => undefined;
    const m = parts.metrics;
    m.counter({
      name: 'edgeward_stun_binding_requests_total',
      help: 'STUN Binding requests answered with the reflexive address, by transport.',
      labels: ['transport'],
      read: () => [
        [{ transport: 'udp' }, counters.binding.udp],
        [{ transport: 'tcp' }, counters.binding.tcp],
        [{ transport: 'tls' }, counters.binding.tls],
      ],
    });
    m.counter({
      name: 'edgeward_stun_error_responses_total',
      help: 'STUN/TURN requests answered with an error response before TURN processing, by error code (400 unsupported, 420 unknown attribute, ...).',
      labels: ['code'],
      read: () => Object.entries(counters.errors).map(([code, n]) => [{ code }, n]),
    });
    m.counter({ name: 'edgeward_stun_malformed_total', help: 'STUN datagrams, TCP frames and ChannelData dropped as malformed (header, length, attributes, fingerprint, unbound channel).', read: () => counters.malformed });
    m.gauge({ name: 'edgeward_turn_allocations', help: 'TURN allocations open now.', read: () => turn.table.size });
    m.counter({ name: 'edgeward_turn_allocations_total', help: 'TURN allocations made since start.', read: () => turn.counters.allocations });
    m.counter({ name: 'edgeward_turn_challenges_total', help: 'TURN requests without credentials answered 401 with a realm and nonce (the first round of every allocation).', read: () => turn.counters.challenges });
    m.counter({ name: 'edgeward_turn_auth_failures_total', help: 'TURN requests refused for their credentials: wrong, expired or unknown (401), stale or foreign nonce (438); never labelled by user.', read: () => turn.counters.authFailures });
    m.counter({ name: 'edgeward_turn_quota_refusals_total', help: 'Allocates refused (486) for the total or the per-user allocation quota.', read: () => turn.counters.quotaRefusals });
    m.counter({ name: 'edgeward_turn_throttled_total', help: 'TURN requests from a source over its budget: answers withheld beyond --turn-auth-rate 401/438 answers a second, and 401 without a check once refused credentials exceed one per 10 s (burst 10).', read: () => turn.counters.throttled });
    m.counter({
      name: 'edgeward_turn_bandwidth_drops_total',
      help: 'Relayed datagrams dropped for --turn-bandwidth: up = client to peers, down = peers to client.',
      labels: ['direction'],
      read: () => {
        const d = turn.table.droppedForBandwidth();
        return [
          [{ direction: 'up' }, d.up],
          [{ direction: 'down' }, d.down],
        ];
      },
    });
    m.counter({ name: 'edgeward_turn_denied_peers_total', help: 'CreatePermission and ChannelBind refused (403) for a peer address the policy denies.', read: () => turn.counters.deniedPeers });
    m.counter({
      name: 'edgeward_turn_relayed_bytes_total',
      help: 'Bytes relayed by TURN allocations, open ones included: up = client to peers, down = peers to client.',
      labels: ['direction'],
      read: () => {
        const b = turn.table.bytesRelayed();
        return [
          [{ direction: 'up' }, b.up],
          [{ direction: 'down' }, b.down],
        ];
      },
    });
    // the bound address once listening (port 0 resolved), else the configured one
    const shown = (b: { address: string; port: number } | null, configured: { host: string; port: number }): string => formatHostPort(b?.address ?? configured.host, b?.port ?? configured.port);
    const hostPort = (): string => shown(bound, at);
    const tlsHostPort = (): string | null => (tlsAt ? shown(tlsBound, tlsAt) : null);
    const uris = (): string[] => {
      const tlsUri = tlsHostPort();
      return [`turn:${hostPort()}?transport=udp`, `turn:${hostPort()}?transport=tcp`, ...(tlsUri ? [`turns:${tlsUri}?transport=tcp`] : [])];
    };
    // the two ends of a session get STUN, and TURN with a fresh REST credential when there is a secret
    const iceServers = (user: string): IceServer[] => {
      const stunUri = `stun:${hostPort()}`;
      if (s.turnSecret.length === 0) return [{ urls: [stunUri] }];
      const c = restCredential(user, s.turnSecret[0]!, SESSION_TURN_TTL_S);
      return [{ urls: [stunUri] }, { urls: uris(), username: c.username, credential: c.password }];
    };
    const sessions = new LoginSessions(s.rendezvousSessionTtl * 1000);
    const hub = new SignalingHub({
      deviceByToken: (token) => parts.devices.byToken(token),
      userOfSession: (token) => sessions.userOf(token),
      devicesOf: (user) => parts.devices.list(user),
      iceServers,
      logger,
    });
    const onDeviceRemoved = (id: number): void => hub.deviceRemoved(id);
    const onUserRemoved = (user: string): void => {
      sessions.endUser(user);
      hub.userRemoved(user);
    };
    parts.devices.on('removed', onDeviceRemoved);
    parts.users.on('removed', onUserRemoved);
    m.gauge({ name: 'edgeward_rendezvous_devices_online', help: 'Devices with a presence connection on the signaling WebSocket.', read: () => hub.devicesOnline });
    m.gauge({ name: 'edgeward_rendezvous_clients', help: 'Client connections on the signaling WebSocket.', read: () => hub.clientCount });
    m.gauge({ name: 'edgeward_rendezvous_sessions', help: 'Open sessions between a client and a device.', read: () => hub.sessionCount });
    m.counter({ name: 'edgeward_rendezvous_sessions_total', help: 'Sessions opened since start.', read: () => hub.counters.sessionsOpened });
    m.counter({ name: 'edgeward_rendezvous_signal_errors_total', help: 'Signaling frames answered with an error frame (malformed, unknown, not allowed, rate-limited).', read: () => hub.counters.errors });
    return {
      turn,
      secrets: s.turnSecret,
      uris,
      sessions,
      hub,
      accounts: { users: parts.users, devices: parts.devices, allowInsecureLogin: s.allowInsecureLogin, loginRate: s.loginRate, pingIntervalS: s.rendezvousPing },
      async listen() {
        bound = await stun.listen(at.host, at.port).catch((e: unknown) => {
          throw new Error(`--turn ${s.turn}: ${(e as Error).message}`);
        });
        if (tlsAt && tlsCredentials) {
          tlsBound = await stun.listenTls(tlsAt.host, tlsAt.port, tlsCredentials).catch((e: unknown) => {
            stun.close();
            throw new Error(`--turn-tls ${s.turnTls}: ${(e as Error).message}`);
          });
          stopWatching = watchTlsFiles(s.turnTlsCert, s.turnTlsKey, (c) => stun.setTlsCredentials(c), logger);
        }
        return { turn: hostPort(), ...(tlsBound ? { turnTls: tlsHostPort() } : {}), turnRelay: 'udp' };
      },
      async stopAccepting() {
        stopWatching();
        stun.close();
        parts.devices.off('removed', onDeviceRemoved);
        parts.users.off('removed', onUserRemoved);
        hub.close();
      },
      async close() {
        stun.destroyClients();
      },
    };
  },
  routes,
  pages: () => pageRoutes(),
};

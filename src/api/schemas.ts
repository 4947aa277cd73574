// Every shape the REST API takes or gives, once: these TypeBox schemas validate requests (Ajv),
// serialize responses (fast-json-stringify) and make the OpenAPI document (@fastify/swagger).
// Every object is closed (additionalProperties: false) so that an unknown field is an error.
import { Type, type Static, type TSchema, type TString, type TInteger, type TBoolean, type TArray } from '@sinclair/typebox';

const closed = { additionalProperties: false } as const;

/** A primitive schema that also accepts null (JSON merge patch: null removes the field). */
function Nullable<T extends TString | TInteger | TBoolean | TArray>(schema: T): TSchema & { static: Static<T> | null } {
  const { type, ...rest } = schema as unknown as { type: string };
  return Type.Unsafe<Static<T> | null>({ ...rest, type: [type, 'null'] }) as TSchema & { static: Static<T> | null };
}

// ---- transport policy ----

const Name = (description: string): TString => Type.String({ minLength: 1, maxLength: 64, description });

export const KeepAlive = Type.Object(
  {
    idle: Type.Integer({ minimum: 1, maximum: 32767, description: 'seconds of idle before the first probe (TCP_KEEPIDLE)' }),
    interval: Type.Integer({ minimum: 1, maximum: 32767, description: 'seconds between probes (TCP_KEEPINTVL)' }),
    count: Type.Integer({ minimum: 1, maximum: 127, description: 'unanswered probes before the connection is dropped (TCP_KEEPCNT)' }),
  },
  { ...closed, description: 'keepalive timers' },
);

const KeepAliveOrOff = Type.Union([KeepAlive, Type.Literal(false)], { description: 'keepalive timers, or false to turn keepalive off' });

const transportFields = {
  mptcp: Type.Boolean({ description: 'open the connection with Multipath TCP (falls back to TCP when the peer does not speak it)' }),
  congestion: Name('TCP congestion control, one of net.ipv4.tcp_available_congestion_control (e.g. cubic, bbr, reno)'),
  noDelay: Type.Boolean({ description: 'true = TCP_NODELAY (Nagle off)' }),
  keepAlive: KeepAliveOrOff,
  scheduler: Name('MPTCP packet scheduler, one of net.mptcp.available_schedulers (new connections only)'),
  pathManager: Name(
    'MPTCP path manager (new connections only): kernel or userspace (net.mptcp.available_path_managers), or edgeward\'s own on the kernel\'s userspace one: ndiffports (transport.subflows over the same pair of addresses) or fullmesh (a subflow from every --uplinks address to every address of the peer)',
  ),
  subflows: Type.Integer({ minimum: 1, maximum: 8, description: 'pathManager ndiffports: subflows in all, the first included (default 2); changes apply to open connections' }),
  backup: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
    maxItems: 8,
    description: 'pathManager fullmesh: devices or addresses whose subflows carry the MPTCP backup flag (used only when no other subflow works); changes apply to open connections',
  }),
};

export const Transport = Type.Object(
  {
    mptcp: Type.Optional(transportFields.mptcp),
    congestion: Type.Optional(transportFields.congestion),
    noDelay: Type.Optional(transportFields.noDelay),
    keepAlive: Type.Optional(transportFields.keepAlive),
    scheduler: Type.Optional(transportFields.scheduler),
    pathManager: Type.Optional(transportFields.pathManager),
    subflows: Type.Optional(transportFields.subflows),
    backup: Type.Optional(transportFields.backup),
  },
  { ...closed, description: 'how the outgoing connection is made; absent fields keep the default policy, then the kernel default' },
);

export const PolicyMatch = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'host name, *.wildcard or IP literal' })),
    cidr: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'IPv4 or IPv6 block, e.g. 192.0.2.0/24' })),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'destination port; absent = any port' })),
  },
  { ...closed, description: 'exactly one of host or cidr, optionally a port' },
);

const Comment = Type.String({ maxLength: 1024 });

const Via = Type.String({
  minLength: 1,
  maxLength: 600,
  description: 'how to reach the destination: "direct", or "socks5://[user:pass@]host:port" to chain through an upstream SOCKS5 proxy (another edgeward); the transport then applies to the hop toward it. Absent: the global --upstream, or direct',
});

export const PolicyInput = Type.Object(
  {
    match: PolicyMatch,
    transport: Transport,
    via: Type.Optional(Via),
    comment: Type.Optional(Comment),
  },
  { ...closed, title: 'PolicyInput' },
);
export type PolicyInputBody = Static<typeof PolicyInput>;

export const LegacyPolicyInput = Type.Object(
  {
    enable: Type.Union([Type.Literal('0'), Type.Literal('1'), Type.Literal(0), Type.Literal(1)], { description: '1 = MPTCP on, 0 = off' }),
    ip: Type.String({ minLength: 1, maxLength: 255, description: 'host name, IP address, or CIDR block when it contains "/"' }),
    scheduler: Type.Optional(Type.String({ maxLength: 64, description: 'MPTCP scheduler, passed through' })),
    path_manager: Type.Optional(
      Type.String({ maxLength: 64, description: 'default and fullmesh become kernel; kernel and userspace pass through; ndiffports becomes edgeward\'s ndiffports (2 subflows); binder cannot run on a stock kernel (422)' }),
    ),
  },
  { ...closed, title: 'LegacyPolicyInput', description: 'the body of the original system (out-of-tree MPTCP kernel), translated on the way in' },
);
export type LegacyPolicyBody = Static<typeof LegacyPolicyInput>;

/** POST /api/v1/policies: a policy, or the legacy body (recognized by its "ip" or "enable" field). */
export const CreatePolicyBody = Type.Union([PolicyInput, LegacyPolicyInput]);

export const PolicyPatch = Type.Object(
  {
    match: Type.Optional(
      Type.Object(
        {
          host: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 255 }))),
          cidr: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 64 }))),
          port: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 65535 }))),
        },
        closed,
      ),
    ),
    transport: Type.Optional(
      Type.Object(
        {
          mptcp: Type.Optional(Nullable(transportFields.mptcp)),
          congestion: Type.Optional(Nullable(transportFields.congestion)),
          noDelay: Type.Optional(Nullable(transportFields.noDelay)),
          keepAlive: Type.Optional(Type.Union([KeepAlive, Type.Literal(false), Type.Null()])),
          scheduler: Type.Optional(Nullable(transportFields.scheduler)),
          pathManager: Type.Optional(Nullable(transportFields.pathManager)),
          subflows: Type.Optional(Nullable(transportFields.subflows)),
          backup: Type.Optional(Nullable(transportFields.backup)),
        },
        closed,
      ),
    ),
    via: Type.Optional(Nullable(Via)),
    comment: Type.Optional(Nullable(Comment)),
  },
  { ...closed, description: 'JSON merge patch (RFC 7396): fields present replace, null removes' },
);
export type PolicyPatchBody = Static<typeof PolicyPatch>;

export const MAX_BULK = 10000;

export const BulkBody = Type.Object({ policies: Type.Array(PolicyInput, { minItems: 1, maxItems: MAX_BULK }) }, closed);
export type BulkBodyType = Static<typeof BulkBody>;

export const LiveUpdate = Type.Object(
  {
    connectionsUpdated: Type.Integer({ description: 'open connections the change was applied to' }),
    notes: Type.Array(Type.String()),
  },
  { description: 'what the change did to open connections (MPTCP on/off only affects new ones)' },
);

const policyFields = {
  id: Type.Integer(),
  match: PolicyMatch,
  transport: Transport,
  via: Type.Optional(Type.String({ description: '"direct" or the upstream URL, as stored' })),
  comment: Type.Optional(Comment),
  createdAt: Type.String({ format: 'date-time' }),
  updatedAt: Type.String({ format: 'date-time' }),
};

export const Policy = Type.Object(policyFields);

export const PolicyChanged = Type.Object({
  ...policyFields,
  liveUpdate: LiveUpdate,
  notes: Type.Optional(Type.Array(Type.String(), { description: 'how a legacy body was translated' })),
});

export const PolicyList = Type.Object({ policies: Type.Array(Policy) });
export const BulkCreated = Type.Object({ policies: Type.Array(Policy), liveUpdate: LiveUpdate });

export const ImportBody = Type.Object(
  { text: Type.String({ maxLength: 8 * 1024 * 1024 - 1024, description: "the original system's flat file: one ip,0|1,scheduler,path_manager, line per destination, closed by a line holding only \".\"" }) },
  closed,
);
export const Imported = Type.Object({ policies: Type.Array(Policy), liveUpdate: LiveUpdate, notes: Type.Array(Type.String(), { description: 'how entries were translated, with their lines' }) });

export const DefaultChanged = Type.Object({ ...Transport.properties, liveUpdate: LiveUpdate });

export const PolicyIdParams = Type.Object(
  { id: Type.String({ pattern: '^[0-9]{1,15}$', title: 'an integer', description: 'a policy id' }) },
  closed,
);

// ---- users ----

export const User = Type.Object({
  username: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
  turnRealm: Type.Union([Type.String(), Type.Null()], { description: 'the realm of the user\'s TURN key; null: no TURN' }),
  socks: Type.Boolean({ description: 'may authenticate to the SOCKS proxy' }),
  rendezvous: Type.Boolean({ description: 'may log in to the rendezvous service (own devices, peer sessions)' }),
  console: Type.Boolean({ description: 'may sign in to the console (/console), with every right the API token has' }),
});
export type UserType = Static<typeof User>;
export const UserList = Type.Object({ users: Type.Array(User) });
export const UserInput = Type.Object(
  {
    username: Type.String({ minLength: 1, maxLength: 255, description: 'A-Z a-z 0-9 . _ @ -' }),
    password: Type.String({ minLength: 1, maxLength: 255, description: '1-255 bytes (RFC 1929)' }),
    turn: Type.Optional(Type.Boolean({ description: 'may use the TURN server too: its key MD5(username:realm:password) is stored (default false)' })),
    rendezvous: Type.Optional(Type.Boolean({ description: 'may log in to the rendezvous service: own devices, peer sessions (default false)' })),
    console: Type.Optional(Type.Boolean({ description: 'may sign in to the console (/console), with every right the API token has (default false)' })),
    socks: Type.Optional(Type.Boolean({ description: 'may authenticate to the SOCKS proxy (default true)' })),
  },
  closed,
);
export type UserInputBody = Static<typeof UserInput>;

// ---- devices (rendezvous) ----

export const Device = Type.Object({
  id: Type.Integer(),
  user: Type.String(),
  name: Type.String(),
  createdAt: Type.String({ format: 'date-time' }),
});
export const DeviceList = Type.Object({ devices: Type.Array(Device) });
export const DeviceInput = Type.Object(
  {
    user: Type.String({ minLength: 1, maxLength: 255, description: 'the user who owns it' }),
    name: Type.String({ minLength: 1, maxLength: 64, description: 'A-Z a-z 0-9 . _ - (what peer connect names)' }),
  },
  closed,
);
export type DeviceInputBody = Static<typeof DeviceInput>;
export const DeviceCreated = Type.Object({ device: Device, token: Type.String({ description: 'the device token, shown this once; only its hash is stored' }) });
export const DeviceQuery = Type.Object({ user: Type.Optional(Type.String({ minLength: 1, maxLength: 255 })) }, closed);
export const DeviceIdParams = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,12}$', title: 'an integer' }) }, closed);
export const UsernameParams = Type.Object({ username: Type.String({ minLength: 1, maxLength: 255 }) }, closed);

// ---- connections and statistics ----

const InEffect = Type.Object(
  {
    mptcp: Type.Boolean(),
    mptcpNote: Type.Optional(Type.String()),
    subflows: Type.Optional(Type.Integer()),
    subflowList: Type.Optional(
      Type.Array(
        Type.Object({
          local: Type.Object({ address: Type.String(), port: Type.Integer() }),
          remote: Type.Object({ address: Type.String(), port: Type.Integer() }),
          bytes: Type.Object({ sent: Type.Integer({ description: 'sent and acknowledged' }), received: Type.Integer() }),
        }),
        { description: "the subflows under the kernel's path managers, with their addresses and bytes (edgeward's own: pathManager.subflows)" },
      ),
    ),
    pathManager: Type.Optional(
      Type.Object(
        {
          mode: Type.String({ description: 'ndiffports or fullmesh' }),
          subflowsWanted: Type.Integer({ description: 'subflows the policy asks for, the first included' }),
          subflowsUp: Type.Integer({ description: 'subflows established now, the first included' }),
          subflowsPending: Type.Integer({ description: 'subflows asked of the kernel and not yet established or failed' }),
          subflows: Type.Array(
            Type.Object({
              local: Type.Object({ address: Type.String(), port: Type.Integer() }),
              remote: Type.Object({ address: Type.String(), port: Type.Integer() }),
              backup: Type.Boolean(),
              bytes: Type.Optional(Type.Object({ sent: Type.Integer({ description: 'sent and acknowledged' }), received: Type.Integer() }, { description: 'what this subflow carried (MPTCP_TCPINFO)' })),
            }),
          ),
          recreated: Type.Integer({ description: 'subflows made again after one was lost or failed' }),
          lastError: Type.Optional(Type.String()),
        },
        { description: "what edgeward's own path manager did for this connection" },
      ),
    ),
    congestion: Type.Optional(Type.String()),
    noDelay: Type.Optional(Type.Boolean()),
    keepAlive: Type.Optional(Type.Union([Type.Object({ idle: Type.Integer(), interval: Type.Integer(), count: Type.Integer() }), Type.Literal(false)])),
    notApplied: Type.Optional(Type.Array(Type.String())),
  },
  { description: 'what the kernel has in effect on the outgoing socket, read back now' },
);

export const Connection = Type.Object({
  id: Type.Integer(),
  listener: Type.String(),
  command: Type.String(),
  startedAt: Type.String({ format: 'date-time' }),
  client: Type.Object({ address: Type.String(), port: Type.Integer() }),
  user: Type.Optional(Type.String()),
  destination: Type.Object({ host: Type.Optional(Type.String()), address: Type.String(), port: Type.Integer() }),
  upstream: Type.Optional(Type.String({ description: 'the upstream SOCKS5 proxy this connection is chained through; the transport applies to the hop toward it' })),
  policyId: Type.Union([Type.Integer(), Type.Null()], { description: 'null: the default policy' }),
  transport: Transport,
  inEffect: Type.Union([InEffect, Type.Null()], { description: 'null when there is no outgoing TCP socket (UDP, BIND) or it is closed' }),
  bytes: Type.Object({ up: Type.Integer(), down: Type.Integer() }),
});

export const ConnectionList = Type.Object({
  total: Type.Integer({ description: 'open connections, before limit' }),
  connections: Type.Array(Connection),
});

export const ConnectionsQuery = Type.Object(
  { limit: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', title: 'an integer', description: 'at most this many connections (oldest first)' })) },
  closed,
);

export const Stats = Type.Object({
  active: Type.Integer(),
  connectionsTotal: Type.Integer(),
  bytesUp: Type.Integer(),
  bytesDown: Type.Integer(),
  failures: Type.Record(Type.String(), Type.Integer(), { description: 'failed requests by reason' }),
  mptcpConnections: Type.Integer(),
  mptcpFallbacks: Type.Integer(),
  authFailures: Type.Integer(),
  rejectedClients: Type.Integer(),
  uptimeSeconds: Type.Integer(),
  policies: Type.Integer(),
  users: Type.Integer(),
});

// ---- what the console watches ----

export const ServiceState = Type.Object({
  name: Type.String({ description: 'socks, intercept, rendezvous or shield' }),
  running: Type.Boolean({ description: 'enabled by the settings and started' }),
  listen: Type.Array(Type.String(), { description: 'the addresses it listens on' }),
  detail: Type.Union([Type.String(), Type.Null()], { description: 'the rest of what it reported at start, as key=value' }),
});
export type ServiceStateType = Static<typeof ServiceState>;
export const ServiceStates = Type.Object({ services: Type.Array(ServiceState) });

export const KernelOffer = Type.Object({
  congestionControls: Type.Array(Type.String()),
  defaultCongestion: Type.Union([Type.String(), Type.Null()]),
  mptcp: Type.Object({
    enabled: Type.Boolean(),
    schedulers: Type.Array(Type.String()),
    pathManagers: Type.Array(Type.String(), { description: "the choices of a policy's pathManager (the kernel's and edgeward's own)" }),
    scheduler: Type.Union([Type.String(), Type.Null()]),
    pathManager: Type.Union([Type.String(), Type.Null()]),
  }),
});

export const LogsQuery = Type.Object(
  {
    level: Type.Optional(Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')], { description: 'the lowest level shown (default debug)' })),
    limit: Type.Optional(Type.String({ pattern: '^(1000|[1-9][0-9]{0,2})$', title: 'a whole number 1..1000', description: 'at most this many, the newest (default 200)' })),
  },
  closed,
);
export const LogLines = Type.Object({
  lines: Type.Array(
    Type.Object({ time: Type.String(), level: Type.String(), msg: Type.String(), thread: Type.Integer({ description: '0: the main thread; 1..: a worker' }) }, { additionalProperties: true }),
    { description: 'oldest first' },
  ),
});

export const Health = Type.Object({ status: Type.Literal('ok'), version: Type.String() });

// ---- errors ----

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'stable: invalid_request, invalid_json, unsupported_media_type, body_too_large, unauthorized, invalid_token, not_found, invalid, unsupported, conflict, internal_error' }),
      message: Type.String(),
      field: Type.Union([Type.String(), Type.Null()], { description: 'the offending field, e.g. body.transport.congestion' }),
      available: Type.Optional(Type.Array(Type.String(), { description: 'what this kernel offers, for unsupported' })),
    }),
  },
  { title: 'Error' },
);
export type ErrorBodyType = Static<typeof ErrorBody>;

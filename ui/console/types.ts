// The shapes the console reads from the REST API (src/api/schemas.ts and the services' own routes
// are the source of truth; these are what the page relies on, written for the browser side).

export interface KeepAlive {
  idle: number;
  interval: number;
  count: number;
}

export interface Transport {
  mptcp?: boolean;
  congestion?: string;
  noDelay?: boolean;
  keepAlive?: KeepAlive | false;
  scheduler?: string;
  pathManager?: string;
  subflows?: number;
  backup?: string[];
}

export interface PolicyMatch {
  host?: string;
  cidr?: string;
  port?: number;
}

export interface PolicyInput {
  match: PolicyMatch;
  transport: Transport;
  via?: string;
  comment?: string;
}

export interface Policy extends PolicyInput {
  id: number;
  createdAt: string;
  updatedAt: string;
}

/** What a policy change did to open connections (src/transport/live.ts LiveUpdate). */
export interface LiveUpdate {
  connectionsUpdated: number;
  notes: string[];
}

export interface Subflow {
  local: { address: string; port: number };
  remote: { address: string; port: number };
  backup: boolean;
  bytes?: { sent: number; received: number };
}

export interface PathManagerView {
  mode: string;
  subflowsWanted: number;
  subflowsUp: number;
  subflowsPending: number;
  subflows: Subflow[];
  recreated: number;
  lastError?: string;
}

export interface InEffect {
  mptcp: boolean;
  mptcpNote?: string;
  subflows?: number;
  pathManager?: PathManagerView;
  /** the subflows under the kernel's path managers (edgeward's own: pathManager.subflows) */
  subflowList?: Array<Omit<Subflow, 'backup'>>;
  congestion?: string;
  noDelay?: boolean;
  keepAlive?: KeepAlive | false;
  notApplied?: string[];
}

export interface Connection {
  id: number;
  listener: string;
  command: string;
  startedAt: string;
  client: { address: string; port: number };
  user?: string;
  destination: { host?: string; address: string; port: number };
  upstream?: string;
  policyId: number | null;
  transport: Transport;
  inEffect: InEffect | null;
  bytes: { up: number; down: number };
}

export interface ServiceState {
  name: string;
  running: boolean;
  listen: string[];
  detail: string | null;
}

/** One `stats` event of /api/v1/stream. */
export interface StatsEvent {
  time: string;
  active: number;
  connectionsTotal: number;
  bytesUp: number;
  bytesDown: number;
  mptcpConnections: number;
  mptcpFallbacks: number;
  connectionsPerSecond: number;
  bytesUpPerSecond: number;
  bytesDownPerSecond: number;
  mptcpShare: number | null;
  services: ServiceState[];
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface LogLine {
  time: string;
  level: LogLevel;
  msg: string;
  thread?: string | number;
  [field: string]: unknown;
}

export interface Kernel {
  congestionControls: string[];
  defaultCongestion: string | null;
  mptcp: { enabled: boolean; schedulers: string[]; pathManagers: string[]; scheduler?: string | null; pathManager?: string | null };
}

export interface User {
  username: string;
  createdAt: string;
  turnRealm: string | null;
  socks: boolean;
  rendezvous: boolean;
  console?: boolean;
}

export interface Device {
  id: number;
  user: string;
  name: string;
  createdAt: string;
}

export interface CandidateCounts {
  host: number;
  srflx: number;
  prflx: number;
  relay: number;
}

export interface PairEnd {
  type: string;
  address: string;
  port: number;
  protocol: string;
}

export interface RendezvousStatus {
  online: Array<{ user: string; device: string; id?: number; since: string }>;
  sessions: Array<{
    id: string;
    user: string;
    device: string;
    openedAt: string;
    /** unknown until an end reports the candidate pair ICE chose */
    path: 'direct' | 'relayed' | 'unknown';
    pair?: { reportedBy: 'client' | 'device'; local: PairEnd; remote: PairEnd } | null;
    candidates: { client: CandidateCounts; device: CandidateCounts };
  }>;
}

export interface Allocation {
  id: number;
  user: string;
  client: { address: string; port: number };
  transport: string;
  relayProtocol: string;
  relayed: { address: string; port: number };
  bytes: { up: number; down: number };
  secondsLeft: number;
}

export type AttackKind = 'syn_flood' | 'udp_flood' | 'tcp_flags';

export interface Attack {
  id: number;
  kind: AttackKind;
  startedAt: string;
  endedAt: string | null;
  peakPps: number;
  packets: number;
  layers: Record<string, number>;
  topSources: Array<{ address: string; packets: number }>;
  distinctSources: number;
  tightened: string[];
}

export interface ShieldStatus {
  mode: 'host' | 'router';
  table: string;
  loaded: boolean;
  interfaces: string[];
  flags: Record<string, number>;
  blocked: { manual: number; meter: number; globalCap: number };
  allowlisted: number;
  services: Array<{ name: string; protocol: string; address: string | null; ports: number[]; passed: number; overRate: number; overConns: number; synproxy: number }>;
  rates: Record<string, number> | null;
  attacks: Attack[];
  tightened: string[];
}

/** One `rates` event of /api/v1/shield/events/stream. */
export interface ShieldRatesEvent {
  at: string;
  rates: Record<string, number>;
  signals: Record<AttackKind, number>;
}

export interface ListEntry {
  address: string;
  source: 'manual' | 'meter' | 'config';
  reason: string | null;
  secondsLeft: number | null;
  createdAt: string | null;
}

// The records the store keeps: transport policies. Defined here, below every user of the store
// (policy/ re-exports them), so that store/ depends on nothing above it.
import type { KeepAliveSetting } from '../kernel/sockopt.js';

export type { KeepAliveSetting };

/** How the outgoing connection to a destination is made. Absent fields keep the kernel default. */
export interface Transport {
  mptcp?: boolean;
  congestion?: string;
  noDelay?: boolean;
  /** keepalive timers, or false to turn keepalive off */
  keepAlive?: KeepAliveSetting | false;
  scheduler?: string;
  /** the kernel's (kernel, userspace) or edgeward's own (ndiffports, fullmesh: OWN_PATH_MANAGERS) */
  pathManager?: string;
  /** ndiffports: subflows in all, the initial one included (2 when absent) */
  subflows?: number;
  /** fullmesh: devices or addresses whose subflows carry the MPTCP backup flag */
  backup?: string[];
}

/** The path managers edgeward itself runs (transport/path-manager.ts) on the kernel's userspace path manager. */
export const OWN_PATH_MANAGERS = ['ndiffports', 'fullmesh'] as const;
export type OwnPathManager = (typeof OWN_PATH_MANAGERS)[number];

/** Subflows one connection may have in all under edgeward's path manager (the kernel's own limit for a peer's joins). */
export const MAX_SUBFLOWS = 8;

/** true for "ndiffports" and "fullmesh". */
export function isOwnPathManager(pm: string | undefined): pm is OwnPathManager {
  return pm === 'ndiffports' || pm === 'fullmesh';
}

/** Which destinations a policy applies to: one of host (name, *.wildcard or IP literal) or cidr. */
export interface PolicyMatch {
  host?: string;
  cidr?: string;
  port?: number;
}

/**
 * How a connection reaches its destination: "direct", or "socks5://[user:pass@]host:port" to chain
 * through an upstream SOCKS5 proxy (another edgeward: hybrid access). The transport then applies to
 * the hop toward the upstream.
 */
export type Via = string;

export interface Policy {
  id: number;
  match: PolicyMatch;
  transport: Transport;
  /** absent: the global --upstream, or direct when there is none */
  via?: Via;
  comment?: string;
  createdAt: string;
  updatedAt: string;
}

/** A policy as written by a user, before it is stored. */
export interface PolicyInput {
  match: PolicyMatch;
  transport: Transport;
  via?: Via;
  comment?: string;
}

// What the API's core and its route plugins share: the dependencies, body limits, and the error
// responses every route declares.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { DeviceService } from '../auth/devices.js';
import type { UserService } from '../auth/users.js';
import type { Logger } from '../log/logger.js';
import type { Metrics, MetricsJson } from '../metrics/registry.js';
import type { PolicyService } from '../policy/service.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import type { LiveUpdate } from '../transport/live.js';
import { isLoopback, parseIp } from '../net/address.js';
import { ApiError } from './errors.js';
import * as S from './schemas.js';

export interface ApiDeps {
  policies: PolicyService;
  users: UserService;
  devices: DeviceService;
  /** this thread's connections */
  registry: ConnectionRegistry;
  /** this thread's metrics (default: the registry's relay metrics and the policy count) */
  metrics?: Metrics;
  /** the connections and metrics of the other threads (worker threads), when there are any */
  remote?: RemoteThreads;
  /** each service's state (GET /api/v1/services, the event stream) */
  services?: () => S.ServiceStateType[];
  /** checks a presented bearer token */
  verifyToken(token: string): boolean;
  /** re-applies policies to open connections; called after every policy change */
  reapply(): LiveUpdate | Promise<LiveUpdate>;
  /** the services' own routes, each under its prefix (/api/v1) */
  plugins?: Array<{ prefix: string; plugin: FastifyPluginAsync }>;
  logger: Logger;
  version: string;
  /** take console sign-ins with a password over plain HTTP from other addresses than loopback */
  allowInsecureLogin?: boolean;
  /** serve HTTPS with this PEM pair (--api-tls-cert/--api-tls-key) */
  tls?: { cert: Buffer; key: Buffer };
}

/** What other threads hold, asked for over messages. */
export interface RemoteThreads {
  connections(limit: number): Promise<{ total: number; connections: Array<Record<string, unknown>> }>;
  metrics(): Promise<MetricsJson[]>;
  /** each worker's recent log lines after the sequence number `since` has for its thread */
  logs?(since: Record<number, number>): Promise<ThreadLogLines[]>;
}

/** A thread's recent JSON log lines after a sequence number, and the newest number. */
export interface ThreadLogLines {
  thread: number;
  last: number;
  lines: string[];
}

/**
 * A password login (the rendezvous login, the console's sign-in) over plain HTTP is taken from
 * loopback only, unless the operator said --allow-insecure-login: throws the 403 that says so.
 */
export function refuseInsecurePassword(req: FastifyRequest, allowInsecure: boolean): void {
  if (req.protocol === 'https' || allowInsecure) return;
  const a = parseIp(req.ip);
  if (a !== null && isLoopback(a)) return;
  throw new ApiError(403, 'insecure_login', null, 'password logins over plain HTTP are only taken from loopback: serve the API over TLS (--api-tls-cert, --api-tls-key), or for a lab --allow-insecure-login');
}

/** Largest request body, except bulk imports. */
export const BODY_LIMIT = 1024 * 1024;
export const BULK_BODY_LIMIT = 8 * 1024 * 1024;
export const BODY_ERRORS = [400, 413, 415];

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The error responses of a route: 401 and 500 always, and `codes`. */
export function errors(...codes: number[]): Record<number, typeof S.ErrorBody> {
  const out: Record<number, typeof S.ErrorBody> = { 401: S.ErrorBody, 500: S.ErrorBody };
  for (const c of codes) out[c] = S.ErrorBody;
  return out;
}

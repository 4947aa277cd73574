// The service contract: every job of the gateway (SOCKS, interception, later rendezvous and the
// shield) is a service with one lifecycle: listen -> stop accepting -> (the supervisor drains open
// connections for the grace period) -> close. A service declares its config section, whether it
// runs in every worker thread, and optionally its API routes (a fastify plugin under /api/v1, main
// thread only).
import type { FastifyPluginAsync } from 'fastify';
import type { Section } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { Metrics } from '../metrics/registry.js';
import type { DeviceService } from '../auth/devices.js';
import type { UserService } from '../auth/users.js';
import type { PolicyService } from '../policy/service.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import type { OutboundSettings } from '../transport/outbound.js';
import type { Store } from '../store/store.js';

/** What every thread that relays has once: built by the gateway, shared by the services of that thread. */
export interface ThreadParts {
  /** the store, for what a service keeps itself (the shield's hand-made list entries) */
  store: Store;
  policies: PolicyService;
  users: UserService;
  devices: DeviceService;
  registry: ConnectionRegistry;
  outbound: OutboundSettings;
  metrics: Metrics;
}

export interface ServiceContext<S> {
  /** the settings (the service reads its own section's fields) */
  settings: S;
  parts: ThreadParts;
  logger: Logger;
  /** 0 = the main thread; 1.. = worker threads */
  thread: number;
  /** threads in all (each service that runs in every thread is split across them) */
  threads: number;
  /** in a worker thread: dups of the listening fds the main thread's instance shared */
  inheritedFds?: number[];
  /**
   * memory the instances of a service that runs in every thread share (SERVICE_SHARED_BYTES): the
   * SOCKS service counts its open clients there, so --max-connections holds for all threads together
   */
  shared?: SharedArrayBuffer;
}

/** bytes of ServiceContext.shared */
export const SERVICE_SHARED_BYTES = 64;

/** A running service. */
export interface Service {
  /** Opens and listens; resolves with the fields the "listening" log line shows for it. */
  listen(): Promise<Record<string, unknown>>;
  /** In the main thread: listening fds that the worker threads' instances accept from too. */
  sharedFds?(): number[];
  /** Stops accepting; open connections go on. */
  stopAccepting(): Promise<void>;
  /** After the drain: closes what is left (clients still in a handshake) and releases kernel state. */
  close(): Promise<void>;
}

/** A kind of service, in the list of services (src/gateway/services.ts); V is what it creates. */
export interface ServiceDefinition<S = never, V extends Service = Service> {
  name: string;
  /** its YAML section and flags */
  section: Section;
  /** runs in every worker thread, accepting from the main thread's listening sockets */
  everyThread: boolean;
  enabled(settings: S): boolean;
  create(ctx: ServiceContext<S>): V;
  /** its API routes, registered under /api/v1 (paths of its own: /intercept/..., /turn/...; main thread only), given the running service */
  routes?(service: V): FastifyPluginAsync;
  /** pages it serves at the API's root (/rendezvous), outside /api/v1; public unless they say otherwise */
  pages?(service: V): FastifyPluginAsync;
}

/** Closes the services (after stopAccepting and the drain), in reverse order; errors are collected, not thrown. */
export async function closeServices(services: readonly Service[]): Promise<Error[]> {
  const errors: Error[] = [];
  for (const s of [...services].reverse()) await s.close().catch((e: unknown) => errors.push(e as Error));
  return errors;
}

/** Stops the services at once: stop accepting, then close, without a drain (a failed start-up). */
export async function stopServices(services: readonly Service[]): Promise<Error[]> {
  const errors: Error[] = [];
  for (const s of services) await s.stopAccepting().catch((e: unknown) => errors.push(e as Error));
  return [...errors, ...(await closeServices(services))];
}

/** Waits up to graceMs for the registry to empty, then closes what is left; how many were closed. */
export async function drain(registry: ConnectionRegistry, graceMs: number): Promise<number> {
  const deadline = Date.now() + graceMs;
  while (registry.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const left = registry.size;
  for (const rec of registry.list()) rec.close();
  return left;
}

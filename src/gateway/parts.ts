// What each thread builds once and its services share: the store (one SQLite file, WAL, shared by
// all threads), the policy snapshot, the users and their devices, a connection registry of its own, the outbound
// settings, and its metrics registry.
import { DeviceService } from '../auth/devices.js';
import { UserService } from '../auth/users.js';
import { busyPollMicros, parseKeepAlive, parseUplinks } from '../config/common.js';
import { setBusyPoll } from '../kernel/epoll-plane.js';
import { Metrics } from '../metrics/registry.js';
import { CidrList } from '../net/address.js';
import { PolicyService } from '../policy/service.js';
import type { Transport } from '../policy/types.js';
import { parseUpstream, type Upstream } from '../policy/via.js';
import { registerRelayMetrics } from '../relay/metrics.js';
import { ConnectionRegistry } from '../relay/registry.js';
import type { ThreadParts } from '../runtime/service.js';
import { thePathManager } from '../transport/path-manager.js';
import { SqliteStore } from '../store/sqlite-store.js';
import type { Settings } from './settings.js';

/** The transport defaults of the command line (--no-delay, --keepalive), beneath every policy. */
export function baseTransport(settings: Settings): Transport {
  const base: Transport = {};
  if (settings.noDelay) base.noDelay = true;
  if (settings.keepalive !== '') base.keepAlive = parseKeepAlive(settings.keepalive, '--keepalive');
  return base;
}

export interface OpenedParts {
  store: SqliteStore;
  parts: ThreadParts;
  upstream: Upstream | null;
}

/**
 * Opens the store and builds the parts of one thread. `thread`/`threads` number the registry's
 * connection ids apart, so that ids are unique across threads.
 */
export async function openThreadParts(settings: Settings, dataDir: string, thread: number, threads: number): Promise<OpenedParts> {
  const store = new SqliteStore(dataDir);
  const policies = await PolicyService.open(store, baseTransport(settings));
  const users = new UserService(store, settings.turnRealm);
  const registry = new ConnectionRegistry(thread + 1, threads);
  const up = settings.upstream !== '' ? parseUpstream(settings.upstream, '--upstream') : null;
  const upstream = up?.ok ? up.value : null; // checked when the settings were resolved
  const metrics = new Metrics();
  registerRelayMetrics(metrics, registry);
  metrics.gauge({ name: 'edgeward_policies', help: 'Transport policies stored.', aggregate: 'first', read: () => policies.list().length });
  thePathManager().configure({ uplinks: parseUplinks(settings.uplinks, '--uplinks') });
  setBusyPoll(busyPollMicros(settings.busyPoll));
  const outbound = {
    policies,
    deny: CidrList.parse(settings.socksDeny, '--socks-deny'),
    connectTimeout: settings.connectTimeout * 1000,
    upstream,
    bindOutgoing: settings.bindOutgoing !== '' ? settings.bindOutgoing : undefined,
  };
  return { store, parts: { store, policies, users, devices: new DeviceService(store), registry, outbound, metrics }, upstream };
}

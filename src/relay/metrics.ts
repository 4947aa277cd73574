// The relay's metric families: open and total connections, bytes each way, failed requests by
// reason, MPTCP results, and the refusals every listener counts. Read from a ConnectionRegistry's
// counters at scrape time. `statsFrom` turns merged metrics back into the /api/v1/stats shape, so
// stats and /metrics are one set of numbers.
import { valueOf, valuesBy, type Metrics, type MetricsJson } from '../metrics/registry.js';
import type { ConnectionRegistry, Totals } from './registry.js';

export const RELAY_METRICS = {
  active: 'edgeward_connections_active',
  total: 'edgeward_connections_total',
  bytes: 'edgeward_bytes_total',
  failures: 'edgeward_request_failures_total',
  mptcp: 'edgeward_mptcp_connections_total',
  authFailures: 'edgeward_auth_failures_total',
  rejected: 'edgeward_rejected_clients_total',
  uptime: 'edgeward_uptime_seconds',
} as const;

/** Registers the families of `registry` (one thread's connections) into `metrics`. */
export function registerRelayMetrics(metrics: Metrics, registry: ConnectionRegistry): void {
  const m = RELAY_METRICS;
  metrics.gauge({ name: m.active, help: 'Relayed connections open now (every listener, every thread).', read: () => registry.size });
  metrics.counter({ name: m.total, help: 'Relayed connections since start.', read: () => registry.totals.connectionsTotal });
  metrics.counter({
    name: m.bytes,
    help: 'Bytes relayed since start, open connections included: up = client to destination, down = destination to client.',
    labels: ['direction'],
    read: () => {
      const s = registry.snapshot();
      return [
        [{ direction: 'up' }, s.bytesUp],
        [{ direction: 'down' }, s.bytesDown],
      ];
    },
  });
  metrics.counter({
    name: m.failures,
    help:
      'Requests that never reached relaying, by reason: for SOCKS the reply sent (connection_refused, host_unreachable, ...) or the handshake error (handshake_timeout, bad_version, ...); for intercepted connections intercept_* reasons.',
    labels: ['reason'],
    read: () => Object.entries(registry.totals.failures).map(([reason, n]) => [{ reason }, n]),
  });
  metrics.counter({
    name: m.mptcp,
    help: 'Outgoing connections whose policy asked for MPTCP, by result: mptcp, or fallback to TCP.',
    labels: ['result'],
    read: () => [
      [{ result: 'mptcp' }, registry.totals.mptcpConnections],
      [{ result: 'fallback' }, registry.totals.mptcpFallbacks],
    ],
  });
  metrics.counter({ name: m.authFailures, help: 'Failed client authentications: SOCKS username/password refused, or no acceptable SOCKS5 method offered.', read: () => registry.totals.authFailures });
  metrics.counter({
    name: m.rejected,
    help: 'Clients closed before their handshake: not in --socks-allow, or over --max-connections (SOCKS and intercept listeners).',
    read: () => registry.totals.rejectedClients,
  });
  metrics.gauge({ name: m.uptime, help: 'Seconds since edgeward started.', aggregate: 'max', read: () => Math.round((Date.now() - registry.startedAt) / 1000) });
}

/** Totals as GET /api/v1/stats shows them, from merged metrics. */
export type Stats = Totals & { active: number; uptimeSeconds: number };

export function statsFrom(json: MetricsJson): Stats {
  const m = RELAY_METRICS;
  const failures = valuesBy(json, m.failures, 'reason');
  for (const k of Object.keys(failures)) if (failures[k] === 0) delete failures[k];
  return {
    active: valueOf(json, m.active),
    connectionsTotal: valueOf(json, m.total),
    bytesUp: valueOf(json, m.bytes, { direction: 'up' }),
    bytesDown: valueOf(json, m.bytes, { direction: 'down' }),
    failures,
    mptcpConnections: valueOf(json, m.mptcp, { result: 'mptcp' }),
    mptcpFallbacks: valueOf(json, m.mptcp, { result: 'fallback' }),
    authFailures: valueOf(json, m.authFailures),
    rejectedClients: valueOf(json, m.rejected),
    uptimeSeconds: valueOf(json, m.uptime),
  };
}

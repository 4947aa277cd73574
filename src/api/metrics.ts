// GET /metrics: the registry's counters in the Prometheus text exposition format, version 0.0.4.
import type { Totals } from '../relay/registry.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export interface MetricsInput {
  snapshot: Totals & { active: number; uptimeSeconds: number };
  policies: number;
}

type Sample = [labels: Record<string, string>, value: number];

/** A label value escaped as the format demands: backslash, double quote and newline. */
function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function family(name: string, type: 'counter' | 'gauge', help: string, samples: Sample[]): string {
  const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`];
  for (const [labels, value] of samples) {
    const l = Object.entries(labels)
      .map(([k, v]) => `${k}="${escapeLabel(v)}"`)
      .join(',');
    lines.push(`${name}${l ? `{${l}}` : ''} ${Number.isFinite(value) ? value : 0}`);
  }
  return lines.join('\n');
}

/** Renders the metrics page. */
export function renderMetrics({ snapshot: s, policies }: MetricsInput): string {
  const failures = Object.entries(s.failures).sort(([a], [b]) => a.localeCompare(b));
  return (
    [
      family('edgeward_connections_active', 'gauge', 'Relayed connections open now.', [[{}, s.active]]),
      family('edgeward_connections_total', 'counter', 'Relayed connections since start.', [[{}, s.connectionsTotal]]),
      family('edgeward_bytes_total', 'counter', 'Bytes relayed since start: up = client to destination, down = destination to client.', [
        [{ direction: 'up' }, s.bytesUp],
        [{ direction: 'down' }, s.bytesDown],
      ]),
      family(
        'edgeward_request_failures_total',
        'counter',
        'Requests that failed, by reason (the SOCKS reply sent).',
        failures.map(([reason, n]) => [{ reason }, n]),
      ),
      family('edgeward_mptcp_connections_total', 'counter', 'Connections that asked for MPTCP, by result: mptcp, or fallback to TCP.', [
        [{ result: 'mptcp' }, s.mptcpConnections],
        [{ result: 'fallback' }, s.mptcpFallbacks],
      ]),
      family('edgeward_auth_failures_total', 'counter', 'Failed SOCKS username/password authentications.', [[{}, s.authFailures]]),
      family('edgeward_rejected_clients_total', 'counter', 'Clients refused before the handshake (not allowed, too many connections).', [[{}, s.rejectedClients]]),
      family('edgeward_policies', 'gauge', 'Transport policies stored.', [[{}, policies]]),
      family('edgeward_uptime_seconds', 'gauge', 'Seconds since edgeward started.', [[{}, s.uptimeSeconds]]),
    ].join('\n') + '\n'
  );
}

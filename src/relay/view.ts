// Connections and totals as the API shows them, built in the thread that owns the sockets (the
// transport in effect is read back from the kernel through the socket's fd), and merged across
// worker threads.
import { transportInEffect } from '../transport/dialer.js';
import { recordBytes, type ConnectionRecord, type Totals } from './registry.js';

export type Snapshot = Totals & { active: number; uptimeSeconds: number };

/** One open connection, as GET /api/v1/connections lists it. */
export function connectionView(rec: ConnectionRecord): Record<string, unknown> {
  let inEffect: ReturnType<typeof transportInEffect> = null;
  if (rec.outSocket && !rec.outSocket.destroyed && rec.command === 'connect') inEffect = transportInEffect(rec.outSocket);
  if (inEffect) {
    if (rec.mptcpNote && !inEffect.mptcpNote) inEffect.mptcpNote = rec.mptcpNote;
    if (rec.notApplied && rec.notApplied.length > 0) inEffect.notApplied = rec.notApplied;
  }
  return {
    id: rec.id,
    listener: rec.listener,
    command: rec.command,
    startedAt: new Date(rec.startedAt).toISOString(),
    client: rec.client,
    user: rec.user,
    destination: rec.destination,
    upstream: rec.upstream,
    policyId: rec.policyId,
    transport: rec.transport,
    inEffect,
    bytes: recordBytes(rec),
  };
}

/** Adds the counters of `b` to those of `a` (uptime stays a's). */
export function mergeSnapshots(a: Snapshot, b: Snapshot): Snapshot {
  const failures = { ...a.failures };
  for (const [k, v] of Object.entries(b.failures)) failures[k] = (failures[k] ?? 0) + v;
  return {
    connectionsTotal: a.connectionsTotal + b.connectionsTotal,
    bytesUp: a.bytesUp + b.bytesUp,
    bytesDown: a.bytesDown + b.bytesDown,
    failures,
    mptcpConnections: a.mptcpConnections + b.mptcpConnections,
    mptcpFallbacks: a.mptcpFallbacks + b.mptcpFallbacks,
    authFailures: a.authFailures + b.authFailures,
    rejectedClients: a.rejectedClients + b.rejectedClients,
    active: a.active + b.active,
    uptimeSeconds: a.uptimeSeconds,
  };
}

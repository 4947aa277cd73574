// Connections and totals as the API shows them, built in the thread that owns the sockets (the
// transport in effect is read back from the kernel through the socket's fd).
import { transportInEffect } from '../transport/dialer.js';
import { recordBytes, type ConnectionRecord } from './registry.js';

/** One open connection, as GET /api/v1/connections lists it. */
export function connectionView(rec: ConnectionRecord): Record<string, unknown> {
  let inEffect: ReturnType<typeof transportInEffect> | null = null;
  if (rec.relay?.open && rec.command === 'connect') inEffect = transportInEffect(rec.relay.outFd);
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

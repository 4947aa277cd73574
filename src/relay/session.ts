// One connected outbound connection, from the moment its client may talk to it: the transport's
// client-side options, the registry record (listed by the API, re-applied on policy changes) and
// the relay. Shared by the SOCKS server and the interceptor, so both count and report alike.
import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.js';
import { socketFd } from '../kernel/sockopt.js';
import { applyLiveOptions } from '../transport/dialer.js';
import type { Outbound } from '../transport/outbound.js';
import { relay } from './relay.js';
import type { ConnectionRecord, ConnectionRegistry, Listener } from './registry.js';

const EMPTY = Buffer.alloc(0);

export interface OutboundSession {
  listener: Listener;
  client: Socket;
  clientAddress: { address: string; port: number };
  user?: string;
  destination: { host?: string; address: string; port: number };
  out: Outbound;
  /** bytes the client sent beyond its handshake (they go to the destination first) */
  pending?: Buffer;
  /** the client half-closed during the handshake */
  clientEnded?: boolean;
  /** congestion control for the client-side socket (--client-congestion) */
  clientCongestion?: string;
  registry: ConnectionRegistry;
  idleTimeout: number;
  logger: Logger;
}

/**
 * Puts noDelay / keepAlive of the transport on the client-side socket too, and `congestion`
 * (--client-congestion: the hop toward the client, e.g. a router's MPTCP link to its concentrator).
 */
function applyClientOptions(client: Socket, o: Outbound, congestion?: string): string[] {
  const t = o.decision.transport;
  if (t.noDelay === undefined && t.keepAlive === undefined && congestion === undefined) return [];
  const fd = socketFd(client);
  if (fd === null) return [];
  return applyLiveOptions(fd, { noDelay: t.noDelay, keepAlive: t.keepAlive, congestion }, { congestion: congestion !== undefined });
}

/** Sets the client-side options, registers the connection and relays it until both sides are done. Call after any protocol reply. */
export function relayOutbound(s: OutboundSession): ConnectionRecord {
  const { client, out, registry } = s;
  const remote = out.socket;
  const t = out.decision.transport;
  const clientFailures = applyClientOptions(client, out, s.clientCongestion);
  const notApplied = clientFailures.length === 0 ? out.notApplied : [...out.notApplied, ...clientFailures.map((f) => `client side: ${f}`)];
  const pending = s.pending ?? EMPTY;
  const early = out.pending ?? EMPTY;
  const rec = registry.add({
    listener: s.listener,
    command: 'connect',
    startedAt: Date.now(),
    client: s.clientAddress,
    user: s.user,
    destination: s.destination,
    upstream: out.upstream,
    policyId: out.decision.policy?.id ?? null,
    transport: t,
    mptcpRequested: t.mptcp === true,
    mptcpNote: out.mptcpNote,
    notApplied: notApplied.length > 0 ? notApplied : undefined,
    clientSocket: client,
    outSocket: remote,
    // the handshake and an upstream's SOCKS reply were read from these sockets but are not relayed bytes
    bytesBase: { up: client.bytesRead - pending.length, down: remote.bytesRead - early.length },
  });
  if (out.mptcpNote) s.logger.warn('MPTCP not available for connection', { id: rec.id, note: out.mptcpNote });
  if (early.length > 0) client.write(early);
  relay(client, remote, { idleTimeout: s.idleTimeout, pending, clientEnded: s.clientEnded }, (how, err) => {
    registry.remove(rec);
    if (s.logger.enabled('debug')) s.logger.debug('connection closed', { id: rec.id, how, error: err?.message });
  });
  return rec;
}

// One connected outbound connection, from the moment its client may talk to it: the transport's
// client-side options, the registry record (listed by the API, re-applied on policy changes) and
// the relay. Shared by the SOCKS server and the interceptor, so both count and report alike.
import type { Socket } from 'node:net';
import type { Logger } from '../log/logger.js';
import { closeFd, takeSocket, writeFd } from '../kernel/fdio.js';
import { applyLiveOptions } from '../transport/dialer.js';
import type { Outbound } from '../transport/outbound.js';
import type { ConnectionRecord, ConnectionRegistry, Listener } from './registry.js';
import { SpliceRelay } from './splice.js';

export interface OutboundSession {
  listener: Listener;
  /** the client's connection, its fd now the relay's, with the bytes read beyond its handshake */
  client: { fd: number; buffered: Buffer | null; parked?: boolean };
  clientAddress: { address: string; port: number };
  user?: string;
  destination: { host?: string; address: string; port: number };
  out: Outbound;
  /** bytes the client sent beyond its handshake (they go to the destination first) */
  pending?: Buffer;
  /** the protocol's reply to the client (a SOCKS reply): written at once, before the set-up, and before the destination's bytes */
  reply?: Buffer;
  /** runs when the relay has closed both sockets */
  onClosed?: () => void;
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
function applyClientOptions(fd: number, o: Outbound, congestion?: string): string[] {
  const t = o.decision.transport;
  if (t.noDelay === undefined && t.keepAlive === undefined && congestion === undefined) return [];
  return applyLiveOptions(fd, { noDelay: t.noDelay, keepAlive: t.keepAlive, congestion }, { congestion: congestion !== undefined });
}

/**
 * Sets the client-side options, registers the connection and relays it until both sides are done.
 * The relay (relay/splice.ts) owns both fds from here; a protocol reply for the client goes in `reply`.
 */
export function relayOutbound(s: OutboundSession): ConnectionRecord {
  const { client, out, registry } = s;
  // the reply first: the client's next bytes are on their way while the rest is set up, not after
  // (what the kernel does not take at once, or a failed write, is the relay's to send or report)
  const sent = s.reply ? writeFd(client.fd, s.reply) : 0;
  const reply = s.reply && sent < s.reply.length ? s.reply.subarray(Math.max(sent, 0)) : undefined;
  const t = out.decision.transport;
  const clientFailures = applyClientOptions(client.fd, out, s.clientCongestion);
  const notApplied = clientFailures.length === 0 ? out.notApplied : [...out.notApplied, ...clientFailures.map((f) => `client side: ${f}`)];
  const toRemote = concat(s.pending, client.buffered);
  const toClient = out.pending;
  const rec = registry.add({
    id: 0, // the registry numbers it; here so the record is made whole, with no field added later
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
    relay: undefined,
    close: () => relay.destroy(),
    slot: -1,
  });
  if (out.mptcpNote) s.logger.warn('MPTCP not available for connection', { id: rec.id, note: out.mptcpNote });
  const parked = { client: client.parked === true, out: out.parked };
  const relay = new SpliceRelay(client.fd, out.fd, { idleTimeout: s.idleTimeout, toRemote, reply, toClient, parked }, (how, err) => {
    registry.remove(rec);
    s.onClosed?.();
    if (s.logger.enabled('debug')) s.logger.debug('connection closed', { id: rec.id, how, error: err?.message });
  });
  rec.relay = relay;
  relay.start();
  return rec;
}

function concat(a: Buffer | undefined, b: Buffer | null): Buffer | undefined {
  if (!b || b.length === 0) return a;
  return a && a.length > 0 ? Buffer.concat([a, b]) : b;
}

/**
 * Takes both sockets away from Node for the relay. When that fails (no fd left: EMFILE), both are
 * closed and null comes back: the connection cannot be relayed.
 */
export function takePair(client: Socket, remote: Socket, logger: Logger): { client: { fd: number; buffered: Buffer | null }; out: { fd: number; buffered: Buffer | null } } | null {
  let c: ReturnType<typeof takeSocket> | null = null;
  try {
    c = takeSocket(client);
    return { client: c, out: takeSocket(remote) };
  } catch (e) {
    logger.warn('relay: could not take the connection from Node', { error: (e as Error).message });
    if (c) closeFd(c.fd);
    client.destroy();
    remote.destroy();
    return null;
  }
}

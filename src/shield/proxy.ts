// The shield's L4 reverse proxy: the connection layer of the DoS shield, in front of one backend.
// The nftables table (rules.ts) stops floods by the packet; this stops what only a connection
// shows: clients that connect and say nothing (first-byte timeout), send their request slowly
// (slowloris: slow_send) or read the answer slowly (slow read: slow_read), advertise a zero window
// so that the answer piles up in our buffers (zero_window, from TCP_INFO), and sources that hold
// too many connections (per-source limit, a cap with eviction that serves preferred sources first
// and well-behaved sources before those that misbehaved in the last minute or hold more than a
// quarter of the cap).
//
// The send direction has "data to move" while the client is mid-request: it sent bytes the backend
// has not answered yet and it keeps sending. Its rate is judged when more bytes arrive, over at
// least graceMs since the request began (or the last judgement), so a client that sent a whole
// request and waits for a slow backend is never judged. A protocol where the client sends without
// answers (an upload with no reply until the end) must send at least minRate or go without it.
// The read direction has data to move while bytes wait for the client in our buffer or the backend
// is paused for it; its rate is what the client acknowledged (tcpi_bytes_acked) over graceMs.
//
// Every connection closed by the shield is reset (RST), not ended: the kernel then drops what was
// queued toward the client instead of keeping it for a peer that will not read it, and the backend
// gets a reset too, which frees its send queue toward us.
import net from 'node:net';
import { getTcpInfo, socketFd, type TcpInfo } from '../kernel/sockopt.js';
import type { Logger } from '../log/logger.js';
import { canonicalIp, formatHostPort } from '../net/address.js';
import { EdgewardError } from '../core/errors.js';
import { ClientListener } from '../net/listener.js';
import { LocalAddresses } from '../net/local-addresses.js';
import { encodeProxyV2 } from './proxy-protocol.js';

/** Why the shield closed (or refused) a connection: the stable names of its statistics. */
export const SHIELD_CLOSE_REASONS = ['first_byte_timeout', 'slow_send', 'slow_read', 'zero_window', 'per_source_limit', 'cap', 'evicted', 'backend_error'] as const;
export type ShieldCloseReason = (typeof SHIELD_CLOSE_REASONS)[number];

/** Closes that make a source suspect for SUSPECT_MS: it misbehaved, it did not just arrive at a bad time. */
const MISBEHAVIOUR: ReadonlySet<ShieldCloseReason> = new Set<ShieldCloseReason>(['first_byte_timeout', 'slow_send', 'slow_read', 'zero_window']);

/** How long a source that misbehaved is served after the others. */
const SUSPECT_MS = 60_000;
/** Period of the one sweep over the connections (rate and window checks). */
const SWEEP_MS = 250;
/** Suspect sources are refused once this share of maxConns is in use. */
const SUSPECT_SHARE = 0.9;
/** At the cap, a source holding more than this share of maxConns gives way to a well-behaved newcomer (one source must not own the service). */
const HOG_SHARE = 0.25;
/** Connecting to the backend longer than this is a backend_error. */
const BACKEND_CONNECT_TIMEOUT_MS = 10_000;
/** Client bytes kept while the backend connects; beyond it the client is paused. */
const MAX_PENDING = 64 * 1024;
/** Default bound of the per-source bookkeeping. */
const DEFAULT_MAX_SOURCES = 16_384;
/** How often expired suspect marks are purged from the per-source map. */
const PURGE_MS = 5_000;

export interface ShieldProxyOptions {
  /** the protected service's name (logs, stats) */
  name: string;
  /**
   * Where to listen; port 0 = ephemeral. transparent: an IP_TRANSPARENT socket for TPROXY
   * (CAP_NET_ADMIN; the firewall must divert the service's traffic to it).
   */
  listen: { host: string; port: number; transparent?: boolean };
  /** the backend, or 'original': the accepted socket's local address (under TPROXY, where the client meant to go) */
  backend: { host: string; port: number } | 'original';
  /** ms within which the client must send its first byte; 0 = off (the server speaks first: dial at once) */
  firstByteTimeoutMs: number;
  /** a direction with data to move that moves less than bytesPerSecond over graceMs is closed; null = off */
  minRate: { bytesPerSecond: number; graceMs: number } | null;
  /** ms a client may keep its window below one MSS with data waiting for it; 0 = off */
  zeroWindowTimeoutMs: number;
  /** connections one source address may hold (preferred sources are exempt) */
  perSourceConns: number;
  /** connections this service may hold */
  maxConns: number;
  /** allowlisted / management sources: at the cap they are still served, evicting another */
  isPreferred(address: string): boolean;
  /** send a PROXY protocol v2 header (client and original destination) to the backend first */
  proxyProtocol: boolean;
  logger: Logger;
  /** bound of the per-source bookkeeping (default 16384 sources) */
  maxSources?: number;
}

export interface ShieldProxyStats {
  name: string;
  /** connections open now */
  active: number;
  /** connections admitted since start (those refused at once are not counted here) */
  accepted: number;
  /** connections closed or refused by the shield, by reason */
  closed: Record<ShieldCloseReason, number>;
  bytes: { clientToBackend: number; backendToClient: number };
  /** source addresses tracked (with a connection open, or suspect) */
  sources: number;
  /** sources that misbehaved within the last minute */
  suspects: number;
}

export type ShieldProxyErrorCode = 'invalid_options';

/** Options the proxy cannot work with. */
export class ShieldProxyError extends EdgewardError<ShieldProxyErrorCode> {}

interface SourceState {
  address: string;
  conns: Set<Connection>;
  /** ms (performance.now) until which the source counts as suspect; 0 = never was */
  suspectUntil: number;
  preferred: boolean;
}

type ConnState = 'first_byte' | 'connecting' | 'relaying' | 'closed';

/** One client connection and its backend connection. */
class Connection {
  state: ConnState = 'first_byte';
  backend: net.Socket | null = null;
  readonly srcPort: number;
  readonly destAddress: string;
  readonly destPort: number;
  readonly fd: number | null;
  readonly openedAt: number;
  lastActivity: number;
  firstByteTimer: NodeJS.Timeout | null = null;
  pending: Buffer[] = [];
  pendingBytes = 0;
  clientEnded = false;
  backendEnded = false;
  up = 0;
  down = 0;
  /** client paused because the backend's write buffer is full */
  pausedUp = false;
  /** backend paused because the client's write buffer is full */
  pausedDown = false;
  // send direction: a request in progress (client bytes the backend has not answered)
  inRequest = false;
  requestBytes = 0;
  sendWindowStart = 0;
  sendWindowBase = 0;
  // read direction: the window over which the client's acknowledged bytes are measured
  readWindowStart: number | null = null;
  readWindowBase = 0;
  // small window: since when, and the acknowledged bytes then
  zeroSince: number | null = null;
  zeroBase = 0;

  constructor(
    readonly client: net.Socket,
    readonly source: string,
    readonly preferred: boolean,
    now: number,
  ) {
    this.srcPort = client.remotePort ?? 0;
    this.destAddress = canonicalIp(client.localAddress ?? '');
    this.destPort = client.localPort ?? 0;
    this.fd = socketFd(client);
    this.openedAt = now;
    this.lastActivity = now;
  }

  /** bytes the client has taken off us: acknowledged (TCP_INFO), else handed to its kernel */
  delivered(info: TcpInfo | null): number {
    return info?.bytesAcked ?? this.client.bytesWritten - this.client.writableLength;
  }
}

/** Sends a reset (dropping what is queued) unless the socket is still connecting or gone. */
function abortSocket(s: net.Socket): void {
  if (s.destroyed) return;
  try {
    if (s.connecting) s.destroy();
    else s.resetAndDestroy();
  } catch {
    s.destroy();
  }
}

function zeroCounts(): Record<ShieldCloseReason, number> {
  return Object.fromEntries(SHIELD_CLOSE_REASONS.map((r) => [r, 0])) as Record<ShieldCloseReason, number>;
}


/** The shield's reverse proxy for one service. */
export class ShieldProxy {
  private readonly listener: ClientListener;
  private readonly conns = new Set<Connection>();
  private readonly sources = new Map<string, SourceState>();
  /** suspect sources that may hold connections (pruned lazily): what a well-behaved newcomer may evict, without a scan of every source */
  private readonly suspectHolders = new Set<SourceState>();
  private readonly closedBy = zeroCounts();
  private readonly log: Logger;
  private readonly maxSources: number;
  /** 'original' must never dial the proxy itself */
  private readonly own = new LocalAddresses();
  private accepted = 0;
  private bytesUp = 0;
  private bytesDown = 0;
  private sweepTimer: NodeJS.Timeout | null = null;
  private lastPurge = 0;
  private bound: { host: string; port: number } | null = null;

  constructor(private readonly opts: ShieldProxyOptions) {
    if (!(opts.maxConns >= 1) || !(opts.perSourceConns >= 1)) throw new ShieldProxyError('invalid_options', `${opts.name}: maxConns and perSourceConns must be at least 1`);
    if (opts.minRate && !(opts.minRate.graceMs > 0 && opts.minRate.bytesPerSecond > 0)) throw new ShieldProxyError('invalid_options', `${opts.name}: minRate needs bytesPerSecond and graceMs above 0`);
    if (opts.backend === 'original' && !opts.listen.transparent) {
      throw new ShieldProxyError('invalid_options', `${opts.name}: backend 'original' needs a transparent (TPROXY) listener; otherwise the original destination is the proxy itself`);
    }
    this.log = opts.logger.child({ service: opts.name });
    this.maxSources = opts.maxSources ?? DEFAULT_MAX_SOURCES;
    this.listener = new ClientListener({
      accept: { allowHalfOpen: true, pauseOnConnect: true, noDelay: true },
      // the shield keeps its own cap; this only bounds sockets accepted and being refused at once
      maxConnections: opts.maxConns * 2 + 256,
      onConnection: (client) => this.accept(client),
      onDrop: () => this.closedBy.cap++,
      onError: (e) => this.log.error('shield proxy: listener error', { error: e.message }),
    });
  }

  /** Starts listening; resolves with the bound address. */
  async listen(): Promise<{ host: string; port: number }> {
    const { host, port, transparent } = this.opts.listen;
    const a = await this.listener.listen({ host, port, transparent: transparent === true });
    this.bound = { host: a.address, port: a.port };
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
    return this.bound;
  }

  /** Stops accepting; open connections go on. */
  async stopAccepting(): Promise<void> {
    this.listener.close();
  }

  /** Stops accepting and closes every connection; resolves when their sockets are closed. */
  async close(): Promise<void> {
    this.listener.close();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const closing: Array<Promise<void>> = [];
    for (const c of [...this.conns]) {
      for (const s of [c.client, c.backend]) if (s && !s.destroyed) closing.push(new Promise((r) => s.once('close', () => r())));
      this.finish(c);
      c.client.destroy();
      c.backend?.destroy();
    }
    await Promise.all(closing);
  }

  /** Counters since start, and the connections and sources held now. */
  stats(): ShieldProxyStats {
    const now = performance.now();
    let suspects = 0;
    for (const s of this.sources.values()) if (s.suspectUntil > now) suspects++;
    return {
      name: this.opts.name,
      active: this.conns.size,
      accepted: this.accepted,
      closed: { ...this.closedBy },
      bytes: { clientToBackend: this.bytesUp, backendToClient: this.bytesDown },
      sources: this.sources.size,
      suspects,
    };
  }

  // -------------------------------------------------------------------------------------------
  // Admission

  private preferredSource(address: string): boolean {
    try {
      return this.opts.isPreferred(address);
    } catch (e) {
      this.log.error('shield proxy: isPreferred threw; source treated as not preferred', { source: address, error: (e as Error).message });
      return false;
    }
  }

  private sourceState(address: string, preferred: boolean): SourceState {
    let s = this.sources.get(address);
    if (!s) {
      if (this.sources.size >= this.maxSources) this.forgetIdleSources(this.sources.size - this.maxSources + 1);
      s = { address, conns: new Set(), suspectUntil: 0, preferred };
      this.sources.set(address, s);
    }
    s.preferred = preferred;
    return s;
  }

  /** Drops up to `n` sources without connections, oldest first (a suspect mark is the oldest information). */
  private forgetIdleSources(n: number): void {
    for (const [address, s] of this.sources) {
      if (n <= 0) return;
      if (s.conns.size === 0) {
        this.sources.delete(address);
        n--;
      }
    }
  }

  private refuse(client: net.Socket, reason: ShieldCloseReason, source: string): void {
    this.closedBy[reason]++;
    if (this.log.enabled('debug')) this.log.debug('shield proxy: connection refused', { source, reason, active: this.conns.size });
    abortSocket(client);
  }

  private accept(client: net.Socket): void {
    client.on('error', () => undefined); // until the connection's own handlers are on; never crash
    const now = performance.now();
    const source = canonicalIp(client.remoteAddress ?? '');
    const preferred = this.preferredSource(source);
    const state = this.sources.get(source);
    const suspect = state !== undefined && state.suspectUntil > now;
    if (!preferred && state && state.conns.size >= this.opts.perSourceConns) return this.refuse(client, 'per_source_limit', source);
    const { maxConns } = this.opts;
    if (!preferred && suspect && this.conns.size >= Math.max(1, Math.floor(maxConns * SUSPECT_SHARE))) return this.refuse(client, 'cap', source);
    if (this.conns.size >= maxConns) {
      // a preferred source takes anyone's place but another preferred one's; a well-behaved source a
      // suspect's, or that of a source holding more than its share
      const victim = this.chooseVictim(preferred ? 'any' : 'suspects', now, source);
      if (!victim) return this.refuse(client, 'cap', source);
      this.abort(victim, 'evicted', { for: source });
    }
    const conn = new Connection(client, source, preferred, now);
    const held = this.sourceState(source, preferred);
    held.conns.add(conn);
    if (suspect) this.suspectHolders.add(held);
    this.conns.add(conn);
    this.accepted++;
    this.wire(conn);
  }

  /**
   * The connection to close at the cap: never a preferred source's; suspects first, then the
   * source holding most connections, within it the connection that moved fewest bytes, then the
   * one idle longest. A well-behaved newcomer ('suspects') may only take the place of a suspect or
   * of a source holding more than HOG_SHARE of the cap (and more than the newcomer holds).
   */
  private chooseVictim(among: 'any' | 'suspects', now: number, newcomer: string): Connection | null {
    let best: SourceState | null = null;
    for (const s of this.suspectHolders) {
      if (s.suspectUntil <= now || s.conns.size === 0 || this.sources.get(s.address) !== s) {
        this.suspectHolders.delete(s);
        continue;
      }
      if (s.preferred || s.address === newcomer) continue;
      if (!best || s.conns.size > best.conns.size) best = s;
    }
    if (!best) {
      for (const s of this.sources.values()) if (!s.preferred && s.conns.size > 0 && s.address !== newcomer && (!best || s.conns.size > best.conns.size)) best = s;
      if (best && among === 'suspects') {
        const mine = this.sources.get(newcomer)?.conns.size ?? 0;
        if (best.conns.size <= Math.max(1, Math.floor(this.opts.maxConns * HOG_SHARE)) || best.conns.size <= mine + 1) best = null;
      }
    }
    if (!best) return null;
    let victim: Connection | null = null;
    for (const c of best.conns) {
      if (!victim || c.up + c.down < victim.up + victim.down || (c.up + c.down === victim.up + victim.down && c.lastActivity < victim.lastActivity)) victim = c;
    }
    return victim;
  }

  // -------------------------------------------------------------------------------------------
  // Relay

  private wire(conn: Connection): void {
    const { client } = conn;
    client.on('error', (e: NodeJS.ErrnoException) => this.onClientGone(conn, e));
    client.on('data', (chunk: Buffer) => this.onClientData(conn, chunk));
    client.on('end', () => this.onClientEnd(conn));
    client.on('drain', () => {
      if (conn.pausedDown) {
        conn.pausedDown = false;
        conn.backend?.resume();
      }
    });
    client.once('close', () => this.onClientGone(conn, null));
    if (this.opts.firstByteTimeoutMs > 0) {
      conn.firstByteTimer = setTimeout(() => {
        conn.firstByteTimer = null;
        if (conn.state === 'first_byte') this.abort(conn, 'first_byte_timeout', { waitedMs: this.opts.firstByteTimeoutMs });
      }, this.opts.firstByteTimeoutMs);
      client.resume();
    } else {
      this.dial(conn); // the server speaks first; the client stays paused until the backend is there
    }
  }

  private onClientData(conn: Connection, chunk: Buffer): void {
    const now = performance.now();
    conn.up += chunk.length;
    this.bytesUp += chunk.length;
    conn.lastActivity = now;
    if (conn.state === 'first_byte') {
      if (conn.firstByteTimer) clearTimeout(conn.firstByteTimer);
      conn.firstByteTimer = null;
      this.startRequest(conn, chunk.length, now);
      conn.pending.push(chunk);
      conn.pendingBytes += chunk.length;
      conn.client.pause();
      this.dial(conn);
      return;
    }
    if (conn.state === 'connecting') {
      conn.pending.push(chunk);
      conn.pendingBytes += chunk.length;
      if (conn.pendingBytes > MAX_PENDING) conn.client.pause();
      return;
    }
    if (conn.state !== 'relaying' || !conn.backend) return;
    if (!conn.inRequest) this.startRequest(conn, chunk.length, now);
    else {
      conn.requestBytes += chunk.length;
      if (this.tooSlowToSend(conn, now)) return;
    }
    if (!conn.backend.write(chunk)) {
      conn.pausedUp = true;
      conn.client.pause();
    }
  }

  private startRequest(conn: Connection, bytes: number, now: number): void {
    conn.inRequest = true;
    conn.requestBytes = bytes;
    conn.sendWindowStart = now;
    conn.sendWindowBase = 0;
  }

  /** Judges the send rate when more of a request arrives, over at least graceMs; true when it closed the connection. */
  private tooSlowToSend(conn: Connection, now: number): boolean {
    const rate = this.opts.minRate;
    if (!rate) return false;
    const elapsed = now - conn.sendWindowStart;
    if (elapsed < rate.graceMs) return false;
    const bytes = conn.requestBytes - conn.sendWindowBase;
    const perSecond = (bytes * 1000) / elapsed;
    if (perSecond < rate.bytesPerSecond) {
      this.abort(conn, 'slow_send', { bytesPerSecond: Math.round(perSecond), bytes, overMs: Math.round(elapsed), minBytesPerSecond: rate.bytesPerSecond });
      return true;
    }
    conn.sendWindowStart = now;
    conn.sendWindowBase = conn.requestBytes;
    return false;
  }

  private onClientEnd(conn: Connection): void {
    conn.clientEnded = true;
    conn.inRequest = false; // it has nothing more to send
    if (conn.state === 'first_byte') {
      // gone without a word: nothing to relay
      if (conn.firstByteTimer) clearTimeout(conn.firstByteTimer);
      conn.firstByteTimer = null;
      this.finish(conn);
      conn.client.end();
      return;
    }
    if (conn.state === 'relaying' && conn.backend && !conn.backend.destroyed) conn.backend.end();
  }

  private backendTarget(conn: Connection): { host: string; port: number } | null {
    const b = this.opts.backend;
    if (b !== 'original') return b;
    // a client that connected to the listener itself (not diverted by TPROXY) would make us dial ourselves
    if (this.bound && conn.destPort === this.bound.port && this.own.isSelf(conn.destAddress)) return null;
    return { host: conn.destAddress, port: conn.destPort };
  }

  private dial(conn: Connection): void {
    conn.state = 'connecting';
    const target = this.backendTarget(conn);
    if (!target) {
      this.abort(conn, 'backend_error', { error: 'the original destination is the proxy itself' });
      return;
    }
    const backend = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, noDelay: true });
    conn.backend = backend;
    backend.setTimeout(BACKEND_CONNECT_TIMEOUT_MS, () => {
      if (conn.state === 'connecting') this.abort(conn, 'backend_error', { error: `no connection within ${BACKEND_CONNECT_TIMEOUT_MS} ms`, backend: formatHostPort(target.host, target.port) });
    });
    backend.on('error', (e: NodeJS.ErrnoException) => this.onBackendGone(conn, e));
    backend.once('close', () => this.onBackendGone(conn, null));
    backend.once('connect', () => this.onBackendConnect(conn, backend));
  }

  private onBackendConnect(conn: Connection, backend: net.Socket): void {
    backend.setTimeout(0);
    if (conn.state !== 'connecting') return;
    conn.state = 'relaying';
    if (this.opts.proxyProtocol) {
      try {
        backend.write(encodeProxyV2({ address: conn.source, port: conn.srcPort }, { address: conn.destAddress, port: conn.destPort }));
      } catch (e) {
        this.abort(conn, 'backend_error', { error: `PROXY header: ${(e as Error).message}` });
        return;
      }
    }
    for (const chunk of conn.pending) backend.write(chunk);
    conn.pending = [];
    conn.pendingBytes = 0;
    // the time the backend took to answer the connect is not the client's
    if (conn.inRequest) {
      conn.sendWindowStart = performance.now();
      conn.sendWindowBase = 0;
    }
    backend.on('data', (chunk: Buffer) => this.onBackendData(conn, chunk));
    backend.on('end', () => {
      conn.backendEnded = true;
      if (!conn.client.destroyed) conn.client.end();
    });
    backend.on('drain', () => {
      if (conn.pausedUp) {
        conn.pausedUp = false;
        conn.client.resume();
        if (conn.inRequest) {
          // paused by us: the window starts again
          conn.sendWindowStart = performance.now();
          conn.sendWindowBase = conn.requestBytes;
        }
      }
    });
    if (conn.clientEnded) backend.end();
    else if (backend.writableLength > 0 && backend.writableNeedDrain) conn.pausedUp = true;
    else conn.client.resume();
  }

  private onBackendData(conn: Connection, chunk: Buffer): void {
    conn.down += chunk.length;
    this.bytesDown += chunk.length;
    conn.lastActivity = performance.now();
    conn.inRequest = false; // the backend answered: the request is no longer the client's to finish
    const { client } = conn;
    if (client.destroyed || client.writableEnded) return;
    if (!client.write(chunk)) {
      conn.pausedDown = true;
      conn.backend?.pause();
    }
  }

  private onClientGone(conn: Connection, e: NodeJS.ErrnoException | null): void {
    if (conn.state === 'closed') return;
    const b = conn.backend;
    this.finish(conn);
    if (!b || b.destroyed) return;
    if (e?.code === 'ECONNRESET') abortSocket(b); // pass a reset on as a reset
    else if (e || !(conn.clientEnded && conn.backendEnded)) b.destroy();
    // else: both ends said FIN; the backend socket closes by itself
  }

  private onBackendGone(conn: Connection, e: NodeJS.ErrnoException | null): void {
    if (conn.state === 'closed') return;
    if (e || !conn.backendEnded) {
      this.abort(conn, 'backend_error', { error: e ? (e.code ?? e.message) : 'closed without ending' });
    }
    // else a clean end: the client is ending too and closes when its data is out
  }

  /** The shield closes the connection: resets both sides, counts and (for misbehaviour) logs. */
  private abort(conn: Connection, reason: ShieldCloseReason, figures: Record<string, unknown>): void {
    if (conn.state === 'closed') return;
    const now = performance.now();
    this.closedBy[reason]++;
    const source = this.sources.get(conn.source);
    if (MISBEHAVIOUR.has(reason)) {
      if (source) {
        source.suspectUntil = now + SUSPECT_MS;
        this.suspectHolders.add(source);
        // re-insert: the map's order is then the age of what it knows, for forgetIdleSources
        this.sources.delete(conn.source);
        this.sources.set(conn.source, source);
      }
      this.log.info('shield: connection closed', { source: formatHostPort(conn.source, conn.srcPort), reason, ageMs: Math.round(now - conn.openedAt), bytesIn: conn.up, bytesOut: conn.down, ...figures });
    } else if (this.log.enabled('debug')) {
      this.log.debug('shield: connection closed', { source: formatHostPort(conn.source, conn.srcPort), reason, ...figures });
    }
    this.finish(conn);
    // dropping what is buffered for the client (Node's queue and, with the reset, the kernel's)
    abortSocket(conn.client);
    if (conn.backend) abortSocket(conn.backend);
  }

  /** Forgets the connection: no longer counted against the cap or its source. */
  private finish(conn: Connection): void {
    if (conn.state === 'closed') return;
    conn.state = 'closed';
    if (conn.firstByteTimer) clearTimeout(conn.firstByteTimer);
    conn.firstByteTimer = null;
    conn.pending = [];
    this.conns.delete(conn);
    const s = this.sources.get(conn.source);
    if (s) {
      s.conns.delete(conn);
      if (s.conns.size === 0) {
        this.suspectHolders.delete(s);
        if (s.suspectUntil <= performance.now()) this.sources.delete(conn.source);
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // The sweep: read rate and window of the connections with data waiting for their client

  private sweep(): void {
    const now = performance.now();
    const { minRate, zeroWindowTimeoutMs } = this.opts;
    if (minRate || zeroWindowTimeoutMs > 0) {
      for (const conn of this.conns) {
        try {
          this.check(conn, now);
        } catch (e) {
          this.log.error('shield proxy: connection check failed', { source: conn.source, error: (e as Error).message });
        }
      }
    }
    if (now - this.lastPurge >= PURGE_MS) {
      this.lastPurge = now;
      for (const [address, s] of this.sources) if (s.conns.size === 0 && s.suspectUntil <= now) this.sources.delete(address);
      for (const s of this.suspectHolders) if (s.suspectUntil <= now) this.suspectHolders.delete(s);
    }
  }

  private check(conn: Connection, now: number): void {
    if (conn.state !== 'relaying') return;
    const waiting = conn.client.writableLength > 0 || conn.pausedDown;
    if (!waiting) {
      conn.readWindowStart = null;
      conn.zeroSince = null;
      return;
    }
    const info = conn.fd !== null ? getTcpInfo(conn.fd) : null;
    const delivered = conn.delivered(info);
    const { zeroWindowTimeoutMs, minRate } = this.opts;
    if (zeroWindowTimeoutMs > 0 && info && info.sndWnd !== null) {
      const mss = info.sndMss > 0 ? info.sndMss : 536;
      if (info.sndWnd < mss || info.probes > 0) {
        // the window stays shut unless the client takes at least a segment's worth meanwhile
        if (conn.zeroSince === null || delivered - conn.zeroBase >= mss) {
          conn.zeroSince = now;
          conn.zeroBase = delivered;
        } else if (now - conn.zeroSince >= zeroWindowTimeoutMs) {
          this.abort(conn, 'zero_window', {
            forMs: Math.round(now - conn.zeroSince),
            sndWnd: info.sndWnd,
            sndMss: info.sndMss,
            probes: info.probes,
            backoff: info.backoff,
            unacked: info.unacked,
            notsentBytes: info.notsentBytes,
            buffered: conn.client.writableLength,
          });
          return;
        }
      } else conn.zeroSince = null;
    }
    if (minRate) {
      if (conn.readWindowStart === null) {
        conn.readWindowStart = now;
        conn.readWindowBase = delivered;
      } else if (now - conn.readWindowStart >= minRate.graceMs) {
        const elapsed = now - conn.readWindowStart;
        const perSecond = ((delivered - conn.readWindowBase) * 1000) / elapsed;
        if (perSecond < minRate.bytesPerSecond) {
          this.abort(conn, 'slow_read', { bytesPerSecond: Math.round(perSecond), overMs: Math.round(elapsed), minBytesPerSecond: minRate.bytesPerSecond, buffered: conn.client.writableLength, sndWnd: info?.sndWnd ?? null });
          return;
        }
        conn.readWindowStart = now;
        conn.readWindowBase = delivered;
      }
    }
  }
}

// TURN allocations with UDP relays (RFC 8656), for clients over UDP, TCP or TLS: per client 5-tuple
// a relayed transport address (IPv4 or IPv6, or one of each: a dual allocation), its permissions
// (peer IPs, 300 s) and channel bindings (channel <-> peer address, 600 s), lifetimes swept every
// second, and the relaying itself: Send indications and ChannelData out, Data indications and
// ChannelData back, through the relay of the peer's family. A failed send to one peer drops that
// datagram only.
import { Attr, buildChannelData, StunClass, StunMessageBuilder, StunMethod } from '../codec/stun.js';
import { randomBytes } from 'node:crypto';
import { UdpSocket } from '../kernel/udp-socket.js';
import { TokenBucket } from '../core/rate-limit.js';
import { closeTcpRelay, ConnectionIds, openTcpRelay, type PeerConnection, type TcpRelay } from './tcp-relay.js';

export const DEFAULT_LIFETIME_S = 600;
export const MAX_LIFETIME_S = 3600;
export const PERMISSION_LIFETIME_S = 300;
export const CHANNEL_LIFETIME_S = 600;
/** Seconds a port reserved by EVEN-PORT (R bit) waits for its RESERVATION-TOKEN. */
export const RESERVATION_LIFETIME_S = 30;
/** Binds tried to find an even port (and a free next one) before answering 508. */
const EVEN_PORT_TRIES = 32;
/** Random ports of --turn-relay-ports tried before giving up (508). */
const RANGE_TRIES = 64;
/** SO_RCVBUF of a relay socket: a burst from peers waits here while the event loop is busy. */
const RELAY_RECV_BUFFER = 512 * 1024;
/** Permissions and channels one allocation may hold (a bound on what a client can make us keep). */
export const MAX_PERMISSIONS = 256;

export interface Allocation {
  id: number;
  /** "TRANSPORT|IP|PORT" of the client */
  key: string;
  client: { address: string; port: number };
  /** how the client talks to the server: ChannelData is padded to 4 bytes over TCP and TLS */
  transport: 'udp' | 'tcp' | 'tls';
  /** sends to the client: the server's UDP socket, or the client's TCP connection */
  toClient(data: Buffer): void;
  user: string;
  username: string;
  /** the UDP relays, the requested family first (a dual allocation has an IPv4 and an IPv6 one); none for a TCP allocation */
  relays: Relay[];
  /** the TCP relay of a TCP allocation (RFC 6062); null for UDP */
  tcp: TcpRelay | null;
  expiresAt: number;
  /** peer IP -> expiry (ms) */
  permissions: Map<string, number>;
  /** channel -> peer, and "IP|PORT" -> channel */
  channels: Map<number, { address: string; port: number; expiresAt: number }>;
  channelOf: Map<string, number>;
  bytes: { up: number; down: number };
  /** datagrams dropped for the bandwidth limit, each way */
  dropped: { up: number; down: number };
  /** the bandwidth limit's buckets (bytes), each way; null: no limit */
  buckets: { up: TokenBucket; down: TokenBucket } | null;
  /** the transaction id of the Allocate, for retransmissions */
  transactionId: Buffer;
}

export type Family = 4 | 6;

/** One relayed transport address of an allocation, and its socket. */
export interface Relay {
  family: Family;
  socket: UdpSocket;
  address: string;
  port: number;
}

/** What an Allocate asks for: the allocation's own fields, its lifetime, its families, and how its port is chosen. */
export type AllocationRequest = Pick<Allocation, 'key' | 'client' | 'transport' | 'toClient' | 'user' | 'username' | 'transactionId'> & {
  lifetimeS: number;
  /** relay families, the requested one first; EVEN-PORT and RESERVATION-TOKEN apply to it */
  families: Family[];
  /** a TCP allocation (RFC 6062): one TCP relay of the first family */
  tcp?: boolean;
  even?: { reserveNext: boolean };
  reservation?: Buffer;
};

export interface AllocationTableOptions {
  /** addresses the relay sockets bind to, by family (at least one) */
  relayIps: Partial<Record<Family, string>>;
  maxAllocations: number;
  /** allocations one user may hold at once */
  maxPerUser: number;
  /** bytes per second each way per allocation; 0 = no limit */
  bandwidth: number;
  /** relay ports [low, high]; absent: any port the kernel gives */
  ports?: { low: number; high: number };
  /** the address announced instead of the relay address of its family (a server behind 1:1 NAT) */
  externalIp?: string;
  /**
   * the relay addresses the peer policy denies (private ones): datagrams to them go only to the
   * relayed ports of live allocations (relay to relay on this server), never to another service on
   * the server's address
   */
  deniedRelayIps: ReadonlySet<string>;
  now?: () => number;
}

export class AllocationTable {
  private readonly byKey = new Map<string, Allocation>();
  private readonly endedBytes = { up: 0, down: 0 };
  private readonly endedDropped = { up: 0, down: 0 };
  private readonly perUser = new Map<string, number>();
  /** "IP|PORT" of the relayed addresses of live allocations */
  private readonly ownAddresses = new Set<string>();
  /** the peer connections of TCP allocations, by CONNECTION-ID */
  readonly connectionIds = new ConnectionIds();
  /** the allocation of each TCP relay (ConnectionBind finds it from a CONNECTION-ID) */
  private readonly tcpOwner = new WeakMap<TcpRelay, Allocation>();
  /** ports held for a second Allocate (EVEN-PORT with R), by token */
  private readonly reservations = new Map<string, { socket: UdpSocket; family: Family; expiresAt: number }>();
  private nextId = 1;
  private readonly sweeper: NodeJS.Timeout;
  private readonly now: () => number;

  constructor(private readonly opts: AllocationTableOptions) {
    this.now = opts.now ?? (() => Date.now());
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  get size(): number {
    return this.byKey.size;
  }

  list(): Allocation[] {
    return [...this.byKey.values()];
  }

  get(key: string): Allocation | undefined {
    const a = this.byKey.get(key);
    if (a && a.expiresAt <= this.now()) {
      this.remove(a);
      return undefined;
    }
    return a;
  }

  /**
   * A UDP socket on the relay address: on `port`, or (0) on any port of --turn-relay-ports (tried at
   * random, a bounded number of times), or any port the kernel gives when no range is set.
   */
  private async bindRelay(port: number, family: Family): Promise<UdpSocket> {
    const range = this.opts.ports;
    if (port !== 0 || !range) return this.bindRelayOn(port, family);
    const span = range.high - range.low + 1;
    for (let i = 0; i < Math.min(span, RANGE_TRIES); i++) {
      try {
        return await this.bindRelayOn(range.low + Math.floor(Math.random() * span), family);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
      }
    }
    throw new Error(`no free relay port in ${range.low}-${range.high} after ${Math.min(span, RANGE_TRIES)} tries`);
  }

  private async bindRelayOn(port: number, family: Family): Promise<UdpSocket> {
    const ip = this.opts.relayIps[family];
    if (ip === undefined) throw new Error(`no IPv${family} relay address`);
    // room for a burst while the event loop is busy elsewhere (the kernel caps it at net.core.rmem_max)
    return UdpSocket.bind({ family, host: ip, port, recvBufferSize: RELAY_RECV_BUFFER });
  }

  /**
   * An even port (EVEN-PORT), and with `reserveNext` the next port held for RESERVATION_LIFETIME_S
   * under a token the client can redeem in a second Allocate (RTP/RTCP pairs). Null when no such
   * pair was found in a bounded number of tries (508).
   */
  private async evenRelay(reserveNext: boolean, family: Family): Promise<{ relay: UdpSocket; token?: Buffer } | null> {
    for (let i = 0; i < EVEN_PORT_TRIES; i++) {
      const s = await this.bindRelay(0, family);
      const port = s.port;
      if (port % 2 !== 0 || (this.opts.ports !== undefined && port + 1 > this.opts.ports.high && reserveNext)) {
        s.close();
        continue;
      }
      if (!reserveNext) return { relay: s };
      try {
        const next = await this.bindRelay(port + 1, family);
        const token = randomBytes(8);
        this.reservations.set(token.toString('hex'), { socket: next, family, expiresAt: this.now() + RESERVATION_LIFETIME_S * 1000 });
        return { relay: s, token };
      } catch {
        s.close();
      }
    }
    return null;
  }

  /**
   * Opens the relay socket and records the allocation: any port, an even one (`even`), or the port
   * reserved under `reservation`. 'quota' at the allocation cap; 'unavailable' when no such port
   * (or no such reservation) is there. Rejects with a bind error.
   */
  async create(p: AllocationRequest): Promise<(Allocation & { reservationToken?: Buffer }) | 'quota' | 'user-quota' | 'unavailable'> {
    if (this.byKey.size >= this.opts.maxAllocations) return 'quota';
    if ((this.perUser.get(p.user) ?? 0) >= this.opts.maxPerUser) return 'user-quota';
    if (p.tcp) return this.createTcp(p);
    const reserved = p.reservation ? this.reservations.get(p.reservation.toString('hex')) : undefined;
    if (p.reservation && !reserved) return 'unavailable';
    // a reserved port has the family of the allocation that reserved it
    const [primary, ...additional] = reserved ? [reserved.family] : p.families;
    if (primary === undefined || p.families.some((f) => this.opts.relayIps[f] === undefined)) return 'unavailable';
    let first: UdpSocket;
    let reservationToken: Buffer | undefined;
    if (p.reservation && reserved) {
      this.reservations.delete(p.reservation.toString('hex'));
      first = reserved.socket;
    } else if (p.even) {
      const e = await this.evenRelay(p.even.reserveNext, primary);
      if (!e) return 'unavailable';
      first = e.relay;
      reservationToken = e.token;
    } else {
      first = await this.bindRelay(0, primary);
    }
    const sockets: Array<[Family, UdpSocket]> = [[primary, first]];
    try {
      for (const f of additional) sockets.push([f, await this.bindRelay(0, f)]);
    } catch (e) {
      for (const [, sock] of sockets) sock.close();
      throw e;
    }
    const relays: Relay[] = sockets.map(([family, socket]) => ({ family, socket, address: socket.address, port: socket.port }));
    const a = this.newAllocation(p, relays, true);
    // a send that fails (no route, a firewall's refusal) loses that datagram only (kernel/udp-socket.ts)
    for (const r of relays) r.socket.onMessage = (data, address, port) => this.fromPeer(a, data, address, port);
    // the Allocate may have waited for a bind: the cap is checked again before the allocation counts
    if (this.byKey.size >= this.opts.maxAllocations || (this.perUser.get(p.user) ?? 0) >= this.opts.maxPerUser || this.byKey.has(p.key)) {
      for (const r of relays) r.socket.close();
      return this.byKey.has(p.key) ? 'unavailable' : 'quota';
    }
    this.byKey.set(p.key, a);
    for (const r of relays) this.ownAddresses.add(`${r.address}|${r.port}`);
    this.perUser.set(p.user, (this.perUser.get(p.user) ?? 0) + 1);
    return reservationToken ? Object.assign(a, { reservationToken }) : a;
  }

  /** A TCP allocation: a TCP relay listener on the relay address of the first family. */
  private async createTcp(p: AllocationRequest): Promise<Allocation | 'quota' | 'unavailable'> {
    const family = p.families[0];
    const ip = family !== undefined ? this.opts.relayIps[family] : undefined;
    if (ip === undefined) return 'unavailable';
    // TCP peer connections are piped with backpressure: no bandwidth buckets
    const a = this.newAllocation(p, [], false);
    const events = {
      permitted: (peerIp: string) => this.permitted(a, peerIp),
      attempt: (c: { id: number; peer: { address: string; port: number } }) => {
        const id = Buffer.alloc(4);
        id.writeUInt32BE(c.id, 0);
        const from = this.ownAddresses.has(`${c.peer.address}|${c.peer.port}`) ? this.shown(c.peer.address) : c.peer.address;
        a.toClient(new StunMessageBuilder(StunMethod.ConnectionAttempt, StunClass.Indication, randomBytes(12)).add(Attr.CONNECTION_ID, id).addXorAddress(Attr.XOR_PEER_ADDRESS, from, c.peer.port).build());
      },
    };
    const range = this.opts.ports;
    let relay: TcpRelay | null = null;
    for (let i = 0; relay === null; i++) {
      const port = range ? range.low + Math.floor(Math.random() * (range.high - range.low + 1)) : 0;
      try {
        relay = await openTcpRelay(ip, port, this.connectionIds, events);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || !range || i >= RANGE_TRIES) throw e;
      }
    }
    a.tcp = relay;
    this.tcpOwner.set(relay, a);
    if (this.byKey.size >= this.opts.maxAllocations || (this.perUser.get(p.user) ?? 0) >= this.opts.maxPerUser || this.byKey.has(p.key)) {
      closeTcpRelay(relay, this.connectionIds);
      return this.byKey.has(p.key) ? 'unavailable' : 'quota';
    }
    this.byKey.set(p.key, a);
    this.ownAddresses.add(`${relay.address}|${relay.port}`);
    this.perUser.set(p.user, (this.perUser.get(p.user) ?? 0) + 1);
    return a;
  }

  /** Where a TCP allocation's piped peer connections count their bytes (ConnectionBind). */
  tcpEvents(a: Allocation): { bytes(up: number, down: number): void } {
    return {
      bytes: (up, down) => {
        a.bytes.up += up;
        a.bytes.down += down;
      },
    };
  }

  /**
   * false for a relay address the peer policy denies, unless `peer` is a relayed address of a live
   * allocation (relay to relay): another service on the server's own address is never reached.
   * The one rule for UDP sends and TCP Connects.
   */
  reachable(peer: { address: string; port: number }): boolean {
    return !this.opts.deniedRelayIps.has(peer.address) || this.ownAddresses.has(`${peer.address}|${peer.port}`);
  }

  /** A pending peer connection of a TCP allocation, and that allocation. */
  pendingConnection(id: number): { conn: PeerConnection; allocation: Allocation } | undefined {
    const e = this.connectionIds.get(id);
    const allocation = e ? this.tcpOwner.get(e.relay) : undefined;
    return e && allocation && !e.conn.data ? { conn: e.conn, allocation } : undefined;
  }

  /** A fresh allocation record for the request (its TCP relay, if any, is set after). */
  private newAllocation(p: AllocationRequest, relays: Relay[], limited: boolean): Allocation {
    const now = this.now();
    return {
      id: this.nextId++,
      key: p.key,
      client: p.client,
      transport: p.transport,
      toClient: p.toClient,
      user: p.user,
      username: p.username,
      relays,
      tcp: null,
      expiresAt: now + p.lifetimeS * 1000,
      permissions: new Map(),
      channels: new Map(),
      channelOf: new Map(),
      bytes: { up: 0, down: 0 },
      dropped: { up: 0, down: 0 },
      buckets: limited && this.opts.bandwidth > 0 ? { up: this.bucket(now), down: this.bucket(now) } : null,
      transactionId: p.transactionId,
    };
  }

  private bucket(now: number): TokenBucket {
    return new TokenBucket(this.opts.bandwidth, Math.max(this.opts.bandwidth / 4, 65536), now);
  }

  /** A peer address as the client names it, as the relay sends to it: the external IP is the relay IP of its family. */
  inward(ip: string): string {
    if (ip !== this.opts.externalIp) return ip;
    return this.opts.relayIps[ip.includes(':') ? 6 : 4] ?? ip;
  }

  /** The relayed addresses as clients are told them (the external IP behind a 1:1 NAT), the requested family first. */
  announced(a: Allocation): Array<{ address: string; port: number }> {
    if (a.tcp) return [{ address: this.shown(a.tcp.address), port: a.tcp.port }];
    return a.relays.map((r) => ({ address: this.shown(r.address), port: r.port }));
  }

  /** A relay address as clients see it: the external IP when one of its family is set. */
  private shown(ip: string): string {
    const ext = this.opts.externalIp;
    return ext !== undefined && ip === this.opts.relayIps[ext.includes(':') ? 6 : 4] ? ext : ip;
  }

  /** true when the allocation has a relay of the family of `ip` (else: 443 Peer Address Family Mismatch). */
  hasFamilyOf(a: Allocation, ip: string): boolean {
    const f: Family = ip.includes(':') ? 6 : 4;
    return a.tcp ? a.tcp.family === f : a.relays.some((r) => r.family === f);
  }

  /** Allocations `user` holds now. */
  countOf(user: string): number {
    return this.perUser.get(user) ?? 0;
  }

  refresh(a: Allocation, lifetimeS: number): void {
    if (lifetimeS === 0) this.remove(a);
    else a.expiresAt = this.now() + lifetimeS * 1000;
  }

  remove(a: Allocation): void {
    if (this.byKey.get(a.key) !== a) return;
    this.byKey.delete(a.key);
    const n = (this.perUser.get(a.user) ?? 1) - 1;
    if (n > 0) this.perUser.set(a.user, n);
    else this.perUser.delete(a.user);
    this.endedBytes.up += a.bytes.up;
    this.endedBytes.down += a.bytes.down;
    this.endedDropped.up += a.dropped.up;
    this.endedDropped.down += a.dropped.down;
    for (const r of a.relays) {
      this.ownAddresses.delete(`${r.address}|${r.port}`);
      r.socket.close();
    }
    if (a.tcp) {
      this.ownAddresses.delete(`${a.tcp.address}|${a.tcp.port}`);
      closeTcpRelay(a.tcp, this.connectionIds);
    }
  }

  /** Bytes relayed since start: by the allocations that ended, and by those open now. */
  bytesRelayed(): { up: number; down: number } {
    return this.total(this.endedBytes, (a) => a.bytes);
  }

  /** Datagrams dropped for the bandwidth limit since start, each way. */
  droppedForBandwidth(): { up: number; down: number } {
    return this.total(this.endedDropped, (a) => a.dropped);
  }

  private total(ended: { up: number; down: number }, of: (a: Allocation) => { up: number; down: number }): { up: number; down: number } {
    let { up, down } = ended;
    for (const a of this.byKey.values()) {
      up += of(a).up;
      down += of(a).down;
    }
    return { up, down };
  }

  /** Installs or refreshes a permission for each peer IP; false when the allocation holds too many. */
  permit(a: Allocation, ips: readonly string[]): boolean {
    const fresh = ips.filter((ip) => !a.permissions.has(ip));
    if (a.permissions.size + fresh.length > MAX_PERMISSIONS) return false;
    const until = this.now() + PERMISSION_LIFETIME_S * 1000;
    for (const ip of ips) a.permissions.set(ip, until);
    return true;
  }

  /**
   * Binds `channel` to the peer (or refreshes the binding) and installs the peer's permission.
   * 'conflict' when the channel is bound to another peer or the peer to another channel (400).
   */
  bindChannel(a: Allocation, channel: number, peer: { address: string; port: number }): 'ok' | 'conflict' | 'quota' {
    const peerKey = `${peer.address}|${peer.port}`;
    const existing = a.channels.get(channel);
    if (existing && `${existing.address}|${existing.port}` !== peerKey) return 'conflict';
    const other = a.channelOf.get(peerKey);
    if (other !== undefined && other !== channel) return 'conflict';
    if (!existing && a.channels.size >= MAX_PERMISSIONS) return 'quota';
    if (!this.permit(a, [peer.address])) return 'quota';
    a.channels.set(channel, { ...peer, expiresAt: this.now() + CHANNEL_LIFETIME_S * 1000 });
    a.channelOf.set(peerKey, channel);
    return 'ok';
  }

  private permitted(a: Allocation, ip: string): boolean {
    const until = a.permissions.get(ip);
    return until !== undefined && until > this.now();
  }

  /** A Send indication's or a ChannelData's payload to a peer; dropped without a permission. */
  toPeer(a: Allocation, peer: { address: string; port: number }, data: Buffer): boolean {
    if (!this.permitted(a, peer.address)) return false;
    if (!this.reachable(peer)) return false;
    const family: Family = peer.address.includes(':') ? 6 : 4;
    const relay = a.relays.find((r) => r.family === family);
    if (!relay) return false;
    if (a.buckets && !a.buckets.up.take(data.length, this.now())) {
      a.dropped.up++;
      return true; // relayed as far as the client can tell: a datagram lost to the rate limit
    }
    // false for what cannot be sent at all (port 0); a datagram the kernel refuses later is
    // dropped alone: either way only this datagram is lost
    if (!relay.socket.send(data, peer.port, peer.address)) return false;
    a.bytes.up += data.length;
    return true;
  }

  /** ChannelData from the client: to the channel's peer, when the channel is bound. */
  fromClientChannel(a: Allocation, channel: number, data: Buffer): boolean {
    const peer = a.channels.get(channel);
    if (!peer || peer.expiresAt <= this.now()) return false;
    return this.toPeer(a, peer, data);
  }

  /** `ip` is canonical text already: relay sockets are IPv4, or IPv6-only (no IPv4-mapped senders). */
  private fromPeer(a: Allocation, data: Buffer, ip: string, port: number): void {
    if (!this.permitted(a, ip)) return; // no permission: the datagram is dropped (RFC 8656 section 11)
    if (a.buckets && !a.buckets.down.take(data.length, this.now())) {
      a.dropped.down++;
      return;
    }
    a.bytes.down += data.length;
    const channel = a.channelOf.get(`${ip}|${port}`);
    if (channel !== undefined && (a.channels.get(channel)?.expiresAt ?? 0) > this.now()) {
      a.toClient(buildChannelData(channel, data, a.transport !== 'udp'));
      return;
    }
    // a datagram from another allocation of this server names its relayed address as clients know it
    const from = this.ownAddresses.has(`${ip}|${port}`) ? this.shown(ip) : ip;
    const ind = new StunMessageBuilder(StunMethod.Data, StunClass.Indication, randomBytes(12)).addXorAddress(Attr.XOR_PEER_ADDRESS, from, port).add(Attr.DATA, data).build();
    a.toClient(ind);
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, r] of this.reservations) {
      if (r.expiresAt <= now) {
        r.socket.close();
        this.reservations.delete(token);
      }
    }
    for (const a of this.byKey.values()) {
      if (a.expiresAt <= now) {
        this.remove(a);
        continue;
      }
      for (const [ip, until] of a.permissions) if (until <= now) a.permissions.delete(ip);
      for (const [ch, peer] of a.channels) {
        if (peer.expiresAt <= now) {
          a.channels.delete(ch);
          a.channelOf.delete(`${peer.address}|${peer.port}`);
        }
      }
    }
  }

  /** Closes every relay socket and stops the sweeper. */
  close(): void {
    clearInterval(this.sweeper);
    for (const r of this.reservations.values()) r.socket.close();
    this.reservations.clear();
    for (const a of [...this.byKey.values()]) this.remove(a);
  }
}

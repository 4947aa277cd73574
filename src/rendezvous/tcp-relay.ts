// TURN TCP allocations (RFC 6062): the relayed transport address is a TCP listener, and each
// connection to or from a peer is relayed over a data connection of its own. A Connect request
// opens a connection to a peer (active); a peer that connects to the relayed address is announced
// with a ConnectionAttempt indication (passive). Either way the connection waits, unread, under a
// CONNECTION-ID until the client binds a new TCP (or TLS) connection to it with ConnectionBind
// (30 s), and from then on bytes are piped both ways, with backpressure.
import { randomInt } from 'node:crypto';
import net from 'node:net';
import { canonicalIp } from '../net/address.js';

/** Seconds a peer connection waits for its ConnectionBind, and a Connect for the peer's answer (RFC 6062 section 5.2). */
export const CONNECTION_BIND_TIMEOUT_S = 30;
/** Peer connections one TCP allocation may hold. */
export const MAX_PEER_CONNECTIONS = 256;

export interface PeerConnection {
  id: number;
  peer: { address: string; port: number };
  socket: net.Socket;
  /** the client's data connection once bound */
  data: net.Socket | null;
  timer: NodeJS.Timeout | null;
}

/** The TCP relay of one allocation: its listener and its peer connections. */
export interface TcpRelay {
  server: net.Server;
  family: 4 | 6;
  address: string;
  port: number;
  connections: Map<number, PeerConnection>;
}

/** What a TCP relay asks its allocation about peers that connect to it. */
export interface TcpRelayEvents {
  /** a peer connected to the relayed address: true when it may (a permission for its IP) */
  permitted(ip: string): boolean;
  /** a peer connection waits for its ConnectionBind: tell the client (ConnectionAttempt) */
  attempt(c: PeerConnection): void;
}

/** Every pending or bound peer connection of the server, by CONNECTION-ID. */
export class ConnectionIds {
  private readonly byId = new Map<number, { relay: TcpRelay; conn: PeerConnection }>();

  /** A fresh id (never 0) for a connection of `relay`. */
  add(relay: TcpRelay, socket: net.Socket, peer: { address: string; port: number }): PeerConnection {
    let id = 0;
    while (id === 0 || this.byId.has(id)) id = randomInt(1, 0xffffffff);
    const conn: PeerConnection = { id, peer, socket, data: null, timer: null };
    relay.connections.set(id, conn);
    this.byId.set(id, { relay, conn });
    // unread until bound: the peer's bytes wait in the kernel
    socket.pause();
    conn.timer = setTimeout(() => this.end(conn.id), CONNECTION_BIND_TIMEOUT_S * 1000);
    conn.timer.unref();
    socket.once('close', () => this.end(conn.id));
    return conn;
  }

  get(id: number): { relay: TcpRelay; conn: PeerConnection } | undefined {
    return this.byId.get(id);
  }

  /** Closes a peer connection (and its data connection) and forgets its id. */
  end(id: number): void {
    const e = this.byId.get(id);
    if (!e) return;
    this.byId.delete(id);
    e.relay.connections.delete(id);
    if (e.conn.timer) clearTimeout(e.conn.timer);
    e.conn.socket.destroy();
    e.conn.data?.destroy();
  }

  /**
   * Binds a client's data connection to a pending peer connection: `rest` (bytes the client sent
   * after its ConnectionBind) goes to the peer first, then both are piped. False when the id is
   * not pending.
   */
  bind(id: number, data: net.Socket, rest: Buffer, events: { bytes(up: number, down: number): void }): boolean {
    const e = this.byId.get(id);
    if (!e || e.conn.data) return false;
    const { conn } = e;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    conn.data = data;
    data.setTimeout(0);
    data.once('close', () => this.end(id));
    data.on('error', () => undefined);
    conn.socket.on('error', () => undefined);
    data.on('data', (b: Buffer) => events.bytes(b.length, 0));
    conn.socket.on('data', (b: Buffer) => events.bytes(0, b.length));
    if (rest.length > 0) {
      events.bytes(rest.length, 0);
      conn.socket.write(rest);
    }
    data.pipe(conn.socket);
    conn.socket.pipe(data);
    data.resume();
    conn.socket.resume();
    return true;
  }
}

/** Opens the TCP relay listener on ip (port 0: any, or one from `pickPort`). */
export async function openTcpRelay(ip: string, port: number, ids: ConnectionIds, events: TcpRelayEvents): Promise<TcpRelay> {
  const family: 4 | 6 = ip.includes(':') ? 6 : 4;
  const relay: TcpRelay = { server: net.createServer({ pauseOnConnect: true }), family, address: ip, port: 0, connections: new Map() };
  await new Promise<void>((resolve, reject) => {
    relay.server.once('error', reject);
    relay.server.listen({ host: ip, port, ipv6Only: family === 6, backlog: 64 }, () => {
      relay.server.removeListener('error', reject);
      resolve();
    });
  });
  relay.server.on('error', () => undefined);
  relay.port = (relay.server.address() as net.AddressInfo).port;
  relay.server.on('connection', (s) => {
    s.on('error', () => undefined);
    const ip = canonicalIp(s.remoteAddress ?? '');
    if (!events.permitted(ip) || relay.connections.size >= MAX_PEER_CONNECTIONS) {
      s.destroy();
      return;
    }
    events.attempt(ids.add(relay, s, { address: ip, port: s.remotePort ?? 0 }));
  });
  return relay;
}

/**
 * Connects to a peer for a Connect request, from the relay address; resolves with the pending
 * connection, or null when the peer cannot be reached within CONNECTION_BIND_TIMEOUT_S (447).
 */
export function connectToPeer(relay: TcpRelay, peer: { address: string; port: number }, ids: ConnectionIds): Promise<PeerConnection | null> {
  return new Promise((resolve) => {
    const s = net.connect({ host: peer.address, port: peer.port, localAddress: relay.address });
    const fail = (): void => {
      s.destroy();
      resolve(null);
    };
    s.setTimeout(CONNECTION_BIND_TIMEOUT_S * 1000, fail);
    s.once('error', fail);
    s.once('connect', () => {
      s.setTimeout(0);
      s.removeListener('error', fail);
      s.on('error', () => undefined);
      resolve(ids.add(relay, s, peer));
    });
  });
}

/** Closes the listener and every connection of the relay. */
export function closeTcpRelay(relay: TcpRelay, ids: ConnectionIds): void {
  relay.server.close();
  for (const id of [...relay.connections.keys()]) ids.end(id);
}

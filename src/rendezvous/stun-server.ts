// The STUN server of the rendezvous service, on UDP and TCP at one address and port (and on TLS at
// another, for turns:): answers
// Binding requests (RFC 8489) with the client's reflexive address, and RFC 3489 ("classic")
// clients with MAPPED-ADDRESS. Malformed messages are dropped, never answered or thrown on; a
// request naming a comprehension-required attribute the server does not understand gets 420 with
// UNKNOWN-ATTRIBUTES. TURN requests, indications and ChannelData, over UDP and over TCP, go to the
// TURN handler (turn-handler.ts).
import net from 'node:net';
import tls from 'node:tls';
import {
  Attr,
  frameLength,
  getAttr,
  checkFingerprint,
  parseStun,
  StunClass,
  StunMessageBuilder,
  StunMethod,
  unknownComprehensionRequired,
} from '../codec/stun.js';
import type { Logger } from '../log/logger.js';
import { TURN_KNOWN, type ClientTransport, type DataStream, type TurnHandler } from './turn-handler.js';
import { canonicalIp } from '../net/address.js';
import { UdpSocket } from '../kernel/udp-socket.js';

/** What the server counts; the service turns these into metric families. */
export interface StunCounters {
  /** Binding requests answered with the reflexive address, by transport */
  binding: Record<ClientTransport, number>;
  /** requests answered with an error, by code */
  errors: Record<string, number>;
  /** datagrams and frames dropped as malformed (bad header, length, attribute, fingerprint) */
  malformed: number;
}

export function newStunCounters(): StunCounters {
  return { binding: { udp: 0, tcp: 0, tls: 0 }, errors: {}, malformed: 0 };
}

export interface StunServerOptions {
  software: string;
  counters: StunCounters;
  /** TCP clients at most */
  maxTcpClients: number;
  /** TURN (clients over UDP, TCP and TLS); absent: TURN requests get 400 (a STUN-only server) */
  turn?: TurnHandler;
  /** ms a TCP client may stay without sending a complete message; 0 = never closed for that */
  tcpIdleTimeout: number;
  logger: Logger;
}

/** SO_RCVBUF/SO_SNDBUF of the server's UDP socket. */
const SERVER_RECV_BUFFER = 4 * 1024 * 1024;

/** Attributes a Binding request may carry that this server understands (or may safely ignore). */
const BINDING_KNOWN = new Set<number>([
  Attr.USERNAME,
  Attr.MESSAGE_INTEGRITY,
  Attr.MESSAGE_INTEGRITY_SHA256,
  Attr.REALM,
  Attr.NONCE,
  Attr.USERHASH,
  Attr.PASSWORD_ALGORITHM,
  Attr.PRIORITY,
  Attr.USE_CANDIDATE,
]);

const TURN_METHODS = new Set<number>([StunMethod.Allocate, StunMethod.Refresh, StunMethod.CreatePermission, StunMethod.ChannelBind, StunMethod.Connect, StunMethod.ConnectionBind]);
/** The message type of a ConnectionBind request (RFC 6062): its connection stops being parsed. */
const CONNECTION_BIND_REQUEST = 0x000b;

export class StunServer {
  private udp: UdpSocket | null = null;
  private tcp: net.Server | null = null;
  private tls: tls.Server | null = null;
  private readonly tcpClients = new Set<net.Socket>();

  constructor(private readonly opts: StunServerOptions) {}

  /**
   * Listens on UDP and TCP at host:port (port 0: the kernel picks the UDP port, TCP takes the same).
   * Resolves with the bound address.
   */
  async listen(host: string, port: number): Promise<{ address: string; port: number }> {
    // port 0: the kernel picks a free UDP port, whose TCP twin may be taken (a client's local
    // port): then another pair is tried, a bounded number of times
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.listenOn(host, port);
      } catch (e) {
        if (port !== 0 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 10) throw e;
      }
    }
  }

  private async listenOn(host: string, port: number): Promise<{ address: string; port: number }> {
    const v6 = net.isIPv6(host);
    // every UDP client shares this socket: room for their bursts while the event loop is busy
    // elsewhere (the kernel caps it at net.core.rmem_max); datagrams move in batches (kernel/udp-socket.ts)
    const udp = UdpSocket.bind({ family: v6 ? 6 : 4, host, port, recvBufferSize: SERVER_RECV_BUFFER, sendBufferSize: SERVER_RECV_BUFFER });
    const tcp = net.createServer({ allowHalfOpen: false }, (s) => this.acceptStream(s, 'tcp'));
    tcp.maxConnections = this.opts.maxTcpClients;
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host, port: udp.port, ipv6Only: v6 }, () => {
          tcp.removeListener('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    udp.onMessage = (msg, address, fromPort) => {
      // canonical text already: the socket is IPv4, or IPv6-only (no IPv4-mapped senders)
      const client = { address, port: fromPort, transport: 'udp' as const };
      const turn = this.opts.turn;
      // ChannelData (first two bits 01) belongs to a TURN allocation of this client
      if (turn && msg.length > 0 && (msg[0]! & 0xc0) === 0x40) {
        if (!turn.channelData(msg, client)) this.opts.counters.malformed++;
        return;
      }
      this.answer(msg, client.address, client.port, 'udp', (reply) => udp.send(reply, fromPort, address));
    };
    tcp.on('error', (e) => this.opts.logger.warn('STUN TCP listener error', { error: e.message }));
    this.udp = udp;
    this.tcp = tcp;
    return { address: udp.address, port: udp.port };
  }

  /**
   * Listens for TLS over TCP at host:port (turns:), with the PEM certificate chain and key given.
   * Resolves with the bound address.
   */
  async listenTls(host: string, port: number, credentials: { cert: Buffer; key: Buffer }): Promise<{ address: string; port: number }> {
    const server = tls.createServer({ cert: credentials.cert, key: credentials.key, allowHalfOpen: false, minVersion: 'TLSv1.2' }, (s) => this.acceptStream(s, 'tls'));
    server.maxConnections = this.opts.maxTcpClients;
    // a client that fails the handshake (wrong protocol, bad certificate) only loses its connection
    server.on('tlsClientError', (_e, s) => s.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, ipv6Only: net.isIPv6(host) }, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    server.on('error', (e) => this.opts.logger.warn('TURN TLS listener error', { error: e.message }));
    this.tls = server;
    const a = server.address() as net.AddressInfo;
    return { address: a.address, port: a.port };
  }

  /** Replaces the TLS certificate and key for new connections (a renewed certificate). */
  setTlsCredentials(credentials: { cert: Buffer; key: Buffer }): void {
    this.tls?.setSecureContext({ cert: credentials.cert, key: credentials.key });
  }

  /** Stops taking requests: closes the UDP socket and the TCP and TLS listeners. */
  close(): void {
    this.opts.turn?.close();
    this.udp?.close();
    this.udp = null;
    this.tcp?.close();
    this.tcp = null;
    this.tls?.close();
    this.tls = null;
  }

  /** Closes the TCP clients still connected. */
  destroyClients(): void {
    for (const s of this.tcpClients) s.destroy();
    this.tcpClients.clear();
  }

  /** A client over TCP or TLS: STUN messages and ChannelData framed on one stream. */
  private acceptStream(s: net.Socket, transport: 'tcp' | 'tls'): void {
    this.tcpClients.add(s);
    s.once('close', () => this.tcpClients.delete(s));
    s.on('error', () => undefined);
    if (this.opts.tcpIdleTimeout > 0) s.setTimeout(this.opts.tcpIdleTimeout, () => s.destroy());
    const ip = canonicalIp(s.remoteAddress ?? '');
    const port = s.remotePort ?? 0;
    const client = { address: ip, port, transport };
    const turn = this.opts.turn;
    if (turn) s.once('close', () => turn.connectionClosed(client));
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      for (;;) {
        // ChannelData (first two bits 01) needs a TURN allocation on this connection: without
        // one, whatever starts that way is not for us
        const channelData = buf.length > 0 && (buf[0]! & 0xc0) === 0x40;
        if (channelData && !turn?.hasAllocation(client)) {
          this.opts.counters.malformed++;
          s.destroy();
          return;
        }
        const n = frameLength(buf);
        if (n === 'more') return;
        if (typeof n !== 'number') {
          // a stream that lost its framing cannot be resynchronized: close it
          this.opts.counters.malformed++;
          s.destroy();
          return;
        }
        if (buf.length < n) return;
        const frame = buf.subarray(0, n);
        buf = buf.subarray(n);
        if (channelData) {
          if (!turn!.channelData(frame, client)) this.opts.counters.malformed++;
          continue;
        }
        const send = (reply: Buffer): void => {
          if (!s.destroyed) s.write(reply);
        };
        if (turn && frame.readUInt16BE(0) === CONNECTION_BIND_REQUEST) {
          // RFC 6062: this connection is to become a data connection; what follows the request
          // is the client's data, not STUN, so parsing stops here
          s.removeListener('data', onData);
          s.pause();
          const stream: DataStream = { socket: s, rest: buf, taken: false };
          buf = Buffer.alloc(0);
          // not bound (a challenge, a stale nonce, an error): the connection goes on as before
          void Promise.resolve(this.answer(frame, ip, port, transport, send, stream)).then(() => {
            if (stream.taken || s.destroyed) return;
            s.on('data', onData);
            s.resume();
            onData(stream.rest);
          });
          return;
        }
        this.answer(frame, ip, port, transport, send);
      }
    };
    s.on('data', onData);
  }

  /** Answers one datagram or frame through `send`, or drops it. */
  answer(buf: Buffer, ip: string, port: number, transport: ClientTransport, send: (reply: Buffer) => void, stream?: DataStream): Promise<void> | void {
    const c = this.opts.counters;
    // RFC 3489 clients (no magic cookie) send Binding requests over UDP only
    const parsed = parseStun(buf, { rfc3489: transport === 'udp' });
    if (!parsed.ok || (parsed.value.rfc3489 && (parsed.value.method !== StunMethod.Binding || parsed.value.cls !== StunClass.Request))) {
      c.malformed++;
      return;
    }
    const m = parsed.value;
    const hasFingerprint = getAttr(m, Attr.FINGERPRINT) !== undefined;
    if (hasFingerprint && !checkFingerprint(m)) {
      c.malformed++;
      return;
    }
    const turn = this.opts.turn;
    const client = { address: ip, port, transport };
    if (m.cls === StunClass.Indication && m.method === StunMethod.Send && turn) {
      turn.sendIndication(m, client);
      return;
    }
    if (m.cls !== StunClass.Request) return; // other indications (keepalives) and stray responses get no answer
    // an RFC 3489 client gets its 16-byte id back and no attribute it would not know (section 11)
    const reply = (cls: StunClass): StunMessageBuilder =>
      m.rfc3489 ? new StunMessageBuilder(m.method, cls, m.raw.subarray(4, 20)) : new StunMessageBuilder(m.method, cls, m.transactionId).addString(Attr.SOFTWARE, this.opts.software);
    const finish = (b: StunMessageBuilder): Buffer => (hasFingerprint ? b.addFingerprint() : b).build();
    const fail = (code: number, reason?: string, unknown?: number[]): void => {
      c.errors[String(code)] = (c.errors[String(code)] ?? 0) + 1;
      const b = reply(StunClass.ErrorResponse).addErrorCode(code, reason);
      if (unknown) b.addUnknownAttributes(unknown);
      send(finish(b));
    };
    if (m.method !== StunMethod.Binding) {
      if (!TURN_METHODS.has(m.method)) return fail(400, 'Bad Request: unknown method');
      if (!turn) return fail(400, 'Bad Request: TURN is not served here');
      const unknown = unknownComprehensionRequired(m, TURN_KNOWN);
      if (unknown.length > 0) {
        if (this.opts.logger.enabled('debug')) this.opts.logger.debug('TURN request with unknown attributes: 420', { method: m.method, unknown: unknown.map((t) => `0x${t.toString(16)}`) });
        return fail(420, undefined, unknown);
      }
      return turn.request(m, client, hasFingerprint, send, stream).catch((e: unknown) => {
        this.opts.logger.error('TURN request failed', { method: m.method, error: String(e) });
        fail(500);
      });
      return;
    }
    const unknown = unknownComprehensionRequired(m, BINDING_KNOWN);
    if (unknown.length > 0) return fail(420, undefined, unknown);
    c.binding[transport]++;
    const ok = reply(StunClass.SuccessResponse);
    send(finish(m.rfc3489 ? ok.addAddress(Attr.MAPPED_ADDRESS, ip, port) : ok.addXorAddress(Attr.XOR_MAPPED_ADDRESS, ip, port)));
  }
}

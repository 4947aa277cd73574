// The small peers the integration tests talk to through the gateway, all on loopback: TCP servers
// (echo, custom), an HTTP server, a UDP echo server, a closed port, a TCP client with a reader for
// exact byte counts, and a DNS server that knows only the names a test gives it (with the argv that
// makes a process use it as its only resolver).
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';

export interface TcpPeer {
  server: net.Server;
  host: string;
  port: number;
  /** sockets accepted so far */
  accepted: net.Socket[];
  /** stops listening and destroys every accepted socket */
  close(): Promise<void>;
}

function trackClose(server: net.Server, host: string, accepted: net.Socket[]): TcpPeer {
  return {
    server,
    host,
    port: (server.address() as net.AddressInfo).port,
    accepted,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of accepted) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Starts a TCP server on host:0 running `onConnection` for each client (allowHalfOpen). */
export async function startTcpServer(onConnection: (s: net.Socket) => void, host = '127.0.0.1'): Promise<TcpPeer> {
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return trackClose(server, host, accepted);
}

/** A TCP echo server on host:0: echoes every byte, and ends when the client ends. */
export function startEchoServer(host = '127.0.0.1'): Promise<TcpPeer> {
  return startTcpServer((s) => s.pipe(s), host);
}

export interface HttpPeer extends TcpPeer {
  /** requests served: method, url and Host header */
  requests: Array<{ method: string; url: string; host: string | undefined }>;
}

/** An HTTP server on host:0 answering every request with `body` (text/plain). */
export async function startHttpServer(body: string, host = '127.0.0.1'): Promise<HttpPeer> {
  const requests: HttpPeer['requests'] = [];
  const accepted: net.Socket[] = [];
  const server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host });
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  server.on('connection', (s) => accepted.push(s));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  return { ...trackClose(server, host, accepted), requests };
}

export interface UdpPeer {
  socket: dgram.Socket;
  host: string;
  port: number;
  /** datagrams received: sender and payload */
  received: Array<{ address: string; port: number; data: Buffer }>;
  close(): Promise<void>;
}

/** A UDP echo server on host:0: sends every datagram back to its sender. */
export async function startUdpEchoServer(host = '127.0.0.1'): Promise<UdpPeer> {
  const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
  const received: UdpPeer['received'] = [];
  socket.on('message', (msg, rinfo) => {
    received.push({ address: rinfo.address, port: rinfo.port, data: msg });
    socket.send(msg, rinfo.port, rinfo.address);
  });
  socket.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(0, host, () => {
      socket.removeListener('error', reject);
      resolve();
    });
  });
  return { socket, host, port: socket.address().port, received, close: () => new Promise((r) => socket.close(() => r())) };
}

/** A TCP port on host that nothing listens on (bound, then released). */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, host, resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

// ---------------------------------------------------------------------------------------------
// Socket reading

/**
 * Buffers everything a socket receives, so a test can read exact byte counts or wait for the end.
 * `ended` becomes true on the peer's FIN or on close (reset, destroy).
 */
export class SocketReader {
  private buf: Buffer = Buffer.alloc(0);
  private wakers = new Set<() => void>();
  ended = false;
  /** the socket error, if any (e.g. ECONNRESET) */
  error: Error | null = null;
  /** total bytes received */
  total = 0;

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
      this.total += d.length;
      this.wake();
    });
    socket.on('end', () => this.finish());
    socket.on('close', () => this.finish());
    socket.on('error', (e) => {
      this.error = e;
      this.finish();
    });
  }

  private finish(): void {
    this.ended = true;
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.wakers]) w();
  }

  private wait(done: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.wakers.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.wakers.delete(check);
        reject(new Error(`timed out after ${timeoutMs} ms: ${what()}`));
      }, timeoutMs);
      this.wakers.add(check);
      check();
    });
  }

  /** The next n bytes; rejects when the stream ends first or after timeoutMs. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    await this.wait(() => this.buf.length >= n || this.ended, timeoutMs, () => `${this.buf.length} of ${n} bytes received (${this.buf.subarray(0, 64).toString('hex')})`);
    if (this.buf.length < n) throw new Error(`stream ended after ${this.buf.length} of ${n} bytes (${this.buf.subarray(0, 64).toString('hex')})`);
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }

  /** Everything until the peer ends (FIN or close); `ended` false when timeoutMs passed first. */
  async untilEnd(timeoutMs = 5000): Promise<{ data: Buffer; ended: boolean; ms: number }> {
    const started = Date.now();
    let ended = true;
    try {
      await this.wait(() => this.ended, timeoutMs, () => 'end');
    } catch {
      ended = false;
    }
    const data = this.buf;
    this.buf = Buffer.alloc(0);
    return { data, ended, ms: Date.now() - started };
  }
}

/** Connects a plain TCP client (allowHalfOpen) to host:port. */
export function tcpConnect(host: string, port: number, timeoutMs = 5000): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out`));
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeListener('error', onError);
      s.on('error', () => undefined);
      resolve(s);
    });
    const onError = (e: Error): void => {
      clearTimeout(timer);
      reject(e);
    };
    s.once('error', onError);
  });
}

// ---------------------------------------------------------------------------------------------
// DNS

export interface TestDns {
  /** the loopback address it answers on (port 53), for a resolv.conf "nameserver" line */
  address: string;
  /** names asked for (lower-cased, no trailing dot) with the query type: "A name", "AAAA name", ... */
  queries: string[];
  close(): Promise<void>;
}

/** Reads the QNAME at offset 12 of a DNS message and the QTYPE after it; null when malformed. */
function question(msg: Buffer): { name: string; type: number; end: number } | null {
  let p = 12;
  const labels: string[] = [];
  for (let hops = 0; hops < 128; hops++) {
    const len = msg[p];
    if (len === undefined || len > 63) return null;
    if (len === 0) return p + 5 <= msg.length ? { name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(p + 1), end: p + 5 } : null;
    labels.push(msg.toString('latin1', p + 1, p + 1 + len));
    p += 1 + len;
  }
  return null;
}

const QTYPE_NAMES: Record<number, string> = { 1: 'A', 28: 'AAAA' };

/**
 * A DNS server (UDP) on 127.53.0.N:53 that knows only `records` (name -> IPv4 address, type A) and
 * answers NXDOMAIN for every other name. A process whose /etc/resolv.conf names it (see
 * `withResolvConf`) resolves those names and no others, and no query ever leaves loopback.
 */
export async function startTestDns(records: Record<string, string> = {}): Promise<TestDns> {
  const queries: string[] = [];
  const known = new Map(Object.entries(records).map(([k, v]) => [k.toLowerCase(), v]));
  for (let n = 1; n <= 40; n++) {
    const address = `127.53.0.${n}`;
    const socket = dgram.createSocket('udp4');
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(53, address, () => {
          socket.removeListener('error', reject);
          resolve();
        });
      });
    } catch {
      socket.close();
      continue;
    }
    socket.on('error', () => undefined);
    socket.on('message', (msg, rinfo) => {
      if (msg.length < 12) return;
      const q = question(msg);
      if (!q) return;
      queries.push(`${QTYPE_NAMES[q.type] ?? q.type} ${q.name}`);
      const ip = known.get(q.name);
      const answer = ip !== undefined && q.type === 1;
      const header = Buffer.alloc(12);
      msg.copy(header, 0, 0, 2); // ID
      header[2] = 0x80 | (msg[2]! & 0x79); // QR, the query's opcode and RD
      header[3] = 0x80 | (ip === undefined ? 3 : 0); // RA; NXDOMAIN for unknown names, else NOERROR (no data for AAAA)
      header.writeUInt16BE(1, 4); // QDCOUNT
      header.writeUInt16BE(answer ? 1 : 0, 6); // ANCOUNT
      const parts = [header, msg.subarray(12, q.end)];
      if (answer) {
        const rr = Buffer.alloc(16);
        rr.writeUInt16BE(0xc00c, 0); // name: pointer to the question
        rr.writeUInt16BE(1, 2); // type A
        rr.writeUInt16BE(1, 4); // class IN
        rr.writeUInt32BE(5, 6); // TTL
        rr.writeUInt16BE(4, 10);
        ip.split('.').forEach((b, i) => (rr[12 + i] = Number(b)));
        parts.push(rr);
      }
      socket.send(Buffer.concat(parts), rinfo.port, rinfo.address);
    });
    return { address, queries, close: () => new Promise((r) => socket.close(() => r())) };
  }
  throw new Error('no free 127.53.0.N:53 for the test DNS server');
}

/**
 * argv that runs `argv` in a private mount namespace (unshare -m, needs root) where `resolvFile` is
 * bind-mounted over /etc/resolv.conf. No fork: the pid of the spawned process ends up being argv's own.
 */
export function withResolvConf(resolvFile: string, argv: readonly string[]): string[] {
  return ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" /etc/resolv.conf || exit 97; shift; exec "$@"', 'sh', resolvFile, ...argv];
}

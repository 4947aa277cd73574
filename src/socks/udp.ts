// UDP ASSOCIATE (RFC 1928 section 7): a relay socket for one client, alive while its TCP control
// connection is. Datagrams are taken only from the client's address; replies only from hosts the
// client has sent to (address-restricted, so the relay is no open UDP reflector), and of those only
// from the MAX_UDP_PEERS it sent to last, so that a client spraying addresses cannot grow memory.
import dgram from 'node:dgram';
import { isIPv6 } from 'node:net';
import { sameIp } from '../net/address.js';
import { isDenied, resolveHost } from '../transport/outbound.js';
import { buildReply, buildUdpDatagram, parseUdpDatagram, Socks5Reply, type SocksAddress } from '../codec/socks.js';
import { replyForError, replyName } from './replies.js';
import type { SessionContext } from './session.js';

/** Peers one association accepts replies from: the client's most recent destinations (address and port). */
export const MAX_UDP_PEERS = 1024;

/** The peers a client has sent to, newest last; beyond `limit` the one contacted longest ago is forgotten. */
export class RecentPeers {
  // a Set iterates in insertion order: the first entry is the one contacted longest ago
  private readonly peers = new Set<string>();

  constructor(private readonly limit = MAX_UDP_PEERS) {}

  /** Notes that the client sent to ip:port (again). */
  add(ip: string, port: number): void {
    const key = `${ip}|${port}`;
    this.peers.delete(key);
    this.peers.add(key);
    if (this.peers.size > this.limit) this.peers.delete(this.peers.values().next().value!);
  }

  /** true when a datagram from ip:port may go to the client. */
  has(ip: string, port: number): boolean {
    return this.peers.has(`${ip}|${port}`);
  }

  get size(): number {
    return this.peers.size;
  }
}

/** Runs one UDP association until the control connection closes or goes idle. */
export async function handleUdpAssociate(ctx: SessionContext, requested: SocksAddress): Promise<void> {
  const { client, opts } = ctx;
  const clientIp = client.remoteAddress ?? '';
  const localIp = client.localAddress ?? '127.0.0.1';
  const family = isIPv6(localIp) && !/^::ffff:/i.test(localIp) ? 'udp6' : 'udp4';
  const relaySock = dgram.createSocket({ type: family });
  const outbound = new Map<'udp4' | 'udp6', dgram.Socket>();
  const contacted = new RecentPeers();
  const counts = { up: 0, down: 0 };
  // the client's UDP source: fixed by the request when given, else learned from its first datagram
  let clientPort = requested.port !== 0 ? requested.port : 0;
  let closed = false;

  const bindHost = family === 'udp4' ? localIp.replace(/^::ffff:/i, '') : localIp;
  try {
    await new Promise<void>((resolve, reject) => {
      relaySock.once('error', reject);
      relaySock.bind(0, bindHost, () => {
        relaySock.removeListener('error', reject);
        resolve();
      });
    });
  } catch (err) {
    const rep = replyForError(err);
    opts.registry.countFailure(replyName(rep));
    client.end(buildReply(rep));
    relaySock.close();
    return;
  }
  if (client.destroyed) {
    relaySock.close();
    return;
  }

  const rec = opts.registry.add({
    listener: 'socks5',
    command: 'udp-associate',
    startedAt: Date.now(),
    client: { address: clientIp, port: client.remotePort ?? 0 },
    user: ctx.user,
    destination: { address: bindHost, port: relaySock.address().port },
    policyId: null,
    transport: {},
    mptcpRequested: false,
    close: () => client.destroy(),
    udp: counts,
  });

  const close = (): void => {
    if (closed) return;
    closed = true;
    clearInterval(idleCheck);
    relaySock.close();
    for (const s of outbound.values()) s.close();
    client.destroy();
    opts.registry.remove(rec);
  };

  let lastActivity = Date.now();
  const idleCheck = setInterval(() => {
    if (opts.idleTimeout > 0 && Date.now() - lastActivity > opts.idleTimeout) close();
  }, Math.max(1000, Math.min(opts.idleTimeout, 30_000)));
  idleCheck.unref();

  const outSocket = (kind: 'udp4' | 'udp6'): dgram.Socket => {
    let s = outbound.get(kind);
    if (s) return s;
    s = dgram.createSocket({ type: kind });
    s.on('error', (err) => ctx.log.debug('UDP relay send error', { id: rec.id, error: err.message }));
    s.on('message', (msg, rinfo) => {
      if (closed || clientPort === 0 || !contacted.has(rinfo.address, rinfo.port)) return;
      lastActivity = Date.now();
      counts.down += msg.length;
      relaySock.send(buildUdpDatagram(rinfo.address, rinfo.port, msg), clientPort, clientIp);
    });
    outbound.set(kind, s);
    return s;
  };

  relaySock.on('error', (err) => ctx.log.debug('UDP relay error', { id: rec.id, error: err.message }));
  relaySock.on('message', (msg, rinfo) => {
    if (closed || !sameIp(rinfo.address, clientIp)) return;
    if (clientPort === 0) clientPort = rinfo.port;
    else if (rinfo.port !== clientPort) return;
    const d = parseUdpDatagram(msg);
    if ('error' in d) {
      opts.registry.countFailure(`udp_${d.error}`);
      return;
    }
    lastActivity = Date.now();
    const send = (ip: string): void => {
      if (isDenied(opts.outbound.deny, ip)) {
        opts.registry.countFailure('udp_not_allowed');
        return;
      }
      contacted.add(ip, d.address.port);
      counts.up += d.data.length;
      outSocket(isIPv6(ip) ? 'udp6' : 'udp4').send(d.data, d.address.port, ip);
    };
    if (d.address.ip !== undefined) send(d.address.ip);
    else
      resolveHost(d.address.host!).then(
        (ips) => ips[0] !== undefined && !closed && send(ips[0]),
        () => opts.registry.countFailure('udp_host_unreachable'),
      );
  });

  client.on('close', close);
  client.on('end', close);
  client.on('data', () => undefined); // the control connection carries nothing after the reply
  ctx.reader.detach();
  client.resume();
  const bound = relaySock.address();
  client.write(buildReply(Socks5Reply.SUCCEEDED, bound.address, bound.port));
}

// BIND (RFC 1928 section 4): listen for one incoming connection on the client's behalf (FTP-style
// active connections). First reply: where we listen; second reply: who connected. The incoming
// peer must be the host named in the request, unless the request named 0.0.0.0 / ::.
import dgram from 'node:dgram';
import net from 'node:net';
import { isUnspecified, sameIp } from '../net/address.js';
import { takePair } from '../relay/session.js';
import { SpliceRelay } from '../relay/splice.js';
import { isDenied, resolveHost } from '../transport/outbound.js';
import { buildReply, Socks5Reply, type SocksAddress } from '../codec/socks.js';
import { replyForError, replyName } from './replies.js';
import type { SessionContext } from './session.js';

/** How long a BIND waits for the incoming connection. */
const BIND_ACCEPT_TIMEOUT_MS = 120_000;
/** Bytes kept from the client while the peer has not connected yet; beyond that the client is paused. */
const MAX_EARLY_BYTES = 64 * 1024;

/** The local address the kernel would use to reach `ip` (a connected UDP socket sends nothing). */
function localAddressToward(ip: string): Promise<string | null> {
  return new Promise((resolve) => {
    const s = dgram.createSocket(net.isIPv6(ip) ? 'udp6' : 'udp4');
    s.on('error', () => {
      s.close();
      resolve(null);
    });
    s.connect(9, ip, () => {
      const a = s.address().address;
      s.close();
      resolve(a);
    });
  });
}

export async function handleBind(ctx: SessionContext, requested: SocksAddress): Promise<void> {
  const { client, opts } = ctx;
  const fail = (rep: Socks5Reply): void => {
    opts.registry.countFailure(replyName(rep));
    if (!client.destroyed) client.end(buildReply(rep));
  };
  let expected: string | null = null;
  try {
    if (requested.host !== undefined) expected = (await resolveHost(requested.host))[0] ?? null;
    else if (requested.ip !== undefined && !isUnspecified(requested.ip)) expected = requested.ip;
  } catch (err) {
    return fail(replyForError(err));
  }
  if (expected !== null && isDenied(opts.outbound.deny, expected)) return fail(Socks5Reply.NOT_ALLOWED);
  const bindIp = (expected !== null ? await localAddressToward(expected) : null) ?? client.localAddress ?? '127.0.0.1';

  const listener = net.createServer({ allowHalfOpen: true });
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen({ host: bindIp, port: 0, backlog: 1 }, () => resolve());
    });
  } catch (err) {
    return fail(replyForError(err));
  }
  if (client.destroyed) {
    listener.close();
    return;
  }
  const bound = listener.address() as net.AddressInfo;
  // What the client sends before the peer connects (pipelined after the request, or after the first
  // reply) belongs to the peer: keep it, bounded, and hand it to the relay (an early FIN stays in the
  // kernel: the relay reads it there).
  const pipelined = ctx.reader.detach();
  const early: Buffer[] = pipelined.length > 0 ? [pipelined] : [];
  let earlyBytes = pipelined.length;
  const onEarlyData = (d: Buffer): void => {
    early.push(d);
    earlyBytes += d.length;
    if (earlyBytes >= MAX_EARLY_BYTES) client.pause(); // the rest waits in the kernel's buffers
  };
  client.on('data', onEarlyData);
  client.write(buildReply(Socks5Reply.SUCCEEDED, bound.address, bound.port));

  const timer = setTimeout(() => {
    listener.close();
    fail(Socks5Reply.TTL_EXPIRED);
  }, BIND_ACCEPT_TIMEOUT_MS);
  const onClientGone = (): void => {
    clearTimeout(timer);
    listener.close();
  };
  client.once('close', onClientGone);
  if (earlyBytes < MAX_EARLY_BYTES) client.resume();

  listener.once('connection', (peer) => {
    clearTimeout(timer);
    listener.close();
    client.removeListener('close', onClientGone);
    peer.on('error', () => undefined);
    if (client.destroyed) {
      peer.destroy();
      return;
    }
    const peerIp = peer.remoteAddress ?? '';
    if (expected !== null && !sameIp(peerIp, expected)) {
      ctx.log.debug('BIND: unexpected peer', { expected, peer: peerIp });
      peer.destroy();
      fail(Socks5Reply.NOT_ALLOWED);
      return;
    }
    client.pause();
    client.removeListener('data', onEarlyData);
    const reply = buildReply(Socks5Reply.SUCCEEDED, peerIp, peer.remotePort ?? 0);
    void startRelay(ctx, peer, { peerIp, reply, early: Buffer.concat(early) });
  });
}

/** The peer connected: relay the client and the peer, with the second reply and the client's early bytes first. */
async function startRelay(ctx: SessionContext, peer: net.Socket, o: { peerIp: string; reply: Buffer; early: Buffer }): Promise<void> {
  const { client, opts } = ctx;
  // the first reply must have left through Node before the relay takes the socket
  if (client.writableLength > 0) await new Promise<void>((resolve) => client.write(Buffer.alloc(0), () => resolve()));
  if (client.destroyed || peer.destroyed) {
    client.destroy();
    peer.destroy();
    return;
  }
  const release = ctx.adopt();
  const pair = takePair(client, peer, ctx.log);
  if (!pair) {
    release();
    return;
  }
  const rec = opts.registry.add({
    listener: 'socks5',
    command: 'bind',
    startedAt: Date.now(),
    client: { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
    user: ctx.user,
    destination: { address: o.peerIp, port: peer.remotePort ?? 0 },
    policyId: null,
    transport: {},
    mptcpRequested: false,
    close: () => relay.destroy(),
  });
  const toRemote = pair.client.buffered ? Buffer.concat([o.early, pair.client.buffered]) : o.early;
  const relay = new SpliceRelay(pair.client.fd, pair.out.fd, { idleTimeout: opts.idleTimeout, toRemote, reply: o.reply, toClient: pair.out.buffered ?? undefined }, () => {
    opts.registry.remove(rec);
    release();
  });
  rec.relay = relay;
  relay.start();
}

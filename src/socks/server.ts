// The SOCKS server: SOCKS5 (RFC 1928) with username/password (RFC 1929), CONNECT, BIND and UDP
// ASSOCIATE; SOCKS4/4a CONNECT. Handshake states are named after the RFC; errors become replies in
// replies.ts only; one connection's failure never touches another.
import type net from 'node:net';
import { parseIp } from '../net/address.js';
import { ClientListener } from '../net/listener.js';
import { relayOutbound } from '../relay/session.js';
import type { Listener } from '../relay/registry.js';
import { connectOutbound, type Outbound } from '../transport/outbound.js';
import { handleBind } from './bind.js';
import {
  AuthMethod,
  buildReply,
  buildSocks4Reply,
  parseCredentials,
  parseGreeting,
  parseRequest,
  parseSocks4Request,
  Socks4Reply,
  Socks5Command,
  Socks5Reply,
  SOCKS4,
  SOCKS5,
  type SocksAddress,
} from '../codec/socks.js';
import { FrameReader } from '../net/frame-reader.js';
import { replyForError, replyName } from './replies.js';
import { handleUdpAssociate } from './udp.js';
import type { SessionContext, SocksServerOptions } from './session.js';
export type { SessionContext, SocksServerOptions } from './session.js';

/** Handshake progress of one client, after microsocks' SS_* states. */
enum State {
  CONNECTED = 'connected',
  NEED_AUTH = 'need_auth',
  AUTHED = 'authed',
  CONNECTING = 'connecting',
  RELAYING = 'relaying',
}

export class SocksServer {
  private readonly listener: ClientListener;

  constructor(private readonly opts: SocksServerOptions) {
    this.listener = new ClientListener({
      accept: { allowHalfOpen: true, pauseOnConnect: false, noDelay: true },
      maxConnections: opts.maxConnections,
      onConnection: (client) => this.accept(client),
      onDrop: () => {
        opts.registry.totals.rejectedClients++;
      },
    });
  }

  /** the listening socket's fd when this server made it itself (listen with mptcp or shareable) or was given it */
  get listenFd(): number | null {
    return this.listener.fd;
  }

  /**
   * Starts listening; resolves with the bound address. With `mptcp` the listening socket is
   * IPPROTO_MPTCP: MPTCP clients get MPTCP, plain TCP clients still work (the kernel falls back).
   * With `shareable` the socket is made here (not by Node), so that its fd can be duplicated for
   * other threads (`listenFd`); with `fd`, this server accepts on a socket another thread made.
   */
  async listen(host: string, port: number, o: { mptcp?: boolean; shareable?: boolean; fd?: number } = {}): Promise<net.AddressInfo & { mptcp: boolean }> {
    const bound = await this.listener.listen({ host, port, mptcp: o.mptcp, shareable: o.shareable, fd: o.fd });
    if (bound.mptcpUnavailable !== undefined) this.opts.logger.warn('--socks-mptcp: MPTCP listener not available; listening with TCP', { why: bound.mptcpUnavailable });
    return { address: bound.address, family: bound.family, port: bound.port, mptcp: bound.mptcp };
  }

  /** Stops accepting; open connections go on. */
  close(): Promise<void> {
    this.listener.close();
    return Promise.resolve();
  }

  /** Closes every client connection still open (after the drain: the ones that never got to relaying, and the rest). */
  destroyClients(): void {
    this.listener.destroyClients();
  }

  private accept(client: net.Socket): void {
    const { opts } = this;
    const remote = client.remoteAddress ?? '';
    if (opts.clientAllow.size > 0) {
      const ip = parseIp(remote);
      if (!ip || !opts.clientAllow.contains(ip)) {
        opts.registry.totals.rejectedClients++;
        opts.logger.debug('client not in --socks-allow', { client: remote });
        client.destroy();
        return;
      }
    }
    client.on('error', () => undefined); // errors are handled where they matter; never crash
    const timer = setTimeout(() => {
      opts.registry.countFailure('handshake_timeout');
      client.destroy();
    }, opts.handshakeTimeout);
    const reader = new FrameReader(client);
    const ctx: SessionContext = { opts, client, reader, log: opts.logger };
    this.handshake(ctx, timer).catch((err: unknown) => {
      opts.logger.error('unexpected error in SOCKS session', { client: remote, error: String(err) });
      client.destroy();
    });
  }

  private async handshake(ctx: SessionContext, timer: NodeJS.Timeout): Promise<void> {
    const { client, reader, opts } = ctx;
    const first = await reader.next((b) => (b.length < 1 ? 'more' : { value: b[0]!, consumed: 0 }));
    if (first === SOCKS4) return this.socks4(ctx, timer);
    if (first !== SOCKS5) {
      clearTimeout(timer);
      if (typeof first === 'number') opts.registry.countFailure('bad_version');
      client.destroy();
      return;
    }
    let state = State.CONNECTED;
    const greeting = await reader.next(parseGreeting);
    if (greeting === 'closed' || 'error' in greeting) return this.abort(ctx, timer, greeting);
    const offersPassword = greeting.methods.includes(AuthMethod.USERNAME_PASSWORD);
    let method = AuthMethod.NO_ACCEPTABLE;
    if (opts.requireAuth) {
      if (offersPassword) method = AuthMethod.USERNAME_PASSWORD;
    } else if (greeting.methods.includes(AuthMethod.NO_AUTH)) method = AuthMethod.NO_AUTH;
    client.write(Buffer.from([SOCKS5, method]));
    if (method === AuthMethod.NO_ACCEPTABLE) {
      opts.registry.totals.authFailures++;
      ctx.log.debug('no acceptable authentication method', { client: client.remoteAddress, offered: greeting.methods });
      clearTimeout(timer);
      client.end();
      return;
    }
    if (method === AuthMethod.USERNAME_PASSWORD) {
      state = State.NEED_AUTH;
      const creds = await reader.next(parseCredentials);
      if (creds === 'closed' || 'error' in creds) return this.abort(ctx, timer, creds);
      const ok = await opts.users.verify(creds.username, creds.password);
      if (client.destroyed) return clearTimeout(timer);
      client.write(Buffer.from([0x01, ok ? 0x00 : 0x01]));
      if (!ok) {
        opts.registry.totals.authFailures++;
        ctx.log.warn('SOCKS authentication failed', { client: client.remoteAddress, user: creds.username });
        clearTimeout(timer);
        client.end();
        return;
      }
      ctx.user = creds.username;
    }
    state = State.AUTHED;
    const request = await reader.next(parseRequest);
    if (request === 'closed' || 'error' in request) return this.abort(ctx, timer, request);
    clearTimeout(timer);
    state = State.CONNECTING;
    if (ctx.log.enabled('debug')) ctx.log.debug('SOCKS request', { state, command: request.command, host: request.address.host, ip: request.address.ip, port: request.address.port });
    switch (request.command) {
      case Socks5Command.CONNECT:
        return this.connect(ctx, request.address, 'socks5');
      case Socks5Command.UDP_ASSOCIATE:
        return handleUdpAssociate(ctx, request.address);
      case Socks5Command.BIND:
        return handleBind(ctx, request.address);
    }
  }

  /** Ends a session whose handshake failed; sends the reply the RFC asks for, if any. */
  private abort(ctx: SessionContext, timer: NodeJS.Timeout, why: 'closed' | { error: string; message: string; reply?: Socks5Reply }): void {
    clearTimeout(timer);
    if (why === 'closed') {
      ctx.client.destroy();
      return;
    }
    ctx.opts.registry.countFailure(why.error);
    ctx.log.debug('bad SOCKS handshake', { client: ctx.client.remoteAddress, error: why.error, detail: why.message });
    if (why.reply !== undefined) ctx.client.end(buildReply(why.reply));
    else ctx.client.destroy();
  }

  /** SOCKS4/4a: one request, under the same handshake timer as SOCKS5 (it runs from the accept). */
  private async socks4(ctx: SessionContext, timer: NodeJS.Timeout): Promise<void> {
    const { client, reader, opts } = ctx;
    const req = await reader.next(parseSocks4Request);
    clearTimeout(timer);
    if (req === 'closed') return void client.destroy();
    if ('error' in req) {
      opts.registry.countFailure(req.error);
      client.end(buildSocks4Reply(Socks4Reply.REJECTED));
      return;
    }
    if (opts.requireAuth || req.command !== Socks5Command.CONNECT) {
      // SOCKS4 carries no password, so it cannot pass --socks-auth; BIND is SOCKS5-only here
      opts.registry.countFailure(opts.requireAuth ? 'socks4_needs_auth' : 'command_not_supported');
      client.end(buildSocks4Reply(Socks4Reply.REJECTED));
      return;
    }
    return this.connect(ctx, req.address, 'socks4');
  }

  private async connect(ctx: SessionContext, dest: SocksAddress, listener: Listener): Promise<void> {
    const { client, reader, opts } = ctx;
    let out: Outbound;
    try {
      out = await connectOutbound({ host: dest.host, ip: dest.ip, port: dest.port, cancelOn: client }, opts.outbound);
    } catch (err) {
      const rep = replyForError(err);
      opts.registry.countFailure(replyName(rep));
      ctx.log.debug('CONNECT failed', { host: dest.host, ip: dest.ip, port: dest.port, reply: replyName(rep), error: (err as Error).message });
      if (!client.destroyed) {
        client.end(listener === 'socks4' ? buildSocks4Reply(Socks4Reply.REJECTED) : buildReply(rep));
      }
      return;
    }
    const remote = out.socket;
    if (client.destroyed) {
      // the client gave up while we were connecting
      remote.destroy();
      client.destroy();
      return;
    }
    client.write(listener === 'socks4' ? buildSocks4Reply(Socks4Reply.GRANTED) : buildReply(Socks5Reply.SUCCEEDED, remote.localAddress, remote.localPort ?? 0));
    const clientEnded = reader.closed;
    relayOutbound({
      listener,
      client,
      clientAddress: { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
      user: ctx.user,
      destination: { host: dest.host, address: out.address, port: dest.port },
      out,
      pending: reader.detach(),
      clientEnded,
      clientCongestion: opts.clientCongestion,
      registry: opts.registry,
      idleTimeout: opts.idleTimeout,
      logger: ctx.log,
    });
  }
}

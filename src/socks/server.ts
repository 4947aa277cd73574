// The SOCKS server: SOCKS5 (RFC 1928) with username/password (RFC 1929), CONNECT, BIND and UDP
// ASSOCIATE; SOCKS4/4a CONNECT. An explicit handshake state (State, after microsocks) decides which
// message is read next; errors become replies in replies.ts only; one connection's failure never
// touches another.
import type net from 'node:net';
import { closeFd } from '../kernel/fdio.js';
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
  type Parsed,
  type SocksAddress,
} from '../codec/socks.js';
import { FrameReader } from '../net/frame-reader.js';
import { replyForError, replyName } from './replies.js';
import { handleUdpAssociate } from './udp.js';
import type { SessionContext, SocksServerOptions } from './session.js';
export type { SessionContext, SocksServerOptions } from './session.js';

/**
 * Handshake states of one client, after microsocks' SS_1_CONNECTED, SS_2_NEED_AUTH, SS_3_AUTHED:
 * each accepts exactly one client message, read by its own parser (see advance()).
 */
enum State {
  /** nothing read yet: a SOCKS5 method selection, or a SOCKS4 request (the version byte tells which) */
  CONNECTED = 'connected',
  /** username/password (RFC 1929) was selected: the credentials */
  NEED_AUTH = 'need_auth',
  /** authenticated, or no authentication selected: the SOCKS5 request */
  AUTHED = 'authed',
}

/** What a complete handshake asks for. */
type HandshakeRequest = { listener: 'socks5'; command: Socks5Command; address: SocksAddress } | { listener: 'socks4'; address: SocksAddress };

/** Where one handshake step leads: the next state, a request to carry out, or the end (answered and counted). */
type Step = { next: State } | { request: HandshakeRequest } | { ended: true };

const ENDED: Step = { ended: true };

/** The version byte, left in the buffer for the message's own parser. */
function peekVersion(b: Buffer): Parsed<number> {
  return b.length < 1 ? 'more' : { value: b[0]!, consumed: 0 };
}

/** The method the server selects from the client's offer (RFC 1928 section 3). */
function selectMethod(offered: readonly number[], requireAuth: boolean): AuthMethod {
  if (requireAuth) return offered.includes(AuthMethod.USERNAME_PASSWORD) ? AuthMethod.USERNAME_PASSWORD : AuthMethod.NO_ACCEPTABLE;
  return offered.includes(AuthMethod.NO_AUTH) ? AuthMethod.NO_AUTH : AuthMethod.NO_ACCEPTABLE;
}

const EMPTY = Buffer.alloc(0);

export class SocksServer {
  private readonly listener: ClientListener;

  constructor(private readonly opts: SocksServerOptions) {
    this.listener = new ClientListener({
      accept: { allowHalfOpen: true, pauseOnConnect: false, noDelay: true },
      maxConnections: opts.maxConnections,
      openCount: opts.openCount,
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

  /** Accepted client connections still open: in the handshake, or relaying. */
  get clientCount(): number {
    return this.listener.clientCount;
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
    const ctx: SessionContext = { opts, client, reader, log: opts.logger, adopt: () => this.listener.adopt(client) };
    this.handshake(ctx, timer).catch((err: unknown) => {
      opts.logger.error('unexpected error in SOCKS session', { client: remote, error: String(err) });
      client.destroy();
    });
  }

  /** Runs the handshake state machine under the handshake timer, then carries out the request. */
  private async handshake(ctx: SessionContext, timer: NodeJS.Timeout): Promise<void> {
    let step: Step = { next: State.CONNECTED };
    while ('next' in step) step = await this.advance(ctx, step.next);
    clearTimeout(timer); // the handshake is over, one way or the other
    if ('ended' in step) return;
    const { request } = step;
    if (request.listener === 'socks4') return this.connect(ctx, request.address, 'socks4');
    if (ctx.log.enabled('debug')) ctx.log.debug('SOCKS request', { command: request.command, host: request.address.host, ip: request.address.ip, port: request.address.port });
    switch (request.command) {
      case Socks5Command.CONNECT:
        return this.connect(ctx, request.address, 'socks5');
      case Socks5Command.UDP_ASSOCIATE:
        return handleUdpAssociate(ctx, request.address);
      case Socks5Command.BIND:
        return handleBind(ctx, request.address);
    }
  }

  /**
   * The transitions, in one place: reads the one message `state` accepts and answers it. Leads to
   * the next state, to a request to carry out, or to the end of a failed handshake (answered and counted).
   */
  private async advance(ctx: SessionContext, state: State): Promise<Step> {
    const { client, reader, opts } = ctx;
    switch (state) {
      case State.CONNECTED: {
        const version = await reader.next(peekVersion);
        if (version === SOCKS4) return this.socks4Request(ctx);
        if (version !== SOCKS5) {
          if (typeof version === 'number') opts.registry.countFailure('bad_version');
          client.destroy();
          return ENDED;
        }
        const greeting = await reader.next(parseGreeting);
        if (greeting === 'closed' || 'error' in greeting) return this.fail(ctx, greeting);
        const method = selectMethod(greeting.methods, opts.requireAuth);
        client.write(Buffer.from([SOCKS5, method]));
        if (method === AuthMethod.USERNAME_PASSWORD) return { next: State.NEED_AUTH };
        if (method === AuthMethod.NO_AUTH) return { next: State.AUTHED };
        opts.registry.totals.authFailures++;
        ctx.log.debug('no acceptable authentication method', { client: client.remoteAddress, offered: greeting.methods });
        client.end();
        return ENDED;
      }
      case State.NEED_AUTH: {
        const creds = await reader.next(parseCredentials);
        if (creds === 'closed' || 'error' in creds) return this.fail(ctx, creds);
        const ok = await opts.users.verify(creds.username, creds.password);
        if (client.destroyed) return ENDED; // the handshake timer went off while the password was checked
        client.write(Buffer.from([0x01, ok ? 0x00 : 0x01]));
        if (!ok) {
          opts.registry.totals.authFailures++;
          ctx.log.warn('SOCKS authentication failed', { client: client.remoteAddress, user: creds.username });
          client.end();
          return ENDED;
        }
        ctx.user = creds.username;
        return { next: State.AUTHED };
      }
      case State.AUTHED: {
        const request = await reader.next(parseRequest);
        if (request === 'closed' || 'error' in request) return this.fail(ctx, request);
        return { request: { listener: 'socks5', command: request.command, address: request.address } };
      }
    }
  }

  /** Ends a SOCKS5 handshake that failed; sends the reply the RFC asks for, if any. */
  private fail(ctx: SessionContext, why: 'closed' | { error: string; message: string; reply?: Socks5Reply }): Step {
    if (why === 'closed') {
      ctx.client.destroy();
      return ENDED;
    }
    ctx.opts.registry.countFailure(why.error);
    ctx.log.debug('bad SOCKS handshake', { client: ctx.client.remoteAddress, error: why.error, detail: why.message });
    if (why.reply !== undefined) ctx.client.end(buildReply(why.reply));
    else ctx.client.destroy();
    return ENDED;
  }

  /** SOCKS4/4a: the first message is the whole request; CONNECT only, and never with --socks-auth. */
  private async socks4Request(ctx: SessionContext): Promise<Step> {
    const { client, reader, opts } = ctx;
    const req = await reader.next(parseSocks4Request);
    if (req === 'closed') {
      client.destroy();
      return ENDED;
    }
    if ('error' in req) {
      opts.registry.countFailure(req.error);
      client.end(buildSocks4Reply(Socks4Reply.REJECTED));
      return ENDED;
    }
    if (opts.requireAuth || req.command !== Socks5Command.CONNECT) {
      // SOCKS4 carries no password, so it cannot pass --socks-auth; BIND is SOCKS5-only here
      opts.registry.countFailure(opts.requireAuth ? 'socks4_needs_auth' : 'command_not_supported');
      client.end(buildSocks4Reply(Socks4Reply.REJECTED));
      return ENDED;
    }
    return { request: { listener: 'socks4', address: req.address } };
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
    if (client.destroyed) {
      // the client gave up while we were connecting
      closeFd(out.fd);
      client.destroy();
      return;
    }
    const reply = listener === 'socks4' ? buildSocks4Reply(Socks4Reply.GRANTED) : buildReply(Socks5Reply.SUCCEEDED, out.local.address, out.local.port);
    const pending = reader.detach();
    if (client.writableLength > 0) await new Promise<void>((resolve) => client.write(EMPTY, () => resolve()));
    if (client.destroyed) {
      closeFd(out.fd);
      return;
    }
    relayOutbound({
      listener,
      client,
      clientAddress: { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
      user: ctx.user,
      destination: { host: dest.host, address: out.address, port: dest.port },
      out,
      pending,
      reply,
      onClosed: ctx.adopt(),
      clientCongestion: opts.clientCongestion,
      registry: opts.registry,
      idleTimeout: opts.idleTimeout,
      logger: ctx.log,
    });
  }
}

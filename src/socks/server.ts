// The SOCKS server: SOCKS5 (RFC 1928) with username/password (RFC 1929), CONNECT, BIND and UDP
// ASSOCIATE; SOCKS4/4a CONNECT. An explicit handshake state (State, after microsocks) decides which
// message is read next; errors become replies in replies.ts only; one connection's failure never
// touches another.
import type net from 'node:net';
import { DeadlineItem, DeadlineList } from '../core/deadline-list.js';
import { thePlane } from '../kernel/epoll-plane.js';
import { closeFd } from '../kernel/fdio.js';
import { RawClient } from '../net/raw-client.js';
import { RawListener } from '../net/raw-listener.js';
import { parseIp } from '../net/address.js';
import { relayOutbound } from '../relay/session.js';
import type { Listener } from '../relay/registry.js';
import { connectOutboundNow, type Outbound } from '../transport/outbound.js';
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
import type { Logger } from '../log/logger.js';
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
const TO_NEED_AUTH: Step = { next: State.NEED_AUTH };
const TO_AUTHED: Step = { next: State.AUTHED };
/** the method selection replies, made once (a reply is never changed after it is written) */
const METHOD_REPLIES = new Map<AuthMethod, Buffer>([AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD, AuthMethod.NO_ACCEPTABLE].map((m) => [m, Buffer.from([SOCKS5, m])]));

/** The version byte, left in the buffer for the message's own parser. */
function peekVersion(b: Buffer): Parsed<number> {
  return b.length < 1 ? 'more' : { value: b[0]!, consumed: 0 };
}

/** The method the server selects from the client's offer (RFC 1928 section 3). */
function selectMethod(offered: readonly number[], requireAuth: boolean): AuthMethod {
  if (requireAuth) return offered.includes(AuthMethod.USERNAME_PASSWORD) ? AuthMethod.USERNAME_PASSWORD : AuthMethod.NO_ACCEPTABLE;
  return offered.includes(AuthMethod.NO_AUTH) ? AuthMethod.NO_AUTH : AuthMethod.NO_ACCEPTABLE;
}


/** One client's handshake: the server's options and the client on its raw fd, with its deadline. */
class Handshake extends DeadlineItem {
  user?: string;
  /** the message the handshake reads next */
  state = State.CONNECTED;
  /** a step is waiting for something other than the client (the password check) */
  busy = false;

  constructor(
    readonly opts: SocksServerOptions,
    readonly client: RawClient,
    readonly log: Logger,
  ) {
    super();
  }

  /** --handshake-timeout passed */
  override onDeadline(): void {
    this.opts.registry.countFailure('handshake_timeout');
    this.client.destroy();
  }
}

export class SocksServer {
  private readonly plane = thePlane();
  /** the handshakes in progress, by deadline (--handshake-timeout) */
  private readonly deadlines = new DeadlineList();
  /** the listening socket; accepted clients come to accept() in the plane's poll callback */
  private readonly listener: RawListener;

  constructor(private readonly opts: SocksServerOptions) {
    this.listener = new RawListener({
      name: 'SOCKS',
      maxConnections: opts.maxConnections,
      openCount: opts.openCount,
      onAccept: (fd, address, port) => this.accept(fd, address, port),
      onDrop: () => opts.registry.totals.rejectedClients++,
      logger: opts.logger,
    });
  }

  /** the listening socket's fd (this server made it, or was given it): other threads accept from dups of it */
  get listenFd(): number | null {
    return this.listener.fd;
  }

  /**
   * Starts listening; resolves with the bound address. With `mptcp` the listening socket is
   * IPPROTO_MPTCP: MPTCP clients get MPTCP, plain TCP clients still work (the kernel falls back).
   * The socket is edgeward's own (net/raw-listener.ts); with `fd`, this server accepts on a socket
   * another thread made (`shareable` is kept for the callers: every socket here can be shared).
   */
  async listen(host: string, port: number, o: { mptcp?: boolean; shareable?: boolean; fd?: number } = {}): Promise<net.AddressInfo & { mptcp: boolean }> {
    // TCP_NODELAY once on the listener: every accepted client has it, no setsockopt per connection
    const bound = await this.listener.listen({ host, port, mptcp: o.mptcp === true, noDelay: true, fd: o.fd });
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

  /** Closes every client connection still in its handshake (the relayed ones are the registry's to close). */
  destroyClients(): void {
    this.listener.destroyClients();
  }

  private accept(fd: number, remote: string, remotePort: number): void {
    const { opts } = this;
    if (opts.clientAllow.size > 0) {
      const ip = parseIp(remote);
      if (!ip || !opts.clientAllow.contains(ip)) {
        opts.registry.totals.rejectedClients++;
        opts.logger.debug('client not in --socks-allow', { client: remote });
        closeFd(fd);
        this.listener.open.closed();
        return;
      }
    }
    const client = new RawClient(fd, remote, remotePort);
    this.listener.track(client);
    const ctx = new Handshake(opts, client, opts.logger);
    this.deadlines.arm(ctx, opts.handshakeTimeout);
    client.once('close', () => this.handshakeOver(ctx));
    // the first bytes come with the first edge of the client's fd (its registration reports them)
    client.onReadable = () => this.drive(ctx);
  }

  /**
   * Takes the steps of the handshake that the bytes received allow, synchronously (no promise per
   * message); runs again when more arrive (client.onReadable). Only the password check waits on
   * something else; the request, once complete, is carried out.
   */
  private drive(ctx: Handshake): void {
    while (!ctx.busy) {
      let step: Step | 'more' | Promise<Step>;
      try {
        step = this.advance(ctx, ctx.state);
      } catch (err) {
        this.unexpected(ctx, err);
        return;
      }
      if (step === 'more') return;
      if (step instanceof Promise) {
        ctx.busy = true;
        step.then(
          (s) => {
            ctx.busy = false;
            if (this.stepped(ctx, s)) this.drive(ctx);
          },
          (err: unknown) => this.unexpected(ctx, err),
        );
        this.plane.turn(); // drive may run in the poll callback, where the continuation would wait
        return;
      }
      if (!this.stepped(ctx, step)) return;
    }
  }

  /** Where a step led: true when the handshake goes on (the next message may be there already). */
  private stepped(ctx: Handshake, step: Step): boolean {
    if ('next' in step) {
      ctx.state = step.next;
      return true;
    }
    this.handshakeOver(ctx);
    if ('request' in step) this.carryOut(ctx, step.request);
    return false;
  }

  /** The handshake is over, one way or the other: no timer, no more steps. */
  private handshakeOver(ctx: Handshake): void {
    this.deadlines.disarm(ctx);
    ctx.client.onReadable = null;
  }

  private unexpected(ctx: Handshake, err: unknown): void {
    ctx.log.error('unexpected error in SOCKS session', { client: ctx.client.remoteAddress, error: String(err) });
    ctx.client.destroy();
  }

  /**
   * Carries out a complete request: CONNECT here, at once (no promise on its way: it may run in
   * the plane's poll callback); BIND and UDP ASSOCIATE on a net.Socket, in a turn of Node's loop.
   */
  private carryOut(ctx: Handshake, request: HandshakeRequest): void {
    if (request.listener === 'socks4') return this.connect(ctx, request.address, 'socks4');
    if (ctx.log.enabled('debug')) ctx.log.debug('SOCKS request', { command: request.command, host: request.address.host, ip: request.address.ip, port: request.address.port });
    if (request.command === Socks5Command.CONNECT) return this.connect(ctx, request.address, 'socks5');
    const { command, address } = request;
    this.plane.soon(() => this.bindOrAssociate(ctx, command, address).catch((err: unknown) => this.unexpected(ctx, err)));
  }

  /** BIND or UDP ASSOCIATE: the rare commands run on a net.Socket over the client's fd. */
  private async bindOrAssociate(ctx: Handshake, command: Socks5Command.BIND | Socks5Command.UDP_ASSOCIATE, address: SocksAddress): Promise<void> {
    const handed = ctx.client.toNetSocket();
    if (!handed) return;
    const release = this.listener.adopt(ctx.client);
    const socket = handed.socket;
    // counted until the socket closes, or, once the BIND relay took it, until the relay has
    let relayed = false;
    socket.once('close', () => {
      if (!relayed) release();
    });
    socket.on('error', () => undefined);
    const adopt = (): (() => void) => {
      relayed = true;
      return release;
    };
    const session: SessionContext = { opts: ctx.opts, client: socket, reader: new FrameReader(socket, handed.buffered), user: ctx.user, log: ctx.log, adopt };
    return command === Socks5Command.BIND ? handleBind(session, address) : handleUdpAssociate(session, address);
  }

  /**
   * The transitions, in one place: takes the one message `state` accepts and answers it. Leads to
   * the next state, to a request to carry out, or to the end of a failed handshake (answered and
   * counted); 'more' while the message is not all there; a promise while the password is checked.
   */
  private advance(ctx: Handshake, state: State): Step | 'more' | Promise<Step> {
    const { client, opts } = ctx;
    switch (state) {
      case State.CONNECTED: {
        const version = client.take(peekVersion); // peeked: taken again with the rest of the message
        if (version === 'more') return 'more';
        if (version === SOCKS4) return this.socks4Request(ctx);
        if (version !== SOCKS5) {
          if (typeof version === 'number') opts.registry.countFailure('bad_version');
          client.destroy();
          return ENDED;
        }
        const greeting = client.take(parseGreeting);
        if (greeting === 'more') return 'more';
        if (greeting === 'closed' || 'error' in greeting) return this.fail(ctx, greeting);
        const method = selectMethod(greeting.methods, opts.requireAuth);
        client.write(METHOD_REPLIES.get(method)!);
        if (method === AuthMethod.USERNAME_PASSWORD) return TO_NEED_AUTH;
        if (method === AuthMethod.NO_AUTH) return TO_AUTHED;
        opts.registry.totals.authFailures++;
        ctx.log.debug('no acceptable authentication method', { client: client.remoteAddress, offered: greeting.methods });
        client.end();
        return ENDED;
      }
      case State.NEED_AUTH: {
        const creds = client.take(parseCredentials);
        if (creds === 'more') return 'more';
        if (creds === 'closed' || 'error' in creds) return this.fail(ctx, creds);
        return opts.users.verify(creds.username, creds.password).then((ok): Step => {
          if (client.destroyed) return ENDED; // the handshake timer went off while the password was checked
          client.write(Buffer.from([0x01, ok ? 0x00 : 0x01]));
          if (!ok) {
            opts.registry.totals.authFailures++;
            ctx.log.warn('SOCKS authentication failed', { client: client.remoteAddress, user: creds.username });
            client.end();
            return ENDED;
          }
          ctx.user = creds.username;
          return TO_AUTHED;
        });
      }
      case State.AUTHED: {
        const request = client.take(parseRequest);
        if (request === 'more') return 'more';
        if (request === 'closed' || 'error' in request) return this.fail(ctx, request);
        return { request: { listener: 'socks5', command: request.command, address: request.address } };
      }
    }
  }

  /** Ends a SOCKS5 handshake that failed; sends the reply the RFC asks for, if any. */
  private fail(ctx: Handshake, why: 'closed' | { error: string; message: string; reply?: Socks5Reply }): Step {
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
  private socks4Request(ctx: Handshake): Step | 'more' {
    const { client, opts } = ctx;
    const req = client.take(parseSocks4Request);
    if (req === 'more') return 'more';
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

  /**
   * CONNECT: dials (transport/outbound.ts connectOutboundNow: an address without an upstream is
   * dialed at once, the rest in a turn of Node's loop), answers, and hands both fds to the relay.
   */
  private connect(ctx: Handshake, dest: SocksAddress, listener: Listener): void {
    const { client, opts } = ctx;
    connectOutboundNow({ host: dest.host, ip: dest.ip, port: dest.port, cancelOn: client }, opts.outbound, (err, out) => {
      try {
        this.connected(ctx, dest, listener, err, out);
      } catch (e) {
        if (out && !client.destroyed) closeFd(out.fd);
        this.unexpected(ctx, e);
      }
    });
  }

  private connected(ctx: Handshake, dest: SocksAddress, listener: Listener, err: unknown, out: Outbound | undefined): void {
    const { client, opts } = ctx;
    if (err || !out) {
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
    const taken = client.release();
    if (!taken) {
      closeFd(out.fd);
      client.destroy();
      return;
    }
    const release = this.listener.adopt(client);
    relayOutbound({
      listener,
      client: taken,
      clientAddress: { address: client.remoteAddress, port: client.remotePort },
      user: ctx.user,
      destination: { host: dest.host, address: out.address, port: dest.port },
      out,
      reply,
      onClosed: release,
      clientCongestion: opts.clientCongestion,
      registry: opts.registry,
      idleTimeout: opts.idleTimeout,
      logger: ctx.log,
    });
  }
}

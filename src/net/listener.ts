// A listening socket edgeward made, and the clients it accepted as net.Sockets, for the service
// that accepts TCP through Node: the shield's reverse proxy (SOCKS and intercept accept on their own
// fds: net/raw-listener.ts). It brings the plumbing such a listener needs: a socket Node cannot
// make itself (IPPROTO_MPTCP, IP_TRANSPARENT, or one whose fd other threads share) opened through
// kernel/, handed to net.Server, closed again when listen fails; --max-connections (counted across
// the threads that share the socket) with a count of the refused; and the accepted clients
// tracked, so that shutdown can close those still open.
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { closeFd, isMptcpSocket, openListenSocket } from '../kernel/sockopt.js';
import { OpenCount } from './open-count.js';

/** Backlog of every listening socket: bursts of connects wait in the kernel, not in SYN retries. */
const BACKLOG = 1024;

export interface ClientListenerOptions {
  /** options of every accepted socket */
  accept: Pick<net.ServerOpts, 'allowHalfOpen' | 'pauseOnConnect' | 'noDelay'>;
  /** open connections beyond which new ones are refused (closed at once) */
  maxConnections: number;
  /**
   * where the open connections are counted (slot 0, with Atomics): memory shared with the listeners
   * of other threads accepting from the same socket makes maxConnections hold for all of them
   * together; without it this listener counts alone
   */
  openCount?: Int32Array;
  /** each accepted client; it is tracked until it closes */
  onConnection: (client: net.Socket) => void;
  /** each connection refused because maxConnections were open */
  onDrop: () => void;
  /** errors of the listening socket once it listens (accept failures); without it they are thrown */
  onError?: (err: Error) => void;
}

export interface ListenAt {
  /** an IP literal or a name (looked up when this module opens the socket itself) */
  host: string;
  port: number;
  /** IPPROTO_MPTCP: MPTCP clients get MPTCP, plain TCP clients still work (the kernel falls back) */
  mptcp?: boolean;
  /** IP_TRANSPARENT / IPV6_TRANSPARENT: the socket TPROXY hands diverted connections to (CAP_NET_ADMIN) */
  transparent?: boolean;
  /** open the socket here (not in Node) even when no option needs it, so that its fd can be shared */
  shareable?: boolean;
  /** accept on this fd, made by another thread (a dup); host and port are then ignored */
  fd?: number;
}

export interface BoundListener extends net.AddressInfo {
  /** the listening socket is IPPROTO_MPTCP, as the kernel says */
  mptcp: boolean;
  /** why MPTCP was asked for but the socket is plain TCP (kernel without MPTCP, net.mptcp.enabled=0) */
  mptcpUnavailable?: string;
}

/** One listening socket and the clients accepted on it that are still open. */
export class ClientListener {
  readonly server: net.Server;
  /** the listening socket's fd when it was made here or handed in (listen with mptcp, transparent, shareable or fd) */
  fd: number | null = null;
  private readonly clients = new Set<net.Socket>();
  /** clients whose sockets the relay took from Node (relay/splice.ts): still open, no longer net.Sockets */
  private readonly adopted = new WeakSet<net.Socket>();
  private readonly open: OpenCount;

  constructor(private readonly opts: ClientListenerOptions) {
    const open = new OpenCount(opts.maxConnections, opts.openCount);
    this.open = open;
    this.server = net.createServer(opts.accept, (client) => {
      if (!open.tryOpen()) {
        client.destroy();
        opts.onDrop();
        return;
      }
      this.clients.add(client);
      client.once('close', () => {
        this.clients.delete(client);
        if (!this.adopted.has(client)) open.closed();
      });
      opts.onConnection(client);
    });
  }

  /**
   * Starts listening; resolves with the bound address. A socket this module opened is closed again
   * when Node cannot listen on it; errors of kernel/ (KernelError, with the errno as code) pass through.
   */
  async listen(at: ListenAt): Promise<BoundListener> {
    let fd = at.fd;
    // a socket made elsewhere: ask the kernel what it is
    let mptcp = fd !== undefined && isMptcpSocket(fd);
    let mptcpUnavailable: string | undefined;
    if (fd === undefined && (at.mptcp || at.transparent || at.shareable)) {
      const ip = net.isIP(at.host) ? at.host : (await lookup(at.host)).address;
      const opened = openListenSocket({ family: net.isIPv6(ip) ? 6 : 4, host: ip, port: at.port, backlog: BACKLOG, mptcp: at.mptcp === true, transparent: at.transparent === true });
      fd = opened.fd;
      mptcp = opened.mptcp;
      mptcpUnavailable = opened.mptcpUnavailable;
    }
    const owned = fd;
    await new Promise<void>((resolve, reject) => {
      const onError = (e: Error): void => {
        if (owned !== undefined) closeFd(owned);
        reject(e);
      };
      this.server.once('error', onError);
      this.server.listen(owned !== undefined ? { fd: owned } : { host: at.host, port: at.port, backlog: BACKLOG }, () => {
        this.server.removeListener('error', onError);
        resolve();
      });
    });
    const { onError } = this.opts;
    if (onError) this.server.on('error', onError);
    this.fd = owned ?? null;
    const bound: BoundListener = { ...(this.server.address() as net.AddressInfo), mptcp };
    if (mptcpUnavailable !== undefined) bound.mptcpUnavailable = mptcpUnavailable;
    return bound;
  }

  /** Accepted client connections still open (in a handshake or relaying). */
  get clientCount(): number {
    return this.clients.size + this.open.handedOn;
  }

  /**
   * Counts `client`, whose socket the relay is about to take from Node, as open until the function
   * returned is called (once, when the relay has closed it).
   */
  adopt(client: net.Socket): () => void {
    this.adopted.add(client);
    return this.open.handOn();
  }

  /** Stops accepting at once; accepted clients go on (server.close's callback would wait for them all). */
  close(): void {
    if (this.server.listening) this.server.close();
  }

  /** Closes every accepted client still open, whatever it is doing (handshake, connecting, relaying). */
  destroyClients(): void {
    for (const s of this.clients) s.destroy();
    this.clients.clear();
  }
}

// The transparent interceptor: a TPROXY listener (IP_TRANSPARENT) that takes the TCP connections
// the firewall diverts to it. The original destination is the accepted socket's own local address;
// from there on an intercepted connection is like a SOCKS CONNECT: same policy engine, outbound
// (direct or chained to an upstream), relay, registry and API, marked as intercepted.
//
// Failures are counted (registry.countFailure) under their own names, not as SOCKS replies:
//   intercept_local_destination   the connection was addressed to this machine (refused, never looped)
//   intercept_<reason>            the outgoing connect failed; <reason> from net/errors.ts:
//     intercept_connection_refused, intercept_network_unreachable, intercept_host_unreachable,
//     intercept_timed_out, intercept_not_allowed, intercept_upstream_failed, intercept_general_failure
// The client then gets a reset, as a failed connect would have given it without the gateway.
import net from 'node:net';
import { closeFd, localAddress } from '../kernel/fdio.js';
import type { Logger } from '../log/logger.js';
import { canonicalIp } from '../net/address.js';
import { connectFailure } from '../net/errors.js';
import { LocalAddresses } from '../net/local-addresses.js';
import { RawClient } from '../net/raw-client.js';
import { RawListener } from '../net/raw-listener.js';
import { relayOutbound } from '../relay/session.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import { connectOutboundNow, type OutboundSettings } from '../transport/outbound.js';

export interface InterceptServerOptions {
  outbound: OutboundSettings;
  registry: ConnectionRegistry;
  /** ms without traffic before a relayed connection is closed; 0 = never */
  idleTimeout: number;
  maxConnections: number;
  /** keep the client's address as the source of the outgoing connection (IP_TRANSPARENT + bind) */
  transparentSource: boolean;
  /** congestion control for accepted client connections (--client-congestion) */
  clientCongestion?: string;
  logger: Logger;
}

export class InterceptServer {
  /** one per listening address (IPv4 and IPv6 unless a host was given) */
  private readonly listeners: RawListener[] = [];
  /** open intercepted clients, all listeners together (--max-connections), and those the relay took */
  private readonly open = new Int32Array(new SharedArrayBuffer(4));
  private readonly local = new LocalAddresses();

  constructor(private readonly opts: InterceptServerOptions) {}

  /** Intercepted client connections still open: connecting to their destination, or relaying. */
  get clientCount(): number {
    return this.listeners.reduce((n, l) => n + l.clientCount, 0);
  }

  /**
   * Opens the TPROXY listener(s): on `host` when given, else on 0.0.0.0 and :: (IPv6-only) both.
   * Needs CAP_NET_ADMIN for IP_TRANSPARENT. Resolves with the bound addresses.
   */
  async listen(host: string | undefined, port: number): Promise<net.AddressInfo[]> {
    const hosts: Array<{ family: 4 | 6; host: string }> = host !== undefined ? [{ family: net.isIPv6(host) ? 6 : 4, host }] : [{ family: 4, host: '0.0.0.0' }, { family: 6, host: '::' }];
    const bound: net.AddressInfo[] = [];
    try {
      for (const h of hosts) {
        const listener: RawListener = new RawListener({
          name: 'intercept',
          maxConnections: this.opts.maxConnections,
          openCount: this.open,
          onAccept: (fd, address, remotePort) => this.accept(fd, address, remotePort, listener),
          onDrop: () => this.opts.registry.totals.rejectedClients++,
          logger: this.opts.logger,
        });
        let a: net.AddressInfo;
        try {
          a = await listener.listen({ host: h.host, port, transparent: true });
        } catch (e) {
          // a machine without IPv6 still intercepts IPv4
          if (host === undefined && h.family === 6 && (e as { code?: string }).code === 'EAFNOSUPPORT') {
            this.opts.logger.warn('intercept: no IPv6 on this machine; intercepting IPv4 only');
            continue;
          }
          throw e;
        }
        this.listeners.push(listener);
        bound.push({ address: h.host, family: a.family, port: a.port });
      }
    } catch (e) {
      await this.close();
      throw e;
    }
    return bound;
  }

  /** Stops accepting at once; open connections go on. */
  async close(): Promise<void> {
    for (const l of this.listeners) l.close();
  }

  /** Closes every intercepted client still connecting (the relayed ones are the registry's to close). */
  destroyClients(): void {
    for (const l of this.listeners) l.destroyClients();
  }

  /**
   * An intercepted connection, in the plane's poll callback: its original destination is the
   * socket's own address; the destination is dialed (at once when it needs no upstream), and both
   * fds go to the relay. What the client sends meanwhile waits for the destination.
   */
  private accept(fd: number, remote: string, remotePort: number, listener: RawListener): void {
    const { opts } = this;
    const dest = localAddress(fd);
    const destIp = canonicalIp(dest?.address ?? '');
    const destPort = dest?.port ?? 0;
    const srcIp = canonicalIp(remote);
    if (!dest || this.local.isSelf(destIp)) {
      // addressed to this machine: relaying it would connect back to ourselves
      opts.registry.countFailure('intercept_local_destination');
      opts.logger.debug('intercept: connection addressed to the gateway itself refused', { client: srcIp, destination: `${destIp}:${destPort}` });
      closeFd(fd);
      listener.open.closed();
      return;
    }
    const client = new RawClient(fd, remote, remotePort);
    listener.track(client);
    const spoofSource = opts.transparentSource ? srcIp : undefined;
    connectOutboundNow({ ip: destIp, port: destPort, spoofSource, cancelOn: client }, opts.outbound, (err, out) => {
      if (err || !out) {
        const reason = `intercept_${connectFailure(err)}`;
        opts.registry.countFailure(reason);
        opts.logger.debug('intercept: connect failed', { client: srcIp, destination: `${destIp}:${destPort}`, reason, error: (err as Error).message });
        // a reset tells the unaware client what a refused connect would have told it
        client.reset();
        return;
      }
      const taken = client.release();
      if (!taken) {
        // the client went away while we were connecting
        closeFd(out.fd);
        client.destroy();
        return;
      }
      const onClosed = listener.adopt(client);
      relayOutbound({
        listener: 'intercept',
        client: taken,
        clientAddress: { address: srcIp, port: remotePort },
        destination: { address: destIp, port: destPort },
        out,
        onClosed,
        clientCongestion: opts.clientCongestion,
        registry: opts.registry,
        idleTimeout: opts.idleTimeout,
        logger: opts.logger,
      });
    });
  }
}

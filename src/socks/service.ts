// The SOCKS service: a SocksServer in every thread, all accepting from the one listening socket the
// main thread opened (a dup of its fd in each worker: one accept queue). With workers, the main
// thread's instance lets go of the socket once they are up (gateway.ts): only the workers accept.
import type { Static } from '@sinclair/typebox';
import type { transportSection } from '../config/common.js';
import { parseListenAddress } from '../config/common.js';
import { CidrList, formatHostPort } from '../net/address.js';
import type { Service, ServiceDefinition } from '../runtime/service.js';
import { socksSection, type SocksSettings } from './config.js';
import { SocksServer } from './server.js';

export type SocksServiceSettings = SocksSettings & Static<typeof transportSection.schema>;

export const socksService: ServiceDefinition<SocksServiceSettings> = {
  name: 'socks',
  section: socksSection,
  everyThread: true,
  enabled: () => true,
  create(ctx): Service {
    const { settings: s, parts } = ctx;
    const server = new SocksServer({
      requireAuth: s.socksAuth,
      users: parts.users,
      clientAllow: CidrList.parse(s.socksAllow, '--socks-allow'),
      clientCongestion: s.clientCongestion !== '' ? s.clientCongestion : undefined,
      outbound: parts.outbound,
      registry: parts.registry,
      handshakeTimeout: s.handshakeTimeout * 1000,
      idleTimeout: s.idleTimeout * 1000,
      // counted across the threads that accept from the one socket
      maxConnections: s.maxConnections,
      openCount: ctx.shared ? new Int32Array(ctx.shared, 0, 1) : undefined,
      logger: ctx.logger,
    });
    parts.metrics.gauge({
      name: 'edgeward_socks_clients',
      help: 'SOCKS client connections open now: in the handshake or relaying (every thread).',
      read: () => server.clientCount,
    });
    return {
      async listen() {
        const inherited = ctx.inheritedFds?.[0];
        if (inherited !== undefined) {
          await server.listen('', 0, { fd: inherited });
          return {};
        }
        const at = parseListenAddress(s.socks, '--socks');
        const bound = await server.listen(at.host, at.port, { mptcp: s.socksMptcp, shareable: ctx.threads > 1 });
        if (s.socksAuth && (await parts.users.count()) === 0) {
          ctx.logger.warn('--socks-auth is on but there are no users yet: add one with `edgeward user add NAME`');
        }
        return { socks: formatHostPort(bound.address, bound.port), ...(s.socksMptcp ? { socksMptcp: bound.mptcp } : {}), socksThreads: ctx.threads, auth: s.socksAuth };
      },
      sharedFds: () => (server.listenFd !== null ? [server.listenFd] : []),
      stopAccepting: () => server.close(),
      async close() {
        server.destroyClients();
      },
    };
  },
};

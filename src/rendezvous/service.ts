// The rendezvous service: a STUN/TURN server (UDP and TCP on one address), in the main thread.
// Today it answers STUN Binding (the reflexive address peers need for hole punching); TURN
// allocations, accounts and signaling are being built on it (issue 8 and 9).
import type { Static } from '@sinclair/typebox';
import type { transportSection } from '../config/common.js';
import { parseListenAddress } from '../config/common.js';
import type { Service, ServiceDefinition } from '../runtime/service.js';
import { rendezvousSection, type RendezvousSettings } from './config.js';
import { newStunCounters, StunServer } from './stun-server.js';

export type RendezvousServiceSettings = RendezvousSettings & Static<typeof transportSection.schema>;

export const rendezvousService: ServiceDefinition<RendezvousServiceSettings> = {
  name: 'rendezvous',
  section: rendezvousSection,
  everyThread: false,
  enabled: (s) => s.turn !== '',
  create(ctx): Service {
    const { settings: s, parts, logger } = ctx;
    const counters = newStunCounters();
    const server = new StunServer({ software: 'edgeward', counters, maxTcpClients: s.maxConnections, tcpIdleTimeout: s.idleTimeout * 1000, logger });
    const m = parts.metrics;
    m.counter({
      name: 'edgeward_stun_binding_requests_total',
      help: 'STUN Binding requests answered with the reflexive address, by transport.',
      labels: ['transport'],
      read: () => [
        [{ transport: 'udp' }, counters.binding.udp],
        [{ transport: 'tcp' }, counters.binding.tcp],
      ],
    });
    m.counter({
      name: 'edgeward_stun_error_responses_total',
      help: 'STUN requests answered with an error response, by error code (400 unsupported method, 420 unknown attribute, ...).',
      labels: ['code'],
      read: () => Object.entries(counters.errors).map(([code, n]) => [{ code }, n]),
    });
    m.counter({ name: 'edgeward_stun_malformed_total', help: 'STUN datagrams and TCP frames dropped as malformed (header, length, attributes, fingerprint).', read: () => counters.malformed });
    return {
      async listen() {
        const at = parseListenAddress(s.turn, '--turn');
        const bound = await server.listen(at.host, at.port).catch((e: unknown) => {
          throw new Error(`--turn ${s.turn}: ${(e as Error).message}`);
        });
        const shown = bound.address.includes(':') ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
        return { turn: shown };
      },
      async stopAccepting() {
        server.close();
      },
      async close() {
        server.destroyClients();
      },
    };
  },
};

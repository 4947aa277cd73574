// The interception service: TPROXY listeners for the connections the firewall diverts, in the main
// thread only, and with --firewall the nftables table and policy routing they need, applied on
// listen and removed on close. Its API route shows the firewall's state as read from the kernel.
import type { Static } from '@sinclair/typebox';
import { Type } from '@sinclair/typebox';
import type { transportSection } from '../config/common.js';
import { ApiError } from '../api/errors.js';
import { ErrorBody } from '../api/schemas.js';
import { formatHostPort } from '../net/address.js';
import type { Service, ServiceDefinition } from '../runtime/service.js';
import { interceptSection, parseInterceptAddress, type InterceptSettings } from './config.js';
import { applyFirewall, firewallStatus, NFT_TABLE, removeFirewall, type FirewallSpec } from './firewall.js';
import { InterceptServer } from './server.js';

export type InterceptServiceSettings = InterceptSettings & Static<typeof transportSection.schema>;

const FirewallState = Type.Object({
  table: Type.String({ description: 'the nftables table edgeward owns' }),
  loaded: Type.Boolean({ description: 'the table is in the kernel' }),
  applied: Type.Boolean({ description: 'the table and the policy routing of every family are in place' }),
  managed: Type.Boolean({ description: 'this gateway applied it (--firewall) and removes it on stop' }),
});

/** The running intercept service: what its routes read besides the lifecycle. */
export interface InterceptService extends Service {
  /** the firewall this gateway applied (--firewall), or null */
  firewall(): FirewallSpec | null;
}

export const interceptService: ServiceDefinition<InterceptServiceSettings, InterceptService> = {
  name: 'intercept',
  section: interceptSection,
  everyThread: false,
  enabled: (s) => s.intercept !== '',
  create(ctx): InterceptService {
    const { settings: s, parts, logger } = ctx;
    const server = new InterceptServer({
      outbound: parts.outbound,
      registry: parts.registry,
      idleTimeout: s.idleTimeout * 1000,
      maxConnections: s.maxConnections,
      transparentSource: s.transparentSource,
      clientCongestion: s.clientCongestion !== '' ? s.clientCongestion : undefined,
      logger,
    });
    let firewall: FirewallSpec | null = null;
    parts.metrics.gauge({
      name: 'edgeward_intercept_clients',
      help: 'Intercepted client connections open now: connecting to their destination or relaying.',
      read: () => server.clientCount,
    });
    parts.metrics.gauge({
      name: 'edgeward_intercept_firewall_applied',
      help: '1 while the TPROXY firewall this gateway applied (--firewall) is in place, else 0.',
      aggregate: 'max',
      read: () => (firewall ? 1 : 0),
    });
    const removeRules = async (): Promise<void> => {
      if (!firewall) return;
      firewall = null;
      // the listener is closed: take the rules away so the LAN's traffic flows as before
      await removeFirewall().then(
        (r) => logger.info('firewall removed', { table: NFT_TABLE, changes: r.changes }),
        (e: unknown) => logger.error('firewall: could not remove the rules; run `edgeward intercept firewall remove`', { error: (e as Error).message }),
      );
    };
    return {
      firewall: () => firewall,
      async listen() {
        const at = parseInterceptAddress(s.intercept);
        const bound = await server.listen(at.host, at.port).catch((e: unknown) => {
          const code = (e as { code?: string }).code;
          throw new Error(`--intercept ${s.intercept}: ${(e as Error).message}${code === 'EPERM' ? ' (IP_TRANSPARENT needs root or CAP_NET_ADMIN)' : ''}`);
        });
        if (s.firewall) {
          const spec: FirewallSpec = { port: at.port, interfaces: s.interceptInterface, sources: [], excludes: [], dports: [] };
          const applied = await applyFirewall(spec).catch(async (e: unknown) => {
            await server.close();
            throw new Error(`--firewall: ${(e as Error).message}`);
          });
          firewall = spec;
          logger.info('firewall applied', { table: NFT_TABLE, interfaces: s.interceptInterface, changes: applied.changes });
        }
        return { intercept: bound.map((a) => formatHostPort(a.address, a.port)), transparentSource: s.transparentSource };
      },
      stopAccepting: () => server.close(),
      async close() {
        server.destroyClients();
        await removeRules();
      },
    };
  },
  routes: (service) => async (app) => {
    const managed = (): boolean => service.firewall() !== null;
    app.get(
      '/intercept/firewall',
      { schema: { tags: ['intercept'], summary: 'The interception firewall, as the kernel has it', response: { 200: FirewallState, 503: ErrorBody } } },
      async () => {
        const st = await firewallStatus().catch((e: unknown) => {
          // nft or ip missing, or no privilege to read the ruleset: say so, it is not the caller's fault
          throw new ApiError(503, 'firewall_unreadable', null, `cannot read the firewall: ${(e as Error).message}`);
        });
        return { table: NFT_TABLE, loaded: st.table, applied: st.applied, managed: managed() };
      },
    );
  },
};

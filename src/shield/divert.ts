// The policy routing the shield's TPROXY rule needs: packets it marks (SHIELD_MARK) are looked up
// in SHIELD_ROUTE_TABLE, whose one route delivers everything locally, so the proxy's transparent
// listener gets connections addressed to other hosts (router mode) or to a port the server holds
// (host mode). Added when a proxied service starts, removed on stop and by `edgeward shield remove`.
import { defaultRunner, type CommandRunner } from '../kernel/command.js';
import { addFwmarkRule, addLocalRoute, fwmarkRuleArgv, localRouteArgv, type IpFamily } from '../kernel/iproute.js';
import { SHIELD_MARK, SHIELD_ROUTE_TABLE } from './rules.js';

const FAMILY: Record<4 | 6, IpFamily> = { 4: 'ipv4', 6: 'ipv6' };

/** Deletes the shield's rules and routes of these families (those a crash left too); never throws. */
export async function removeDivertRouting(families: ReadonlyArray<4 | 6> = [4, 6], run: CommandRunner = defaultRunner): Promise<void> {
  for (const f of families) {
    // "ip rule add" allows duplicates: delete until none is left (bounded)
    for (let i = 0; i < 16; i++) if ((await run(fwmarkRuleArgv(FAMILY[f], 'del', SHIELD_MARK, SHIELD_ROUTE_TABLE))).code !== 0) break;
    await run(localRouteArgv(FAMILY[f], 'del', SHIELD_ROUTE_TABLE));
  }
}

/** Adds "ip rule fwmark SHIELD_MARK lookup SHIELD_ROUTE_TABLE" and its local route, after clearing leftovers. */
export async function applyDivertRouting(families: ReadonlyArray<4 | 6>, run: CommandRunner = defaultRunner): Promise<void> {
  await removeDivertRouting(families, run);
  for (const f of families) {
    await addFwmarkRule(FAMILY[f], SHIELD_MARK, SHIELD_ROUTE_TABLE, run);
    await addLocalRoute(FAMILY[f], SHIELD_ROUTE_TABLE, run);
  }
}

// Re-applies changed policies to open connections, where Linux allows it: congestion control,
// Nagle and keepalive change on a live socket, and so do the subflows and backup flags of a
// connection under edgeward's own path manager; MPTCP on/off, scheduler and path manager do not.
import { defaultCongestionControl } from '../kernel/capabilities.js';
import type { PolicyDecision } from '../policy/service.js';
import { isOwnPathManager, type Destination, type Transport } from '../policy/types.js';
import { applyLiveOptions } from './dialer.js';
import { planOf, thePathManager } from './path-manager.js';

/** An open relayed connection, as far as re-applying its policy is concerned (relay/registry's records are these). */
export interface LiveConnection {
  command: string;
  destination: { host?: string; address: string; port: number };
  policyId: number | null;
  transport: Transport;
  /** the relay's sockets, while it is open */
  relay?: { readonly clientFd: number; readonly outFd: number; readonly open: boolean };
}

/** What a policy change did to open connections; the API returns it with the changed policy. */
export interface LiveUpdate {
  /** open connections whose transport changed and was re-applied */
  connectionsUpdated: number;
  notes: string[];
}

function sameKeepAlive(a: Transport['keepAlive'], b: Transport['keepAlive']): boolean {
  if (a === undefined || b === undefined || a === false || b === false) return a === b;
  return a.idle === b.idle && a.interval === b.interval && a.count === b.count;
}

/** The same subflow count and backup list (what edgeward's path manager re-applies). */
function samePaths(a: Transport, b: Transport): boolean {
  const ab = a.backup ?? [];
  const bb = b.backup ?? [];
  return a.subflows === b.subflows && ab.length === bb.length && ab.every((x, i) => x === bb[i]);
}

/** The options to set so that `next` is in effect where `prev` was (removed fields -> kernel default). */
function liveDelta(prev: Transport, next: Transport): Transport | null {
  const d: Transport = {};
  if (prev.congestion !== next.congestion) d.congestion = next.congestion ?? defaultCongestionControl();
  if (prev.noDelay !== next.noDelay) d.noDelay = next.noDelay ?? false;
  if (!sameKeepAlive(prev.keepAlive, next.keepAlive)) d.keepAlive = next.keepAlive ?? false;
  return Object.keys(d).length > 0 ? d : null;
}

/** What re-applying did in one thread; counts from several threads add up. */
export interface ReapplyCounts {
  updated: number;
  mptcpDiffers: number;
  pinned: number;
  failures: string[];
}

/** Matches every open connection again (with `decide`) and applies what changed. */
export function reapplyCounts(connections: Iterable<LiveConnection>, decide: (d: Destination) => PolicyDecision): ReapplyCounts {
  let updated = 0;
  let mptcpDiffers = 0;
  let pinned = 0;
  const failures = new Set<string>();
  for (const rec of connections) {
    const relay = rec.relay;
    if (!relay?.open || rec.command !== 'connect') continue;
    const decision = decide({ host: rec.destination.host, ip: rec.destination.address, port: rec.destination.port });
    const prev = rec.transport;
    const next = decision.transport;
    if ((prev.mptcp === true) !== (next.mptcp === true)) mptcpDiffers++;
    if (prev.scheduler !== next.scheduler || prev.pathManager !== next.pathManager) pinned++;
    rec.policyId = decision.policy?.id ?? null;
    rec.transport = next;
    // edgeward's own path manager changes an open connection's subflows and backup flags
    const paths = isOwnPathManager(next.pathManager) && next.pathManager === prev.pathManager && !samePaths(prev, next) ? thePathManager().reapply(relay.outFd, planOf(next, next.pathManager)) : null;
    if (paths) for (const f of paths) failures.add(f);
    const delta = liveDelta(prev, next);
    if (!delta) {
      if (paths) updated++;
      continue;
    }
    for (const f of applyLiveOptions(relay.outFd, delta)) failures.add(f);
    for (const f of applyLiveOptions(relay.clientFd, delta, { congestion: false })) failures.add(f);
    updated++;
  }
  return { updated, mptcpDiffers, pinned, failures: [...failures] };
}

/** Adds up the counts of several threads. */
export function addCounts(a: ReapplyCounts, b: ReapplyCounts): ReapplyCounts {
  return { updated: a.updated + b.updated, mptcpDiffers: a.mptcpDiffers + b.mptcpDiffers, pinned: a.pinned + b.pinned, failures: [...new Set([...a.failures, ...b.failures])] };
}

/** The LiveUpdate the API returns, from the counts. */
export function liveUpdateFrom(c: ReapplyCounts): LiveUpdate {
  const notes: string[] = ['mptcp, scheduler, pathManager and via take effect for new connections only; congestion, noDelay, keepAlive, and subflows and backup under edgeward\'s path manager were applied to open connections'];
  if (c.mptcpDiffers > 0) notes.push(`${c.mptcpDiffers} open connection(s) keep their current MPTCP state until they close`);
  if (c.pinned > 0) notes.push(`${c.pinned} open connection(s) keep their current MPTCP scheduler/path manager until they close`);
  for (const f of c.failures) notes.push(`not applied: ${f}`);
  return { connectionsUpdated: c.updated, notes };
}

/** Matches `connections` again and applies what changed; what the API reports. */
export function reapplyPolicies(connections: Iterable<LiveConnection>, decide: (d: Destination) => PolicyDecision): LiveUpdate {
  return liveUpdateFrom(reapplyCounts(connections, decide));
}

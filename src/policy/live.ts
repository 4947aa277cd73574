// Re-applies changed policies to open connections, where Linux allows it: congestion control,
// Nagle and keepalive change on a live socket; MPTCP on/off, scheduler and path manager do not.
import { readFileSync } from 'node:fs';
import type { ConnectionRegistry } from '../relay/registry.js';
import { applyLiveOptions, socketFd } from '../transport/dialer.js';
import type { PolicyService } from './service.js';
import type { Transport } from './types.js';

/** What a policy change did to open connections; the API returns it with the changed policy. */
export interface LiveUpdate {
  /** open connections whose transport changed and was re-applied */
  connectionsUpdated: number;
  notes: string[];
}

function systemCongestion(): string | undefined {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_congestion_control', 'latin1').trim();
  } catch {
    return undefined;
  }
}

function sameKeepAlive(a: Transport['keepAlive'], b: Transport['keepAlive']): boolean {
  if (a === undefined || b === undefined || a === false || b === false) return a === b;
  return a.idle === b.idle && a.interval === b.interval && a.count === b.count;
}

/** The options to set so that `next` is in effect where `prev` was (removed fields -> kernel default). */
function liveDelta(prev: Transport, next: Transport): Transport | null {
  const d: Transport = {};
  if (prev.congestion !== next.congestion) d.congestion = next.congestion ?? systemCongestion();
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

/** Matches every open connection again and applies what changed. */
export function reapplyCounts(registry: ConnectionRegistry, policies: PolicyService): ReapplyCounts {
  let updated = 0;
  let mptcpDiffers = 0;
  let pinned = 0;
  const failures = new Set<string>();
  for (const rec of registry.list()) {
    if (!rec.outSocket || rec.command !== 'connect') continue;
    const decision = policies.decide({ host: rec.destination.host, ip: rec.destination.address, port: rec.destination.port });
    const prev = rec.transport;
    const next = decision.transport;
    if ((prev.mptcp === true) !== (next.mptcp === true)) mptcpDiffers++;
    if (prev.scheduler !== next.scheduler || prev.pathManager !== next.pathManager) pinned++;
    rec.policyId = decision.policy?.id ?? null;
    rec.transport = next;
    const delta = liveDelta(prev, next);
    if (!delta) continue;
    const outFd = socketFd(rec.outSocket);
    const clientFd = socketFd(rec.clientSocket);
    if (outFd !== null) for (const f of applyLiveOptions(outFd, delta)) failures.add(f);
    if (clientFd !== null) for (const f of applyLiveOptions(clientFd, delta, { congestion: false })) failures.add(f);
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
  const notes: string[] = ['mptcp, scheduler, pathManager and via take effect for new connections only; congestion, noDelay and keepAlive were applied to open connections'];
  if (c.mptcpDiffers > 0) notes.push(`${c.mptcpDiffers} open connection(s) keep their current MPTCP state until they close`);
  if (c.pinned > 0) notes.push(`${c.pinned} open connection(s) keep their current MPTCP scheduler/path manager until they close`);
  for (const f of c.failures) notes.push(`not applied: ${f}`);
  return { connectionsUpdated: c.updated, notes };
}

/** Matches every open connection of this thread again and applies what changed. */
export function reapplyPolicies(registry: ConnectionRegistry, policies: PolicyService): LiveUpdate {
  return liveUpdateFrom(reapplyCounts(registry, policies));
}

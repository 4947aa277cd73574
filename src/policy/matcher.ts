// Destination -> policy. The most specific policy wins, in this order (README "Policy matching"):
//   1. exact host name        (example.com)
//   2. exact IP address       (host: 192.0.2.7, or cidr: 192.0.2.7/32)
//   3. wildcard host          (*.example.com; more labels win: *.a.example.com over *.example.com)
//   4. CIDR block             (longer prefix wins)
// Between two policies of the same kind and length, the one with a port beats the one without.
// For a domain CONNECT both the name and the resolved address are tried; the best of both wins.
import type { Issue } from '../core/errors.js';
import { err, ok, type Err, type Result } from '../core/result.js';
import { cidrContains, formatCidr, formatIp, normalizeHostname, parseCidr, parseIp, type Cidr } from '../net/address.js';
import type { Destination, Policy, PolicyMatch } from './types.js';

export type MatchKind = 'host' | 'ip' | 'wildcard' | 'cidr';

const KIND_RANK: Record<MatchKind, number> = { host: 4, ip: 3, wildcard: 2, cidr: 1 };

/** A match clause in canonical form, with what the matcher needs to rank it. */
export interface NormalizedMatch {
  kind: MatchKind;
  /** host name, wildcard suffix (without "*."), canonical IP or canonical CIDR */
  key: string;
  port?: number;
  /** label count (wildcard) or prefix length (cidr, ip) */
  length: number;
  cidr?: Cidr;
}

export type MatchField = 'match' | 'match.port' | 'match.cidr' | 'match.host';

/** A refused match clause: `field` is the part at fault, and the message begins with it. */
export interface MatchIssue extends Issue<'invalid'> {
  field: MatchField;
}

function invalid(field: MatchField, message: string): Err<MatchIssue> {
  return err({ code: 'invalid', field, message });
}

/** Checks and canonicalizes a match clause. */
export function normalizeMatch(m: PolicyMatch): Result<NormalizedMatch, MatchIssue> {
  const port = m.port;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) return invalid('match.port', 'match.port must be an integer 1..65535');
  if ((m.host === undefined) === (m.cidr === undefined)) return invalid('match', 'match needs exactly one of "host" or "cidr"');
  if (m.cidr !== undefined) {
    const parsed = parseCidr(m.cidr);
    if (!parsed.ok) return invalid('match.cidr', `match.cidr: ${parsed.error.message}`);
    const c = parsed.value;
    const full = c.family === 4 ? 32 : 128;
    if (c.prefix === full) return ok({ kind: 'ip', key: formatIp(c), port, length: full, cidr: c });
    return ok({ kind: 'cidr', key: formatCidr(c), port, length: c.prefix, cidr: c });
  }
  const host = m.host!;
  const ip = parseIp(host);
  if (ip) {
    const full = ip.family === 4 ? 32 : 128;
    return ok({ kind: 'ip', key: formatIp(ip), port, length: full, cidr: { ...ip, prefix: full } });
  }
  if (host.startsWith('*.')) {
    const suffix = normalizeHostname(host.slice(2));
    if (!suffix) return invalid('match.host', `match.host: "${host}" is not a valid wildcard (expected *.example.com)`);
    return ok({ kind: 'wildcard', key: suffix, port, length: suffix.split('.').length });
  }
  const name = normalizeHostname(host);
  if (!name) return invalid('match.host', `match.host: "${host}" is not a valid host name, wildcard (*.example.com) or IP address`);
  return ok({ kind: 'host', key: name, port, length: 0 });
}

/** Rank of a match: higher wins. */
function score(n: NormalizedMatch): number {
  return KIND_RANK[n.kind] * 1000 + n.length * 2 + (n.port !== undefined ? 1 : 0);
}

/** A stable text identity of a match clause, to refuse two policies with the same match. */
export function matchIdentity(n: NormalizedMatch): string {
  return `${n.kind}:${n.key}:${n.port ?? '*'}`;
}

interface Entry {
  policy: Policy;
  match: NormalizedMatch;
  score: number;
}

/** An index over a set of policies, answering "which policy applies to this destination". */
export class PolicyMatcher {
  private readonly exact = new Map<string, Entry[]>(); // host and ip keys
  private readonly wildcards = new Map<string, Entry[]>();
  private readonly cidrs: Entry[] = [];

  constructor(policies: readonly Policy[]) {
    for (const policy of policies) {
      const normalized = normalizeMatch(policy.match);
      if (!normalized.ok) continue; // the store only holds validated policies
      const match = normalized.value;
      const entry: Entry = { policy, match, score: score(match) };
      if (match.kind === 'cidr') this.cidrs.push(entry);
      else {
        const map = match.kind === 'wildcard' ? this.wildcards : this.exact;
        const key = match.kind === 'wildcard' ? match.key : `${match.kind}:${match.key}`;
        const list = map.get(key);
        if (list) list.push(entry);
        else map.set(key, [entry]);
      }
    }
    this.cidrs.sort((a, b) => b.score - a.score);
  }

  /** The most specific policy for the destination, or null (then the default policy applies). */
  match(dest: Destination): Policy | null {
    let best: Entry | null = null;
    if (dest.host) {
      const host = dest.host.endsWith('.') ? dest.host.slice(0, -1).toLowerCase() : dest.host.toLowerCase();
      best = better(this.exact.get(`host:${host}`), dest.port, best);
      if (this.wildcards.size > 0) {
        let dot = host.indexOf('.');
        while (dot >= 0) {
          best = better(this.wildcards.get(host.slice(dot + 1)), dest.port, best);
          dot = host.indexOf('.', dot + 1);
        }
      }
    }
    if (dest.ip && (this.exact.size > 0 || this.cidrs.length > 0)) {
      const ip = parseIp(dest.ip);
      if (ip) {
        if (this.exact.size > 0) best = better(this.exact.get(`ip:${formatIp(ip)}`), dest.port, best);
        for (const e of this.cidrs) {
          if (best && best.score >= e.score) break; // sorted: nothing better below
          if (e.match.port !== undefined && e.match.port !== dest.port) continue;
          if (cidrContains(e.match.cidr!, ip)) {
            best = e;
            break;
          }
        }
      }
    }
    return best?.policy ?? null;
  }
}

/** The better of `best` and the entries of `list` that fit the port. */
function better(list: Entry[] | undefined, port: number, best: Entry | null): Entry | null {
  if (!list) return best;
  for (const e of list) {
    if (e.match.port !== undefined && e.match.port !== port) continue;
    if (!best || e.score > best.score) best = e;
  }
  return best;
}

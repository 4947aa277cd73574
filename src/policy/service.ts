// Policies as a service: validation against the running kernel, storage, the live matcher snapshot
// used on every new connection, and change notification for re-applying to open connections.
import { EventEmitter } from 'node:events';
import { EdgewardError } from '../core/errors.js';
import { err, ok, type Result } from '../core/result.js';
import { availableCongestionControls, mptcpCapabilities } from '../kernel/capabilities.js';
import { StoreError, type Store } from '../store/store.js';
import { matchIdentity, normalizeMatch, PolicyMatcher } from './matcher.js';
import { parseUpstream } from './via.js';
import { isIP } from 'node:net';
import { isInterfaceName } from '../net/address.js';
import { isOwnPathManager, MAX_SUBFLOWS, OWN_PATH_MANAGERS, type Destination, type Policy, type PolicyInput, type PolicyMatch, type Transport, type Via } from './types.js';

export type PolicyErrorCode = 'invalid' | 'unsupported' | 'conflict' | 'not_found';

/** A rejected policy operation; `field` names the offending field (e.g. "transport.congestion"). */
export class PolicyError extends EdgewardError<PolicyErrorCode> {
  constructor(
    code: PolicyErrorCode,
    readonly field: string | null,
    message: string,
    readonly available?: string[],
  ) {
    super(code, message);
  }
}

/**
 * What applies to one connection: the matched policy (null = default) and the merged transport.
 * One per policy, made when the policies are loaded and shared by every connection it matches:
 * never changed (a change of policy makes new ones).
 */
export interface PolicyDecision {
  readonly policy: Policy | null;
  readonly transport: Transport;
  /** the matched policy's via; undefined = the global --upstream (or direct) */
  readonly via: Via | undefined;
}

/** Checks a policy's via: "direct" or a socks5:// URL. */
export function validateVia(via: Via): Result<Via, PolicyError> {
  if (via === 'direct') return ok(via);
  const up = parseUpstream(via, 'via');
  if (!up.ok) return err(new PolicyError('invalid', up.error.field, `${up.error.message} (or "direct")`));
  return ok(via);
}

const KEEPALIVE_LIMITS = { idle: 32767, interval: 32767, count: 127 } as const;

/** The path managers a policy may name: the kernel's, and edgeward's own where the kernel has "userspace". */
export function pathManagerChoices(kernel: readonly string[]): string[] {
  return kernel.includes('userspace') ? [...kernel, ...OWN_PATH_MANAGERS] : [...kernel];
}

/** Checks a transport against what this kernel offers. */
export function validateTransport(t: Transport, prefix = 'transport'): Result<Transport, PolicyError> {
  if (t.congestion !== undefined) {
    const available = availableCongestionControls();
    if (!available.includes(t.congestion)) {
      return err(new PolicyError('unsupported', `${prefix}.congestion`, `${prefix}.congestion "${t.congestion}" is not available on this kernel; available: ${available.join(', ')}`, available));
    }
  }
  if (t.scheduler !== undefined || t.pathManager !== undefined) {
    const caps = mptcpCapabilities();
    if (t.scheduler !== undefined && !caps.schedulers.includes(t.scheduler)) {
      return err(new PolicyError('unsupported', `${prefix}.scheduler`, `${prefix}.scheduler "${t.scheduler}" is not available on this kernel; available: ${caps.schedulers.join(', ') || '(none: no MPTCP)'}`, caps.schedulers));
    }
    const offered = pathManagerChoices(caps.pathManagers);
    if (t.pathManager !== undefined && !offered.includes(t.pathManager)) {
      const why = isOwnPathManager(t.pathManager) ? ` (edgeward's ${t.pathManager} runs on the kernel's userspace path manager, which this kernel lacks)` : '';
      return err(new PolicyError('unsupported', `${prefix}.pathManager`, `${prefix}.pathManager "${t.pathManager}" is not available on this kernel${why}; available: ${offered.join(', ') || '(none: no MPTCP)'}`, offered));
    }
    if (isOwnPathManager(t.pathManager) && t.mptcp === false) {
      return err(new PolicyError('invalid', `${prefix}.mptcp`, `${prefix}.pathManager "${t.pathManager}" needs MPTCP: ${prefix}.mptcp is false`));
    }
  }
  if (t.subflows !== undefined) {
    if (!Number.isInteger(t.subflows) || t.subflows < 1 || t.subflows > MAX_SUBFLOWS) {
      return err(new PolicyError('invalid', `${prefix}.subflows`, `${prefix}.subflows must be an integer 1..${MAX_SUBFLOWS} (subflows in all, the first included)`));
    }
    if (t.pathManager !== undefined && t.pathManager !== 'ndiffports') {
      return err(new PolicyError('invalid', `${prefix}.subflows`, `${prefix}.subflows applies to pathManager "ndiffports", not "${t.pathManager}"`));
    }
  }
  if (t.backup !== undefined) {
    if (!Array.isArray(t.backup) || t.backup.length > MAX_SUBFLOWS) {
      return err(new PolicyError('invalid', `${prefix}.backup`, `${prefix}.backup must be a list of at most ${MAX_SUBFLOWS} devices or addresses`));
    }
    for (const [i, b] of t.backup.entries()) {
      if (typeof b !== 'string' || !(isIP(b) !== 0 || isInterfaceName(b))) {
        return err(new PolicyError('invalid', `${prefix}.backup[${i}]`, `${prefix}.backup[${i}] "${String(b)}" is neither an IP address nor a device name (1-15 of A-Z a-z 0-9 _ . -)`));
      }
    }
    if (t.pathManager !== undefined && t.pathManager !== 'fullmesh') {
      return err(new PolicyError('invalid', `${prefix}.backup`, `${prefix}.backup needs pathManager "fullmesh" (edgeward's path manager flags the subflows it makes), not "${t.pathManager}"`));
    }
  }
  if (t.keepAlive) {
    for (const k of ['idle', 'interval', 'count'] as const) {
      const v = t.keepAlive[k];
      if (!Number.isInteger(v) || v < 1 || v > KEEPALIVE_LIMITS[k]) {
        return err(new PolicyError('invalid', `${prefix}.keepAlive.${k}`, `${prefix}.keepAlive.${k} must be an integer 1..${KEEPALIVE_LIMITS[k]}`));
      }
    }
  }
  return ok(t);
}

/** Validates a policy; its value is the policy's match identity (unique across policies). */
export function validatePolicy(input: PolicyInput): Result<string, PolicyError> {
  const m = normalizeMatch(input.match);
  if (!m.ok) return err(new PolicyError(m.error.code, m.error.field, m.error.message));
  const t = validateTransport(input.transport);
  if (!t.ok) return t;
  if (input.via !== undefined) {
    const v = validateVia(input.via);
    if (!v.ok) return v;
  }
  return ok(matchIdentity(m.value));
}

/** The value of a validation, or its PolicyError thrown. */
function orThrow<T>(r: Result<T, PolicyError>): T {
  if (!r.ok) throw r.error;
  return r.value;
}

function storeToPolicyError(e: unknown): never {
  if (e instanceof StoreError && e.code === 'conflict') throw new PolicyError('conflict', 'match', e.message);
  throw e;
}

/** Merges a policy's transport over the default's: fields the policy leaves out come from the default. */
export function mergeTransport(base: Transport, over: Transport): Transport {
  return { ...base, ...over };
}

/** A policy's decision: its transport merged over the default's, and its via. */
function decisionOf(p: Policy, defaultTransport: Transport): PolicyDecision {
  return { policy: p, transport: mergeTransport(defaultTransport, p.transport), via: p.via };
}

export interface PolicyServiceEvents {
  change: [];
}

export class PolicyService extends EventEmitter<PolicyServiceEvents> {
  private matcher = new PolicyMatcher([]);
  /** the default policy as stored, and merged over the global defaults */
  private stored: Transport = {};
  private defaultTransport: Transport = {};
  private byId = new Map<number, Policy>();
  /**
   * the decision of each policy, and of none: made once per load, not per connection (a merged
   * transport per connection cost an object spread, and a new hidden class, each time)
   */
  private decisions = new Map<Policy, PolicyDecision>();
  private noPolicy: PolicyDecision = { policy: null, transport: {}, via: undefined };

  private constructor(
    private readonly store: Store,
    private readonly base: Transport,
  ) {
    super();
  }

  /**
   * Loads the policies from the store. `base` holds the global defaults of `edgeward start`
   * (--keepalive, --no-delay): the stored default policy and then each policy override them.
   */
  static async open(store: Store, base: Transport = {}): Promise<PolicyService> {
    const s = new PolicyService(store, base);
    await s.reload();
    return s;
  }

  /** Reads the policies again from the store (another thread changed them). */
  refresh(): Promise<void> {
    return this.reload();
  }

  private async reload(): Promise<void> {
    const policies = await this.store.listPolicies();
    this.stored = await this.store.getDefaultTransport();
    this.defaultTransport = mergeTransport(this.base, this.stored);
    this.matcher = new PolicyMatcher(policies);
    this.byId = new Map(policies.map((p) => [p.id, p]));
    const transport = this.defaultTransport;
    this.decisions = new Map(policies.map((p) => [p, decisionOf(p, transport)]));
    this.noPolicy = { policy: null, transport, via: undefined };
    this.emit('change');
  }

  /** The policy and merged transport for a destination (hot path: synchronous, in memory). */
  decide(dest: Destination): PolicyDecision {
    const policy = this.matcher.match(dest);
    if (!policy) return this.noPolicy;
    return this.decisions.get(policy) ?? decisionOf(policy, this.defaultTransport);
  }

  list(): Policy[] {
    return [...this.byId.values()];
  }

  get(id: number): Policy {
    const p = this.byId.get(id);
    if (!p) throw new PolicyError('not_found', 'id', `no policy with id ${id}`);
    return p;
  }

  async create(input: PolicyInput): Promise<Policy> {
    const key = orThrow(validatePolicy(input));
    const p = await this.store.createPolicy(input, key).catch(storeToPolicyError);
    await this.reload();
    return p;
  }

  /** Creates all policies or none; an error names the index of the first bad one. */
  async createMany(inputs: readonly PolicyInput[]): Promise<Policy[]> {
    const seen = new Map<string, number>();
    const rows = inputs.map((input, index) => {
      const v = validatePolicy(input);
      if (!v.ok) {
        const e = v.error;
        throw new PolicyError(e.code, `policies[${index}].${e.field ?? ''}`, `policies[${index}]: ${e.message}`, e.available);
      }
      const key = v.value;
      const dup = seen.get(key);
      if (dup !== undefined) throw new PolicyError('conflict', `policies[${index}].match`, `policies[${index}]: same match as policies[${dup}]`);
      seen.set(key, index);
      return { input, matchKey: key };
    });
    const created = await this.store.createPolicies(rows).catch(storeToPolicyError);
    await this.reload();
    return created;
  }

  async replace(id: number, input: PolicyInput): Promise<Policy> {
    const key = orThrow(validatePolicy(input));
    const p = await this.store.replacePolicy(id, input, key).catch(storeToPolicyError);
    if (!p) throw new PolicyError('not_found', 'id', `no policy with id ${id}`);
    await this.reload();
    return p;
  }

  /** JSON merge patch (RFC 7396) of match/transport/comment; null removes a field. */
  async patch(id: number, patch: { match?: Partial<Record<keyof PolicyMatch, unknown>>; transport?: Partial<Record<keyof Transport, unknown>>; via?: string | null; comment?: string | null }): Promise<Policy> {
    const current = this.get(id);
    const next: PolicyInput = {
      match: applyMerge(current.match, patch.match) as PolicyMatch,
      transport: applyMerge(current.transport, patch.transport) as Transport,
    };
    const via = patch.via === undefined ? current.via : patch.via;
    if (via !== null && via !== undefined) next.via = via;
    const comment = patch.comment === undefined ? current.comment : patch.comment;
    if (comment !== null && comment !== undefined) next.comment = comment;
    return this.replace(id, next);
  }

  async remove(id: number): Promise<void> {
    if (!(await this.store.deletePolicy(id))) throw new PolicyError('not_found', 'id', `no policy with id ${id}`);
    await this.reload();
  }

  /** The stored default transport (without the global defaults of the command line). */
  getDefault(): Transport {
    return this.stored;
  }

  async setDefault(t: Transport): Promise<Transport> {
    orThrow(validateTransport(t));
    await this.store.setDefaultTransport(t);
    await this.reload();
    return t;
  }
}

function applyMerge(base: object, patch: object | undefined): object {
  if (patch === undefined) return base;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return out;
}

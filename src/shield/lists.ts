// The shield's blocklist and allowlist as an operator edits them: hand-made entries (an address or
// block, an optional time to live and reason) are kept in the store, so they survive a restart, and
// put into the kernel's sets (manual4/6, allow4/6); what the rate meters add lives in the kernel
// only (block4/6) and expires by itself. Listing shows both, with the time left; removing an address
// takes it off the hand-made list and out of the meters' blocklist.
import { EdgewardError } from '../core/errors.js';
import { addSetElements, deleteSetElements, listSetElements } from '../kernel/nft.js';
import type { Logger } from '../log/logger.js';
import { cidrContains, formatCidr, parseCidr, parseIp, type Cidr } from '../net/address.js';
import type { ShieldEntry, Store } from '../store/store.js';
import type { ShieldSpec } from './config.js';
import { nftElement, SETS, SHIELD_TABLE } from './rules.js';

export type ShieldListName = 'block' | 'allow';

export interface ListEntry {
  /** canonical "addr/prefix" */
  address: string;
  /** manual: added by hand (kept in the store); meter: a rate meter caught it; config: --shield-allow */
  source: 'manual' | 'meter' | 'config';
  reason: string | null;
  /** seconds until it ends; null: until removed */
  secondsLeft: number | null;
  createdAt: string | null;
}

export class ShieldListError extends EdgewardError<'invalid_address' | 'management' | 'from_config' | 'invalid_ttl'> {}

/** The longest time to live an entry may have: 30 days. */
export const MAX_TTL_S = 30 * 86_400;

const overlaps = (a: Cidr, b: Cidr): boolean => a.family === b.family && (cidrContains(a, b) || cidrContains(b, a));

function parse(text: string): Cidr {
  const c = parseCidr(text);
  if (!c.ok) throw new ShieldListError('invalid_address', `address "${text}": ${c.error.message}`);
  return c.value;
}

export class ShieldLists {
  /** the hand-made allowlist as the proxy asks it (by canonical cidr): the block and when it ends (ms; null: never) */
  private readonly allowed = new Map<string, { cidr: Cidr; until: number | null }>();

  constructor(
    private readonly store: Store,
    private readonly spec: ShieldSpec,
    private readonly logger: Logger,
  ) {}

  private set(list: ShieldListName, family: 4 | 6): string {
    return list === 'block' ? SETS.manual[family] : SETS.allow[family];
  }

  /** Puts the stored entries that have not expired into the kernel's sets (after the table is applied). */
  async load(): Promise<number> {
    const entries = await this.store.listShieldEntries();
    for (const e of entries) await this.toKernel(e);
    return entries.length;
  }

  /** Whether a source is a management source or on the allowlist (the settings' or by hand): the proxy serves it first. */
  isPreferred(address: string): boolean {
    const ip = parseIp(address);
    if (!ip) return false;
    const within = (c: Cidr): boolean => cidrContains(c, ip);
    if (this.spec.management.some(within) || this.spec.allow.some(within)) return true;
    const now = Date.now();
    for (const [key, a] of this.allowed) {
      if (a.until !== null && a.until <= now) this.allowed.delete(key);
      else if (within(a.cidr)) return true;
    }
    return false;
  }

  private async toKernel(e: ShieldEntry): Promise<void> {
    const c = parse(e.cidr);
    if (e.list === 'allow') this.allowed.set(formatCidr(c), { cidr: c, until: e.expiresAt === null ? null : Date.parse(e.expiresAt) });
    const left = e.expiresAt === null ? undefined : Math.max(1, Math.round((Date.parse(e.expiresAt) - Date.now()) / 1000));
    const set = this.set(e.list, c.family);
    // "add" would keep an element's old timeout: take it out first (false when it was not there)
    await deleteSetElements(SHIELD_TABLE, set, [nftElement(c)]);
    await addSetElements(SHIELD_TABLE, set, [{ value: nftElement(c), ...(left !== undefined ? { timeoutS: left } : {}) }]);
  }

  /** Adds (or replaces) a hand-made entry; throws ShieldListError for a client's mistake. */
  async add(list: ShieldListName, address: string, ttlS: number | null, reason: string | null): Promise<ListEntry> {
    const c = parse(address);
    if (ttlS !== null && (!Number.isInteger(ttlS) || ttlS < 1 || ttlS > MAX_TTL_S)) throw new ShieldListError('invalid_ttl', `ttl must be 1..${MAX_TTL_S} seconds, got ${ttlS}`);
    if (list === 'block') {
      const m = this.spec.management.find((x) => overlaps(x, c));
      if (m) throw new ShieldListError('management', `${formatCidr(c)} overlaps the management sources (${formatCidr(m)}), which are never blocked`);
    }
    const entry = await this.store.putShieldEntry({ list, cidr: formatCidr(c), reason, expiresAt: ttlS === null ? null : new Date(Date.now() + ttlS * 1000).toISOString() });
    await this.toKernel(entry);
    this.logger.info(`shield: ${list === 'block' ? 'blocked' : 'allowed'} by hand`, { address: entry.cidr, ttl: ttlS, reason });
    return { address: entry.cidr, source: 'manual', reason, secondsLeft: ttlS, createdAt: entry.createdAt };
  }

  /** Removes an address from the hand-made list (and, for the blocklist, from the meters'); false when it was on neither. */
  async remove(list: ShieldListName, address: string): Promise<boolean> {
    const c = parse(address);
    if (list === 'allow' && this.spec.allow.some((x) => formatCidr(x) === formatCidr(c))) {
      throw new ShieldListError('from_config', `${formatCidr(c)} is on the allowlist from --shield-allow; change the settings to remove it`);
    }
    const stored = await this.store.deleteShieldEntry(list, formatCidr(c));
    if (list === 'allow') this.allowed.delete(formatCidr(c));
    const inSet = await deleteSetElements(SHIELD_TABLE, this.set(list, c.family), [nftElement(c)]);
    const inMeters = list === 'block' ? await deleteSetElements(SHIELD_TABLE, SETS.block[c.family], [nftElement(c)]) : false;
    if (stored || inSet || inMeters) this.logger.info(`shield: ${list === 'block' ? 'unblocked' : 'taken off the allowlist'}`, { address: formatCidr(c) });
    return stored || inSet || inMeters;
  }

  /** The entries of a list: hand-made ones, and the meters' (block) or the settings' (allow). */
  async list(list: ShieldListName): Promise<ListEntry[]> {
    const out: ListEntry[] = (await this.store.listShieldEntries())
      .filter((e) => e.list === list)
      .map((e) => ({ address: e.cidr, source: 'manual', reason: e.reason, secondsLeft: e.expiresAt === null ? null : Math.max(0, Math.round((Date.parse(e.expiresAt) - Date.now()) / 1000)), createdAt: e.createdAt }));
    if (list === 'allow') {
      for (const c of this.spec.allow) out.push({ address: formatCidr(c), source: 'config', reason: '--shield-allow', secondsLeft: null, createdAt: null });
      return out;
    }
    for (const f of [4, 6] as const) {
      for (const e of (await listSetElements(SHIELD_TABLE, SETS.block[f])) ?? []) {
        const c = parseCidr(e.value);
        if (!c.ok) continue;
        out.push({ address: formatCidr(c.value), source: 'meter', reason: 'over a per-source rate', secondsLeft: e.expiresS ?? null, createdAt: null });
      }
    }
    return out;
  }
}

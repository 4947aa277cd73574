// The original system's policy formats, translated to edgeward policies: the Flask script's JSON body
// {"enable","ip","path_manager","scheduler"} and its flat file of "ip,enable,scheduler,path_manager,"
// lines closed by ".". The original ran on the out-of-tree MPTCP kernel (multipath-tcp.org), whose
// path manager names differ from upstream Linux; this is where the two vocabularies meet.
import { matchIdentity, normalizeMatch } from './matcher.js';
import type { Policy, PolicyInput, PolicyMatch } from './types.js';

/** One destination as the original system wrote it. */
export interface LegacyPolicy {
  /** "1" = MPTCP on, "0" = off (numbers 0/1 accepted too) */
  enable: string | number;
  /** host name, IP literal, or CIDR block (with "/") */
  ip: string;
  scheduler?: string;
  path_manager?: string;
}

export interface LegacyError {
  /** invalid: malformed; unsupported: well-formed but upstream Linux has no equivalent */
  code: 'invalid' | 'unsupported';
  /** the legacy field at fault: ip, enable, scheduler or path_manager */
  field: keyof LegacyPolicy;
  message: string;
}

export type LegacyTranslation = { ok: true; input: PolicyInput; notes: string[] } | { ok: false; error: LegacyError };

/** Out-of-tree path managers: what each becomes upstream, or why there is nothing to become. */
const PATH_MANAGERS: Record<string, { upstream: string; note?: string } | { unsupported: string }> = {
  default: {
    upstream: 'kernel',
    note: 'path_manager "default" of the out-of-tree MPTCP kernel is "kernel" upstream: the in-kernel path manager, configured with `ip mptcp endpoint` and `ip mptcp limits`',
  },
  fullmesh: {
    upstream: 'kernel',
    note: 'path_manager "fullmesh" became "kernel": upstream has no fullmesh path manager; fullmesh is a flag of an endpoint of the in-kernel path manager (`ip mptcp endpoint add ADDR dev DEV subflow fullmesh`)',
  },
  kernel: { upstream: 'kernel' },
  userspace: { upstream: 'userspace' },
  ndiffports: {
    upstream: 'ndiffports',
    note: 'path_manager "ndiffports" is edgeward\'s own path manager (on the kernel\'s userspace one): 2 subflows over the same pair of addresses unless the policy\'s transport.subflows says otherwise',
  },
  binder: {
    unsupported: 'path_manager "binder" (subflows through gateways chosen by loose source routing) cannot run on a stock kernel: upstream Linux has no loose source routing for MPTCP subflows; the path managers here are "kernel", "userspace", "ndiffports" and "fullmesh"',
  },
};

/** Translates one legacy entry into a policy, with notes on what changed on the way. */
export function translateLegacy(l: LegacyPolicy): LegacyTranslation {
  const fail = (code: LegacyError['code'], field: LegacyError['field'], message: string): LegacyTranslation => ({ ok: false, error: { code, field, message } });
  const enable = String(l.enable);
  if (enable !== '0' && enable !== '1') return fail('invalid', 'enable', `enable must be 0 or 1, not "${enable}"`);
  const mptcp = enable === '1';

  if (l.ip === '') return fail('invalid', 'ip', 'ip is empty: expected a host name, IP address or CIDR block');
  const match: PolicyMatch = l.ip.includes('/') ? { cidr: l.ip } : { host: l.ip };
  const normalized = normalizeMatch(match);
  if (!normalized.ok) {
    return fail('invalid', 'ip', `ip "${l.ip}" is not a valid ${match.cidr !== undefined ? 'CIDR block' : 'host name or IP address'} (${normalized.error.message})`);
  }

  const notes: string[] = [];
  const scheduler = l.scheduler === '' ? undefined : l.scheduler;
  const pathManager = l.path_manager === '' ? undefined : l.path_manager;
  const input: PolicyInput = { match, transport: { mptcp } };
  if (!mptcp) {
    // the original ignored both for a destination without MPTCP; rejecting them here would refuse files it accepted
    if (scheduler !== undefined || pathManager !== undefined) notes.push('scheduler and path_manager ignored: MPTCP is off (enable 0) for this destination');
    return { ok: true, input, notes };
  }
  if (scheduler !== undefined) input.transport.scheduler = scheduler;
  if (pathManager !== undefined) {
    const known = PATH_MANAGERS[pathManager];
    if (known && 'unsupported' in known) return fail('unsupported', 'path_manager', known.unsupported);
    if (known) {
      input.transport.pathManager = known.upstream;
      if (known.note) notes.push(known.note);
    } else {
      input.transport.pathManager = pathManager; // checked against the kernel's list by the policy service
    }
  }
  return { ok: true, input, notes };
}

/** true when a request body is in the legacy form (it has "ip" or "enable"). */
export function looksLegacy(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Array.isArray(body) && ('ip' in body || 'enable' in body);
}

/** Maps a policy field back to the legacy field it came from (for error messages on legacy input). */
export function legacyFieldOf(policyField: string | null): keyof LegacyPolicy | null {
  if (policyField === null) return null;
  if (policyField === 'match' || policyField.startsWith('match.')) return 'ip';
  if (policyField === 'transport.scheduler') return 'scheduler';
  if (policyField === 'transport.pathManager') return 'path_manager';
  if (policyField === 'transport.mptcp') return 'enable';
  return null;
}

export interface LegacyFileEntry {
  /** 1-based line number in the file */
  line: number;
  input: PolicyInput;
  notes: string[];
}

export interface LegacyFileResult {
  policies: LegacyFileEntry[];
  errors: Array<{ line: number; message: string }>;
}

/** The most entries one file may hold (the API's bulk limit). */
export const MAX_LEGACY_ENTRIES = 10000;

/**
 * Parses the original system's flat file: one `ip,0|1,scheduler,path_manager,` line per destination
 * (trailing comma optional, whitespace and CRLF tolerated, blank lines ignored), closed by a line
 * holding only ".". Every bad line is reported; a caller should import nothing unless `errors` is empty.
 */
export function parseLegacyFile(text: string): LegacyFileResult {
  const policies: LegacyFileEntry[] = [];
  const errors: Array<{ line: number; message: string }> = [];
  const lines = text.split(/\r\n|\n|\r/);
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop(); // the final newline ends the last line
  let closedAt = 0;
  for (let i = 0; i < lines.length; i++) {
    const line = i + 1;
    const content = lines[i]!.trim();
    if (closedAt > 0) {
      if (content !== '') errors.push({ line, message: `unexpected content after the closing "." on line ${closedAt}` });
      continue;
    }
    if (content === '') continue;
    if (content === '.') {
      closedAt = line;
      continue;
    }
    const fields = content.split(',').map((f) => f.trim());
    if (fields.length >= 5 && fields[fields.length - 1] === '') fields.pop(); // the trailing comma
    if (fields.length !== 4) {
      errors.push({ line, message: `expected 4 comma-separated fields "ip,enable,scheduler,path_manager," but found ${fields.length}` });
      continue;
    }
    const [ip, enable, scheduler, pathManager] = fields as [string, string, string, string];
    const t = translateLegacy({ ip, enable, scheduler, path_manager: pathManager });
    if (!t.ok) {
      errors.push({ line, message: t.error.message });
      continue;
    }
    if (policies.length === MAX_LEGACY_ENTRIES) {
      errors.push({ line, message: `too many entries: at most ${MAX_LEGACY_ENTRIES} per file` });
      break;
    }
    policies.push({ line, input: t.input, notes: t.notes });
  }
  if (closedAt === 0 && errors.every((e) => !e.message.startsWith('too many'))) {
    errors.push({ line: Math.max(1, lines.length), message: 'no closing "." line: the file looks truncated' });
  }
  return { policies, errors };
}

/** The entries of an import whose match a stored policy has already: their lines and that policy's id. */
export function storedClashes(stored: readonly Policy[], entries: ReadonlyArray<{ line: number; input: PolicyInput }>): Array<{ line: number; id: number }> {
  const identity = (m: PolicyMatch): string | null => {
    const n = normalizeMatch(m);
    return n.ok ? matchIdentity(n.value) : null;
  };
  const byIdentity = new Map<string, number>();
  for (const p of stored) {
    const key = identity(p.match);
    if (key !== null) byIdentity.set(key, p.id);
  }
  const out: Array<{ line: number; id: number }> = [];
  for (const e of entries) {
    const key = identity(e.input.match);
    const id = key === null ? undefined : byIdentity.get(key);
    if (id !== undefined) out.push({ line: e.line, id });
  }
  return out;
}

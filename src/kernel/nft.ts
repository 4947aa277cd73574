// An nftables table that edgeward owns outright: applied as one `nft -f -` transaction that declares,
// deletes and redefines it (atomic, and idempotent: applying the same body twice leaves one table),
// removed the same way (a no-op when it is absent), inspected (exists? counters?). Nothing outside
// the named table is ever touched: the body is checked to stay inside the table's braces. The TPROXY
// table of the intercept service uses it, and so will the shield's.
import { EdgewardError } from '../core/errors.js';
import { type CommandRunner, defaultRunner, deniedPermission, describeArgv, failureDetail, type RunResult, succeeded } from './command.js';

export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';

/** A table edgeward owns, by family and name. */
export interface NftTable {
  family: NftFamily;
  name: string;
}

export type NftErrorCode =
  /** the family or name is not one nft accepts */
  | 'invalid_table'
  /** the body would reach outside the table (unbalanced braces) */
  | 'invalid_body'
  | 'nft_missing'
  | 'permission'
  /** the kernel lacks what the ruleset needs (nf_tables or one of its expression modules) */
  | 'kernel_unsupported'
  | 'timeout'
  | 'nft_failed';

/** An nft operation that failed; `message` says which command and what to do about it. */
export class NftError extends EdgewardError<NftErrorCode> {
  constructor(
    code: NftErrorCode,
    message: string,
    /** the command as a shell line ("nft -f -"), when one ran */
    readonly command?: string,
    /** what nft said, in one line */
    readonly detail?: string,
  ) {
    super(code, message);
  }
}

const FAMILIES: readonly NftFamily[] = ['ip', 'ip6', 'inet', 'arp', 'bridge', 'netdev'];
/** nft identifiers; NFT_NAME_MAXLEN is 256 including the terminating NUL */
const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;

function checkTable(t: NftTable): string {
  if (!FAMILIES.includes(t.family)) throw new NftError('invalid_table', `nft family "${String(t.family)}" is not one of ${FAMILIES.join(', ')}`);
  if (typeof t.name !== 'string' || !TABLE_NAME.test(t.name)) throw new NftError('invalid_table', `"${String(t.name)}" is not an nft table name (a letter or "_", then letters, digits, "_")`);
  return `${t.family} ${t.name}`;
}

/** Throws unless every "{" of `lines` is closed inside them and no "}" closes anything outside (quoted text aside). */
function checkBody(lines: readonly string[]): void {
  let depth = 0;
  for (const [i, line] of lines.entries()) {
    let quoted = false;
    for (const ch of line) {
      if (ch === '"') quoted = !quoted;
      if (quoted || ch === '"') continue;
      if (ch === '#') break; // a comment runs to the end of the line
      if (ch === '{') depth++;
      if (ch === '}' && --depth < 0) throw new NftError('invalid_body', `table body line ${i + 1} closes a brace it did not open: "${line.trim()}"`);
    }
  }
  if (depth !== 0) throw new NftError('invalid_body', `table body leaves ${depth} brace(s) open`);
}

/**
 * The nft script that replaces `table` with one holding `body` (lines inside the table's braces):
 * declare, delete, define, so `nft -f` replaces any earlier version in one transaction. `comments`
 * become leading "#" lines.
 */
export function renderTableScript(table: NftTable, body: readonly string[], comments: readonly string[] = []): string {
  const ref = checkTable(table);
  checkBody(body);
  const head = comments.flatMap((c) => c.split('\n')).map((c) => `# ${c}`);
  return `${[...head, `table ${ref} {}`, `delete table ${ref}`, `table ${ref} {`, ...body, '}'].join('\n')}\n`;
}

/** The nft script that deletes `table` if it is there, and is a no-op otherwise, in one transaction. */
export function renderTableRemoval(table: NftTable): string {
  const ref = checkTable(table);
  return `table ${ref} {}\ndelete table ${ref}\n`;
}

const NOT_FOUND = /No such file or directory/i;
/** what nft says of a table, set or element that is not there */
const ABSENT = /No such file or directory|element does not exist/i;

/** Turns a failed nft command into an NftError that says what to do: the one place this mapping lives. */
export function nftFailure(argv: readonly string[], r: RunResult): NftError {
  const cmd = describeArgv(argv);
  const detail = failureDetail(r);
  if (r.error === 'ENOENT') return new NftError('nft_missing', 'nft not found: install nftables (e.g. apt install nftables)', cmd, detail);
  if (r.error === 'ETIMEDOUT') return new NftError('timeout', `${cmd}: did not finish in time`, cmd, detail);
  if (r.error !== undefined) return new NftError('nft_failed', `${cmd}: cannot run it (${r.error}): ${detail}`, cmd, detail);
  if (deniedPermission(r)) return new NftError('permission', `${cmd}: ${detail}: changing nftables needs root (CAP_NET_ADMIN)`, cmd, detail);
  if (NOT_FOUND.test(r.stderr) || /Operation not supported|not supported/i.test(r.stderr)) {
    return new NftError('kernel_unsupported', `${cmd}: the kernel refused the ruleset (${detail}): it lacks a module the ruleset needs, or does not allow a statement where it is used`, cmd, detail);
  }
  return new NftError('nft_failed', `${cmd}: ${detail}`, cmd, detail);
}

async function nft(run: CommandRunner, args: readonly string[], input?: string): Promise<RunResult> {
  const argv = ['nft', ...args];
  const r = await run(argv, input);
  if (!succeeded(r)) throw nftFailure(argv, r);
  return r;
}

/** Loads `table` with `body` in one transaction, replacing whatever version of it was there. */
export async function applyTable(table: NftTable, body: readonly string[], opts: { comments?: readonly string[]; run?: CommandRunner } = {}): Promise<void> {
  await nft(opts.run ?? defaultRunner, ['-f', '-'], renderTableScript(table, body, opts.comments));
}

/** Runs an nft command on something that may be absent: its result, or null when nft says it is not there. */
async function nftUnlessAbsent(run: CommandRunner, argv: string[]): Promise<RunResult | null> {
  const r = await run(argv);
  if (succeeded(r)) return r;
  if (r.error === undefined && ABSENT.test(r.stderr)) return null;
  throw nftFailure(argv, r);
}

/** Replaces the rules of `chain` in `table` with `rules` (lines of a chain body) in one transaction; sets, counters and other chains stay. */
export async function replaceChain(table: NftTable, chain: string, rules: readonly string[], run: CommandRunner = defaultRunner): Promise<void> {
  const ref = checkTable(table);
  checkSet(chain);
  checkBody(rules);
  await nft(run, ['-f', '-'], `flush chain ${ref} ${chain}\ntable ${ref} {\n  chain ${chain} {\n${rules.join('\n')}\n  }\n}\n`);
}

/** Whether `table` is loaded. */
export async function tableExists(table: NftTable, run: CommandRunner = defaultRunner): Promise<boolean> {
  return (await nftUnlessAbsent(run, ['nft', 'list', 'table', ...checkTable(table).split(' ')])) !== null;
}

/** Deletes `table` when it is loaded; resolves to whether there was one to delete. */
export async function removeTable(table: NftTable, run: CommandRunner = defaultRunner): Promise<boolean> {
  if (!(await tableExists(table, run))) return false;
  await nft(run, ['-f', '-'], renderTableRemoval(table));
  return true;
}

/** A named counter object of the table ("counter NAME { }"). */
export interface NftNamedCounter {
  name: string;
  packets: number;
  bytes: number;
  comment?: string;
}

/** The anonymous counter of a rule ("... counter ..."), identified by chain and handle (and its comment). */
export interface NftRuleCounter {
  chain: string;
  handle: number;
  packets: number;
  bytes: number;
  comment?: string;
}

export interface NftCounters {
  named: NftNamedCounter[];
  rules: NftRuleCounter[];
}

interface NftJson {
  nftables?: Array<Record<string, unknown>>;
}

const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const obj = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/** Runs an `nft -j list ...` command: its JSON, or null when what it lists is not loaded. */
async function listJson(run: CommandRunner, argv: string[]): Promise<NftJson | null> {
  const r = await nftUnlessAbsent(run, argv);
  if (!r) return null;
  try {
    return JSON.parse(r.stdout) as NftJson;
  } catch {
    throw new NftError('nft_failed', `${describeArgv(argv)}: unexpected output (not JSON): ${r.stdout.slice(0, 200)}`, describeArgv(argv));
  }
}

/**
 * The counters of `table` in one snapshot (`nft -j -t list table`, set elements left out): its named
 * counters and the anonymous counter of each rule that has one. null when the table is not loaded.
 */
export async function listCounters(table: NftTable, run: CommandRunner = defaultRunner): Promise<NftCounters | null> {
  const argv = ['nft', '-j', '-t', 'list', 'table', ...checkTable(table).split(' ')];
  const doc = await listJson(run, argv);
  if (!doc) return null;
  const out: NftCounters = { named: [], rules: [] };
  for (const item of Array.isArray(doc.nftables) ? doc.nftables : []) {
    const counter = obj(item.counter);
    if (counter && str(counter.name) !== undefined) {
      const c: NftNamedCounter = { name: str(counter.name)!, packets: num(counter.packets), bytes: num(counter.bytes) };
      if (str(counter.comment) !== undefined) c.comment = str(counter.comment);
      out.named.push(c);
      continue;
    }
    const rule = obj(item.rule);
    if (!rule || !Array.isArray(rule.expr)) continue;
    for (const e of rule.expr as unknown[]) {
      const anon = obj(obj(e)?.counter);
      if (!anon) continue; // `counter name "x"` is a string here, counted among the named ones
      const c: NftRuleCounter = { chain: str(rule.chain) ?? '', handle: num(rule.handle), packets: num(anon.packets), bytes: num(anon.bytes) };
      if (str(rule.comment) !== undefined) c.comment = str(rule.comment);
      out.rules.push(c);
    }
  }
  return out;
}

/** An element of a set: an address or "addr/prefix", with its timeout and what is left of it (seconds). */
export interface NftSetElement {
  value: string;
  timeoutS?: number;
  expiresS?: number;
  /** packets counted for it, in a set declared with `counter` */
  packets?: number;
}

/** A set's (or chain's) name, checked like a table's (it reaches the nft command line). */
function checkSet(set: string): string {
  if (!TABLE_NAME.test(set)) throw new NftError('invalid_table', `"${set}" is not an nft set name`);
  return set;
}

/** A set element's text: addresses and prefixes only, so nothing else reaches the nft command line. */
function checkElement(value: string): string {
  if (!/^[0-9A-Fa-f.:]+(\/\d{1,3})?$/.test(value)) throw new NftError('invalid_body', `"${value}" is not an address or prefix`);
  return value;
}

/** Adds elements to `set` of `table` in one command (an element already there keeps its old timeout: delete it first). */
export async function addSetElements(table: NftTable, set: string, elements: readonly NftSetElement[], run: CommandRunner = defaultRunner): Promise<void> {
  if (elements.length === 0) return;
  const items = elements.map((e) => `${checkElement(e.value)}${e.timeoutS !== undefined ? ` timeout ${Math.max(1, Math.round(e.timeoutS))}s` : ''}`);
  await nft(run, ['-f', '-'], `add element ${checkTable(table)} ${checkSet(set)} { ${items.join(', ')} }\n`);
}

/** Deletes elements from `set`; resolves to false when one of them was not there (nothing is deleted then). */
export async function deleteSetElements(table: NftTable, set: string, values: readonly string[], run: CommandRunner = defaultRunner): Promise<boolean> {
  if (values.length === 0) return true;
  return (await nftUnlessAbsent(run, ['nft', 'delete', 'element', ...checkTable(table).split(' '), checkSet(set), `{ ${values.map(checkElement).join(', ')} }`])) !== null;
}

function elementValue(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  const prefix = obj(obj(v)?.prefix);
  if (prefix && typeof prefix.addr === 'string') return `${prefix.addr}/${num(prefix.len)}`;
  return undefined;
}

/** The elements of `set` (`nft -j list set`); null when the table or set is not loaded. */
export async function listSetElements(table: NftTable, set: string, run: CommandRunner = defaultRunner): Promise<NftSetElement[] | null> {
  const argv = ['nft', '-j', 'list', 'set', ...checkTable(table).split(' '), checkSet(set)];
  const doc = await listJson(run, argv);
  if (!doc) return null;
  const out: NftSetElement[] = [];
  for (const item of Array.isArray(doc.nftables) ? doc.nftables : []) {
    const s = obj(item.set);
    if (!s || !Array.isArray(s.elem)) continue;
    for (const e of s.elem as unknown[]) {
      const wrapped = obj(obj(e)?.elem);
      const value = elementValue(wrapped ? wrapped.val : e);
      if (value === undefined) continue;
      const el: NftSetElement = { value };
      if (wrapped && typeof wrapped.timeout === 'number') el.timeoutS = wrapped.timeout;
      if (wrapped && typeof wrapped.expires === 'number') el.expiresS = wrapped.expires;
      const counter = obj(wrapped?.counter);
      if (counter && typeof counter.packets === 'number') el.packets = counter.packets;
      out.push(el);
    }
  }
  return out;
}

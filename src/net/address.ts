// IP addresses, CIDR blocks and host names: parsing and matching, shared by the policy matcher and
// the SOCKS access lists.
import { isIPv4, isIPv6 } from 'node:net';
import { EdgewardError, type Issue } from '../core/errors.js';
import { err, ok, type Result } from '../core/result.js';

export interface IpAddress {
  family: 4 | 6;
  bytes: Uint8Array;
}

export interface Cidr {
  family: 4 | 6;
  bytes: Uint8Array;
  prefix: number;
}

/**
 * Whether `s` is a dotted-quad IPv4 address, as node:net's isIPv4 decides (four decimal parts of
 * 0-255 without leading zeros), without its regular expression: this runs several times for
 * every proxied connection.
 */
export function isIPv4Text(s: string): boolean {
  const n = s.length;
  if (n < 7 || n > 15) return false;
  let parts = 0;
  let digits = 0;
  let value = 0;
  let first = 0;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? s.charCodeAt(i) : 46; // the end closes the last part like a dot
    if (c === 46) {
      if (digits === 0 || (digits > 1 && first === 48) || value > 255) return false;
      parts++;
      digits = 0;
      value = 0;
      continue;
    }
    if (c < 48 || c > 57 || digits === 3) return false;
    if (digits === 0) first = c;
    value = value * 10 + (c - 48);
    digits++;
  }
  return parts === 4;
}

/** Writes the four bytes of a dotted quad (isIPv4Text said it is one) into out[at..at+3]. */
export function writeV4(s: string, out: Uint8Array, at: number): void {
  let value = 0;
  let i = at;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c === 46) {
      out[i++] = value;
      value = 0;
    } else value = value * 10 + (c - 48);
  }
  out[i] = value;
}

function parseV4(s: string): Uint8Array {
  const out = new Uint8Array(4);
  writeV4(s, out, 0);
  return out;
}

function parseV6(s: string): Uint8Array {
  const out = new Uint8Array(16);
  let text = s;
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  // an embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = parseV4(tail);
    text = `${text.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const headParts = head ? head.split(':') : [];
  const restParts = rest !== undefined && rest !== '' ? rest.split(':') : [];
  const groups: number[] = headParts.map((h) => parseInt(h, 16));
  if (rest !== undefined) {
    const fill = 8 - headParts.length - restParts.length;
    for (let i = 0; i < fill; i++) groups.push(0);
  }
  for (const r of restParts) groups.push(parseInt(r, 16));
  for (let i = 0; i < 8; i++) {
    out[i * 2] = (groups[i]! >> 8) & 0xff;
    out[i * 2 + 1] = groups[i]! & 0xff;
  }
  return out;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** Parses an IP literal; IPv4-mapped IPv6 (::ffff:a.b.c.d) comes back as IPv4. null if not an IP. */
export function parseIp(s: string): IpAddress | null {
  if (isIPv4Text(s)) return { family: 4, bytes: parseV4(s) };
  const bare = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  if (!isIPv6(bare)) return null;
  const bytes = parseV6(bare);
  if (V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b)) return { family: 4, bytes: bytes.slice(12) };
  return { family: 6, bytes };
}

/** A Linux network interface name: 1-15 (IFNAMSIZ - 1) of A-Z a-z 0-9 _ . - */
export function isInterfaceName(s: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(s);
}

/** Canonical text of an address (IPv6 compressed, lower case). */
export function formatIp(ip: IpAddress): string {
  const b = ip.bytes;
  if (ip.family === 4) return `${b[0]}.${b[1]}.${b[2]}.${b[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((ip.bytes[i]! << 8) | ip.bytes[i + 1]!);
  // compress the longest run of zero groups (RFC 5952)
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export type CidrIssue = Issue<'invalid_address' | 'invalid_prefix'>;

/**
 * An address as a socket reports it, with an IPv4-mapped IPv6 address (a dual-stack socket's view of
 * an IPv4 peer) made IPv4. Cheap enough for every datagram: nothing is parsed unless it is mapped.
 */
export function canonicalIp(ip: string): string {
  if (ip.length > 7 && ip.charCodeAt(0) === 58 && /^::ffff:/i.test(ip) && isIPv4Text(ip.slice(7))) return ip.slice(7);
  return ip;
}

/** "a.b.c.d:PORT", or "[v6]:PORT". */
export function formatHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Parses "a.b.c.d/n", "v6/n", or a bare address (a full-length block). */
export function parseCidr(s: string): Result<Cidr, CidrIssue> {
  const slash = s.indexOf('/');
  const addrText = slash >= 0 ? s.slice(0, slash) : s;
  const ip = parseIp(addrText);
  if (!ip) return err({ code: 'invalid_address', field: null, message: `"${addrText}" is not an IPv4 or IPv6 address` });
  const textMax = isIPv4(addrText) ? 32 : 128;
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = s.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > textMax) return err({ code: 'invalid_prefix', field: null, message: `prefix length "/${p}" must be 0..${textMax} for IPv${textMax === 32 ? 4 : 6}` });
    // an IPv4-mapped v6 block (::ffff:a.b.c.d/n) is narrowed to its IPv4 part
    prefix = Math.max(0, Number(p) - (textMax - max));
  }
  const bytes = ip.bytes.slice();
  for (let bit = prefix; bit < max; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return ok({ family: ip.family, bytes, prefix });
}

/** Canonical "addr/prefix" text of a block. */
export function formatCidr(c: Cidr): string {
  return `${formatIp(c)}/${c.prefix}`;
}

/** true when `ip` lies inside `block`. */
export function cidrContains(block: Cidr, ip: IpAddress): boolean {
  if (block.family !== ip.family) return false;
  const full = block.prefix >> 3;
  for (let i = 0; i < full; i++) if (block.bytes[i] !== ip.bytes[i]) return false;
  const rem = block.prefix & 7;
  if (rem === 0) return true;
  const mask = (0xff << (8 - rem)) & 0xff;
  return (block.bytes[full]! & mask) === (ip.bytes[full]! & mask);
}

/** true when `ip` is a loopback address (127/8, ::1). */
export function isLoopback(ip: IpAddress): boolean {
  if (ip.family === 4) return ip.bytes[0] === 127;
  return ip.bytes.every((b, i) => (i === 15 ? b === 1 : b === 0));
}

/** true when `ip` is 0.0.0.0 or :: (or not an address at all). */
export function isUnspecified(ip: string): boolean {
  const p = parseIp(ip);
  return !p || p.bytes.every((b) => b === 0);
}

/** true when both texts are the same address (IPv4-mapped IPv6 equals its IPv4 form). */
export function sameIp(a: string, b: string): boolean {
  if (a === b) return true;
  const x = parseIp(a);
  const y = parseIp(b);
  return !!x && !!y && x.family === y.family && x.bytes.every((v, i) => v === y.bytes[i]);
}

/** A bad entry in a list of CIDR blocks; the message names the setting and the entry. */
export class CidrListError extends EdgewardError<CidrIssue['code']> {
  constructor(
    issue: CidrIssue,
    readonly field: string,
    readonly entry: string,
  ) {
    super(issue.code, `${field}: "${entry}": ${issue.message}`);
  }
}

/** Parses every entry; throws a CidrListError naming the setting `what` and the bad entry. */
export function parseCidrs(entries: readonly string[], what: string): Cidr[] {
  return entries.map((e) => {
    const c = parseCidr(e);
    if (!c.ok) throw new CidrListError(c.error, what, e);
    return c.value;
  });
}

/** A list of CIDR blocks, answering "is this address inside any of them". */
export class CidrList {
  private readonly blocks: Cidr[];
  constructor(blocks: Cidr[]) {
    this.blocks = blocks;
  }
  /** Builds a list from text; throws a CidrListError naming the setting `what` and the bad entry. */
  static parse(entries: readonly string[], what: string): CidrList {
    return new CidrList(parseCidrs(entries, what));
  }
  get size(): number {
    return this.blocks.length;
  }
  contains(ip: IpAddress): boolean {
    for (const b of this.blocks) if (cidrContains(b, ip)) return true;
    return false;
  }
}

const LABEL = /^(?!-)[a-z0-9_-]{1,63}(?<!-)$/;

/** Normalizes a DNS name (lower case, no trailing dot); null when it is not a valid name. */
export function normalizeHostname(s: string): string | null {
  let h = s.toLowerCase();
  if (h.endsWith('.')) h = h.slice(0, -1);
  if (h.length === 0 || h.length > 253) return null;
  return h.split('.').every((l) => LABEL.test(l)) ? h : null;
}

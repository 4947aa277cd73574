// PROXY protocol version 2 (haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2): the
// binary header a proxy sends before any data so that the backend learns the client's address and
// the destination it asked for. The encoder writes the PROXY command for TCP/UDP over IPv4/IPv6;
// the decoder (what a backend does: tests, and any future consumer) never trusts its input and
// returns a typed error instead of throwing.
import { EdgewardError, type Issue } from '../core/errors.js';
import { err, ok, type Result } from '../core/result.js';
import { formatIp, parseIp, type IpAddress } from '../net/address.js';

/** The 12 bytes every v2 header starts with: \r\n\r\n\0\r\nQUIT\n. */
export const PROXY_V2_SIGNATURE: Buffer = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** Signature, version/command, family/transport and the 2-byte length. */
export const PROXY_V2_FIXED_LENGTH = 16;

/** The decoder's default limit on the whole header (fixed part, addresses, TLVs). */
export const PROXY_V2_DEFAULT_MAX_LENGTH = 2048;

const VERSION_2 = 0x20;

/** The command, low nibble of byte 13 (spec 2.2). */
export enum ProxyCommand {
  LOCAL = 0x0,
  PROXY = 0x1,
}

/** The address family, high nibble of byte 14. */
export enum ProxyFamily {
  UNSPEC = 0x0,
  INET = 0x1,
  INET6 = 0x2,
  UNIX = 0x3,
}

/** The transport protocol, low nibble of byte 14. */
export enum ProxyTransport {
  UNSPEC = 0x0,
  STREAM = 0x1,
  DGRAM = 0x2,
}

/** Length of the address block for each family (spec 2.2: 12, 36, 216 bytes). */
const ADDRESS_LENGTH: Readonly<Record<ProxyFamily, number>> = {
  [ProxyFamily.UNSPEC]: 0,
  [ProxyFamily.INET]: 12,
  [ProxyFamily.INET6]: 36,
  [ProxyFamily.UNIX]: 216,
};

export interface ProxyEndpoint {
  /** an IP literal (IPv6 without brackets) */
  address: string;
  port: number;
}

/** A type-length-value extension after the addresses (spec 2.2.1). */
export interface ProxyTlv {
  type: number;
  value: Buffer;
}

export type ProxyProtocolErrorCode =
  /** the buffer ends before the header does (a reader may wait for more bytes) */
  | 'truncated'
  /** the first 12 bytes are not the v2 signature */
  | 'bad_signature'
  /** the version nibble is not 2 */
  | 'bad_version'
  /** neither LOCAL nor PROXY */
  | 'bad_command'
  /** an address family or transport the spec does not define */
  | 'bad_family'
  /** the length field is shorter than the family's address block, or a TLV runs past the header */
  | 'bad_length'
  /** the header is longer than the decoder accepts */
  | 'too_long'
  /** the encoder was given something a header cannot carry (not an IP literal, a port or TLV type out of range) */
  | 'invalid_input';

export type ProxyProtocolIssue = Issue<ProxyProtocolErrorCode>;

/** An encoder input that cannot be put in a header (not an IP literal, a port out of range). */
export class ProxyProtocolError extends EdgewardError<ProxyProtocolErrorCode> {
  constructor(
    code: ProxyProtocolErrorCode,
    readonly field: string | null,
    message: string,
  ) {
    super(code, message);
  }
}

export interface EncodeOptions {
  /** default 'stream' (TCP) */
  transport?: 'stream' | 'dgram';
  tlvs?: readonly ProxyTlv[];
}

function endpointIp(e: ProxyEndpoint, field: string): IpAddress {
  const ip = parseIp(e.address);
  if (!ip) throw new ProxyProtocolError('invalid_input', `${field}.address`, `${field} address "${e.address}" is not an IP address`);
  if (!Number.isInteger(e.port) || e.port < 0 || e.port > 0xffff) throw new ProxyProtocolError('invalid_input', `${field}.port`, `${field} port ${e.port} is not 0-65535`);
  return ip;
}

/** IPv4 as an IPv4-mapped IPv6 address, for a header whose other side is IPv6. */
function asV6(ip: IpAddress): Uint8Array {
  if (ip.family === 6) return ip.bytes;
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(ip.bytes, 12);
  return out;
}

/**
 * The v2 header with the PROXY command for a connection from `source` to `destination`. Both
 * IPv4 gives family INET (0x11 for TCP), otherwise INET6 (0x21), an IPv4 side then IPv4-mapped.
 * Throws a ProxyProtocolError when an address is not an IP literal or a port is out of range.
 */
export function encodeProxyV2(source: ProxyEndpoint, destination: ProxyEndpoint, opts: EncodeOptions = {}): Buffer {
  const src = endpointIp(source, 'source');
  const dst = endpointIp(destination, 'destination');
  const family = src.family === 4 && dst.family === 4 ? ProxyFamily.INET : ProxyFamily.INET6;
  const transport = opts.transport === 'dgram' ? ProxyTransport.DGRAM : ProxyTransport.STREAM;
  const tlvs = opts.tlvs ?? [];
  const tlvLength = tlvs.reduce((n, t) => n + 3 + t.value.length, 0);
  const addrLength = ADDRESS_LENGTH[family];
  const length = addrLength + tlvLength;
  if (length > 0xffff) throw new ProxyProtocolError('too_long', 'tlvs', `header body of ${length} bytes does not fit the 16-bit length`);
  const out = Buffer.alloc(PROXY_V2_FIXED_LENGTH + length);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = VERSION_2 | ProxyCommand.PROXY;
  out[13] = (family << 4) | transport;
  out.writeUInt16BE(length, 14);
  let at = PROXY_V2_FIXED_LENGTH;
  if (family === ProxyFamily.INET) {
    out.set(src.bytes, at);
    out.set(dst.bytes, at + 4);
    at += 8;
  } else {
    out.set(asV6(src), at);
    out.set(asV6(dst), at + 16);
    at += 32;
  }
  out.writeUInt16BE(source.port, at);
  out.writeUInt16BE(destination.port, at + 2);
  at += 4;
  for (const t of tlvs) {
    if (!Number.isInteger(t.type) || t.type < 0 || t.type > 0xff) throw new ProxyProtocolError('invalid_input', 'tlvs.type', `TLV type ${t.type} is not 0-255`);
    out[at] = t.type;
    out.writeUInt16BE(t.value.length, at + 1);
    t.value.copy(out, at + 3);
    at += 3 + t.value.length;
  }
  return out;
}

/** The v2 header with the LOCAL command (the proxy's own connection, e.g. a health check). */
export function encodeProxyV2Local(): Buffer {
  const out = Buffer.alloc(PROXY_V2_FIXED_LENGTH);
  PROXY_V2_SIGNATURE.copy(out, 0);
  out[12] = VERSION_2 | ProxyCommand.LOCAL;
  out[13] = (ProxyFamily.UNSPEC << 4) | ProxyTransport.UNSPEC;
  return out;
}

export interface ProxyHeaderV2 {
  command: ProxyCommand;
  family: ProxyFamily;
  transport: ProxyTransport;
  /** the client, for PROXY over INET/INET6; null for LOCAL, UNSPEC and UNIX */
  source: ProxyEndpoint | null;
  /** the destination the client connected to; null as for source */
  destination: ProxyEndpoint | null;
  tlvs: ProxyTlv[];
  /** bytes the header took; the connection's data starts after them */
  length: number;
}

function issue(code: ProxyProtocolErrorCode, field: string | null, message: string): Result<never, ProxyProtocolIssue> {
  return err({ code, field, message });
}

/**
 * Decodes a v2 header at the start of `buf`. Bounds-checked throughout: a short buffer is
 * 'truncated', a header over `maxLength` bytes is 'too_long'; it never throws.
 */
export function decodeProxyV2(buf: Buffer, maxLength = PROXY_V2_DEFAULT_MAX_LENGTH): Result<ProxyHeaderV2, ProxyProtocolIssue> {
  const sigBytes = Math.min(buf.length, PROXY_V2_SIGNATURE.length);
  if (!buf.subarray(0, sigBytes).equals(PROXY_V2_SIGNATURE.subarray(0, sigBytes))) return issue('bad_signature', 'signature', 'not a PROXY protocol v2 signature');
  if (buf.length < PROXY_V2_FIXED_LENGTH) return issue('truncated', null, `${buf.length} bytes, the fixed part alone is ${PROXY_V2_FIXED_LENGTH}`);
  const verCmd = buf[12]!;
  if ((verCmd & 0xf0) !== VERSION_2) return issue('bad_version', 'version', `version ${verCmd >> 4} is not 2`);
  const command = verCmd & 0x0f;
  if (command !== ProxyCommand.LOCAL && command !== ProxyCommand.PROXY) return issue('bad_command', 'command', `command ${command} is neither LOCAL (0) nor PROXY (1)`);
  const famByte = buf[13]!;
  const family = famByte >> 4;
  const transport = famByte & 0x0f;
  if (family > ProxyFamily.UNIX || transport > ProxyTransport.DGRAM) return issue('bad_family', 'family', `family/transport byte 0x${famByte.toString(16).padStart(2, '0')} is not defined`);
  const bodyLength = buf.readUInt16BE(14);
  const length = PROXY_V2_FIXED_LENGTH + bodyLength;
  if (length > maxLength) return issue('too_long', 'length', `header of ${length} bytes is over the limit of ${maxLength}`);
  if (buf.length < length) return issue('truncated', 'length', `header says ${length} bytes, ${buf.length} are there`);
  // LOCAL ignores the address block whatever the family says (spec 2.2); PROXY must carry it whole
  const addrLength = command === ProxyCommand.PROXY ? ADDRESS_LENGTH[family as ProxyFamily] : 0;
  if (bodyLength < addrLength) return issue('bad_length', 'length', `length ${bodyLength} is shorter than the ${addrLength}-byte address block`);
  let source: ProxyEndpoint | null = null;
  let destination: ProxyEndpoint | null = null;
  const at = PROXY_V2_FIXED_LENGTH;
  if (command === ProxyCommand.PROXY && (family === ProxyFamily.INET || family === ProxyFamily.INET6)) {
    const n = family === ProxyFamily.INET ? 4 : 16;
    const fam = family === ProxyFamily.INET ? 4 : 6;
    const src = formatIp({ family: fam, bytes: buf.subarray(at, at + n) });
    const dst = formatIp({ family: fam, bytes: buf.subarray(at + n, at + 2 * n) });
    source = { address: src, port: buf.readUInt16BE(at + 2 * n) };
    destination = { address: dst, port: buf.readUInt16BE(at + 2 * n + 2) };
  }
  const tlvs: ProxyTlv[] = [];
  // TLVs follow the address block; with LOCAL the whole body is skipped (it may hold anything)
  if (command === ProxyCommand.PROXY) {
    let p = at + addrLength;
    while (p < length) {
      if (length - p < 3) return issue('bad_length', 'tlvs', `${length - p} bytes left after the TLVs, a TLV needs 3`);
      const type = buf[p]!;
      const n = buf.readUInt16BE(p + 1);
      if (p + 3 + n > length) return issue('bad_length', 'tlvs', `TLV 0x${type.toString(16)} of ${n} bytes runs past the header`);
      tlvs.push({ type, value: Buffer.from(buf.subarray(p + 3, p + 3 + n)) });
      p += 3 + n;
    }
  }
  return ok({ command, family, transport, source, destination, tlvs, length });
}

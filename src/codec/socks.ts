// SOCKS wire format (RFC 1928, RFC 1929, SOCKS4/4a): bounded incremental parsers and reply
// builders. A parser never trusts its input: it returns 'more' when the buffer is short, a typed
// error when the bytes are wrong, or the parsed value with the number of bytes it consumed.
import { isIPv4, isIPv6 } from 'node:net';
import { formatIp, isIPv4Text, parseIp, writeV4 } from '../net/address.js';
import { isParseError as isFrameParseError, type ParseError as FrameParseError, type Parsed as FrameParsed } from '../net/frame-reader.js';

export const SOCKS5 = 0x05;
export const SOCKS4 = 0x04;

/** Authentication methods (RFC 1928 section 3). */
export enum AuthMethod {
  NO_AUTH = 0x00,
  USERNAME_PASSWORD = 0x02,
  NO_ACCEPTABLE = 0xff,
}

/** Request commands (RFC 1928 section 4). */
export enum Socks5Command {
  CONNECT = 0x01,
  BIND = 0x02,
  UDP_ASSOCIATE = 0x03,
}

/** Address types (RFC 1928 section 4). */
export enum AddressType {
  IPV4 = 0x01,
  DOMAIN = 0x03,
  IPV6 = 0x04,
}

/** Reply codes (RFC 1928 section 6). */
export enum Socks5Reply {
  SUCCEEDED = 0x00,
  GENERAL_FAILURE = 0x01,
  NOT_ALLOWED = 0x02,
  NETWORK_UNREACHABLE = 0x03,
  HOST_UNREACHABLE = 0x04,
  CONNECTION_REFUSED = 0x05,
  TTL_EXPIRED = 0x06,
  COMMAND_NOT_SUPPORTED = 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED = 0x08,
}

/** SOCKS4 reply codes. */
export enum Socks4Reply {
  GRANTED = 0x5a,
  REJECTED = 0x5b,
}

export type ParseErrorCode = 'bad_version' | 'no_methods' | 'bad_command' | 'bad_address_type' | 'bad_reserved' | 'bad_domain' | 'too_long' | 'fragmented';

/** A protocol violation; `reply` is the SOCKS5 reply the RFC asks for, when one applies. */
export interface ParseError extends FrameParseError<ParseErrorCode> {
  reply?: Socks5Reply;
}

export type Parsed<T> = FrameParsed<T, ParseError>;

export function isParseError<T>(p: Parsed<T>): p is ParseError {
  return isFrameParseError<ParseError>(p);
}

/** A destination as carried in a request: exactly one of ip or host. */
export interface SocksAddress {
  host?: string;
  ip?: string;
  port: number;
}

export interface Greeting {
  methods: number[];
}

/** Parses the method selection message: VER NMETHODS METHODS... */
export function parseGreeting(buf: Buffer): Parsed<Greeting> {
  if (buf.length < 2) return 'more';
  if (buf[0] !== SOCKS5) return { error: 'bad_version', message: `SOCKS version ${buf[0]} is not 5` };
  const n = buf[1]!;
  if (n === 0) return { error: 'no_methods', message: 'greeting lists no authentication method' };
  if (buf.length < 2 + n) return 'more';
  const methods: number[] = [];
  for (let i = 0; i < n; i++) methods.push(buf[2 + i]!);
  return { value: { methods }, consumed: 2 + n };
}

export interface Credentials {
  username: string;
  password: string;
}

/** Parses an RFC 1929 username/password request: VER(1) ULEN UNAME PLEN PASSWD. */
export function parseCredentials(buf: Buffer): Parsed<Credentials> {
  if (buf.length < 2) return 'more';
  if (buf[0] !== 0x01) return { error: 'bad_version', message: `username/password sub-negotiation version ${buf[0]} is not 1` };
  const ulen = buf[1]!;
  if (buf.length < 2 + ulen + 1) return 'more';
  const plen = buf[2 + ulen]!;
  const end = 3 + ulen + plen;
  if (buf.length < end) return 'more';
  return {
    value: { username: buf.toString('utf8', 2, 2 + ulen), password: buf.toString('utf8', 3 + ulen, end) },
    consumed: end,
  };
}

/** Reads ATYP + address + port at `off`. */
function parseAddress(buf: Buffer, off: number): Parsed<SocksAddress> {
  if (buf.length < off + 1) return 'more';
  const atyp = buf[off]!;
  let p = off + 1;
  let addr: SocksAddress;
  switch (atyp) {
    case AddressType.IPV4: {
      if (buf.length < p + 4 + 2) return 'more';
      addr = { ip: `${buf[p]}.${buf[p + 1]}.${buf[p + 2]}.${buf[p + 3]}`, port: 0 };
      p += 4;
      break;
    }
    case AddressType.IPV6: {
      if (buf.length < p + 16 + 2) return 'more';
      addr = { ip: formatIp({ family: 6, bytes: buf.subarray(p, p + 16) }), port: 0 };
      p += 16;
      break;
    }
    case AddressType.DOMAIN: {
      if (buf.length < p + 1) return 'more';
      const len = buf[p]!;
      if (len === 0) return { error: 'bad_domain', message: 'empty domain name', reply: Socks5Reply.HOST_UNREACHABLE };
      if (buf.length < p + 1 + len + 2) return 'more';
      const name = buf.toString('latin1', p + 1, p + 1 + len);
      p += 1 + len;
      if (!/^[\x21-\x7e]+$/.test(name)) return { error: 'bad_domain', message: 'domain name has control or non-ASCII bytes', reply: Socks5Reply.HOST_UNREACHABLE };
      // some clients put an address literal in a DOMAIN field; treat it as the address it is
      const literal = name.startsWith('[') && name.endsWith(']') ? name.slice(1, -1) : name;
      addr = isIPv4(literal) || isIPv6(literal) ? { ip: literal, port: 0 } : { host: name.toLowerCase(), port: 0 };
      break;
    }
    default:
      return { error: 'bad_address_type', message: `address type ${atyp} is not 1, 3 or 4`, reply: Socks5Reply.ADDRESS_TYPE_NOT_SUPPORTED };
  }
  addr.port = buf.readUInt16BE(p);
  return { value: addr, consumed: p + 2 - off };
}

export interface Socks5Request {
  command: Socks5Command;
  address: SocksAddress;
}

/** Parses a request: VER CMD RSV ATYP DST.ADDR DST.PORT. */
export function parseRequest(buf: Buffer): Parsed<Socks5Request> {
  if (buf.length < 4) return 'more';
  if (buf[0] !== SOCKS5) return { error: 'bad_version', message: `request version ${buf[0]} is not 5`, reply: Socks5Reply.GENERAL_FAILURE };
  const cmd = buf[1]!;
  // the address type is checked before the command so that both errors get their own reply
  const addr = parseAddress(buf, 3);
  if (isParseError(addr) || addr === 'more') return addr;
  if (cmd !== Socks5Command.CONNECT && cmd !== Socks5Command.BIND && cmd !== Socks5Command.UDP_ASSOCIATE) {
    return { error: 'bad_command', message: `command ${cmd} is not CONNECT, BIND or UDP ASSOCIATE`, reply: Socks5Reply.COMMAND_NOT_SUPPORTED };
  }
  return { value: { command: cmd, address: addr.value }, consumed: 3 + addr.consumed };
}

export interface Socks4Request {
  command: number;
  address: SocksAddress;
  userId: string;
}

const SOCKS4_MAX_FIELD = 255;

/** Parses a SOCKS4/4a request: VN CD DSTPORT DSTIP USERID\0 [HOST\0 when DSTIP is 0.0.0.x]. */
export function parseSocks4Request(buf: Buffer): Parsed<Socks4Request> {
  if (buf.length < 8) return 'more';
  if (buf[0] !== SOCKS4) return { error: 'bad_version', message: `SOCKS version ${buf[0]} is not 4` };
  const port = buf.readUInt16BE(2);
  const userEnd = buf.indexOf(0, 8);
  if (userEnd < 0) return buf.length - 8 > SOCKS4_MAX_FIELD ? { error: 'too_long', message: 'SOCKS4 user id longer than 255 bytes' } : 'more';
  // the limit holds however the bytes arrive: also when the NUL came in the same read
  if (userEnd - 8 > SOCKS4_MAX_FIELD) return { error: 'too_long', message: 'SOCKS4 user id longer than 255 bytes' };
  const userId = buf.toString('latin1', 8, userEnd);
  const is4a = buf[4] === 0 && buf[5] === 0 && buf[6] === 0 && buf[7] !== 0;
  if (!is4a) {
    return { value: { command: buf[1]!, address: { ip: `${buf[4]}.${buf[5]}.${buf[6]}.${buf[7]}`, port }, userId }, consumed: userEnd + 1 };
  }
  const hostEnd = buf.indexOf(0, userEnd + 1);
  if (hostEnd < 0) return buf.length - userEnd - 1 > SOCKS4_MAX_FIELD ? { error: 'too_long', message: 'SOCKS4a host name longer than 255 bytes' } : 'more';
  if (hostEnd - userEnd - 1 > SOCKS4_MAX_FIELD) return { error: 'too_long', message: 'SOCKS4a host name longer than 255 bytes' };
  const host = buf.toString('latin1', userEnd + 1, hostEnd);
  if (host.length === 0 || !/^[\x21-\x7e]+$/.test(host)) return { error: 'bad_domain', message: 'SOCKS4a host name is empty or not printable ASCII' };
  const address: SocksAddress = isIPv4(host) || isIPv6(host) ? { ip: host, port } : { host: host.toLowerCase(), port };
  return { value: { command: buf[1]!, address, userId }, consumed: hostEnd + 1 };
}

/** Encodes ATYP + address + port for replies and UDP headers. */
export function encodeAddress(ip: string | undefined, port: number, host?: string): Buffer {
  if (host !== undefined) {
    const name = Buffer.from(host, 'latin1');
    const out = Buffer.allocUnsafe(4 + name.length);
    out[0] = AddressType.DOMAIN;
    out[1] = name.length;
    name.copy(out, 2);
    out.writeUInt16BE(port, 2 + name.length);
    return out;
  }
  const text = ip ?? '0.0.0.0';
  if (isIPv4Text(text)) {
    const out = Buffer.allocUnsafe(7);
    out[0] = AddressType.IPV4;
    writeV4(text, out, 1);
    out.writeUInt16BE(port, 5);
    return out;
  }
  // IPv4-mapped addresses go out as IPv4; every other IPv6 form (compressed, with a dotted tail)
  // is parsed by the one IP parser the policy engine uses too
  const ip6 = parseIp(text);
  if (ip6 && ip6.family === 4) return encodeAddress(formatIp(ip6), port);
  const out = Buffer.allocUnsafe(19).fill(0);
  out[0] = AddressType.IPV6;
  if (ip6) Buffer.from(ip6.bytes).copy(out, 1);
  out.writeUInt16BE(port, 17);
  return out;
}

/** A SOCKS5 reply: VER REP RSV ATYP BND.ADDR BND.PORT. */
export function buildReply(rep: Socks5Reply, ip?: string, port = 0): Buffer {
  const addr = encodeAddress(ip ?? '0.0.0.0', port);
  const out = Buffer.allocUnsafe(3 + addr.length);
  out[0] = SOCKS5;
  out[1] = rep;
  out[2] = 0;
  addr.copy(out, 3);
  return out;
}

/** A SOCKS4 reply: VN=0 CD DSTPORT DSTIP. */
export function buildSocks4Reply(code: Socks4Reply, ip = '0.0.0.0', port = 0): Buffer {
  const out = Buffer.alloc(8);
  out[1] = code;
  out.writeUInt16BE(port, 2);
  if (isIPv4(ip)) ip.split('.').forEach((b, i) => (out[4 + i] = Number(b)));
  return out;
}

export interface UdpDatagram {
  address: SocksAddress;
  data: Buffer;
}

/** Parses a UDP ASSOCIATE datagram: RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. */
export function parseUdpDatagram(buf: Buffer): UdpDatagram | ParseError {
  if (buf.length < 4) return { error: 'too_long', message: 'datagram shorter than a SOCKS UDP header' };
  if (buf[0] !== 0 || buf[1] !== 0) return { error: 'bad_reserved', message: 'reserved bytes of UDP header are not zero' };
  if (buf[2] !== 0) return { error: 'fragmented', message: 'fragmented SOCKS UDP datagrams are not supported' };
  const addr = parseAddress(buf, 3);
  if (addr === 'more') return { error: 'too_long', message: 'datagram ends inside its SOCKS UDP header' };
  if (isParseError(addr)) return addr;
  return { address: addr.value, data: buf.subarray(3 + addr.consumed) };
}

/** Prefixes a datagram from `ip:port` with the SOCKS UDP header for the client. */
export function buildUdpDatagram(ip: string, port: number, data: Buffer): Buffer {
  const addr = encodeAddress(ip, port);
  const out = Buffer.allocUnsafe(3 + addr.length + data.length);
  out[0] = 0;
  out[1] = 0;
  out[2] = 0;
  addr.copy(out, 3);
  data.copy(out, 3 + addr.length);
  return out;
}

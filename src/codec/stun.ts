// STUN (RFC 8489) and TURN (RFC 8656) wire format: a bounded parser that never trusts its input and
// returns typed issues, a message builder with MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT, the
// attribute value codecs the server needs, ChannelData, and the TCP/TLS framing of both.
import { createHash, createHmac, timingSafeEqual, type Hmac } from 'node:crypto';
import { isUtf8 } from 'node:buffer';
import { EdgewardError, type Issue } from '../core/errors.js';
import { err, ok, type Result } from '../core/result.js';
import { formatIp, parseIp } from '../net/address.js';
import { saslprep } from './stun-saslprep.js';

export { saslprep, type SaslprepIssue } from './stun-saslprep.js';

export const MAGIC_COOKIE = 0x2112a442;
export const HEADER_LENGTH = 20;
/** The largest message the 16-bit length field can describe (header + 65532 bytes of attributes). */
export const MAX_MESSAGE_LENGTH = HEADER_LENGTH + 0xfffc;
/** More attributes than this is an attack or a bug, not a client: real messages carry fewer than 20. */
export const MAX_ATTRIBUTES = 64;
export const FINGERPRINT_XOR = 0x5354554e;
export const CHANNEL_MIN = 0x4000;
/**
 * RFC 8656 narrowed channels to 0x4000-0x4FFF, but RFC 5766 allowed 0x4000-0x7FFF (its text also
 * says 16,383 values, one short of that) and coturn's own clients (turnutils_uclient) still pick
 * from the whole range, 0x7FFF included, as coturn's server accepts: accepted, for interoperability.
 */
export const CHANNEL_MAX = 0x7fff;

export enum StunClass { Request = 0, Indication = 1, SuccessResponse = 2, ErrorResponse = 3 }
export enum StunMethod { Binding = 0x001, Allocate = 0x003, Refresh = 0x004, Send = 0x006, Data = 0x007, CreatePermission = 0x008, ChannelBind = 0x009, Connect = 0x00a, ConnectionBind = 0x00b, ConnectionAttempt = 0x00c }

export const Attr = {
  MAPPED_ADDRESS: 0x0001, USERNAME: 0x0006, MESSAGE_INTEGRITY: 0x0008, ERROR_CODE: 0x0009, UNKNOWN_ATTRIBUTES: 0x000a,
  CHANNEL_NUMBER: 0x000c, LIFETIME: 0x000d, XOR_PEER_ADDRESS: 0x0012, DATA: 0x0013, REALM: 0x0014, NONCE: 0x0015,
  XOR_RELAYED_ADDRESS: 0x0016, REQUESTED_ADDRESS_FAMILY: 0x0017, EVEN_PORT: 0x0018, REQUESTED_TRANSPORT: 0x0019,
  DONT_FRAGMENT: 0x001a, MESSAGE_INTEGRITY_SHA256: 0x001c, PASSWORD_ALGORITHM: 0x001d, USERHASH: 0x001e,
  XOR_MAPPED_ADDRESS: 0x0020, RESERVATION_TOKEN: 0x0022, PRIORITY: 0x0024, USE_CANDIDATE: 0x0025, CONNECTION_ID: 0x002a,
  ADDITIONAL_ADDRESS_FAMILY: 0x8000, ADDRESS_ERROR_CODE: 0x8001, PASSWORD_ALGORITHMS: 0x8002, ALTERNATE_DOMAIN: 0x8003,
  ICMP: 0x8004, SOFTWARE: 0x8022, ALTERNATE_SERVER: 0x8023, FINGERPRINT: 0x8028, ICE_CONTROLLED: 0x8029, ICE_CONTROLLING: 0x802a,
} as const;

const ATTR_NAMES = new Map<number, string>(Object.entries(Attr).map(([name, type]) => [type, name.replace(/_/g, '-')]));

/** The RFC name of an attribute type ("XOR-PEER-ADDRESS"), or its hex ("0x7f01") when unknown; for messages and logs. */
export function attrName(type: number): string {
  return ATTR_NAMES.get(type) ?? `0x${type.toString(16).padStart(4, '0')}`;
}

/** attribute types 0x0000-0x7fff are comprehension-required */
export function isComprehensionRequired(type: number): boolean {
  return type >= 0 && type < 0x8000;
}

/** Default reason phrases (RFC 8489 section 14.8, RFC 8656 section 19, RFC 6062 section 6.3). */
export const ERROR_REASONS: ReadonlyMap<number, string> = new Map([
  [300, 'Try Alternate'], [400, 'Bad Request'], [401, 'Unauthorized'], [403, 'Forbidden'], [420, 'Unknown Attribute'],
  [437, 'Allocation Mismatch'], [438, 'Stale Nonce'], [440, 'Address Family not Supported'], [441, 'Wrong Credentials'],
  [442, 'Unsupported Transport Protocol'], [443, 'Peer Address Family Mismatch'], [446, 'Connection Already Exists'],
  [447, 'Connection Timeout or Failure'], [486, 'Allocation Quota Reached'], [500, 'Server Error'], [508, 'Insufficient Capacity'],
]);

export interface StunAttribute {
  type: number;
  /** a view into the message, without padding */
  value: Buffer;
  /** offset of the attribute's 4-byte header in the message */
  offset: number;
}

export interface StunMessage {
  method: number;
  cls: StunClass;
  /** an RFC 3489 message: no magic cookie, its transaction id is the 16 bytes after the length */
  rfc3489?: boolean;
  /** 12 bytes, a view into raw */
  transactionId: Buffer;
  /** in wire order; attributes the RFC says to ignore (after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and FINGERPRINT, after FINGERPRINT) are left out */
  attributes: StunAttribute[];
  /** the whole message as received */
  raw: Buffer;
}

export type StunIssueCode =
  | 'too_short' | 'not_stun' | 'bad_length' | 'too_long' | 'bad_attribute' | 'too_many_attributes'
  | 'bad_value' | 'bad_family' | 'bad_channel' | 'prohibited_character' | 'bad_bidi';
export type StunIssue = Issue<StunIssueCode>;

const issue = (code: StunIssueCode, field: string | null, message: string): StunIssue => ({ code, field, message });

/** Thrown by the builders on input the RFC forbids: a bug in the caller, never a client's fault. */
export class StunBuildError extends EdgewardError<'too_long' | 'bad_value' | 'bad_order'> {}

/** true when buf starts like a STUN message (top two bits 0, magic cookie) — to tell it from ChannelData */
export function looksLikeStun(buf: Buffer): boolean {
  return buf.length >= HEADER_LENGTH && (buf[0]! & 0xc0) === 0 && buf.readUInt32BE(4) === MAGIC_COOKIE;
}

const decodeType = (t: number): { method: number; cls: StunClass } => ({
  method: (t & 0x000f) | ((t & 0x00e0) >> 1) | ((t & 0x3e00) >> 2),
  cls: (((t & 0x0100) >> 7) | ((t & 0x0010) >> 4)) as StunClass,
});

const encodeType = (method: number, cls: StunClass): number =>
  (method & 0x000f) | ((method & 0x0070) << 1) | ((method & 0x0f80) << 2) | ((cls & 1) << 4) | ((cls & 2) << 7);

/**
 * Parses one whole STUN message (a UDP datagram, or a frame cut by frameLength); trailing bytes are
 * an error. With `rfc3489`, a message without the magic cookie is taken as an RFC 3489 one.
 */
export function parseStun(buf: Buffer, opts: { rfc3489?: boolean } = {}): Result<StunMessage, StunIssue> {
  if (buf.length < HEADER_LENGTH) return err(issue('too_short', null, `${buf.length} bytes is shorter than the 20-byte STUN header`));
  if (buf.length > MAX_MESSAGE_LENGTH) return err(issue('too_long', null, `${buf.length} bytes is longer than any STUN message (${MAX_MESSAGE_LENGTH})`));
  if ((buf[0]! & 0xc0) !== 0) return err(issue('not_stun', 'header.type', 'the top two bits of a STUN message type are not zero'));
  const rfc3489 = buf.readUInt32BE(4) !== MAGIC_COOKIE;
  if (rfc3489 && !opts.rfc3489) return err(issue('not_stun', 'header.magic_cookie', 'the magic cookie is not 0x2112a442'));
  const length = buf.readUInt16BE(2);
  if (length % 4 !== 0) return err(issue('bad_length', 'header.length', `message length ${length} is not a multiple of 4`));
  if (HEADER_LENGTH + length !== buf.length) {
    return err(issue('bad_length', 'header.length', `message length ${length} does not match the ${buf.length - HEADER_LENGTH} bytes after the header`));
  }
  const attributes: StunAttribute[] = [];
  // 0: taking all; 1: after MESSAGE-INTEGRITY; 2: after MESSAGE-INTEGRITY-SHA256; 3: after FINGERPRINT
  let stage = 0;
  let count = 0;
  for (let off = HEADER_LENGTH; off < buf.length; count++) {
    if (count === MAX_ATTRIBUTES) return err(issue('too_many_attributes', 'attributes', `more than ${MAX_ATTRIBUTES} attributes`));
    const type = buf.readUInt16BE(off);
    const valueLength = buf.readUInt16BE(off + 2);
    const next = off + 4 + ((valueLength + 3) & ~3);
    if (next > buf.length) {
      return err(issue('bad_attribute', `attributes[${count}]`, `${attrName(type)} at offset ${off} claims ${valueLength} bytes, past the end of the message`));
    }
    const keep =
      stage === 0 ||
      (stage === 1 && (type === Attr.MESSAGE_INTEGRITY_SHA256 || type === Attr.FINGERPRINT)) ||
      (stage === 2 && type === Attr.FINGERPRINT);
    if (keep) {
      attributes.push({ type, value: buf.subarray(off + 4, off + 4 + valueLength), offset: off });
      if (type === Attr.MESSAGE_INTEGRITY) stage = 1;
      else if (type === Attr.MESSAGE_INTEGRITY_SHA256) stage = 2;
      else if (type === Attr.FINGERPRINT) stage = 3;
    }
    off = next;
  }
  const { method, cls } = decodeType(buf.readUInt16BE(0));
  const m: StunMessage = { method, cls, transactionId: buf.subarray(8, HEADER_LENGTH), attributes, raw: buf };
  if (rfc3489) m.rfc3489 = true;
  return ok(m);
}

/** reserved, family, port, address: the value of an address attribute, not XORed. */
function addressValue(ip: string, port: number): Buffer {
  // an IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) is written as IPv4
  const parsed = ip.includes('%') ? null : parseIp(ip); // a zone id means nothing to the peer
  if (!parsed) throw new StunBuildError('bad_value', `${JSON.stringify(ip)} is not an IP address`);
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) throw new StunBuildError('bad_value', `port ${port} is out of range`);
  const value = Buffer.alloc(4 + parsed.bytes.length);
  value[1] = parsed.family === 4 ? 0x01 : 0x02;
  value.writeUInt16BE(port, 2);
  value.set(parsed.bytes, 4);
  return value;
}

/** The first attribute of that type, or undefined. */
export function getAttr(m: StunMessage, type: number): StunAttribute | undefined {
  return m.attributes.find((a) => a.type === type);
}

/** The comprehension-required attribute types in m that are not in `known`: the UNKNOWN-ATTRIBUTES of a 420. */
export function unknownComprehensionRequired(m: StunMessage, known: ReadonlySet<number>): number[] {
  const out = new Set<number>();
  for (const a of m.attributes) if (isComprehensionRequired(a.type) && !known.has(a.type)) out.add(a.type);
  return [...out];
}

/** TCP/TLS framing: the length of the next frame at the start of buf (STUN message, or ChannelData padded to 4), 'more' when the header is incomplete, or an issue */
export function frameLength(buf: Buffer): number | 'more' | StunIssue {
  if (buf.length === 0) return 'more';
  const top = buf[0]! >> 6;
  if (top >= 2) return issue('not_stun', 'header.type', `a frame starting with 0x${buf[0]!.toString(16)} is neither STUN nor ChannelData`);
  if (top === 1) {
    if (buf.length < 4) return 'more';
    const channel = buf.readUInt16BE(0);
    if (channel > CHANNEL_MAX) return issue('bad_channel', 'channel', `channel number 0x${channel.toString(16)} is outside 0x4000-0x7fff`);
    return 4 + ((buf.readUInt16BE(2) + 3) & ~3);
  }
  if (buf.length < 8) return 'more';
  if (buf.readUInt32BE(4) !== MAGIC_COOKIE) return issue('not_stun', 'header.magic_cookie', 'the magic cookie is not 0x2112a442');
  const length = buf.readUInt16BE(2);
  if (length % 4 !== 0) return issue('bad_length', 'header.length', `message length ${length} is not a multiple of 4`);
  return HEADER_LENGTH + length;
}

/** Parses a ChannelData message (RFC 8656 section 12.4); padding to 4 may be present (TCP) or not (UDP), more is an error. */
export function parseChannelData(buf: Buffer): Result<{ channel: number; data: Buffer }, StunIssue> {
  if (buf.length < 4) return err(issue('too_short', null, `${buf.length} bytes is shorter than the 4-byte ChannelData header`));
  const channel = buf.readUInt16BE(0);
  if (channel < CHANNEL_MIN || channel > CHANNEL_MAX) {
    return err(issue('bad_channel', 'channel', `channel number 0x${channel.toString(16)} is outside 0x4000-0x7fff`));
  }
  const length = buf.readUInt16BE(2);
  if (buf.length < 4 + length) return err(issue('bad_length', 'length', `ChannelData claims ${length} bytes but carries ${buf.length - 4}`));
  if (buf.length > 4 + ((length + 3) & ~3)) return err(issue('bad_length', 'length', `ChannelData of ${length} bytes is followed by ${buf.length - 4 - length} more than padding`));
  return ok({ channel, data: buf.subarray(4, 4 + length) });
}

/** A ChannelData message; over TCP/TLS (padForStream) padded with zeros to a multiple of 4. */
export function buildChannelData(channel: number, data: Buffer, padForStream: boolean): Buffer {
  if (!Number.isInteger(channel) || channel < CHANNEL_MIN || channel > CHANNEL_MAX) throw new StunBuildError('bad_value', `channel number ${channel} is outside 0x4000-0x7fff`);
  if (data.length > 0xffff) throw new StunBuildError('too_long', `ChannelData of ${data.length} bytes exceeds 65535`);
  // from Node's buffer pool (relayed datagrams are small and many): every byte is written below
  const out = Buffer.allocUnsafe(4 + (padForStream ? (data.length + 3) & ~3 : data.length));
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  data.copy(out, 4);
  out.fill(0, 4 + data.length);
  return out;
}

// ---- attribute values ----

const xorMask = (transactionId: Buffer): Buffer => {
  const mask = Buffer.alloc(16);
  mask.writeUInt32BE(MAGIC_COOKIE, 0);
  transactionId.copy(mask, 4);
  return mask;
};

/** Decodes XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS or XOR-RELAYED-ADDRESS (RFC 8489 section 14.2). */
export function decodeXorAddress(value: Buffer, transactionId: Buffer): Result<{ family: 4 | 6; ip: string; port: number }, StunIssue> {
  if (transactionId.length !== 12) return err(issue('bad_value', 'transactionId', 'a transaction id is 12 bytes'));
  if (value.length < 4) return err(issue('bad_value', 'address', `an address attribute of ${value.length} bytes is too short`));
  const familyByte = value[1]!;
  if (familyByte !== 0x01 && familyByte !== 0x02) return err(issue('bad_family', 'address.family', `address family 0x${familyByte.toString(16)} is neither IPv4 (1) nor IPv6 (2)`));
  const family = familyByte === 0x01 ? 4 : 6;
  const size = family === 4 ? 4 : 16;
  if (value.length !== 4 + size) return err(issue('bad_value', 'address', `an IPv${family} address attribute is ${4 + size} bytes, not ${value.length}`));
  const mask = xorMask(transactionId);
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i++) bytes[i] = value[4 + i]! ^ mask[i]!;
  return ok({ family, ip: formatIp({ family, bytes }), port: value.readUInt16BE(2) ^ (MAGIC_COOKIE >>> 16) });
}

/** Decodes ERROR-CODE (RFC 8489 section 14.8): class 3-6, number 0-99. */
export function decodeErrorCode(value: Buffer): Result<{ code: number; reason: string }, StunIssue> {
  if (value.length < 4) return err(issue('bad_value', 'ERROR-CODE', `ERROR-CODE of ${value.length} bytes is shorter than 4`));
  if (value.length > 4 + 763) return err(issue('bad_value', 'ERROR-CODE', 'ERROR-CODE reason phrase is longer than 763 bytes'));
  const cls = value[2]! & 0x07;
  const number = value[3]!;
  if (cls < 3 || cls > 6 || number > 99) return err(issue('bad_value', 'ERROR-CODE', `error class ${cls} number ${number} is not a code in 300-699`));
  return ok({ code: cls * 100 + number, reason: value.toString('utf8', 4) });
}

/** Decodes UNKNOWN-ATTRIBUTES: a list of 16-bit types. */
export function decodeUnknownAttributes(value: Buffer): Result<number[], StunIssue> {
  if (value.length % 2 !== 0) return err(issue('bad_value', 'UNKNOWN-ATTRIBUTES', `UNKNOWN-ATTRIBUTES of ${value.length} bytes is not a list of 16-bit types`));
  const out: number[] = [];
  for (let i = 0; i < value.length; i += 2) out.push(value.readUInt16BE(i));
  return ok(out);
}

/** Decodes a 32-bit value (LIFETIME, PRIORITY ...). */
export function decodeUint32(value: Buffer): Result<number, StunIssue> {
  if (value.length !== 4) return err(issue('bad_value', 'value', `a 32-bit attribute of ${value.length} bytes`));
  return ok(value.readUInt32BE(0));
}

/** Largest accepted byte length of text attributes; USERNAME keeps RFC 5389's 513 for old clients. */
const TEXT_DECODE_LIMIT: ReadonlyMap<number, number> = new Map([
  [Attr.USERNAME, 513], [Attr.REALM, 763], [Attr.NONCE, 763], [Attr.SOFTWARE, 763], [Attr.ALTERNATE_DOMAIN, 255],
]);

/** Decodes a UTF-8 text attribute (USERNAME, REALM, NONCE, SOFTWARE ...) within the RFC's length bound. */
export function decodeString(type: number, value: Buffer): Result<string, StunIssue> {
  const limit = TEXT_DECODE_LIMIT.get(type);
  if (limit !== undefined && value.length > limit) return err(issue('bad_value', attrName(type), `${attrName(type)} of ${value.length} bytes is longer than ${limit}`));
  if (!isUtf8(value)) return err(issue('bad_value', attrName(type), `${attrName(type)} is not valid UTF-8`));
  return ok(value.toString('utf8'));
}

// ---- integrity ----

/** The message bytes an integrity attribute at `offset` covers, with the length field set as the RFC says. */
function feedCovered(h: Hmac, raw: Buffer, offset: number, attrLength: number): Hmac {
  const header = Buffer.from(raw.subarray(0, HEADER_LENGTH));
  header.writeUInt16BE(offset - HEADER_LENGTH + 4 + attrLength, 2);
  return h.update(header).update(raw.subarray(HEADER_LENGTH, offset));
}

/** HMAC-SHA1 MESSAGE-INTEGRITY check; false when absent or wrong; attributes after it other than FINGERPRINT are ignored per RFC */
export function checkMessageIntegrity(m: StunMessage, key: Buffer): boolean {
  const a = getAttr(m, Attr.MESSAGE_INTEGRITY);
  if (!a || a.value.length !== 20) return false;
  return timingSafeEqual(feedCovered(createHmac('sha1', key), m.raw, a.offset, 20).digest(), a.value);
}

/** HMAC-SHA256 MESSAGE-INTEGRITY-SHA256 check, accepting the RFC's truncations (16-32 bytes, multiple of 4). */
export function checkMessageIntegritySha256(m: StunMessage, key: Buffer): boolean {
  const a = getAttr(m, Attr.MESSAGE_INTEGRITY_SHA256);
  if (!a || a.value.length < 16 || a.value.length > 32 || a.value.length % 4 !== 0) return false;
  const mac = feedCovered(createHmac('sha256', key), m.raw, a.offset, a.value.length).digest();
  return timingSafeEqual(mac.subarray(0, a.value.length), a.value);
}

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** CRC-32 (ISO 3309, as in zlib) of the parts taken in order. */
function crc32(parts: readonly Buffer[]): number {
  let c = -1;
  for (const p of parts) for (let i = 0; i < p.length; i++) c = CRC_TABLE[(c ^ p[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

/** FINGERPRINT check; false when absent, not last, or wrong */
export function checkFingerprint(m: StunMessage): boolean {
  const a = getAttr(m, Attr.FINGERPRINT);
  if (!a || a.value.length !== 4 || a.offset + 8 !== m.raw.length) return false;
  return ((crc32([m.raw.subarray(0, a.offset)]) ^ FINGERPRINT_XOR) >>> 0) === a.value.readUInt32BE(0);
}

/** RFC 8489 long-term key: MD5(SASLprep(username) ":" realm ":" SASLprep(password)), or SHA-256 of it under PASSWORD-ALGORITHM SHA-256; a string SASLprep refuses is used as it is */
export function longTermKey(username: string, realm: string, password: string, algorithm: 'md5' | 'sha256' = 'md5'): Buffer {
  const prep = (s: string): string => {
    const r = saslprep(s);
    return r.ok ? r.value : s;
  };
  return createHash(algorithm).update(`${prep(username)}:${realm}:${prep(password)}`, 'utf8').digest();
}

// ---- builder ----

/** Largest byte length of text attributes we send; REALM, NONCE, SOFTWARE and reasons are also fewer than 128 characters. */
const TEXT_ENCODE_LIMIT: ReadonlyMap<number, number> = new Map([
  [Attr.USERNAME, 508], [Attr.REALM, 509], [Attr.NONCE, 509], [Attr.SOFTWARE, 509], [Attr.ALTERNATE_DOMAIN, 255],
]);
const CHARACTER_LIMITED = new Set<number>([Attr.REALM, Attr.NONCE, Attr.SOFTWARE]);

const codePoints = (s: string): number => {
  let n = 0;
  for (const _ of s) n++;
  return n;
};

const STAGE_NAMES = ['', 'MESSAGE-INTEGRITY', 'MESSAGE-INTEGRITY-SHA256', 'FINGERPRINT'] as const;

/** Builds one STUN message; attributes are padded with zeros; integrity and fingerprint come last, in that order. */
export class StunMessageBuilder {
  readonly #header = Buffer.alloc(HEADER_LENGTH);
  readonly #parts: Buffer[] = [];
  #bodyLength = 0;
  /** 0: open; 1: after MESSAGE-INTEGRITY; 2: after MESSAGE-INTEGRITY-SHA256; 3: after FINGERPRINT */
  #stage = 0;

  /** `transactionId`: 12 bytes after the magic cookie, or 16 bytes for an RFC 3489 message (no cookie). */
  constructor(method: number, cls: StunClass, transactionId: Buffer) {
    if (!Number.isInteger(method) || method < 0 || method > 0xfff) throw new StunBuildError('bad_value', `method ${method} is not a 12-bit number`);
    if (transactionId.length !== 12 && transactionId.length !== 16) throw new StunBuildError('bad_value', `a transaction id is 12 bytes (16 for RFC 3489), not ${transactionId.length}`);
    this.#header.writeUInt16BE(encodeType(method, cls), 0);
    if (transactionId.length === 12) this.#header.writeUInt32BE(MAGIC_COOKIE, 4);
    transactionId.copy(this.#header, 20 - transactionId.length);
  }

  #append(type: number, value: Buffer): this {
    if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new StunBuildError('bad_value', `attribute type ${type} is not a 16-bit number`);
    const size = 4 + ((value.length + 3) & ~3);
    if (value.length > 0xffff || this.#bodyLength + size > MAX_MESSAGE_LENGTH - HEADER_LENGTH) {
      throw new StunBuildError('too_long', `${attrName(type)} of ${value.length} bytes makes the message longer than ${MAX_MESSAGE_LENGTH} bytes`);
    }
    const part = Buffer.alloc(size);
    part.writeUInt16BE(type, 0);
    part.writeUInt16BE(value.length, 2);
    value.copy(part, 4);
    this.#parts.push(part);
    this.#bodyLength += size;
    return this;
  }

  #advance(to: number, what: string): void {
    if (this.#stage >= to) throw new StunBuildError('bad_order', `${what} cannot follow ${STAGE_NAMES[this.#stage]}`);
    this.#stage = to;
  }

  /** Any attribute, value as given, padded to 4. */
  add(type: number, value: Buffer): this {
    if (type === Attr.MESSAGE_INTEGRITY || type === Attr.MESSAGE_INTEGRITY_SHA256 || type === Attr.FINGERPRINT) {
      throw new StunBuildError('bad_order', `${attrName(type)} is computed: use its own method`);
    }
    // receivers ignore what follows the integrity attributes, so adding it there is a bug
    if (this.#stage > 0) throw new StunBuildError('bad_order', `${attrName(type)} cannot follow ${STAGE_NAMES[this.#stage]}`);
    return this.#append(type, value);
  }

  /** UTF-8 text (USERNAME, REALM, NONCE, SOFTWARE ...) within the RFC's bound. */
  addString(type: number, text: string): this {
    const value = Buffer.from(text, 'utf8');
    const limit = TEXT_ENCODE_LIMIT.get(type);
    if ((limit !== undefined && value.length > limit) || (CHARACTER_LIMITED.has(type) && codePoints(text) >= 128)) {
      throw new StunBuildError('too_long', `${attrName(type)} of ${value.length} bytes is longer than the RFC allows`);
    }
    return this.add(type, value);
  }

  /** XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS or XOR-RELAYED-ADDRESS, IPv4 or IPv6. */
  addXorAddress(type: number, ip: string, port: number): this {
    const value = addressValue(ip, port);
    value.writeUInt16BE(port ^ (MAGIC_COOKIE >>> 16), 2);
    const mask = xorMask(this.#header.subarray(8, HEADER_LENGTH));
    for (let i = 4; i < value.length; i++) value[i]! ^= mask[i - 4]!;
    return this.add(type, value);
  }

  /** MAPPED-ADDRESS (and the other plain address attributes): what RFC 3489 clients read. */
  addAddress(type: number, ip: string, port: number): this {
    return this.add(type, addressValue(ip, port));
  }

  /** ERROR-CODE with the RFC's reason phrase unless one is given. */
  addErrorCode(code: number, reason?: string): this {
    if (!Number.isInteger(code) || code < 300 || code > 699) throw new StunBuildError('bad_value', `error code ${code} is outside 300-699`);
    const phrase = Buffer.from(reason ?? ERROR_REASONS.get(code) ?? '', 'utf8');
    if (phrase.length > 509 || codePoints(reason ?? '') >= 128) throw new StunBuildError('too_long', 'an error reason phrase is fewer than 128 characters');
    const value = Buffer.alloc(4 + phrase.length);
    value[2] = Math.floor(code / 100);
    value[3] = code % 100;
    phrase.copy(value, 4);
    return this.add(Attr.ERROR_CODE, value);
  }

  /** UNKNOWN-ATTRIBUTES listing the given types. */
  addUnknownAttributes(types: number[]): this {
    const value = Buffer.alloc(types.length * 2);
    types.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t > 0xffff) throw new StunBuildError('bad_value', `attribute type ${t} is not a 16-bit number`);
      value.writeUInt16BE(t, i * 2);
    });
    return this.add(Attr.UNKNOWN_ATTRIBUTES, value);
  }

  /** A 32-bit value (LIFETIME, PRIORITY ...). */
  addUint32(type: number, v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new StunBuildError('bad_value', `${v} is not a 32-bit unsigned number`);
    const value = Buffer.alloc(4);
    value.writeUInt32BE(v, 0);
    return this.add(type, value);
  }

  #mac(algorithm: 'sha1' | 'sha256', key: Buffer, macLength: number): Buffer {
    const header = Buffer.from(this.#header);
    header.writeUInt16BE(this.#bodyLength + 4 + macLength, 2);
    const h = createHmac(algorithm, key).update(header);
    for (const p of this.#parts) h.update(p);
    return h.digest();
  }

  /** MESSAGE-INTEGRITY: HMAC-SHA1 over the message with the length field covering it. */
  addMessageIntegrity(key: Buffer): this {
    this.#advance(1, 'MESSAGE-INTEGRITY');
    return this.#append(Attr.MESSAGE_INTEGRITY, this.#mac('sha1', key, 20));
  }

  /** MESSAGE-INTEGRITY-SHA256, full 32 bytes. */
  addMessageIntegritySha256(key: Buffer): this {
    this.#advance(2, 'MESSAGE-INTEGRITY-SHA256');
    return this.#append(Attr.MESSAGE_INTEGRITY_SHA256, this.#mac('sha256', key, 32));
  }

  /** FINGERPRINT: CRC-32 xor 0x5354554e, last. */
  addFingerprint(): this {
    this.#advance(3, 'FINGERPRINT');
    const header = Buffer.from(this.#header);
    header.writeUInt16BE(this.#bodyLength + 8, 2);
    const value = Buffer.alloc(4);
    value.writeUInt32BE((crc32([header, ...this.#parts]) ^ FINGERPRINT_XOR) >>> 0, 0);
    return this.#append(Attr.FINGERPRINT, value);
  }

  /** The message bytes; the builder stays usable. */
  build(): Buffer {
    const header = Buffer.from(this.#header);
    header.writeUInt16BE(this.#bodyLength, 2);
    return Buffer.concat([header, ...this.#parts], HEADER_LENGTH + this.#bodyLength);
  }
}

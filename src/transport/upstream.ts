// The SOCKS5 client side, for chaining to an upstream (hybrid access: a router hands connections to
// a concentrator that is another edgeward): the handshake over a connected socket. The reply the
// upstream sends becomes an error carrying that reply, so that a SOCKS client of ours gets the same
// answer and an intercepted one a reset.
import type { Socket } from 'node:net';
import { isIPv4, isIPv6 } from 'node:net';
import { AuthMethod, encodeAddress, Socks5Reply, SOCKS5, type Parsed, type SocksAddress } from '../codec/socks.js';
import { EdgewardError } from '../core/errors.js';
import { FrameReader } from '../net/frame-reader.js';
import type { Upstream } from '../policy/via.js';

/** The upstream refused or failed the request; `reply` is its SOCKS5 reply code. */
export class UpstreamError extends EdgewardError<'EUPSTREAM'> {
  constructor(
    readonly reply: Socks5Reply,
    message: string,
  ) {
    super('EUPSTREAM', message);
  }
}

function parseMethodReply(b: Buffer): Parsed<number> {
  if (b.length < 2) return 'more';
  if (b[0] !== SOCKS5) return { error: 'bad_version', message: `method reply version ${b[0]}` };
  return { value: b[1]!, consumed: 2 };
}

function parseAuthReply(b: Buffer): Parsed<number> {
  if (b.length < 2) return 'more';
  return { value: b[1]!, consumed: 2 };
}

function parseConnectReply(b: Buffer): Parsed<number> {
  if (b.length < 5) return 'more';
  if (b[0] !== SOCKS5) return { error: 'bad_version', message: `reply version ${b[0]}` };
  const atyp = b[3];
  const len = atyp === 1 ? 4 : atyp === 4 ? 16 : atyp === 3 ? 1 + b[4]! : -1;
  if (len < 0) return { error: 'bad_address_type', message: `reply address type ${atyp}` };
  if (b.length < 4 + len + 2) return 'more';
  return { value: b[1]!, consumed: 4 + len + 2 };
}

/**
 * Asks the upstream, over a connected socket, to CONNECT to `dest`. Resolves with any bytes the
 * upstream sent after its reply (they belong to the destination's stream); the socket is left
 * paused. Rejects with an UpstreamError carrying the upstream's reply, or the socket's error.
 */
export async function socks5Connect(socket: Socket, up: Upstream, dest: SocksAddress, timeoutMs: number): Promise<Buffer> {
  const reader = new FrameReader(socket);
  let failure: Error | null = null;
  const onError = (e: Error): void => {
    failure = e;
  };
  socket.on('error', onError);
  const timer = setTimeout(() => socket.destroy(Object.assign(new Error('upstream SOCKS handshake timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
  // every message the upstream sends here boils down to one status byte
  const next = async (parse: (b: Buffer) => Parsed<number>): Promise<number> => {
    const r = await reader.next(parse);
    if (r === 'closed') throw failure ?? new UpstreamError(Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} closed the connection during the SOCKS handshake`);
    if (typeof r !== 'number') throw new UpstreamError(Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} broke the SOCKS protocol: ${r.message}`);
    return r;
  };
  try {
    const methods = up.username !== undefined ? [AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD] : [AuthMethod.NO_AUTH];
    socket.write(Buffer.from([SOCKS5, methods.length, ...methods]));
    const method = await next(parseMethodReply);
    if (method === AuthMethod.USERNAME_PASSWORD && up.username !== undefined) {
      const u = Buffer.from(up.username, 'utf8');
      const p = Buffer.from(up.password ?? '', 'utf8');
      socket.write(Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p]));
      if ((await next(parseAuthReply)) !== 0) throw new UpstreamError(Socks5Reply.NOT_ALLOWED, `upstream ${up.display} refused the username/password`);
    } else if (method !== AuthMethod.NO_AUTH) {
      throw new UpstreamError(Socks5Reply.NOT_ALLOWED, `upstream ${up.display} accepts none of our authentication methods${up.username === undefined ? ' (it may need a user: socks5://user:pass@host:port)' : ''}`);
    }
    const ip = dest.ip !== undefined && (isIPv4(dest.ip) || isIPv6(dest.ip)) ? dest.ip : undefined;
    socket.write(Buffer.concat([Buffer.from([SOCKS5, 0x01, 0x00]), encodeAddress(ip, dest.port, ip === undefined ? dest.host : undefined)]));
    const reply = await next(parseConnectReply);
    if (reply !== Socks5Reply.SUCCEEDED) {
      throw new UpstreamError(reply in Socks5Reply ? (reply as Socks5Reply) : Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} answered reply ${reply} for ${dest.host ?? dest.ip}:${dest.port}`);
    }
    return reader.detach();
  } finally {
    clearTimeout(timer);
    socket.removeListener('error', onError);
  }
}

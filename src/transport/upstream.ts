// The SOCKS5 client side, for chaining to an upstream (hybrid access: a router hands connections to
// a concentrator that is another edgeward): the handshake over a connected socket of edgeward's
// own, in the thread's plane like the rest of the connection path. The reply the
// upstream sends becomes an error carrying that reply, so that a SOCKS client of ours gets the same
// answer and an intercepted one a reset.
import { isIPv4, isIPv6 } from 'node:net';
import { AuthMethod, encodeAddress, Socks5Reply, SOCKS5, type Parsed, type SocksAddress } from '../codec/socks.js';
import { EdgewardError } from '../core/errors.js';
import { thePlane } from '../kernel/epoll-plane.js';
import { RawClient } from '../net/raw-client.js';
import type { Upstream } from '../policy/via.js';
import { canceledError, type CancelSource } from './dialer.js';

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

/** What the handshake hands back: the connection, parked in the thread's plane, and the bytes the upstream sent after its reply. */
export interface Chained {
  fd: number;
  /** the start of the destination's stream */
  pending: Buffer;
}

/**
 * Asks the upstream, over a connected socket (`fd`, from dialNow: `parked` in the thread's plane
 * or not), to CONNECT to `dest`. The handshake steps as the upstream's answers arrive, in the
 * plane's poll callback, with no promise and no net.Socket. `done` runs once, never before this
 * returns: with the connection (parked, for the relay) and the bytes after the reply; or with an
 * UpstreamError carrying the upstream's reply, ETIMEDOUT after timeoutMs, ECANCELED when cancelOn
 * closed, and the fd closed.
 */
export function socks5ConnectNow(fd: number, parked: boolean, up: Upstream, dest: SocksAddress, timeoutMs: number, cancelOn: CancelSource | undefined, done: (err: Error | null, r?: Chained) => void): void {
  const conn = new RawClient(fd, up.host, up.port, parked);
  let state: 'method' | 'auth' | 'reply' = 'method';
  let settled = false;
  /** until this returns, done is deferred to a turn of the loop */
  let returned = false;
  const deliver = (err: Error | null, r?: Chained): void => {
    if (returned) done(err, r);
    else thePlane().soon(() => done(err, r));
  };
  const finish = (err: Error | null): void => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    cancelOn?.removeListener('close', onCancel);
    conn.onReadable = null;
    if (err) {
      conn.destroy();
      deliver(err);
      return;
    }
    const taken = conn.release();
    if (!taken) deliver(closed());
    else deliver(null, { fd: taken.fd, pending: taken.buffered });
  };
  const closed = (): Error => new UpstreamError(Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} closed the connection during the SOCKS handshake`);
  // every message the upstream sends here boils down to one status byte: null until it is all there
  const next = (parse: (b: Buffer) => Parsed<number>): number | null => {
    const r = conn.take(parse);
    if (r === 'more') return null;
    if (r === 'closed') throw closed();
    if (typeof r !== 'number') throw new UpstreamError(Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} broke the SOCKS protocol: ${r.message}`);
    return r;
  };
  const request = (): void => {
    const ip = dest.ip !== undefined && (isIPv4(dest.ip) || isIPv6(dest.ip)) ? dest.ip : undefined;
    conn.write(Buffer.concat([Buffer.from([SOCKS5, 0x01, 0x00]), encodeAddress(ip, dest.port, ip === undefined ? dest.host : undefined)]));
    state = 'reply';
  };
  const step = (): void => {
    try {
      for (;;) {
        if (state === 'method') {
          const method = next(parseMethodReply);
          if (method === null) return;
          if (method === AuthMethod.USERNAME_PASSWORD && up.username !== undefined) {
            const u = Buffer.from(up.username, 'utf8');
            const p = Buffer.from(up.password ?? '', 'utf8');
            conn.write(Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p]));
            state = 'auth';
          } else if (method === AuthMethod.NO_AUTH) request();
          else throw new UpstreamError(Socks5Reply.NOT_ALLOWED, `upstream ${up.display} accepts none of our authentication methods${up.username === undefined ? ' (it may need a user: socks5://user:pass@host:port)' : ''}`);
        } else if (state === 'auth') {
          const status = next(parseAuthReply);
          if (status === null) return;
          if (status !== 0) throw new UpstreamError(Socks5Reply.NOT_ALLOWED, `upstream ${up.display} refused the username/password`);
          request();
        } else {
          const reply = next(parseConnectReply);
          if (reply === null) return;
          if (reply !== Socks5Reply.SUCCEEDED) {
            throw new UpstreamError(reply in Socks5Reply ? (reply as Socks5Reply) : Socks5Reply.GENERAL_FAILURE, `upstream ${up.display} answered reply ${reply} for ${dest.host ?? dest.ip}:${dest.port}`);
          }
          finish(null);
          return;
        }
      }
    } catch (e) {
      finish(e as Error);
    }
  };
  const timer = setTimeout(() => finish(Object.assign(new Error('upstream SOCKS handshake timed out'), { code: 'ETIMEDOUT' })), timeoutMs);
  const onCancel = (): void => finish(canceledError());
  cancelOn?.once('close', onCancel);
  conn.once('close', () => finish(closed()));
  const methods = up.username !== undefined ? [AuthMethod.NO_AUTH, AuthMethod.USERNAME_PASSWORD] : [AuthMethod.NO_AUTH];
  conn.write(Buffer.from([SOCKS5, methods.length, ...methods]));
  conn.onReadable = step;
  if (cancelOn?.destroyed) finish(canceledError()); // the client left as the connect finished
  else if (conn.ended) step(); // the upstream closed before it was asked (read as the fd was claimed)
  returned = true;
}

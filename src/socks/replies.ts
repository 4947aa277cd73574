// Failures as SOCKS replies: the reason net/errors.ts gives an operating-system error becomes the
// RFC 1928 reply (microsocks' EC_* from errno, in one place); a chained upstream's own reply is
// passed on as it came.
import { UpstreamError } from '../transport/upstream.js';
import { Socks5Reply } from '../codec/socks.js';
import { connectFailure, type ConnectFailure } from '../net/errors.js';

const REPLY_FOR: Record<ConnectFailure, Socks5Reply> = {
  connection_refused: Socks5Reply.CONNECTION_REFUSED,
  network_unreachable: Socks5Reply.NETWORK_UNREACHABLE,
  host_unreachable: Socks5Reply.HOST_UNREACHABLE,
  timed_out: Socks5Reply.TTL_EXPIRED,
  not_allowed: Socks5Reply.NOT_ALLOWED,
  upstream_failed: Socks5Reply.GENERAL_FAILURE,
  general_failure: Socks5Reply.GENERAL_FAILURE,
};

/** Maps a connect/bind/resolve error to the RFC 1928 reply. */
export function replyForError(err: unknown): Socks5Reply {
  if (err instanceof UpstreamError) return err.reply; // a chained upstream's own answer, passed on
  return REPLY_FOR[connectFailure(err)];
}

const NAMES: Record<Socks5Reply, string> = {
  [Socks5Reply.SUCCEEDED]: 'succeeded',
  [Socks5Reply.GENERAL_FAILURE]: 'general_failure',
  [Socks5Reply.NOT_ALLOWED]: 'not_allowed',
  [Socks5Reply.NETWORK_UNREACHABLE]: 'network_unreachable',
  [Socks5Reply.HOST_UNREACHABLE]: 'host_unreachable',
  [Socks5Reply.CONNECTION_REFUSED]: 'connection_refused',
  [Socks5Reply.TTL_EXPIRED]: 'ttl_expired',
  [Socks5Reply.COMMAND_NOT_SUPPORTED]: 'command_not_supported',
  [Socks5Reply.ADDRESS_TYPE_NOT_SUPPORTED]: 'address_type_not_supported',
};

/** Stable name of a reply, used in logs, stats and metrics labels (a SOCKS failure is counted by the reply it got). */
export function replyName(r: Socks5Reply): string {
  return NAMES[r];
}

// The one place where operating-system errors become SOCKS replies.
import { UpstreamError } from '../transport/upstream.js';
import { Socks5Reply } from '../codec/socks.js';

/** Maps a connect/resolve error (errno code) to the RFC 1928 reply. */
export function replyForError(err: unknown): Socks5Reply {
  if (err instanceof UpstreamError) return err.reply; // a chained upstream's own answer, passed on
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'ECONNREFUSED':
      return Socks5Reply.CONNECTION_REFUSED;
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return Socks5Reply.NETWORK_UNREACHABLE;
    case 'EHOSTUNREACH':
    case 'EHOSTDOWN':
    case 'ENOTFOUND': // getaddrinfo: no such name
    case 'EAI_NONAME':
    case 'EAI_NODATA':
    case 'EAI_AGAIN':
    case 'EADDRNOTAVAIL':
      return Socks5Reply.HOST_UNREACHABLE;
    case 'ETIMEDOUT':
      return Socks5Reply.TTL_EXPIRED;
    case 'EACCES':
    case 'EPERM':
      return Socks5Reply.NOT_ALLOWED;
    default:
      return Socks5Reply.GENERAL_FAILURE;
  }
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

/** Stable name of a reply, used in logs, stats and metrics labels. */
export function replyName(r: Socks5Reply): string {
  return NAMES[r];
}

// Why an outgoing connection failed, as a stable reason every service can count and answer with:
// the one place where operating-system errors (errno and getaddrinfo codes) get a name. Each service
// turns the reason into what its protocol says: SOCKS into an RFC 1928 reply (socks/replies.ts),
// intercept into a reset and an `intercept_`-prefixed statistic.

/** Stable reasons of a failed outgoing connect, bind or name lookup. */
export type ConnectFailure =
  /** ECONNREFUSED: the destination answered with a reset */
  | 'connection_refused'
  /** ENETUNREACH, ENETDOWN: no route to the destination's network */
  | 'network_unreachable'
  /** EHOSTUNREACH, EHOSTDOWN, EADDRNOTAVAIL, or the name does not resolve (ENOTFOUND, EAI_*) */
  | 'host_unreachable'
  /** ETIMEDOUT: no answer within the connect timeout (or the upstream's handshake timeout) */
  | 'timed_out'
  /** EACCES, EPERM: the local system forbids it (a firewall rule, a privileged port) */
  | 'not_allowed'
  /** EUPSTREAM: the chained SOCKS5 upstream refused or failed the request (transport/upstream.ts) */
  | 'upstream_failed'
  /** anything else */
  | 'general_failure';

export const CONNECT_FAILURES: readonly ConnectFailure[] = ['connection_refused', 'network_unreachable', 'host_unreachable', 'timed_out', 'not_allowed', 'upstream_failed', 'general_failure'];

const BY_CODE: Readonly<Record<string, ConnectFailure>> = {
  ECONNREFUSED: 'connection_refused',
  ENETUNREACH: 'network_unreachable',
  ENETDOWN: 'network_unreachable',
  EHOSTUNREACH: 'host_unreachable',
  EHOSTDOWN: 'host_unreachable',
  ENOTFOUND: 'host_unreachable', // getaddrinfo: no such name
  EAI_NONAME: 'host_unreachable',
  EAI_NODATA: 'host_unreachable',
  EAI_AGAIN: 'host_unreachable',
  EADDRNOTAVAIL: 'host_unreachable',
  ETIMEDOUT: 'timed_out',
  EACCES: 'not_allowed',
  EPERM: 'not_allowed',
  EUPSTREAM: 'upstream_failed',
};

/** The stable reason for an error of connect(2), bind(2), getaddrinfo or the upstream handshake, by its `code`. */
export function connectFailure(err: unknown): ConnectFailure {
  const code = typeof err === 'object' && err !== null ? (err as { code?: unknown }).code : undefined;
  return (typeof code === 'string' && Object.hasOwn(BY_CODE, code) ? BY_CODE[code] : undefined) ?? 'general_failure';
}

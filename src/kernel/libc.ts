// The libc calls and constants that kernel/'s socket modules share (sockopt.ts for TCP listeners
// and connections, udp-socket.ts for UDP), loaded once through koffi.
import koffi from 'koffi';

export const AF_INET = 2;
export const AF_INET6 = 10;
export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;
export const SOL_SOCKET = 1;
export const SOL_IP = 0;
export const SOL_IPV6 = 41;
export const IPV6_V6ONLY = 26;

export const libc = koffi.load('libc.so.6');
export const c_socket = libc.func('int socket(int domain, int type, int protocol)');
export const c_close = libc.func('int close(int fd)');
export const c_bind = libc.func('int bind(int fd, const void *addr, uint32_t len)');
export const c_inet_pton = libc.func('int inet_pton(int af, const char *src, _Out_ void *dst)');
/** The 4 or 16 bytes of an IPv4 or IPv6 literal (inet_pton); null when it is neither. */
export function inetPton(ip: string): Buffer | null {
  const v4 = !ip.includes(':');
  const b = Buffer.alloc(v4 ? 4 : 16);
  return (c_inet_pton(v4 ? AF_INET : AF_INET6, ip, b) as number) === 1 ? b : null;
}
export const c_inet_ntop = libc.func('const char *inet_ntop(int af, const void *src, _Out_ char *dst, uint32_t size)');

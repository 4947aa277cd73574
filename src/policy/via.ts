// A policy's `via` and the global --upstream: how a connection reaches its destination, "direct" or
// through an upstream SOCKS5 proxy given as socks5://[user:pass@]host:port. Parsed here, where the
// policy decides; transport/upstream.ts speaks SOCKS5 to it.
import { isIPv6 } from 'node:net';

/** Where to chain to: socks5://[user:pass@]host:port. */
export interface Upstream {
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** the URL without the password, for logs and the API */
  display: string;
}

/** Parses an upstream URL; returns an error message naming `what` (the flag or field) when it is wrong. */
export function parseUpstream(text: string, what: string): Upstream | string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return `${what}: "${text}" is not a URL; expected socks5://[user:pass@]host:port`;
  }
  if (url.protocol !== 'socks5:' && url.protocol !== 'socks5h:') return `${what}: scheme "${url.protocol.replace(/:$/, '')}" is not supported; expected socks5://[user:pass@]host:port`;
  if (url.pathname !== '' && url.pathname !== '/') return `${what}: unexpected path "${url.pathname}" in "${text}"`;
  if (url.search !== '' || url.hash !== '') return `${what}: unexpected query or fragment in "${text}"`;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') return `${what}: missing host in "${text}"`;
  if (url.port === '') return `${what}: missing port in "${text}" (e.g. socks5://${host}:1080)`;
  const username = decodeURIComponent(url.username);
  const password = decodeURIComponent(url.password);
  if (Buffer.byteLength(username) > 255 || Buffer.byteLength(password) > 255) return `${what}: username and password must be at most 255 bytes each (RFC 1929)`;
  if ((username === '') !== (password === '')) return `${what}: give both a username and a password, or neither`;
  const up: Upstream = { host, port: Number(url.port), display: `socks5://${username ? `${username}@` : ''}${isIPv6(host) ? `[${host}]` : host}:${url.port}` };
  if (username) {
    up.username = username;
    up.password = password;
  }
  return up;
}


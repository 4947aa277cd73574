// A policy's `via` and the global --upstream: how a connection reaches its destination, "direct" or
// through an upstream SOCKS5 proxy given as socks5://[user:pass@]host:port. Parsed here, where the
// policy decides; transport/upstream.ts speaks SOCKS5 to it.
import { isIPv6 } from 'node:net';
import type { Issue } from '../core/errors.js';
import { err, ok, type Result } from '../core/result.js';

/** Where to chain to: socks5://[user:pass@]host:port. */
export interface Upstream {
  host: string;
  port: number;
  username?: string;
  password?: string;
  /** the URL without the password, for logs and the API */
  display: string;
}

/** Percent-decoded text, or null when the encoding is malformed (decodeURIComponent would throw). */
function decode(text: string): string | null {
  try {
    return decodeURIComponent(text);
  } catch {
    return null;
  }
}

/** A refused upstream URL: `field` is the flag or field it came from, and the message begins with it. */
export interface UpstreamIssue extends Issue<'invalid'> {
  field: string;
}

/** Parses an upstream URL given in `what` (the flag or field, named by an error). */
export function parseUpstream(text: string, what: string): Result<Upstream, UpstreamIssue> {
  const invalid = (why: string): Result<Upstream, UpstreamIssue> => err({ code: 'invalid', field: what, message: `${what}: ${why}` });
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return invalid(`"${text}" is not a URL; expected socks5://[user:pass@]host:port`);
  }
  if (url.protocol !== 'socks5:' && url.protocol !== 'socks5h:') return invalid(`scheme "${url.protocol.replace(/:$/, '')}" is not supported; expected socks5://[user:pass@]host:port`);
  if (url.pathname !== '' && url.pathname !== '/') return invalid(`unexpected path "${url.pathname}" in "${text}"`);
  if (url.search !== '' || url.hash !== '') return invalid(`unexpected query or fragment in "${text}"`);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') return invalid(`missing host in "${text}"`);
  if (url.port === '') return invalid(`missing port in "${text}" (e.g. socks5://${host}:1080)`);
  const username = decode(url.username);
  const password = decode(url.password);
  if (username === null || password === null) return invalid('bad percent-encoding in the username or password');
  if (Buffer.byteLength(username) > 255 || Buffer.byteLength(password) > 255) return invalid(`username and password must be at most 255 bytes each (RFC 1929)`);
  if ((username === '') !== (password === '')) return invalid(`give both a username and a password, or neither`);
  const up: Upstream = { host, port: Number(url.port), display: `socks5://${username ? `${username}@` : ''}${isIPv6(host) ? `[${host}]` : host}:${url.port}` };
  if (username) {
    up.username = username;
    up.password = password;
  }
  return ok(up);
}


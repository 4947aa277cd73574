// A policy's match and transport as one line of text, the same in the policies list and the
// connections table.
import type { KeepAlive, PolicyMatch, Transport } from './types.js';

/** {host: "*.example.com", port: 443} -> "*.example.com port 443" */
export function matchText(m: PolicyMatch): string {
  const what = m.host ?? m.cidr ?? '(any)';
  return m.port === undefined ? what : `${what} port ${m.port}`;
}

export function keepAliveText(k: KeepAlive | false | undefined): string | null {
  if (k === undefined) return null;
  if (k === false) return 'keepalive off';
  return `keepalive ${k.idle}/${k.interval}/${k.count}`;
}

/** {mptcp: true, congestion: "bbr"} -> "MPTCP, bbr" */
export function transportText(t: Transport): string {
  const parts: string[] = [];
  if (t.mptcp !== undefined) parts.push(t.mptcp ? 'MPTCP' : 'TCP');
  if (t.congestion) parts.push(t.congestion);
  if (t.noDelay !== undefined) parts.push(t.noDelay ? 'nodelay' : 'Nagle');
  const ka = keepAliveText(t.keepAlive);
  if (ka) parts.push(ka);
  if (t.scheduler) parts.push(`scheduler ${t.scheduler}`);
  if (t.pathManager) parts.push(`path manager ${t.pathManager}${t.subflows ? ` (${t.subflows} subflows)` : ''}`);
  if (t.backup && t.backup.length > 0) parts.push(`backup ${t.backup.join(', ')}`);
  return parts.length > 0 ? parts.join(', ') : 'as the default';
}

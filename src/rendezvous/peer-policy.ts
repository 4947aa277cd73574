// Which peers a TURN allocation may reach. By default none of the addresses that would make the
// relay an SSRF into the operator's own network: loopback, private, link-local, CGNAT, multicast,
// unspecified. The allowlist overrides the denylist (a lab, or a relay for one's own LAN on purpose).
import { CidrList, parseIp } from '../net/address.js';

export const DEFAULT_DENIED_PEERS = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '224.0.0.0/4',
  '240.0.0.0/4',
  '::/128',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
  'ff00::/8',
];

export class PeerPolicy {
  private readonly allow: CidrList;
  private readonly deny: CidrList;

  constructor(allow: readonly string[], deny: readonly string[]) {
    this.allow = CidrList.parse(allow, '--turn-allow-peers');
    this.deny = CidrList.parse([...DEFAULT_DENIED_PEERS, ...deny], '--turn-deny-peers');
  }

  /** true when an allocation may exchange datagrams with `ip`. */
  permits(ip: string): boolean {
    const p = parseIp(ip);
    if (!p) return false;
    return this.allow.contains(p) || !this.deny.contains(p);
  }
}

// Whether an address is this machine's own: what a transparent listener (TPROXY) checks before it
// dials a connection's original destination, which would otherwise be itself.
import { networkInterfaces } from 'node:os';
import { canonicalIp, isLoopback, isUnspecified, parseIp } from './address.js';

/** How long the interfaces' addresses are kept before they are read again. */
const REREAD_MS = 5000;

/** This machine's addresses (every interface), re-read at most every few seconds. */
export class LocalAddresses {
  private set = new Set<string>();
  private readAt = -Infinity;

  /** Loopback, the unspecified address, or an address of one of this machine's interfaces (canonical form). */
  isSelf(ip: string): boolean {
    const p = parseIp(ip);
    if (!p || isUnspecified(ip) || isLoopback(p)) return true;
    const now = performance.now();
    if (now - this.readAt > REREAD_MS) {
      this.set = new Set();
      for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) this.set.add(canonicalIp(a.address));
      this.readAt = now;
    }
    return this.set.has(ip);
  }
}

// From a requested destination to a connected outgoing socket: name resolution on the gateway,
// the destination deny list, the policy decision and the dial. Protocol-neutral: the SOCKS server
// uses it now, the transparent interceptor later.
import { lookup } from 'node:dns/promises';
import { CidrList, parseIp } from '../policy/address.js';
import type { PolicyDecision, PolicyService } from '../policy/service.js';
import { dial, type DialResult } from './dialer.js';

export interface OutboundSettings {
  policies: PolicyService;
  /** destinations never connected to */
  deny: CidrList;
  /** ms for the whole connect (all resolved addresses together) */
  connectTimeout: number;
}

export interface OutboundRequest {
  host?: string;
  ip?: string;
  port: number;
}

export interface Outbound extends DialResult {
  decision: PolicyDecision;
  address: string;
}

function errnoError(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/** Resolves a name on the gateway; addresses in the order the resolver gives them. */
export async function resolveHost(host: string): Promise<string[]> {
  const found = await lookup(host, { all: true, verbatim: true });
  return found.map((a) => a.address);
}

/** true when the address is on the deny list. */
export function isDenied(deny: CidrList, address: string): boolean {
  if (deny.size === 0) return false;
  const ip = parseIp(address);
  return ip !== null && deny.contains(ip);
}

/**
 * Connects to the destination with its policy. Rejects with an errno-coded error: EACCES for a
 * denied destination, ENOTFOUND for an unknown name, or the connect error of the last address tried.
 */
export async function connectOutbound(req: OutboundRequest, s: OutboundSettings): Promise<Outbound> {
  const deadline = Date.now() + s.connectTimeout;
  const candidates = req.ip !== undefined ? [req.ip] : await resolveHost(req.host!);
  const allowed = candidates.filter((a) => !isDenied(s.deny, a));
  if (allowed.length === 0) {
    throw errnoError('EACCES', `destination ${req.host ?? req.ip} (${candidates.join(', ')}) is on the deny list`);
  }
  let lastError: unknown = errnoError('EHOSTUNREACH', `no address for ${req.host}`);
  for (const address of allowed) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) break;
    const decision = s.policies.decide({ host: req.host, ip: address, port: req.port });
    try {
      const r = await dial({ address, port: req.port, transport: decision.transport, connectTimeout: remaining });
      return { ...r, decision, address };
    } catch (e) {
      lastError = e;
    }
  }
  throw lastError;
}

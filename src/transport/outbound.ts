// From a requested destination to a connected outgoing socket: name resolution on the gateway,
// the destination deny list, the policy decision, and the dial: directly, or chained through an
// upstream SOCKS5 proxy. Protocol-neutral: the SOCKS server and the interceptor both use it.
import { lookup } from 'node:dns/promises';
import { CidrList, parseIp } from '../net/address.js';
import type { PolicyDecision, PolicyService } from '../policy/service.js';
import { parseUpstream, type Upstream } from '../policy/via.js';
import { socks5ConnectNow } from './upstream.js';
import { thePlane } from '../kernel/epoll-plane.js';
import { dialNow, type CancelSource, type DialOptions, type DialResult } from './dialer.js';

export interface OutboundSettings {
  policies: PolicyService;
  /** destinations never connected to */
  deny: CidrList;
  /** ms for the whole connect (all resolved addresses together) */
  connectTimeout: number;
  /** chain every connection through this SOCKS5 proxy unless its policy says otherwise (--upstream) */
  upstream?: Upstream | null;
  /** source address of outgoing connections (--bind-outgoing) */
  bindOutgoing?: string;
}

export interface OutboundRequest {
  host?: string;
  ip?: string;
  port: number;
  /**
   * keep this client address as the source (--transparent-source, intercepted connections):
   * IP_TRANSPARENT + bind to it; replies must be routed back through this machine
   */
  spoofSource?: string;
  /** the client: when it closes, connecting (and an upstream handshake) is abandoned */
  cancelOn?: CancelSource;
}

export interface Outbound extends DialResult {
  decision: PolicyDecision;
  /** the destination address (given or resolved); the host name when an upstream resolves it */
  address: string;
  /** the upstream the connection was chained through (display form, no password) */
  upstream?: string;
  /** bytes the upstream sent after its reply: the start of the destination's stream */
  pending?: Buffer;
}

/**
 * The Outbound of a dial, written out field by field in one order: an object spread with more
 * fields after it (`{ ...r, decision }`) took V8 (Node 20) ~2 us and a new hidden class per
 * connection, and every read of the result missed its inline cache (bench/README.md). `chained`:
 * the upstream's handshake gave the connection on (its fd, and what it sent after its reply).
 */
function outboundOf(r: DialResult, decision: PolicyDecision, address: string, chained?: { fd: number; upstream: string; pending: Buffer | undefined }): Outbound {
  return {
    fd: chained ? chained.fd : r.fd,
    parked: chained ? true : r.parked,
    local: r.local,
    mptcp: r.mptcp,
    mptcpNote: r.mptcpNote,
    notApplied: r.notApplied,
    decision,
    address,
    upstream: chained?.upstream,
    pending: chained?.pending,
  };
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

/** Parsed policy via URLs: a policy's URL is parsed once, not for every connection it matches. */
const parsedVia = new Map<string, Upstream | null>();

/** The upstream a decision says to use: its policy's via, else the global one; null = direct. */
function upstreamFor(decision: PolicyDecision, s: OutboundSettings): Upstream | null {
  const via = decision.via;
  if (via === undefined) return s.upstream ?? null;
  if (via === 'direct') return null;
  let up = parsedVia.get(via);
  if (up === undefined) {
    const parsed = parseUpstream(via, 'via');
    up = parsed.ok ? parsed.value : null; // the policy service only stores valid URLs
    if (parsedVia.size > 10_000) parsedVia.clear(); // bounded: policies come and go
    parsedVia.set(via, up);
  }
  return up;
}

/** Resolves `host`: its addresses, or the resolver's error (an upstream may still resolve it). */
async function tryResolve(host: string): Promise<string[] | { error: unknown }> {
  try {
    return await resolveHost(host);
  } catch (error) {
    return { error };
  }
}

/**
 * Dials the upstream at `address` with the destination's transport and asks it to connect to
 * `dest`, all in the plane (no promise): `done` as dialNow's, and `dialed` says whether the
 * upstream was reached (then its answer stands: no other address is tried).
 */
function chainNow(address: string, up: Upstream, dest: { host?: string; ip?: string; port: number }, decision: PolicyDecision, s: OutboundSettings, deadline: number, cancelOn: CancelSource | undefined, done: (err: unknown, out: Outbound | undefined, dialed: boolean) => void): void {
  dialNow({ address, port: up.port, transport: decision.transport, connectTimeout: Math.max(1, deadline - Date.now()), localAddress: s.bindOutgoing, cancelOn }, (err, r) => {
    if (err || !r) return done(err, undefined, false);
    socks5ConnectNow(r.fd, r.parked, up, dest, Math.max(1, deadline - Date.now()), cancelOn, (e, h) =>
      done(e, h && outboundOf(r, decision, dest.ip ?? dest.host ?? '', { fd: h.fd, upstream: up.display, pending: h.pending }), true),
    );
  });
}

/** chainNow over the upstream's addresses (its name resolved here), as a promise. */
async function chain(up: Upstream, dest: { host?: string; ip?: string; port: number }, decision: PolicyDecision, s: OutboundSettings, deadline: number, cancelOn?: CancelSource): Promise<Outbound> {
  const upstreamAddrs = parseIp(up.host) ? [up.host] : await resolveHost(up.host);
  let lastError: unknown = null;
  for (const address of upstreamAddrs) {
    if (deadline - Date.now() <= 0) break;
    const r = await new Promise<{ err: unknown; out?: Outbound; dialed: boolean }>((resolve) => {
      chainNow(address, up, dest, decision, s, deadline, cancelOn, (err, out, dialed) => {
        resolve({ err, out, dialed });
        thePlane().turn(); // settled in the poll callback, maybe
      });
    });
    if (r.out) return r.out;
    // the upstream answered, or the client is gone: no other address
    if (r.dialed || (r.err as NodeJS.ErrnoException).code === 'ECANCELED') throw r.err;
    lastError = r.err;
  }
  throw lastError ?? errnoError('ETIMEDOUT', `connect to upstream ${up.display} timed out`);
}

/** How to dial `address` of the request directly (no upstream), with its policy's transport. */
function directDial(req: OutboundRequest, s: OutboundSettings, address: string, decision: PolicyDecision, connectTimeout: number): DialOptions {
  return {
    address,
    port: req.port,
    transport: decision.transport,
    connectTimeout,
    localAddress: req.spoofSource ?? s.bindOutgoing,
    transparent: req.spoofSource !== undefined,
    cancelOn: req.cancelOn,
  };
}

/**
 * Connects to the destination with its policy, directly or through an upstream SOCKS5 proxy.
 * Rejects with an errno-coded error: EACCES for a denied destination, ENOTFOUND for an unknown
 * name, the connect error of the last address tried, or an UpstreamError with the upstream's reply.
 */
export async function connectOutbound(req: OutboundRequest, s: OutboundSettings): Promise<Outbound> {
  const deadline = Date.now() + s.connectTimeout;
  let candidates: string[];
  if (req.ip !== undefined) candidates = [req.ip];
  else {
    const resolved = await tryResolve(req.host!);
    if (!Array.isArray(resolved) || resolved.length === 0) {
      // not resolvable here: an upstream chosen by the name alone may resolve it at its end
      const byName = s.policies.decide({ host: req.host, port: req.port });
      const up = upstreamFor(byName, s);
      if (up) return chain(up, { host: req.host, port: req.port }, byName, s, deadline, req.cancelOn);
      throw Array.isArray(resolved) ? errnoError('ENOTFOUND', `no address for ${req.host}`) : resolved.error;
    }
    candidates = resolved;
  }
  const allowed = candidates.filter((a) => !isDenied(s.deny, a));
  if (allowed.length === 0) {
    throw errnoError('EACCES', `destination ${req.host ?? req.ip} (${candidates.join(', ')}) is on the deny list`);
  }
  // built only when needed: an Error captures a stack trace, which every connection would pay for
  let lastError: unknown = null;
  for (const address of allowed) {
    if (deadline - Date.now() <= 0) break;
    const r = await new Promise<{ err: unknown; out?: Outbound; final: boolean }>((resolve) => {
      connectAddress(req, s, address, deadline, (err, out, final) => {
        resolve({ err, out, final });
        thePlane().turn(); // settled in the poll callback, maybe
      });
    });
    if (r.out) return r.out;
    if (r.final) throw r.err;
    lastError = r.err;
  }
  throw lastError ?? errnoError('ETIMEDOUT', `connect to ${req.host ?? req.ip} timed out`);
}

/**
 * One address of the destination: its policy decides, and it is dialed directly or through the
 * upstream the policy names, in the plane (an upstream by name is resolved on Node's loop first).
 * `done` never runs before this returns; `final` says no other address is to be tried: connected,
 * the client is gone, or an upstream was chosen (its answer stands).
 */
function connectAddress(req: OutboundRequest, s: OutboundSettings, address: string, deadline: number, done: (err: unknown, out: Outbound | undefined, final: boolean) => void): void {
  const decision = s.policies.decide({ host: req.host, ip: address, port: req.port });
  const up = upstreamFor(decision, s);
  if (!up) {
    dialNow(directDial(req, s, address, decision, Math.max(1, deadline - Date.now())), (err, r) => done(err, r && outboundOf(r, decision, address), !err || err.code === 'ECANCELED'));
    return;
  }
  const dest = req.host !== undefined ? { host: req.host, port: req.port } : { ip: address, port: req.port };
  if (parseIp(up.host)) chainNow(up.host, up, dest, decision, s, deadline, req.cancelOn, (err, out) => done(err, out, true));
  else
    chain(up, dest, decision, s, deadline, req.cancelOn).then(
      (out) => done(null, out, true),
      (err: unknown) => done(err, undefined, true),
    );
}

/**
 * connectOutbound with a callback, for the connection path that runs in the plane's poll callback:
 * a destination given as an address, not denied, is dialed at once, directly or through an
 * upstream given by its address, and `done` runs as the connect (and the upstream's handshake)
 * finishes, with no promise and no wait for a turn of Node's loop (the SOCKS server's
 * one-connection-after-another latency); an upstream by name is resolved first. Everything else
 * (names to resolve, the deny list's refusal) goes through connectOutbound in setImmediate.
 * `done` never runs before this returns.
 */
export function connectOutboundNow(req: OutboundRequest, s: OutboundSettings, done: (err: unknown, out?: Outbound) => void): void {
  const ip = req.ip;
  if (ip !== undefined && !isDenied(s.deny, ip)) {
    connectAddress(req, s, ip, Date.now() + s.connectTimeout, done); // `final` is of no use here: one address
    return;
  }
  thePlane().soon(() => {
    connectOutbound(req, s).then(
      (out) => done(null, out),
      (err: unknown) => done(err),
    );
  });
}

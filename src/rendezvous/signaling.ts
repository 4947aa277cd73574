// The signaling hub of the rendezvous service: devices keep a presence connection (authenticated
// with their device token), clients connect with a login session token, list their user's devices
// and open sessions to one; the hub relays offer, answer, ICE candidates and close between exactly
// the two ends of a session, and nothing to anyone else. It knows connections only as "send a text
// frame" and "close": the WebSocket route wires it to ws.
//
// Every frame is validated (signal-messages.ts) and rate-limited per connection; a bad one gets an
// error frame and changes nothing, for that connection or any other. Frames of one connection are
// handled in order (a hello that looks up its token finishes before the next frame is read).
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { DeviceRecord } from '../store/store.js';
import { TokenBucket } from '../core/rate-limit.js';
import { parseSignalMessage, type CandidateMessage, type DescriptionMessage, type InboundMessage, type PathMessage } from './signal-messages.js';

/** WebSocket close codes the hub uses (4000-4999 are the application's). */
export const CloseCode = {
  /** unknown device token or session token */
  unauthorized: 4401,
  /** no hello within the hello timeout */
  helloTimeout: 4408,
  /** the device connected again: this older connection is replaced */
  replaced: 4409,
  /** the device or its user was removed */
  removed: 4410,
  /** too many connections, or a peer that keeps flooding past its rate limit */
  tooMany: 4429,
  /** the server stops */
  goingAway: 1001,
} as const;

/** Why a session ended, as both ends are told in a "closed" frame. */
export type SessionEndReason = 'peer_closed' | 'device_offline' | 'device_reconnected' | 'client_gone' | 'device_removed' | 'user_removed' | 'server_stopping';

/** A peer's TURN/STUN servers, as RTCPeerConnection takes them. */
export interface IceServer {
  urls: string[];
  username?: string;
  credential?: string;
}

export interface SignalConnection {
  send(text: string): void;
  close(code: number, reason: string): void;
}

export interface SignalingLimits {
  /** ms a new connection has to say hello */
  helloTimeoutMs: number;
  /** frames per second per connection, after a burst of `burst` */
  rate: number;
  burst: number;
  /** frames dropped for the rate before the connection is closed */
  maxDropped: number;
  /** open sessions per client connection and per device */
  sessionsPerClient: number;
  sessionsPerDevice: number;
  /** client connections per user */
  clientsPerUser: number;
}

export const DEFAULT_SIGNALING_LIMITS: SignalingLimits = { helloTimeoutMs: 10_000, rate: 50, burst: 200, maxDropped: 1000, sessionsPerClient: 16, sessionsPerDevice: 64, clientsPerUser: 32 };

export interface SignalingDeps {
  deviceByToken(token: string): Promise<DeviceRecord | null>;
  /** the user of a live login session token, or null */
  userOfSession(token: string): string | null;
  devicesOf(user: string): Promise<DeviceRecord[]>;
  /** fresh ICE servers (ephemeral TURN credentials) for one session of `user` */
  iceServers(user: string): IceServer[];
  logger: Logger;
  limits?: Partial<SignalingLimits>;
  now?: () => number;
}

interface Peer {
  conn: SignalConnection;
  role: 'pending' | 'device' | 'client';
  user: string;
  device: DeviceRecord | null;
  sessions: Set<string>;
  bucket: TokenBucket;
  dropped: number;
  helloTimer: NodeJS.Timeout | null;
  /** when it said hello (ms) */
  since: number;
  /** the frames of this connection, handled one after the other */
  queue: Promise<void>;
  gone: boolean;
}

interface Session {
  id: string;
  client: Peer;
  device: Peer;
  openedAt: number;
  /** the kinds of candidates each end sent (host, srflx, prflx, relay) */
  candidates: { client: CandidateCounts; device: CandidateCounts };
  /** the pair ICE chose, as an end reported it (the device's report wins: it is edgeward's own) */
  path: { by: 'client' | 'device'; report: Omit<PathMessage, 'type' | 'session'> } | null;
}

export type CandidateCounts = Record<'host' | 'srflx' | 'prflx' | 'relay', number>;

/** What the operators see of the hub: devices online, and sessions with their path. */
export interface HubView {
  online: Array<{ user: string; device: string; id: number; since: string }>;
  sessions: Array<{
    id: string;
    user: string;
    device: string;
    openedAt: string;
    path: 'direct' | 'relayed' | 'unknown';
    pair: { reportedBy: 'client' | 'device'; local: PathMessage['local']; remote: PathMessage['remote'] } | null;
    candidates: { client: CandidateCounts; device: CandidateCounts };
  }>;
}

const noCandidates = (): CandidateCounts => ({ host: 0, srflx: 0, prflx: 0, relay: 0 });

/** What the hub counts (the service's metrics). */
export interface SignalingCounters {
  frames: number;
  errors: number;
  rateLimited: number;
  sessionsOpened: number;
}

/** One connection as the route sees it: hand it each text frame, and tell it when it closed. */
export interface AttachedConnection {
  frame(text: string): void;
  closed(): void;
}

export class SignalingHub {
  private readonly limits: SignalingLimits;
  private readonly now: () => number;
  /** device id -> its presence connection */
  private readonly devices = new Map<number, Peer>();
  /** user -> client connections */
  private readonly clients = new Map<string, Set<Peer>>();
  private readonly sessions = new Map<string, Session>();
  readonly counters: SignalingCounters = { frames: 0, errors: 0, rateLimited: 0, sessionsOpened: 0 };

  constructor(private readonly deps: SignalingDeps) {
    this.limits = { ...DEFAULT_SIGNALING_LIMITS, ...deps.limits };
    this.now = deps.now ?? (() => Date.now());
  }

  /** Devices with a presence connection now. */
  get devicesOnline(): number {
    return this.devices.size;
  }

  get clientCount(): number {
    let n = 0;
    for (const set of this.clients.values()) n += set.size;
    return n;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  isOnline(deviceId: number): boolean {
    return this.devices.has(deviceId);
  }

  /** Devices online and open sessions, for the operators (GET /api/v1/rendezvous/status). */
  view(): HubView {
    const iso = (ms: number): string => new Date(ms).toISOString();
    return {
      online: [...this.devices.values()].map((p) => ({ user: p.user, device: p.device!.name, id: p.device!.id, since: iso(p.since) })),
      sessions: [...this.sessions.values()].map((s) => ({
        id: s.id,
        user: s.client.user,
        device: s.device.device!.name,
        openedAt: iso(s.openedAt),
        path: s.path === null ? 'unknown' : s.path.report.relayed ? 'relayed' : 'direct',
        pair: s.path === null ? null : { reportedBy: s.path.by, local: s.path.report.local, remote: s.path.report.remote },
        candidates: s.candidates,
      })),
    };
  }

  /** A new connection: it must say hello within the hello timeout. */
  attach(conn: SignalConnection): AttachedConnection {
    const peer: Peer = { conn, role: 'pending', user: '', device: null, sessions: new Set(), bucket: new TokenBucket(this.limits.rate, this.limits.burst, this.now()), dropped: 0, helloTimer: null, since: 0, queue: Promise.resolve(), gone: false };
    peer.helloTimer = setTimeout(() => {
      if (peer.role === 'pending' && !peer.gone) this.drop(peer, CloseCode.helloTimeout, `no hello within ${this.limits.helloTimeoutMs} ms`);
    }, this.limits.helloTimeoutMs);
    peer.helloTimer.unref();
    return {
      frame: (text) => this.frame(peer, text),
      closed: () => this.gone(peer),
    };
  }

  /** A device was removed: its connection closes and its sessions end. */
  deviceRemoved(id: number): void {
    const p = this.devices.get(id);
    if (p) this.drop(p, CloseCode.removed, 'the device was removed', 'device_removed');
  }

  /** A user was removed: their devices' and clients' connections close. */
  userRemoved(user: string): void {
    for (const p of [...this.devices.values()]) if (p.user === user) this.drop(p, CloseCode.removed, 'the user was removed', 'user_removed');
    for (const p of [...(this.clients.get(user) ?? [])]) this.drop(p, CloseCode.removed, 'the user was removed', 'user_removed');
  }

  /** Closes every connection (the server stops); sessions end with server_stopping. */
  close(): void {
    for (const p of [...this.devices.values()]) this.drop(p, CloseCode.goingAway, 'server stopping', 'server_stopping');
    for (const set of [...this.clients.values()]) for (const p of [...set]) this.drop(p, CloseCode.goingAway, 'server stopping', 'server_stopping');
  }

  private frame(peer: Peer, text: string): void {
    if (peer.gone) return;
    this.counters.frames++;
    if (!peer.bucket.take(1, this.now())) {
      this.counters.rateLimited++;
      if (++peer.dropped > this.limits.maxDropped) {
        this.drop(peer, CloseCode.tooMany, 'too many frames over the rate limit');
        return;
      }
      // one error frame per `rate` frames dropped: the answer to a flood must not be a flood
      if (peer.dropped === 1 || peer.dropped % this.limits.rate === 0) this.error(peer, 'rate_limited', `more than ${this.limits.rate} frames a second: frames are dropped`);
      return;
    }
    const parsed = parseSignalMessage(text);
    if (!parsed.ok) {
      this.error(peer, parsed.issue.code, parsed.issue.message);
      return;
    }
    const m = parsed.value;
    peer.queue = peer.queue
      .then(() => (peer.gone ? undefined : this.handle(peer, m)))
      .catch((e: unknown) => {
        this.deps.logger.error('signaling: a frame failed', { type: m.type, error: String(e) });
        this.error(peer, 'internal', 'the server failed on this frame', m.type);
      });
  }

  private async handle(peer: Peer, m: InboundMessage): Promise<void> {
    if (m.type === 'hello') return this.hello(peer, m);
    if (peer.role === 'pending') return this.error(peer, 'not_authenticated', 'say hello first: {"type":"hello","role":"device","token":...} or {"type":"hello","role":"client","session":...}', m.type);
    switch (m.type) {
      case 'devices':
        if (peer.role !== 'client') return this.error(peer, 'not_allowed', 'only clients list devices', m.type);
        return this.send(peer, { type: 'devices', devices: await this.deviceList(peer.user) });
      case 'open':
        return this.open(peer, m.device, m.ref);
      case 'offer':
      case 'answer':
      case 'candidate':
        return this.forward(peer, m);
      case 'path': {
        const s = this.sessions.get(m.session);
        if (!s || (s.client !== peer && s.device !== peer)) return this.error(peer, 'no_such_session', `no session "${m.session}" of this connection`, m.type);
        const by = s.device === peer ? 'device' : 'client';
        if (by === 'device' || s.path?.by !== 'device') s.path = { by, report: { relayed: m.relayed, local: m.local, remote: m.remote } };
        return;
      }
      case 'close': {
        const s = this.sessions.get(m.session);
        if (!s || (s.client !== peer && s.device !== peer)) return this.error(peer, 'no_such_session', `no session "${m.session}" of this connection`, m.type);
        this.endSession(s, 'peer_closed', peer, m.reason);
        return;
      }
    }
  }

  private async hello(peer: Peer, m: Extract<InboundMessage, { type: 'hello' }>): Promise<void> {
    if (peer.role !== 'pending') return this.error(peer, 'already_authenticated', 'this connection said hello already', 'hello');
    if (m.role === 'device') {
      const device = await this.deps.deviceByToken(m.token);
      if (peer.gone) return;
      if (!device) {
        this.error(peer, 'unauthorized', 'unknown device token', 'hello');
        this.drop(peer, CloseCode.unauthorized, 'unknown device token');
        return;
      }
      const old = this.devices.get(device.id);
      // the device keeps its identity; what its older connection had ends, with the reason
      if (old) this.drop(old, CloseCode.replaced, 'replaced by a new connection of this device', 'device_reconnected');
      this.authenticated(peer, 'device', device.username, device);
      this.devices.set(device.id, peer);
      this.send(peer, { type: 'welcome', role: 'device', user: device.username, device: { id: device.id, name: device.name } });
      this.presence(device, true);
      return;
    }
    const user = this.deps.userOfSession(m.session);
    if (!user) {
      this.error(peer, 'unauthorized', 'unknown or expired session token: log in again (POST /api/v1/rendezvous/login)', 'hello');
      this.drop(peer, CloseCode.unauthorized, 'unknown or expired session token');
      return;
    }
    const mine = this.clients.get(user) ?? new Set<Peer>();
    if (mine.size >= this.limits.clientsPerUser) {
      this.error(peer, 'too_many_connections', `a user may hold ${this.limits.clientsPerUser} client connections at once`, 'hello');
      this.drop(peer, CloseCode.tooMany, 'too many client connections for this user');
      return;
    }
    this.authenticated(peer, 'client', user, null);
    mine.add(peer);
    this.clients.set(user, mine);
    this.send(peer, { type: 'welcome', role: 'client', user });
  }

  private authenticated(peer: Peer, role: 'device' | 'client', user: string, device: DeviceRecord | null): void {
    peer.role = role;
    peer.user = user;
    peer.device = device;
    peer.since = this.now();
    if (peer.helloTimer) clearTimeout(peer.helloTimer);
    peer.helloTimer = null;
  }

  private async deviceList(user: string): Promise<Array<{ id: number; name: string; online: boolean }>> {
    return (await this.deps.devicesOf(user)).map((d) => ({ id: d.id, name: d.name, online: this.devices.has(d.id) }));
  }

  private async open(peer: Peer, name: string, ref: string | undefined): Promise<void> {
    if (peer.role !== 'client') return this.error(peer, 'not_allowed', 'only clients open sessions', 'open');
    // only this user's devices are looked at: another user's device is as unknown as a missing one
    const record = (await this.deps.devicesOf(peer.user)).find((d) => d.name === name);
    if (peer.gone) return;
    if (!record) return this.error(peer, 'no_such_device', `you have no device "${name}"`, 'open', ref);
    const device = this.devices.get(record.id);
    if (!device) return this.error(peer, 'device_offline', `device "${name}" is offline`, 'open', ref);
    if (peer.sessions.size >= this.limits.sessionsPerClient) return this.error(peer, 'too_many_sessions', `a client connection may hold ${this.limits.sessionsPerClient} sessions`, 'open', ref);
    if (device.sessions.size >= this.limits.sessionsPerDevice) return this.error(peer, 'too_many_sessions', `device "${name}" holds ${this.limits.sessionsPerDevice} sessions already`, 'open', ref);
    const s: Session = { id: randomBytes(12).toString('base64url'), client: peer, device, openedAt: this.now(), candidates: { client: noCandidates(), device: noCandidates() }, path: null };
    this.sessions.set(s.id, s);
    peer.sessions.add(s.id);
    device.sessions.add(s.id);
    this.counters.sessionsOpened++;
    this.send(device, { type: 'session', session: s.id, user: peer.user, iceServers: this.deps.iceServers(peer.user) });
    this.send(peer, { type: 'opened', session: s.id, device: { id: record.id, name: record.name }, iceServers: this.deps.iceServers(peer.user), ...(ref !== undefined ? { ref } : {}) });
  }

  /** Offer, answer and candidates go to the other end of the session, and nowhere else. */
  private forward(peer: Peer, m: DescriptionMessage | CandidateMessage): void {
    const s = this.sessions.get(m.session);
    if (!s || (s.client !== peer && s.device !== peer)) return this.error(peer, 'no_such_session', `no session "${m.session}" of this connection`, m.type);
    // the kinds of candidates each end offers: trickled, or in its offer or answer
    const counts = s.candidates[s.client === peer ? 'client' : 'device'];
    const text = m.type === 'candidate' ? (m.candidate?.candidate ?? '') : m.sdp;
    for (const [, kind] of text.matchAll(/ typ (host|srflx|prflx|relay)\b/g)) counts[kind as keyof CandidateCounts]++;
    this.send(s.client === peer ? s.device : s.client, m);
  }

  private endSession(s: Session, reason: SessionEndReason, by?: Peer, detail?: string): void {
    if (!this.sessions.delete(s.id)) return;
    s.client.sessions.delete(s.id);
    s.device.sessions.delete(s.id);
    const frame = { type: 'closed', session: s.id, reason, ...(detail !== undefined ? { detail } : {}) };
    for (const p of [s.client, s.device]) if (p !== by) this.send(p, frame);
  }

  /** Tells the user's clients that a device came or went. */
  private presence(device: DeviceRecord, online: boolean): void {
    for (const c of this.clients.get(device.username) ?? []) this.send(c, { type: 'presence', device: { id: device.id, name: device.name }, online });
  }

  /** Closes a connection and ends its sessions: the other ends hear `reason`. */
  private drop(peer: Peer, code: number, text: string, reason?: SessionEndReason): void {
    this.gone(peer, reason);
    try {
      peer.conn.close(code, text);
    } catch {
      /* already closed */
    }
  }

  /** A connection went away (closed by either side): its sessions end, presence updates. */
  private gone(peer: Peer, reason?: SessionEndReason): void {
    if (peer.gone) return;
    peer.gone = true;
    if (peer.helloTimer) clearTimeout(peer.helloTimer);
    const why: SessionEndReason = reason ?? (peer.role === 'device' ? 'device_offline' : 'client_gone');
    for (const id of [...peer.sessions]) {
      const s = this.sessions.get(id);
      if (s) this.endSession(s, why, peer);
    }
    if (peer.role === 'device' && peer.device && this.devices.get(peer.device.id) === peer) {
      this.devices.delete(peer.device.id);
      this.presence(peer.device, false);
    }
    if (peer.role === 'client') {
      const set = this.clients.get(peer.user);
      set?.delete(peer);
      if (set && set.size === 0) this.clients.delete(peer.user);
    }
  }

  private send(peer: Peer, frame: object): void {
    if (peer.gone) return;
    try {
      peer.conn.send(JSON.stringify(frame));
    } catch {
      this.gone(peer);
    }
  }

  private error(peer: Peer, code: string, message: string, ref?: string, clientRef?: string): void {
    this.counters.errors++;
    this.send(peer, { type: 'error', code, message, ...(ref !== undefined ? { for: ref } : {}), ...(clientRef !== undefined ? { ref: clientRef } : {}) });
  }
}

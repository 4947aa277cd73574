// The TURN requests and indications of clients over UDP, TCP and TLS (RFC 8656): Allocate, Refresh,
// CreatePermission, ChannelBind (long-term credentials: TURN REST usernames, or users of the store
// with their MD5(user:realm:password) key; stateless nonces; MESSAGE-INTEGRITY or
// MESSAGE-INTEGRITY-SHA256, answered in kind), Send indications and ChannelData. State lives in
// allocations.ts; who may be a peer in peer-policy.ts.
import {
  Attr,
  CHANNEL_MAX,
  CHANNEL_MIN,
  checkMessageIntegrity,
  checkMessageIntegritySha256,
  decodeString,
  decodeUint32,
  decodeXorAddress,
  getAttr,
  parseChannelData,
  StunClass,
  StunMessageBuilder,
  StunMethod,
  type StunMessage,
} from '../codec/stun.js';
import type { Socket } from 'node:net';
import type { TurnKey } from '../store/store.js';
import { AllocationTable, DEFAULT_LIFETIME_S, MAX_LIFETIME_S, type Allocation, type Family } from './allocations.js';
import { SourceBuckets } from '../core/rate-limit.js';
import { connectToPeer, MAX_PEER_CONNECTIONS } from './tcp-relay.js';
import type { PeerPolicy } from './peer-policy.js';
import { Nonces, restCredentialKeys } from './turn-auth.js';

export interface TurnOptions {
  realm: string;
  /** TURN REST secrets, newest first */
  secrets: readonly string[];
  /** relay addresses by family (at least one): IPv6 relays need an IPv6 one */
  relayIps: Partial<Record<Family, string>>;
  peers: PeerPolicy;
  maxAllocations: number;
  /** allocations one user (the USER of a REST username, or a user of the store) may hold */
  maxAllocationsPerUser: number;
  /** bytes per second each way per allocation; 0 = no limit */
  bandwidth: number;
  /** 401/438 answers per second per source address */
  authRate: number;
  /** relay ports; absent: the kernel's ephemeral ports */
  relayPorts?: { low: number; high: number };
  /** announced instead of the relay address of its family in relayed addresses (1:1 NAT) */
  externalIp?: string;
  software: string;
  /** the TURN key of a user of the store (null: no such user, or no TURN for them) */
  userKey(username: string): Promise<TurnKey | null>;
}

/** What TURN counts; the service turns these into metric families (never labelled by user). */
export interface TurnCounters {
  allocations: number;
  /** 401s to requests without credentials: the first round of every allocation */
  challenges: number;
  /** wrong, expired or unknown credentials (401), stale or foreign nonces (438) */
  authFailures: number;
  deniedPeers: number;
  /** Allocates refused (486) for the total or the per-user quota */
  quotaRefusals: number;
  /** answers withheld from a source over its challenge budget, and 401s without a check to one over its failure budget */
  throttled: number;
}

/** REST usernames whose derived keys are kept. */
const REST_KEY_CACHE = 4096;
/** Refused credentials (wrong, expired, unknown; with a valid nonce) per source address: a burst, then one per 10 s. */
export const FAILURE_BUDGET = { burst: 10, perSecond: 0.1 };

/** How a client talks to the server: UDP, TCP, or TLS over TCP (turns:). */
export type ClientTransport = 'udp' | 'tcp' | 'tls';
/** A client of the server: its address and how it talks to us. */
export type Client = { address: string; port: number; transport: ClientTransport };
/** A TCP or TLS connection that asked to become a data connection (ConnectionBind), and what it sent after the request. */
export type DataStream = { socket: Socket; rest: Buffer; taken: boolean };
type Send = (data: Buffer) => void;
/** Who a request was authenticated as, and how its answer is signed (in kind: SHA-256 for SHA-256). */
type Auth = { user: string; username: string; key: Buffer; sha256: boolean };

/** Attributes of TURN requests that this server understands. */
export const TURN_KNOWN = new Set<number>([
  Attr.USERNAME,
  Attr.REALM,
  Attr.NONCE,
  Attr.MESSAGE_INTEGRITY,
  Attr.MESSAGE_INTEGRITY_SHA256,
  Attr.REQUESTED_TRANSPORT,
  Attr.LIFETIME,
  Attr.XOR_PEER_ADDRESS,
  Attr.CHANNEL_NUMBER,
  Attr.DATA,
  Attr.REQUESTED_ADDRESS_FAMILY,
  Attr.EVEN_PORT,
  Attr.RESERVATION_TOKEN,
  Attr.PASSWORD_ALGORITHM,
  Attr.ADDITIONAL_ADDRESS_FAMILY,
  Attr.CONNECTION_ID,
]);

/**
 * The code point turnbis drafts gave ADDITIONAL-ADDRESS-FAMILY before RFC 8656 made it 0x8000; coturn
 * 4.6.1's clients (turnutils_uclient -Z) still send it.
 */
const DRAFT_ADDITIONAL_ADDRESS_FAMILY = 0x8032;

/** PASSWORD-ALGORITHM's value for MD5, the only key this server has for store users (RFC 8489 section 18.5). */
const PASSWORD_ALGORITHM_MD5 = 0x0001;

export class TurnHandler {
  readonly table: AllocationTable;
  private readonly nonces = new Nonces();
  readonly counters: TurnCounters = { allocations: 0, challenges: 0, authFailures: 0, deniedPeers: 0, quotaRefusals: 0, throttled: 0 };
  /** 401/438 answers per source address: `authRate` a second after a burst of 5 s worth */
  private readonly challengeBudget: SourceBuckets;
  private readonly failureBudget = new SourceBuckets(FAILURE_BUDGET.perSecond, FAILURE_BUDGET.burst);
  /** the keys of REST usernames seen lately (bounded; the oldest go first) */
  private readonly restKeys = new Map<string, { user: string; keys: Buffer[]; expiry: number }>();

  constructor(private readonly opts: TurnOptions) {
    this.challengeBudget = new SourceBuckets(opts.authRate, opts.authRate * 5);
    this.table = new AllocationTable({
      relayIps: opts.relayIps,
      maxAllocations: opts.maxAllocations,
      maxPerUser: opts.maxAllocationsPerUser,
      bandwidth: opts.bandwidth,
      ports: opts.relayPorts,
      externalIp: opts.externalIp,
      deniedRelayIps: new Set(Object.values(opts.relayIps).filter((ip) => !opts.peers.permits(ip))),
    });
  }

  /**
   * Whether a peer may get a permission: the policy says so, or it is this server's own relay
   * address (relay to relay; the table then lets datagrams reach only live relayed ports).
   */
  private peerAllowed(ip: string): boolean {
    return ip === this.opts.relayIps[4] || ip === this.opts.relayIps[6] || this.opts.peers.permits(ip);
  }

  /** true when the client has an allocation (a TCP connection may then carry ChannelData). */
  hasAllocation(client: Client): boolean {
    return this.table.get(key(client)) !== undefined;
  }

  /** A TCP client went away: its allocation ends with the connection (RFC 8656 section 3.1). */
  connectionClosed(client: Client): void {
    const a = this.table.get(key(client));
    if (a) this.table.remove(a);
  }

  close(): void {
    this.table.close();
  }

  /** ChannelData from a client: relayed to the channel's peer when bound, else dropped. */
  channelData(buf: Buffer, client: Client): boolean {
    const cd = parseChannelData(buf);
    if (!cd.ok) return false;
    const a = this.table.get(key(client));
    return a !== undefined && this.table.fromClientChannel(a, cd.value.channel, cd.value.data);
  }

  /** A Send indication: relayed when the allocation has a permission for the peer; no answer either way. */
  sendIndication(m: StunMessage, client: Client): void {
    const a = this.table.get(key(client));
    const peer = peerOf(m);
    const data = getAttr(m, Attr.DATA);
    if (!a || !peer || !data) return;
    const to = { address: this.table.inward(peer.address), port: peer.port };
    if (!this.peerAllowed(to.address)) return;
    this.table.toPeer(a, to, data.value);
  }

  /** Answers a TURN request (Allocate, Refresh, CreatePermission, ChannelBind). */
  async request(m: StunMessage, client: Client, fingerprint: boolean, send: Send, stream?: DataStream): Promise<void> {
    const respond = (cls: StunClass, fill: (b: StunMessageBuilder) => void, auth?: Auth): void => {
      const b = new StunMessageBuilder(m.method, cls, m.transactionId).addString(Attr.SOFTWARE, this.opts.software);
      fill(b);
      if (auth) {
        if (auth.sha256) b.addMessageIntegritySha256(auth.key);
        else b.addMessageIntegrity(auth.key);
      }
      if (fingerprint) b.addFingerprint();
      send(b.build());
    };
    const fail = (code: number, reason?: string, auth?: Auth): void => respond(StunClass.ErrorResponse, (b) => b.addErrorCode(code, reason), auth);
    // every 401/438 answer draws on the source's challenge budget: beyond it, silence, so a spoofed
    // flood is not reflected; a refused credential (with a nonce that proves the source receives
    // our answers) also draws on its failure budget
    const challenge = (code: 401 | 438, kind: 'first' | 'failure' | 'stale' | 'locked'): void => {
      if (!this.challengeBudget.take(client.address) || (kind === 'failure' && !this.failureBudget.take(client.address))) {
        this.counters.throttled++;
        return;
      }
      if (kind === 'first') this.counters.challenges++;
      else if (kind === 'locked') this.counters.throttled++;
      else this.counters.authFailures++;
      const reason = kind === 'locked' ? 'Unauthorized: too many refused credentials from this address; try again later' : undefined;
      respond(StunClass.ErrorResponse, (b) => b.addErrorCode(code, reason).addString(Attr.REALM, this.opts.realm).addString(Attr.NONCE, this.nonces.issue(client.address)));
    };

    // ---- authentication (RFC 8489 section 9.2) ----
    const sha256 = getAttr(m, Attr.MESSAGE_INTEGRITY_SHA256) !== undefined;
    if (!sha256 && !getAttr(m, Attr.MESSAGE_INTEGRITY)) return challenge(401, 'first'); // the normal first exchange
    const username = text(m, Attr.USERNAME);
    const realm = text(m, Attr.REALM);
    const nonce = text(m, Attr.NONCE);
    if (username === null || realm === null || nonce === null) return fail(400, 'Bad Request: USERNAME, REALM and NONCE are required with MESSAGE-INTEGRITY');
    // a source that spent its budget of refused credentials gets 401 without a check until it
    // recovers: a right guess looks like a wrong one, so guessing at speed learns nothing
    if (this.failureBudget.spent(client.address)) return challenge(401, 'locked');
    const algorithm = getAttr(m, Attr.PASSWORD_ALGORITHM);
    if (algorithm && (algorithm.value.length < 2 || algorithm.value.readUInt16BE(0) !== PASSWORD_ALGORITHM_MD5)) return fail(400, 'Bad Request: PASSWORD-ALGORITHM: only MD5 keys are offered');
    const fresh = this.nonces.check(nonce, client.address);
    if (fresh !== 'ok') return challenge(438, 'stale');
    if (realm !== this.opts.realm) return challenge(401, 'failure');
    const creds = await this.keysOf(username, realm);
    // an expired credential gets no new allocation, nor anything else: the client must fetch a new one
    if (!creds) return challenge(401, 'failure');
    // SHA-256 where the client offers it (the key is the same MD5 long-term key, section 9.2.2)
    const authKey = creds.keys.find((k) => (sha256 ? checkMessageIntegritySha256(m, k) : checkMessageIntegrity(m, k)));
    if (!authKey) return challenge(401, 'failure');
    const auth: Auth = { user: creds.user, username, key: authKey, sha256 };

    const k = key(client);
    if (m.method === StunMethod.Allocate) return this.allocate(m, client, auth, send, respond, fail);
    if (m.method === StunMethod.ConnectionBind) {
      // a new TCP or TLS connection of the client becomes the data connection of a peer connection
      const id = getAttr(m, Attr.CONNECTION_ID);
      const pending = id && id.value.length === 4 ? this.table.pendingConnection(id.value.readUInt32BE(0)) : undefined;
      if (!stream || !pending) return fail(400, 'Bad Request: ConnectionBind needs a new TCP connection and the CONNECTION-ID of a pending peer connection', auth);
      if (pending.allocation.username !== auth.username) return fail(441, undefined, auth);
      respond(StunClass.SuccessResponse, () => undefined, auth);
      stream.taken = true;
      this.table.connectionIds.bind(pending.conn.id, stream.socket, stream.rest, this.table.tcpEvents(pending.allocation));
      return;
    }
    const a = this.table.get(k);
    if (!a) return fail(437, undefined, auth);
    if (a.username !== username) return fail(441, undefined, auth);
    switch (m.method) {
      case StunMethod.Refresh: {
        const lifetime = lifetimeOf(m, DEFAULT_LIFETIME_S); // absent: the default, not 0 (which ends it)
        this.table.refresh(a, lifetime);
        return respond(StunClass.SuccessResponse, (b) => b.addUint32(Attr.LIFETIME, lifetime), auth);
      }
      case StunMethod.CreatePermission: {
        const peers = m.attributes.filter((x) => x.type === Attr.XOR_PEER_ADDRESS).map((x) => decodeXorAddress(x.value, m.transactionId));
        if (peers.length === 0 || peers.some((p) => !p.ok)) return fail(400, 'Bad Request: XOR-PEER-ADDRESS missing or malformed', auth);
        const ips = peers.map((p) => this.table.inward(p.ok ? p.value.ip : ''));
        if (ips.some((ip) => !this.table.hasFamilyOf(a, ip))) return fail(443, undefined, auth);
        if (ips.some((ip) => !this.peerAllowed(ip))) {
          this.counters.deniedPeers++;
          return fail(403, 'Forbidden: peer address not allowed', auth);
        }
        if (!this.table.permit(a, ips)) return fail(508, undefined, auth);
        return respond(StunClass.SuccessResponse, () => undefined, auth);
      }
      case StunMethod.Connect: {
        if (!a.tcp) return fail(400, 'Bad Request: Connect needs a TCP allocation (REQUESTED-TRANSPORT TCP)', auth);
        const named = peerOf(m);
        if (!named) return fail(400, 'Bad Request: XOR-PEER-ADDRESS is required', auth);
        const peer = { address: this.table.inward(named.address), port: named.port };
        if (!this.table.hasFamilyOf(a, peer.address)) return fail(443, undefined, auth);
        if (!this.peerAllowed(peer.address) || !this.table.reachable(peer)) {
          this.counters.deniedPeers++;
          return fail(403, 'Forbidden: peer address not allowed', auth);
        }
        const tcp = a.tcp;
        if ([...tcp.connections.values()].some((c) => c.peer.address === peer.address && c.peer.port === peer.port)) return fail(446, undefined, auth);
        if (tcp.connections.size >= MAX_PEER_CONNECTIONS || !this.table.permit(a, [peer.address])) return fail(508, undefined, auth);
        const conn = await connectToPeer(tcp, peer, this.table.connectionIds);
        if (!conn) return fail(447, undefined, auth);
        const cid = Buffer.alloc(4);
        cid.writeUInt32BE(conn.id, 0);
        return respond(StunClass.SuccessResponse, (b) => b.add(Attr.CONNECTION_ID, cid), auth);
      }
      case StunMethod.ChannelBind: {
        if (a.tcp) return fail(400, 'Bad Request: no channels on a TCP allocation', auth);
        const ch = getAttr(m, Attr.CHANNEL_NUMBER);
        const channel = ch && ch.value.length === 4 ? ch.value.readUInt16BE(0) : -1;
        const named = peerOf(m);
        if (channel < CHANNEL_MIN || channel > CHANNEL_MAX || !named) return fail(400, 'Bad Request: CHANNEL-NUMBER 0x4000-0x7FFF and XOR-PEER-ADDRESS are required', auth);
        const peer = { address: this.table.inward(named.address), port: named.port };
        if (!this.table.hasFamilyOf(a, peer.address)) return fail(443, undefined, auth);
        if (!this.peerAllowed(peer.address)) {
          this.counters.deniedPeers++;
          return fail(403, 'Forbidden: peer address not allowed', auth);
        }
        const r = this.table.bindChannel(a, channel, peer);
        if (r === 'conflict') return fail(400, 'Bad Request: channel or peer already bound otherwise', auth);
        if (r === 'quota') return fail(508, undefined, auth);
        return respond(StunClass.SuccessResponse, () => undefined, auth);
      }
      default:
        return fail(400, 'Bad Request: method not supported', auth);
    }
  }

  /**
   * The keys a USERNAME may have signed with: a TURN REST username ("EXPIRY:USER", or all digits
   * when REST secrets are set) gives one per active secret; any other name is a user of the store
   * with TURN access in this realm. Null: no such credential, or an expired one.
   */
  private async keysOf(username: string, realm: string): Promise<{ user: string; keys: Buffer[] } | null> {
    const rest = username.includes(':') || (/^\d+$/.test(username) && this.opts.secrets.length > 0);
    if (rest) {
      // the keys of a REST username never change (the secrets are fixed at start): derived once
      // (HMAC, SASLprep, MD5), then reused for its every request until it expires
      const now = Date.now();
      const cached = this.restKeys.get(username);
      if (cached) return cached.expiry * 1000 > now ? cached : null;
      const creds = restCredentialKeys(username, realm, this.opts.secrets, now);
      if (!creds.ok) return null;
      if (this.restKeys.size >= REST_KEY_CACHE) this.restKeys.delete(this.restKeys.keys().next().value!);
      const entry = { user: creds.user, keys: creds.keys, expiry: creds.expiry };
      this.restKeys.set(username, entry);
      return entry;
    }
    const k = await this.opts.userKey(username);
    return k && k.realm === realm ? { user: username, keys: [k.key] } : null;
  }

  private async allocate(m: StunMessage, client: Client, auth: Auth, send: Send, respond: (cls: StunClass, fill: (b: StunMessageBuilder) => void, auth?: Auth) => void, fail: (code: number, reason?: string, auth?: Auth) => void): Promise<void> {
    const existing = this.table.get(key(client));
    if (existing) {
      // a retransmitted Allocate gets the same answer; another one on this 5-tuple is a mismatch
      if (existing.transactionId.equals(m.transactionId)) return respond(StunClass.SuccessResponse, (b) => this.allocated(b, existing, client), auth);
      return fail(437, undefined, auth);
    }
    const rt = getAttr(m, Attr.REQUESTED_TRANSPORT);
    if (!rt || rt.value.length !== 4) return fail(400, 'Bad Request: REQUESTED-TRANSPORT is required', auth);
    const tcp = rt.value[0] === 6;
    if (rt.value[0] !== 17 && !tcp) return fail(442, undefined, auth);
    if (tcp && client.transport === 'udp') return fail(400, 'Bad Request: a TCP allocation needs a client over TCP or TLS (RFC 6062)', auth);
    if (tcp && (getAttr(m, Attr.EVEN_PORT) || getAttr(m, Attr.RESERVATION_TOKEN) || getAttr(m, Attr.ADDITIONAL_ADDRESS_FAMILY) || getAttr(m, DRAFT_ADDITIONAL_ADDRESS_FAMILY))) {
      return fail(400, 'Bad Request: EVEN-PORT, RESERVATION-TOKEN and dual allocations are for UDP relays', auth);
    }
    // the relay families (RFC 8656 section 7.2): the one asked for, or IPv4 (IPv6 on an IPv6-only
    // server), and with ADDITIONAL-ADDRESS-FAMILY an IPv6 relay too (a dual allocation); an IPv6
    // relay this server cannot give leaves the IPv4 one standing, with ADDRESS-ERROR-CODE 440
    const requested = getAttr(m, Attr.REQUESTED_ADDRESS_FAMILY);
    const additional = getAttr(m, Attr.ADDITIONAL_ADDRESS_FAMILY) ?? getAttr(m, DRAFT_ADDITIONAL_ADDRESS_FAMILY);
    if (requested && additional) return fail(400, 'Bad Request: REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY together', auth);
    const relayIps = this.opts.relayIps;
    let families: Family[];
    let ipv6Refused = false;
    if (requested) {
      const f = familyOf(requested.value);
      if (f === null || relayIps[f] === undefined) return fail(440, undefined, auth);
      families = [f];
    } else if (additional) {
      if (familyOf(additional.value) !== 6) return fail(400, 'Bad Request: ADDITIONAL-ADDRESS-FAMILY must be IPv6', auth);
      if (relayIps[4] === undefined) return fail(440, undefined, auth);
      families = relayIps[6] !== undefined ? [4, 6] : [4];
      ipv6Refused = relayIps[6] === undefined;
    } else {
      families = [relayIps[4] !== undefined ? 4 : 6];
    }
    const evenPort = getAttr(m, Attr.EVEN_PORT);
    const token = getAttr(m, Attr.RESERVATION_TOKEN);
    if (evenPort && token) return fail(400, 'Bad Request: EVEN-PORT and RESERVATION-TOKEN together', auth);
    if (token && (token.value.length !== 8 || requested || additional)) return fail(400, 'Bad Request: RESERVATION-TOKEN must be 8 bytes, without an address family attribute', auth);
    const lifetime = lifetimeOf(m, DEFAULT_LIFETIME_S);
    let a: Awaited<ReturnType<AllocationTable['create']>>;
    try {
      a = await this.table.create({
        key: key(client),
        client: { address: client.address, port: client.port },
        transport: client.transport,
        toClient: send,
        user: auth.user,
        username: auth.username,
        lifetimeS: lifetime === 0 ? DEFAULT_LIFETIME_S : lifetime,
        families,
        tcp,
        transactionId: Buffer.from(m.transactionId),
        even: evenPort ? { reserveNext: evenPort.value.length > 0 && (evenPort.value[0]! & 0x80) !== 0 } : undefined,
        reservation: token ? Buffer.from(token.value) : undefined,
      });
    } catch {
      return fail(508, undefined, auth);
    }
    if (a === 'quota' || a === 'user-quota') {
      this.counters.quotaRefusals++;
      return fail(486, a === 'user-quota' ? `Allocation Quota Reached: ${this.opts.maxAllocationsPerUser} per user` : undefined, auth);
    }
    if (a === 'unavailable') return fail(508, undefined, auth);
    this.counters.allocations++;
    const made = a;
    respond(
      StunClass.SuccessResponse,
      (b) => {
        this.allocated(b, made, client);
        if (made.reservationToken) b.add(Attr.RESERVATION_TOKEN, made.reservationToken);
        if (ipv6Refused) b.add(Attr.ADDRESS_ERROR_CODE, addressErrorCode(6, 440, 'Address Family not Supported'));
      },
      auth,
    );
  }

  private allocated(b: StunMessageBuilder, a: Allocation, client: Client): void {
    for (const r of this.table.announced(a)) b.addXorAddress(Attr.XOR_RELAYED_ADDRESS, r.address, r.port);
    b
      .addUint32(Attr.LIFETIME, Math.max(0, Math.round((a.expiresAt - Date.now()) / 1000)))
      .addXorAddress(Attr.XOR_MAPPED_ADDRESS, client.address, client.port);
  }

}

/** The family of a REQUESTED-/ADDITIONAL-ADDRESS-FAMILY value (0x01 IPv4, 0x02 IPv6); null for anything else. */
function familyOf(value: Buffer): Family | null {
  if (value.length !== 4) return null;
  return value[0] === 0x01 ? 4 : value[0] === 0x02 ? 6 : null;
}

/** An ADDRESS-ERROR-CODE value (RFC 8656 section 18.11): family, then class and number as in ERROR-CODE. */
function addressErrorCode(family: Family, code: number, reason: string): Buffer {
  const text = Buffer.from(reason, 'utf8');
  const v = Buffer.alloc(4 + text.length);
  v[0] = family === 4 ? 0x01 : 0x02;
  v[2] = Math.floor(code / 100);
  v[3] = code % 100;
  text.copy(v, 4);
  return v;
}

function key(c: Client): string {
  return `${c.transport}|${c.address}|${c.port}`;
}

function text(m: StunMessage, type: number): string | null {
  const a = getAttr(m, type);
  if (!a) return null;
  const r = decodeString(type, a.value);
  return r.ok ? r.value : null;
}

function peerOf(m: StunMessage): { address: string; port: number } | null {
  const a = getAttr(m, Attr.XOR_PEER_ADDRESS);
  if (!a) return null;
  const r = decodeXorAddress(a.value, m.transactionId);
  return r.ok ? { address: r.value.ip, port: r.value.port } : null;
}

/** The LIFETIME asked for, bounded to MAX_LIFETIME_S (0 stays 0: delete); `absent` when not given. */
function lifetimeOf(m: StunMessage, absent: number): number {
  const a = getAttr(m, Attr.LIFETIME);
  if (!a) return absent;
  const r = decodeUint32(a.value);
  if (!r.ok) return absent;
  return r.value === 0 ? 0 : Math.min(Math.max(r.value, 60), MAX_LIFETIME_S);
}

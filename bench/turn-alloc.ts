// TURN allocations per second: our own load client, built on edgeward's STUN/TURN codec. One
// allocation is the whole life of a short TURN session, as a browser makes it:
//   Allocate (no credentials) -> 401 with REALM and NONCE
//   Allocate with USERNAME/REALM/NONCE, REQUESTED-TRANSPORT UDP, MESSAGE-INTEGRITY -> success
//   ChannelBind 0x4000 to the echo peer -> success
//   Refresh LIFETIME 0 -> success (the allocation and its relay port are freed)
// Each of `concurrency` workers runs allocations back to back, each on a fresh UDP socket bound to
// a random source address in 127.100.0.0-127.199.255.255 (a new 5-tuple that no earlier allocation
// used: coturn answers 437 to an Allocate on a 5-tuple it freed less than ~1 s ago, and uclient's
// runs leave allocations behind on 127.0.0.1), until `seconds` have passed. A request is sent again after 500 ms
// without an answer and given up after 1 s; errors are counted by step and code.
import { createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import {
  Attr,
  checkMessageIntegrity,
  decodeErrorCode,
  decodeString,
  getAttr,
  longTermKey,
  parseStun,
  StunClass,
  StunMessageBuilder,
  StunMethod,
  type StunMessage,
} from '../src/codec/stun.js';

export interface AllocLoadOptions {
  serverPort: number;
  peerPort: number;
  /** TURN REST secret shared with the server */
  secret: string;
  /** allocations in flight, each worker on its own socket */
  concurrency: number;
  seconds: number;
  /** ms before a request is sent again; it is given up after twice this */
  rtoMs?: number;
}

export interface AllocSample {
  allocations: number;
  perSecond: number;
  /** from the first request to the last worker's end (may pass `seconds` by up to one give-up) */
  seconds: number;
  /** "allocate 401", "channelbind 400", "refresh timeout", "allocate bad response" ... (the expected first 401 is not an error) */
  errors: Record<string, number>;
  errorsTotal: number;
  /** requests sent a second time */
  retransmits: number;
  /** one whole allocation (four exchanges), milliseconds */
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  /** CPU of this (the client's) process over the sample, in cores: near 1.0 means the client set the pace */
  clientCpuCores: number;
}

const REQUESTED_TRANSPORT_UDP = Buffer.from([17, 0, 0, 0]);
const CHANNEL = 0x4000;

class StepError extends Error {
  constructor(readonly kind: string) {
    super(kind);
  }
}

/** One UDP socket with at most one transaction outstanding. */
class Transactions {
  private pending: { id: Buffer; resolve: (m: StunMessage) => void } | undefined;

  constructor(
    private readonly sock: dgram.Socket,
    private readonly port: number,
    private readonly rtoMs: number,
    private readonly onRetransmit: () => void,
  ) {
    sock.on('message', (buf) => {
      const p = this.pending;
      if (!p) return;
      const r = parseStun(buf);
      if (!r.ok || !r.value.transactionId.equals(p.id)) return; // a stray answer to an earlier send
      this.pending = undefined;
      p.resolve(r.value);
    });
  }

  /** Sends the request and resolves with its answer; throws StepError(`${step} timeout`). */
  request(step: string, msg: Buffer): Promise<StunMessage> {
    const id = Buffer.from(msg.subarray(8, 20));
    return new Promise<StunMessage>((resolve, reject) => {
      let retransmit: NodeJS.Timeout | undefined;
      let giveUp: NodeJS.Timeout | undefined;
      this.pending = {
        id,
        resolve: (m) => {
          clearTimeout(retransmit);
          clearTimeout(giveUp);
          resolve(m);
        },
      };
      const send = (): void => this.sock.send(msg, this.port, '127.0.0.1');
      send();
      retransmit = setTimeout(() => {
        this.onRetransmit();
        send();
      }, this.rtoMs);
      giveUp = setTimeout(() => {
        this.pending = undefined;
        reject(new StepError(`${step} timeout`));
      }, this.rtoMs * 2);
    });
  }

  /** Sends without waiting for an answer. */
  fire(msg: Buffer): void {
    this.sock.send(msg, this.port, '127.0.0.1');
  }
}

/** The error code of an error response, or a StepError naming what else came back. */
function expectSuccess(step: string, m: StunMessage, method: number): void {
  if (m.method !== method) throw new StepError(`${step} bad response`);
  if (m.cls === StunClass.SuccessResponse) return;
  if (m.cls === StunClass.ErrorResponse) {
    const e = getAttr(m, Attr.ERROR_CODE);
    const code = e ? decodeErrorCode(e.value) : undefined;
    throw new StepError(`${step} ${code?.ok ? code.value.code : 'error'}`);
  }
  throw new StepError(`${step} bad response`);
}

function text(m: StunMessage, type: number): string | undefined {
  const a = getAttr(m, type);
  if (!a) return undefined;
  const r = decodeString(type, a.value);
  return r.ok ? r.value : undefined;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** A random loopback source address (127.100.0.1-127.199.255.254), so that 5-tuples are not reused. */
function sourceAddress(): string {
  const r = randomBytes(3);
  return `127.${100 + (r[0]! % 100)}.${r[1]!}.${1 + (r[2]! % 254)}`;
}

function openSocket(): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    s.once('error', reject);
    s.bind(0, sourceAddress(), () => {
      s.removeListener('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

/** Runs the allocation load against 127.0.0.1:serverPort; never throws for what the server answers. */
export async function measureAllocations(o: AllocLoadOptions): Promise<AllocSample> {
  const rtoMs = o.rtoMs ?? 500;
  // TURN REST credential: username "EXPIRY:USER", password base64(HMAC-SHA1(secret, username))
  const username = `${Math.floor(Date.now() / 1000) + 3600}:bench`;
  const password = createHmac('sha1', o.secret).update(username).digest('base64');
  const keys = new Map<string, Buffer>();
  const keyFor = (realm: string): Buffer => {
    let k = keys.get(realm);
    if (!k) keys.set(realm, (k = longTermKey(username, realm, password)));
    return k;
  };
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  let allocations = 0;
  let retransmits = 0;
  const onRetransmit = (): void => void retransmits++;

  const oneAllocation = async (sock: dgram.Socket): Promise<void> => {
    const tx = new Transactions(sock, o.serverPort, rtoMs, onRetransmit);
    const request = (method: number): StunMessageBuilder => new StunMessageBuilder(method, StunClass.Request, randomBytes(12));
    // 1. no credentials: the server answers 401 with its realm and a nonce
    const first = await tx.request('allocate', request(StunMethod.Allocate).add(Attr.REQUESTED_TRANSPORT, REQUESTED_TRANSPORT_UDP).addFingerprint().build());
    if (first.method !== StunMethod.Allocate || first.cls !== StunClass.ErrorResponse) throw new StepError(first.cls === StunClass.SuccessResponse ? 'allocate without credentials succeeded' : 'allocate bad response');
    const code = getAttr(first, Attr.ERROR_CODE);
    const decoded = code ? decodeErrorCode(code.value) : undefined;
    if (!decoded?.ok || decoded.value.code !== 401) throw new StepError(`allocate ${decoded?.ok ? decoded.value.code : 'error'}`);
    const realm = text(first, Attr.REALM);
    const nonce = text(first, Attr.NONCE);
    if (realm === undefined || nonce === undefined) throw new StepError('allocate 401 without realm or nonce');
    const key = keyFor(realm);
    const authed = (b: StunMessageBuilder): Buffer =>
      b.addString(Attr.USERNAME, username).addString(Attr.REALM, realm).addString(Attr.NONCE, nonce).addMessageIntegrity(key).addFingerprint().build();
    const verified = (step: string, m: StunMessage): void => {
      if (!checkMessageIntegrity(m, key)) throw new StepError(`${step} bad integrity`);
    };
    // 2. with credentials
    const alloc = await tx.request('allocate-auth', authed(request(StunMethod.Allocate).add(Attr.REQUESTED_TRANSPORT, REQUESTED_TRANSPORT_UDP)));
    expectSuccess('allocate-auth', alloc, StunMethod.Allocate);
    verified('allocate-auth', alloc);
    if (!getAttr(alloc, Attr.XOR_RELAYED_ADDRESS)) throw new StepError('allocate-auth no relayed address');
    const free = (): Buffer => authed(request(StunMethod.Refresh).addUint32(Attr.LIFETIME, 0));
    try {
      // 3. a channel to the echo peer
      const cb = await tx.request('channelbind', authed(request(StunMethod.ChannelBind).addUint32(Attr.CHANNEL_NUMBER, CHANNEL << 16).addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', o.peerPort)));
      expectSuccess('channelbind', cb, StunMethod.ChannelBind);
      verified('channelbind', cb);
    } catch (e) {
      tx.fire(free()); // do not leave the allocation (and its relay port) behind
      throw e;
    }
    // 4. free it
    const rf = await tx.request('refresh', free());
    expectSuccess('refresh', rf, StunMethod.Refresh);
    verified('refresh', rf);
  };

  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + o.seconds * 1000;
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      let sock: dgram.Socket;
      try {
        sock = await openSocket();
      } catch (e) {
        const k = `socket ${(e as NodeJS.ErrnoException).code ?? 'error'}`;
        errors[k] = (errors[k] ?? 0) + 1;
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const start = performance.now();
      try {
        await oneAllocation(sock);
        allocations++;
        latencies.push(performance.now() - start);
      } catch (e) {
        const k = e instanceof StepError ? e.kind : `client ${(e as Error).message}`;
        errors[k] = (errors[k] ?? 0) + 1;
      } finally {
        sock.close();
      }
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  latencies.sort((a, b) => a - b);
  const r2 = (x: number): number => Math.round(x * 100) / 100;
  return {
    allocations,
    perSecond: allocations / seconds,
    seconds: Math.round(seconds * 1000) / 1000,
    errors,
    errorsTotal: Object.values(errors).reduce((a, b) => a + b, 0),
    retransmits,
    latencyMs: { p50: r2(percentile(latencies, 50)), p90: r2(percentile(latencies, 90)), p99: r2(percentile(latencies, 99)), max: r2(latencies.at(-1) ?? 0) },
    clientCpuCores: Math.round(((cpu.user + cpu.system) / 1e6 / seconds) * 1000) / 1000,
  };
}

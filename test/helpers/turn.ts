// What the TURN tests share: the gateway's STUN/TURN port, a metric's value, uclient's tally, and a
// raw UDP STUN client (one request at a time) with TURN REST signing.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { Attr, getAttr, longTermKey, parseStun, StunClass, StunMessageBuilder, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { restCredential } from '../../src/rendezvous/turn-auth.js';
import type { Gateway } from './edgeward.js';
import { closedPort } from './peers.js';
import { startProcess, type RunningProcess } from './process.js';

/** The port of a listening address the gateway logged ("listening" line, field `field`: turn, turnTls). */
export async function turnPort(g: Gateway, field = 'turn'): Promise<number> {
  const listening = await g.waitForLog((l) => l.msg === 'listening');
  const m = /^127\.0\.0\.1:(\d+)$/.exec(String(listening[field]));
  assert.ok(m, JSON.stringify(listening));
  return Number(m[1]);
}

/** The value of one series in a Prometheus text exposition; 0 when absent. */
export function metric(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

/** turnutils_uclient's final tally: every message it sent came back, and it sent at least `atLeast`. */
export function assertAllEchoed(out: string, atLeast: number): void {
  const m = /start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m.exec(out);
  assert.ok(m, `no tally in the output:\n${out}`);
  assert.ok(Number(m[1]) >= atLeast, `sent ${m[1]} messages, expected at least ${atLeast}:\n${out}`);
  assert.equal(Number(m[2]), Number(m[1]), `received fewer than sent:\n${out}`);
  assert.match(out, /Total lost packets 0 /);
}

/** The ERROR-CODE of a response as a number (0 when there is none). */
export function errorCode(m: StunMessage): number {
  const v = getAttr(m, Attr.ERROR_CODE)?.value;
  return v ? v[2]! * 100 + v[3]! : 0;
}

/** The reason phrase of a response's ERROR-CODE. */
export function errorReason(m: StunMessage): string {
  return getAttr(m, Attr.ERROR_CODE)?.value.subarray(4).toString() ?? '';
}

/** REQUESTED-TRANSPORT UDP (17) or TCP (6). */
export const requestedTransport =
  (protocol: 17 | 6 = 17) =>
  (b: StunMessageBuilder): StunMessageBuilder =>
    b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([protocol, 0, 0, 0]));

export interface UdpStunClient {
  readonly socket: dgram.Socket;
  /** sends one message and resolves with the answer (3 s at most) */
  ask(b: StunMessageBuilder): Promise<StunMessage>;
  close(): void;
}

/** A UDP socket on `from` that asks the server on 127.0.0.1:port one thing at a time. */
export async function udpStunClient(port: number, from = '127.0.0.1'): Promise<UdpStunClient> {
  const socket = dgram.createSocket('udp4');
  await new Promise<void>((r) => socket.bind(0, from, () => r()));
  return {
    socket,
    ask: (b) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer within 3 s')), 3000);
        socket.once('message', (msg) => {
          clearTimeout(timer);
          const p = parseStun(msg);
          if (p.ok) resolve(p.value);
          else reject(new Error('unparsable answer'));
        });
        socket.send(b.build(), port, '127.0.0.1');
      }),
    close: () => socket.close(),
  };
}

/** Requests signed with a credential after the 401 round: `request(method, fill)`. */
export interface SignedSession {
  request(method: number, fill: (b: StunMessageBuilder) => StunMessageBuilder): Promise<StunMessage>;
  close(): void;
}

/**
 * A raw client with a TURN REST credential for `user` (secret, realm): it takes its nonce from a
 * first, unsigned Allocate (401) and signs every request after that.
 */
export async function signedSession(port: number, opts: { secret: string; user: string; realm?: string; from?: string }): Promise<SignedSession> {
  const realm = opts.realm ?? 'edgeward';
  const client = await udpStunClient(port, opts.from);
  const c = restCredential(opts.user, opts.secret, 600);
  const key = longTermKey(c.username, realm, c.password);
  const nonce = getAttr(await client.ask(requestedTransport()(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12)))), Attr.NONCE)!.value.toString();
  return {
    request: (method, fill) =>
      client.ask(fill(new StunMessageBuilder(method, StunClass.Request, randomBytes(12))).addString(Attr.USERNAME, c.username).addString(Attr.REALM, realm).addString(Attr.NONCE, nonce).addMessageIntegrity(key)),
    close: () => client.close(),
  };
}

/** coturn's turnutils_peer (a UDP echo peer) on host, on a free port, given 300 ms to bind. */
export async function startTurnPeer(host = '127.0.0.1'): Promise<{ port: number; peer: RunningProcess }> {
  const port = await closedPort(host);
  const peer = startProcess(['turnutils_peer', '-p', String(port), '-L', host]);
  await new Promise((r) => setTimeout(r, 300));
  return { port, peer };
}

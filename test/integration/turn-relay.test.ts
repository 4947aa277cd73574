// A TURN client cannot take the relay down with a peer address no datagram can go to: a Send
// indication to port 0 (which Node's send refuses by throwing) loses that datagram only, and the
// next one to a real peer is relayed. Drives the TURN handler with real relay sockets on 127.0.0.1.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { Attr, decodeXorAddress, getAttr, longTermKey, parseStun, StunClass, StunMessageBuilder, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { PeerPolicy } from '../../src/rendezvous/peer-policy.js';
import { MAX_PERMISSIONS } from '../../src/rendezvous/allocations.js';
import { TurnHandler } from '../../src/rendezvous/turn-handler.js';

const SECRET = 's3cret';
const REALM = 'edgeward';
const client = { address: '127.0.0.1', port: 40001, transport: 'udp' as const };

function parsed(b: Buffer): StunMessage {
  const r = parseStun(b);
  assert.ok(r.ok);
  return r.value;
}

describe('a TURN send that cannot go out', () => {
  const turn = new TurnHandler({ realm: REALM, secrets: [SECRET], relayIps: { 4: '127.0.0.1' }, peers: new PeerPolicy(['127.0.0.0/8'], []), maxAllocations: 10, software: 'test', userKey: async () => null, maxAllocationsPerUser: 10, bandwidth: 0, authRate: 20 });
  const peer = dgram.createSocket('udp4');
  const received: Buffer[] = [];
  const username = `${Math.floor(Date.now() / 1000) + 600}:alice`;
  const key = longTermKey(username, REALM, createHmac('sha1', SECRET).update(username).digest('base64'));
  let nonce = '';

  async function ask(method: number, fill: (b: StunMessageBuilder) => StunMessageBuilder, signed = true): Promise<StunMessage> {
    let out: Buffer | null = null;
    const b = fill(new StunMessageBuilder(method, StunClass.Request, randomBytes(12)));
    if (signed) b.addString(Attr.USERNAME, username).addString(Attr.REALM, REALM).addString(Attr.NONCE, nonce).addMessageIntegrity(key);
    await turn.request(parsed(b.build()), client, false, (d) => (out = d));
    assert.ok(out);
    return parsed(out);
  }

  before(async () => {
    await new Promise<void>((r) => peer.bind(0, '127.0.0.1', () => r()));
    peer.on('message', (m) => received.push(m));
    const transport = (b: StunMessageBuilder): StunMessageBuilder => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));
    nonce = getAttr(await ask(StunMethod.Allocate, transport, false), Attr.NONCE)!.value.toString();
    assert.equal((await ask(StunMethod.Allocate, transport)).cls, StunClass.SuccessResponse);
    assert.equal((await ask(StunMethod.CreatePermission, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', 0))).cls, StunClass.SuccessResponse);
  });
  after(() => {
    turn.close();
    peer.close();
  });

  const send = (port: number, text: string): void => {
    const ind = new StunMessageBuilder(StunMethod.Send, StunClass.Indication, randomBytes(12)).addXorAddress(Attr.XOR_PEER_ADDRESS, '127.0.0.1', port).add(Attr.DATA, Buffer.from(text)).build();
    turn.sendIndication(parsed(ind), client);
  };

  it('drops a Send indication to port 0 without throwing, and relays the next one to the peer', async () => {
    assert.doesNotThrow(() => send(0, 'lost'));
    send(peer.address().port, 'delivered');
    const deadline = Date.now() + 3000;
    while (received.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(received.map(String), ['delivered']);
  });
});

describe('permissions per allocation are bounded', () => {
  const turn = new TurnHandler({ realm: REALM, secrets: [SECRET], relayIps: { 4: '127.0.0.1' }, peers: new PeerPolicy(['127.0.0.0/8'], []), maxAllocations: 10, software: 'test', userKey: async () => null, maxAllocationsPerUser: 10, bandwidth: 0, authRate: 20 });
  after(() => turn.close());
  const username = `${Math.floor(Date.now() / 1000) + 600}:alice`;
  const key = longTermKey(username, REALM, createHmac('sha1', SECRET).update(username).digest('base64'));
  const c = { address: '127.0.0.1', port: 42000, transport: 'udp' as const };
  let nonce = '';
  async function ask(method: number, fill: (b: StunMessageBuilder) => StunMessageBuilder, signed = true): Promise<StunMessage> {
    let out: Buffer | null = null;
    const b = fill(new StunMessageBuilder(method, StunClass.Request, randomBytes(12)));
    if (signed) b.addString(Attr.USERNAME, username).addString(Attr.REALM, REALM).addString(Attr.NONCE, nonce).addMessageIntegrity(key);
    await turn.request(parsed(b.build()), c, false, (d) => (out = d));
    assert.ok(out);
    return parsed(out);
  }

  it('installs 256 permissions (MAX_PERMISSIONS), answers the 257th peer with 508, and still refreshes one it holds', async () => {
    const transport = (b: StunMessageBuilder): StunMessageBuilder => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]));
    nonce = getAttr(await ask(StunMethod.Allocate, transport, false), Attr.NONCE)!.value.toString();
    assert.equal((await ask(StunMethod.Allocate, transport)).cls, StunClass.SuccessResponse);
    const peer = (i: number): string => `127.1.${i >> 8}.${i & 255}`;
    for (let i = 0; i < MAX_PERMISSIONS; i++) {
      const r = await ask(StunMethod.CreatePermission, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, peer(i), 5000));
      assert.equal(r.cls, StunClass.SuccessResponse, `permission ${i}`);
    }
    const over = await ask(StunMethod.CreatePermission, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, peer(MAX_PERMISSIONS), 5000));
    const code = getAttr(over, Attr.ERROR_CODE)!.value;
    assert.equal(code[2]! * 100 + code[3]!, 508);
    assert.equal((await ask(StunMethod.CreatePermission, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, peer(0), 5000))).cls, StunClass.SuccessResponse, 'a refresh is not a new permission');
  });
});

describe('EVEN-PORT with the R bit, then RESERVATION-TOKEN (RTP/RTCP pairs)', () => {
  const turn = new TurnHandler({ realm: REALM, secrets: [SECRET], relayIps: { 4: '127.0.0.1' }, peers: new PeerPolicy([], []), maxAllocations: 10, software: 'test', userKey: async () => null, maxAllocationsPerUser: 10, bandwidth: 0, authRate: 20 });
  after(() => turn.close());
  const username = `${Math.floor(Date.now() / 1000) + 600}:alice`;
  const key = longTermKey(username, REALM, createHmac('sha1', SECRET).update(username).digest('base64'));

  async function allocate(from: number, extra: (b: StunMessageBuilder) => StunMessageBuilder): Promise<StunMessage> {
    const c = { address: '127.0.0.1', port: from, transport: 'udp' as const };
    const ask = async (fill: (b: StunMessageBuilder) => StunMessageBuilder): Promise<StunMessage> => {
      let out: Buffer | null = null;
      await turn.request(parsed(fill(new StunMessageBuilder(StunMethod.Allocate, StunClass.Request, randomBytes(12))).build()), c, false, (d) => (out = d));
      assert.ok(out);
      return parsed(out);
    };
    const base = (b: StunMessageBuilder): StunMessageBuilder => extra(b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])));
    const nonce = getAttr(await ask(base), Attr.NONCE)!.value.toString();
    return ask((b) => base(b).addString(Attr.USERNAME, username).addString(Attr.REALM, REALM).addString(Attr.NONCE, nonce).addMessageIntegrity(key));
  }

  it('gives an even relayed port and a token for the next one, which a second Allocate then gets', async () => {
    const first = await allocate(41000, (b) => b.add(Attr.EVEN_PORT, Buffer.from([0x80, 0, 0, 0])));
    assert.equal(first.cls, StunClass.SuccessResponse);
    const relayed = decodeXorAddress(getAttr(first, Attr.XOR_RELAYED_ADDRESS)!.value, first.transactionId);
    assert.ok(relayed.ok);
    assert.equal(relayed.value.port % 2, 0, 'an even port');
    const token = getAttr(first, Attr.RESERVATION_TOKEN);
    assert.ok(token && token.value.length === 8, 'a reservation token');
    const second = await allocate(41001, (b) => b.add(Attr.RESERVATION_TOKEN, Buffer.from(token.value)));
    assert.equal(second.cls, StunClass.SuccessResponse);
    const next = decodeXorAddress(getAttr(second, Attr.XOR_RELAYED_ADDRESS)!.value, second.transactionId);
    assert.ok(next.ok);
    assert.equal(next.value.port, relayed.value.port + 1, 'the reserved next port');
    const again = await allocate(41002, (b) => b.add(Attr.RESERVATION_TOKEN, Buffer.from(token.value)));
    assert.equal(again.cls, StunClass.ErrorResponse, 'a token is good once');
  });
});

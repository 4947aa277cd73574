// TURN Refresh semantics (RFC 8656 section 7): without LIFETIME the allocation gets the default
// lifetime again; LIFETIME 0 ends it; a Refresh from a 5-tuple without an allocation is 437.
// Drives the TURN handler directly with signed requests (real relay sockets on 127.0.0.1).
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Attr, decodeErrorCode, decodeUint32, getAttr, longTermKey, parseStun, StunClass, StunMessageBuilder, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { PeerPolicy } from '../../src/rendezvous/peer-policy.js';
import { TurnHandler } from '../../src/rendezvous/turn-handler.js';

const SECRET = 's3cret';
const REALM = 'edgeward';
const client = { address: '127.0.0.1', port: 40000, transport: 'udp' as const };
const turn = new TurnHandler({ realm: REALM, secrets: [SECRET], relayIps: { 4: '127.0.0.1' }, peers: new PeerPolicy([], []), maxAllocations: 10, software: 'test', userKey: async () => null, maxAllocationsPerUser: 10, bandwidth: 0, authRate: 20 });
after(() => turn.close());

async function ask(build: (b: StunMessageBuilder) => StunMessageBuilder, method: number, from = client): Promise<StunMessage> {
  let out: Buffer | null = null;
  await turn.request(parseOk(build(new StunMessageBuilder(method, StunClass.Request, randomBytes(12))).build()), from, false, (d) => (out = d));
  assert.ok(out, 'an answer');
  return parseOk(out);
}

function parseOk(b: Buffer): StunMessage {
  const r = parseStun(b);
  assert.ok(r.ok);
  return r.value;
}

describe('TURN Refresh', () => {
  const username = `${Math.floor(Date.now() / 1000) + 600}:alice`;
  const key = longTermKey(username, REALM, createHmac('sha1', SECRET).update(username).digest('base64'));
  let nonce = '';
  const signed = (extra: (b: StunMessageBuilder) => StunMessageBuilder) => (b: StunMessageBuilder) =>
    extra(b).addString(Attr.USERNAME, username).addString(Attr.REALM, REALM).addString(Attr.NONCE, nonce).addMessageIntegrity(key);

  it('allocates after the 401 challenge', async () => {
    const challenge = await ask((b) => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0])), StunMethod.Allocate);
    assert.equal(challenge.cls, StunClass.ErrorResponse);
    const code = decodeErrorCode(getAttr(challenge, Attr.ERROR_CODE)!.value);
    assert.ok(code.ok && code.value.code === 401);
    nonce = getAttr(challenge, Attr.NONCE)!.value.toString();
    const ok = await ask(signed((b) => b.add(Attr.REQUESTED_TRANSPORT, Buffer.from([17, 0, 0, 0]))), StunMethod.Allocate);
    assert.equal(ok.cls, StunClass.SuccessResponse);
    assert.equal(turn.table.size, 1);
  });

  it('without LIFETIME keeps the allocation, with the default lifetime (600 s)', async () => {
    const r = await ask(signed((b) => b), StunMethod.Refresh);
    assert.equal(r.cls, StunClass.SuccessResponse);
    const lt = decodeUint32(getAttr(r, Attr.LIFETIME)!.value);
    assert.ok(lt.ok && lt.value === 600);
    assert.equal(turn.table.size, 1);
  });

  it('with LIFETIME 0 ends it; a Refresh after that is 437 (allocation mismatch)', async () => {
    const r = await ask(signed((b) => b.addUint32(Attr.LIFETIME, 0)), StunMethod.Refresh);
    assert.equal(r.cls, StunClass.SuccessResponse);
    assert.equal(turn.table.size, 0);
    const again = await ask(signed((b) => b), StunMethod.Refresh);
    const code = decodeErrorCode(getAttr(again, Attr.ERROR_CODE)!.value);
    assert.ok(code.ok && code.value.code === 437);
  });
});

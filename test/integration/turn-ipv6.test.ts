// IPv6 relays: with an IPv4 and an IPv6 --turn-relay-ip, coturn's turnutils_uclient gets an IPv6
// relayed address when it asks for one (-x, REQUESTED-ADDRESS-FAMILY) and relays to an IPv6 peer,
// over UDP and TCP and relay to relay; a dual allocation (-Z, ADDITIONAL-ADDRESS-FAMILY) reaches
// IPv4 and IPv6 peers. An IPv4-only server answers an IPv6 request with 440, and a dual request
// with the IPv4 relay plus ADDRESS-ERROR-CODE 440; a peer of a family the allocation has no relay
// for gets 443.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Attr, decodeXorAddress, getAttr, StunClass, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { closedPort } from '../helpers/peers.js';
import { runCmd, startProcess, type RunningProcess } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { assertAllEchoed, errorCode, requestedTransport, signedSession, turnPort } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'turnutils_peer']));
if (skip) process.stdout.write(`# skipping the TURN IPv6 tests: ${skip}\n`);

const SECRET = 'turn-ipv6-secret';
const udpTransport = requestedTransport(17);
const rawSession = (port: number): ReturnType<typeof signedSession> => signedSession(port, { secret: SECRET, user: 'six' });

function relayedFamilies(m: StunMessage): number[] {
  return m.attributes.filter((a) => a.type === Attr.XOR_RELAYED_ADDRESS).map((a) => {
    const r = decodeXorAddress(a.value, m.transactionId);
    assert.ok(r.ok);
    return r.value.family;
  });
}

describe('TURN with IPv4 and IPv6 relays', { skip }, () => {
  let g: Gateway;
  let port = 0;
  let peer4Port = 0;
  let peer6Port = 0;
  const peers: RunningProcess[] = [];
  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--turn-relay-ip', '127.0.0.1', '--turn-relay-ip', '::1', '--turn-allow-peers', '127.0.0.0/8', '--turn-allow-peers', '::1/128'] });
    port = await turnPort(g);
    peer4Port = await closedPort();
    peer6Port = await closedPort('::1');
    peers.push(startProcess(['turnutils_peer', '-p', String(peer4Port), '-L', '127.0.0.1']), startProcess(['turnutils_peer', '-p', String(peer6Port), '-L', '::1']));
    await new Promise((r) => setTimeout(r, 300));
  });
  after(async () => {
    for (const p of peers) await p.stop();
    await g?.stop();
  });

  const uclient = (flags: string[], peerArgs: string[]): ReturnType<typeof runCmd> =>
    runCmd(['turnutils_uclient', ...flags, ...peerArgs, '-W', SECRET, '-u', 'six', '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });

  it('gives an IPv6 relayed address on request (-x) and relays to an IPv6 peer, nothing lost', async () => {
    const r = await uclient(['-x'], ['-e', '::1', '-r', String(peer6Port)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('does the same for a client over TCP (-x -t)', async () => {
    const r = await uclient(['-x', '-t'], ['-e', '::1', '-r', String(peer6Port)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('relays between two IPv6 allocations on this server (-x -y)', async () => {
    const r = await uclient(['-x', '-y'], []);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('makes dual allocations (-Z, ADDITIONAL-ADDRESS-FAMILY) that reach an IPv6 and an IPv4 peer', async () => {
    const six = await uclient(['-Z'], ['-e', '::1', '-r', String(peer6Port)]);
    assert.equal(six.code, 0, six.stdout + six.stderr);
    assertAllEchoed(six.stdout + six.stderr, 20);
    const four = await uclient(['-Z'], ['-e', '127.0.0.1', '-r', String(peer4Port)]);
    assert.equal(four.code, 0, four.stdout + four.stderr);
    assertAllEchoed(four.stdout + four.stderr, 20);
    const list = await g.api<{ allocations: Array<{ relayed: { address: string }; additionalRelayed?: { address: string } }> }>('GET', '/api/v1/turn/allocations');
    assert.ok(
      list.body.allocations.some((a) => a.relayed.address === '127.0.0.1' && a.additionalRelayed?.address === '::1'),
      JSON.stringify(list.body.allocations),
    );
  });

  it('answers the RFC 8656 ADDITIONAL-ADDRESS-FAMILY with an IPv4 and an IPv6 relayed address, and a second family attribute with 400', async () => {
    const s = await rawSession(port);
    try {
      const dual = await s.request(StunMethod.Allocate, (b) => udpTransport(b).add(Attr.ADDITIONAL_ADDRESS_FAMILY, Buffer.from([2, 0, 0, 0])));
      assert.equal(dual.cls, StunClass.SuccessResponse);
      assert.deepEqual(relayedFamilies(dual), [4, 6]);
    } finally {
      s.close();
    }
    const both = await rawSession(port);
    try {
      const r = await both.request(StunMethod.Allocate, (b) => udpTransport(b).add(Attr.REQUESTED_ADDRESS_FAMILY, Buffer.from([2, 0, 0, 0])).add(Attr.ADDITIONAL_ADDRESS_FAMILY, Buffer.from([2, 0, 0, 0])));
      assert.equal(errorCode(r), 400);
    } finally {
      both.close();
    }
  });
});

describe('TURN on an IPv4-only server', { skip }, () => {
  let g: Gateway;
  let port = 0;
  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8', '--turn-allow-peers', '::1/128'] });
    port = await turnPort(g);
  });
  after(async () => {
    await g?.stop();
  });

  it('answers a request for an IPv6 relay with 440, and a dual request with the IPv4 relay and ADDRESS-ERROR-CODE 440', async () => {
    const s = await rawSession(port);
    try {
      const six = await s.request(StunMethod.Allocate, (b) => udpTransport(b).add(Attr.REQUESTED_ADDRESS_FAMILY, Buffer.from([2, 0, 0, 0])));
      assert.equal(errorCode(six), 440);
      const dual = await s.request(StunMethod.Allocate, (b) => udpTransport(b).add(Attr.ADDITIONAL_ADDRESS_FAMILY, Buffer.from([2, 0, 0, 0])));
      assert.equal(dual.cls, StunClass.SuccessResponse);
      assert.deepEqual(relayedFamilies(dual), [4]);
      const addressError = getAttr(dual, Attr.ADDRESS_ERROR_CODE)?.value;
      assert.ok(addressError, 'ADDRESS-ERROR-CODE');
      assert.equal(addressError[0], 0x02, 'for IPv6');
      assert.equal(addressError[2]! * 100 + addressError[3]!, 440);
      // an IPv6 peer on an allocation with an IPv4 relay only: 443
      const mismatch = await s.request(StunMethod.CreatePermission, (b) => b.addXorAddress(Attr.XOR_PEER_ADDRESS, '::1', 5000));
      assert.equal(errorCode(mismatch), 443);
    } finally {
      s.close();
    }
  });

  it('refuses DONT-FRAGMENT with 420 naming it (RFC 8656 section 7.2: a server that cannot set DF per datagram)', async () => {
    const s = await rawSession(port);
    try {
      const r = await s.request(StunMethod.Allocate, (b) => udpTransport(b).add(Attr.DONT_FRAGMENT, Buffer.alloc(0)));
      assert.equal(errorCode(r), 420);
      assert.deepEqual(getAttr(r, Attr.UNKNOWN_ATTRIBUTES)?.value, Buffer.from([0x00, 0x1a]));
    } finally {
      s.close();
    }
  });
});

// TURN limits and addresses an operator sets: allocations per user (486 beyond, other users
// unaffected), bandwidth per allocation (datagrams beyond it dropped and counted), relayed ports
// from --turn-relay-ports, and --turn-external-ip announced in relayed addresses (relay to relay
// through it still works). Driven by coturn's turnutils_uclient and a raw client on loopback.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Attr, decodeXorAddress, getAttr, StunClass, StunMethod, type StunMessage } from '../../src/codec/stun.js';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, type RunningProcess } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { errorCode, metric, requestedTransport, signedSession, startTurnPeer, turnPort } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'turnutils_peer']));
if (skip) process.stdout.write(`# skipping the TURN limit tests: ${skip}\n`);

const SECRET = 'turn-limits-secret';

/** Allocates from a fresh UDP socket with a REST credential for `user`: the answer, and a way to close the socket. */
async function allocate(port: number, user: string): Promise<{ answer: StunMessage; close(): void }> {
  const s = await signedSession(port, { secret: SECRET, user });
  return { answer: await s.request(StunMethod.Allocate, requestedTransport(17)), close: () => s.close() };
}

function relayedOf(m: StunMessage): { ip: string; port: number } {
  const r = decodeXorAddress(getAttr(m, Attr.XOR_RELAYED_ADDRESS)!.value, m.transactionId);
  assert.ok(r.ok);
  return r.value;
}

describe('TURN limits and addresses', { skip }, () => {
  let g: Gateway;
  let port = 0;
  let peerPort = 0;
  let peer: RunningProcess;
  const LOW = 41200;
  const HIGH = 41215;
  before(async () => {
    g = await startGateway({
      args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8', '--turn-user-allocations', '3', '--turn-bandwidth', '400kbit', '--turn-relay-ports', `${LOW}-${HIGH}`, '--turn-external-ip', '127.0.0.9'],
    });
    port = await turnPort(g);
    ({ port: peerPort, peer } = await startTurnPeer());
  });
  after(async () => {
    await peer?.stop();
    await g?.stop();
  });

  it('gives a user 3 allocations (--turn-user-allocations 3) and the fourth 486; another user still allocates', async () => {
    const socks: Array<{ close(): void }> = [];
    try {
      const answers: StunMessage[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await allocate(port, 'quota-user');
        socks.push(r);
        answers.push(r.answer);
      }
      assert.deepEqual(
        answers.map((a) => a.cls),
        [StunClass.SuccessResponse, StunClass.SuccessResponse, StunClass.SuccessResponse, StunClass.ErrorResponse],
      );
      assert.equal(errorCode(answers[3]!), 486);
      const other = await allocate(port, 'someone-else');
      socks.push(other);
      assert.equal(other.answer.cls, StunClass.SuccessResponse, 'the quota is per user');
      const m = (await g.api<string>('GET', '/metrics')).text;
      assert.ok(metric(m, 'edgeward_turn_quota_refusals_total') >= 1, m);
    } finally {
      for (const s of socks) s.close();
    }
  });

  it('announces --turn-external-ip in the relayed address, on a port of --turn-relay-ports, and the API lists the same', async () => {
    const r = await allocate(port, 'addr-user');
    try {
      assert.equal(r.answer.cls, StunClass.SuccessResponse);
      const relayed = relayedOf(r.answer);
      assert.equal(relayed.ip, '127.0.0.9');
      assert.ok(relayed.port >= LOW && relayed.port <= HIGH, `relayed port ${relayed.port} outside ${LOW}-${HIGH}`);
      const list = await g.api<{ allocations: Array<{ user: string; relayed: { address: string; port: number } }> }>('GET', '/api/v1/turn/allocations');
      const mine = list.body.allocations.find((a) => a.user === 'addr-user');
      assert.deepEqual(mine?.relayed, { address: '127.0.0.9', port: relayed.port });
    } finally {
      r.close();
    }
  });

  // uclient -y makes three allocations (one it leaves unused): within the quota of 3
  it('relays between two allocations named by their external address (-y), nothing lost', async () => {
    const r = await runCmd(['turnutils_uclient', '-y', '-c', '-W', SECRET, '-u', 'relay-user', '-n', '20', '-m', '1', '-l', '100', '-p', String(port), '127.0.0.1'], { timeoutMs: 40_000 });
    const out = r.stdout + r.stderr;
    assert.equal(r.code, 0, out);
    const m = /tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m.exec(out);
    assert.ok(m && Number(m[1]) >= 20 && m[1] === m[2], out);
  });

  it('drops what exceeds --turn-bandwidth 400kbit (50 kB/s) and counts it; what passes stays within the rate', async () => {
    const before = (await g.api<string>('GET', '/metrics')).text;
    // 1000 messages of 1000 bytes as fast as uclient sends: about 1 MB offered in well under 5 s
    const started = Date.now();
    const r = await runCmd(['turnutils_uclient', '-c', '-e', '127.0.0.1', '-r', String(peerPort), '-W', SECRET, '-u', 'bw-user', '-n', '1000', '-m', '1', '-l', '1000', '-z', '0', '-p', String(port), '127.0.0.1'], { timeoutMs: 60_000 });
    const seconds = (Date.now() - started) / 1000;
    const out = r.stdout + r.stderr;
    const afterM = (await g.api<string>('GET', '/metrics')).text;
    const up = metric(afterM, 'edgeward_turn_relayed_bytes_total{direction="up"}') - metric(before, 'edgeward_turn_relayed_bytes_total{direction="up"}');
    const dropped = metric(afterM, 'edgeward_turn_bandwidth_drops_total{direction="up"}') - metric(before, 'edgeward_turn_bandwidth_drops_total{direction="up"}');
    assert.ok(dropped > 0, `nothing dropped:\n${out}`);
    // the burst (64 KiB) plus 50 kB/s for as long as the client ran, with a margin for the ChannelData headers
    assert.ok(up <= 65536 + 50_000 * seconds * 1.1 + 10_000, `${up} bytes relayed up in ${seconds.toFixed(1)} s`);
    assert.ok(up > 0, 'something was relayed');
    const lost = /Total lost packets (\d+)/.exec(out);
    assert.ok(lost && Number(lost[1]) > 0, `uclient saw no loss:\n${out}`);
  });
});

// Two werift WebRTC peers in this process, relay-only (iceTransportPolicy 'relay'), connect through
// edgeward's TURN server on loopback with credentials from its API, once with TURN over UDP and once
// over TCP, and exchange a data-channel message each way: both select a relay-to-relay pair, and
// edgeward lists their allocations with the transport they asked for and the bytes they relayed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RTCPeerConnection, type RTCDataChannel, type RTCIceCandidate } from 'werift';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { waitFor } from '../helpers/process.js';
import { edgewardSkipReason, requirement } from '../helpers/requirements.js';
import { describePair, selectedPair, type SelectedPair } from '../helpers/werift.js';

const skip = requirement(edgewardSkipReason());

const SECRET = 'werift-test-secret';
const CONNECT_TIMEOUT_MS = 15_000;
/** characters per message: several SCTP chunks, so the relayed bytes are not all ICE and DTLS */
const MESSAGE_SIZE = 4000;

interface AllocationView {
  id: number;
  user: string;
  transport: 'udp' | 'tcp';
  relayed: { address: string; port: number };
  bytes: { up: number; down: number };
}

/** Resolves with `p`, or rejects after `ms` saying what was awaited. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

describe('werift peers through edgeward\'s TURN server (relay only, loopback)', { skip }, () => {
  let g: Gateway;
  let turn = '';
  const peers: RTCPeerConnection[] = [];
  before(async () => {
    // the peers' relayed addresses are on loopback, which the relay refuses unless allowed
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8'] });
    turn = String((await g.waitForLog((l) => l.msg === 'listening')).turn);
    assert.match(turn, /^127\.0\.0\.1:\d+$/);
  });
  after(async () => {
    await Promise.allSettled(peers.map((pc) => pc.close()));
    await g?.stop();
  });

  async function peer(user: string, transport: 'udp' | 'tcp'): Promise<RTCPeerConnection> {
    const c = await g.api<{ username: string; password: string }>('POST', '/api/v1/turn/credentials', { user, ttl: 600 });
    assert.equal(c.status, 200, c.text);
    const pc = new RTCPeerConnection({
      iceServers: [{ urls: `turn:${turn}?transport=${transport}`, username: c.body.username, credential: c.body.password }],
      iceTransportPolicy: 'relay',
    });
    peers.push(pc);
    return pc;
  }

  for (const transport of ['udp', 'tcp'] as const) {
    it(`connects two relay-only peers over TURN/${transport.toUpperCase()} and carries a message each way through their allocations`, { timeout: 40_000 }, async () => {
      const users = { alice: `alice-${transport}`, bob: `bob-${transport}` };
      const alice = await peer(users.alice, transport);
      const bob = await peer(users.bob, transport);
      // trickle ICE: each candidate straight to the other side (werift holds those that arrive before the remote description)
      const candidateErrors: string[] = [];
      const trickle = (to: RTCPeerConnection, name: string) => ({ candidate }: { candidate?: RTCIceCandidate }) => {
        if (candidate) to.addIceCandidate(candidate).catch((e: Error) => candidateErrors.push(`${name}: ${e.message}`));
      };
      alice.onicecandidate = trickle(bob, 'bob');
      bob.onicecandidate = trickle(alice, 'alice');

      const started = Date.now();
      const aliceChannel = alice.createDataChannel('loopback');
      const aliceOpen = new Promise<void>((resolve) => (aliceChannel.onopen = () => resolve()));
      const bobChannel = new Promise<RTCDataChannel>((resolve) => (bob.ondatachannel = ({ channel }) => resolve(channel)));
      await alice.setLocalDescription(await alice.createOffer());
      await bob.setRemoteDescription(alice.localDescription!);
      await bob.setLocalDescription(await bob.createAnswer());
      await alice.setRemoteDescription(bob.localDescription!);
      await within(aliceOpen, CONNECT_TIMEOUT_MS, `alice's data channel to open over TURN/${transport}`);
      const bobDc = await within(bobChannel, CONNECT_TIMEOUT_MS, `bob's data channel over TURN/${transport}`);
      const seconds = (Date.now() - started) / 1000;

      const before = (await g.api<{ allocations: AllocationView[] }>('GET', '/api/v1/turn/allocations')).body.allocations;
      const toBob = `hello bob over ${transport} `.padEnd(MESSAGE_SIZE, 'a');
      const toAlice = `hello alice over ${transport} `.padEnd(MESSAGE_SIZE, 'b');
      const bobGot = new Promise<string>((resolve) => (bobDc.onmessage = ({ data }) => resolve(String(data))));
      aliceChannel.send(toBob);
      assert.equal(await within(bobGot, 10_000, `bob to receive alice's message over TURN/${transport}`), toBob);
      const aliceGot = new Promise<string>((resolve) => (aliceChannel.onmessage = ({ data }) => resolve(String(data))));
      bobDc.send(toAlice);
      assert.equal(await within(aliceGot, 10_000, `alice to receive bob's message over TURN/${transport}`), toAlice);

      assert.deepEqual(candidateErrors, [], 'addIceCandidate failed');
      const pairs: Record<'alice' | 'bob', SelectedPair | null> = { alice: selectedPair(alice), bob: selectedPair(bob) };
      console.log(`TURN/${transport}: data channel open after ${seconds.toFixed(2)} s; alice ${describePair(pairs.alice)}; bob ${describePair(pairs.bob)}`);
      for (const [name, pair] of Object.entries(pairs)) {
        assert.ok(pair, `${name} has no nominated candidate pair`);
        assert.equal(pair.local.type, 'relay', `${name}'s selected pair: ${describePair(pair)}`);
        assert.equal(pair.remote.type, 'relay', `${name}'s selected pair: ${describePair(pair)}`);
      }
      assert.deepEqual(pairs.alice!.remote, pairs.bob!.local, 'alice\'s remote candidate should be bob\'s relayed address');
      assert.deepEqual(pairs.bob!.remote, pairs.alice!.local, 'bob\'s remote candidate should be alice\'s relayed address');

      const list = await g.api<{ allocations: AllocationView[] }>('GET', '/api/v1/turn/allocations');
      assert.equal(list.status, 200, list.text);
      const figures = list.body.allocations.map((a) => `${a.user}/${a.transport} ${a.relayed.port} up ${a.bytes.up} B down ${a.bytes.down} B`).join('; ');
      console.log(`allocations: ${figures}`);
      for (const [name, user] of Object.entries(users) as Array<['alice' | 'bob', string]>) {
        const mine = list.body.allocations.filter((a) => a.user === user);
        assert.equal(mine.length, 1, `${name} should hold one allocation: ${figures}`);
        const a = mine[0]!;
        assert.equal(a.transport, transport, `${name}'s allocation transport: ${figures}`);
        assert.deepEqual({ address: a.relayed.address, port: a.relayed.port }, { address: pairs[name]!.local.address, port: pairs[name]!.local.port }, `${name}'s relay candidate is not its allocation's relayed address: ${figures}`);
        const earlier = before.find((b) => b.id === a.id);
        assert.ok(earlier, `${name}'s allocation appeared only after the data channel opened: ${figures}`);
        // each message goes up one allocation and down the other
        assert.ok(a.bytes.up - earlier.bytes.up >= MESSAGE_SIZE, `${name}'s allocation relayed ${a.bytes.up - earlier.bytes.up} B up for a ${MESSAGE_SIZE}-character message: ${figures}`);
        assert.ok(a.bytes.down - earlier.bytes.down >= MESSAGE_SIZE, `${name}'s allocation relayed ${a.bytes.down - earlier.bytes.down} B down for a ${MESSAGE_SIZE}-character message: ${figures}`);
      }
      await alice.close();
      await bob.close();
      if (transport === 'tcp') {
        // over TCP an allocation ends with its connection; over UDP werift's close() sends no
        // Refresh with LIFETIME 0, so those allocations stay until their lifetime ends
        await waitFor(
          'the TCP allocations to end with the closed peers\' connections',
          async () => !(await g.api<{ allocations: AllocationView[] }>('GET', '/api/v1/turn/allocations')).body.allocations.some((a) => a.user === users.alice || a.user === users.bob),
          5000,
          100,
        );
      }
    });
  }
});

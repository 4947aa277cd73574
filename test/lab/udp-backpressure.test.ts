// kernel/udp-socket.ts when the kernel's send buffer is full: a sender in one namespace with a small
// SO_SNDBUF sends 600 datagrams in one tick over a link that tbf holds to 8 Mbit/s. sendmmsg then
// answers EAGAIN; the socket keeps the rest queued, waits until it is writable, and sends on. What
// the user of a TURN relay notices: a burst larger than the send buffer arrives whole and in order
// at the link's pace, nothing dropped, instead of being lost at the sender.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { withLab } from '../helpers/netns.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/udp-backpressure.mjs', import.meta.url));
const COUNT = 600;
const skip = requirement(labSkipReason() ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the UDP backpressure lab: ${skip}\n`);

describe('UdpSocket under a full send buffer (lab: tbf 8 Mbit/s)', { skip }, () => {
  it(`queues past EAGAIN and sends on when writable: ${COUNT} datagrams arrive whole and in order`, { timeout: 60_000 }, () =>
    withLab(async (lab) => {
      const a = await lab.addNamespace('sender');
      const b = await lab.addNamespace('receiver');
      await lab.link(a, b, { addrA: '10.77.0.1/24', addrB: '10.77.0.2/24', rateMbit: 8 });
      const receiver = lab.spawn(b, [process.execPath, FIXTURE, 'receive', '10.77.0.2', '4000', String(COUNT)]);
      await receiver.waitForOutput(/ready/, 10_000);
      const sent = await lab.exec(a, [process.execPath, FIXTURE, 'send', '10.77.0.1', '10.77.0.2', '4000', String(COUNT)], { timeoutMs: 30_000 });
      const s = JSON.parse(sent.stdout.trim().split('\n').pop()!) as { maxQueued: number; left: number; ms: number; sendErrors: number; queueDrops: number };
      await receiver.waitForOutput(/"got"/, 10_000);
      const r = JSON.parse(receiver.stdout().trim().split('\n').pop()!) as { got: number[] };
      process.stdout.write(`# udp backpressure: ${COUNT} x 1000 B in ${s.ms} ms, at most ${s.maxQueued} queued behind EAGAIN, ${r.got.length} received\n`);
      assert.ok(s.maxQueued > 0, 'the kernel refused with EAGAIN and the socket queued the rest');
      assert.equal(s.left, 0, 'the queue emptied');
      assert.equal(s.sendErrors + s.queueDrops, 0, 'nothing dropped at the sender');
      assert.deepEqual(r.got, Array.from({ length: COUNT }, (_, i) => i), 'every datagram, in order');
    }),
  );
});

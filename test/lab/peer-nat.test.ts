// `edgeward peer device` and `peer connect` across NATs (the NAT lab of test/helpers/nat-lab.ts):
// the device on host a behind NAT a, the client on host b behind NAT b, edgeward (API, signaling,
// STUN/TURN) in the public namespace between them. A file served on the device, full of a marker
// string, is fetched with curl through the client's forward, and must arrive intact in every row:
//
//   device NAT             client NAT                          expected path
//   endpoint-independent   endpoint-independent                direct, nothing through the relay
//   symmetric              symmetric                           relayed
//   endpoint-independent   symmetric                           whatever ICE finds; it works
//   none (public)          symmetric, no UDP out of its LAN    relayed over TURN/TCP
//
// End to end means end to end: a capture (tcpdump) in the public namespace, where the signaling
// server and the relay are and every packet between the NATs passes, never holds the marker, while
// it does hold the password of the lab's plain-HTTP login (so the capture saw the traffic). In the
// first row another user's client, behind the same NAT, tries alice's device by its name and is told
// he has no such device (then, once he has a "box" of his own, that his is offline). In the
// last row the device is on the public host itself; its loopback hop to its own web server is left
// out of the capture.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BIN, startEdgeward } from '../helpers/edgeward.js';
import { buildNatLab, type NatFlavour } from '../helpers/nat-lab.js';
import { withLab, type Netns } from '../helpers/netns.js';
import { sleep } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const skip = requirement(labSkipReason({ needs: ['curl', 'python3', 'nft', 'tcpdump'] }) ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the peer NAT lab: ${skip}\n`);

const MARKER = 'EDGEWARD-END-TO-END-MARKER-7f3a';
const PASSWORD = 'alice-lab-password-91c2';
/** relayed bytes below this are connectivity checks at most */
const ICE_CHECKS_ONLY_BYTES = 1500;

interface Row {
  device: NatFlavour | 'public';
  client: NatFlavour;
  blockUdp?: boolean;
  clientArgs?: string[];
  expect: 'direct' | 'relayed' | 'any';
}

const ROWS: Row[] = [
  { device: 'endpoint-independent', client: 'endpoint-independent', expect: 'direct' },
  { device: 'symmetric', client: 'symmetric', expect: 'relayed' },
  { device: 'endpoint-independent', client: 'symmetric', expect: 'any' },
  { device: 'public', client: 'symmetric', blockUdp: true, clientArgs: ['--turn-transport', 'tcp'], expect: 'relayed' },
];

describe('edgeward peer across NATs (lab)', { skip }, () => {
  for (const row of ROWS) {
    it(`device ${row.device}, client ${row.client}${row.blockUdp ? ' without UDP' : ''}: ${row.expect === 'any' ? 'connects' : row.expect}, the file intact, no marker on the wire`, { timeout: 120_000 }, () =>
      withLab(async (lab) => {
        const nl = await buildNatLab(lab, row.device === 'public' ? 'endpoint-independent' : row.device, { b: row.client, blockUdpB: row.blockUdp });
        const server = nl.serverAddr;
        const api = `http://${server}:8080`;
        const ew = await startEdgeward(lab, nl.pub, { api: `${server}:8080`, args: ['--turn', `${server}:3478`, '--turn-secret', 'nat-secret', '--allow-insecure-login'] });
        assert.equal((await ew.api('POST', '/api/v1/users', { username: 'alice', password: PASSWORD, rendezvous: true })).status, 201);
        const dev = await ew.api('POST', '/api/v1/devices', { user: 'alice', name: 'box' });
        const token = (dev.body as { token: string }).token;

        // the device's web server, and the file full of the marker
        const deviceNs: Netns = row.device === 'public' ? nl.pub : nl.a.host;
        const www = lab.tempDir('www');
        const file = Buffer.from(MARKER.repeat(Math.ceil((256 * 1024) / MARKER.length)));
        writeFileSync(join(www, 'marker.txt'), file);
        lab.spawn(deviceNs, ['python3', '-m', 'http.server', '7080', '--bind', '127.0.0.1', '--directory', www]);
        const pcap = join(lab.tempDir('pcap'), 'pub.pcap');
        // everything in the public namespace but its own loopback traffic (where, in the last row,
        // the device peer reads its web server, on the same host)
        const capture = lab.spawn(nl.pub, ['tcpdump', '-i', 'any', '-U', '-s', '0', '-w', pcap, 'not (src net 127.0.0.0/8 and dst net 127.0.0.0/8)']);
        await capture.waitForOutput(/listening on/, 10_000);

        const device = lab.spawn(deviceNs, [process.execPath, BIN, 'peer', 'device', '--server', api, '--expose', 'web=tcp:127.0.0.1:7080'], { env: { EDGEWARD_DEVICE_TOKEN: token } });
        await device.waitForOutput(/online as device box/, 15_000);
        const client = lab.spawn(nl.b.host, [process.execPath, BIN, 'peer', 'connect', 'box', '--server', api, '--user', 'alice', '--forward', '2280=web', '--status', ...(row.clientArgs ?? [])], { env: { EDGEWARD_PASSWORD: PASSWORD } });
        const m = await client.waitForOutput(/^\{"path".*$/m, 45_000).catch((e: Error) => assert.fail(`${e.message}\nclient: ${client.stderr()}\ndevice: ${device.stderr().slice(-1500)}`));
        const path = JSON.parse(m[0]) as { path: string; local: { type: string; protocol: string }; remote: { type: string } };
        process.stdout.write(`# device ${row.device} / client ${row.client}${row.blockUdp ? ' (no UDP)' : ''}: ${path.path}, ${path.local.type}/${path.local.protocol} -> ${path.remote.type}\n`);
        if (row.expect !== 'any') assert.equal(path.path, row.expect, JSON.stringify(path));

        const got = await lab.exec(nl.b.host, ['sh', '-c', 'curl -sS --max-time 60 http://127.0.0.1:2280/marker.txt | sha256sum'], { timeoutMs: 70_000 });
        assert.equal(got.stdout.split(' ')[0], createHash('sha256').update(file).digest('hex'), 'the file arrived intact through the forward');

        const allocations = ((await ew.api('GET', '/api/v1/turn/allocations')).body as { allocations: Array<{ user: string; transport: string; bytes: { up: number; down: number } }> }).allocations.filter((a) => a.user === 'alice');
        const relayed = allocations.reduce((n, a) => n + a.bytes.up + a.bytes.down, 0);
        process.stdout.write(`#   relayed: ${relayed} bytes in ${allocations.length} allocation(s) (${[...new Set(allocations.map((a) => a.transport))].join(', ') || 'none'})\n`);
        if (path.path === 'direct') assert.ok(relayed < ICE_CHECKS_ONLY_BYTES, `a direct path relays nothing but checks: ${relayed} bytes`);
        else assert.ok(relayed >= file.length, `the relay carried the file: ${relayed} bytes`);
        if (row.blockUdp) assert.ok(allocations.some((a) => a.transport === 'tcp' && a.bytes.up + a.bytes.down >= file.length), 'the client relayed over TURN/TCP');

        if (row === ROWS[0]) {
          // another user, behind the same NAT as alice's client, with a device of his own named
          // "box" too (offline): his client never reaches alice's box, and her session carries on
          assert.equal((await ew.api('POST', '/api/v1/users', { username: 'bob', password: 'bob-lab-password', rendezvous: true })).status, 201);
          const bobs = lab.spawn(nl.b.host, [process.execPath, BIN, 'peer', 'connect', 'box', '--server', api, '--user', 'bob', '--forward', '3280=web'], { env: { EDGEWARD_PASSWORD: 'bob-lab-password' } });
          const noDevice = await bobs.exited;
          assert.equal(noDevice.code, 1, bobs.stderr());
          assert.match(bobs.stderr(), /you have no device "box"/);
          assert.equal((await ew.api('POST', '/api/v1/devices', { user: 'bob', name: 'box' })).status, 201);
          const bobs2 = lab.spawn(nl.b.host, [process.execPath, BIN, 'peer', 'connect', 'box', '--server', api, '--user', 'bob', '--forward', '3280=web'], { env: { EDGEWARD_PASSWORD: 'bob-lab-password' } });
          const offline = await bobs2.exited;
          assert.equal(offline.code, 1, bobs2.stderr());
          assert.match(bobs2.stderr(), /device "box" is offline/, 'bob is told about his own box, not shown alice\'s');
          assert.doesNotMatch(device.stderr(), /bob/, 'alice\'s device never heard of bob');
          const again = await lab.exec(nl.b.host, ['sh', '-c', 'curl -sS --max-time 60 http://127.0.0.1:2280/marker.txt | sha256sum'], { timeoutMs: 70_000 });
          assert.equal(again.stdout.split(' ')[0], createHash('sha256').update(file).digest('hex'), "alice's session still carries");
        }

        await sleep(300);
        await capture.stop('SIGTERM', 3000);
        const wire = readFileSync(pcap);
        assert.ok(wire.includes(PASSWORD), 'the capture saw the plain-HTTP login (it captured the traffic)');
        assert.ok(!wire.includes(MARKER), 'the marker crossed the public namespace in the clear');
      }),
    );
  }
});

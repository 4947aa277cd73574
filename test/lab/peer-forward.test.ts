// `edgeward peer device` and `edgeward peer connect` as a user runs them, with the gateway, both
// peers and the services in one lab namespace that has only lo (so ICE finds nothing but loopback,
// and nothing can leave): a TCP stream forwarded over the WebRTC data channel arrives whole in both
// directions with TCP's half-close carried across, a file served on the device downloads intact
// through curl, the path is reported (direct, and relayed with --relay-only, where the TURN
// allocation shows the bytes; and relayed through the user's own coturn with --ice-server), a service the device does not expose is refused, a device killed
// mid-session ends the client's session with a reason, when it comes back the next session works,
// and when the server restarts the device connects again by itself.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BIN, startEdgeward, type EdgewardInLab } from '../helpers/edgeward.js';
import { withLab } from '../helpers/netns.js';
import { waitFor, type RunningProcess } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const ECHO = fileURLToPath(new URL('./fixtures/tcp-echo-check.mjs', import.meta.url));
const skip = requirement(labSkipReason({ needs: ['curl', 'python3'] }) ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the peer forwarding lab: ${skip}\n`);

const SERVER = 'http://127.0.0.1:8080';

interface HubStatus {
  online: Array<{ user: string; device: string }>;
  sessions: Array<{ user: string; device: string; path: string; pair: { local: { type: string }; remote: { type: string } } | null; candidates: Record<'client' | 'device', { host: number; srflx: number; relay: number }> }>;
}

/** GET /api/v1/rendezvous/status until a session of alice with box shows `path` (a report may trail the client's own output). */
async function sessionWithPath(ew: EdgewardInLab, path: string): Promise<{ online: HubStatus['online']; session: HubStatus['sessions'][number] }> {
  let last: HubStatus | undefined;
  await waitFor(`a ${path} session in /api/v1/rendezvous/status`, async () => {
    last = (await ew.api('GET', '/api/v1/rendezvous/status')).body as HubStatus;
    return last.sessions.some((x) => x.user === 'alice' && x.device === 'box' && x.path === path);
  }, 10_000, 200).catch((e: Error) => assert.fail(`${e.message}: ${JSON.stringify(last)}`));
  return { online: last!.online, session: last!.sessions.find((x) => x.path === path)! };
}

describe('edgeward peer device / peer connect (lab: one namespace, lo only)', { skip }, () => {
  it('forwards TCP both ways over the data channel, direct and relayed, and ends the session when the device dies', { timeout: 180_000 }, () =>
    withLab(async (lab) => {
      const ns = await lab.addNamespace('solo');
      const ew = await startEdgeward(lab, ns, { args: ['--turn', '127.0.0.1:3478', '--turn-secret', 'lab-secret', '--turn-allow-peers', '127.0.0.0/8'] });
      assert.equal((await ew.api('POST', '/api/v1/users', { username: 'alice', password: 'alice-pw', rendezvous: true })).status, 201);
      const dev = await ew.api('POST', '/api/v1/devices', { user: 'alice', name: 'box' });
      assert.equal(dev.status, 201, dev.text);
      const token = (dev.body as { token: string }).token;

      // the device's services: an echo server, and a web server with a file of known checksum
      const echo = lab.spawn(ns, [process.execPath, ECHO, 'serve', '7000']);
      await echo.waitForOutput(/ready/, 10_000);
      const www = lab.tempDir('www');
      const blob = randomBytes(4 * 1024 * 1024);
      writeFileSync(join(www, 'blob.bin'), blob);
      const web = lab.spawn(ns, ['python3', '-m', 'http.server', '7080', '--bind', '127.0.0.1', '--directory', www]);
      await web.waitForOutput(/Serving HTTP/, 10_000).catch(() => undefined);

      const device = lab.spawn(ns, [process.execPath, BIN, 'peer', 'device', '--server', SERVER, '--expose', 'echo=tcp:127.0.0.1:7000', '--expose', 'web=tcp:127.0.0.1:7080', '--ice-address', '127.0.0.1'], { env: { EDGEWARD_DEVICE_TOKEN: token } });
      await device.waitForOutput(/online as device box of alice/, 15_000);

      const connect = (extra: string[], ports: [number, number]): RunningProcess =>
        lab.spawn(ns, [process.execPath, BIN, 'peer', 'connect', 'box', '--server', SERVER, '--user', 'alice', '--forward', `${ports[0]}=echo`, '--forward', `${ports[1]}=web`, '--forward', `${ports[1] + 1}=nothing`, '--status', '--ice-address', '127.0.0.1', ...extra], { env: { EDGEWARD_PASSWORD: 'alice-pw' } });
      const pathOf = async (p: RunningProcess): Promise<{ path: string; local: { type: string; port: number }; remote: { type: string } }> => {
        const m = await p.waitForOutput(/^\{"path".*$/m, 40_000).catch((e: Error) => assert.fail(`${e.message}\nclient: ${p.stderr()}\ndevice: ${device.stderr().slice(-2000)}`));
        return JSON.parse(m[0]);
      };
      const echoCheck = async (port: number, bytes: number): Promise<{ sent: number; back: number; equal: boolean; ms: number }> => {
        const r = await lab.exec(ns, [process.execPath, ECHO, 'check', String(port), String(bytes)], { timeoutMs: 70_000, allowFailure: true });
        return JSON.parse(r.stdout.trim());
      };

      // direct
      const direct = connect([], [2222, 2280]);
      const p1 = await pathOf(direct);
      process.stdout.write(`# peer path: ${JSON.stringify(p1)}\n`);
      assert.equal(p1.path, 'direct');
      // the operators' view: the device online, the session with the pair the ends reported
      const status1 = await sessionWithPath(ew, 'direct');
      assert.deepEqual(status1.online.map((d) => `${d.device} of ${d.user}`), ['box of alice']);
      assert.ok(status1.session.candidates.client.host > 0 && status1.session.candidates.device.host > 0, JSON.stringify(status1.session.candidates));
      const e1 = await echoCheck(2222, 2 * 1024 * 1024);
      process.stdout.write(`# echo over the direct path: ${e1.sent} bytes out and back in ${e1.ms} ms\n`);
      assert.deepEqual([e1.back, e1.equal], [e1.sent, true], 'the echo came back whole, and both FINs crossed (the check read to EOF)');
      const curlSum = await lab.exec(ns, ['sh', '-c', 'curl -sS --max-time 60 http://127.0.0.1:2280/blob.bin | sha256sum'], { timeoutMs: 70_000 });
      assert.equal(curlSum.stdout.split(' ')[0], createHash('sha256').update(blob).digest('hex'), 'curl through the forward got the file intact');
      // a service the device does not expose: the connection is closed, nothing else happens
      const none = await lab.exec(ns, ['curl', '-sS', '--max-time', '10', 'http://127.0.0.1:2281/'], { allowFailure: true, timeoutMs: 20_000 });
      assert.notEqual(none.code, 0, 'no service behind "nothing"');
      await device.waitForOutput(/refused a stream to unknown service "nothing"/, 10_000);
      const stopped = await direct.stop('SIGTERM', 5000);
      assert.deepEqual([stopped.code, stopped.forced], [0, false], 'peer connect ends on SIGTERM, exit 0');

      // relayed: both ends through edgeward's TURN
      const relayed = connect(['--relay-only'], [3222, 3280]);
      const p2 = await pathOf(relayed);
      assert.equal(p2.path, 'relayed');
      assert.equal(p2.local.type, 'relay');
      const status2 = await sessionWithPath(ew, 'relayed');
      assert.ok(status2.session.pair !== null && [status2.session.pair.local.type, status2.session.pair.remote.type].includes('relay'), JSON.stringify(status2.session.pair));
      const e2 = await echoCheck(3222, 1024 * 1024);
      process.stdout.write(`# echo over the relayed path: ${e2.sent} bytes out and back in ${e2.ms} ms\n`);
      assert.deepEqual([e2.back, e2.equal], [e2.sent, true]);
      const allocations = (await ew.api('GET', '/api/v1/turn/allocations')).body as { allocations: Array<{ user: string; bytes: { up: number; down: number } }> };
      const relayedBytes = allocations.allocations.filter((a) => a.user === 'alice').reduce((n, a) => n + a.bytes.up + a.bytes.down, 0);
      assert.ok(relayedBytes >= 2 * e2.sent, `the TURN allocations of alice carried the stream: ${relayedBytes} bytes`);

      // relayed through a TURN server of the user's own (coturn, --ice-server) instead of edgeward's:
      // its relay ports (61000-61999) are above the kernel's ephemeral range, where edgeward's are
      const coturn = lab.spawn(ns, ['turnserver', '-n', '--no-cli', '--no-tls', '--no-dtls', '--listening-ip', '127.0.0.1', '--relay-ip', '127.0.0.1', '--listening-port', '3479', '--min-port', '61000', '--max-port', '61999', '--allow-loopback-peers', '--lt-cred-mech', '--user', 'lab:lab-turn-pw', '--realm', 'lab', '--fingerprint', '--simple-log', '--log-file', 'stdout', '--userdb', join(lab.tempDir('coturn'), 'turndb')]);
      await coturn.waitForOutput(/Total General servers/, 10_000);
      const alicesAllocations = async (): Promise<number> => ((await ew.api('GET', '/api/v1/turn/allocations')).body as typeof allocations).allocations.filter((a) => a.user === 'alice').length;
      const allocationsBefore = await alicesAllocations();
      const ownTurn = lab.spawn(ns, [process.execPath, BIN, 'peer', 'connect', 'box', '--server', SERVER, '--user', 'alice', '--forward', '3322=echo', '--status', '--ice-address', '127.0.0.1', '--relay-only', '--ice-server', 'turn:127.0.0.1:3479?transport=udp', '--ice-username', 'lab'], { env: { EDGEWARD_PASSWORD: 'alice-pw', EDGEWARD_ICE_CREDENTIAL: 'lab-turn-pw' } });
      const p3 = await pathOf(ownTurn);
      process.stdout.write(`# path through coturn: ${JSON.stringify(p3)}\n`);
      assert.equal(p3.path, 'relayed');
      assert.equal(p3.local.type, 'relay');
      assert.ok(p3.local.port >= 61000 && p3.local.port <= 61999, `the relay address is coturn's, not edgeward's: port ${p3.local.port}`);
      const e5 = await echoCheck(3322, 512 * 1024);
      assert.deepEqual([e5.back, e5.equal], [e5.sent, true], 'the echo through coturn came back whole');
      assert.equal((await alicesAllocations()) - allocationsBefore, 1, "the session added the device's allocation on edgeward's TURN, and none of the client's");
      await ownTurn.stop('SIGTERM', 5000);
      await coturn.stop('SIGTERM', 5000);

      // the device dies mid-session: the client hears it and ends with the reason
      const before = Date.now();
      await device.stop('SIGKILL', 1000);
      const exit = await Promise.race([relayed.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the client did not end within 30 s: ${relayed.stderr()}`)), 30_000))]);
      process.stdout.write(`# client ended ${Date.now() - before} ms after the device was killed: ${relayed.stderr().trim().split('\n').pop()}\n`);
      assert.equal(exit.code, 1);
      assert.match(relayed.stderr(), /the session ended: device_offline/);

      // the device comes back with the same token: the next session works
      const back = lab.spawn(ns, [process.execPath, BIN, 'peer', 'device', '--server', SERVER, '--expose', 'echo=tcp:127.0.0.1:7000', '--ice-address', '127.0.0.1'], { env: { EDGEWARD_DEVICE_TOKEN: token } });
      await back.waitForOutput(/online as device box of alice/, 15_000);
      const again = connect([], [4222, 4280]);
      assert.equal((await pathOf(again)).path, 'direct');
      const e3 = await echoCheck(4222, 256 * 1024);
      assert.deepEqual([e3.back, e3.equal], [e3.sent, true], 'the next session after the device came back');
      await again.stop('SIGTERM', 5000);

      // the server restarts (same data): the device connects again on its own, and serves again
      await ew.stop();
      const ew2 = await startEdgeward(lab, ns, { data: ew.data, args: ['--turn', '127.0.0.1:3478', '--turn-secret', 'lab-secret', '--turn-allow-peers', '127.0.0.0/8'] });
      await back.waitForOutput(/connecting again in \d+ s/, 10_000);
      await back.waitForOutput(/online as device box of alice[^\n]*\n(?:.*\n)*?.*online as device box of alice/, 40_000);
      const afterRestart = connect([], [5222, 5280]);
      assert.equal((await pathOf(afterRestart)).path, 'direct');
      const e4 = await echoCheck(5222, 64 * 1024);
      assert.deepEqual([e4.back, e4.equal], [e4.sent, true], 'a session after the device reconnected by itself');
      await afterRestart.stop('SIGTERM', 5000);
      await ew2.stop();
    }),
  );
});

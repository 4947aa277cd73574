// `edgeward peer connect` against the real program on loopback, where it must refuse rather than
// pretend: --relay-only when the rendezvous server hands out no TURN server (no --turn-secret, and a
// user without TURN access) ends at once with the reason, and the session it opened is closed.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, startProcess, type RunningProcess } from '../helpers/process.js';

describe('edgeward peer connect', () => {
  let g: Gateway;
  let device: RunningProcess;

  before(async () => {
    g = await startGateway({ args: ['--turn', '127.0.0.1:0'] });
    assert.equal((await g.api('POST', '/api/v1/users', { username: 'alice', password: 'alice-peer-pw', rendezvous: true })).status, 201);
    const dev = await g.api<{ token: string }>('POST', '/api/v1/devices', { user: 'alice', name: 'box' });
    device = startProcess([process.execPath, BIN, 'peer', 'device', '--server', g.apiUrl, '--expose', 'ssh=tcp:127.0.0.1:22', '--ice-address', '127.0.0.1'], { env: { EDGEWARD_DEVICE_TOKEN: dev.body.token } });
    await device.waitForOutput(/online as device box/, 15_000);
  });

  after(async () => {
    await device?.stop('SIGTERM', 5000);
    await g?.stop();
  });

  it('--relay-only without a TURN server ends at once, saying why, and leaves no session', async () => {
    const started = Date.now();
    const r = await runCmd([process.execPath, BIN, 'peer', 'connect', 'box', '--server', g.apiUrl, '--user', 'alice', '--relay-only', '--forward', '0=ssh', '--ice-address', '127.0.0.1'], { env: { ...process.env, EDGEWARD_PASSWORD: 'alice-peer-pw' }, timeoutMs: 30_000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--relay-only needs a TURN server/);
    assert.ok(Date.now() - started < 10_000, `it ended in ${Date.now() - started} ms, not at the ICE timeout`);
    const status = await g.api<{ sessions: unknown[] }>('GET', '/api/v1/rendezvous/status');
    assert.deepEqual(status.body.sessions, [], 'the session it opened is closed');
  });
});

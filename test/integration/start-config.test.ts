// `edgeward start --config FILE`: the YAML settings take effect in the real program (auth required,
// the connection limit enforced), flags override the file, and a bad file is refused with a message
// naming the key, before anything listens.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { startHttpServer, type HttpPeer } from '../helpers/peers.js';
import { runCmd, waitFor } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function configFile(name: string, yaml: string): string {
  const p = join(dir, name);
  writeFileSync(p, yaml);
  return p;
}

describe('edgeward start --config', () => {
  let g: Gateway;
  let web: HttpPeer;

  before(async () => {
    web = await startHttpServer('configured');
    const file = configFile('edgeward.yaml', ['# a router', 'socks-auth: true', 'max-connections: 2', 'workers: 1', 'idle-timeout: 600', 'socks-deny: [192.0.2.0/24]'].join('\n') + '\n');
    g = await startGateway({ args: ['--config', file] });
    const u = await g.api('POST', '/api/v1/users', { username: 'cfg', password: 'cfg-pass' });
    assert.equal(u.status, 201, u.text);
  });

  after(async () => {
    await g?.stop();
    await web?.close();
  });

  it('requires a password, as the file says', async () => {
    const url = `http://127.0.0.1:${web.port}/`;
    const without = await runCmd(['curl', '-sS', '--max-time', '5', '--socks5', `127.0.0.1:${g.socksPort}`, url], { timeoutMs: 10_000 });
    assert.equal(without.code, 97, without.stderr);
    const withUser = await runCmd(['curl', '-sS', '--max-time', '5', '--socks5', `127.0.0.1:${g.socksPort}`, '--proxy-user', 'cfg:cfg-pass', url], { timeoutMs: 10_000 });
    assert.equal(withUser.stdout, 'configured', withUser.stderr);
  });

  it('holds at most max-connections clients: the next one is closed at once', async () => {
    const open: net.Socket[] = [];
    // the clients of the tests before must be gone, and then exactly these two held, or the count is off
    const socksClients = async (): Promise<number> => {
      const m = /^edgeward_socks_clients (\d+)$/m.exec((await g.api<string>('GET', '/metrics')).text);
      return m ? Number(m[1]) : -1;
    };
    await waitFor('no SOCKS client left open by the tests before', async () => (await socksClients()) === 0, 10_000);
    try {
      for (let i = 0; i < 2; i++) {
        const s = net.connect(g.socksPort, '127.0.0.1');
        s.on('error', () => undefined);
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        open.push(s);
      }
      await waitFor('the gateway to hold both clients', async () => (await socksClients()) === 2, 10_000);
      const third = net.connect(g.socksPort, '127.0.0.1');
      third.on('error', () => undefined);
      const closed = await new Promise<boolean>((resolve) => {
        third.once('close', () => resolve(true));
        setTimeout(() => resolve(false), 3000);
      });
      assert.equal(closed, true, 'the third client should be closed by the server');
      const stats = await waitFor('rejectedClients to count it', async () => {
        const r = await g.api<{ rejectedClients: number }>('GET', '/api/v1/stats');
        return r.body.rejectedClients >= 1 ? r.body : undefined;
      });
      assert.ok(stats.rejectedClients >= 1);
    } finally {
      for (const s of open) s.destroy();
    }
  });
});

describe('a bad --config file', () => {
  it('is refused with exit 2 and a message naming the unknown key', async () => {
    const file = configFile('bad.yaml', 'socks: 127.0.0.1:0\nsocks-auht: true\n');
    const r = await runCmd([process.execPath, BIN, 'start', '--config', file, '--data', join(dir, 'data')], { timeoutMs: 15_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /unknown setting "socks-auht"/);
  });

  it('names the key with the wrong type', async () => {
    const file = configFile('type.yaml', 'max-connections: many\n');
    const r = await runCmd([process.execPath, BIN, 'start', '--config', file, '--data', join(dir, 'data')], { timeoutMs: 15_000 });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /max-connections must be a positive integer/);
  });
});

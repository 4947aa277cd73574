// The service model seen from outside: a sectioned YAML file starts the gateway with the services
// it enables, every thread's connections are counted once in /metrics and /api/v1/stats (prom-client,
// merged across worker threads), and a service's own API route exists only when it runs.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { SocketReader, startEchoServer, startHttpServer, tcpConnect, type HttpPeer } from '../helpers/peers.js';
import { runCmd, waitFor } from '../helpers/process.js';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-services-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function metric(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

describe('a gateway started from a sectioned YAML file, with 3 threads', () => {
  let g: Gateway;
  let web: HttpPeer;
  before(async () => {
    web = await startHttpServer('through');
    const file = join(dir, 'sections.yaml');
    writeFileSync(file, ['gateway:', '  workers: 3', 'socks:', '  deny: [192.0.2.0/24]', 'transport:', '  idle-timeout: 600', ''].join('\n'));
    g = await startGateway({ args: ['--config', file] });
  });
  after(async () => {
    await g?.stop();
    await web?.close();
  });

  it('logs the services it runs and the thread count from the file', () => {
    const listening = g.logs().find((l) => l.msg === 'listening');
    assert.ok(listening, g.stderr());
    assert.deepEqual(listening.services, ['socks']);
    assert.equal(listening.socksThreads, 3);
  });

  it('counts every connection once, whichever thread took it, in /metrics and /api/v1/stats alike', async () => {
    const n = 12;
    for (let i = 0; i < n; i++) {
      const r = await runCmd(['curl', '--silent', '--max-time', '10', '--socks5', `${g.socksHost}:${g.socksPort}`, `http://127.0.0.1:${web.port}/`]);
      assert.equal(r.stdout, 'through', r.stderr);
    }
    const denied = await runCmd(['curl', '--silent', '--max-time', '10', '--socks5', `${g.socksHost}:${g.socksPort}`, 'http://192.0.2.1/']);
    assert.notEqual(denied.code, 0, 'socks.deny from the YAML section refuses the destination');
    const m = await g.api<string>('GET', '/metrics');
    const stats = await g.api<{ connectionsTotal: number; failures: Record<string, number> }>('GET', '/api/v1/stats');
    assert.equal(metric(m.text, 'edgeward_connections_total'), n, m.text);
    assert.equal(stats.body.connectionsTotal, n);
    assert.equal(metric(m.text, 'edgeward_request_failures_total{reason="not_allowed"}'), 1, m.text);
    assert.equal(stats.body.failures.not_allowed, 1);
    assert.equal(metric(m.text, 'edgeward_policies'), 0, 'a value that is the same in every thread is not summed');
    assert.match(m.text, /# HELP edgeward_request_failures_total Requests that never reached relaying/);
  });

  it('has metrics of the SOCKS service of its own: clients in the handshake count in edgeward_socks_clients', async () => {
    const value = async (): Promise<number | undefined> => metric((await g.api<string>('GET', '/metrics')).text, 'edgeward_socks_clients');
    await waitFor('no SOCKS client open', async () => (await value()) === 0);
    const idle = await tcpConnect(g.socksHost, g.socksPort);
    try {
      await waitFor('the silent client to be counted', async () => (await value()) === 1);
    } finally {
      idle.destroy();
    }
    await waitFor('the closed client to be gone', async () => (await value()) === 0);
  });

  it('has no route of a service that is not running (intercept)', async () => {
    const r = await g.api('GET', '/api/v1/intercept/firewall');
    assert.equal(r.status, 404, r.text);
  });
});

describe('--max-connections across worker threads', () => {
  let g: Gateway;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  before(async () => {
    echo = await startEchoServer();
    g = await startGateway({ args: ['--workers', '2', '--max-connections', '20'] });
  });
  after(async () => {
    await g?.stop();
    await echo?.close();
  });

  /** A proxied connection through the SOCKS port, echoing one byte: the socket, or null when the gateway refused it. */
  async function proxied(): Promise<net.Socket | null> {
    const s = await tcpConnect(g.socksHost, g.socksPort);
    s.on('error', () => undefined);
    const r = new SocketReader(s);
    const req = Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff]);
    s.write(req);
    try {
      const reply = await r.read(12, 3000);
      if (reply[3] !== 0) throw new Error(`SOCKS reply ${reply[3]}`);
      s.write('x');
      if ((await r.read(1, 3000)).toString() !== 'x') throw new Error('no echo');
      return s;
    } catch {
      s.destroy();
      return null;
    }
  }

  it('holds 20 open connections in all, whichever thread took them, refuses the 21st, and takes one again when one closes', async () => {
    const open: net.Socket[] = [];
    let refused = 0;
    for (let i = 0; i < 30; i++) {
      const s = await proxied();
      if (s) open.push(s);
      else refused++;
    }
    assert.equal(open.length, 20, `open: ${open.length}, refused: ${refused}`);
    assert.equal(refused, 10);
    for (const s of open.splice(0, 5)) s.destroy();
    await waitFor('the gateway to see the 5 closed', async () => (await g.api<{ active: number }>('GET', '/api/v1/stats')).body.active === 15, 5000, 50);
    let again = 0;
    for (let i = 0; i < 8; i++) {
      const s = await proxied();
      if (s) {
        open.push(s);
        again++;
      }
    }
    assert.equal(again, 5, 'the 5 places freed are taken again, no more');
    for (const s of open) s.destroy();
  });
});

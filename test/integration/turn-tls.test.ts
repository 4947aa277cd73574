// TURN over TLS (turns:, edgeward start --turn-tls ... --turn-tls-cert --turn-tls-key) against
// coturn's turnutils_uclient in TLS mode (-S -t): channels, Send indications and relay to relay
// with nothing lost; a client that does not speak TLS loses only its own connection; a missing,
// unreadable or mismatched certificate stops the start with an error naming the file; a renewed
// certificate is picked up without a restart.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { BIN, startGateway, type Gateway } from '../helpers/edgeward.js';
import { runCmd, type RunningProcess } from '../helpers/process.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';
import { assertAllEchoed, startTurnPeer, turnPort } from '../helpers/turn.js';

const skip = requirement(missingPrograms(['turnutils_uclient', 'turnutils_peer', 'openssl']));
if (skip) process.stdout.write(`# skipping the TURN over TLS tests: ${skip}\n`);

const SECRET = 'turn-tls-secret';

/** A self-signed certificate for 127.0.0.1 and localhost, with a key, and a second key that does not match it. */
async function makeCertificate(dir: string): Promise<{ cert: string; key: string; otherKey: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  const otherKey = join(dir, 'other-key.pem');
  const r = await runCmd(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']);
  assert.equal(r.code, 0, r.stderr);
  const k = await runCmd(['openssl', 'genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', otherKey]);
  assert.equal(k.code, 0, k.stderr);
  return { cert, key, otherKey };
}

describe('TURN over TLS with coturn\'s client', { skip }, () => {
  let dir: string;
  let files: { cert: string; key: string; otherKey: string };
  let g: Gateway;
  let tlsPort = 0;
  let peerPort = 0;
  let peer: RunningProcess;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'edgeward-turn-tls-'));
    files = await makeCertificate(dir);
    g = await startGateway({ args: ['--turn', '127.0.0.1:0', '--turn-tls', '127.0.0.1:0', '--turn-tls-cert', files.cert, '--turn-tls-key', files.key, '--turn-secret', SECRET, '--turn-allow-peers', '127.0.0.0/8'] });
    tlsPort = await turnPort(g, 'turnTls');
    assert.notEqual(tlsPort, await turnPort(g));
    ({ port: peerPort, peer } = await startTurnPeer());
  });
  after(async () => {
    await peer?.stop();
    await g?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const uclient = (extra: string[]): ReturnType<typeof runCmd> =>
    runCmd(['turnutils_uclient', '-S', '-t', ...extra, '-W', SECRET, '-u', 'tess', '-n', '20', '-m', '1', '-l', '100', '-p', String(tlsPort), '127.0.0.1'], { timeoutMs: 40_000 });

  it('relays through channels over TLS (-S -t) with nothing lost', async () => {
    const c = await g.api<{ uris: string[] }>('POST', '/api/v1/turn/credentials', { user: 'tess' });
    assert.equal(c.status, 200);
    assert.ok(c.body.uris.includes(`turns:127.0.0.1:${tlsPort}?transport=tcp`), JSON.stringify(c.body.uris));
    const r = await uclient(['-e', '127.0.0.1', '-r', String(peerPort)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
    const metrics = await fetch(`${g.apiUrl}/metrics`, { headers: { authorization: `Bearer ${g.token}` } }).then((x) => x.text());
    assert.match(metrics, /edgeward_turn_relayed_bytes_total\{direction="up"\} [1-9]/);
  });

  it('relays through Send and Data indications over TLS (-S -t -s) with nothing lost', async () => {
    const r = await uclient(['-s', '-e', '127.0.0.1', '-r', String(peerPort)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('relays between two TLS allocations on this server (-S -t -y) with nothing lost', async () => {
    const r = await uclient(['-y']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('lists a TLS client\'s allocation as transport tls while it is open', async () => {
    const run = uclient(['-e', '127.0.0.1', '-r', String(peerPort), '-n', '400', '-z', '20']);
    let seen: { transport: string }[] = [];
    for (let i = 0; i < 50 && seen.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      const res = await g.api<{ allocations: { transport: string }[] }>('GET', '/api/v1/turn/allocations');
      seen = res.body.allocations;
    }
    const r = await run;
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(seen.length > 0, 'no allocation was listed while uclient ran');
    assert.ok(seen.every((a) => a.transport === 'tls'), JSON.stringify(seen));
  });

  it('speaks TLS 1.2 and 1.3, and refuses TLS 1.1', async () => {
    const handshake = (version: tls.SecureVersion): Promise<string> =>
      new Promise((resolve) => {
        const c = tls.connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false, minVersion: version, maxVersion: version }, () => {
          const p = c.getProtocol() ?? '';
          c.destroy();
          resolve(p);
        });
        c.once('error', (e) => resolve(`refused: ${e.message}`));
      });
    assert.equal(await handshake('TLSv1.3'), 'TLSv1.3');
    assert.equal(await handshake('TLSv1.2'), 'TLSv1.2');
    assert.match(await handshake('TLSv1.1'), /^refused/);
  });

  it('closes a client that does not speak TLS, and serves the next TLS client', async () => {
    const s = net.connect(tlsPort, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    const closed = new Promise<void>((resolve) => s.once('close', () => resolve()));
    s.on('error', () => undefined);
    // a plain STUN Binding request where a TLS ClientHello belongs
    s.write(Buffer.from('000100002112a442000000000000000000000000', 'hex'));
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the non-TLS client was not closed within 5 s')), 5000))]);
    const r = await uclient(['-e', '127.0.0.1', '-r', String(peerPort)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assertAllEchoed(r.stdout + r.stderr, 40);
  });

  it('refuses to start without a readable, matching certificate and key, naming what is wrong', async () => {
    const start = (args: string[]): ReturnType<typeof runCmd> => runCmd([process.execPath, BIN, 'start', '--socks', '127.0.0.1:0', '--api', '127.0.0.1:0', '--data', join(dir, 'data'), '--turn', '127.0.0.1:0', '--turn-secret', SECRET, ...args], { timeoutMs: 15_000 });
    const missing = await start(['--turn-tls', '127.0.0.1:0', '--turn-tls-cert', join(dir, 'nope.pem'), '--turn-tls-key', files.key]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /--turn-tls-cert \S*nope\.pem: no such file/);
    const mismatched = await start(['--turn-tls', '127.0.0.1:0', '--turn-tls-cert', files.cert, '--turn-tls-key', files.otherKey]);
    assert.notEqual(mismatched.code, 0);
    assert.match(mismatched.stderr, /--turn-tls-cert .*--turn-tls-key .*other-key\.pem: .*(mismatch|does not match)/i);
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a certificate\n');
    const notPem = await start(['--turn-tls', '127.0.0.1:0', '--turn-tls-cert', garbage, '--turn-tls-key', files.key]);
    assert.notEqual(notPem.code, 0);
    assert.match(notPem.stderr, /garbage\.pem/);
    const noKey = await start(['--turn-tls', '127.0.0.1:0', '--turn-tls-cert', files.cert]);
    assert.equal(noKey.code, 2, noKey.stderr);
    assert.match(noKey.stderr, /--turn-tls needs both --turn-tls-cert FILE and --turn-tls-key FILE/);
  });

  it('serves a renewed certificate to new connections without a restart, and keeps the old one when the new files do not load', async () => {
    const fingerprint = (): Promise<string> =>
      new Promise((resolve, reject) => {
        const c = tls.connect({ host: '127.0.0.1', port: tlsPort, rejectUnauthorized: false }, () => {
          const f = c.getPeerX509Certificate()?.fingerprint256 ?? '';
          c.destroy();
          resolve(f);
        });
        c.once('error', reject);
      });
    const before = await fingerprint();
    const renewed = await makeCertificate(mkdtempSync(join(dir, 'renewed-')));
    const expected = new X509Certificate(readFileSync(renewed.cert)).fingerprint256;
    assert.notEqual(expected, before);
    // as a certificate tool does: new files moved over the old ones
    copyFileSync(renewed.key, `${files.key}.new`);
    renameSync(`${files.key}.new`, files.key);
    copyFileSync(renewed.cert, `${files.cert}.new`);
    renameSync(`${files.cert}.new`, files.cert);
    let now = before;
    for (let i = 0; i < 40 && now !== expected; i++) {
      await new Promise((r) => setTimeout(r, 250));
      now = await fingerprint();
    }
    assert.equal(now, expected, 'new connections get the renewed certificate within 10 s');
    await g.waitForLog((l) => l.msg === 'TURN TLS certificate reloaded', 5000);
    writeFileSync(files.cert, 'not a certificate\n');
    await g.waitForLog((l) => l.msg === 'TURN TLS certificate not reloaded: keeping the one in use', 10_000);
    assert.equal(await fingerprint(), expected, 'a broken file leaves the certificate in use');
    const r = await uclient(['-e', '127.0.0.1', '-r', String(peerPort)]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
  });
});

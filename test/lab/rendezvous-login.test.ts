// Password logins (the rendezvous login and the console sign-in) from another host (lab: a client namespace reaches the gateway's namespace over a
// veth): over plain HTTP the gateway refuses them (403 insecure_login), over the API's TLS
// (--api-tls-cert/--api-tls-key, curl checking the certificate) it takes them, and a lab gateway
// started with --allow-insecure-login takes them over plain HTTP. What the user notices: a password
// never crosses a network in clear text unless the operator said so.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { BIN, startEdgeward } from '../helpers/edgeward.js';
import { withLab } from '../helpers/netns.js';
import { sleep } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';

const skip = requirement(labSkipReason({ needs: ['curl', 'openssl'] }) ?? edgewardSkipReason());
if (skip) process.stdout.write(`# skipping the rendezvous login lab: ${skip}\n`);

const SERVER = '10.78.0.1';

describe('rendezvous logins from another host (lab)', { skip }, () => {
  it('refuses a password over plain HTTP, takes it over TLS, and over plain HTTP only with --allow-insecure-login', { timeout: 90_000 }, () =>
    withLab(async (lab) => {
      const server = await lab.addNamespace('server');
      const client = await lab.addNamespace('client');
      await lab.link(server, client, { addrA: `${SERVER}/24`, addrB: '10.78.0.2/24' });
      const dir = lab.tempDir('tls');
      const cert = join(dir, 'cert.pem');
      const key = join(dir, 'key.pem');
      const made = await lab.exec(server, ['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=edgeward-lab', '-addext', `subjectAltName=IP:${SERVER}`]);
      assert.equal(made.code, 0, made.stderr);

      const user = { username: 'alice', password: 'alice-password', rendezvous: true, console: true };
      // the rendezvous login and the console's sign-in: the same rule for a password
      const login = (url: string, extra: string[] = [], path = '/api/v1/rendezvous/login') =>
        lab.exec(client, ['curl', '-sS', '--max-time', '5', ...extra, '-H', 'content-type: application/json', '--data-binary', '@-', '-w', '\n%{http_code}', `${url}${path}`], { input: JSON.stringify({ username: user.username, password: user.password }), allowFailure: true, timeoutMs: 10_000 });
      const signIn = (url: string, extra: string[] = []) => login(url, extra, '/api/v1/console/session');
      const status = (r: { stdout: string }) => Number(r.stdout.slice(r.stdout.lastIndexOf('\n') + 1));

      // 1. plain HTTP from another host: refused before the password is looked at
      const plain = await startEdgeward(lab, server, { api: `${SERVER}:8080`, args: ['--turn', '127.0.0.1:3478'] });
      assert.equal((await plain.api('POST', '/api/v1/users', user)).status, 201);
      const refused = await login(`http://${SERVER}:8080`);
      assert.equal(status(refused), 403, refused.stdout);
      assert.match(refused.stdout, /"code":"insecure_login"/);
      assert.match(refused.stdout, /--api-tls-cert/);
      const consoleRefused = await signIn(`http://${SERVER}:8080`);
      assert.equal(status(consoleRefused), 403, consoleRefused.stdout);
      assert.match(consoleRefused.stdout, /"code":"insecure_login"/);
      await plain.stop();

      // 2. the API over TLS: taken, and curl verified the certificate it was given
      const tlsProc = lab.spawn(server, [process.execPath, BIN, 'start', '--socks', '127.0.0.1:1081', '--api', `${SERVER}:8443`, '--api-tls-cert', cert, '--api-tls-key', key, '--turn', '127.0.0.1:3479', '--data', lab.tempDir('data-tls')], { env: { EDGEWARD_API_TOKEN: 'lab-token' } });
      for (let i = 0; ; i++) {
        const h = await lab.exec(client, ['curl', '-sS', '-f', '-o', '/dev/null', '--max-time', '1', '--cacert', cert, `https://${SERVER}:8443/health`], { allowFailure: true, timeoutMs: 5000 });
        if (h.code === 0) break;
        assert.ok(i < 75 && tlsProc.running, `the TLS gateway did not answer: ${tlsProc.stderr().slice(-2000)}`);
        await sleep(200);
      }
      assert.match(tlsProc.stderr(), new RegExp(`"api":"https://${SERVER.replace(/\./g, '\\.')}:8443"`), 'the listening line says https');
      const add = await lab.exec(client, ['curl', '-sS', '--cacert', cert, '-H', 'authorization: Bearer lab-token', '-H', 'content-type: application/json', '--data-binary', '@-', `https://${SERVER}:8443/api/v1/users`], { input: JSON.stringify(user), timeoutMs: 10_000 });
      assert.match(add.stdout, /"username":"alice"/);
      const overTls = await login(`https://${SERVER}:8443`, ['--cacert', cert]);
      assert.equal(status(overTls), 200, overTls.stdout);
      assert.match(overTls.stdout, /"token":"ews_/);
      const consoleOverTls = await signIn(`https://${SERVER}:8443`, ['--cacert', cert, '-D', '-']);
      assert.equal(status(consoleOverTls), 200, consoleOverTls.stdout);
      assert.match(consoleOverTls.stdout, /^set-cookie: edgeward_console=ewc_[^;]+; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure\r?$/im, 'over TLS the cookie is Secure');
      // edgeward's own CLI trusts the self-signed certificate through NODE_EXTRA_CA_CERTS
      const cli = await lab.exec(client, ['env', `NODE_EXTRA_CA_CERTS=${cert}`, `EDGEWARD_API_URL=https://${SERVER}:8443`, 'EDGEWARD_API_TOKEN=lab-token', process.execPath, BIN, 'user', 'list'], { allowFailure: true, timeoutMs: 15_000 });
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^alice\s/m);
      const plainToTls = await login(`http://${SERVER}:8443`);
      assert.notEqual(status(plainToTls), 200, 'no plain HTTP on the TLS port');
      await tlsProc.stop('SIGTERM', 5000);

      // 3. --allow-insecure-login: the operator's choice, for labs
      const lax = await startEdgeward(lab, server, { api: `${SERVER}:8081`, socks: '127.0.0.1:1082', args: ['--turn', '127.0.0.1:3480', '--allow-insecure-login'] });
      assert.equal((await lax.api('POST', '/api/v1/users', user)).status, 201);
      const taken = await login(`http://${SERVER}:8081`);
      assert.equal(status(taken), 200, taken.stdout);
      assert.equal(status(await signIn(`http://${SERVER}:8081`)), 200);
      await lax.stop();
    }),
  );
});

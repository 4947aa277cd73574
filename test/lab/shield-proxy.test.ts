// The shield's connection layer in router mode (test/helpers/shield-lab.ts): a service with `proxy`
// has its connections diverted by TPROXY to edgeward's L4 proxy in the shield namespace, which dials
// the backend they were addressed to. The backend is nginx (one worker, 64 connections: what a
// slowloris fills), on two ports: `plain` goes through the packet layer only, `web` through the proxy
// with PROXY protocol v2, so nginx logs the real client.
//
//   slowloris (slowhttptest -H) on plain   legit requests fail: nginx is full of slow clients
//   slowloris on web (proxy)               the proxy closes the slow senders and, at its cap, serves
//                                          the well-behaved legit client before the suspects
//   PROXY v2                               nginx answers with $proxy_protocol_addr: the legit address
//   crash, then `edgeward shield remove`   the ruleset and the policy routing are as before
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startEdgeward } from '../helpers/edgeward.js';
import { withLab, type Lab, type Netns } from '../helpers/netns.js';
import { sleep, waitFor } from '../helpers/process.js';
import { edgewardSkipReason, labSkipReason, requirement } from '../helpers/requirements.js';
import { buildShieldLab } from '../helpers/shield-lab.js';
import { curlGets, nginxArgv, nginxConfig } from '../helpers/nginx.js';

const skip = requirement(labSkipReason({ needs: ['nft', 'nginx', 'slowhttptest', 'curl', 'timeout'] }) ?? edgewardSkipReason());

const PLAIN = 8081;
const WEB = 80;
/** nginx's connections (one worker): what slowhttptest's 300 fill */
const NGINX_CONNS = 64;
/** the proxy's cap, under nginx's: at the cap the proxy chooses whom to serve */
const PROXY_CAP = 40;

interface ProxyView {
  name: string;
  family: number;
  active: number;
  accepted: number;
  closed: Record<string, number>;
  suspects: number;
}


/** slowhttptest -H (slowloris) from `ns`: 300 connections at 100/s, a header line every 3 s; bounded by timeout(1). */
function slowloris(lab: Lab, ns: Netns, url: string, seconds: number) {
  return lab.spawn(ns, ['timeout', '-s', 'KILL', String(seconds + 5), 'slowhttptest', '-c', '300', '-H', '-i', '3', '-r', '100', '-t', 'GET', '-u', url, '-x', '24', '-p', '3', '-l', String(seconds)]);
}

describe('the shield, L4 proxy in router mode (lab)', { skip }, () => {
  it('closes slowloris clients through TPROXY while a legit client is served, tells nginx the client (PROXY v2), and leaves no trace', { timeout: 180_000 }, () =>
    withLab(async (lab) => {
      const sl = await buildShieldLab(lab, { mode: 'router' });
      const dir = lab.tempDir('nginx');
      const conf = join(dir, 'nginx.conf');
      writeFileSync(
        conf,
        nginxConfig(dir, {
          connections: NGINX_CONNS,
          servers: `  server {
    listen ${sl.backendAddr}:${PLAIN};
    location / { add_header X-Seen "plain $remote_addr"; return 200 "ok\\n"; }
  }
  server {
    listen ${sl.backendAddr}:${WEB} proxy_protocol;
    location / { add_header X-Seen "web $proxy_protocol_addr via $remote_addr"; return 200 "ok\\n"; }
  }`,
        }),
      );
      lab.spawn(sl.backend, nginxArgv(conf, dir));
      await waitFor('nginx to listen', async () => (await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${PLAIN}/`, 1, 'x-seen')).ok === 1, 10_000, 200);
      const rulesetBefore = (await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout;
      const rulesBefore = (await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout;

      const ew = await startEdgeward(lab, sl.shield, {
        args: [
          '--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1,
          // the packet layer's per-source limits out of the way: this is the connection layer's test
          '--shield-service', `plain=tcp:${sl.backendAddr}:${PLAIN},rate=10000,conns=10000`,
          '--shield-service', `web=tcp:${sl.backendAddr}:${WEB},rate=10000,conns=10000,proxy,proxy-protocol`,
          '--shield-first-byte', '2', '--shield-min-rate', '256', '--shield-rate-grace', '2', '--shield-proxy-conns', String(PROXY_CAP),
        ],
      });
      const proxies = async (): Promise<ProxyView[]> => {
        const r = await ew.api('GET', '/api/v1/shield');
        assert.equal(r.status, 200, r.text);
        return (r.body as { proxies: ProxyView[] }).proxies;
      };
      assert.deepEqual((await proxies()).map((p) => [p.name, p.family]), [['web', 4]], 'one proxy: the IPv4 service with proxy');
      const ipRules = (await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout;
      assert.match(ipRules, /fwmark 0x6578 lookup 25976/, 'the policy routing of the TPROXY mark is in place');

      // through the proxy, calm: nginx sees the client's address in the PROXY v2 header, and the shield's as the peer
      const calm = await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${WEB}/`, 20, 'x-seen');
      process.stdout.write(`# calm through the proxy: ${calm.ok}/20, nginx said "${calm.seen[0]}"\n`);
      assert.equal(calm.ok, 20);
      assert.equal(calm.seen[0], `web ${sl.addr.legit} via 10.250.3.1`, 'nginx knows the real client (PROXY v2); the TCP peer is the shield');

      // slowloris against the service without the proxy: nginx's 64 connections fill with slow clients
      const bare = slowloris(lab, sl.attacker, `http://${sl.backendAddr}:${PLAIN}/`, 15);
      await sleep(5000);
      const hurt = await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${PLAIN}/`, 20, 'x-seen');
      process.stdout.write(`# slowloris on plain (packet layer only): legit ${hurt.ok}/20\n`);
      await bare.stop('SIGKILL');
      assert.ok(hurt.ok <= 10, `slowloris must hurt the unproxied service for the comparison to mean anything: ${hurt.ok}/20 served`);
      // nginx drops the attacker's connections once their sockets are gone
      await waitFor('nginx to serve again', async () => (await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${PLAIN}/`, 1, 'x-seen')).ok === 1, 20_000, 500);

      // slowloris against the proxied service: the slow senders are closed, suspects served last
      const loris = slowloris(lab, sl.attacker, `http://${sl.backendAddr}:${WEB}/`, 20);
      await sleep(5000);
      const served = await curlGets(lab, sl.legit, `http://${sl.backendAddr}:${WEB}/`, 40, 'x-seen');
      const during = (await proxies())[0]!;
      await loris.stop('SIGKILL');
      process.stdout.write(`# slowloris on web (proxy): legit ${served.ok}/40; proxy active ${during.active}, suspects ${during.suspects}, closed ${JSON.stringify(Object.fromEntries(Object.entries(during.closed).filter(([, n]) => n > 0)))}\n`);
      assert.ok(served.ok >= 38, `the legit client is served through the proxy under slowloris: ${served.ok}/40`);
      assert.ok(during.closed.slow_send! + during.closed.first_byte_timeout! > 0, 'the proxy closed slow senders');
      assert.ok(during.active <= PROXY_CAP, `the proxy holds at most its cap: ${during.active}`);
      assert.ok(served.seen.every((b) => b === `web ${sl.addr.legit} via 10.250.3.1`), 'every answer came from nginx with the client address');
      const metrics = await ew.api('GET', '/metrics');
      assert.match(metrics.text, /^edgeward_shield_proxy_closed_total\{service="web",reason="slow_send"\} [1-9]\d*$/m, 'Prometheus has the closes');

      // a crash leaves the table and the policy routing behind; `edgeward shield remove` clears both
      await ew.process.stop('SIGKILL');
      assert.match((await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout, /fwmark 0x6578/, 'after a crash the routing is still there');
      const removed = await ew.cli(['shield', 'remove']);
      assert.equal(removed.code, 0, removed.stderr);
      assert.match(removed.stdout, /removed table inet edgeward_shield/);
      assert.equal((await lab.exec(sl.shield, ['nft', 'list', 'ruleset'])).stdout, rulesetBefore, 'the ruleset is as before');
      assert.equal((await lab.exec(sl.shield, ['ip', 'rule', 'list'])).stdout, rulesBefore, 'the policy routing is as before');
      const routes = await lab.exec(sl.shield, ['ip', 'route', 'show', 'table', '25976'], { allowFailure: true });
      assert.equal(routes.stdout.trim(), '', 'the local route of the proxy table is gone');
    }),
  );
});

// `npm run bench -- --only shield`: the shield against what an operator would do instead, in the
// shield lab (router mode, test/helpers/shield-lab.ts: attacker and legit client on two WAN links,
// the backend behind the shield namespace). Each attack runs once per column, bounded:
//   SYN flood (hping3 --flood --rand-source)   none | the backend's own SYN cookies | edgeward (synproxy)
//   UDP flood from one source (hping3 --udp)   none | edgeward (per-source meter -> blocklist)
//   slowloris (slowhttptest -H) on nginx       none | edgeward (L4 proxy, TPROXY)
// and reports what the legitimate client got (served share, p99) and what the attacker sent.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEdgeward, type EdgewardInLab } from '../test/helpers/edgeward.js';
import { withLab, type Lab } from '../test/helpers/netns.js';
import { curlGets, nginxArgv, nginxConfig } from '../test/helpers/nginx.js';
import { sleep, waitFor } from '../test/helpers/process.js';
import { edgewardSkipReason, labSkipReason } from '../test/helpers/requirements.js';
import { buildShieldLab, hpingFlood, legitUdp, legitUnderSynFlood, setSyncookies, startBackendServers, type ShieldLab } from '../test/helpers/shield-lab.js';

const PORTS = { tcp: 7001, banner: 7025, udp: 7053 };
const NGINX_PORT = 80;

export interface ShieldRow {
  attack: string;
  column: string;
  /** what the legit client got, e.g. "200/200 (100 %), p99 21 ms" */
  legit: string;
  /** served share 0..1 */
  share: number;
  /** what the attacker sent, e.g. "812,000 SYNs (81,200/s)" */
  attacker: string;
  note: string;
}

export type ShieldResult = { rows: ShieldRow[] } | { skipped: string };

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

async function shieldOn(lab: Lab, sl: ShieldLab, services: string[], extra: string[] = []): Promise<EdgewardInLab> {
  return startEdgeward(lab, sl.shield, {
    args: ['--shield-mode', 'router', '--shield-interface', sl.ifname.wan0, '--shield-interface', sl.ifname.wan1, ...services.flatMap((s) => ['--shield-service', s]), ...extra],
  });
}


export async function measureShield(opts: { floodSeconds: number; log: (line: string) => void }): Promise<ShieldResult> {
  const skipped = labSkipReason({ needs: ['hping3', 'nft', 'sysctl', 'nginx', 'slowhttptest', 'curl', 'timeout'] }) ?? edgewardSkipReason();
  if (skipped) return { skipped };
  const { floodSeconds, log } = opts;
  return withLab(async (lab) => {
    const sl = await buildShieldLab(lab, { mode: 'router' });
    await startBackendServers(lab, sl, PORTS);
    const rows: ShieldRow[] = [];

    // SYN flood
    const synFlood = async (column: string, note: string): Promise<void> => {
      const { legit: r, sent } = await legitUnderSynFlood(lab, sl, sl.backendAddr, PORTS.tcp, floodSeconds);
      const seconds = Math.max(0.5, Math.min(floodSeconds, 0.5 + r.elapsedMs / 1000));
      const row = { attack: 'SYN flood, random sources', column, legit: `${r.ok}/${r.attempts} (${((100 * r.ok) / r.attempts).toFixed(0)} %), p99 ${r.p99Ms ?? '-'} ms`, share: r.ok / r.attempts, attacker: `${fmt(sent)} SYNs (~${fmt(sent / seconds)}/s while measured)`, note };
      rows.push(row);
      log(`shield: ${row.attack}, ${column}: legit ${row.legit}; ${row.attacker}`);
      await sleep(2000); // half-open connections and the SYN-RECV queue drain
    };
    await synFlood('none', 'backend: no SYN cookies, backlog 16');
    await setSyncookies(lab, sl.backend, true);
    await synFlood('backend SYN cookies', 'net.ipv4.tcp_syncookies=1 on the backend');
    await setSyncookies(lab, sl.backend, false);
    let ew = await shieldOn(lab, sl, [`web=tcp:${sl.backendAddr}:${PORTS.tcp},rate=500`, `game=udp:${sl.backendAddr}:${PORTS.udp},rate=1000`]);
    await synFlood('edgeward', 'synproxy in the shield namespace; the backend without cookies');

    // UDP flood from one source
    const udpFlood = async (column: string, note: string, shield: EdgewardInLab | null): Promise<void> => {
      const legit = legitUdp(lab, sl.legit, sl.backendAddr, PORTS.udp, { pps: 100, seconds: floodSeconds });
      await sleep(500);
      const t0 = Date.now();
      const flood = hpingFlood(lab, sl.attacker, ['--udp', '--flood', '-p', String(PORTS.udp), sl.backendAddr], floodSeconds - 1);
      const blocked = shield
        ? await waitFor('the flooder on the blocklist', async () => (await lab.exec(sl.shield, ['nft', 'list', 'set', 'inet', 'edgeward_shield', 'block4'])).stdout.includes(sl.addr.attacker) && Date.now() - t0, 5000, 50).catch(() => -1)
        : null;
      const sent = await flood;
      const u = await legit;
      const row = { attack: 'UDP flood, one source', column, legit: `${u.received}/${u.sent} answered (${(100 * u.ratio).toFixed(1)} %), p99 ${u.rttP99Ms ?? '-'} ms`, share: u.ratio, attacker: `${fmt(sent)} datagrams`, note: blocked === null ? note : `${note}; blocklisted after ${blocked} ms` };
      rows.push(row);
      log(`shield: ${row.attack}, ${column}: legit ${row.legit}; ${row.attacker}; ${row.note}`);
      await sleep(1000);
    };
    await udpFlood('edgeward', 'per-source meter 1000/s -> blocklist', ew);
    await ew.stop();
    await udpFlood('none', 'no filter', null);

    // slowloris on nginx (64 connections, one worker)
    const dir = lab.tempDir('nginx');
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(dir, { connections: 64, servers: `  server {\n    listen ${sl.backendAddr}:${NGINX_PORT};\n    location / { return 200 "ok\\n"; }\n  }` }));
    lab.spawn(sl.backend, nginxArgv(conf, dir));
    const url = `http://${sl.backendAddr}:${NGINX_PORT}/`;
    await waitFor('nginx to listen', async () => (await curlGets(lab, sl.legit, url, 1)).ok === 1, 10_000, 200);
    const loris = async (column: string, note: string): Promise<void> => {
      const attack = lab.spawn(sl.attacker, ['timeout', '-s', 'KILL', String(floodSeconds + 10), 'slowhttptest', '-c', '300', '-H', '-i', '3', '-r', '100', '-t', 'GET', '-u', url, '-x', '24', '-p', '3', '-l', String(floodSeconds + 5)]);
      await sleep(5000);
      const ok = (await curlGets(lab, sl.legit, url, 40)).ok;
      await attack.stop('SIGKILL');
      const row = { attack: 'slowloris on nginx (64 connections)', column, legit: `${ok}/40 GETs (${((100 * ok) / 40).toFixed(0)} %)`, share: ok / 40, attacker: '300 slow connections, a header line every 3 s', note };
      rows.push(row);
      log(`shield: ${row.attack}, ${column}: legit ${row.legit}`);
      await waitFor('nginx to serve again', async () => (await curlGets(lab, sl.legit, url, 1)).ok === 1, 30_000, 500).catch(() => undefined);
    };
    await loris('none', 'nginx alone');
    ew = await shieldOn(lab, sl, [`web=tcp:${sl.backendAddr}:${NGINX_PORT},rate=10000,conns=10000,proxy`], ['--shield-proxy-conns', '40', '--shield-min-rate', '256', '--shield-rate-grace', '2']);
    await loris('edgeward', 'L4 proxy: min rate 256 B/s over 2 s, cap 40');
    await ew.stop();
    return { rows };
  });
}

export function formatShield(r: ShieldResult): string {
  if ('skipped' in r) return `  skipped: ${r.skipped}`;
  const head = ['attack', 'column', 'legit client', 'attacker', 'how'];
  const cells = r.rows.map((x) => [x.attack, x.column, x.legit, x.attacker, x.note]);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]): string => `  ${c.map((v, i) => v.padEnd(w[i]!)).join('  ')}`.trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)].join('\n');
}

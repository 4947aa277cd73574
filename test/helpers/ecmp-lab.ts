// The ECMP lab of the MPTCP "ndiffports" path manager (issue 12): a gateway (where edgeward runs) and
// a server joined by two equal shaped links, with per-flow L4 hashing over both in both directions:
//
//          10.248.21.1/32 (lo)                                        10.248.20.1/32 (lo)
//   gw  [sourceAddr] server0 10.248.11.1 ==link 0== 10.248.11.2 gw0  [serviceAddr]  server
//                    server1 10.248.12.1 ==link 1== 10.248.12.2 gw1
//
// The service and source addresses sit on lo, on neither link (this kernel may have no dummy
// interfaces), so the only way between them is a multipath route: gw reaches serviceAddr over both
// links, the server reaches sourceAddr back over both. With fib_multipath_hash_policy=1 the kernel
// picks the link of a TCP connection from its 5-tuple, so connections with different source ports
// spread over the links while each stays on one: the only way one connection can use both links is
// several MPTCP subflows with different ports. The kernel path manager is given nothing to do (no
// MPTCP endpoints): the subflows are edgeward's own userspace path manager's to create.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setDefaultTransport, type EdgewardInLab } from './edgeward.js';
import { download, type Download, type FileServer } from './file-server.js';
import type { Lab, Link, Netns } from './netns.js';
import { HarnessError, sleep } from './process.js';

/** Which of the two links: the index into EcmpLab.links. */
export type LinkIndex = 0 | 1;

export interface EcmpLab {
  lab: Lab;
  /** where edgeward runs; side A of both links */
  gw: Netns;
  /** side B of both links */
  server: Netns;
  /** link 0 over 10.248.11.0/24, link 1 over 10.248.12.0/24, each shaped to rateMbit both ways */
  links: [Link, Link];
  /** the server's address on neither link (lo), reached over both: what clients connect to */
  serviceAddr: string;
  /** gw's address on neither link (lo), reached back over both: what outgoing connections bind to */
  sourceAddr: string;
  rateMbit: number;
  /** net.ipv4.fib_multipath_hash_seed of both namespaces; null where the kernel has no such sysctl (< 6.11) */
  hashSeed: number | null;
}

export interface EcmpLabOptions {
  /** rate of each link, both directions (default 50) */
  rateMbit?: number;
  /** multipath hash seed, the same in both namespaces (default a fixed value, so a 5-tuple takes the same link from run to run) */
  hashSeed?: number;
}

const SERVICE_ADDR = '10.248.20.1';
const SOURCE_ADDR = '10.248.21.1';
const DEFAULT_HASH_SEED = 0x0ec4b;
const HASH_SEED_SYSCTL = '/proc/sys/net/ipv4/fib_multipath_hash_seed';

/**
 * Builds the topology in `lab`: namespaces gw and server, two links of `rateMbit` (default 50),
 * serviceAddr and sourceAddr on lo with multipath routes to each other over both links, L4 hashing,
 * no reverse-path filtering, and MPTCP limits for 8 subflows with no endpoint.
 */
export async function buildEcmpLab(lab: Lab, opts: EcmpLabOptions = {}): Promise<EcmpLab> {
  const rateMbit = opts.rateMbit ?? 50;
  const gw = await lab.addNamespace('gw');
  const server = await lab.addNamespace('server');
  const links: [Link, Link] = [
    await lab.link(gw, server, { addrA: '10.248.11.1/24', addrB: '10.248.11.2/24', rateMbit }),
    await lab.link(gw, server, { addrA: '10.248.12.1/24', addrB: '10.248.12.2/24', rateMbit }),
  ];
  await lab.ip(gw, ['addr', 'add', `${SOURCE_ADDR}/32`, 'dev', 'lo']);
  await lab.ip(server, ['addr', 'add', `${SERVICE_ADDR}/32`, 'dev', 'lo']);
  await lab.ip(gw, ['route', 'add', `${SERVICE_ADDR}/32`, ...links.flatMap((l) => ['nexthop', 'via', l.b.ip, 'dev', l.a.ifname, 'weight', '1'])]);
  await lab.ip(server, ['route', 'add', `${SOURCE_ADDR}/32`, ...links.flatMap((l) => ['nexthop', 'via', l.a.ip, 'dev', l.b.ifname, 'weight', '1'])]);

  // The hash is symmetric (the kernel orders addresses and ports before hashing), so with the same
  // seed on both ends the server sends a connection's data back over the link gw sent its SYN on,
  // and `ip route get` in gw (linkOf) tells where a download's bytes arrive. With different seeds
  // about half the flows come back over the other link (measured: 34 of 64 tuples agreed). Seed 0 means the kernel's internal key,
  // which today is one for all namespaces; an explicit shared seed does not depend on that, and
  // makes the port -> link mapping the same on every boot.
  const hasSeed = (await lab.exec(gw, ['test', '-e', HASH_SEED_SYSCTL], { allowFailure: true })).code === 0;
  const hashSeed = hasSeed ? (opts.hashSeed ?? DEFAULT_HASH_SEED) : null;
  for (const [ns, side] of [
    [gw, 'a'],
    [server, 'b'],
  ] as const) {
    await lab.sysctl(ns, 'net.ipv4.fib_multipath_hash_policy', 1);
    if (hashSeed !== null) await lab.sysctl(ns, 'net.ipv4.fib_multipath_hash_seed', hashSeed);
    // A reply may arrive on either link. Strict reverse-path filtering accepts it today (it takes any
    // nexthop of a multipath route as the reverse path), but the lab should not rest on that: the
    // effective value is the higher of `all` and the interface's, so all, default and each link's are cleared.
    for (const conf of ['all', 'default', ...links.map((l) => l[side].ifname)]) await lab.sysctl(ns, `net.ipv4.conf.${conf}.rp_filter`, 0);
    await lab.mptcpLimits(ns, { subflows: 8, addAddrAccepted: 8 });
  }
  return { lab, gw, server, links, serviceAddr: SERVICE_ADDR, sourceAddr: SOURCE_ADDR, rateMbit, hashSeed };
}

/** The `dev` of an `ip -j route get` answer. */
function routeDev(stdout: string, what: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new HarnessError('exec_failed', `${what}: not JSON: ${stdout.slice(0, 500)}`);
  }
  const dev = Array.isArray(parsed) ? (parsed[0] as { dev?: unknown } | undefined)?.dev : undefined;
  if (typeof dev !== 'string') throw new HarnessError('exec_failed', `${what}: no dev in ${stdout.slice(0, 500)}`);
  return dev;
}

function indexOfDev(dev: string, ifnames: [string, string], what: string): LinkIndex {
  if (dev === ifnames[0]) return 0;
  if (dev === ifnames[1]) return 1;
  throw new HarnessError('exec_failed', `${what} leaves by ${dev}, neither of the ECMP links ${ifnames.join(', ')}`);
}

/**
 * The link the kernel of gw sends a TCP connection sourceAddr:sport -> serviceAddr:dport over (`ip
 * route get ... ipproto tcp sport dport`). It holds for a port the kernel picks too (connect()
 * routes again once the port is chosen), so it can be asked about a subflow after the fact.
 */
export async function linkOf(lab: Lab, ecmp: EcmpLab, sport: number, dport: number): Promise<LinkIndex> {
  const what = `gw: tcp ${ecmp.sourceAddr}:${sport} -> ${ecmp.serviceAddr}:${dport}`;
  const r = await lab.ip(ecmp.gw, ['-j', 'route', 'get', ecmp.serviceAddr, 'from', ecmp.sourceAddr, 'ipproto', 'tcp', 'sport', String(sport), 'dport', String(dport)]);
  return indexOfDev(routeDev(r.stdout, what), [ecmp.links[0].a.ifname, ecmp.links[1].a.ifname], what);
}

/** The link the server sends that connection's data back over (the same question asked in the server, ports swapped). */
export async function returnLinkOf(lab: Lab, ecmp: EcmpLab, sport: number, dport: number): Promise<LinkIndex> {
  const what = `server: tcp ${ecmp.serviceAddr}:${dport} -> ${ecmp.sourceAddr}:${sport}`;
  const r = await lab.ip(ecmp.server, ['-j', 'route', 'get', ecmp.sourceAddr, 'from', ecmp.serviceAddr, 'ipproto', 'tcp', 'sport', String(dport), 'dport', String(sport)]);
  return indexOfDev(routeDev(r.stdout, what), [ecmp.links[0].b.ifname, ecmp.links[1].b.ifname], what);
}

/** `sports` split by the link linkOf gives each (to dport), in the order given: [on link 0, on link 1]. */
export async function sportsByLink(lab: Lab, ecmp: EcmpLab, sports: readonly number[], dport: number): Promise<[number[], number[]]> {
  const byLink: [number[], number[]] = [[], []];
  for (const sport of sports) byLink[await linkOf(lab, ecmp, sport, dport)].push(sport);
  return byLink;
}

/** Bytes received so far on gw's end of each link (the download direction); take differences around a transfer. */
export async function linkBytes(lab: Lab, ecmp: EcmpLab): Promise<[number, number]> {
  const files = ecmp.links.map((l) => `/sys/class/net/${l.a.ifname}/statistics/rx_bytes`);
  // `ip netns exec` mounts the namespace's own /sys, so these are gw's interfaces
  const r = await lab.exec(ecmp.gw, ['cat', ...files]);
  const [b0, b1] = r.stdout.trim().split(/\s+/).map(Number);
  if (b0 === undefined || b1 === undefined || !Number.isFinite(b0) || !Number.isFinite(b1)) throw new HarnessError('exec_failed', `unexpected rx_bytes "${r.stdout.trim()}"`);
  return [b0, b1];
}

export interface BoundDownload extends Download {
  /** the local port curl reports it used (the one asked for) */
  sport: number;
}

/**
 * Downloads `url` with curl in gw from sourceAddr:sport (curl --interface ADDR --local-port PORT),
 * so that linkOf(sport) tells the link it takes; returns curl's figures and the file's sha256.
 */
export async function downloadFrom(lab: Lab, ecmp: EcmpLab, url: string, sport: number, opts: { timeoutMs?: number } = {}): Promise<BoundDownload> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const out = join(lab.tempDir('dl'), 'download.bin');
  const curl = ['curl', '-sS', '-f', '--max-time', String(Math.ceil(timeoutMs / 1000)), '--interface', ecmp.sourceAddr, '--local-port', String(sport)];
  curl.push('-o', out, '-w', '%{size_download} %{time_total} %{speed_download} %{local_ip} %{local_port}', url);
  const r = await lab.exec(ecmp.gw, curl, { timeoutMs: timeoutMs + 5000 });
  const m = /^(\d+) ([\d.]+) ([\d.]+) (\S+) (\d+)$/.exec(r.stdout.trim());
  if (!m) throw new HarnessError('exec_failed', `unexpected curl output "${r.stdout.trim()}"`);
  const [bytes, seconds, bytesPerSecond, localIp, localPort] = [Number(m[1]), Number(m[2]), Number(m[3]), m[4], Number(m[5])];
  if (localIp !== ecmp.sourceAddr || localPort !== sport) throw new HarnessError('exec_failed', `curl used ${localIp}:${localPort}, not ${ecmp.sourceAddr}:${sport}`);
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(out)) hash.update(chunk as Buffer);
  await rm(out, { force: true });
  return { bytes, seconds, mbps: (bytesPerSecond * 8) / 1e6, sha256: hash.digest('hex'), sport };
}

/** What edgeward's connection record says about its path manager's subflows (the fields read here). */
interface PathRecord {
  destination: { port: number };
  inEffect: { subflows?: number; pathManager?: { subflowsUp: number; subflows: Array<{ local: { port: number }; bytes?: { received: number } }> } } | null;
}

/** The figures of one single-subflow-vs-ndiffports comparison through edgeward. */
export interface NdiffportsFigures {
  /** MPTCP with the kernel's path manager and no endpoint: one subflow, one link */
  singleMbps: number;
  ndiffportsMbps: number;
  ratio: number;
  /** the most subflows the record showed up during an ndiffports download */
  subflowsSeen: number;
  /** how those subflows fell on the two links (linkOf of each one's source port) */
  perLink: [number, number];
  /** bytes the record's subflows had received, by link, ~1 s after they were all up */
  bytesPerLink: [number, number];
  runs: Array<{ mode: 'single' | 'ndiffports'; mbps: number; intact: boolean }>;
}

/**
 * Downloads `file` (served on serviceAddr:port) through edgeward in gw (--bind-outgoing
 * sourceAddr) with the default policy at MPTCP with one subflow, then at pathManager ndiffports with
 * `subflows`, `rounds` times (best kept; stops early once `stopWhenRatio` is reached). During each
 * ndiffports download it reads the connection record: how many subflows were up, and on which link
 * each one's 5-tuple hashes.
 */
export async function compareNdiffports(
  lab: Lab,
  ecmp: EcmpLab,
  ew: EdgewardInLab,
  file: FileServer,
  opts: { subflows?: number; rounds?: number; stopWhenRatio?: number; port?: number } = {},
): Promise<NdiffportsFigures> {
  const subflows = opts.subflows ?? 8;
  const port = opts.port ?? 8000;
  const f: NdiffportsFigures = { singleMbps: 0, ndiffportsMbps: 0, ratio: 0, subflowsSeen: 0, perLink: [0, 0], bytesPerLink: [0, 0], runs: [] };
  for (let round = 0; round < (opts.rounds ?? 2); round++) {
    for (const mode of ['single', 'ndiffports'] as const) {
      await setDefaultTransport(ew, mode === 'single' ? { mptcp: true } : { mptcp: true, pathManager: 'ndiffports', subflows });
      const dl = download(lab, ecmp.gw, file.url, { socks5: ew.socks, timeoutMs: 60_000 });
      if (mode === 'ndiffports') {
        let done = false;
        void dl.then(
          () => (done = true),
          () => (done = true),
        );
        for (let i = 0; i < 20 && !done; i++) {
          await sleep(150);
          const r = await ew.api('GET', '/api/v1/connections');
          const rec = ((r.body as { connections?: PathRecord[] } | undefined)?.connections ?? []).find((c) => c.destination.port === port);
          const pm = rec?.inEffect?.pathManager;
          if (!pm || pm.subflowsUp < f.subflowsSeen || (pm.subflowsUp === f.subflowsSeen && f.subflowsSeen > 0)) continue;
          f.subflowsSeen = pm.subflowsUp;
          const perLink: [number, number] = [0, 0];
          for (const s of pm.subflows) perLink[await linkOf(lab, ecmp, s.local.port, port)]++;
          f.perLink = perLink;
          if (pm.subflowsUp >= subflows) break;
        }
        if (!done) {
          await sleep(1000);
          const r = await ew.api('GET', '/api/v1/connections');
          const pm = ((r.body as { connections?: PathRecord[] } | undefined)?.connections ?? []).find((c) => c.destination.port === port)?.inEffect?.pathManager;
          if (pm) {
            const bytes: [number, number] = [0, 0];
            for (const s of pm.subflows) bytes[await linkOf(lab, ecmp, s.local.port, port)] += s.bytes?.received ?? 0;
            f.bytesPerLink = bytes;
          }
        }
      }
      const d = await dl;
      const intact = d.sha256 === file.sha256;
      f.runs.push({ mode, mbps: d.mbps, intact });
      if (mode === 'single') f.singleMbps = Math.max(f.singleMbps, d.mbps);
      else f.ndiffportsMbps = Math.max(f.ndiffportsMbps, d.mbps);
    }
    f.ratio = f.ndiffportsMbps / f.singleMbps;
    if (opts.stopWhenRatio !== undefined && f.ratio >= opts.stopWhenRatio && f.subflowsSeen >= subflows) break;
  }
  return f;
}

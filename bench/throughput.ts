// Single-stream throughput on loopback. Preferred: iperf3 (a tool none of us wrote), routed through
// the proxy by proxychains4. Fallback when that is missing or fails: our stream.c (download only).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startPortServer, type LocalServer } from './c-tools.js';
import { freePort, waitListening } from './net-util.js';
import { run, spawnTracked, which, withTimeout } from './procs.js';
import type { Target } from './targets.js';

/** up = client sends through the proxy; down = client receives (iperf3 -R). */
export type Direction = 'up' | 'down';
export type ThroughputMethod = 'iperf3 via proxychains4' | 'stream.c (own SOCKS5 client)';

export interface ThroughputSample {
  bitsPerSecond: number;
  /** measured seconds (after the omitted warm-up second) */
  seconds: number;
  bytes: number;
  /** TCP retransmits the sender saw (iperf3 only) */
  retransmits?: number;
}

export interface ThroughputRunner {
  readonly method: ThroughputMethod;
  readonly directions: readonly Direction[];
  measure(target: Target, dir: Direction, seconds: number): Promise<ThroughputSample>;
  close(): Promise<void>;
}

/** iperf3 -c through `proxychains4 -q -f CONF` (strict_chain, no proxy_dns, one socks5 entry). */
export class IperfRunner implements ThroughputRunner {
  readonly method = 'iperf3 via proxychains4' as const;
  readonly directions = ['up', 'down'] as const;
  private readonly configs = new Map<number, string>();

  constructor(
    private readonly iperf3: string,
    private readonly proxychains: string,
    private readonly tmpDir: string,
    private readonly omitSeconds = 1,
  ) {}

  /** iperf3 and proxychains4 on PATH, or undefined. */
  static find(tmpDir: string): IperfRunner | undefined {
    const iperf3 = which('iperf3');
    const proxychains = which('proxychains4');
    return iperf3 && proxychains ? new IperfRunner(iperf3, proxychains, tmpDir) : undefined;
  }

  private configFor(socksPort: number): string {
    let file = this.configs.get(socksPort);
    if (!file) {
      file = join(this.tmpDir, `proxychains-${socksPort}.conf`);
      // no proxy_dns: iperf3 is given an IP; no localnet: 127.0.0.1 must go through the proxy
      writeFileSync(file, ['strict_chain', 'quiet_mode', 'tcp_read_time_out 15000', 'tcp_connect_time_out 8000', '[ProxyList]', `socks5 127.0.0.1 ${socksPort}`, ''].join('\n'));
      this.configs.set(socksPort, file);
    }
    return file;
  }

  async measure(target: Target, dir: Direction, seconds: number): Promise<ThroughputSample> {
    const port = await freePort();
    // -1: one test, then exit; a fresh server per sample so a failed test cannot wedge the next
    const server = spawnTracked('iperf3 -s', this.iperf3, ['-s', '-1', '-B', '127.0.0.1', '-p', String(port)]);
    try {
      if (!(await waitListening(port, 5000, () => server.status() === undefined))) {
        throw new Error(`iperf3 server did not listen on ${port}: ${server.stderr().trim()}`);
      }
      const client = ['-c', '127.0.0.1', '-p', String(port), '-t', String(seconds), '-O', String(this.omitSeconds), '-J'];
      if (dir === 'down') client.push('-R');
      const [cmd, args] = target.socksPort === undefined
        ? [this.iperf3, client]
        : [this.proxychains, ['-q', '-f', this.configFor(target.socksPort), this.iperf3, ...client]];
      const r = await run(`iperf3 -c (${target.name})`, cmd, args, (seconds + this.omitSeconds + 20) * 1000);
      if (r.timedOut) throw new Error(`iperf3 client timed out (${target.name}, ${dir})`);
      return parseIperf(r.stdout, target.socksPort);
    } finally {
      if (!(await withTimeout(server.exited, 5000))) await server.stop(1000);
    }
  }

  async close(): Promise<void> {}
}

interface IperfJson {
  error?: string;
  start?: { connected?: { remote_port?: number }[] };
  end?: {
    sum_received?: { bits_per_second?: number; seconds?: number; bytes?: number };
    sum_sent?: { retransmits?: number };
  };
}

/** Reads iperf3 -J output; checks that the connection really went to the proxy when one is used. */
export function parseIperf(stdout: string, socksPort: number | undefined): ThroughputSample {
  let doc: IperfJson;
  try {
    doc = JSON.parse(stdout) as IperfJson;
  } catch {
    throw new Error(`iperf3 printed no JSON: ${stdout.slice(0, 200)}`);
  }
  if (doc.error) throw new Error(`iperf3: ${doc.error}`);
  const remotePort = doc.start?.connected?.[0]?.remote_port;
  if (socksPort !== undefined && remotePort !== socksPort) {
    throw new Error(`iperf3 data connection went to port ${remotePort}, not the proxy's ${socksPort}: proxychains did not route it`);
  }
  const recv = doc.end?.sum_received;
  if (!recv || typeof recv.bits_per_second !== 'number' || typeof recv.seconds !== 'number') {
    throw new Error('iperf3 JSON has no end.sum_received');
  }
  const sample: ThroughputSample = { bitsPerSecond: recv.bits_per_second, seconds: recv.seconds, bytes: recv.bytes ?? 0 };
  const rt = doc.end?.sum_sent?.retransmits;
  if (typeof rt === 'number') sample.retransmits = rt;
  return sample;
}

/** Our stream.c: a source server writes zeros, our client reads them through the proxy. */
export class StreamRunner implements ThroughputRunner {
  readonly method = 'stream.c (own SOCKS5 client)' as const;
  readonly directions = ['down'] as const;

  private constructor(
    private readonly bin: string,
    private readonly source: LocalServer,
  ) {}

  static async start(bin: string): Promise<StreamRunner> {
    return new StreamRunner(bin, await startPortServer('stream source', bin, ['source']));
  }

  async measure(target: Target, dir: Direction, seconds: number): Promise<ThroughputSample> {
    if (dir !== 'down') throw new Error('stream.c measures the download direction only');
    const args = ['sink', '--target', `127.0.0.1:${this.source.port}`, '--seconds', String(seconds), '--omit', '1'];
    if (target.socksPort !== undefined) args.push('--socks', `127.0.0.1:${target.socksPort}`);
    const r = await run(`stream sink (${target.name})`, this.bin, args, (seconds + 20) * 1000);
    if (r.code !== 0) throw new Error(`stream sink failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    const j = JSON.parse(r.stdout) as { bits_per_second: number; seconds: number; bytes: number };
    return { bitsPerSecond: j.bits_per_second, seconds: j.seconds, bytes: j.bytes };
  }

  async close(): Promise<void> {
    await this.source.proc.stop(2000);
  }
}

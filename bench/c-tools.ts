// The bench's own C tools (bench/*.c), compiled with `gcc -O2` into the run's temp directory at
// bench time; nothing compiled is kept. Each tool stops itself when its parent dies.
import { join } from 'node:path';
import { run, spawnTracked, waitForOutput, which, type Tracked } from './procs.js';

export interface CTools {
  cps: string;
  echoServer: string;
  stream: string;
  hold: string;
}

const SOURCES: Record<keyof CTools, string> = { cps: 'cps.c', echoServer: 'echo-server.c', stream: 'stream.c', hold: 'hold.c' };

/** Compiles every tool; throws with gcc's message when one does not build. */
export async function compileTools(benchDir: string, outDir: string): Promise<CTools> {
  const gcc = which('gcc') ?? which('cc');
  if (!gcc) throw new Error('gcc not found: the bench compiles its load generator and echo server (apt-get install gcc)');
  const out: Partial<CTools> = {};
  for (const [key, src] of Object.entries(SOURCES) as [keyof CTools, string][]) {
    const bin = join(outDir, src.replace(/\.c$/, ''));
    const r = await run(`gcc ${src}`, gcc, ['-O2', '-Wall', '-o', bin, join(benchDir, src)], 60_000);
    if (r.code !== 0) throw new Error(`gcc ${src} failed: ${r.stderr.trim() || r.stdout.trim()}`);
    out[key] = bin;
  }
  return out as CTools;
}

export interface LocalServer {
  port: number;
  proc: Tracked;
}

/**
 * Starts a tool that prints "port N" once it listens (echo-server, stream source); tries again
 * when the port it picked was taken on one of its addresses.
 */
export async function startPortServer(name: string, bin: string, args: string[]): Promise<LocalServer> {
  let why = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const proc = spawnTracked(name, bin, [...args, '--port', '0', '--max-seconds', '3600']);
    const m = await waitForOutput(proc, /^port (\d+)$/m, 5000);
    if (m) return { port: Number(m[1]), proc };
    await proc.stop(1000);
    why = proc.stderr().trim() || 'no port reported';
  }
  throw new Error(`${name} did not start: ${why}`);
}

/** Runs bench/hold.c: `count` proxied connections opened one after another and kept open until it is stopped. */
export async function hold(bin: string, echoPort: number, socksPort: number, count: number, spread: number): Promise<{ held: number; errors: Record<string, number>; proc: Tracked }> {
  const proc = spawnTracked('hold', bin, ['--target', `127.0.0.1:${echoPort}`, '--socks', `127.0.0.1:${socksPort}`, '--count', String(count), '--sources', String(spread)]);
  const m = await waitForOutput(proc, /^\{"held".*$/m, 180_000);
  if (!m) {
    await proc.stop(1000);
    throw new Error(`hold printed nothing: ${proc.stderr().trim() || 'timed out'}`);
  }
  const j = JSON.parse(m[0]) as { held: number; errors: Record<string, number> };
  return { ...j, proc };
}

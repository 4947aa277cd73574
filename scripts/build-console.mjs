#!/usr/bin/env node
// Builds the browser console (ui/console) into dist/console: app.js (one bundle of the TypeScript
// and uPlot, by esbuild), app.css (uPlot's stylesheet, then ours) and index.html. Everything comes
// from this checkout and node_modules: no network. Any failure exits 1 with the reason.
import { build } from 'esbuild';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SRC = join(ROOT, 'ui', 'console');
const OUT = join(ROOT, 'dist', 'console');

async function main() {
  // everything is made in memory first: a failure leaves dist/console as it was, not half new
  const result = await build({
    entryPoints: [join(SRC, 'main.ts')],
    outfile: join(OUT, 'app.js'),
    write: false,
    bundle: true,
    format: 'iife',
    target: 'es2022',
    platform: 'browser',
    minify: true,
    sourcemap: 'external', // app.js.map beside it, for a debugger; the server serves app.js alone
    legalComments: 'eof',
    logLevel: 'warning',
    absWorkingDir: ROOT,
  });
  for (const f of result.outputFiles) {
    // the page runs under script-src 'self' without 'unsafe-eval': code that needs eval would break there
    if (f.path.endsWith('.js') && /\beval\(|\bnew Function\(/.test(f.text)) throw new Error(`${f.path} calls eval or new Function, which the console's Content-Security-Policy refuses`);
  }
  const css = [readFileSync(join(ROOT, 'node_modules', 'uplot', 'dist', 'uPlot.min.css'), 'utf8'), readFileSync(join(SRC, 'style.css'), 'utf8')].join('\n');
  const html = readFileSync(join(SRC, 'index.html'));
  mkdirSync(OUT, { recursive: true });
  for (const f of result.outputFiles) writeFileSync(f.path, f.contents);
  writeFileSync(join(OUT, 'app.css'), css);
  writeFileSync(join(OUT, 'index.html'), html);
}

main().catch((e) => {
  console.error(`build-console: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});

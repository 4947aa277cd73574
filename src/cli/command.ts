// What every sub-command module exports, and the version they print; sub-commands import this, never
// main.ts (which loads them).
import { readFileSync } from 'node:fs';

export interface Command {
  /** one line for the command list */
  summary: string;
  /** full --help text */
  usage: string;
  run(args: string[]): Promise<number>;
}

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

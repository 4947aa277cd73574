// What the commands that talk to the REST API (policy, user, turn) share: option parsing with
// --data, the usage error (exit 2, pointing to --help), and the sub-command dispatch that reports
// API failures (exit 1).
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { reportError } from './api-client.js';
import type { Command } from './command.js';

/** A mistake in the command line: printed with a pointer to --help, exit status 2. */
export class UsageError extends Error {}

/** parseArgs with --data (the data directory, for DATA/api-token) and `options`; a mistake is a UsageError. */
export function parseOptions<O extends ParseArgsConfig['options']>(args: string[], options: O) {
  try {
    return parseArgs({ args, options: { data: { type: 'string' }, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** A --FLAG SECONDS value as a number, or undefined when the flag is not given. */
export function optionalSeconds(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,7}$/.test(value)) throw new UsageError(`--${flag} must be a number of seconds, got "${value}"`);
  return Number(value);
}

/** Exactly one positional argument, named `name` in the error. */
export function onePositional(pos: string[], name: string): string {
  if (pos.length === 0) throw new UsageError(`missing ${name}`);
  if (pos.length > 1) throw new UsageError(`unexpected argument "${pos[1]}"`);
  return pos[0]!;
}

/** A command of sub-commands: `edgeward NAME SUB ...`, each SUB a function of its arguments. */
export function apiCommand(name: string, summary: string, usage: string, subcommands: Record<string, (args: string[]) => Promise<number>>): Command {
  return {
    summary,
    usage,
    async run(args: string[]): Promise<number> {
      const [sub, ...rest] = args;
      const fn = sub === undefined ? undefined : subcommands[sub];
      if (!fn) {
        process.stderr.write(`${sub === undefined ? `edgeward ${name}: missing sub-command` : `edgeward ${name}: unknown sub-command "${sub}"`}\n\n${usage}`);
        return 2;
      }
      try {
        return await fn(rest);
      } catch (e) {
        if (e instanceof UsageError) {
          process.stderr.write(`edgeward ${name} ${sub}: ${e.message}\nRun "edgeward ${name} --help" for the options.\n`);
          return 2;
        }
        return reportError(e, `edgeward ${name} ${sub}`);
      }
    },
  };
}

/**
 * Prints a list as JSON (`json`), as `empty` when there is nothing, or as a table: a header, then
 * one row per item, columns two spaces apart; columns in `right` are right-aligned (ids).
 */
export function printList<T>(items: readonly T[], opts: { json: boolean; empty: string; head: string[]; row: (item: T) => string[]; right?: readonly number[] }): void {
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(items, null, 2)}\n`);
    return;
  }
  if (items.length === 0) {
    process.stdout.write(`${opts.empty}\n`);
    return;
  }
  const rows = [opts.head, ...items.map(opts.row)];
  const widths = opts.head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const right = new Set(opts.right ?? []);
  for (const r of rows) process.stdout.write(`${r.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()}\n`);
}

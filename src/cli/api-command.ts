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

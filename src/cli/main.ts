// edgeward's command line: one sub-command per job, each in its own module.
import { version, type Command } from './command.js';

const COMMANDS: Record<string, () => Promise<Command>> = {
  start: async () => (await import('./start.js')).command,
  policy: async () => (await import('./policy.js')).command,
  user: async () => (await import('./user.js')).command,
  device: async () => (await import('./device.js')).command,
  intercept: async () => (await import('./intercept.js')).command,
  turn: async () => (await import('./turn.js')).command,
  peer: async () => (await import('./peer.js')).command,
  shield: async () => (await import('./shield.js')).command,
  firewall: async () => (await import('./firewall.js')).command, // alias of `intercept firewall`
};

async function topUsage(): Promise<string> {
  const lines = ['Usage: edgeward <command> [options]', '', 'Commands:'];
  for (const [name, load] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${(await load()).summary}`);
  lines.push('', 'Run `edgeward <command> --help` for the options of a command.', 'Version: ' + version());
  return lines.join('\n') + '\n';
}

/** Runs the CLI; resolves to the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(await topUsage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`edgeward: unknown command "${name}"\n\n${await topUsage()}`);
    return 2;
  }
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(cmd.usage);
    return 0;
  }
  return cmd.run(rest);
}

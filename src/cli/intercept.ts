// `edgeward intercept ...`: the commands of the intercept service that run outside the gateway.
// Today one: `firewall` (see cli/firewall.ts), also reachable under its earlier name
// `edgeward firewall`. main.ts answers any --help on this command line with `usage`, so it holds
// the firewall's whole help too.
import type { Command } from './command.js';
import { FIREWALL_COMMAND, firewallCommand, usage as firewallUsage } from './firewall.js';

const SUMMARY = 'the TPROXY firewall for --intercept: intercept firewall print|apply|remove|status';

const usage = `Usage: edgeward intercept <command> [options]

The intercept service diverts the TCP connections of clients that know nothing of proxies to
edgeward (TPROXY). Its listener runs in \`edgeward start --intercept PORT\`; these commands set up
what the kernel needs for it.

Commands:
  firewall   print, apply or remove the nftables table and policy routing TPROXY needs, or show
             what of it is in place. \`edgeward firewall ...\` is an alias of
             \`${FIREWALL_COMMAND} ...\` and behaves the same.

${firewallUsage}`;

const COMMANDS: Record<string, Command> = {
  firewall: firewallCommand(FIREWALL_COMMAND, SUMMARY),
};

export const command: Command = {
  summary: SUMMARY,
  usage,
  async run(args: string[]): Promise<number> {
    const [name, ...rest] = args;
    const sub = name === undefined ? undefined : COMMANDS[name];
    if (!sub) {
      process.stderr.write(`${name === undefined ? 'edgeward intercept: missing command' : `edgeward intercept: unknown command "${name}"`}\n\n${usage}`);
      return 2;
    }
    return sub.run(rest);
  },
};

// `edgeward intercept firewall ...` (alias: `edgeward firewall ...`): print, apply, remove and show
// the interception firewall (nftables table inet edgeward_intercept + the policy routing TPROXY
// needs). See src/intercept/firewall.ts. Both names run the same code and print the same output;
// messages name the command as it was typed.
import { parseArgs } from 'node:util';
import {
  applyFirewall,
  DEFAULT_MARK,
  DEFAULT_TABLE,
  FirewallError,
  firewallStatus,
  NFT_TABLE,
  removeFirewall,
  renderRemoval,
  renderRuleset,
  resolveFirewallSpec,
  ROUTE_PROTOCOL,
  routingCommands,
  type FirewallFamily,
  type FirewallSpec,
} from '../intercept/firewall.js';
import { describeArgv } from '../kernel/command.js';
import type { Command } from './command.js';

/** The documented name of the command. */
export const FIREWALL_COMMAND = 'edgeward intercept firewall';

export const usage = `Usage: ${FIREWALL_COMMAND} <print|apply|remove|status> [options]
       edgeward firewall <print|apply|remove|status> [options]     (alias, same behaviour)

Diverts the TCP connections of clients that know nothing of proxies to edgeward's TPROXY listener
(edgeward start --intercept PORT). edgeward keeps all of it to itself: one nftables table,
"table inet ${NFT_TABLE}", and ip rules and routes tagged with routing protocol ${ROUTE_PROTOCOL}.
No other table, chain, rule or route is ever changed.

  ${FIREWALL_COMMAND} print  --port PORT --interface IFACE [options]
      write the nft script and the ip commands to stdout as a shell script; changes nothing
  ${FIREWALL_COMMAND} apply  --port PORT --interface IFACE [options]
      load the table in one transaction (nft -f) and add the policy routing that is missing;
      running it again changes nothing, running it with other options replaces the old setup.
      If a step fails after changing something, all of edgeward's rules are removed again.
  ${FIREWALL_COMMAND} remove
      delete edgeward's table and its tagged ip rules and routes, whatever options apply had
      (they may be repeated here and are ignored); with nothing there, a no-op
  ${FIREWALL_COMMAND} status [--mark MARK] [--table N] [--family F] [--json]
      what of it is in place

Options:
  --port PORT          the intercept listener's port (edgeward start --intercept PORT)
  --interface IFACE    intercept TCP connections arriving on IFACE, the clients' side (repeatable)
  --source CIDR        only intercept clients in CIDR, IPv4 or IPv6 (repeatable; default: any)
  --exclude CIDR       never intercept connections to CIDR, e.g. your other networks (repeatable)
  --dport PORT         only intercept connections to this port (repeatable; default: all)
  --mark MARK          packet mark of intercepted packets (default 0x${DEFAULT_MARK.toString(16)})
  --table N            routing table of the local-delivery route (default ${DEFAULT_TABLE})
  --family F           ipv4, ipv6 or both (default both)
  --json               status: print JSON
Repeatable options also take comma-separated lists (--dport 80,443).

The rules (chain prerouting, hook priority mangle), in order:
  1. a TCP packet of an open transparent socket (socket transparent 1) gets the mark and is
     accepted, on any interface: the fast path for established connections, and the rule that
     hands replies to --transparent-source connections to edgeward instead of forwarding them
  2. only TCP arriving on an --interface goes on
  3. destinations on this machine (fib daddr type local) and --exclude blocks are left alone
  4. with --source, other clients are left alone; with --dport, other ports are
  5. the rest: tproxy ip/ip6 to :PORT, mark set MARK, accept

What the kernel and the network must provide:
  - nf_tables with nft_tproxy, nft_socket and nft_fib_inet (loaded on demand; otherwise
    modprobe nft_tproxy nft_socket nft_fib_inet)
  - policy routing, which apply adds: marked packets are delivered to this machine
        ip rule add fwmark MARK lookup TABLE
        ip route add local 0.0.0.0/0 dev lo table TABLE     (and ip -6 ... local ::/0)
  - root or CAP_NET_ADMIN, for apply and remove and for the IP_TRANSPARENT listener
  - every packet of an intercepted connection must pass this machine: it must be the clients'
    route to their destinations (usually their default gateway). With --transparent-source the
    servers' replies go to the clients' own addresses, so the far side must route the clients'
    networks back through this machine, or the replies never reach edgeward.
  - traffic that is not intercepted (other protocols, --exclude) is forwarded as usual:
    sysctl net.ipv4.ip_forward=1 (net.ipv6.conf.all.forwarding=1)

Exit status: 0 ok, 1 failure (the message says what failed), 2 usage error.
`;

const OPTIONS = {
  port: { type: 'string' },
  interface: { type: 'string', multiple: true },
  source: { type: 'string', multiple: true },
  exclude: { type: 'string', multiple: true },
  dport: { type: 'string', multiple: true },
  mark: { type: 'string' },
  table: { type: 'string' },
  family: { type: 'string' },
  json: { type: 'boolean' },
} as const;

/** A mistake in the command line: printed with a pointer to --help, exit status 2. */
class UsageError extends Error {}

type Values = ReturnType<typeof parse>['values'];

function parse(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
}

/** "80" -> 80, "0x6577" -> 0x6577 (where hex makes sense); the range is checked by the spec's validation. */
function num(flag: string, text: string, allowHex: boolean): number {
  const t = text.trim();
  if (/^[0-9]{1,10}$/.test(t) || (allowHex && /^0x[0-9a-f]{1,8}$/i.test(t))) return Number(t);
  throw new UsageError(`${flag}: "${text}" is not a ${allowHex ? 'number (decimal or 0x hex)' : 'number'}`);
}

function list(v: string[] | undefined): string[] {
  return (v ?? []).flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '');
}

function specFromFlags(values: Values): FirewallSpec {
  const spec: FirewallSpec = {
    port: values.port === undefined ? Number.NaN : num('--port', values.port, false),
    interfaces: list(values.interface),
    sources: list(values.source),
    excludes: list(values.exclude),
    dports: list(values.dport).map((p) => num('--dport', p, false)),
  };
  if (values.mark !== undefined) spec.mark = num('--mark', values.mark, true);
  if (values.table !== undefined) spec.table = num('--table', values.table, true);
  if (values.family !== undefined) spec.family = values.family as FirewallFamily;
  return spec;
}

/** The spec of the flags, or a UsageError listing every problem (each names its flag). */
function checkedSpec(values: Values, what: string): FirewallSpec {
  if (values.port === undefined) throw new UsageError(`${what} needs --port PORT (the intercept listener's port)`);
  if (values.interface === undefined) throw new UsageError(`${what} needs --interface IFACE (the clients' side; repeatable)`);
  const spec = specFromFlags(values);
  const r = resolveFirewallSpec(spec);
  if (Array.isArray(r)) throw new UsageError(r.map((e) => e.message).join('\n'));
  return spec;
}

function noPositionals(pos: string[]): void {
  if (pos.length > 0) throw new UsageError(`unexpected argument "${pos[0]}"`);
}

function print(args: string[]): number {
  const { values, positionals } = parse(args);
  noPositionals(positionals);
  const spec = checkedSpec(values, 'print');
  const out = [
    '#!/bin/sh',
    `# ${FIREWALL_COMMAND} print ${args.map((a) => describeArgv([a])).join(' ')}`,
    `# What \`${FIREWALL_COMMAND} apply\` does (it also skips ip rules and routes that are already there).`,
    'set -e',
    "nft -f - <<'EDGEWARD_NFT'",
    renderRuleset(spec).trimEnd(),
    'EDGEWARD_NFT',
    ...routingCommands(spec, 'apply').map(describeArgv),
    '',
    `# Undo (what \`${FIREWALL_COMMAND} remove\` does):`,
    `#   printf '${renderRemoval().trimEnd().replace(/\n/g, '\\n')}\\n' | nft -f -`,
    ...routingCommands(spec, 'remove').map((argv) => `#   ${describeArgv(argv)}`),
  ];
  process.stdout.write(`${out.join('\n')}\n`);
  return 0;
}

async function apply(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  noPositionals(positionals);
  const spec = checkedSpec(values, 'apply');
  const { changes } = await applyFirewall(spec);
  for (const c of changes) process.stdout.write(`${c}\n`);
  if (!changes.some((c) => c.startsWith('ip '))) process.stdout.write('policy routing: already in place\n');
  return 0;
}

async function remove(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  noPositionals(positionals);
  // the apply command line may be repeated here (its numbers are still checked); removal finds
  // edgeward's rules by their tag, whatever options they were made with
  specFromFlags(values);
  const { changes } = await removeFirewall();
  if (changes.length === 0) process.stdout.write('nothing to remove: no firewall of edgeward is in place\n');
  for (const c of changes) process.stdout.write(`${c}\n`);
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parse(args);
  noPositionals(positionals);
  const spec = specFromFlags(values);
  // status reads --mark, --table and --family only; port and interfaces are placeholders here
  const r = resolveFirewallSpec({ ...spec, port: 1, interfaces: ['status'] });
  if (Array.isArray(r)) throw new UsageError(r.map((e) => e.message).join('\n'));
  const st = await firewallStatus(spec);
  if (values.json) {
    process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
    return 0;
  }
  const lines = [`table inet ${NFT_TABLE}: ${st.table ? 'loaded' : 'absent'}`];
  for (const r of st.rules) lines.push(`ip rule (${r.family}): priority ${r.priority} fwmark 0x${r.mark.toString(16)} lookup ${r.table}${r.ours ? '' : ' (not edgeward\'s)'}`);
  for (const r of st.routes) lines.push(`ip route (${r.family}): local ${r.dst} dev lo table ${r.table}${r.ours ? '' : ' (not edgeward\'s)'}`);
  lines.push(st.applied ? 'applied' : st.table || st.rules.some((r) => r.ours) || st.routes.some((r) => r.ours) ? 'partly applied (run apply or remove)' : 'not applied');
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[]) => number | Promise<number>> = { print, apply, remove, rm: remove, status };

/** The firewall command under the name it was invoked as (for its messages). */
export function firewallCommand(invokedAs: string, summary: string): Command {
  return {
    summary,
    usage,
    async run(args: string[]): Promise<number> {
      const [sub, ...rest] = args;
      const fn = sub === undefined ? undefined : SUBCOMMANDS[sub];
      if (!fn) {
        process.stderr.write(`${sub === undefined ? `${invokedAs}: missing sub-command` : `${invokedAs}: unknown sub-command "${sub}"`}\n\n${usage}`);
        return 2;
      }
      try {
        return await fn(rest);
      } catch (e) {
        if (e instanceof UsageError) {
          process.stderr.write(`${invokedAs} ${sub}: ${e.message.replace(/\n/g, `\n${invokedAs} ${sub}: `)}\nRun "${invokedAs} --help" for the options.\n`);
          return 2;
        }
        if (e instanceof FirewallError) {
          process.stderr.write(`${invokedAs} ${sub}: ${e.message}\n`);
          return e.code === 'invalid_spec' ? 2 : 1;
        }
        throw e;
      }
    },
  };
}

/** `edgeward firewall`: the earlier name, kept as an alias of `edgeward intercept firewall`. */
export const command: Command = firewallCommand('edgeward firewall', `alias of \`${FIREWALL_COMMAND}\` (the TPROXY firewall for --intercept)`);

// `edgeward policy ...`: list, add, remove and import transport policies, and show or set the
// default, through the REST API of a running `edgeward start`.
import { readFileSync, statSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { parseLegacyFile, storedClashes } from '../policy/legacy.js';
import type { Policy, PolicyInput, Transport } from '../policy/types.js';
import type { LiveUpdate } from '../transport/live.js';
import { ApiReplyError, clientFromEnv, ENV_HELP } from './api-client.js';
import { apiCommand, parseOptions, UsageError } from './api-command.js';
import type { Command } from './command.js';

const MAX_IMPORT_BYTES = 16 * 1024 * 1024;

const usage = `Usage: edgeward policy <list|add|rm|import|default> [options]

Transport policy per destination: Multipath TCP, congestion control, Nagle, keepalive.
The most specific policy wins (exact host, exact IP, *.wildcard, CIDR); fields a policy leaves out
come from the default. MPTCP on/off, scheduler and path manager apply to new connections only;
the other fields (and subflows and backup under edgeward's path manager) to open ones too.

  edgeward policy list [--json]
  edgeward policy add (--host H | --cidr C) [--port P] [TRANSPORT] [--via URL|direct] [--comment TEXT]
  edgeward policy rm ID
  edgeward policy import FILE
      FILE is the original system's flat file: one "ip,0|1,scheduler,path_manager," line per
      destination, closed by a line ".". All entries are added, or none (every bad line is listed).
  edgeward policy default [TRANSPORT | --reset] [--json]
      without options: show the default transport; with options: change the given fields

Match:
  --host H               host name, *.wildcard or IP address
  --cidr C               IPv4/IPv6 block, e.g. 192.0.2.0/24
  --port P               destination port (default: any)
Transport (the kernel must offer what is asked: see /proc/sys/net/ipv4/tcp_available_congestion_control
and /proc/sys/net/mptcp/available_schedulers, available_path_managers):
  --mptcp | --no-mptcp   Multipath TCP on or off (needs net.mptcp.enabled=1; falls back to TCP)
  --congestion NAME      TCP congestion control (cubic, bbr, reno, ...)
  --no-delay | --nagle   TCP_NODELAY on (Nagle off) or off
  --keepalive IDLE,INTERVAL,COUNT | --no-keepalive
                         keepalive timers in seconds and probes, or keepalive off
  --scheduler S          MPTCP scheduler
  --path-manager P       MPTCP path manager: kernel or userspace (the kernel's), or edgeward's own:
                         ndiffports (N subflows over the same addresses: spreads over ECMP links)
                         or fullmesh (a subflow from every edgeward start --uplinks address)
  --subflows N           ndiffports: subflows in all, the first included (1..8, default 2)
  --backup LIST          fullmesh: comma-separated devices or addresses whose subflows are backup
                         (MP_PRIO: used only when no other subflow works)
Other:
  --via URL|direct       chain through socks5://[user:pass@]host:port (the transport then applies to
                         the hop toward it), or "direct" to bypass edgeward start --upstream
  --comment TEXT         a note stored with the policy
  --reset                (default) remove every field of the default transport
  --json                 print JSON instead of a table
  --data DIR             data directory of edgeward start, for DATA/api-token (default ./.edgeward)

${ENV_HELP}
Exit status: 0 ok, 1 failure (the API said no, or cannot be reached), 2 usage error.
`;

const TRANSPORT_OPTIONS = {
  mptcp: { type: 'boolean' },
  'no-mptcp': { type: 'boolean' },
  congestion: { type: 'string' },
  'no-delay': { type: 'boolean' },
  nagle: { type: 'boolean' },
  keepalive: { type: 'string' },
  'no-keepalive': { type: 'boolean' },
  scheduler: { type: 'string' },
  'path-manager': { type: 'string' },
  subflows: { type: 'string' },
  backup: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

type TransportFlags = { [K in keyof typeof TRANSPORT_OPTIONS]?: (typeof TRANSPORT_OPTIONS)[K]['type'] extends 'string' ? string : boolean };

function exclusive(values: Record<string, unknown>, a: string, b: string): void {
  if (values[a] !== undefined && values[b] !== undefined) throw new UsageError(`--${a} and --${b} exclude each other`);
}

/** The transport fields given on the command line. */
function transportFromFlags(v: TransportFlags): Transport {
  exclusive(v, 'mptcp', 'no-mptcp');
  exclusive(v, 'no-delay', 'nagle');
  exclusive(v, 'keepalive', 'no-keepalive');
  const t: Transport = {};
  if (v.mptcp) t.mptcp = true;
  if (v['no-mptcp']) t.mptcp = false;
  if (v.congestion !== undefined) t.congestion = v.congestion;
  if (v['no-delay']) t.noDelay = true;
  if (v.nagle) t.noDelay = false;
  if (v.keepalive !== undefined) {
    const m = /^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*$/.exec(v.keepalive);
    if (!m) throw new UsageError(`--keepalive takes IDLE,INTERVAL,COUNT (e.g. 60,10,5), not "${v.keepalive}"`);
    t.keepAlive = { idle: Number(m[1]), interval: Number(m[2]), count: Number(m[3]) };
  }
  if (v['no-keepalive']) t.keepAlive = false;
  if (v.scheduler !== undefined) t.scheduler = v.scheduler;
  if (v['path-manager'] !== undefined) t.pathManager = v['path-manager'];
  if (v.subflows !== undefined) {
    if (!/^\d{1,2}$/.test(v.subflows)) throw new UsageError(`--subflows takes a number of subflows (1..8), not "${v.subflows}"`);
    t.subflows = Number(v.subflows);
  }
  if (v.backup !== undefined) t.backup = v.backup.split(',').map((b) => b.trim()).filter((b) => b !== '');
  return t;
}

/** "mptcp congestion=bbr nodelay keepalive=60,10,5" */
export function describeTransport(t: Transport): string {
  const parts: string[] = [];
  if (t.mptcp !== undefined) parts.push(t.mptcp ? 'mptcp' : 'no-mptcp');
  if (t.congestion !== undefined) parts.push(`congestion=${t.congestion}`);
  if (t.noDelay !== undefined) parts.push(t.noDelay ? 'nodelay' : 'nagle');
  if (t.keepAlive !== undefined) parts.push(t.keepAlive === false ? 'no-keepalive' : `keepalive=${t.keepAlive.idle},${t.keepAlive.interval},${t.keepAlive.count}`);
  if (t.scheduler !== undefined) parts.push(`scheduler=${t.scheduler}`);
  if (t.pathManager !== undefined) parts.push(`path-manager=${t.pathManager}`);
  if (t.subflows !== undefined) parts.push(`subflows=${t.subflows}`);
  if (t.backup !== undefined) parts.push(`backup=${t.backup.join(',')}`);
  return parts.length > 0 ? parts.join(' ') : '(default)';
}

function describeMatch(p: { match: Policy['match'] }): string {
  return p.match.host ?? p.match.cidr ?? '?';
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

function printLiveUpdate(u: LiveUpdate | undefined): void {
  if (!u) return;
  if (u.connectionsUpdated > 0) process.stdout.write(`  applied to ${u.connectionsUpdated} open connection(s)\n`);
  for (const n of u.notes) process.stdout.write(`  note: ${n}\n`);
}

function positionals(got: string[], names: string[]): string[] {
  if (got.length < names.length) throw new UsageError(`missing ${names.slice(got.length).join(' ')}`);
  if (got.length > names.length) throw new UsageError(`unexpected argument "${got[names.length]}"`);
  return got;
}

async function list(args: string[]): Promise<number> {
  const { values, positionals: pos } = parseOptions(args, { json: { type: 'boolean' } });
  positionals(pos, []);
  const api = clientFromEnv(values.data);
  const { policies } = await api.request<{ policies: Policy[] }>('GET', '/api/v1/policies');
  if (values.json) {
    process.stdout.write(`${JSON.stringify(policies, null, 2)}\n`);
    return 0;
  }
  const def = await api.request<Transport>('GET', '/api/v1/policies/default');
  if (policies.length === 0) {
    process.stdout.write('no policies\n');
  } else {
    const rows = [['ID', 'MATCH', 'PORT', 'TRANSPORT', 'VIA', 'COMMENT']];
    for (const p of [...policies].sort((a, b) => a.id - b.id)) {
      rows.push([String(p.id), describeMatch(p), p.match.port === undefined ? '*' : String(p.match.port), describeTransport(p.transport), p.via === undefined ? '-' : p.via.replace(/:[^:@/]*@/, ':***@'), p.comment ?? '']);
    }
    process.stdout.write(table(rows));
  }
  process.stdout.write(`default: ${describeTransport(def)}\n`);
  return 0;
}

async function add(args: string[]): Promise<number> {
  const { values, positionals: pos } = parseOptions(args, {
    ...TRANSPORT_OPTIONS,
    host: { type: 'string' },
    cidr: { type: 'string' },
    port: { type: 'string' },
    via: { type: 'string' },
    comment: { type: 'string' },
  });
  positionals(pos, []);
  if ((values.host === undefined) === (values.cidr === undefined)) throw new UsageError('give exactly one of --host or --cidr');
  const input: PolicyInput = { match: values.host !== undefined ? { host: values.host } : { cidr: values.cidr! }, transport: transportFromFlags(values) };
  if (values.port !== undefined) {
    if (!/^[0-9]{1,5}$/.test(values.port)) throw new UsageError(`--port takes a number 1..65535, not "${values.port}"`);
    input.match.port = Number(values.port);
  }
  if (values.via !== undefined) input.via = values.via;
  if (values.comment !== undefined) input.comment = values.comment;
  const api = clientFromEnv(values.data);
  const p = await api.request<Policy & { liveUpdate: LiveUpdate }>('POST', '/api/v1/policies', input);
  process.stdout.write(`added policy ${p.id}: ${describeMatch(p)}${p.match.port !== undefined ? ` port ${p.match.port}` : ''} ${describeTransport(p.transport)}\n`);
  printLiveUpdate(p.liveUpdate);
  return 0;
}

async function rm(args: string[]): Promise<number> {
  const { values, positionals: pos } = parseOptions(args, {});
  const [id] = positionals(pos, ['ID']);
  if (!/^[0-9]{1,15}$/.test(id!)) throw new UsageError(`ID must be a policy id (a number, see "edgeward policy list"), not "${id}"`);
  const api = clientFromEnv(values.data);
  await api.request('DELETE', `/api/v1/policies/${id}`);
  process.stdout.write(`removed policy ${id}\n`);
  return 0;
}

async function importFile(args: string[]): Promise<number> {
  const { values, positionals: pos } = parseOptions(args, {});
  const [file] = positionals(pos, ['FILE']);
  let text: string;
  try {
    if (statSync(file!).size > MAX_IMPORT_BYTES) {
      process.stderr.write(`${file}: larger than ${MAX_IMPORT_BYTES / 1024 / 1024} MiB: not a policy file?\n`);
      return 1;
    }
    text = readFileSync(file!, 'utf8');
  } catch (e) {
    process.stderr.write(`edgeward: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}\n`);
    return 1;
  }
  const parsed = parseLegacyFile(text);
  if (parsed.errors.length > 0) {
    for (const e of parsed.errors) process.stderr.write(`${file}:${e.line}: ${e.message}\n`);
    process.stderr.write(`${file}: ${parsed.errors.length} error(s); nothing imported\n`);
    return 1;
  }
  if (parsed.policies.length === 0) {
    process.stdout.write(`${file}: no entries; nothing to import\n`);
    return 0;
  }
  const api = clientFromEnv(values.data);
  let res: { policies: Policy[]; liveUpdate: LiveUpdate };
  try {
    res = await api.request('POST', '/api/v1/policies/bulk', { policies: parsed.policies.map((p) => p.input) });
  } catch (e) {
    const m = e instanceof ApiReplyError && e.field !== null ? /policies\[(\d+)\]/.exec(e.field) : null;
    const entry = m ? parsed.policies[Number(m[1])] : undefined;
    if (e instanceof ApiReplyError && entry) {
      process.stderr.write(`${file}:${entry.line}: ${e.message.replace(/^(body\.)?policies\[\d+\]:?\s*/, '')}\n`);
      process.stderr.write(`${file}: nothing imported\n`);
      return 1;
    }
    if (e instanceof ApiReplyError && e.code === 'conflict') {
      // the store refused a match that an existing policy has, without saying which entry: find it here
      const clashes = storedClashes((await api.request<{ policies: Policy[] }>('GET', '/api/v1/policies')).policies, parsed.policies);
      if (clashes.length > 0) {
        for (const c of clashes) process.stderr.write(`${file}:${c.line}: policy ${c.id} already has the same match\n`);
        process.stderr.write(`${file}: nothing imported\n`);
        return 1;
      }
    }
    throw e;
  }
  process.stdout.write(`imported ${res.policies.length} policies from ${file}\n`);
  for (const note of new Set(parsed.policies.flatMap((p) => p.notes))) {
    const lines = parsed.policies.filter((p) => p.notes.includes(note)).map((p) => p.line);
    process.stdout.write(`  note (line${lines.length > 1 ? 's' : ''} ${lines.slice(0, 10).join(', ')}${lines.length > 10 ? ', ...' : ''}): ${note}\n`);
  }
  printLiveUpdate(res.liveUpdate);
  return 0;
}

/** The entries whose match an already stored policy has. */
async function defaults(args: string[]): Promise<number> {
  const { values, positionals: pos } = parseOptions(args, { ...TRANSPORT_OPTIONS, reset: { type: 'boolean' }, json: { type: 'boolean' } });
  positionals(pos, []);
  const change = transportFromFlags(values);
  const changing = values.reset === true || Object.keys(change).length > 0;
  const api = clientFromEnv(values.data);
  let shown: Transport;
  let live: LiveUpdate | undefined;
  if (!changing) {
    shown = await api.request<Transport>('GET', '/api/v1/policies/default');
  } else {
    const base = values.reset ? {} : await api.request<Transport>('GET', '/api/v1/policies/default');
    const { liveUpdate, ...rest } = await api.request<Transport & { liveUpdate: LiveUpdate }>('PUT', '/api/v1/policies/default', { ...base, ...change });
    shown = rest;
    live = liveUpdate;
  }
  if (values.json) process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
  else process.stdout.write(`default: ${describeTransport(shown)}\n`);
  if (!values.json) printLiveUpdate(live);
  return 0;
}

const SUBCOMMANDS: Record<string, (args: string[]) => Promise<number>> = { list, ls: list, add, rm, remove: rm, import: importFile, default: defaults };

export const command: Command = apiCommand('policy', 'list, add, remove and import transport policies (talks to the REST API)', usage, SUBCOMMANDS);

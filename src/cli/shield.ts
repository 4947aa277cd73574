// `edgeward shield ...`: the shield's ruleset without a gateway (print it from the same flags or
// --config file as `edgeward start`; remove it after a crash) and its state through the REST API.
import { parseArgs } from 'node:util';
import { readConfigFile, resolveSettings, SECTIONS } from '../gateway/settings.js';
import { flagOptions, settingsFromFlags } from '../config/schema.js';
import { renderTableScript, removeTable } from '../kernel/nft.js';
import { resolveShield } from '../shield/config.js';
import { renderShieldBody, SHIELD_TABLE, SHIELD_TABLE_NAME, shieldComments } from '../shield/rules.js';
import { clientFromEnv, ENV_HELP } from './api-client.js';
import { apiCommand, onePositional, optionalSeconds, parseOptions, printList, UsageError } from './api-command.js';
import type { Command } from './command.js';
import type { AttackEvent } from '../shield/detector.js';
import type { ShieldProxyStats } from '../shield/proxy.js';
import { removeDivertRouting } from '../shield/divert.js';

const usage = `Usage: edgeward shield <status|events|block|unblock|allow|disallow|blocklist|allowlist|print|remove> [options]

The shield of "edgeward start --shield-service SPEC ..." (DoS protection: an nftables table of its
own, ${SHIELD_TABLE_NAME}).

  edgeward shield status [--json]
      the running shield, through the API: mode, interfaces, packets dropped per TCP flag class,
      by the blocklists and the global cap, and per service what passed and what the per-source
      rate and connection limits dropped, with the rates of the last second; the attacks going on;
      the L4 proxies: connections held and closed by reason; the blocklist's and allowlist's
      hand-made entries (the first 10)
  edgeward shield events [--limit N] [--kind syn_flood|udp_flood|tcp_flags] [--json]
      attack events, newest first: kind, start, end (or "ongoing"), peak packets per second,
      packets, top sources, the services whose limits were tightened
  edgeward shield block ADDR[/PREFIX] [--ttl SEC] [--reason TEXT]
      drop everything from ADDR (kept across restarts; without --ttl until unblocked). The
      management sources cannot be blocked
  edgeward shield unblock ADDR[/PREFIX]
      take it off the hand-made blocklist and out of the meters' blocklist
  edgeward shield allow ADDR[/PREFIX] [--ttl SEC] [--reason TEXT] | disallow ADDR[/PREFIX]
      the allowlist: sources that pass the blocklists, the meters and the global cap
  edgeward shield blocklist|allowlist [--json]
      the entries: by hand, by a meter (blocklist) or from --shield-allow, with the time left
  edgeward shield print [--config FILE] [the --shield-* flags of edgeward start]
      the nftables ruleset those settings give, without applying it (nft -f accepts it as is)
  edgeward shield remove
      delete the shield's table and the proxy's policy routing (after a crash; a gateway that
      stops removes them itself). The
      sysctls it set (net.ipv4.tcp_syncookies, net.netfilter.nf_conntrack_tcp_loose) stay

Options:
  --json             status, events, blocklist, allowlist: print JSON
  --limit N          events: at most N (1..1000, default 20)
  --kind KIND        events: of this kind only
  --ttl SEC          block, allow: seconds the entry lasts (1..2592000)
  --reason TEXT      block, allow: why (shown in the lists and the log)
  --data DIR         data directory of edgeward start, for DATA/api-token (default ./.edgeward)

${ENV_HELP}
Exit status: 0 ok, 1 failure (the API or nft said no, or cannot be reached), 2 usage error.
`;

interface ServiceView {
  name: string;
  protocol: string;
  address: string | null;
  ports: number[];
  passed: number;
  overRate: number;
  overConns: number;
  synproxy: number;
}

interface StatusView {
  mode: string;
  table: string;
  loaded: boolean;
  interfaces: string[];
  flags: Record<string, number>;
  blocked: { manual: number; meter: number; globalCap: number };
  allowlisted: number;
  services: ServiceView[];
  rates: Record<string, number> | null;
  attacks: AttackView[];
  tightened: string[];
  proxies: Array<ShieldProxyStats & { family: 4 | 6; port: number }>;
}

/** The API shows attacks as the detector keeps them. */
type AttackView = AttackEvent;

const time = (iso: string): string => iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
const sources = (a: AttackView): string => `${a.topSources.slice(0, 3).map((s) => `${s.address} (${s.packets})`).join(', ')}${a.distinctSources > 3 ? ` of ${a.distinctSources}${a.distinctSources >= 4096 ? '+' : ''} sources` : ''}`;

async function events(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' }, limit: { type: 'string' }, kind: { type: 'string' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.limit !== undefined && !/^\d{1,4}$/.test(values.limit)) throw new UsageError(`--limit: "${values.limit}" is not a whole number 1..1000`);
  const q = new URLSearchParams({ limit: values.limit ?? '20', ...(values.kind !== undefined ? { kind: values.kind } : {}) });
  const { events: list } = await clientFromEnv(values.data).request<{ events: AttackView[] }>('GET', `/api/v1/shield/events?${q.toString()}`);
  printList(list, {
    json: values.json === true,
    empty: 'no attacks seen',
    head: ['ID', 'KIND', 'STARTED', 'ENDED', 'PEAK PPS', 'PACKETS', 'TOP SOURCES', 'TIGHTENED'],
    row: (a) => [String(a.id), a.kind, time(a.startedAt), a.endedAt === null ? 'ongoing' : time(a.endedAt), String(a.peakPps), String(a.packets), sources(a), a.tightened.join(',') || '-'],
    right: [0, 4, 5],
  });
  return 0;
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const api = clientFromEnv(values.data);
  const st = await api.request<StatusView>('GET', '/api/v1/shield');
  if (values.json) {
    process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
    return 0;
  }
  const rate = (name: string): string => (st.rates ? `${Math.round(st.rates[name] ?? 0)}/s` : '-');
  process.stdout.write(`mode       ${st.mode} (${st.interfaces.length > 0 ? st.interfaces.join(', ') : 'every interface but lo'})\n`);
  process.stdout.write(`table      ${st.table}: ${st.loaded ? 'loaded' : 'NOT LOADED'}\n`);
  process.stdout.write(`flags      ${Object.entries(st.flags).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
  const rate2 = (a: string, b: string): string => (st.rates ? `${Math.round((st.rates[a] ?? 0) + (st.rates[b] ?? 0))}/s` : '-');
  process.stdout.write(`blocked    manual ${st.blocked.manual} (${rate('blocked_manual')}), meters ${st.blocked.meter} (${rate2('blocked_meter_tcp', 'blocked_meter_other')}), global cap ${st.blocked.globalCap} (${rate2('global_cap_tcp', 'global_cap_udp')})\n`);
  process.stdout.write(`allowed    ${st.allowlisted} from allowlisted sources (${rate('allowlisted')})\n`);
  process.stdout.write(`attacks    ${st.attacks.length === 0 ? 'none' : st.attacks.map((a) => `${a.kind} since ${time(a.startedAt)}, peak ${a.peakPps}/s${a.topSources.length > 0 ? `, from ${sources(a)}` : ''}`).join('; ')}\n`);
  if (st.tightened.length > 0) process.stdout.write(`tightened  ${st.tightened.join(', ')} (half the per-source limits while the flood goes on)\n`);
  // the hand-made entries, which an operator looks for after a block or allow
  for (const list of ['block', 'allow'] as const) {
    const { entries } = await api.request<{ entries: ListEntry[] }>('GET', `/api/v1/shield/${list}list`);
    const manual = entries.filter((e) => e.source === 'manual');
    const shown = manual.slice(0, STATUS_ENTRIES).map((e) => `${e.address}${e.secondsLeft === null ? '' : ` (${e.secondsLeft} s left)`}`);
    if (manual.length > shown.length) shown.push(`and ${manual.length - shown.length} more (edgeward shield ${list}list)`);
    const meters = entries.length - manual.length;
    process.stdout.write(`${`${list}list`.padEnd(11)}${manual.length === 0 ? 'none by hand' : `by hand: ${shown.join(', ')}`}${meters > 0 ? `; ${meters} more by ${list === 'block' ? 'the meters' : 'the configuration'}` : ''}\n`);
  }
  process.stdout.write('\n');
  printList(st.services, {
    json: false,
    empty: 'no services',
    head: ['SERVICE', 'PROTO', 'ADDRESS', 'PORTS', 'PASSED', 'RATE', 'OVER RATE', 'OVER CONNS', 'SYNPROXY'],
    row: (s) => [s.name, s.protocol, s.address ?? '*', s.ports[0] === s.ports[1] ? String(s.ports[0]) : s.ports.join('-'), String(s.passed), rate(`svc_${s.name}_passed`), String(s.overRate), String(s.overConns), String(s.synproxy)],
    right: [4, 6, 7, 8],
  });
  if (st.proxies.length > 0) {
    process.stdout.write('\n');
    const closed = (p: ShieldProxyStats): string => Object.entries(p.closed).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(', ') || '-';
    printList(st.proxies, {
      json: false,
      empty: '',
      head: ['PROXY', 'FAMILY', 'PORT', 'ACTIVE', 'ACCEPTED', 'SUSPECTS', 'CLOSED'],
      row: (p) => [p.name, `IPv${p.family}`, String(p.port), String(p.active), String(p.accepted), String(p.suspects), closed(p)],
      right: [2, 3, 4, 5],
    });
  }
  return 0;
}

/** Hand-made list entries `shield status` names (the rest: shield blocklist|allowlist). */
const STATUS_ENTRIES = 10;

interface ListEntry {
  address: string;
  source: string;
  reason: string | null;
  secondsLeft: number | null;
}

function addTo(list: 'block' | 'allow') {
  return async (args: string[]): Promise<number> => {
    const { values, positionals } = parseOptions(args, { ttl: { type: 'string' }, reason: { type: 'string' } });
    const address = onePositional(positionals, 'ADDR');
    const ttl = optionalSeconds(values.ttl, 'ttl');
    const e = await clientFromEnv(values.data).request<ListEntry>('POST', `/api/v1/shield/${list}list`, { address, ...(ttl !== undefined ? { ttl } : {}), ...(values.reason !== undefined ? { reason: values.reason } : {}) });
    process.stdout.write(`${list === 'block' ? 'blocked' : 'allowed'} ${e.address}${e.secondsLeft !== null ? ` for ${e.secondsLeft} s` : ''}\n`);
    return 0;
  };
}

function removeFrom(list: 'block' | 'allow') {
  return async (args: string[]): Promise<number> => {
    const { values, positionals } = parseOptions(args, {});
    const address = onePositional(positionals, 'ADDR');
    await clientFromEnv(values.data).request('DELETE', `/api/v1/shield/${list}list/${encodeURIComponent(address)}`);
    process.stdout.write(`${address} is off the ${list}list\n`);
    return 0;
  };
}

function showList(list: 'block' | 'allow') {
  return async (args: string[]): Promise<number> => {
    const { values, positionals } = parseOptions(args, { json: { type: 'boolean' } });
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    const { entries } = await clientFromEnv(values.data).request<{ entries: ListEntry[] }>('GET', `/api/v1/shield/${list}list`);
    printList(entries, { json: values.json === true, empty: `the ${list}list is empty`, head: ['ADDRESS', 'SOURCE', 'LEFT', 'REASON'], row: (e) => [e.address, e.source, e.secondsLeft === null ? '-' : `${e.secondsLeft}s`, e.reason ?? ''] });
    return 0;
  };
}

async function print(args: string[]): Promise<number> {
  let values: Record<string, unknown>;
  try {
    const parsed = parseArgs({ args, options: flagOptions(SECTIONS), allowPositionals: true, strict: true });
    if (parsed.positionals.length > 0) throw new Error(`unexpected argument "${parsed.positionals[0]}"`);
    values = parsed.values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  let text: string;
  try {
    const file = typeof values.config === 'string' ? readConfigFile(values.config) : {};
    const settings = resolveSettings(file, settingsFromFlags(SECTIONS, values));
    if (settings.shieldService.length === 0) throw new Error('no protected service: give --shield-service SPEC (or shield: { service: [...] } in the --config file)');
    const spec = resolveShield(settings);
    text = renderTableScript(SHIELD_TABLE, renderShieldBody(spec), shieldComments(spec));
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  process.stdout.write(text);
  return 0;
}

async function remove(args: string[]): Promise<number> {
  const { positionals } = parseOptions(args, {});
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const had = await removeTable(SHIELD_TABLE);
  // the proxied services' policy routing (ip rule fwmark 0x6578), if a crash left it
  await removeDivertRouting();
  process.stdout.write(had ? `removed table ${SHIELD_TABLE_NAME}\n` : `table ${SHIELD_TABLE_NAME} is not loaded: nothing to remove\n`);
  return 0;
}

export const command: Command = apiCommand('shield', 'the DoS shield: shield status|events|block|unblock|allow|disallow|blocklist|allowlist|print|remove', usage, {
  status,
  events,
  block: addTo('block'),
  unblock: removeFrom('block'),
  allow: addTo('allow'),
  disallow: removeFrom('allow'),
  blocklist: showList('block'),
  allowlist: showList('allow'),
  print,
  remove,
});

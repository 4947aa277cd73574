// Settings of `edgeward start`: embedded defaults, then a YAML file (--config), then flags.
// The YAML keys are the long flag names (socks, api, data, socks-auth, socks-allow, ...).
import { readFileSync } from 'node:fs';
import { isIPv6 } from 'node:net';
import { parse as parseYaml } from 'yaml';
import { isLogLevel, type LogLevel } from '../log/logger.js';
import { availableCongestionControls } from '../kernel/capabilities.js';
import type { KeepAliveSetting } from '../kernel/sockopt.js';
import { CidrList, isLoopback, parseIp } from '../net/address.js';
import { parseUpstream } from '../policy/via.js';

export interface Settings {
  socks: string;
  api: string;
  data: string;
  socksAuth: boolean;
  socksAllow: string[];
  socksDeny: string[];
  allowOpenProxy: boolean;
  maxConnections: number;
  /** seconds */
  handshakeTimeout: number;
  connectTimeout: number;
  idleTimeout: number;
  shutdownGrace: number;
  logLevel: LogLevel;
  logFormat: 'auto' | 'json' | 'pretty';
  /** TPROXY listener, [HOST:]PORT; '' = none */
  intercept: string;
  transparentSource: boolean;
  /** source address of outgoing connections; '' = the kernel's choice */
  bindOutgoing: string;
  /** socks5://[user:pass@]host:port; '' = direct */
  upstream: string;
  socksMptcp: boolean;
  /** global keepalive default, "IDLE,INTERVAL,COUNT"; '' = kernel default */
  keepalive: string;
  noDelay: boolean;
  firewall: boolean;
  interceptInterface: string[];
  /** threads serving SOCKS: "auto" or a number */
  workers: string;
  /** congestion control on accepted client connections; '' = the kernel default */
  clientCongestion: string;
}

export const DEFAULTS: Settings = {
  socks: '127.0.0.1:1080',
  api: '127.0.0.1:8080',
  data: './.edgeward',
  socksAuth: false,
  socksAllow: [],
  socksDeny: [],
  allowOpenProxy: false,
  maxConnections: 10000,
  handshakeTimeout: 10,
  connectTimeout: 15,
  idleTimeout: 3600,
  shutdownGrace: 10,
  logLevel: 'info',
  logFormat: 'auto',
  intercept: '',
  transparentSource: false,
  bindOutgoing: '',
  upstream: '',
  socksMptcp: false,
  keepalive: '',
  noDelay: false,
  firewall: false,
  interceptInterface: [],
  workers: 'auto',
  clientCongestion: '',
};

type Kind = 'string' | 'boolean' | 'list' | 'seconds' | 'count';

/** Every setting: its flag / YAML key, its field, its kind, and its help line. */
export const SETTINGS: ReadonlyArray<{ key: string; field: keyof Settings; kind: Kind; arg?: string; help: string }> = [
  { key: 'socks', field: 'socks', kind: 'string', arg: 'ADDR', help: 'SOCKS listen address (default 127.0.0.1:1080)' },
  { key: 'api', field: 'api', kind: 'string', arg: 'ADDR', help: 'REST API listen address (default 127.0.0.1:8080)' },
  { key: 'data', field: 'data', kind: 'string', arg: 'DIR', help: 'data directory: SQLite store, api-token (default ./.edgeward)' },
  { key: 'socks-auth', field: 'socksAuth', kind: 'boolean', help: 'require RFC 1929 username/password (users: edgeward user add)' },
  { key: 'socks-allow', field: 'socksAllow', kind: 'list', arg: 'CIDR', help: 'clients allowed to use the proxy (repeatable; default: all who reach it)' },
  { key: 'socks-deny', field: 'socksDeny', kind: 'list', arg: 'CIDR', help: 'destinations never connected to (repeatable)' },
  { key: 'allow-open-proxy', field: 'allowOpenProxy', kind: 'boolean', help: 'allow a non-loopback SOCKS listener with neither --socks-auth nor --socks-allow' },
  { key: 'workers', field: 'workers', kind: 'string', arg: 'N', help: 'threads serving SOCKS, all accepting from the one listening socket: a number, or auto = one per CPU up to 8 (default auto)' },
  { key: 'max-connections', field: 'maxConnections', kind: 'count', arg: 'N', help: 'open client connections at most (default 10000)' },
  { key: 'handshake-timeout', field: 'handshakeTimeout', kind: 'seconds', arg: 'SEC', help: 'time for a client to finish the SOCKS handshake (default 10)' },
  { key: 'connect-timeout', field: 'connectTimeout', kind: 'seconds', arg: 'SEC', help: 'time to connect to a destination (default 15)' },
  { key: 'idle-timeout', field: 'idleTimeout', kind: 'seconds', arg: 'SEC', help: 'close a connection idle this long; 0 = never (default 3600)' },
  { key: 'shutdown-grace', field: 'shutdownGrace', kind: 'seconds', arg: 'SEC', help: 'on SIGTERM/SIGINT, let open connections drain this long (default 10)' },
  { key: 'log-level', field: 'logLevel', kind: 'string', arg: 'LEVEL', help: 'debug, info, warn or error (default info)' },
  { key: 'log-format', field: 'logFormat', kind: 'string', arg: 'FMT', help: 'json, pretty, or auto = pretty on a terminal (default auto)' },
  { key: 'socks-mptcp', field: 'socksMptcp', kind: 'boolean', help: 'accept MPTCP on the SOCKS listener (plain TCP clients still work): the concentrator end of hybrid access' },
  { key: 'intercept', field: 'intercept', kind: 'string', arg: '[HOST:]PORT', help: 'TPROXY listener for intercepted connections (IP_TRANSPARENT; IPv4 and IPv6 unless HOST is given); needs root' },
  { key: 'transparent-source', field: 'transparentSource', kind: 'boolean', help: 'intercepted connections keep the client address as source (replies must route back through this box)' },
  { key: 'bind-outgoing', field: 'bindOutgoing', kind: 'string', arg: 'ADDR', help: 'source address of outgoing connections' },
  { key: 'upstream', field: 'upstream', kind: 'string', arg: 'URL', help: 'chain connections through socks5://[user:pass@]host:port unless a policy has its own via' },
  { key: 'client-congestion', field: 'clientCongestion', kind: 'string', arg: 'NAME', help: 'congestion control on accepted connections (the hop toward the client: on a concentrator, the MPTCP link from the router)' },
  { key: 'keepalive', field: 'keepalive', kind: 'string', arg: 'I,N,C', help: 'keepalive on both sockets by default: idle seconds, interval seconds, probes (e.g. 60,10,6)' },
  { key: 'no-delay', field: 'noDelay', kind: 'boolean', help: 'TCP_NODELAY (Nagle off) on both sockets by default' },
  { key: 'firewall', field: 'firewall', kind: 'boolean', help: 'with --intercept: apply the TPROXY nftables rules on start, remove them on stop' },
  { key: 'intercept-interface', field: 'interceptInterface', kind: 'list', arg: 'IFACE', help: 'with --firewall: intercept connections arriving on IFACE (repeatable)' },
];

/** A bad setting; the message names it. */
export class SettingsError extends Error {}

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses "HOST:PORT", "[V6]:PORT" or "PORT" (loopback). */
export function parseListenAddress(text: string, what: string): ListenAddress {
  let host = '127.0.0.1';
  let portText = text;
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2]!;
    if (!isIPv6(host)) throw new SettingsError(`${what}: "${host}" is not an IPv6 address`);
  } else if (text.includes(':')) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
    if (host.includes(':')) throw new SettingsError(`${what}: write IPv6 addresses in brackets, e.g. [::1]:1080`);
    if (host === '') throw new SettingsError(`${what}: missing host before ":" in "${text}"`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw new SettingsError(`${what}: port "${portText}" must be 0..65535`);
  return { host, port: Number(portText) };
}

function coerce(key: string, kind: Kind, value: unknown): unknown {
  switch (kind) {
    case 'string':
      if (typeof value !== 'string' && typeof value !== 'number') throw new SettingsError(`${key} must be a string`);
      return String(value);
    case 'boolean':
      if (typeof value !== 'boolean') throw new SettingsError(`${key} must be true or false`);
      return value;
    case 'list':
      if (typeof value === 'string') return [value];
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) throw new SettingsError(`${key} must be a list of strings`);
      return value;
    case 'seconds':
    case 'count': {
      const n = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : value;
      if (typeof n !== 'number' || !Number.isFinite(n) || n < 0 || (kind === 'count' && (!Number.isInteger(n) || n < 1))) {
        throw new SettingsError(`${key} must be ${kind === 'count' ? 'a positive integer' : 'a number of seconds >= 0'}, got ${JSON.stringify(value)}`);
      }
      return n;
    }
  }
}

/** Reads a YAML settings file; unknown keys and wrong types are errors naming the key. */
export function readConfigFile(path: string): Partial<Settings> {
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new SettingsError(`--config ${path}: ${(e as Error).message}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new SettingsError(`--config ${path}: expected a mapping of settings`);
  const out: Partial<Settings> = {};
  for (const [key, value] of Object.entries(doc)) {
    const spec = SETTINGS.find((s) => s.key === key || s.field === key);
    if (!spec) throw new SettingsError(`--config ${path}: unknown setting "${key}" (known: ${SETTINGS.map((s) => s.key).join(', ')})`);
    (out as Record<string, unknown>)[spec.field] = coerce(`${path}: ${key}`, spec.kind, value);
  }
  return out;
}

/** Merges the layers and checks the result; throws SettingsError. */
export function resolveSettings(file: Partial<Settings>, flags: Partial<Settings>): Settings {
  const s: Settings = { ...DEFAULTS, ...file, ...flags };
  if (!isLogLevel(s.logLevel)) throw new SettingsError(`log-level must be debug, info, warn or error, got "${s.logLevel}"`);
  if (!['auto', 'json', 'pretty'].includes(s.logFormat)) throw new SettingsError(`log-format must be auto, json or pretty, got "${s.logFormat}"`);
  parseListenAddress(s.socks, '--socks');
  parseListenAddress(s.api, '--api');
  CidrList.parse(s.socksAllow, '--socks-allow');
  CidrList.parse(s.socksDeny, '--socks-deny');
  if (s.workers !== 'auto' && !(/^\d{1,3}$/.test(s.workers) && Number(s.workers) >= 1 && Number(s.workers) <= 64)) {
    throw new SettingsError(`--workers must be auto or a number of threads 1..64, got "${s.workers}"`);
  }
  if (s.intercept !== '') parseInterceptAddress(s.intercept);
  if (s.bindOutgoing !== '' && !parseIp(s.bindOutgoing)) throw new SettingsError(`--bind-outgoing: "${s.bindOutgoing}" is not an IP address`);
  if (s.upstream !== '') {
    const up = parseUpstream(s.upstream, '--upstream');
    if (!up.ok) throw new SettingsError(up.error.message);
  }
  if (s.keepalive !== '') parseKeepAlive(s.keepalive, '--keepalive');
  if (s.clientCongestion !== '') {
    const available = availableCongestionControls();
    if (!available.includes(s.clientCongestion)) throw new SettingsError(`--client-congestion "${s.clientCongestion}" is not available on this kernel; available: ${available.join(', ')}`);
  }
  if (s.transparentSource && s.intercept === '') throw new SettingsError('--transparent-source needs --intercept');
  if (s.firewall && s.intercept === '') throw new SettingsError('--firewall needs --intercept PORT');
  if (s.firewall && s.interceptInterface.length === 0) throw new SettingsError('--firewall needs at least one --intercept-interface IFACE (the LAN side whose connections are intercepted)');
  if (!s.firewall && s.interceptInterface.length > 0) throw new SettingsError('--intercept-interface is only used with --firewall');
  return s;
}

/** Parses --intercept: "PORT" (all addresses, IPv4 and IPv6), "HOST:PORT" or "[V6]:PORT". */
export function parseInterceptAddress(text: string): { host?: string; port: number } {
  if (/^\d+$/.test(text)) {
    const port = Number(text);
    if (port < 1 || port > 65535) throw new SettingsError(`--intercept: port "${text}" must be 1..65535`);
    return { port };
  }
  const a = parseListenAddress(text, '--intercept');
  if (!parseIp(a.host)) throw new SettingsError(`--intercept: "${a.host}" is not an IP address`);
  if (a.port === 0) throw new SettingsError('--intercept: port must be 1..65535 (the firewall diverts to a fixed port)');
  return a;
}

/** Parses "IDLE,INTERVAL,COUNT" (seconds, seconds, probes). */
export function parseKeepAlive(text: string, what: string): KeepAliveSetting {
  const m = /^(\d{1,5}),(\d{1,5}),(\d{1,3})$/.exec(text.trim());
  const [idle, interval, count] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  if (!m || idle < 1 || idle > 32767 || interval < 1 || interval > 32767 || count < 1 || count > 127) {
    throw new SettingsError(`${what} must be IDLE,INTERVAL,COUNT: idle and interval 1..32767 seconds, count 1..127 probes (e.g. 60,10,6), got "${text}"`);
  }
  return { idle, interval, count };
}

/** Refuses a SOCKS listener anyone could use, with the reason; null when the setup is safe. */
export function openProxyRefusal(s: Settings): string | null {
  const { host } = parseListenAddress(s.socks, '--socks');
  const ip = parseIp(host);
  const loopback = host === 'localhost' || (ip !== null && isLoopback(ip));
  if (loopback || s.socksAuth || s.socksAllow.length > 0 || s.allowOpenProxy) return null;
  return (
    `refusing to listen for SOCKS on ${s.socks} with neither --socks-auth nor --socks-allow: ` +
    'anyone who can reach that address could relay traffic through this machine (an open proxy). ' +
    'Add --socks-auth (and users: edgeward user add), or --socks-allow CIDR for your clients, ' +
    'or --allow-open-proxy if an open proxy is really what you want.'
  );
}

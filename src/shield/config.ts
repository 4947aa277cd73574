// The shield's settings (YAML section `shield:`): the mode (protect listeners of this host, or a
// backend behind this router), where attacks arrive, the sources that are never blocked or never
// metered, and the protected services, each one line (flag --shield-service, YAML list
// `shield: { service: [...] }`): NAME=PROTO:[ADDR:]PORT[-PORT][,KEY=VALUE...].
import { Type, type Static } from '@sinclair/typebox';
import { opt, section, SettingsError } from '../config/schema.js';
import { parseListenAddress } from '../config/common.js';
import { formatIp, isLoopback, parseCidrs, parseIp, type Cidr } from '../net/address.js';

export const SHIELD_MODES = ['host', 'router'] as const;
export type ShieldMode = (typeof SHIELD_MODES)[number];

/** How SYN floods are met: the kernel's SYN cookies on this host, or nftables synproxy in front of the service. */
export const SYN_DEFENCES = ['auto', 'synproxy', 'cookies'] as const;
export type SynDefence = (typeof SYN_DEFENCES)[number];

export const shieldSection = section({
  name: 'shield',
  title: 'Shield (DoS protection)',
  schema: Type.Object({
    shieldService: opt.list({
      flag: 'shield-service',
      key: 'service',
      arg: 'SPEC',
      yamlItem: serviceFromYaml,
      help: 'a protected service, repeatable: NAME=tcp|udp:[ADDR:]PORT[-PORT][,rate=N][,conns=N][,syn=synproxy|cookies][,speaks-first][,proxy[,proxy-protocol]] (rate: new connections or datagrams per second one source may send before it is blocked; conns: connections one source may hold; ADDR is required in router mode; proxy: its connections go through edgeward\'s L4 proxy (TPROXY), which closes slow and zero-window clients; proxy-protocol: the proxy sends a PROXY v2 header to the server). Turns the shield on; needs root',
    }),
    shieldMode: opt.choice(SHIELD_MODES, { flag: 'shield-mode', key: 'mode', arg: 'MODE', help: 'host: protect listeners on this machine (input hook); router: protect backends behind it (forward hook)', default: 'host' }),
    shieldInterface: opt.list({ flag: 'shield-interface', key: 'interface', arg: 'IFACE', help: 'where attacks arrive: the rules look only at packets coming in here (repeatable; default: every interface but lo; required in router mode)' }),
    shieldManagement: opt.list({ flag: 'shield-management', key: 'management', arg: 'CIDR', help: 'sources that are never blocked, metered or capped (the operators; the API\'s clients)' }),
    shieldAllow: opt.list({ flag: 'shield-allow', key: 'allow', arg: 'CIDR', help: 'the allowlist: known-good sources, checked before the meters and global caps (they still get flag sanity)' }),
    shieldSyn: opt.choice(SYN_DEFENCES, { flag: 'shield-syn', key: 'syn', arg: 'HOW', help: 'SYN flood defence for TCP services: cookies (the kernel\'s SYN cookies, host mode), synproxy (nftables answers the handshake, then hands the connection on), auto (cookies in host mode, synproxy in router mode)', default: 'auto' }),
    shieldBlockTime: opt.seconds({ flag: 'shield-block-time', key: 'block-time', arg: 'SEC', help: 'how long a source a meter caught stays blocked', default: 60 }),
    shieldGlobalRate: opt.count({ flag: 'shield-global-rate', key: 'global-rate', arg: 'N', help: 'the last resort: new TCP connections plus UDP datagrams per second to all protected services together, from sources not on the allowlist; beyond it they are dropped', default: 200000 }),
    shieldWebhook: opt.string({ flag: 'shield-webhook', key: 'webhook', arg: 'URL', help: 'POST each attack alert (started, ended) as JSON to this http(s) URL, retried up to 4 times with backoff', default: '' }),
    shieldAttackRate: opt.count({ flag: 'shield-attack-rate', key: 'attack-rate', arg: 'PPS', help: 'attack packets per second (dropped, metered or answered by synproxy, per kind: SYN flood, UDP flood) at which an attack event starts; flag attacks start at a tenth of it', default: 1000 }),
    shieldAttackQuiet: opt.seconds({ flag: 'shield-attack-quiet', key: 'attack-quiet', arg: 'SEC', help: 'an attack ends once its rate has stayed under --shield-attack-rate this long', default: 10 }),
    shieldAdapt: opt.choice(['on', 'off'] as const, { flag: 'shield-adapt', key: 'adapt', arg: 'on|off', help: 'on: while a SYN or UDP flood goes on, the services of its protocol run with half their per-source rate and connections, and get them back when it ends (logged)', default: 'on' }),
    shieldFirstByte: opt.seconds({ flag: 'shield-first-byte', key: 'first-byte', arg: 'SEC', help: 'proxied services: a client that sends nothing this long after connecting is closed (not for speaks-first services: the server writes first); 0 = never', default: 10 }),
    shieldMinRate: opt.seconds({ flag: 'shield-min-rate', key: 'min-rate', arg: 'BYTES', help: 'proxied services: a client that sends its request, or reads the answer, slower than this many bytes per second over --shield-rate-grace is closed (slowloris, slow read); 0 = off', default: 256 }),
    shieldRateGrace: opt.seconds({ flag: 'shield-rate-grace', key: 'rate-grace', arg: 'SEC', help: 'proxied services: the time over which --shield-min-rate is judged', default: 5 }),
    shieldZeroWindow: opt.seconds({ flag: 'shield-zero-window', key: 'zero-window', arg: 'SEC', help: 'proxied services: a client whose receive window stays under one segment this long while data waits for it is closed; 0 = never', default: 10 }),
    shieldProxyConns: opt.count({ flag: 'shield-proxy-conns', key: 'proxy-conns', arg: 'N', help: 'proxied services: connections each may hold; at the cap allowlisted and well-behaved sources are served first', default: 10000 }),
    shieldMeterSize: opt.count({ flag: 'shield-meter-size', key: 'meter-size', arg: 'N', help: 'sources each per-source meter and the blocklist hold at most', default: 65536 }),
  }),
  validate(s) {
    if (s.shieldService.length === 0) {
      for (const [flag, set] of [
        ['--shield-interface', s.shieldInterface.length > 0],
        ['--shield-management', s.shieldManagement.length > 0],
        ['--shield-allow', s.shieldAllow.length > 0],
        ['--shield-webhook', s.shieldWebhook !== ''],
      ] as const) {
        if (set) throw new SettingsError(`${flag} needs --shield-service (the shield is on when it protects a service)`);
      }
      return;
    }
    resolveShield(s);
  },
});

export type ShieldSettings = Static<typeof shieldSection.schema>;

const YAML_SERVICE_KEYS = ['name', 'protocol', 'address', 'port', 'rate', 'rate-per-source', 'conns', 'conns-per-source', 'syn', 'speaks-first', 'proxy', 'proxy-protocol'];

/**
 * A service written as a YAML mapping, `{ name: web, address: 10.0.3.2, port: 80, protocol: tcp,
 * proxy: true }`, as the SPEC of --shield-service (which then checks it like any other).
 */
function serviceFromYaml(item: Record<string, unknown>, where: string): string {
  for (const k of Object.keys(item)) if (!YAML_SERVICE_KEYS.includes(k)) throw new SettingsError(`${where}: unknown key "${k}" (known: ${YAML_SERVICE_KEYS.join(', ')})`);
  const text = (k: string, re: RegExp, what: string): string | undefined => {
    const v = item[k];
    if (v === undefined) return undefined;
    if ((typeof v !== 'string' && typeof v !== 'number') || !re.test(String(v))) throw new SettingsError(`${where}: ${k} must be ${what}, got ${JSON.stringify(v)}`);
    return String(v);
  };
  const flag = (k: string): boolean => {
    const v = item[k];
    if (v !== undefined && typeof v !== 'boolean') throw new SettingsError(`${where}: ${k} must be true or false, got ${JSON.stringify(v)}`);
    return v === true;
  };
  const name = text('name', /^\S+$/, 'a name');
  const protocol = text('protocol', /^(tcp|udp)$/, 'tcp or udp');
  const port = text('port', /^\d{1,5}(-\d{1,5})?$/, 'a port or a range LO-HI');
  if (name === undefined || protocol === undefined || port === undefined) throw new SettingsError(`${where}: name, protocol and port are required`);
  const address = text('address', /^[0-9A-Fa-f.:]+$/, 'an IP address');
  const once = (a: string, b: string): string | undefined => {
    if (item[a] !== undefined && item[b] !== undefined) throw new SettingsError(`${where}: ${a} and ${b} are the same setting`);
    return text(a, /^\d+$/, 'a whole number') ?? text(b, /^\d+$/, 'a whole number');
  };
  const rate = once('rate', 'rate-per-source');
  const conns = once('conns', 'conns-per-source');
  const syn = text('syn', /^(synproxy|cookies)$/, 'synproxy or cookies');
  const opts = [
    ...(rate !== undefined ? [`rate=${rate}`] : []),
    ...(conns !== undefined ? [`conns=${conns}`] : []),
    ...(syn !== undefined ? [`syn=${syn}`] : []),
    ...(flag('speaks-first') ? ['speaks-first'] : []),
    ...(flag('proxy') ? ['proxy'] : []),
    ...(flag('proxy-protocol') ? ['proxy-protocol'] : []),
  ];
  const target = address === undefined ? port : address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
  return [`${name}=${protocol}:${target}`, ...opts].join(',');
}

export type ShieldProtocol = 'tcp' | 'udp';

/** One protected service, parsed. */
export interface ShieldService {
  name: string;
  protocol: ShieldProtocol;
  /** the backend (router mode) or a local address (host mode); undefined: every local address */
  address?: string;
  family?: 4 | 6;
  ports: [number, number];
  /** new connections (tcp) or datagrams (udp) per second per source before it is blocked */
  rate: number;
  /** connections one source may hold (tcp) */
  conns: number;
  /** tcp: how SYN floods are met */
  syn: 'synproxy' | 'cookies';
  /** tcp: the server writes first (an SMTP or SSH banner): synproxy leaves out TCP timestamps */
  speaksFirst: boolean;
  /** tcp: connections are diverted (TPROXY) to edgeward's L4 proxy, which dials the original destination */
  proxy: boolean;
  /** the proxy sends a PROXY protocol v2 header to the server first */
  proxyProtocol: boolean;
}

/** The L4 proxy's limits, shared by the proxied services (their per-source limit is their conns). */
export interface ShieldProxySpec {
  /** 0: off */
  firstByteMs: number;
  /** bytes per second; 0: off */
  minRate: number;
  graceMs: number;
  /** 0: off */
  zeroWindowMs: number;
  maxConns: number;
}

/** Everything the ruleset is built from, checked. */
export interface ShieldSpec {
  mode: ShieldMode;
  interfaces: string[];
  management: Cidr[];
  allow: Cidr[];
  services: ShieldService[];
  blockTimeS: number;
  globalRate: number;
  meterSize: number;
  /** where alerts are POSTed; null: nowhere */
  webhook: string | null;
  /** packets per second at which a SYN or UDP flood event starts (flag attacks: a tenth) */
  attackRate: number;
  attackQuietS: number;
  /** tighten the per-source limits under attack */
  adapt: boolean;
  proxy: ShieldProxySpec;
  /** the management API's listener when it is reachable from outside (not loopback): it passes the meters' blocklist */
  api: { address?: string; family?: 4 | 6; port: number } | null;
}

/** The management API's listener as the shield must keep it reachable; null when it listens on loopback only. */
function apiExemption(api: string | undefined): ShieldSpec['api'] {
  if (api === undefined) return null;
  const a = parseListenAddress(api, '--api');
  const ip = parseIp(a.host);
  if (!ip) return { port: a.port }; // a host name: the port on every local address
  if (isLoopback(ip)) return null; // lo is outside the shield's scope
  if (ip.bytes.every((b) => b === 0)) return { port: a.port };
  return { address: formatIp(ip), family: ip.family, port: a.port };
}

export const DEFAULT_TCP_RATE = 100;
export const DEFAULT_UDP_RATE = 2000;
export const DEFAULT_CONNS = 64;
const MAX_SERVICES = 64;
const NAME = /^[a-z][a-z0-9_]{0,23}$/;
const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;

function positiveInt(text: string, what: string, max: number): number {
  if (!/^\d{1,9}$/.test(text) || Number(text) < 1 || Number(text) > max) throw new SettingsError(`${what}: "${text}" must be a whole number 1..${max}`);
  return Number(text);
}

/** Parses one --shield-service SPEC; `mode` decides whether ADDR is required. */
export function parseShieldService(text: string, mode: ShieldMode, defaultSyn: 'synproxy' | 'cookies'): ShieldService {
  const where = `--shield-service ${text}`;
  const m = /^([^=]+)=(tcp|udp):(.+)$/.exec(text.trim());
  if (!m) throw new SettingsError(`${where}: expected NAME=tcp|udp:[ADDR:]PORT[-PORT][,KEY=VALUE...] (e.g. web=tcp:10.0.3.2:80,rate=50)`);
  const name = m[1]!;
  if (!NAME.test(name)) throw new SettingsError(`${where}: the name "${name}" must be a lower-case letter, then up to 23 lower-case letters, digits or "_" (it names nftables objects)`);
  const protocol = m[2] as ShieldProtocol;
  const [target, ...options] = m[3]!.split(',');
  // [ADDR:]PORT[-PORT], ADDR in brackets when it is IPv6
  const t = /^(?:\[([^\]]+)\]:|([^:[\]]+):)?(\d{1,5})(?:-(\d{1,5}))?$/.exec(target!);
  if (!t) throw new SettingsError(`${where}: "${target}" is not [ADDR:]PORT[-PORT] (an IPv6 address in brackets: [2001:db8::1]:80)`);
  const addrText = t[1] ?? t[2];
  let address: string | undefined;
  let family: 4 | 6 | undefined;
  if (addrText !== undefined) {
    const ip = parseIp(addrText);
    if (!ip) throw new SettingsError(`${where}: "${addrText}" is not an IP address`);
    address = formatIp(ip);
    family = ip.family;
  } else if (mode === 'router') {
    throw new SettingsError(`${where}: router mode needs the backend's address (NAME=${protocol}:ADDR:PORT)`);
  }
  const lo = positiveInt(t[3]!, `${where}: port`, 65535);
  const hi = t[4] === undefined ? lo : positiveInt(t[4], `${where}: port`, 65535);
  if (hi < lo) throw new SettingsError(`${where}: the port range ${lo}-${hi} runs backwards`);
  const svc: ShieldService = {
    name,
    protocol,
    ...(address !== undefined ? { address, family } : {}),
    ports: [lo, hi],
    rate: protocol === 'tcp' ? DEFAULT_TCP_RATE : DEFAULT_UDP_RATE,
    conns: DEFAULT_CONNS,
    syn: defaultSyn,
    speaksFirst: false,
    proxy: false,
    proxyProtocol: false,
  };
  let synGiven = false;
  const seen = new Set<string>();
  for (const o of options) {
    const [key, value] = o.includes('=') ? [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)] : [o, undefined];
    if (seen.has(key)) throw new SettingsError(`${where}: "${key}" is given twice`);
    seen.add(key);
    switch (key) {
      case 'rate':
        svc.rate = positiveInt(value ?? '', `${where}: rate`, 10_000_000);
        break;
      case 'conns':
        if (protocol !== 'tcp') throw new SettingsError(`${where}: conns limits TCP connections; a UDP service has rate only`);
        svc.conns = positiveInt(value ?? '', `${where}: conns`, 1_000_000);
        break;
      case 'syn':
        if (protocol !== 'tcp') throw new SettingsError(`${where}: syn is for TCP services`);
        if (value !== 'synproxy' && value !== 'cookies') throw new SettingsError(`${where}: syn must be synproxy or cookies, got "${value ?? ''}"`);
        svc.syn = value;
        synGiven = true;
        break;
      case 'speaks-first':
        if (protocol !== 'tcp') throw new SettingsError(`${where}: speaks-first is for TCP services`);
        if (value !== undefined) throw new SettingsError(`${where}: speaks-first takes no value`);
        svc.speaksFirst = true;
        break;
      case 'proxy':
      case 'proxy-protocol':
        if (protocol !== 'tcp') throw new SettingsError(`${where}: ${key} is for TCP services (the proxy relays connections)`);
        if (value !== undefined) throw new SettingsError(`${where}: ${key} takes no value`);
        if (key === 'proxy') svc.proxy = true;
        else svc.proxyProtocol = true;
        break;
      default:
        throw new SettingsError(`${where}: unknown option "${key}" (rate, conns, syn, speaks-first, proxy, proxy-protocol)`);
    }
  }
  if (svc.proxyProtocol && !svc.proxy) throw new SettingsError(`${where}: proxy-protocol needs proxy (the header comes from edgeward's proxy)`);
  if (svc.proxy) {
    // the proxy's listener is this host's socket: this host's SYN cookies meet the SYNs
    if (synGiven && svc.syn === 'synproxy') throw new SettingsError(`${where}: a proxied service's connections end on this host, whose SYN cookies meet a SYN flood: leave out syn=synproxy (or proxy)`);
    svc.syn = 'cookies';
  } else if (svc.syn === 'cookies' && mode === 'router') {
    throw new SettingsError(`${where}: syn=cookies protects this host's own listeners; in router mode the backend's cookies are the backend's (use synproxy, or proxy)`);
  }
  return svc;
}

/** The checked spec of the settings; throws SettingsError naming the flag and entry. */
export function resolveShield(s: ShieldSettings & { api?: string }): ShieldSpec {
  const mode = s.shieldMode;
  const defaultSyn = s.shieldSyn === 'auto' ? (mode === 'router' ? 'synproxy' : 'cookies') : s.shieldSyn;
  if (mode === 'router' && defaultSyn === 'cookies') throw new SettingsError('--shield-syn cookies protects this host\'s own listeners; router mode uses synproxy (or auto)');
  if (s.shieldService.length > MAX_SERVICES) throw new SettingsError(`--shield-service: at most ${MAX_SERVICES} services`);
  const services = s.shieldService.map((t) => parseShieldService(t, mode, defaultSyn));
  const names = new Set<string>();
  for (const svc of services) {
    if (names.has(svc.name)) throw new SettingsError(`--shield-service: the name "${svc.name}" is used twice`);
    names.add(svc.name);
  }
  for (const i of s.shieldInterface) if (!IFNAME.test(i)) throw new SettingsError(`--shield-interface: "${i}" is not an interface name (1-15 letters, digits, "_.:-")`);
  if (mode === 'router' && s.shieldInterface.length === 0) throw new SettingsError('--shield-interface IFACE is required in router mode (the side attacks arrive on; the backend side must not be filtered)');
  if (s.shieldBlockTime < 1 || s.shieldBlockTime > 86_400) throw new SettingsError(`--shield-block-time must be 1-86400 seconds, got ${s.shieldBlockTime}`);
  if (s.shieldRateGrace < 0.5 || s.shieldRateGrace > 600) throw new SettingsError(`--shield-rate-grace must be 0.5-600 seconds, got ${s.shieldRateGrace}`);
  if (s.shieldFirstByte > 3600) throw new SettingsError(`--shield-first-byte must be 0-3600 seconds, got ${s.shieldFirstByte}`);
  if (s.shieldZeroWindow > 3600) throw new SettingsError(`--shield-zero-window must be 0-3600 seconds, got ${s.shieldZeroWindow}`);
  if (s.shieldAttackQuiet < 1 || s.shieldAttackQuiet > 3600) throw new SettingsError(`--shield-attack-quiet must be 1-3600 seconds, got ${s.shieldAttackQuiet}`);
  let webhook: string | null = null;
  if (s.shieldWebhook !== '') {
    let url: URL;
    try {
      url = new URL(s.shieldWebhook);
    } catch {
      throw new SettingsError(`--shield-webhook: "${s.shieldWebhook}" is not a URL (http://HOST[:PORT]/PATH or https://...)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new SettingsError(`--shield-webhook: "${s.shieldWebhook}" must be an http:// or https:// URL`);
    webhook = url.href;
  }
  // the gateway's --api (the service gets the whole settings; `shield print` too)
  const api = apiExemption(s.api);
  const onApi = api && services.find((v) => v.protocol === 'tcp' && mode === 'host' && v.ports[0] <= api.port && api.port <= v.ports[1] && (v.address === undefined || api.address === undefined || v.address === api.address));
  if (onApi) throw new SettingsError(`--shield-service ${onApi.name}: its ports take in the management API's port ${api!.port} (--api); the shield keeps the API reachable, it cannot also limit it`);
  return {
    mode,
    interfaces: [...s.shieldInterface],
    management: parseCidrs(s.shieldManagement, '--shield-management'),
    allow: parseCidrs(s.shieldAllow, '--shield-allow'),
    services,
    blockTimeS: Math.round(s.shieldBlockTime),
    globalRate: s.shieldGlobalRate,
    meterSize: s.shieldMeterSize,
    webhook,
    attackRate: s.shieldAttackRate,
    attackQuietS: s.shieldAttackQuiet,
    adapt: s.shieldAdapt === 'on',
    proxy: {
      firstByteMs: Math.round(s.shieldFirstByte * 1000),
      minRate: Math.round(s.shieldMinRate),
      graceMs: Math.round(s.shieldRateGrace * 1000),
      zeroWindowMs: Math.round(s.shieldZeroWindow * 1000),
      maxConns: s.shieldProxyConns,
    },
    api,
  };
}


// The gateway's own settings (API, data, threads, logs, shutdown) and those every relaying service
// shares (timeouts, connection cap, upstream, transport defaults), and the listen-address parser.
import { isIPv6 } from 'node:net';
import { Type } from '@sinclair/typebox';
import { availableCongestionControls } from '../kernel/capabilities.js';
import { DEFAULT_BUSY_POLL_US } from '../kernel/epoll-plane.js';
import type { KeepAliveSetting } from '../kernel/sockopt.js';
import { isInterfaceName, parseIp } from '../net/address.js';
import { parseUpstream } from '../policy/via.js';
import { opt, section, SettingsError } from './schema.js';

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

/** Parses "IDLE,INTERVAL,COUNT" (seconds, seconds, probes). */
/** One uplink of --uplinks: an address, a device, or both. */
export interface UplinkSetting {
  address?: string;
  device?: string;
}

/** Parses --uplinks: "10.0.1.2,10.0.2.2%lte0,wan1"; throws a SettingsError naming the bad entry. */
export function parseUplinks(text: string, what: string): UplinkSetting[] {
  const out: UplinkSetting[] = [];
  for (const raw of text.split(',')) {
    const e = raw.trim();
    if (e === '') continue;
    const pct = e.lastIndexOf('%');
    const address = pct >= 0 ? e.slice(0, pct) : e;
    const device = pct >= 0 ? e.slice(pct + 1) : undefined;
    if (pct >= 0) {
      if (!parseIp(address) || !isInterfaceName(device!)) throw new SettingsError(`${what}: "${e}" is not ADDR%DEV (an IP address and a device name)`);
      out.push({ address, device });
    } else if (parseIp(address)) out.push({ address });
    else if (isInterfaceName(address)) out.push({ device: address });
    else throw new SettingsError(`${what}: "${e}" is neither an IP address, ADDR%DEV, nor a device name`);
  }
  return out;
}

export function parseKeepAlive(text: string, what: string): KeepAliveSetting {
  const m = /^(\d{1,5}),(\d{1,5}),(\d{1,3})$/.exec(text.trim());
  const [idle, interval, count] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  if (!m || idle < 1 || idle > 32767 || interval < 1 || interval > 32767 || count < 1 || count > 127) {
    throw new SettingsError(`${what} must be IDLE,INTERVAL,COUNT: idle and interval 1..32767 seconds, count 1..127 probes (e.g. 60,10,6), got "${text}"`);
  }
  return { idle, interval, count };
}

/** --busy-poll as microseconds 0..1000; throws a SettingsError naming the flag. */
export function busyPollMicros(text: string): number {
  if (!/^\d{1,4}$/.test(text.trim()) || Number(text) > 1000) throw new SettingsError(`--busy-poll must be microseconds 0..1000 (0 = off), got "${text}"`);
  return Number(text);
}

export const gatewaySection = section({
  name: 'gateway',
  title: 'Gateway',
  schema: Type.Object({
    api: opt.string({ flag: 'api', key: 'api', arg: 'ADDR', help: 'REST API listen address', default: '127.0.0.1:8080' }),
    apiTlsCert: opt.string({ flag: 'api-tls-cert', key: 'api-tls-cert', arg: 'FILE', help: 'serve the API over HTTPS with this PEM certificate chain (and --api-tls-key)', default: '' }),
    apiTlsKey: opt.string({ flag: 'api-tls-key', key: 'api-tls-key', arg: 'FILE', help: 'PEM private key for --api-tls-cert', default: '' }),
    data: opt.string({ flag: 'data', arg: 'DIR', help: 'data directory: SQLite store, api-token', default: './.edgeward' }),
    workers: opt.string({ flag: 'workers', arg: 'N', help: 'threads that run the services running in every thread (SOCKS), each accepting from the one listening socket: a number, or auto = one per CPU up to 8; with 2 or more they are worker threads, and the main thread keeps the API and the other services', default: 'auto' }),
    busyPoll: opt.string({
      flag: 'busy-poll',
      arg: 'US',
      help: 'after each batch of events, a relaying thread polls for more without sleeping this many microseconds before it sleeps: a woken thread on an idle CPU (above all in a VM) starts 30-50 us late, at every step of a connection; costs CPU only after activity; 0 = sleep at once',
      default: String(DEFAULT_BUSY_POLL_US),
    }),
    shutdownGrace: opt.seconds({ flag: 'shutdown-grace', arg: 'SEC', help: 'on SIGTERM/SIGINT, let open connections drain this long', default: 10 }),
    logLevel: opt.choice(['debug', 'info', 'warn', 'error'] as const, { flag: 'log-level', arg: 'LEVEL', help: 'debug, info, warn or error', default: 'info' }),
    logFormat: opt.choice(['auto', 'json', 'pretty'] as const, { flag: 'log-format', arg: 'FMT', help: 'json, pretty, or auto = pretty on a terminal', default: 'auto' }),
  }),
  validate(s) {
    parseListenAddress(s.api, '--api');
    if ((s.apiTlsCert === '') !== (s.apiTlsKey === '')) throw new SettingsError('--api-tls-cert and --api-tls-key go together (PEM certificate chain and its private key)');
    if (s.workers !== 'auto' && !(/^\d{1,3}$/.test(s.workers) && Number(s.workers) >= 1 && Number(s.workers) <= 64)) {
      throw new SettingsError(`--workers must be auto or a number of threads 1..64, got "${s.workers}"`);
    }
    busyPollMicros(s.busyPoll);
  },
});

export const transportSection = section({
  name: 'transport',
  title: 'Connections (SOCKS and intercepted alike)',
  schema: Type.Object({
    maxConnections: opt.count({ flag: 'max-connections', arg: 'N', help: 'open client connections at most, per service (all its threads together)', default: 10000 }),
    handshakeTimeout: opt.seconds({ flag: 'handshake-timeout', arg: 'SEC', help: 'time for a client to finish the SOCKS handshake', default: 10 }),
    connectTimeout: opt.seconds({ flag: 'connect-timeout', arg: 'SEC', help: 'time to connect to a destination', default: 15 }),
    idleTimeout: opt.seconds({ flag: 'idle-timeout', arg: 'SEC', help: 'close a connection idle this long; 0 = never', default: 3600 }),
    bindOutgoing: opt.string({ flag: 'bind-outgoing', arg: 'ADDR', help: 'source address of outgoing connections', default: '' }),
    upstream: opt.string({ flag: 'upstream', arg: 'URL', help: 'chain connections through socks5://[user:pass@]host:port unless a policy has its own via', default: '' }),
    clientCongestion: opt.string({
      flag: 'client-congestion',
      arg: 'NAME',
      help: 'congestion control on accepted connections (the hop toward the client: on a concentrator, the MPTCP link from the router)',
      default: '',
    }),
    keepalive: opt.string({ flag: 'keepalive', arg: 'I,N,C', help: 'keepalive on both sockets by default: idle seconds, interval seconds, probes (e.g. 60,10,6)', default: '' }),
    noDelay: opt.boolean({ flag: 'no-delay', help: 'TCP_NODELAY (Nagle off) on both sockets by default' }),
    uplinks: opt.string({
      flag: 'uplinks',
      arg: 'LIST',
      help: 'the uplinks of pathManager fullmesh: comma-separated ADDR, ADDR%DEV (subflow bound to DEV) or DEV (its addresses at each connect)',
      default: '',
    }),
  }),
  validate(s) {
    if (s.bindOutgoing !== '' && !parseIp(s.bindOutgoing)) throw new SettingsError(`--bind-outgoing: "${s.bindOutgoing}" is not an IP address`);
    if (s.upstream !== '') {
      const up = parseUpstream(s.upstream, '--upstream');
      if (!up.ok) throw new SettingsError(up.error.message);
    }
    if (s.keepalive !== '') parseKeepAlive(s.keepalive, '--keepalive');
    parseUplinks(s.uplinks, '--uplinks');
    if (s.clientCongestion !== '') {
      const available = availableCongestionControls();
      if (!available.includes(s.clientCongestion)) throw new SettingsError(`--client-congestion "${s.clientCongestion}" is not available on this kernel; available: ${available.join(', ')}`);
    }
  },
});

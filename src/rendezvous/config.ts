// The rendezvous service's settings (YAML section `rendezvous:`): where its STUN/TURN server listens.
import { Type, type Static } from '@sinclair/typebox';
import { parseListenAddress } from '../config/common.js';
import { opt, section, SettingsError } from '../config/schema.js';
import { CidrList, isUnspecified, parseIp } from '../net/address.js';
import { parseBandwidth } from './limits.js';

export const rendezvousSection = section({
  name: 'rendezvous',
  title: 'Rendezvous service (STUN/TURN, accounts, signaling)',
  schema: Type.Object({
    turn: opt.string({
      flag: 'turn',
      key: 'listen',
      arg: '[HOST:]PORT',
      help: 'STUN/TURN server on UDP and TCP (PORT alone: loopback; 3478 is the standard port): STUN Binding, and TURN (UDP relays) for TURN REST credentials (--turn-secret) and users with TURN access (edgeward user add NAME --turn)',
      default: '',
    }),
    turnTls: opt.string({
      flag: 'turn-tls',
      key: 'tls-listen',
      arg: '[HOST:]PORT',
      help: 'TURN over TLS (turns:, TCP; PORT alone: loopback; 5349 is the standard port), with --turn-tls-cert and --turn-tls-key; needs --turn',
      default: '',
    }),
    turnTlsCert: opt.string({ flag: 'turn-tls-cert', key: 'tls-cert', arg: 'FILE', help: 'PEM certificate chain for --turn-tls, read at start and again when it changes (renewals need no restart)', default: '' }),
    turnTlsKey: opt.string({ flag: 'turn-tls-key', key: 'tls-key', arg: 'FILE', help: 'PEM private key for --turn-tls, read at start and again when it changes', default: '' }),
    turnRealm: opt.string({ flag: 'turn-realm', key: 'realm', arg: 'REALM', help: 'the TURN realm (long-term credentials)', default: 'edgeward' }),
    turnSecret: opt.list({ flag: 'turn-secret', key: 'secrets', arg: 'SECRET', help: 'TURN REST secret (coturn\'s scheme: username EXPIRY:USER, password base64(HMAC-SHA1(secret, username))); repeatable, newest first, to rotate. Without one, only users of the store with TURN access can allocate' }),
    turnRelayIp: opt.list({ flag: 'turn-relay-ip', key: 'relay-ip', arg: 'ADDR', help: 'address relayed transport addresses are allocated on; one IPv4 and one IPv6 address for IPv6 and dual (ADDITIONAL-ADDRESS-FAMILY) allocations (default: the --turn address; required when that is 0.0.0.0 or ::)' }),
    turnAllowPeers: opt.list({ flag: 'turn-allow-peers', key: 'allow-peers', arg: 'CIDR', help: 'peers allowed despite the default denylist (loopback, private, link-local, CGNAT, multicast)' }),
    turnDenyPeers: opt.list({ flag: 'turn-deny-peers', key: 'deny-peers', arg: 'CIDR', help: 'peers denied in addition to the default denylist' }),
    turnMaxAllocations: opt.count({ flag: 'turn-max-allocations', key: 'max-allocations', arg: 'N', help: 'TURN allocations at most (486 beyond)', default: 10000 }),
    turnUserAllocations: opt.count({ flag: 'turn-user-allocations', key: 'max-allocations-per-user', arg: 'N', help: 'TURN allocations one user may hold at once (the USER of a REST username, or a user of the store; 486 beyond); a browser makes one per TURN URL and peer connection', default: 32 }),
    turnAuthRate: opt.count({ flag: 'turn-auth-rate', key: 'auth-rate', arg: 'N', help: '401/438 answers per second per source address (a burst of 5 s worth first); beyond it the server is silent, so a spoofed flood is not reflected. Every allocation costs one: raise it for many clients behind one NAT', default: 20 }),
    turnBandwidth: opt.string({ flag: 'turn-bandwidth', key: 'bandwidth', arg: 'RATE', help: 'relayed bandwidth per allocation, each way, as tc writes it (4mbit, 800kbit); datagrams beyond it are dropped and counted; 0 = no limit', default: '0' }),
    turnExternalIp: opt.string({ flag: 'turn-external-ip', key: 'external-ip', arg: 'ADDR', help: 'the public address of a server behind 1:1 NAT: announced in relayed addresses instead of --turn-relay-ip, and taken to mean it when a client names it as a peer', default: '' }),
    rendezvousSessionTtl: opt.seconds({ flag: 'rendezvous-session-ttl', key: 'session-ttl', arg: 'SEC', help: 'how long a login session token lasts (POST /api/v1/rendezvous/login); the signaling connection opened with it stays open after', default: 3600 }),
    rendezvousPing: opt.seconds({ flag: 'rendezvous-ping', key: 'ping-interval', arg: 'SEC', help: 'seconds between WebSocket pings on a signaling connection; one still unanswered at the next ping ends the connection (a device goes offline, its sessions end with device_offline), so a dead peer is noticed within twice this', default: 20 }),
    allowInsecureLogin: opt.boolean({ flag: 'allow-insecure-login', key: 'allow-insecure-login', help: 'accept password logins over plain HTTP from addresses other than loopback (labs only: serve the API over TLS with --api-tls-cert/--api-tls-key instead)' }),
    loginRate: opt.count({ flag: 'login-rate', key: 'login-rate', arg: 'N', help: 'failed logins per minute per source address (a burst of N first); beyond it logins from there get 429', default: 10 }),
    turnRelayPorts: opt.string({ flag: 'turn-relay-ports', key: 'relay-ports', arg: 'LOW-HIGH', help: 'UDP ports relayed addresses are taken from (e.g. 49152-65535, for a firewall rule); default: the kernel\'s ephemeral ports', default: '' }),
  }),
  validate(s) {
    if (s.rendezvousPing < 1 || s.rendezvousPing > 3600) throw new SettingsError(`--rendezvous-ping must be 1-3600 seconds, got ${s.rendezvousPing}`);
    const tlsFiles = s.turnTlsCert !== '' || s.turnTlsKey !== '';
    if (s.turn === '') {
      if (s.turnTls !== '' || tlsFiles) throw new SettingsError('--turn-tls, --turn-tls-cert and --turn-tls-key need --turn [HOST:]PORT (STUN/TURN on UDP and TCP)');
      return;
    }
    if (s.turnTls !== '') {
      parseListenAddress(s.turnTls, '--turn-tls');
      if (s.turnTlsCert === '' || s.turnTlsKey === '') throw new SettingsError('--turn-tls needs both --turn-tls-cert FILE and --turn-tls-key FILE (PEM)');
    } else if (tlsFiles) throw new SettingsError('--turn-tls-cert and --turn-tls-key need --turn-tls [HOST:]PORT');
    const at = parseListenAddress(s.turn, '--turn');
    const relays = relayIpsOf(s.turnRelayIp, at.host, s.turn);
    CidrList.parse(s.turnAllowPeers, '--turn-allow-peers');
    CidrList.parse(s.turnDenyPeers, '--turn-deny-peers');
    parseBandwidth(s.turnBandwidth, '--turn-bandwidth');
    if (s.turnExternalIp !== '') {
      if (!parseIp(s.turnExternalIp) || isUnspecified(s.turnExternalIp)) throw new SettingsError(`--turn-external-ip: "${s.turnExternalIp}" is not a unicast IP address`);
      if (relays[s.turnExternalIp.includes(':') ? 6 : 4] === undefined) throw new SettingsError(`--turn-external-ip ${s.turnExternalIp}: no relay address of its family (--turn-relay-ip)`);
    }
    parseRelayPorts(s.turnRelayPorts);
  },
});

/**
 * The relay addresses by family: --turn-relay-ip (one per family at most), or the --turn host.
 * Throws SettingsError naming what is wrong.
 */
export function relayIpsOf(list: readonly string[], turnHost: string, turn: string): Partial<Record<4 | 6, string>> {
  const out: Partial<Record<4 | 6, string>> = {};
  if (list.length === 0) {
    if (!parseIp(turnHost) || isUnspecified(turnHost)) throw new SettingsError(`--turn ${turn}: give --turn-relay-ip ADDR, the address relayed transport addresses are allocated on`);
    out[turnHost.includes(':') ? 6 : 4] = turnHost;
    return out;
  }
  for (const ip of list) {
    if (!parseIp(ip) || isUnspecified(ip)) throw new SettingsError(`--turn-relay-ip: "${ip}" is not a unicast IP address`);
    const f = ip.includes(':') ? 6 : 4;
    if (out[f] !== undefined) throw new SettingsError(`--turn-relay-ip: one IPv${f} address at most (${out[f]} and ${ip})`);
    out[f] = ip;
  }
  return out;
}

/** --turn-relay-ports LOW-HIGH: null when unset. */
export function parseRelayPorts(text: string): { low: number; high: number } | null {
  if (text === '') return null;
  const m = /^(\d{1,5})-(\d{1,5})$/.exec(text.trim());
  const low = m ? Number(m[1]) : 0;
  const high = m ? Number(m[2]) : 0;
  if (!m || low < 1024 || high > 65535 || high - low < 15) throw new SettingsError(`--turn-relay-ports must be LOW-HIGH within 1024-65535 spanning at least 16 ports (e.g. 49152-65535), got "${text}"`);
  return { low, high };
}

export type RendezvousSettings = Static<typeof rendezvousSection.schema>;

// The SOCKS service's settings (YAML section `socks:`), and the refusal to become an open proxy.
import { Type, type Static } from '@sinclair/typebox';
import { parseListenAddress } from '../config/common.js';
import { opt, section } from '../config/schema.js';
import { CidrList, isLoopback, parseIp } from '../net/address.js';

export const socksSection = section({
  name: 'socks',
  title: 'SOCKS service',
  schema: Type.Object({
    socks: opt.string({ flag: 'socks', key: 'listen', arg: 'ADDR', help: 'SOCKS listen address ([::1]:1080 for IPv6)', default: '127.0.0.1:1080' }),
    socksAuth: opt.boolean({ flag: 'socks-auth', key: 'auth', help: 'require RFC 1929 username/password (users: edgeward user add)' }),
    socksAllow: opt.list({ flag: 'socks-allow', key: 'allow', arg: 'CIDR', help: 'clients allowed to use the proxy (repeatable; default: all who reach it)' }),
    socksDeny: opt.list({ flag: 'socks-deny', key: 'deny', arg: 'CIDR', help: 'destinations never connected to, by SOCKS or intercepted connections (repeatable)' }),
    allowOpenProxy: opt.boolean({ flag: 'allow-open-proxy', key: 'allow-open-proxy', help: 'allow a non-loopback SOCKS listener with neither --socks-auth nor --socks-allow' }),
    socksMptcp: opt.boolean({ flag: 'socks-mptcp', key: 'mptcp', help: 'accept MPTCP on the SOCKS listener (plain TCP clients still work): the concentrator end of hybrid access' }),
  }),
  validate(s) {
    parseListenAddress(s.socks, '--socks');
    CidrList.parse(s.socksAllow, '--socks-allow');
    CidrList.parse(s.socksDeny, '--socks-deny');
  },
});

export type SocksSettings = Static<typeof socksSection.schema>;

/** Refuses a SOCKS listener anyone could use, with the reason; null when the setup is safe. */
export function openProxyRefusal(s: SocksSettings): string | null {
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

// The interception service's settings (YAML section `intercept:`).
import { Type, type Static } from '@sinclair/typebox';
import { parseListenAddress } from '../config/common.js';
import { opt, section, SettingsError } from '../config/schema.js';
import { parseIp } from '../net/address.js';

export const interceptSection = section({
  name: 'intercept',
  title: 'Interception service',
  schema: Type.Object({
    intercept: opt.string({
      flag: 'intercept',
      key: 'listen',
      arg: '[HOST:]PORT',
      help: 'TPROXY listener for intercepted connections (IP_TRANSPARENT; IPv4 and IPv6 unless HOST is given); needs root',
      default: '',
    }),
    transparentSource: opt.boolean({ flag: 'transparent-source', help: 'intercepted connections keep the client address as source (replies must route back through this box)' }),
    firewall: opt.boolean({ flag: 'firewall', help: 'with --intercept: apply the TPROXY nftables rules on start, remove them on stop' }),
    interceptInterface: opt.list({ flag: 'intercept-interface', key: 'interface', arg: 'IFACE', help: 'with --firewall: intercept connections arriving on IFACE (repeatable)' }),
  }),
  validate(s) {
    if (s.intercept !== '') parseInterceptAddress(s.intercept);
    if (s.transparentSource && s.intercept === '') throw new SettingsError('--transparent-source needs --intercept');
    if (s.firewall && s.intercept === '') throw new SettingsError('--firewall needs --intercept PORT');
    if (s.firewall && s.interceptInterface.length === 0) throw new SettingsError('--firewall needs at least one --intercept-interface IFACE (the LAN side whose connections are intercepted)');
    if (!s.firewall && s.interceptInterface.length > 0) throw new SettingsError('--intercept-interface is only used with --firewall');
  },
});

export type InterceptSettings = Static<typeof interceptSection.schema>;

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

// What the kernel counts about the packets it handles, read from /proc and /sys of this network
// namespace: synproxy's handshakes, conntrack's table size, an interface's packets. Each reader
// returns null when the file is not there (the module is not loaded, the interface is gone).
import { readFileSync } from 'node:fs';

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** /proc/net/stat/synproxy summed over the CPUs: SYNs answered with a cookie, cookies that came back valid or not. */
export interface SynproxyStats {
  synReceived: number;
  cookieInvalid: number;
  cookieValid: number;
  cookieRetrans: number;
  connReopened: number;
}

const SYNPROXY_COLUMNS: Record<string, keyof SynproxyStats> = {
  syn_received: 'synReceived',
  cookie_invalid: 'cookieInvalid',
  cookie_valid: 'cookieValid',
  cookie_retrans: 'cookieRetrans',
  conn_reopened: 'connReopened',
};

/** Parses /proc/net/stat/synproxy (a header, then one line of hex numbers per CPU). */
export function parseSynproxyStats(text: string): SynproxyStats | null {
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  if (lines.length < 2) return null;
  const header = lines[0]!.trim().split(/\s+/);
  const out: SynproxyStats = { synReceived: 0, cookieInvalid: 0, cookieValid: 0, cookieRetrans: 0, connReopened: 0 };
  for (const line of lines.slice(1)) {
    const cells = line.trim().split(/\s+/);
    header.forEach((name, i) => {
      const key = SYNPROXY_COLUMNS[name];
      const cell = cells[i];
      if (key && cell !== undefined && /^[0-9a-f]{1,16}$/i.test(cell)) out[key] += Number.parseInt(cell, 16);
    });
  }
  return out;
}

export function readSynproxyStats(): SynproxyStats | null {
  const text = readText('/proc/net/stat/synproxy');
  return text === null ? null : parseSynproxyStats(text);
}

/** Entries in this namespace's conntrack table. */
export function readConntrackCount(): number | null {
  const text = readText('/proc/sys/net/netfilter/nf_conntrack_count');
  const n = text === null ? NaN : Number(text.trim());
  return Number.isFinite(n) ? n : null;
}

export interface InterfacePackets {
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
}

const IFNAME = /^[A-Za-z0-9_.:-]{1,15}$/;

/** An interface's packet counters (/sys/class/net/IF/statistics). */
export function readInterfacePackets(ifname: string): InterfacePackets | null {
  if (!IFNAME.test(ifname)) return null;
  const read = (name: string): number | null => {
    const t = readText(`/sys/class/net/${ifname}/statistics/${name}`);
    const n = t === null ? NaN : Number(t.trim());
    return Number.isFinite(n) ? n : null;
  };
  const rx = read('rx_packets');
  const tx = read('tx_packets');
  const dropped = read('rx_dropped');
  return rx === null || tx === null ? null : { rxPackets: rx, txPackets: tx, rxDropped: dropped ?? 0 };
}

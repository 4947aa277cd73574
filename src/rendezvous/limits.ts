// The parser of --turn-bandwidth (the TURN server's bandwidth per allocation and direction).
import { SettingsError } from '../config/schema.js';

/**
 * Parses a bandwidth as tc writes it: "0" (no limit), or a number of bits per second with an
 * optional unit: "800kbit", "4mbit", "1gbit", "1000000" (bit). Returns bytes per second.
 */
export function parseBandwidth(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit)?$/i.exec(text.trim());
  if (!m) throw new SettingsError(`${what} must be a rate such as 4mbit, 800kbit or 0 (no limit), got "${text}"`);
  const unit = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9 }[(m[2] ?? 'bit').toLowerCase() as 'bit'];
  const bytes = (Number(m[1]) * unit) / 8;
  if (bytes !== 0 && bytes < 1000) throw new SettingsError(`${what}: ${text} is below 8kbit, too little to relay anything`);
  return Math.round(bytes);
}

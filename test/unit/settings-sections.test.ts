// YAML settings written in sections (socks:, intercept:, transport:, gateway:) with short keys,
// alone or mixed with the flat keys.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { readConfigFile, resolveSettings, SettingsError } from '../../src/gateway/settings.js';

const dir = mkdtempSync(join(tmpdir(), 'edgeward-sections-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string): string => {
  const p = join(dir, `s-${n++}.yaml`);
  writeFileSync(p, text);
  return p;
};

describe('sectioned YAML', () => {
  it('reads each section with its short keys into the same settings as the flat keys', () => {
    const sectioned = readConfigFile(
      file(['socks:', '  listen: 0.0.0.0:1080', '  auth: true', '  allow: [192.168.1.0/24]', 'transport:', '  idle-timeout: 600', 'intercept:', '  listen: 15001', '  firewall: true', '  interface: lan0', 'gateway:', '  workers: 2', ''].join('\n')),
    );
    const flat = readConfigFile(
      file(['socks: 0.0.0.0:1080', 'socks-auth: true', 'socks-allow: [192.168.1.0/24]', 'idle-timeout: 600', 'intercept: "15001"', 'firewall: true', 'intercept-interface: lan0', 'workers: "2"', ''].join('\n')),
    );
    assert.deepEqual(sectioned, flat);
    const s = resolveSettings(sectioned, {});
    assert.equal(s.socks, '0.0.0.0:1080');
    assert.deepEqual(s.interceptInterface, ['lan0']);
  });

  it('takes the flag names inside a section too, and mixes with flat keys', () => {
    assert.deepEqual(readConfigFile(file('socks:\n  socks-auth: true\nidle-timeout: 5\n')), { socksAuth: true, idleTimeout: 5 });
  });

  it('names an unknown key with its section, and lists the section keys', () => {
    assert.throws(() => readConfigFile(file('socks:\n  auht: true\n')), (e: unknown) => e instanceof SettingsError && /unknown setting "socks\.auht"/.test(e.message) && /known in socks: listen, auth, allow/.test(e.message));
  });

  it('names the key of a wrong type with its section', () => {
    assert.throws(() => readConfigFile(file('transport:\n  max-connections: many\n')), /transport\.max-connections must be a positive integer/);
  });

  it('refuses a setting given both flat and in its section', () => {
    assert.throws(() => readConfigFile(file('socks-auth: true\nsocks:\n  auth: false\n')), /set twice/);
  });

  it('still reads `socks: ADDR` (a string, not a mapping) as the flat listen address', () => {
    assert.deepEqual(readConfigFile(file('socks: 127.0.0.1:1081\n')), { socks: '127.0.0.1:1081' });
  });
});

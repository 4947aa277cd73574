import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DEFAULTS, openProxyRefusal, parseListenAddress, readConfigFile, resolveSettings, SettingsError, type Settings } from '../../src/gateway/settings.js';

/** Asserts that fn throws a SettingsError whose message matches every pattern. */
function throwsSettings(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SettingsError, `expected a SettingsError, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

/** Asserts that fn throws an Error whose message matches every pattern (what `edgeward start` prints). */
function throwsMessage(fn: () => unknown, ...patterns: RegExp[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Error, `expected an Error, got ${String(e)}`);
    for (const p of patterns) assert.match(e.message, p);
    return true;
  });
}

describe('parseListenAddress', () => {
  it('reads a bare port as loopback', () => {
    assert.deepEqual(parseListenAddress('1080', '--socks'), { host: '127.0.0.1', port: 1080 });
  });

  it('reads host:port and [v6]:port', () => {
    assert.deepEqual(parseListenAddress('0.0.0.0:1080', '--socks'), { host: '0.0.0.0', port: 1080 });
    assert.deepEqual(parseListenAddress('localhost:8080', '--api'), { host: 'localhost', port: 8080 });
    assert.deepEqual(parseListenAddress('[::1]:1080', '--socks'), { host: '::1', port: 1080 });
    assert.deepEqual(parseListenAddress('[::]:0', '--socks'), { host: '::', port: 0 });
    assert.deepEqual(parseListenAddress('127.0.0.1:65535', '--socks'), { host: '127.0.0.1', port: 65535 });
  });

  it('refuses a bad port, naming the setting and the port', () => {
    for (const [text, port] of [['65536', '65536'], ['127.0.0.1:99999', '99999'], ['host:', ''], ['host:http', 'http'], ['1080x', '1080x'], ['127.0.0.1:-1', '-1']]) {
      throwsSettings(() => parseListenAddress(text!, '--socks'), /^--socks: /, new RegExp(`port "${port}" must be 0\\.\\.65535`));
    }
  });

  it('asks for brackets around an IPv6 address', () => {
    throwsSettings(() => parseListenAddress('::1:1080', '--api'), /^--api: /, /brackets/, /\[::1\]:1080/);
  });

  it('refuses a bracketed host that is not IPv6 and a missing host', () => {
    throwsSettings(() => parseListenAddress('[example.com]:1080', '--socks'), /"example\.com" is not an IPv6 address/);
    throwsSettings(() => parseListenAddress(':1080', '--socks'), /missing host/);
  });
});

describe('readConfigFile', () => {
  let dir = '';
  let n = 0;
  const file = (text: string): string => {
    const p = join(dir, `edgeward-${n++}.yaml`);
    writeFileSync(p, text);
    return p;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'edgeward-settings-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads the README example, keys being the flag names', () => {
    const p = file('socks: 0.0.0.0:1080\nsocks-allow: [192.168.1.0/24]\nsocks-deny: [10.0.0.0/8]\nidle-timeout: 600\n');
    assert.deepEqual(readConfigFile(p), { socks: '0.0.0.0:1080', socksAllow: ['192.168.1.0/24'], socksDeny: ['10.0.0.0/8'], idleTimeout: 600 });
  });

  it('reads booleans, counts, seconds, strings and block lists', () => {
    const p = file(
      [
        'socks-auth: true',
        'allow-open-proxy: false',
        'max-connections: 500',
        'handshake-timeout: 2.5',
        'log-level: debug',
        'log-format: json',
        'upstream: socks5://gw.example:1080',
        'socks-allow:',
        '  - 10.0.0.0/8',
        '  - 2001:db8::/32',
        '',
      ].join('\n'),
    );
    assert.deepEqual(readConfigFile(p), {
      socksAuth: true,
      allowOpenProxy: false,
      maxConnections: 500,
      handshakeTimeout: 2.5,
      logLevel: 'debug',
      logFormat: 'json',
      upstream: 'socks5://gw.example:1080',
      socksAllow: ['10.0.0.0/8', '2001:db8::/32'],
    });
  });

  it('takes a single string where a list is expected', () => {
    assert.deepEqual(readConfigFile(file('socks-allow: 192.168.1.0/24\n')), { socksAllow: ['192.168.1.0/24'] });
  });

  it('takes a number where a string is expected (a bare port) and a numeric string for seconds', () => {
    assert.deepEqual(readConfigFile(file('socks: 1080\nidle-timeout: "600"\n')), { socks: '1080', idleTimeout: 600 });
  });

  it('reads an empty file as no settings', () => {
    assert.deepEqual(readConfigFile(file('')), {});
    assert.deepEqual(readConfigFile(file('# only a comment\n')), {});
  });

  it('refuses an unknown key, naming it and the file', () => {
    const p = file('socks: 127.0.0.1:1080\nsock-allow: [10.0.0.0/8]\n');
    throwsSettings(() => readConfigFile(p), /unknown setting "sock-allow"/, new RegExp(p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), /known: .*socks-allow/);
  });

  it('refuses a wrong type, naming the key', () => {
    const cases: Array<[string, RegExp]> = [
      ['socks-auth: "yes"\n', /socks-auth must be true or false/],
      ['socks-auth: 1\n', /socks-auth must be true or false/],
      ['socks: [127.0.0.1, 1080]\n', /socks must be a string/],
      ['socks-allow: [10.0.0.0/8, 7]\n', /socks-allow must be a list of strings/],
      ['socks-deny: {a: 1}\n', /socks-deny must be a list of strings/],
      ['idle-timeout: -5\n', /idle-timeout must be a number of seconds >= 0, got -5/],
      ['idle-timeout: soon\n', /idle-timeout must be a number of seconds/],
      ['max-connections: 0\n', /max-connections must be a positive integer/],
      ['max-connections: 1.5\n', /max-connections must be a positive integer/],
    ];
    for (const [yaml, re] of cases) throwsSettings(() => readConfigFile(file(yaml)), re);
  });

  it('refuses a file that is not a mapping, is not YAML, or does not exist, naming the file', () => {
    throwsSettings(() => readConfigFile(file('- socks\n- api\n')), /--config .*: expected a mapping/);
    throwsSettings(() => readConfigFile(file('socks: [unclosed\n')), /^--config .*edgeward-\d+\.yaml: /);
    throwsSettings(() => readConfigFile(join(dir, 'missing.yaml')), /^--config .*missing\.yaml: /);
  });
});

describe('resolveSettings', () => {
  it('gives the embedded defaults when neither file nor flags say anything', () => {
    const s = resolveSettings({}, {});
    assert.deepEqual(s, DEFAULTS);
    assert.equal(s.socks, '127.0.0.1:1080');
    assert.equal(s.api, '127.0.0.1:8080');
  });

  it('takes flags over the file over the defaults, setting by setting', () => {
    const file: Partial<Settings> = { socks: '0.0.0.0:1081', idleTimeout: 600, socksAuth: true, socksAllow: ['10.0.0.0/8'] };
    const flags: Partial<Settings> = { socks: '127.0.0.1:2000', socksAllow: ['192.168.0.0/16'], logLevel: 'warn' };
    const s = resolveSettings(file, flags);
    assert.equal(s.socks, '127.0.0.1:2000'); // flag beats file
    assert.deepEqual(s.socksAllow, ['192.168.0.0/16']); // a flag list replaces the file's list
    assert.equal(s.logLevel, 'warn'); // flag beats default
    assert.equal(s.idleTimeout, 600); // file beats default
    assert.equal(s.socksAuth, true);
    assert.equal(s.api, DEFAULTS.api); // default
    assert.equal(s.maxConnections, DEFAULTS.maxConnections);
  });

  it('resolves a real file together with flags', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'edgeward-settings-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const p = join(dir, 'edgeward.yaml');
    writeFileSync(p, 'socks: 0.0.0.0:1080\nsocks-allow: 192.168.1.0/24\nidle-timeout: 600\nshutdown-grace: 3\n');
    const s = resolveSettings(readConfigFile(p), { idleTimeout: 30 });
    assert.equal(s.socks, '0.0.0.0:1080');
    assert.deepEqual(s.socksAllow, ['192.168.1.0/24']);
    assert.equal(s.idleTimeout, 30);
    assert.equal(s.shutdownGrace, 3);
    assert.equal(openProxyRefusal(s), null);
  });

  it('checks the merged result, naming the bad setting', () => {
    throwsSettings(() => resolveSettings({ socks: '::1:1080' }, {}), /^--socks: /);
    throwsSettings(() => resolveSettings({}, { api: '127.0.0.1:70000' }), /^--api: /);
    throwsMessage(() => resolveSettings({ socksAllow: ['10.0.0.0/8', 'lan'] }, {}), /^--socks-allow: .*"lan"/);
    throwsMessage(() => resolveSettings({ socksDeny: ['nope'] }, {}), /^--socks-deny: .*"nope"/);
    throwsSettings(() => resolveSettings({}, { logLevel: 'verbose' as Settings['logLevel'] }), /log-level .*"verbose"/);
    throwsSettings(() => resolveSettings({ logFormat: 'xml' as Settings['logFormat'] }, {}), /log-format .*"xml"/);
  });

  it('lets a valid flag repair an invalid file value', () => {
    assert.equal(resolveSettings({ socks: 'nonsense:port' }, { socks: '127.0.0.1:1090' }).socks, '127.0.0.1:1090');
  });
});

describe('openProxyRefusal', () => {
  const settings = (over: Partial<Settings>): Settings => ({ ...DEFAULTS, ...over });

  it('allows loopback listeners without auth or allow list', () => {
    for (const socks of ['127.0.0.1:1080', '1080', '127.8.9.10:1080', '[::1]:1080', 'localhost:1080', '[::ffff:127.0.0.1]:1080']) {
      assert.equal(openProxyRefusal(settings({ socks })), null, socks);
    }
  });

  it('refuses a non-loopback listener with neither auth nor allow list, and says it would be an open proxy', () => {
    for (const socks of ['0.0.0.0:1080', '[::]:1080', '192.0.2.1:1080', 'gateway.example:1080']) {
      const why = openProxyRefusal(settings({ socks }));
      assert.ok(why !== null, socks);
      assert.match(why, /open proxy/);
      assert.ok(why.includes(socks), `the refusal should name ${socks}`);
      for (const fix of ['--socks-auth', '--socks-allow', '--allow-open-proxy']) assert.ok(why.includes(fix), `the refusal should mention ${fix}`);
    }
  });

  it('allows it with --socks-auth, --socks-allow or --allow-open-proxy', () => {
    assert.equal(openProxyRefusal(settings({ socks: '0.0.0.0:1080', socksAuth: true })), null);
    assert.equal(openProxyRefusal(settings({ socks: '0.0.0.0:1080', socksAllow: ['192.168.1.0/24'] })), null);
    assert.equal(openProxyRefusal(settings({ socks: '0.0.0.0:1080', allowOpenProxy: true })), null);
  });

  it('is not satisfied by a deny list alone', () => {
    assert.notEqual(openProxyRefusal(settings({ socks: '0.0.0.0:1080', socksDeny: ['10.0.0.0/8'] })), null);
  });
});

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../../src/api/errors.js';
import { UserError, validateCredentials } from '../../src/auth/users.js';
import { ApiReplyError, ApiUnreachable, ClientSetupError } from '../../src/cli/api-client.js';
import { EdgewardError } from '../../src/core/errors.js';
import { CidrList, CidrListError, parseCidr } from '../../src/net/address.js';
import { normalizeMatch } from '../../src/policy/matcher.js';
import { PolicyError, validatePolicy } from '../../src/policy/service.js';
import { parseUpstream } from '../../src/policy/via.js';
import { StoreError } from '../../src/store/store.js';

describe('EdgewardError', () => {
  it('is the base of every service error, with a stable code and the subclass name', () => {
    const errors: Array<[EdgewardError, string, string]> = [
      [new PolicyError('not_found', 'id', 'no policy with id 7'), 'PolicyError', 'not_found'],
      [new UserError('conflict', 'username', 'taken'), 'UserError', 'conflict'],
      [new StoreError('corrupt', 'bad row'), 'StoreError', 'corrupt'],
      [new ApiError(400, 'invalid_json', 'body', 'body is empty'), 'ApiError', 'invalid_json'],
      [new ApiReplyError(409, 'conflict', 'body.match', 'same match'), 'ApiReplyError', 'conflict'],
      [new ApiUnreachable('http://127.0.0.1:1', 'ECONNREFUSED'), 'ApiUnreachable', 'unreachable'],
      [new ClientSetupError('no API token'), 'ClientSetupError', 'client_setup'],
    ];
    for (const [e, name, code] of errors) {
      assert.ok(e instanceof EdgewardError, name);
      assert.ok(e instanceof Error, name);
      assert.equal(e.name, name);
      assert.equal(e.code, code);
      assert.match(String(e), new RegExp(`^${name}: `));
    }
  });

  it('keeps a cause', () => {
    const cause = new Error('disk full');
    assert.equal(new EdgewardError('io', 'cannot write', { cause }).cause, cause);
  });
});

describe('typed results', () => {
  it('parseCidr: a code and a message, no field (the caller names it)', () => {
    assert.deepEqual(parseCidr('example.com/8'), { ok: false, error: { code: 'invalid_address', field: null, message: '"example.com" is not an IPv4 or IPv6 address' } });
    const p = parseCidr('10.0.0.0/33');
    assert.ok(!p.ok);
    assert.equal(p.error.code, 'invalid_prefix');
    const v = parseCidr('10.1.2.3/8');
    assert.ok(v.ok);
    assert.equal(v.value.prefix, 8);
  });

  it('CidrList.parse throws a CidrListError with the setting, the entry and the code as data', () => {
    assert.throws(
      () => CidrList.parse(['10.0.0.0/8', '192.168.1.0/33'], '--socks-deny'),
      (e: unknown) => e instanceof CidrListError && e.code === 'invalid_prefix' && e.field === '--socks-deny' && e.entry === '192.168.1.0/33',
    );
  });

  it('normalizeMatch: the field at fault as data', () => {
    const cases: Array<[Parameters<typeof normalizeMatch>[0], string]> = [
      [{ host: 'example.com', port: 0 }, 'match.port'],
      [{ cidr: '10.0.0.0/33' }, 'match.cidr'],
      [{ host: 'bad host' }, 'match.host'],
      [{ host: '*.' }, 'match.host'],
      [{}, 'match'],
      [{ host: 'example.com', cidr: '10.0.0.0/8' }, 'match'],
    ];
    for (const [m, field] of cases) {
      const r = normalizeMatch(m);
      assert.ok(!r.ok, JSON.stringify(m));
      assert.equal(r.error.code, 'invalid');
      assert.equal(r.error.field, field, JSON.stringify(m));
      assert.ok(r.error.message.startsWith(field), r.error.message);
    }
  });

  it('parseUpstream: the flag or field it came from as data, and in the message', () => {
    const r = parseUpstream('http://proxy:1080', '--upstream');
    assert.ok(!r.ok);
    assert.deepEqual(r.error, { code: 'invalid', field: '--upstream', message: '--upstream: scheme "http" is not supported; expected socks5://[user:pass@]host:port' });
    const v = parseUpstream('socks5://u:p@proxy:1080', 'via');
    assert.ok(v.ok);
    assert.equal(v.value.display, 'socks5://u@proxy:1080');
  });

  it('parseUpstream: malformed percent-encoding in the credentials is an error, not a throw', () => {
    for (const url of ['socks5://%zz:pw@proxy:1080', 'socks5://user:%E0%A4%A@proxy:1080']) {
      const r = parseUpstream(url, 'via');
      assert.ok(!r.ok, url);
      assert.equal(r.error.field, 'via');
      assert.match(r.error.message, /^via: .*percent-encoding/);
    }
    const v = parseUpstream('socks5://us%40er:p%3Ass@proxy:1080', 'via');
    assert.ok(v.ok);
    assert.deepEqual([v.value.username, v.value.password], ['us@er', 'p:ss']);
  });

  it('validatePolicy: a PolicyError whose field comes from the failing check, not from its message', () => {
    const cases: Array<[Parameters<typeof validatePolicy>[0], string, RegExp]> = [
      [{ match: { host: 'example.com', port: 70000 }, transport: {} }, 'match.port', /^match\.port must be/],
      [{ match: { cidr: '10.0.0.0/33' }, transport: {} }, 'match.cidr', /^match\.cidr: prefix length/],
      [{ match: {}, transport: {} }, 'match', /^match needs exactly one/],
      [{ match: { host: 'example.com' }, transport: { keepAlive: { idle: 0, interval: 1, count: 1 } } }, 'transport.keepAlive.idle', /^transport\.keepAlive\.idle must be/],
      [{ match: { host: 'example.com' }, transport: {}, via: 'socks5://proxy' }, 'via', /^via: missing port .* \(or "direct"\)$/],
    ];
    for (const [input, field, message] of cases) {
      const r = validatePolicy(input);
      assert.ok(!r.ok, JSON.stringify(input));
      assert.ok(r.error instanceof PolicyError);
      assert.equal(r.error.code, 'invalid');
      assert.equal(r.error.field, field);
      assert.match(r.error.message, message);
    }
    const ok = validatePolicy({ match: { host: 'Example.COM.' }, transport: {}, via: 'direct' });
    assert.deepEqual(ok, { ok: true, value: 'host:example.com:*' });
  });

  it('validateCredentials still throws a UserError naming the field', () => {
    assert.throws(() => validateCredentials('bad name', 'pw'), (e: unknown) => e instanceof UserError && e.code === 'invalid' && e.field === 'username');
  });
});

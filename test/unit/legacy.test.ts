import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { looksLegacy, parseLegacyFile, translateLegacy } from '../../src/policy/legacy.js';

describe('translateLegacy', () => {
  it('turns enable "1" with an IP into an MPTCP policy for that host', () => {
    const t = translateLegacy({ enable: '1', ip: '192.0.2.7' });
    assert.deepEqual(t, { ok: true, input: { match: { host: '192.0.2.7' }, transport: { mptcp: true } }, notes: [] });
  });

  it('turns enable "0" (and the number 0) into mptcp false', () => {
    for (const enable of ['0', 0]) {
      const t = translateLegacy({ enable, ip: 'example.com' });
      assert.ok(t.ok);
      assert.deepEqual(t.input, { match: { host: 'example.com' }, transport: { mptcp: false } });
    }
  });

  it('puts an ip with "/" into match.cidr', () => {
    const t = translateLegacy({ enable: 1, ip: '10.0.0.0/8' });
    assert.ok(t.ok);
    assert.deepEqual(t.input.match, { cidr: '10.0.0.0/8' });
  });

  it('maps the out-of-tree path managers "default" and "fullmesh" to upstream "kernel", with a note', () => {
    const d = translateLegacy({ enable: '1', ip: '192.0.2.1', path_manager: 'default', scheduler: 'default' });
    assert.ok(d.ok);
    assert.deepEqual(d.input.transport, { mptcp: true, scheduler: 'default', pathManager: 'kernel' });
    assert.match(d.notes.join('\n'), /in-kernel path manager/);

    const f = translateLegacy({ enable: '1', ip: '192.0.2.1', path_manager: 'fullmesh' });
    assert.ok(f.ok);
    assert.equal(f.input.transport.pathManager, 'kernel');
    assert.match(f.notes.join('\n'), /fullmesh is a flag of an endpoint/);
  });

  it('passes kernel and userspace through without a note', () => {
    for (const pm of ['kernel', 'userspace']) {
      const t = translateLegacy({ enable: '1', ip: '192.0.2.1', path_manager: pm });
      assert.ok(t.ok);
      assert.equal(t.input.transport.pathManager, pm);
      assert.deepEqual(t.notes, []);
    }
  });

  it('maps ndiffports to edgeward\'s own ndiffports path manager, and says so', () => {
    const t = translateLegacy({ enable: '1', ip: '192.0.2.1', path_manager: 'ndiffports' });
    assert.ok(t.ok);
    assert.deepEqual(t.input.transport, { mptcp: true, pathManager: 'ndiffports' });
    assert.match(t.notes.join('\n'), /edgeward's own path manager .* 2 subflows/);
  });

  it('refuses binder: a stock kernel has no loose source routing for subflows', () => {
    const t = translateLegacy({ enable: '1', ip: '192.0.2.1', path_manager: 'binder' });
    assert.ok(!t.ok);
    assert.equal(t.error.code, 'unsupported');
    assert.equal(t.error.field, 'path_manager');
    assert.match(t.error.message, /"binder" .* cannot run on a stock kernel: upstream Linux has no loose source routing/);
  });

  it('passes an unknown scheduler through (the policy service checks it against the kernel)', () => {
    const t = translateLegacy({ enable: '1', ip: '192.0.2.1', scheduler: 'roundrobin' });
    assert.ok(t.ok);
    assert.equal(t.input.transport.scheduler, 'roundrobin');
  });

  it('drops scheduler and path_manager when MPTCP is off, and says so', () => {
    const t = translateLegacy({ enable: '0', ip: '192.0.2.1', scheduler: 'redundant', path_manager: 'ndiffports' });
    assert.ok(t.ok);
    assert.deepEqual(t.input.transport, { mptcp: false });
    assert.match(t.notes.join('\n'), /ignored: MPTCP is off/);
  });

  it('rejects a bad enable value and a bad ip, naming the field', () => {
    const e = translateLegacy({ enable: '2', ip: '192.0.2.1' });
    assert.ok(!e.ok);
    assert.equal(e.error.field, 'enable');
    assert.match(e.error.message, /enable must be 0 or 1/);

    for (const ip of ['not a host', '10.0.0.0/99', '']) {
      const b = translateLegacy({ enable: '1', ip });
      assert.ok(!b.ok, ip);
      assert.equal(b.error.field, 'ip');
    }
  });
});

describe('looksLegacy', () => {
  it('recognizes the legacy body by "ip" or "enable"', () => {
    assert.equal(looksLegacy({ ip: 'x' }), true);
    assert.equal(looksLegacy({ enable: '1' }), true);
    assert.equal(looksLegacy({ match: {}, transport: {} }), false);
    assert.equal(looksLegacy([]), false);
    assert.equal(looksLegacy(null), false);
  });
});

describe('parseLegacyFile', () => {
  it('reads every line with its line number, tolerating CRLF, spaces, blank lines and a missing trailing comma', () => {
    const text = ['192.0.2.1,1,default,fullmesh,', '', '  example.com , 0 , , ,  ', '10.0.0.0/8,1,default,kernel', '.', ''].join('\r\n');
    const r = parseLegacyFile(text);
    assert.deepEqual(r.errors, []);
    assert.deepEqual(
      r.policies.map((p) => [p.line, p.input]),
      [
        [1, { match: { host: '192.0.2.1' }, transport: { mptcp: true, scheduler: 'default', pathManager: 'kernel' } }],
        [3, { match: { host: 'example.com' }, transport: { mptcp: false } }],
        [4, { match: { cidr: '10.0.0.0/8' }, transport: { mptcp: true, scheduler: 'default', pathManager: 'kernel' } }],
      ],
    );
    assert.match(r.policies[0]!.notes.join('\n'), /fullmesh/);
  });

  it('says the file looks truncated when the closing "." is missing', () => {
    const r = parseLegacyFile('192.0.2.1,1,default,default,\n192.0.2.2,1,default,default,\n');
    assert.deepEqual(r.errors, [{ line: 2, message: 'no closing "." line: the file looks truncated' }]);
  });

  it('treats an empty file as truncated too', () => {
    const r = parseLegacyFile('');
    assert.equal(r.errors.length, 1);
    assert.match(r.errors[0]!.message, /truncated/);
  });

  it('accepts a file with only the closing "."', () => {
    assert.deepEqual(parseLegacyFile('.\n'), { policies: [], errors: [] });
  });

  it('reports content after the closing "." with its line number; blank lines after it are fine', () => {
    const r = parseLegacyFile('192.0.2.1,1,default,default,\n.\n\n192.0.2.9,1,default,default,\n');
    assert.deepEqual(r.errors, [{ line: 4, message: 'unexpected content after the closing "." on line 2' }]);
  });

  it('reports every bad line, each with its number and what is wrong', () => {
    const text = [
      '192.0.2.1,1,default,default,', // 1 ok
      '192.0.2.2,1,default', // 2: 3 fields
      '192.0.2.3,yes,default,default,', // 3: bad enable
      'bad host!,1,default,default,', // 4: bad ip
      '192.0.2.5,1,default,binder,', // 5: cannot run on a stock kernel
      '192.0.2.6,1,default,default,extra,', // 6: too many fields
      '.',
    ].join('\n');
    const r = parseLegacyFile(text);
    assert.deepEqual(
      r.errors.map((e) => e.line),
      [2, 3, 4, 5, 6],
    );
    assert.match(r.errors[0]!.message, /expected 4 comma-separated fields .* found 3/);
    assert.match(r.errors[1]!.message, /enable must be 0 or 1, not "yes"/);
    assert.match(r.errors[2]!.message, /ip "bad host!"/);
    assert.match(r.errors[3]!.message, /binder/);
    assert.match(r.errors[4]!.message, /found 5/);
    assert.deepEqual(
      r.policies.map((p) => p.line),
      [1],
    );
  });

  it('handles IPv6 addresses (colons are not separators)', () => {
    const r = parseLegacyFile('2001:db8::1,1,default,kernel,\n2001:db8::/32,0,,,\n.\n');
    assert.deepEqual(r.errors, []);
    assert.deepEqual(r.policies[0]!.input.match, { host: '2001:db8::1' });
    assert.deepEqual(r.policies[1]!.input.match, { cidr: '2001:db8::/32' });
  });
});

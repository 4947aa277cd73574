// TURN's nonces and REST credentials, as the README states them: a nonce is good for 600 s and only
// for the client address it was issued to; a REST username past its expiry, or one that is not
// "EXPIRY:USER", gets no key; every active secret yields a key, so secrets can rotate.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { longTermKey } from '../../src/codec/stun.js';
import { NONCE_LIFETIME_S, Nonces, restCredential, restCredentialKeys } from '../../src/rendezvous/turn-auth.js';

describe('nonces', () => {
  it('are fresh for 600 s, then stale; another client\'s or a forged one is invalid', () => {
    let now = 1_700_000_000_000;
    const n = new Nonces(() => now);
    const nonce = n.issue('192.0.2.7|5000');
    assert.equal(NONCE_LIFETIME_S, 600);
    assert.equal(n.check(nonce, '192.0.2.7|5000'), 'ok');
    assert.equal(n.check(nonce, '192.0.2.8|5000'), 'invalid');
    assert.equal(n.check(`${nonce.slice(0, -1)}${nonce.endsWith('0') ? '1' : '0'}`, '192.0.2.7|5000'), 'invalid');
    assert.equal(n.check('not-a-nonce', '192.0.2.7|5000'), 'invalid');
    now += 599_000;
    assert.equal(n.check(nonce, '192.0.2.7|5000'), 'ok');
    now += 2_000;
    assert.equal(n.check(nonce, '192.0.2.7|5000'), 'stale');
  });
});

describe('TURN REST credentials', () => {
  const now = 1_700_000_000_000;
  it('give one key per active secret, the one the client used among them', () => {
    const c = restCredential('alice', 'new-secret', 300, now);
    assert.equal(c.username, `${now / 1000 + 300}:alice`);
    assert.equal(c.password, createHmac('sha1', 'new-secret').update(c.username).digest('base64'));
    const r = restCredentialKeys(c.username, 'edgeward', ['new-secret', 'old-secret'], now);
    assert.ok(r.ok);
    assert.equal(r.user, 'alice');
    assert.equal(r.keys.length, 2);
    assert.deepEqual(r.keys[0], longTermKey(c.username, 'edgeward', c.password));
  });

  it('refuse an expired username, a malformed one, and any when no secret is set', () => {
    assert.deepEqual(restCredentialKeys(`${now / 1000 - 1}:alice`, 'edgeward', ['s'], now), { ok: false, why: 'expired' });
    assert.deepEqual(restCredentialKeys('alice', 'edgeward', ['s'], now), { ok: false, why: 'malformed' });
    assert.deepEqual(restCredentialKeys(`${now / 1000 + 60}:alice`, 'edgeward', [], now), { ok: false, why: 'no_secret' });
  });
});

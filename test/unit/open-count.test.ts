// --max-connections bookkeeping (net/open-count.ts): one count shared by every thread's listener.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OpenCount } from '../../src/net/open-count.js';

describe('OpenCount', () => {
  it('admits up to the limit across two listeners sharing the count, and a freed place is taken again', () => {
    const shared = new Int32Array(new SharedArrayBuffer(4));
    const a = new OpenCount(3, shared);
    const b = new OpenCount(3, shared);
    assert.deepEqual([a.tryOpen(), b.tryOpen(), a.tryOpen(), b.tryOpen()], [true, true, true, false], 'the 4th is refused, whichever listener took it');
    assert.equal(Atomics.load(shared, 0), 3, 'a refused client is not counted');
    a.closed();
    assert.equal(b.tryOpen(), true, 'the freed place goes to the other listener');
    assert.equal(a.tryOpen(), false);
  });

  it('keeps a client handed on counted until its release, and a second release frees nothing', () => {
    const c = new OpenCount(1);
    assert.equal(c.tryOpen(), true);
    const release = c.handOn();
    assert.equal(c.handedOn, 1);
    assert.equal(c.tryOpen(), false, 'still open after it left the listener');
    release();
    release();
    assert.equal(c.handedOn, 0);
    assert.equal(c.tryOpen(), true);
    assert.equal(c.tryOpen(), false, 'the double release did not make room for two');
  });
});

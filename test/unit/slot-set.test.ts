// The set the relays, a listener's clients and the registry's records live in (core/slot-set.ts):
// members come and go in any order and every one still there is found, once.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SlotSet } from '../../src/core/slot-set.js';

describe('SlotSet', () => {
  it('keeps exactly the members added and not deleted, through 5000 random adds and deletes', () => {
    const set = new SlotSet<{ slot: number; id: number }>();
    const all = Array.from({ length: 200 }, (_, id) => ({ slot: -1, id }));
    const model = new Set<number>();
    let seed = 7;
    const rand = (n: number): number => (seed = (seed * 1103515245 + 12345) % 2147483648) % n;
    for (let i = 0; i < 5000; i++) {
      const x = all[rand(all.length)]!;
      if (rand(2) === 0) {
        set.add(x);
        model.add(x.id);
      } else {
        assert.equal(set.delete(x), model.delete(x.id), `delete ${x.id} says whether it was there`);
      }
      assert.equal(set.size, model.size);
    }
    assert.deepEqual(set.values().map((x) => x.id).sort((a, b) => a - b), [...model].sort((a, b) => a - b));
    for (const x of all) assert.equal(set.has(x), model.has(x.id), `has ${x.id}`);
  });

  it('lets members be deleted while a copy of its values is walked', () => {
    const set = new SlotSet<{ slot: number }>();
    const xs = Array.from({ length: 10 }, () => ({ slot: -1 }));
    for (const x of xs) set.add(x);
    for (const x of set.values()) set.delete(x);
    assert.equal(set.size, 0);
    assert.ok(xs.every((x) => x.slot === -1));
  });
});

// The deadlines of handshakes and connects in progress (core/deadline-list.ts): one timer for
// many, in order, with the ones disarmed (handshake done, connected) never firing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeadlineItem, DeadlineList } from '../../src/core/deadline-list.js';

class Item extends DeadlineItem {
  constructor(
    readonly name: string,
    private readonly fired: { name: string; late: number }[],
  ) {
    super();
  }
  override onDeadline(): void {
    this.fired.push({ name: this.name, late: Date.now() - this.deadlineAt });
  }
}

describe('DeadlineList', () => {
  it('fires each armed item once, at or after its own deadline and in deadline order, whatever order they were armed in; a disarmed one never fires', async () => {
    const fired: { name: string; late: number }[] = [];
    const list = new DeadlineList();
    const a = new Item('a', fired);
    const b = new Item('b', fired);
    const c = new Item('c', fired);
    const gone = new Item('gone', fired);
    const at = Date.now();
    list.arm(a, 120, at);
    list.arm(b, 30, at); // earlier than the timer already set: the timer moves
    list.arm(gone, 60, at);
    list.arm(c, 90, at);
    list.disarm(gone);
    list.disarm(gone); // twice is harmless
    assert.equal(list.size, 3);
    await sleep(200);
    assert.deepEqual(fired.map((f) => f.name), ['b', 'c', 'a']);
    for (const f of fired) assert.ok(f.late >= 0, `${f.name} fired ${-f.late} ms before its deadline`);
    assert.equal(list.size, 0);
    assert.equal(a.deadlineList, null, 'a fired item is no longer armed');
  });

  it('re-arming moves an item to its new deadline, and an item armed after the list emptied still fires', async () => {
    const fired: { name: string; late: number }[] = [];
    const list = new DeadlineList();
    const a = new Item('a', fired);
    const b = new Item('b', fired);
    list.arm(a, 20);
    list.arm(b, 50);
    list.arm(a, 90); // pushed back behind b
    await sleep(140);
    assert.deepEqual(fired.map((f) => f.name), ['b', 'a']);
    list.arm(b, 10);
    await sleep(60);
    assert.deepEqual(fired.map((f) => f.name), ['b', 'a', 'b']);
  });
});

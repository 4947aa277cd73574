// A set of objects that keep their own place in it: for what comes and goes with every proxied
// connection (the relays of a thread, a listener's clients, the registry's records). Adding and
// deleting are a few array writes: the last member moves into the freed place.
//
// Why not a Set or a Map: one whose members come and go rebuilds its hash table now and then, and a
// discarded table that had been promoted to the old generation still points at the members it held.
// Until the next full collection those members then count as alive, are promoted in turn, and drag
// along everything they point at (a relay, its record, its client): on the connections/s bench the
// thread promoted ~450 KB per scavenge, whatever the young generation's size (bench/README.md).

/** A member of a SlotSet: its index there, -1 while in none. An object can be in one SlotSet at a time. */
export interface Slotted {
  slot: number;
}

export class SlotSet<T extends Slotted> {
  /**
   * members in [0, count); the places past count are emptied, never cut off: an array that shrinks
   * and grows again gets a new backing store, and the old one, promoted, would hold its members
   * as a discarded hash table does
   */
  private readonly items: (T | undefined)[] = [];
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(x: T): boolean {
    return x.slot >= 0 && x.slot < this.count && this.items[x.slot] === x;
  }

  add(x: T): void {
    if (this.has(x)) return;
    x.slot = this.count;
    if (this.count < this.items.length) this.items[this.count] = x;
    else this.items.push(x);
    this.count++;
  }

  /** Removes `x`; false when it was not a member. */
  delete(x: T): boolean {
    if (!this.has(x)) return false;
    const at = x.slot;
    const lastAt = --this.count;
    const last = this.items[lastAt]!;
    this.items[lastAt] = undefined;
    if (last !== x) {
      this.items[at] = last;
      last.slot = at;
    }
    x.slot = -1;
    return true;
  }

  /** The members in no particular order, as a copy: the set may change while the copy is walked. */
  values(): T[] {
    return this.items.slice(0, this.count) as T[];
  }
}

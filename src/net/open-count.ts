// The open client connections of a listener, against --max-connections: the count every thread
// shares (slot 0 of shared memory, with Atomics, so the limit holds whichever thread accepted), and
// how many of this listener's clients were handed on (to the relay, or to Node) and are still open.

export class OpenCount {
  private readonly open: Int32Array;
  /** clients handed on and still open */
  handedOn = 0;

  constructor(
    readonly max: number,
    shared?: Int32Array,
  ) {
    this.open = shared ?? new Int32Array(new SharedArrayBuffer(4));
  }

  /** Counts one more open client; false, with nothing counted, when the limit is reached. */
  tryOpen(): boolean {
    if (Atomics.add(this.open, 0, 1) < this.max) return true;
    Atomics.sub(this.open, 0, 1);
    return false;
  }

  /** A client counted by tryOpen has closed (while still this listener's). */
  closed(): void {
    Atomics.sub(this.open, 0, 1);
  }

  /**
   * A client leaves the listener (to the relay, or to Node) and stays counted until the function
   * returned is called: once, when that connection has closed; later calls do nothing.
   */
  handOn(): () => void {
    this.handedOn++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.handedOn--;
      Atomics.sub(this.open, 0, 1);
    };
  }
}

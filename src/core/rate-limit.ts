// Rate limits: a token bucket, and a bounded table of buckets per source address (failed
// credentials, error answers). Used by the TURN server, the signaling hub and the logins.

/** A token bucket: `rate` tokens a second, at most `burst` saved up. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
    }
  }

  /** Takes `n` tokens when there are that many; false (and nothing taken) when not. */
  take(n: number, now: number): boolean {
    this.refill(now);
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** true when fewer than `n` tokens are there now. */
  short(n: number, now: number): boolean {
    this.refill(now);
    return this.tokens < n;
  }
}

/**
 * A token bucket per source address, in a table of at most `maxSources`: past that, the sources
 * seen longest ago are forgotten (a spoofed flood cannot grow it without bound; a forgotten source
 * starts again with a full bucket, which is the price of the bound).
 */
export class SourceBuckets {
  private readonly buckets = new Map<string, TokenBucket>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly maxSources = 65536,
    private readonly now: () => number = () => Date.now(),
  ) {}

  private bucket(source: string): TokenBucket {
    let b = this.buckets.get(source);
    if (b) {
      // most recently used last, so that the oldest go first
      this.buckets.delete(source);
    } else {
      b = new TokenBucket(this.rate, this.burst, this.now());
      if (this.buckets.size >= this.maxSources) this.buckets.delete(this.buckets.keys().next().value!);
    }
    this.buckets.set(source, b);
    return b;
  }

  /** Takes one token for `source`; false when its budget is spent. */
  take(source: string): boolean {
    return this.bucket(source).take(1, this.now());
  }

  /** true when `source` has no token left (nothing is taken). */
  spent(source: string): boolean {
    const b = this.buckets.get(source);
    return b !== undefined && b.short(1, this.now());
  }

  get size(): number {
    return this.buckets.size;
  }
}

// Where the shield's alerts go besides the log and the metrics: a webhook (POST JSON, retried a
// bounded number of times, one delivery at a time, a bounded queue) and the API's server-sent event
// stream (every subscriber gets every alert; one that cannot keep up is dropped, never waited for).
import type { ServerResponse } from 'node:http';
import type { Logger } from '../log/logger.js';

export interface WebhookOptions {
  /** tries per alert, the first included */
  attempts: number;
  /** how long one try may take */
  timeoutMs: number;
  /** the wait before the second try; doubled for each one after */
  backoffMs: number;
  /** alerts waiting at most; beyond it the oldest is dropped */
  queue: number;
}

const WEBHOOK_DEFAULTS: WebhookOptions = { attempts: 4, timeoutMs: 5000, backoffMs: 1000, queue: 100 };

/** POSTs each alert as JSON to one URL; a 2xx answer is delivered, anything else is retried up to the bound. */
export class Webhook {
  private readonly pending: string[] = [];
  private running: Promise<void> | null = null;
  private closed = false;
  private readonly opts: WebhookOptions;
  delivered = 0;
  failed = 0;

  constructor(
    readonly url: string,
    private readonly logger: Logger,
    opts: Partial<WebhookOptions> = {},
  ) {
    this.opts = { ...WEBHOOK_DEFAULTS, ...opts };
  }

  /** Queues an alert; it is serialized now (the object may change afterwards). */
  send(body: unknown): void {
    if (this.closed) return;
    if (this.pending.length >= this.opts.queue) {
      this.pending.shift();
      this.failed++;
      this.logger.warn('shield: webhook queue full, the oldest alert dropped', { url: this.url, queue: this.opts.queue });
    }
    this.pending.push(JSON.stringify(body));
    this.running ??= this.drain().finally(() => {
      this.running = null;
    });
  }

  private async drain(): Promise<void> {
    while (this.pending.length > 0 && !this.closed) {
      const body = this.pending.shift();
      let lastError = '';
      let ok = false;
      for (let attempt = 1; attempt <= this.opts.attempts && !this.closed; attempt++) {
        try {
          const res = await fetch(this.url, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'user-agent': 'edgeward-shield' },
            body,
            signal: AbortSignal.timeout(this.opts.timeoutMs),
          });
          await res.arrayBuffer().catch(() => undefined);
          if (res.ok) {
            ok = true;
            break;
          }
          lastError = `HTTP ${res.status}`;
        } catch (e) {
          const err = e as Error & { cause?: { code?: string } };
          lastError = err.cause?.code ?? err.message;
        }
        if (attempt < this.opts.attempts) await new Promise((r) => setTimeout(r, this.opts.backoffMs * 2 ** (attempt - 1)).unref());
      }
      if (ok) this.delivered++;
      else if (!this.closed) {
        this.failed++;
        this.logger.warn('shield: webhook gave up on an alert', { url: this.url, attempts: this.opts.attempts, error: lastError });
      }
    }
  }

  /** Waits until what is queued is delivered (or given up), at most `ms`. */
  async flush(ms: number): Promise<void> {
    if (!this.running) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.running, new Promise((r) => (timer = setTimeout(r, ms)))]);
    clearTimeout(timer);
  }

  /** Stops delivering (what is queued is dropped). */
  close(): void {
    this.closed = true;
    this.pending.length = 0;
  }
}

/** Bytes a subscriber may have unsent before it is dropped. */
const MAX_BUFFERED = 1 << 20;
/** Subscribers at most. */
export const MAX_SUBSCRIBERS = 64;
/** A comment line every this often keeps proxies and idle timers from closing the stream. */
const KEEPALIVE_MS = 15_000;

/** The API's server-sent event stream: `event: NAME` + `data: JSON` to every subscriber. */
export class EventStream {
  private readonly subscribers = new Set<ServerResponse>();
  private readonly keepalive: NodeJS.Timeout;

  constructor() {
    this.keepalive = setInterval(() => {
      for (const s of this.subscribers) this.write(s, ': keepalive\n\n');
    }, KEEPALIVE_MS);
    this.keepalive.unref();
  }

  get size(): number {
    return this.subscribers.size;
  }

  /** Takes over a response as a stream; false when there are too many subscribers already. */
  subscribe(res: ServerResponse, first: Array<{ event: string; data: unknown }> = []): boolean {
    if (this.subscribers.size >= MAX_SUBSCRIBERS) return false;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.write(': edgeward shield events\n\n');
    this.subscribers.add(res);
    res.on('close', () => this.subscribers.delete(res));
    for (const m of first) this.write(res, frame(m.event, m.data));
    return true;
  }

  publish(event: string, data: unknown): void {
    const text = frame(event, data);
    for (const s of this.subscribers) this.write(s, text);
  }

  private write(s: ServerResponse, text: string): void {
    if (s.writableLength > MAX_BUFFERED) {
      this.subscribers.delete(s);
      s.destroy();
      return;
    }
    s.write(text);
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const s of this.subscribers) s.end();
    this.subscribers.clear();
  }
}

function frame(event: string, data: unknown): string {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

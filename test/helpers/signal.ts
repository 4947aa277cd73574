// A signaling client for tests: a real WebSocket (ws) to /api/v1/rendezvous/signal that keeps every
// frame it got, waits for the next one matching a predicate, and tells how the connection closed.
import WebSocket from 'ws';

export type Frame = Record<string, unknown> & { type: string };

export class SignalClient {
  readonly frames: Frame[] = [];
  private readonly waiters: Array<{ pred: (f: Frame) => boolean; resolve: (f: Frame) => void }> = [];
  /** how the connection closed: code and reason */
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString('utf8')) as Frame;
      this.frames.push(f);
      for (const w of [...this.waiters]) {
        if (w.pred(f)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(f);
        }
      }
    });
    ws.on('error', () => undefined);
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  /** Connects to the API at `apiUrl` (http:// or https://); `autoPong: false` leaves the server's pings unanswered. */
  static async open(apiUrl: string, opts: { autoPong?: boolean } = {}): Promise<SignalClient> {
    const ws = new WebSocket(`${apiUrl.replace(/^http/, 'ws')}/api/v1/rendezvous/signal`, { autoPong: opts.autoPong ?? true });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new SignalClient(ws);
  }

  send(frame: object | string): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The first frame, already here (from `since` on) or still to come, that matches `pred`. */
  next(pred: (f: Frame) => boolean, timeoutMs = 5000, since = 0): Promise<Frame> {
    const had = this.frames.slice(since).find(pred);
    if (had) return Promise.resolve(had);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(this.frames.slice(-5))}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** The next frame of `type` that arrives after now. */
  nextOfType(type: string, timeoutMs = 5000): Promise<Frame> {
    return this.next((f) => f.type === type, timeoutMs, this.frames.length);
  }

  /** Says hello and waits for the welcome (or the error). */
  async hello(hello: { role: 'device'; token: string } | { role: 'client'; session: string }): Promise<Frame> {
    const at = this.frames.length;
    this.send({ type: 'hello', ...hello });
    return this.next((f) => f.type === 'welcome' || f.type === 'error', 5000, at);
  }

  close(): void {
    this.ws.close();
  }
}

// The peers' side of the signaling WebSocket (/api/v1/rendezvous/signal): connect, say hello,
// hand every frame to the owner, send frames. A device's connection is kept up: when it drops, the
// device connects again after a bounded backoff (its identity is its token, so sessions simply
// start anew).
import WebSocket from 'ws';

export type SignalFrame = Record<string, unknown> & { type: string };

export interface SignalClientOptions {
  /** the API's base URL: http(s)://host:port */
  server: string;
  hello: { role: 'device'; token: string } | { role: 'client'; session: string };
  onFrame(frame: SignalFrame): void;
  /** the connection closed (code, reason); a device reconnects after it */
  onClose?(code: number, reason: string): void;
}

/** ws:// or wss:// of the signaling endpoint under an API base URL. */
export function signalUrl(server: string): string {
  const u = new URL(server);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`--server ${server}: an http:// or https:// URL of the edgeward API is expected`);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.pathname = `${u.pathname.replace(/\/$/, '')}/api/v1/rendezvous/signal`;
  return u.toString();
}

export class SignalClient {
  private ws: WebSocket | null = null;

  constructor(private readonly opts: SignalClientOptions) {}

  /** Connects and says hello; resolves with the welcome, rejects with the server's error or the close. */
  connect(): Promise<SignalFrame> {
    const ws = new WebSocket(signalUrl(this.opts.server), { maxPayload: 64 * 1024 });
    this.ws = ws;
    return new Promise((resolve, reject) => {
      let welcomed = false;
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', ...this.opts.hello })));
      ws.on('message', (data: Buffer) => {
        let f: SignalFrame;
        try {
          f = JSON.parse(data.toString('utf8')) as SignalFrame;
        } catch {
          return;
        }
        if (!welcomed) {
          if (f.type === 'welcome') {
            welcomed = true;
            resolve(f);
          } else if (f.type === 'error') reject(new Error(`the server refused the hello: ${String(f.code)}: ${String(f.message)}`));
          return;
        }
        this.opts.onFrame(f);
      });
      ws.on('error', (e) => {
        if (!welcomed) reject(new Error(`cannot reach the signaling server at ${signalUrl(this.opts.server)}: ${e.message}`));
      });
      ws.on('close', (code, reason) => {
        if (!welcomed) reject(new Error(`the signaling server closed the connection (${code} ${reason.toString()})`));
        else this.opts.onClose?.(code, reason.toString());
      });
    });
  }

  send(frame: object): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(frame));
  }

  close(): void {
    this.ws?.close(1000, 'bye');
  }
}

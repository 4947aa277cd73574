// Bidirectional byte relay between two sockets: backpressure through pipe() (a paused reader, never
// an unbounded buffer), half-close (a FIN one way keeps the other way flowing), idle timeout, and
// error isolation (a reset on one side resets the other side of this connection only).
import type { Socket } from 'node:net';

export interface RelayOptions {
  /** ms without any traffic either way before both sockets are closed; 0 = never */
  idleTimeout: number;
  /** bytes already read from `client` that belong to `remote` (sent before the handshake finished) */
  pending?: Buffer;
  /** the client already half-closed during the handshake: pass its FIN on after `pending` */
  clientEnded?: boolean;
}

export type RelayEnd = 'closed' | 'idle' | 'error';

/** Relays until both directions have finished; `done` runs once with how it ended. */
export function relay(client: Socket, remote: Socket, opts: RelayOptions, done: (how: RelayEnd, err?: Error) => void): void {
  let open = 2;
  let how: RelayEnd = 'closed';
  let error: Error | undefined;

  const onClose = (): void => {
    if (--open === 0) done(how, error);
  };
  const onError = (other: Socket) => (err: Error): void => {
    if (how === 'closed') {
      how = 'error';
      error = err;
    }
    // pass a reset on as a reset, so the far end learns the connection broke, not that it ended
    if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' && !other.destroyed) other.resetAndDestroy();
    else other.destroy();
  };
  const onTimeout = (): void => {
    how = 'idle';
    client.destroy();
    remote.destroy();
  };

  client.on('error', onError(remote));
  remote.on('error', onError(client));
  client.once('close', onClose);
  remote.once('close', onClose);
  if (opts.idleTimeout > 0) {
    client.setTimeout(opts.idleTimeout, onTimeout);
    remote.setTimeout(opts.idleTimeout, onTimeout);
  }
  if (opts.pending && opts.pending.length > 0) remote.write(opts.pending);
  if (opts.clientEnded) remote.end();
  else client.pipe(remote);
  remote.pipe(client);
  client.resume();
}

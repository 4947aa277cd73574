// Reads length-prefixed protocol messages off a socket during a handshake: buffers what arrived,
// hands it to a bounded parser, and gives back whatever the client sent beyond the handshake.
import type { Socket } from 'node:net';
import { isParseError, type ParseError, type Parsed } from './codec.js';

/** Bytes a client may send ahead of the handshake's end (pipelined data) before we stop reading. */
const MAX_BUFFERED = 64 * 1024;

export type ReadResult<T> = T | ParseError | 'closed';

export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private ended = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    if (this.buf.length > MAX_BUFFERED) this.socket.pause();
    this.wake?.();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.wake?.();
  };

  /** Waits until `parse` can decode a whole message from the buffered bytes. */
  async next<T>(parse: (b: Buffer) => Parsed<T>): Promise<ReadResult<T>> {
    for (;;) {
      const r = parse(this.buf);
      if (r !== 'more') {
        if (isParseError(r)) return r;
        this.buf = this.buf.subarray(r.consumed);
        return r.value;
      }
      if (this.ended) return 'closed';
      if (this.buf.length > MAX_BUFFERED) return { error: 'too_long', message: 'handshake message too long' };
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = null;
    }
  }

  /** Stops reading and returns the bytes received beyond the last parsed message. */
  detach(): Buffer {
    this.socket.pause();
    this.socket.removeListener('data', this.onData);
    this.socket.removeListener('end', this.onEnd);
    this.socket.removeListener('close', this.onEnd);
    return this.buf;
  }

  /** true when the client closed its side. */
  get closed(): boolean {
    return this.ended;
  }
}

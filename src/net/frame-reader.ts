// Reads protocol messages off a socket during a handshake (SOCKS now, STUN over TCP later): buffers what arrived,
// hands it to a bounded parser, and gives back whatever the client sent beyond the handshake.
import type { Socket } from 'node:net';

/** Bytes a client may send ahead of the handshake's end (pipelined data) before we stop reading. */
export const MAX_BUFFERED = 64 * 1024;

/** A protocol violation found by a parser; `error` is a stable code, `message` says what was wrong. */
export interface ParseError<C extends string = string> {
  error: C;
  message: string;
}

/** What a bounded parser makes of the bytes so far: a message and its length, 'more', or an error. */
export type Parsed<T, E extends ParseError = ParseError> = { value: T; consumed: number } | 'more' | E;

export function isParseError<E extends ParseError>(p: unknown): p is E {
  return typeof p === 'object' && p !== null && 'error' in p;
}

/** The reader's own error: more than MAX_BUFFERED bytes without a complete message. */
export type TooLong = ParseError<'too_long'>;

export type ReadResult<T, E extends ParseError = ParseError> = T | E | TooLong | 'closed';

/**
 * The next message in `buf`, if `parse` can decode a whole one: its value and the bytes after it,
 * or its parse error; 'closed' when the stream has `ended` short of a whole message, too_long past
 * MAX_BUFFERED, 'more' otherwise. The one step FrameReader (net.Socket) and RawClient (raw fd) share.
 */
export function takeMessage<T, E extends ParseError = ParseError>(buf: Buffer, parse: (b: Buffer) => Parsed<T, E>, ended: boolean): { result: ReadResult<T, E>; rest: Buffer } | 'more' {
  const r = parse(buf);
  if (r !== 'more') return isParseError<E>(r) ? { result: r, rest: buf } : { result: r.value, rest: buf.subarray(r.consumed) };
  if (ended) return { result: 'closed', rest: buf };
  if (buf.length > MAX_BUFFERED) return { result: { error: 'too_long', message: 'handshake message too long' }, rest: buf };
  return 'more';
}

export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private ended = false;

  /** `initial`: bytes already read from the socket's connection (by a RawClient) */
  constructor(
    private readonly socket: Socket,
    initial?: Buffer,
  ) {
    if (initial && initial.length > 0) this.buf = initial;
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
  async next<T, E extends ParseError = ParseError>(parse: (b: Buffer) => Parsed<T, E>): Promise<ReadResult<T, E>> {
    for (;;) {
      const t = takeMessage(this.buf, parse, this.ended);
      if (t !== 'more') {
        this.buf = t.rest;
        return t.result;
      }
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

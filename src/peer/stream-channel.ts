// One forwarded TCP connection over one WebRTC data channel (reliable, ordered), both ways.
// On the channel, binary messages are the stream's bytes; the text message "end" says the sender
// writes no more (TCP's half-close: the other side shuts its socket's write side), and "ack"
// answers it: everything before that "end" arrived. "error:TEXT" says the far end could not serve
// the stream (then the channel closes). Data channels have no half-close of their own, hence these
// words; and a channel closed while its buffer still holds data loses that data, so a side closes
// the channel only when it has the other's "end" and its own "end" was acknowledged.
//
// Backpressure toward the channel: the socket is paused while the channel's buffer holds more than
// HIGH_WATER bytes, and resumed when it drains below LOW_WATER. Toward the socket, the channel has
// no way to say "wait" to the sender; SCTP's receive window bounds what is in flight.
import type { Socket } from 'node:net';
import type { RTCDataChannel } from 'werift';

/** Bytes per channel message (well under SCTP's message size limits). */
const CHUNK = 16 * 1024;
const HIGH_WATER = 1024 * 1024;
const LOW_WATER = 256 * 1024;

export interface StreamCounters {
  /** bytes from the socket into the channel */
  sent: number;
  /** bytes from the channel into the socket */
  received: number;
}

/**
 * Pipes `socket` and `dc` until both directions ended or either side failed. Resolves when the
 * stream is over, with its byte counts and, when it failed, why.
 */
export async function pipeStream(socket: Socket, dc: RTCDataChannel): Promise<StreamCounters & { error?: string }> {
  // nothing is read from the socket before the channel can carry it
  socket.pause();
  if (dc.readyState === 'connecting') await new Promise<void>((resolve) => dc.stateChanged.subscribe((s) => s !== 'connecting' && resolve()));
  const counters: StreamCounters = { sent: 0, received: 0 };
  if (dc.readyState !== 'open') {
    socket.destroy();
    return { ...counters, error: 'the data channel did not open' };
  }
  let localAcked = false; // the other side got everything up to our "end"
  let remoteEnded = false; // the channel said "end": we shut the socket's write side
  let error: string | undefined;
  dc.bufferedAmountLowThreshold = LOW_WATER;
  return new Promise((resolve) => {
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      if (!socket.destroyed) socket.destroy();
      if (dc.readyState === 'open' || dc.readyState === 'connecting') dc.close();
      resolve(error !== undefined ? { ...counters, error } : counters);
    };
    const maybeDone = (): void => {
      if (localAcked && remoteEnded && socket.writableFinished) finish();
    };
    dc.bufferedAmountLow.subscribe(() => {
      if (socket.isPaused()) socket.resume();
    });
    socket.on('data', (chunk: Buffer) => {
      if (dc.readyState !== 'open') return; // closing: finish() follows
      for (let i = 0; i < chunk.length; i += CHUNK) dc.send(chunk.subarray(i, i + CHUNK));
      counters.sent += chunk.length;
      if (dc.bufferedAmount > HIGH_WATER) socket.pause();
    });
    socket.on('end', () => {
      if (dc.readyState === 'open') dc.send('end');
      maybeDone();
    });
    socket.on('finish', maybeDone);
    socket.on('error', (e) => {
      error ??= `socket: ${e.message}`;
      if (dc.readyState === 'open') dc.send(`error:${e.message}`);
      finish();
    });
    // a socket that closed cleanly has ended both ways: the channel closes once the "end"s crossed
    socket.on('close', (hadError) => (hadError ? finish() : maybeDone()));
    dc.onmessage = ({ data }) => {
      if (typeof data === 'string') {
        if (data === 'end') {
          remoteEnded = true;
          dc.send('ack');
          socket.end();
          maybeDone();
        } else if (data === 'ack') {
          localAcked = true;
          maybeDone();
        } else if (data.startsWith('error:')) {
          error ??= data.slice(6);
          finish();
        }
        return;
      }
      counters.received += data.length;
      if (!socket.destroyed) socket.write(data);
    };
    dc.onclose = () => {
      // both sides said "end" and heard it: what is still queued toward the socket is written out first
      if (localAcked && remoteEnded) {
        if (socket.writableFinished) finish();
        else socket.once('finish', finish);
        return;
      }
      error ??= 'the data channel closed';
      finish();
    };
    socket.resume();
  });
}

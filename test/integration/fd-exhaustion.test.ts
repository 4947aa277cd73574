// Running out of file descriptors (RLIMIT_NOFILE, util-linux prlimit): clients that connect while
// accept(2) fails with EMFILE wait in the listen queue, and are served once descriptors are free
// again, with no new connection needed to wake the listener (its epoll registration is
// edge-triggered: an accept queue left undrained gives no new edge).
import assert from 'node:assert/strict';
import type net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startGateway, type Gateway } from '../helpers/edgeward.js';
import { SocketReader, startEchoServer, tcpConnect } from '../helpers/peers.js';
import { missingPrograms, requirement } from '../helpers/requirements.js';

const skip = requirement(missingPrograms(['prlimit']));

/** the gateway's open-file limit: a few hundred above what Node itself holds */
const NOFILE = 200;
/** idle clients (connected, silent) opened to use the descriptors up: more than NOFILE */
const IDLE = 260;

describe('out of file descriptors', { skip }, () => {
  let g: Gateway;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  const idle: net.Socket[] = [];
  before(async () => {
    echo = await startEchoServer();
    g = await startGateway({ args: ['--workers', '1', '--handshake-timeout', '60'], nofile: NOFILE });
  });
  after(async () => {
    for (const s of idle) s.destroy();
    await g?.stop();
    await echo?.close();
  });

  it('keeps the clients that connect meanwhile in the queue and serves them once descriptors are free, without another connection', async () => {
    // silent clients: each takes one descriptor of the gateway until its handshake times out
    for (let i = 0; i < IDLE; i++) idle.push(await tcpConnect(g.socksHost, g.socksPort));
    await g.waitForLog((l) => l.msg.startsWith('SOCKS accept: no file descriptor left'), 10_000);
    // this one waits in the accept queue: its whole request is in the kernel already
    const waiting = await tcpConnect(g.socksHost, g.socksPort);
    const reader = new SocketReader(waiting);
    waiting.write(Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, echo.port >> 8, echo.port & 0xff]));
    await assert.rejects(reader.read(2, 500), 'no answer while no descriptor is free');
    // free descriptors: the gateway reads the accepted ones' FINs and closes them; the ones still
    // queued ahead of the waiting client are accepted and closed too, and none of this is a new
    // connection on the listener
    for (const s of idle.splice(0)) s.destroy();
    const method = await reader.read(2, 5000);
    assert.deepEqual([...method], [5, 0], 'the waiting client got its method reply');
    const reply = await reader.read(10, 5000);
    assert.equal(reply[1], 0, `the CONNECT succeeded (reply ${reply[1]})`);
    waiting.write('fd');
    assert.equal((await reader.read(2, 5000)).toString(), 'fd', 'and its bytes are relayed');
    await g.waitForLog((l) => l.msg === 'SOCKS accept: file descriptors free again', 5000);
    waiting.destroy();
  });
});

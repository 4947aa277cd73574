// The Node side of bench/wakeup: echoes the bytes of each connection to 127.0.0.1:PORT, waiting
// for them in one of three ways, so the cost of a wake-up can be told apart from the rest:
//   net    a net.Socket ('data' -> write)
//   poll   edgeward's plane today: the socket in an epoll set of its own, that set's fd watched by
//          Node's loop (koffi's libuv poll handle); each wake-up: libuv's epoll_pwait, the poll
//          callback into JavaScript, epoll_wait on the inner set, read, write
//   block  a worker thread that blocks in epoll_wait itself (through koffi) and never returns to
//          Node's loop: epoll_wait, read, write
// Usage: node bench/wakeup/echo.mjs net|poll|block PORT   (then bench/wakeup/pingpong PORT COUNT)
import koffi from 'koffi';
import net from 'node:net';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

const libc = koffi.load('libc.so.6');
const epollCreate1 = libc.func('int epoll_create1(int flags)');
const epollCtl = libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)');
const epollWait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)');
const read = libc.func('intptr_t read(int fd, void *buf, size_t count)');
const write = libc.func('intptr_t write(int fd, const void *buf, size_t count)');
const dup = libc.func('int dup(int fd)');
const fcntl = libc.func('int fcntl(int fd, int cmd, int arg)');
const EPOLLIN = 1;
const EPOLLET = 0x80000000;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const EVENT_SIZE = process.arch === 'x64' ? 12 : 16;

function echoOnFd(fd, blocking) {
  const ep = epollCreate1(0);
  const ev = Buffer.alloc(EVENT_SIZE);
  ev.writeUInt32LE((EPOLLIN | EPOLLET) >>> 0, 0);
  ev.writeUInt32LE(fd, EVENT_SIZE - 8);
  epollCtl(ep, 1, fd, ev);
  const events = Buffer.alloc(EVENT_SIZE * 16);
  const buf = Buffer.alloc(4096);
  // true once the peer has closed
  const drain = () => {
    for (;;) {
      const n = read(fd, buf, buf.length);
      if (n <= 0) return n === 0;
      write(fd, buf, n);
    }
  };
  if (blocking) {
    for (;;) if (epollWait(ep, events, 16, -1) > 0 && drain()) return;
  }
  const poll = koffi.node.poll(ep, { readable: true }, () => {
    if (epollWait(ep, events, 16, 0) > 0 && drain()) poll.close();
  });
}

if (!isMainThread) {
  echoOnFd(workerData.fd, workerData.mode === 'block');
} else {
  const [mode, portText] = process.argv.slice(2);
  if (!['net', 'poll', 'block'].includes(mode ?? '') || !(Number(portText) > 0)) {
    process.stderr.write('usage: node bench/wakeup/echo.mjs net|poll|block PORT\n');
    process.exit(2);
  }
  const server = mode === 'net'
    ? net.createServer((s) => {
        s.setNoDelay(true);
        s.on('data', (d) => s.write(d));
        s.on('error', () => undefined);
      })
    : net.createServer({ pauseOnConnect: true }, (s) => {
        // the accepted socket's fd, taken from Node (a dup; Node closes its own)
        const fd = dup(s._handle.fd);
        s.destroy();
        fcntl(fd, F_SETFL, O_NONBLOCK);
        new Worker(new URL(import.meta.url), { workerData: { mode, fd } });
      });
  server.listen(Number(portText), '127.0.0.1', () => process.stdout.write(`listening ${portText}\n`));
}

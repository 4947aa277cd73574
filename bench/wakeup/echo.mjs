// The Node side of bench/wakeup: echoes the bytes of each connection to 127.0.0.1:PORT, waiting
// for them in one of three ways, so the cost of a wake-up can be told apart from the rest:
//   net    a net.Socket ('data' -> write)
//   poll   edgeward's own plane (dist/kernel/epoll-plane.js): the socket in the thread's epoll
//          set, whose fd Node's loop watches (koffi's libuv poll handle); each wake-up: libuv's
//          epoll_pwait, the poll callback into JavaScript, epoll_wait on the inner set, read, write
//   block  a worker thread that blocks in epoll_wait itself (through koffi) and never returns to
//          Node's loop: epoll_wait, read, write
// The raw modes take the accepted socket from Node (takeSocket) and call edgeward's own fdio, so
// `npm run build` first. Usage: node bench/wakeup/echo.mjs net|poll|block PORT
import net from 'node:net';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { thePlane } from '../../dist/kernel/epoll-plane.js';
import { EPOLL_EVENT_SIZE, EPOLLET, EPOLLIN, epollAdd, epollCreate, epollWait, readFd, takeSocket, writeFd } from '../../dist/kernel/fdio.js';

const buf = Buffer.alloc(4096);

/** Reads what is there and writes it back; true once the peer has closed. */
function drain(fd) {
  for (;;) {
    const n = readFd(fd, buf, buf.length);
    if (n <= 0) return n === 0;
    writeFd(fd, buf, n);
  }
}

if (!isMainThread) {
  // block: this thread's own epoll set, waited on with no timeout
  const { fd } = workerData;
  const ep = epollCreate();
  epollAdd(ep, fd, (EPOLLIN | EPOLLET) >>> 0);
  const events = Buffer.alloc(EPOLL_EVENT_SIZE * 16);
  for (;;) if (epollWait(ep, events, 16, -1) > 0 && drain(fd)) break;
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
        const { fd } = takeSocket(s);
        if (mode === 'block') {
          new Worker(new URL(import.meta.url), { workerData: { fd } });
          return;
        }
        const plane = thePlane();
        const handler = { onEvent: () => drain(fd) && plane.unwatch(fd, handler) };
        plane.watch(fd, handler, EPOLLIN);
      });
  server.listen(Number(portText), '127.0.0.1', () => process.stdout.write(`listening ${portText}\n`));
}

// Loopback helpers for the bench: free ports, "is something listening", HTTP status, kernel
// socket counters. Nothing here sends traffic anywhere but 127.0.0.1.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';

/** A port that was free on 127.0.0.1 a moment ago (the caller retries if it is taken by then). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/** true when a TCP socket listens on the port (any local address), read from /proc/net/tcp{,6}. */
export function isListening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols[1] = local "ADDR:PORT", cols[3] = state; 0A = LISTEN
      if (cols[3] === '0A' && cols[1]?.endsWith(`:${hex}`)) return true;
    }
  }
  return false;
}

/** Polls until the port listens; false after timeoutMs or as soon as stillAlive() says no. */
export async function waitListening(port: number, timeoutMs: number, stillAlive: () => boolean = () => true): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (isListening(port)) return true;
    if (!stillAlive()) return false;
    await new Promise((r) => setTimeout(r, 25));
  }
  return false;
}

/** Status code of a GET, or 0 when the request failed or took longer than timeoutMs. */
export function httpStatus(url: string, timeoutMs: number): Promise<number> {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs, agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
  });
}

/** Sockets in TIME_WAIT host-wide (network namespace), from /proc/net/sockstat. */
export function timeWaitCount(): number | undefined {
  try {
    const m = /^TCP:.*\btw (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

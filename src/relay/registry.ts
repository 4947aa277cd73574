// Open connections and running totals: what /api/v1/connections, /api/v1/stats and /metrics show,
// and the list live policy changes are re-applied to.
import type { Transport } from '../policy/types.js';
import { SlotSet, type Slotted } from '../core/slot-set.js';
import type { RelayHandle } from './splice.js';

export type Listener = 'socks5' | 'socks4' | 'intercept';
export type Command = 'connect' | 'bind' | 'udp-associate';

/** One relayed connection. Its relay's fds are kept for live re-application and for reading state. */
export interface ConnectionRecord {
  id: number;
  listener: Listener;
  command: Command;
  startedAt: number;
  client: { address: string; port: number };
  user?: string;
  destination: { host?: string; address: string; port: number };
  /** the upstream SOCKS5 proxy the connection is chained through (display form) */
  upstream?: string;
  policyId: number | null;
  transport: Transport;
  /** the MPTCP result at creation (the fd may later fall back) */
  mptcpRequested: boolean;
  mptcpNote?: string;
  notApplied?: string[];
  /** the TCP relay (CONNECT, BIND, intercepted connections): both sockets and their byte counts */
  relay?: RelayHandle;
  /** byte counts of a UDP association */
  udp?: { up: number; down: number };
  /** Ends the connection now (what is left after a drain). */
  close(): void;
}

/**
 * What every listener of a thread counts, whatever its protocol: relayed connections, bytes, MPTCP
 * results, failures by reason (each service names its own: SOCKS reply names, intercept_*), failed
 * client authentications, and clients refused before their handshake.
 */
export interface Totals {
  connectionsTotal: number;
  bytesUp: number;
  bytesDown: number;
  /** requests that never reached relaying, by reason (e.g. connection_refused, intercept_timed_out) */
  failures: Record<string, number>;
  mptcpConnections: number;
  mptcpFallbacks: number;
  authFailures: number;
  rejectedClients: number;
}

/** Bytes client->destination (up) and destination->client (down) of a record. */
export function recordBytes(r: ConnectionRecord): { up: number; down: number } {
  return r.udp ?? r.relay?.bytes ?? { up: 0, down: 0 };
}

export class ConnectionRegistry {
  private nextId: number;
  private readonly open = new SlotSet<ConnectionRecord & Slotted>();
  readonly totals: Totals = {
    connectionsTotal: 0,
    bytesUp: 0,
    bytesDown: 0,
    failures: {},
    mptcpConnections: 0,
    mptcpFallbacks: 0,
    authFailures: 0,
    rejectedClients: 0,
  };
  readonly startedAt = Date.now();

  /** Ids go first, first+step, ...: each worker thread numbers its connections apart from the others. */
  constructor(
    first = 1,
    private readonly step = 1,
  ) {
    this.nextId = first;
  }

  /** Registers a relayed connection under the next id (an `id` given is a placeholder: overwritten). */
  add(r: Omit<ConnectionRecord, 'id'> & { id?: number; slot?: number }): ConnectionRecord {
    const rec = r as ConnectionRecord & Slotted;
    rec.id = this.nextId;
    this.nextId += this.step;
    this.open.add(rec);
    this.totals.connectionsTotal++;
    if (rec.mptcpRequested) {
      if (rec.mptcpNote) this.totals.mptcpFallbacks++;
      else this.totals.mptcpConnections++;
    }
    return rec;
  }

  /** Removes a finished connection and folds its byte counts into the totals. */
  remove(rec: ConnectionRecord): void {
    if (!this.open.delete(rec as ConnectionRecord & Slotted)) return;
    const b = recordBytes(rec);
    this.totals.bytesUp += b.up;
    this.totals.bytesDown += b.down;
  }

  countFailure(reason: string): void {
    this.totals.failures[reason] = (this.totals.failures[reason] ?? 0) + 1;
  }

  get size(): number {
    return this.open.size;
  }

  list(): ConnectionRecord[] {
    return this.open.values().sort((a, b) => a.id - b.id); // oldest first, as they were added
  }

  /** Totals including the bytes of connections still open. */
  snapshot(): Totals & { active: number; uptimeSeconds: number } {
    let up = this.totals.bytesUp;
    let down = this.totals.bytesDown;
    for (const r of this.open.values()) {
      const b = recordBytes(r);
      up += b.up;
      down += b.down;
    }
    return { ...this.totals, failures: { ...this.totals.failures }, bytesUp: up, bytesDown: down, active: this.open.size, uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000) };
  }
}

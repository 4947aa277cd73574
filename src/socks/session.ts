// What a SOCKS session and its command handlers (CONNECT, BIND, UDP ASSOCIATE) share: the server's
// options and one client's state. Its own module so that server.ts and the handlers import it and
// not each other.
import type net from 'node:net';
import type { UserService } from '../auth/users.js';
import type { Logger } from '../log/logger.js';
import type { CidrList } from '../net/address.js';
import type { FrameReader } from '../net/frame-reader.js';
import type { ConnectionRegistry } from '../relay/registry.js';
import type { OutboundSettings } from '../transport/outbound.js';

export interface SocksServerOptions {
  /** require RFC 1929 username/password */
  requireAuth: boolean;
  users: UserService;
  /** clients allowed to connect; empty = everyone who can reach the listener */
  clientAllow: CidrList;
  /** congestion control for accepted client connections (--client-congestion) */
  clientCongestion?: string;
  outbound: OutboundSettings;
  registry: ConnectionRegistry;
  /** ms for the client to finish the handshake */
  handshakeTimeout: number;
  /** ms without traffic before a relayed connection is closed; 0 = never */
  idleTimeout: number;
  maxConnections: number;
  /** the open-client count shared by the threads (RawListener's openCount) */
  openCount?: Int32Array;
  logger: Logger;
}

/** What the per-command handlers need from the server. */
export interface SessionContext {
  opts: SocksServerOptions;
  client: net.Socket;
  reader: FrameReader;
  user?: string;
  log: Logger;
  /** counts the client as open after the relay took its socket from Node; call what it returns when the relay closed it */
  adopt: () => () => void;
}

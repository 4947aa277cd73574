// The shapes of transport policy, shared by the matcher, the dialer and the API. The stored records
// are defined with the store (store/records.ts); the destination a connection asks for is policy's.
export type { KeepAliveSetting, OwnPathManager, Policy, PolicyInput, PolicyMatch, Transport, Via } from '../store/records.js';
export { isOwnPathManager, MAX_SUBFLOWS, OWN_PATH_MANAGERS } from '../store/records.js';

/** The destination of one connection, as the matcher sees it. */
export interface Destination {
  /** the name the client asked for (domain CONNECT), lower case */
  host?: string;
  /** the address connected to (given or resolved) */
  ip?: string;
  port: number;
}

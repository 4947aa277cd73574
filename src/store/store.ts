// The one interface to persistent state. SQLite implements it now; a PostgreSQL backend can follow
// without touching callers, which is why every method is asynchronous.
import { EdgewardError } from '../core/errors.js';
import type { Policy, PolicyInput, Transport } from './records.js';

export interface UserRecord {
  username: string;
  createdAt: string;
}

export type StoreErrorCode = 'conflict' | 'not_found' | 'corrupt';

/** A store failure a caller can act on (a duplicate key, a missing row). */
export class StoreError extends EdgewardError<StoreErrorCode> {}

export interface Store {
  listPolicies(): Promise<Policy[]>;
  getPolicy(id: number): Promise<Policy | null>;
  /** Stores one policy. `matchKey` identifies its match clause; a duplicate is a 'conflict'. */
  createPolicy(input: PolicyInput, matchKey: string): Promise<Policy>;
  /** Stores all or none (one transaction). */
  createPolicies(inputs: ReadonlyArray<{ input: PolicyInput; matchKey: string }>): Promise<Policy[]>;
  /** Replaces a policy; null when there is no such id. */
  replacePolicy(id: number, input: PolicyInput, matchKey: string): Promise<Policy | null>;
  deletePolicy(id: number): Promise<boolean>;

  getDefaultTransport(): Promise<Transport>;
  setDefaultTransport(t: Transport): Promise<Transport>;

  listUsers(): Promise<UserRecord[]>;
  getPasswordHash(username: string): Promise<string | null>;
  /** A duplicate username is a 'conflict'. */
  createUser(username: string, passwordHash: string): Promise<UserRecord>;
  deleteUser(username: string): Promise<boolean>;
  countUsers(): Promise<number>;

  setApiTokenHash(hash: string): Promise<void>;

  close(): Promise<void>;
}

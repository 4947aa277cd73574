// The one interface to persistent state. SQLite implements it now; a PostgreSQL backend can follow
// without touching callers, which is why every method is asynchronous.
import { EdgewardError } from '../core/errors.js';
import type { Policy, PolicyInput, Transport } from './records.js';

export interface UserRecord {
  username: string;
  createdAt: string;
  /** the realm of the user's TURN key; null: the user may not use TURN */
  turnRealm: string | null;
  /** may authenticate to the SOCKS proxy */
  socks: boolean;
  /** may log in to the rendezvous service (own devices, peer sessions) */
  rendezvous: boolean;
  /** may sign in to the console (/console): every right the API token has */
  console: boolean;
}

/** What a user may use besides TURN (whose permission is its key). */
export interface UserPermissions {
  socks: boolean;
  rendezvous: boolean;
  console: boolean;
}

/** A user's device (rendezvous): only the SHA-256 of its token is stored. */
export interface DeviceRecord {
  id: number;
  username: string;
  name: string;
  createdAt: string;
}

/** A user's TURN long-term key: MD5(username:realm:password) (RFC 8489 section 9.2.2), never the password. */
export interface TurnKey {
  realm: string;
  key: Buffer;
}

/** A hand-made entry of the shield's blocklist or allowlist (the meters' entries are never stored). */
export interface ShieldEntry {
  list: 'block' | 'allow';
  /** canonical "addr/prefix" */
  cidr: string;
  reason: string | null;
  /** ISO time it ends; null: until removed */
  expiresAt: string | null;
  createdAt: string;
}

/** How many shield events the store keeps (the oldest go first). */
export const SHIELD_EVENTS_KEPT = 1000;

/** An attack the shield saw; `details` is the shield's own (layers, top sources), kept as JSON. */
export interface ShieldEventRecord {
  /** 0 to insert a new one */
  id: number;
  kind: string;
  startedAt: string;
  endedAt: string | null;
  peakPps: number;
  packets: number;
  details: Record<string, unknown>;
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
  /** The password hash and the permissions; null for no such user. */
  getCredentials(username: string): Promise<({ passwordHash: string } & UserPermissions) | null>;
  /** A duplicate username is a 'conflict'. `turn`: the user's TURN key (absent: no TURN). */
  createUser(username: string, passwordHash: string, turn?: TurnKey, permissions?: UserPermissions): Promise<UserRecord>;
  /** The user's TURN key; null for no such user or one without TURN. */
  getTurnKey(username: string): Promise<TurnKey | null>;
  /** Removes the user and their devices. */
  deleteUser(username: string): Promise<boolean>;
  countUsers(): Promise<number>;

  /** `username`'s devices, or everyone's. */
  listDevices(username?: string): Promise<DeviceRecord[]>;
  /** A duplicate name for the user is a 'conflict', an unknown user 'not_found'. */
  createDevice(username: string, name: string, tokenHash: string): Promise<DeviceRecord>;
  /** The device whose token has this SHA-256 (hex); null when none has. */
  getDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null>;
  deleteDevice(id: number): Promise<boolean>;

  setApiTokenHash(hash: string): Promise<void>;

  /** The shield's hand-made entries that have not expired. */
  listShieldEntries(): Promise<ShieldEntry[]>;
  /** Adds an entry, or replaces the one for the same list and block. */
  putShieldEntry(e: Omit<ShieldEntry, 'createdAt'>): Promise<ShieldEntry>;
  deleteShieldEntry(list: ShieldEntry['list'], cidr: string): Promise<boolean>;
  /** Inserts an event (id 0; resolves to its new id) or updates the one with its id; keeps the newest SHIELD_EVENTS_KEPT. */
  putShieldEvent(e: ShieldEventRecord): Promise<number>;
  /** The newest events first, at most `limit`; with `kind`, of that kind only. */
  listShieldEvents(opts: { limit: number; kind?: string }): Promise<ShieldEventRecord[]>;

  close(): Promise<void>;
}

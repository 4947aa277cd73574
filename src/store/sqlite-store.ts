// The SQLite store: one file in the data directory, WAL journal, versioned migrations.
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Policy, PolicyInput, Transport } from './records.js';
import { SHIELD_EVENTS_KEPT, StoreError, type DeviceRecord, type ShieldEntry, type ShieldEventRecord, type Store, type TurnKey, type UserPermissions, type UserRecord } from './store.js';

/** Each entry moves the schema one version up; never edit a shipped entry, add a new one. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE policies (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     match_key TEXT NOT NULL UNIQUE,
     match_json TEXT NOT NULL,
     transport_json TEXT NOT NULL,
     comment TEXT,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL
   );
   CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE users (
     username TEXT PRIMARY KEY,
     password_hash TEXT NOT NULL,
     created_at TEXT NOT NULL
   );`,
  // 2: chaining through an upstream SOCKS5 proxy per policy ("direct" or socks5://...)
  `ALTER TABLE policies ADD COLUMN via TEXT;`,
  // 3: TURN long-term keys of users: hex MD5(username:realm:password) and its realm (NULL: no TURN)
  `ALTER TABLE users ADD COLUMN turn_realm TEXT;
   ALTER TABLE users ADD COLUMN turn_key TEXT;`,
  // 4: permissions per service (every user before this was a SOCKS user), and users' devices for
  // rendezvous, by the SHA-256 of their token
  `ALTER TABLE users ADD COLUMN socks INTEGER NOT NULL DEFAULT 1;
   ALTER TABLE users ADD COLUMN rendezvous INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE devices (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
     name TEXT NOT NULL,
     token_hash TEXT NOT NULL UNIQUE,
     created_at TEXT NOT NULL,
     UNIQUE (username, name)
   );`,
  // 5: the shield's hand-made blocklist and allowlist entries (they survive a restart; the meters'
  // entries live in the kernel only)
  `CREATE TABLE shield_entries (
     list TEXT NOT NULL CHECK (list IN ('block', 'allow')),
     cidr TEXT NOT NULL,
     reason TEXT,
     expires_at TEXT,
     created_at TEXT NOT NULL,
     PRIMARY KEY (list, cidr)
   );`,
  // 6: the shield's attack events (kind, start, end, peak; the layers and top sources as JSON)
  `CREATE TABLE shield_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     kind TEXT NOT NULL,
     started_at TEXT NOT NULL,
     ended_at TEXT,
     peak_pps INTEGER NOT NULL,
     packets INTEGER NOT NULL,
     details TEXT NOT NULL
   );
   CREATE INDEX shield_events_started ON shield_events (started_at);`,
  // 7: the console role: users who may sign in to /console (with the API token's rights)
  `ALTER TABLE users ADD COLUMN console INTEGER NOT NULL DEFAULT 0;`,
];

interface ShieldEventRow {
  id: number;
  kind: string;
  started_at: string;
  ended_at: string | null;
  peak_pps: number;
  packets: number;
  details: string;
}

function toShieldEvent(r: ShieldEventRow): ShieldEventRecord {
  let details: Record<string, unknown> = {};
  try {
    const d: unknown = JSON.parse(r.details);
    if (typeof d === 'object' && d !== null && !Array.isArray(d)) details = d as Record<string, unknown>;
  } catch {
    // a row written by hand or cut short: the event without its details
  }
  return { id: r.id, kind: r.kind, startedAt: r.started_at, endedAt: r.ended_at, peakPps: r.peak_pps, packets: r.packets, details };
}

interface ShieldEntryRow {
  list: 'block' | 'allow';
  cidr: string;
  reason: string | null;
  expires_at: string | null;
  created_at: string;
}

const toShieldEntry = (r: ShieldEntryRow): ShieldEntry => ({ list: r.list, cidr: r.cidr, reason: r.reason, expiresAt: r.expires_at, createdAt: r.created_at });

interface UserRow {
  username: string;
  created_at: string;
  turn_realm: string | null;
  socks: number;
  rendezvous: number;
  console: number;
}

function toUser(r: UserRow): UserRecord {
  return { username: r.username, createdAt: r.created_at, turnRealm: r.turn_realm, socks: r.socks === 1, rendezvous: r.rendezvous === 1, console: r.console === 1 };
}

interface DeviceRow {
  id: number;
  username: string;
  name: string;
  created_at: string;
}

function toDevice(r: DeviceRow): DeviceRecord {
  return { id: r.id, username: r.username, name: r.name, createdAt: r.created_at };
}

interface PolicyRow {
  id: number;
  match_json: string;
  transport_json: string;
  comment: string | null;
  via: string | null;
  created_at: string;
  updated_at: string;
}

function toPolicy(r: PolicyRow): Policy {
  const p: Policy = {
    id: r.id,
    match: JSON.parse(r.match_json),
    transport: JSON.parse(r.transport_json),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.via !== null) p.via = r.via;
  if (r.comment !== null) p.comment = r.comment;
  return p;
}

function isUniqueViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

function isPrimaryKeyViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

export class SqliteStore implements Store {
  private readonly db: Database.Database;

  /** Opens (creating if needed) DATA/edgeward.db and brings its schema up to date. */
  constructor(dataDir: string) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    this.db = new Database(join(dataDir, 'edgeward.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  /** Current schema version. */
  get schemaVersion(): number {
    return (this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0;
  }

  private migrate(): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)');
    const current = this.schemaVersion;
    if (current > MIGRATIONS.length) {
      throw new StoreError('corrupt', `database schema version ${current} is newer than this edgeward (${MIGRATIONS.length}); upgrade edgeward`);
    }
    for (let v = current + 1; v <= MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v - 1]!);
        this.db.prepare('INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)').run(v, new Date().toISOString());
      })();
    }
  }

  async listPolicies(): Promise<Policy[]> {
    return (this.db.prepare('SELECT * FROM policies ORDER BY id').all() as PolicyRow[]).map(toPolicy);
  }

  async getPolicy(id: number): Promise<Policy | null> {
    const row = this.db.prepare('SELECT * FROM policies WHERE id = ?').get(id) as PolicyRow | undefined;
    return row ? toPolicy(row) : null;
  }

  private insert(input: PolicyInput, matchKey: string): Policy {
    const now = new Date().toISOString();
    try {
      const info = this.db
        .prepare('INSERT INTO policies (match_key, match_json, transport_json, via, comment, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(matchKey, JSON.stringify(input.match), JSON.stringify(input.transport), input.via ?? null, input.comment ?? null, now, now);
      return toPolicy(this.db.prepare('SELECT * FROM policies WHERE id = ?').get(info.lastInsertRowid) as PolicyRow);
    } catch (e) {
      if (isUniqueViolation(e)) throw new StoreError('conflict', `a policy with the same match already exists`);
      throw e;
    }
  }

  async createPolicy(input: PolicyInput, matchKey: string): Promise<Policy> {
    return this.insert(input, matchKey);
  }

  async createPolicies(inputs: ReadonlyArray<{ input: PolicyInput; matchKey: string }>): Promise<Policy[]> {
    return this.db.transaction(() => inputs.map((i) => this.insert(i.input, i.matchKey)))();
  }

  async replacePolicy(id: number, input: PolicyInput, matchKey: string): Promise<Policy | null> {
    try {
      const info = this.db
        .prepare('UPDATE policies SET match_key = ?, match_json = ?, transport_json = ?, via = ?, comment = ?, updated_at = ? WHERE id = ?')
        .run(matchKey, JSON.stringify(input.match), JSON.stringify(input.transport), input.via ?? null, input.comment ?? null, new Date().toISOString(), id);
      if (info.changes === 0) return null;
    } catch (e) {
      if (isUniqueViolation(e)) throw new StoreError('conflict', `another policy already has the same match`);
      throw e;
    }
    return this.getPolicy(id);
  }

  async deletePolicy(id: number): Promise<boolean> {
    return this.db.prepare('DELETE FROM policies WHERE id = ?').run(id).changes > 0;
  }

  private getSetting(key: string): string | null {
    const row = this.db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value ?? null;
  }

  private setSetting(key: string, value: string): void {
    this.db.prepare('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  async getDefaultTransport(): Promise<Transport> {
    const v = this.getSetting('default_transport');
    return v ? (JSON.parse(v) as Transport) : {};
  }

  async setDefaultTransport(t: Transport): Promise<Transport> {
    this.setSetting('default_transport', JSON.stringify(t));
    return t;
  }

  async listUsers(): Promise<UserRecord[]> {
    return (this.db.prepare('SELECT username, created_at, turn_realm, socks, rendezvous, console FROM users ORDER BY username').all() as UserRow[]).map(toUser);
  }

  async getCredentials(username: string): Promise<({ passwordHash: string } & UserPermissions) | null> {
    const row = this.db.prepare('SELECT password_hash, socks, rendezvous, console FROM users WHERE username = ?').get(username) as { password_hash: string; socks: number; rendezvous: number; console: number } | undefined;
    return row ? { passwordHash: row.password_hash, socks: row.socks === 1, rendezvous: row.rendezvous === 1, console: row.console === 1 } : null;
  }

  async getPasswordHash(username: string): Promise<string | null> {
    const row = this.db.prepare('SELECT password_hash FROM users WHERE username = ?').get(username) as { password_hash: string } | undefined;
    return row ? row.password_hash : null;
  }

  async getTurnKey(username: string): Promise<TurnKey | null> {
    const row = this.db.prepare('SELECT turn_realm, turn_key FROM users WHERE username = ?').get(username) as { turn_realm: string | null; turn_key: string | null } | undefined;
    return row && row.turn_realm !== null && row.turn_key !== null ? { realm: row.turn_realm, key: Buffer.from(row.turn_key, 'hex') } : null;
  }

  async createUser(username: string, passwordHash: string, turn?: TurnKey, permissions: UserPermissions = { socks: true, rendezvous: false, console: false }): Promise<UserRecord> {
    const now = new Date().toISOString();
    try {
      this.db
        .prepare('INSERT INTO users (username, password_hash, created_at, turn_realm, turn_key, socks, rendezvous, console) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(username, passwordHash, now, turn?.realm ?? null, turn ? turn.key.toString('hex') : null, permissions.socks ? 1 : 0, permissions.rendezvous ? 1 : 0, permissions.console ? 1 : 0);
    } catch (e) {
      if (isPrimaryKeyViolation(e) || isUniqueViolation(e)) throw new StoreError('conflict', `user "${username}" already exists`);
      throw e;
    }
    return { username, createdAt: now, turnRealm: turn?.realm ?? null, ...permissions };
  }

  async deleteUser(username: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM users WHERE username = ?').run(username).changes > 0;
  }

  async listDevices(username?: string): Promise<DeviceRecord[]> {
    const rows = username === undefined
      ? this.db.prepare('SELECT id, username, name, created_at FROM devices ORDER BY username, name').all()
      : this.db.prepare('SELECT id, username, name, created_at FROM devices WHERE username = ? ORDER BY name').all(username);
    return (rows as DeviceRow[]).map(toDevice);
  }

  async createDevice(username: string, name: string, tokenHash: string): Promise<DeviceRecord> {
    const now = new Date().toISOString();
    try {
      const info = this.db.prepare('INSERT INTO devices (username, name, token_hash, created_at) VALUES (?, ?, ?, ?)').run(username, name, tokenHash, now);
      return { id: Number(info.lastInsertRowid), username, name, createdAt: now };
    } catch (e) {
      if (isUniqueViolation(e)) throw new StoreError('conflict', `user "${username}" already has a device "${name}"`);
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new StoreError('not_found', `no user "${username}"`);
      throw e;
    }
  }

  async getDeviceByTokenHash(tokenHash: string): Promise<DeviceRecord | null> {
    const row = this.db.prepare('SELECT id, username, name, created_at FROM devices WHERE token_hash = ?').get(tokenHash) as DeviceRow | undefined;
    return row ? toDevice(row) : null;
  }

  async deleteDevice(id: number): Promise<boolean> {
    return this.db.prepare('DELETE FROM devices WHERE id = ?').run(id).changes > 0;
  }

  async listShieldEntries(): Promise<ShieldEntry[]> {
    const now = new Date().toISOString();
    this.db.prepare('DELETE FROM shield_entries WHERE expires_at IS NOT NULL AND expires_at <= ?').run(now);
    return (this.db.prepare('SELECT * FROM shield_entries ORDER BY list, cidr').all() as ShieldEntryRow[]).map(toShieldEntry);
  }

  async putShieldEntry(e: Omit<ShieldEntry, 'createdAt'>): Promise<ShieldEntry> {
    const now = new Date().toISOString();
    this.db.prepare('INSERT OR REPLACE INTO shield_entries (list, cidr, reason, expires_at, created_at) VALUES (?, ?, ?, ?, ?)').run(e.list, e.cidr, e.reason, e.expiresAt, now);
    return { ...e, createdAt: now };
  }

  async deleteShieldEntry(list: ShieldEntry['list'], cidr: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM shield_entries WHERE list = ? AND cidr = ?').run(list, cidr).changes > 0;
  }

  async putShieldEvent(e: ShieldEventRecord): Promise<number> {
    const details = JSON.stringify(e.details);
    if (e.id !== 0) {
      const changed = this.db.prepare('UPDATE shield_events SET kind = ?, started_at = ?, ended_at = ?, peak_pps = ?, packets = ?, details = ? WHERE id = ?').run(e.kind, e.startedAt, e.endedAt, Math.round(e.peakPps), Math.round(e.packets), details, e.id).changes;
      if (changed > 0) return e.id;
    }
    const id = Number(this.db.prepare('INSERT INTO shield_events (kind, started_at, ended_at, peak_pps, packets, details) VALUES (?, ?, ?, ?, ?, ?)').run(e.kind, e.startedAt, e.endedAt, Math.round(e.peakPps), Math.round(e.packets), details).lastInsertRowid);
    this.db.prepare('DELETE FROM shield_events WHERE id <= ?').run(id - SHIELD_EVENTS_KEPT);
    return id;
  }

  async listShieldEvents(opts: { limit: number; kind?: string }): Promise<ShieldEventRecord[]> {
    const rows = (opts.kind === undefined
      ? this.db.prepare('SELECT * FROM shield_events ORDER BY id DESC LIMIT ?').all(opts.limit)
      : this.db.prepare('SELECT * FROM shield_events WHERE kind = ? ORDER BY id DESC LIMIT ?').all(opts.kind, opts.limit)) as ShieldEventRow[];
    return rows.map(toShieldEvent);
  }

  async countUsers(): Promise<number> {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM users').get() as { n: number }).n;
  }

  async setApiTokenHash(hash: string): Promise<void> {
    this.setSetting('api_token_hash', hash);
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

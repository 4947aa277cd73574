// Users: creation with validated names, scrypt-hashed passwords, and a verification cache so that a
// SOCKS client opening many connections pays for scrypt once, not per connection. A user made with
// TURN access also gets the TURN long-term key MD5(username:realm:password), which TURN's
// MESSAGE-INTEGRITY needs and a one-way hash cannot give; the password itself is never stored.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { longTermKey } from '../codec/stun.js';
import { EdgewardError } from '../core/errors.js';
import { StoreError, type Store, type TurnKey, type UserPermissions, type UserRecord } from '../store/store.js';
import { hashPassword, verifyPassword } from './passwords.js';

export type UserErrorCode = 'invalid' | 'conflict' | 'not_found';

/** A rejected user operation; `field` names the offending field. */
export class UserError extends EdgewardError<UserErrorCode> {
  constructor(
    code: UserErrorCode,
    readonly field: string | null,
    message: string,
  ) {
    super(code, message);
  }
}

// RFC 1929 carries each of username and password in 1..255 bytes.
const USERNAME = /^[A-Za-z0-9._@-]{1,255}$/;

/** Checks a username/password pair for RFC 1929 limits; throws UserError naming the field. */
export function validateCredentials(username: string, password: string): void {
  if (!USERNAME.test(username)) {
    throw new UserError('invalid', 'username', 'username must be 1-255 characters of A-Z a-z 0-9 . _ @ -');
  }
  const bytes = Buffer.byteLength(password, 'utf8');
  if (bytes < 1 || bytes > 255) throw new UserError('invalid', 'password', 'password must be 1-255 bytes (RFC 1929 limit)');
}

/** The services a user's password opens (TURN has its own key). */
export type PasswordService = 'socks' | 'rendezvous' | 'console';

export class UserService extends EventEmitter<{ removed: [username: string] }> {
  /** HMAC of username + password for credentials verified since the last change of that user, and what they open */
  private readonly verified = new Map<string, { tag: Buffer } & UserPermissions>();
  private readonly cacheKey = randomBytes(32);

  /** `turnRealm`: the realm TURN keys are made for (the rendezvous service's --turn-realm) */
  constructor(
    private readonly store: Store,
    private readonly turnRealm = 'edgeward',
  ) {
    super();
  }

  private tag(username: string, password: string): Buffer {
    return createHmac('sha256', this.cacheKey).update(username).update('\0').update(password).digest();
  }

  /**
   * `turn`: the user may use the TURN server too (its key is made now, from the password);
   * `rendezvous`: may log in to the rendezvous service; `socks` (default true): may use the proxy;
   * `console`: may sign in to the console.
   */
  async create(username: string, password: string, opts: { turn?: boolean; rendezvous?: boolean; socks?: boolean; console?: boolean } = {}): Promise<UserRecord> {
    validateCredentials(username, password);
    const hash = await hashPassword(password);
    const turn = opts.turn ? { realm: this.turnRealm, key: longTermKey(username, this.turnRealm, password) } : undefined;
    try {
      return await this.store.createUser(username, hash, turn, { socks: opts.socks ?? true, rendezvous: opts.rendezvous ?? false, console: opts.console ?? false });
    } catch (e) {
      if (e instanceof StoreError && e.code === 'conflict') throw new UserError('conflict', 'username', e.message);
      throw e;
    }
  }

  /** Drops the cached verification of a user changed or removed by another thread. */
  forget(username: string): void {
    this.verified.delete(username);
  }

  async remove(username: string): Promise<void> {
    this.verified.delete(username);
    if (!(await this.store.deleteUser(username))) throw new UserError('not_found', 'username', `no user "${username}"`);
    this.emit('removed', username);
  }

  list(): Promise<UserRecord[]> {
    return this.store.listUsers();
  }

  /** The user's TURN key (null: no such user, or no TURN for them). */
  turnKey(username: string): Promise<TurnKey | null> {
    return this.store.getTurnKey(username);
  }

  count(): Promise<number> {
    return this.store.countUsers();
  }

  /** true when the credentials are right and the user may use `service`. */
  async verify(username: string, password: string, service: PasswordService = 'socks'): Promise<boolean> {
    const cached = this.verified.get(username);
    const tag = this.tag(username, password);
    if (cached && timingSafeEqual(cached.tag, tag)) return cached[service];
    const creds = await this.store.getCredentials(username);
    if (creds === null) return false;
    const ok = await verifyPassword(password, creds.passwordHash);
    // a user removed while scrypt ran must not land in the cache
    if (ok && (await this.store.getPasswordHash(username)) === creds.passwordHash) this.verified.set(username, { tag, socks: creds.socks, rendezvous: creds.rendezvous, console: creds.console });
    return ok && creds[service];
  }
}

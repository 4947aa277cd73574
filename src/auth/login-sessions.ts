// Login sessions: a user who logged in with name and password (the rendezvous service), or an
// operator who signed in to the console, gets a short-lived session token (32 random bytes) and a
// CSRF token of its own. Only the session token's SHA-256 is kept, in memory: a restart logs everyone
// out, which is the safe default for a credential this strong and this short-lived.
import { createHash, randomBytes } from 'node:crypto';

/** Every rendezvous session token starts so (a device token starts ewd_, a console session ewc_). */
export const SESSION_TOKEN_PREFIX = 'ews_';

/** A live session: its user (null: signed in with the API token), CSRF token and end (ms). */
export interface LoginSession<U> {
  user: U;
  csrf: string;
  expiresAt: number;
  /** set when the session is ended (logout, its user removed) */
  ended?: boolean;
}

function hash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64');
}

export class LoginSessions<U extends string | null = string> {
  /** hash -> session, oldest first */
  private readonly byHash = new Map<string, LoginSession<U>>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxSessions = 100_000,
    private readonly now: () => number = () => Date.now(),
    private readonly prefix = SESSION_TOKEN_PREFIX,
  ) {}

  /** A new session for `user`: its token (shown to the user once), CSRF token and end. */
  issue(user: U): LoginSession<U> & { token: string } {
    this.sweep();
    if (this.byHash.size >= this.maxSessions) this.byHash.delete(this.byHash.keys().next().value!);
    const token = `${this.prefix}${randomBytes(32).toString('base64url')}`;
    const session = { user, csrf: randomBytes(24).toString('base64url'), expiresAt: this.now() + this.ttlMs };
    this.byHash.set(hash(token), session);
    return { token, ...session };
  }

  /** The live session of a token; null for an expired, ended or unknown one. */
  lookup(token: string): LoginSession<U> | null {
    if (!token.startsWith(this.prefix) || token.length > 100) return null;
    const s = this.byHash.get(hash(token));
    if (!s) return null;
    if (s.expiresAt <= this.now()) {
      this.byHash.delete(hash(token));
      return null;
    }
    return s;
  }

  /** The user of a live session token; null for an expired, ended or unknown one. */
  userOf(token: string): U | null {
    return this.lookup(token)?.user ?? null;
  }

  /** true while a session looked up before is still live (not ended, not expired). */
  alive(s: LoginSession<U>): boolean {
    return s.ended !== true && s.expiresAt > this.now();
  }

  /** Ends one session (logout). */
  end(token: string): boolean {
    const s = this.byHash.get(hash(token));
    if (s) s.ended = true;
    return this.byHash.delete(hash(token));
  }

  /** Ends every session of `user` (a removed user). */
  endUser(user: U): void {
    for (const [h, s] of this.byHash) {
      if (s.user !== user) continue;
      s.ended = true;
      this.byHash.delete(h);
    }
  }

  get size(): number {
    return this.byHash.size;
  }

  private sweep(): void {
    const now = this.now();
    // oldest first: the expired ones are at the front
    for (const [h, s] of this.byHash) {
      if (s.expiresAt > now) break;
      this.byHash.delete(h);
    }
  }
}

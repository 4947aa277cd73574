// Login sessions of the rendezvous service: a user who logged in with name and password gets a
// short-lived session token (32 random bytes). Only its SHA-256 is kept, in memory: a restart logs
// everyone out, which is the safe default for a credential this strong and this short-lived.
import { createHash, randomBytes } from 'node:crypto';

/** Every session token starts so (a device token starts ewd_). */
export const SESSION_TOKEN_PREFIX = 'ews_';

function hash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64');
}

export class LoginSessions {
  /** hash -> session, oldest first */
  private readonly byHash = new Map<string, { user: string; expiresAt: number }>();

  constructor(
    private readonly ttlMs: number,
    private readonly maxSessions = 100_000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** A new session for `user`: its token (shown to the user once) and when it expires. */
  issue(user: string): { token: string; expiresAt: number } {
    this.sweep();
    if (this.byHash.size >= this.maxSessions) this.byHash.delete(this.byHash.keys().next().value!);
    const token = `${SESSION_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
    const expiresAt = this.now() + this.ttlMs;
    this.byHash.set(hash(token), { user, expiresAt });
    return { token, expiresAt };
  }

  /** The user of a live session token; null for an expired, ended or unknown one. */
  userOf(token: string): string | null {
    if (!token.startsWith(SESSION_TOKEN_PREFIX) || token.length > 100) return null;
    const s = this.byHash.get(hash(token));
    if (!s) return null;
    if (s.expiresAt <= this.now()) {
      this.byHash.delete(hash(token));
      return null;
    }
    return s.user;
  }

  /** Ends one session (logout). */
  end(token: string): boolean {
    return this.byHash.delete(hash(token));
  }

  /** Ends every session of `user` (a removed user). */
  endUser(user: string): void {
    for (const [h, s] of this.byHash) if (s.user === user) this.byHash.delete(h);
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

// TURN's long-term credential mechanism as the rendezvous service uses it: stateless nonces (an HMAC
// of the time and the client's address, so a spoofed flood creates no state) that go stale after
// 600 s (438), and the TURN REST credential scheme coturn implements: username "EXPIRY:USER",
// password base64(HMAC-SHA1(secret, username)); several secrets may be active so that they rotate.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { longTermKey } from '../codec/stun.js';

/** Seconds a nonce stays fresh (coturn's default). */
export const NONCE_LIFETIME_S = 600;

export class Nonces {
  private readonly key = randomBytes(32);

  constructor(private readonly now: () => number = () => Date.now()) {}

  /** A nonce for a client address: the issue time and an HMAC over it and the address. */
  issue(client: string): string {
    const t = Math.floor(this.now() / 1000).toString(16);
    return `${t}-${this.mac(t, client)}`;
  }

  /** 'ok', 'stale' (ours but older than NONCE_LIFETIME_S) or 'invalid' (not ours, or another client's). */
  check(nonce: string, client: string): 'ok' | 'stale' | 'invalid' {
    const m = /^([0-9a-f]{1,12})-([0-9a-f]{32})$/.exec(nonce);
    if (!m) return 'invalid';
    const expected = Buffer.from(this.mac(m[1]!, client), 'hex');
    if (!timingSafeEqual(expected, Buffer.from(m[2]!, 'hex'))) return 'invalid';
    const age = Math.floor(this.now() / 1000) - parseInt(m[1]!, 16);
    return age >= 0 && age < NONCE_LIFETIME_S ? 'ok' : 'stale';
  }

  private mac(t: string, client: string): string {
    return createHmac('sha256', this.key).update(`${t}|${client}`).digest('hex').slice(0, 32);
  }
}

export type RestUser = { ok: true; user: string; expiry: number; keys: Buffer[] } | { ok: false; why: 'malformed' | 'expired' | 'no_secret' };

/**
 * The long-term keys a TURN REST username may have been made with, one per active secret (the
 * client's MESSAGE-INTEGRITY tells which, if any). The username is "EXPIRY:USER" (EXPIRY in Unix
 * seconds); an expired one is refused.
 */
export function restCredentialKeys(username: string, realm: string, secrets: readonly string[], nowMs: number): RestUser {
  if (secrets.length === 0) return { ok: false, why: 'no_secret' };
  const m = /^(\d{1,12})(?::(.{1,500}))?$/s.exec(username);
  if (!m) return { ok: false, why: 'malformed' };
  const expiry = Number(m[1]);
  if (expiry * 1000 <= nowMs) return { ok: false, why: 'expired' };
  const keys = secrets.map((secret) => longTermKey(username, realm, createHmac('sha1', secret).update(username).digest('base64')));
  return { ok: true, user: m[2] ?? '', expiry, keys };
}

/** A REST credential for USER valid for ttlSeconds, made with `secret` (POST /api/v1/turn/credentials, tests). */
export function restCredential(user: string, secret: string, ttlSeconds: number, nowMs: number = Date.now()): { username: string; password: string; ttl: number } {
  const username = `${Math.floor(nowMs / 1000) + ttlSeconds}:${user}`;
  return { username, password: createHmac('sha1', secret).update(username).digest('base64'), ttl: ttlSeconds };
}

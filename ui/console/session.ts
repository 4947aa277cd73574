// The console session: signing in (the API token, or a user with console access) makes the server
// set an HttpOnly cookie and hand back a CSRF token, which stays in memory for the changes to send.
import { api, setCsrf } from './api.js';

export interface Session {
  /** the user signed in; null: signed in with the API token */
  user: string | null;
  csrf: string;
  expiresAt: string;
}

export type Credentials = { token: string } | { username: string; password: string };

const PATH = '/api/v1/console/session';

let current: Session | null = null;

function adopt(s: Session): Session {
  current = s;
  setCsrf(s.csrf);
  return s;
}

/** The session the cookie holds, or null when there is none (or it expired). */
export async function resume(): Promise<Session | null> {
  const s = await api<(Session & { signedIn: true }) | { signedIn: false }>('GET', PATH, undefined, { expect401: true });
  return s.signedIn ? adopt(s) : null;
}

/** Signs in; rejects with the server's ApiError (401 wrong credentials, 429 too many tries). */
export async function signIn(credentials: Credentials): Promise<Session> {
  return adopt(await api<Session>('POST', PATH, credentials, { expect401: true }));
}

/** Ends the session on the server (best effort) and forgets it here. */
export async function signOut(): Promise<void> {
  try {
    if (current) await api('DELETE', PATH, undefined, { expect401: true });
  } finally {
    forget();
  }
}

/** Forgets the session here only (the server said it is over). */
export function forget(): void {
  current = null;
  setCsrf(null);
}

export function session(): Session | null {
  return current;
}

// The API bearer token: from EDGEWARD_API_TOKEN, or generated once into DATA/api-token (0600).
// Only its SHA-256 is kept in the store; the token itself is never logged.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Store } from '../store/store.js';

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export interface ApiTokenSetup {
  /** checks a presented bearer token */
  verify(token: string): boolean;
  /** where the generated token was written, when it came from the data directory */
  file: string | null;
  generated: boolean;
}

/** Sets up the API token for this start. */
export async function setupApiToken(store: Store, dataDir: string, envToken: string | undefined): Promise<ApiTokenSetup> {
  let token: string;
  let file: string | null = null;
  let generated = false;
  if (envToken !== undefined && envToken !== '') {
    token = envToken;
  } else {
    file = join(dataDir, 'api-token');
    if (existsSync(file)) {
      token = readFileSync(file, 'utf8').trim();
    } else {
      token = randomBytes(32).toString('base64url');
      writeFileSync(file, `${token}\n`, { mode: 0o600, flag: 'wx' });
      generated = true;
    }
  }
  const hash = sha256(token);
  await store.setApiTokenHash(hash.toString('hex'));
  return {
    verify: (presented) => timingSafeEqual(sha256(presented), hash),
    file,
    generated,
  };
}

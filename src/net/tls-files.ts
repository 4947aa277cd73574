// A PEM certificate chain and its private key from files, read and checked against each other
// (a key that does not match its certificate fails here, at start, not at the first client).
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

/** Reads the pair; throws an Error naming the flag and the file at fault. */
export function readPemPair(certFile: string, keyFile: string, flags: { cert: string; key: string }): { cert: Buffer; key: Buffer } {
  const read = (file: string, flag: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
  };
  const cert = read(certFile, flags.cert);
  const key = read(keyFile, flags.key);
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new Error(`${flags.cert} ${certFile} / ${flags.key} ${keyFile}: ${(e as Error).message} (PEM certificate chain and its private key expected)`);
  }
  return { cert, key };
}

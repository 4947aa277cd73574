// The CLI's side of the REST API: where it is (EDGEWARD_API_URL), the bearer token
// (EDGEWARD_API_TOKEN or DATA/api-token), requests, and errors turned into one clear line.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { EdgewardError } from '../core/errors.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';
export const DEFAULT_DATA_DIR = './.edgeward';
const REQUEST_TIMEOUT_MS = 30_000;

/** The environment variables every API client command reads, for usage texts. */
export const ENV_HELP = `Environment:
  EDGEWARD_API_URL    the API of a running "edgeward start" (default ${DEFAULT_API_URL})
  EDGEWARD_API_TOKEN  its bearer token (default: the file DATA/api-token, DATA = --data or ${DEFAULT_DATA_DIR})
`;

/** An error reply the CLI received from the API: status, the reply's code, message naming the field. */
export class ApiReplyError extends EdgewardError {
  constructor(
    readonly status: number,
    code: string,
    readonly field: string | null,
    message: string,
    readonly available?: string[],
  ) {
    super(code, message);
  }
}

/** The API could not be reached at all (not running, wrong URL, timeout). */
export class ApiUnreachable extends EdgewardError<'unreachable'> {
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super('unreachable', `cannot reach the edgeward API at ${url} (${reason}): is "edgeward start" running?`);
  }
}

/** A local problem before any request: no token, bad URL. */
export class ClientSetupError extends EdgewardError<'client_setup'> {
  constructor(message: string) {
    super('client_setup', message);
  }
}

export class ApiClient {
  constructor(
    readonly baseUrl: string,
    private readonly token: string,
  ) {}

  /** Sends a request; resolves to the parsed JSON body (undefined for 204). Throws ApiReplyError / ApiUnreachable. */
  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(new URL(path, this.baseUrl), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new ApiUnreachable(this.baseUrl, networkReason(e));
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const err = (parsed as { error?: { code?: unknown; message?: unknown; field?: unknown; available?: unknown } } | undefined)?.error;
      if (err && typeof err.message === 'string') {
        throw new ApiReplyError(
          res.status,
          typeof err.code === 'string' ? err.code : 'error',
          typeof err.field === 'string' ? err.field : null,
          err.message,
          Array.isArray(err.available) ? err.available.map(String) : undefined,
        );
      }
      throw new ApiReplyError(res.status, 'error', null, `HTTP ${res.status} ${res.statusText} from ${this.baseUrl}: is this an edgeward API?`);
    }
    if (res.status !== 204 && parsed === undefined) {
      throw new ApiReplyError(res.status, 'error', null, `the reply from ${this.baseUrl} is not JSON: is this an edgeward API?`);
    }
    return parsed as T;
  }
}

function networkReason(e: unknown): string {
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) return `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`;
  const cause = (e as { cause?: unknown }).cause;
  const pick = (c: unknown): string | undefined => {
    if (typeof c !== 'object' || c === null) return undefined;
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    const inner = (c as { errors?: unknown[] }).errors;
    return Array.isArray(inner) ? pick(inner[0]) : undefined;
  };
  return pick(cause) ?? (cause instanceof Error ? cause.message : e instanceof Error ? e.message : String(e));
}

/** Makes the client from the environment: EDGEWARD_API_URL, EDGEWARD_API_TOKEN, else DATA/api-token. */
export function clientFromEnv(dataDir: string | undefined, env: NodeJS.ProcessEnv = process.env): ApiClient {
  const url = env.EDGEWARD_API_URL && env.EDGEWARD_API_URL !== '' ? env.EDGEWARD_API_URL : DEFAULT_API_URL;
  try {
    const u = new URL(url);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http');
  } catch {
    throw new ClientSetupError(`EDGEWARD_API_URL "${url}" is not an http:// or https:// URL`);
  }
  let token = env.EDGEWARD_API_TOKEN;
  if (token === undefined || token === '') {
    const file = join(resolve(dataDir ?? DEFAULT_DATA_DIR), 'api-token');
    try {
      token = readFileSync(file, 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new ClientSetupError(`no API token: set EDGEWARD_API_TOKEN, or point --data at the data directory of "edgeward start" (cannot read ${file}: ${code})`);
    }
    if (token === '') throw new ClientSetupError(`no API token: ${file} is empty; set EDGEWARD_API_TOKEN`);
  }
  return new ApiClient(url, token);
}

/** Prints an error of a client command to stderr; returns the exit code (1). */
export function reportError(e: unknown, prefix = 'edgeward'): number {
  if (e instanceof ApiReplyError && e.status === 401) {
    process.stderr.write(`${prefix}: the API refused the token (${e.message}): set EDGEWARD_API_TOKEN to the token of the running edgeward (see DATA/api-token)\n`);
    return 1;
  }
  if (e instanceof ApiReplyError) {
    process.stderr.write(`${prefix}: ${e.message}\n`);
    return 1;
  }
  if (e instanceof ApiUnreachable || e instanceof ClientSetupError) {
    process.stderr.write(`${prefix}: ${e.message}\n`);
    return 1;
  }
  throw e;
}

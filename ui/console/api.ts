// The REST API from the page: JSON in and out with the session cookie (same origin), the CSRF token
// on every change, errors as one typed value carrying the server's code, message and field, and a
// 401 anywhere sending the user back to the sign-in form.

/** An API call that did not succeed: the server's error body, or what went wrong on the way. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** the offending field as the server names it, e.g. body.transport.congestion */
    readonly field: string | null = null,
    /** what this kernel offers, when the server lists it */
    readonly available: string[] = [],
  ) {
    super(message);
  }
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

const TIMEOUT_MS = 15_000;

// the CSRF token lives here only (never in storage): a reload asks the server for it again
let csrf: string | null = null;
let unauthorized: () => void = () => undefined;

export function setCsrf(token: string | null): void {
  csrf = token;
}

/** What to do when a call answers 401 (the session ended): show the sign-in form. */
export function onUnauthorized(fn: () => void): void {
  unauthorized = fn;
}

export interface CallOptions {
  /** a 401 is the answer itself (signing in), not an ended session */
  expect401?: boolean;
}

function errorOf(status: number, body: unknown): ApiError {
  const e = (body as { error?: { code?: unknown; message?: unknown; field?: unknown; available?: unknown } } | undefined)?.error;
  if (e && typeof e.message === 'string') {
    return new ApiError(
      status,
      typeof e.code === 'string' ? e.code : 'error',
      e.message,
      typeof e.field === 'string' ? e.field : null,
      Array.isArray(e.available) ? e.available.filter((x): x is string => typeof x === 'string') : [],
    );
  }
  return new ApiError(status, 'http_error', `the server answered HTTP ${status}`);
}

/** Calls the API; resolves with the JSON body (undefined for 204), rejects with an ApiError. */
export async function api<T>(method: Method, path: string, body?: unknown, opts: CallOptions = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrf !== null) headers['x-csrf-token'] = csrf;
  let res: Response;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (e) {
    const timedOut = e instanceof DOMException && e.name === 'TimeoutError';
    throw new ApiError(0, timedOut ? 'timeout' : 'network', timedOut ? `no answer from the gateway within ${TIMEOUT_MS / 1000} s` : 'the gateway cannot be reached');
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (res.ok) return parsed as T;
  const err = errorOf(res.status, parsed);
  if (res.status === 401 && !opts.expect401) unauthorized();
  throw err;
}

/** The message to show for any failure of a call. */
export function messageOf(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

/**
 * Whether a service runs (GET /api/v1/services): a view asks before it calls a service's own
 * routes, which answer 404 while it is off (the browser would log each such 404 as an error).
 */
export async function serviceRunning(name: string): Promise<boolean> {
  const { services } = await api<{ services: Array<{ name: string; running: boolean }> }>('GET', '/api/v1/services');
  return services.some((s) => s.name === name && s.running);
}

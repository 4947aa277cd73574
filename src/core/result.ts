// Success or a typed failure, returned instead of thrown, for parsers and validators whose callers
// decide what a failure means (a 422, a skipped line, an exit code).

export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err<E> = { readonly ok: false; readonly error: E };
export type Result<T, E> = Ok<T> | Err<E>;

/** A success holding `value`. */
export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}

/** A failure holding `error`. */
export function err<E>(error: E): Err<E> {
  return { ok: false, error };
}

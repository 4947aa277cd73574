// Every failure the API reports, as one JSON shape with a stable code: schema failures (Ajv errors
// turned into a sentence naming the field), body-parser failures, service errors, and the rest.
import type { FastifyError, FastifySchemaValidationError } from 'fastify';
import { UserError } from '../auth/users.js';
import { EdgewardError } from '../core/errors.js';
import { PolicyError } from '../policy/service.js';
import type { ErrorBodyType } from './schemas.js';

/** An error the API reports as is: HTTP status, stable code, the field at fault. */
export class ApiError extends EdgewardError {
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

export interface ErrorReply {
  status: number;
  body: ErrorBodyType;
}

function reply(status: number, code: string, field: string | null, message: string, available?: string[]): ErrorReply {
  const error: ErrorBodyType['error'] = { code, message, field };
  if (available) error.available = available;
  return { status, body: { error } };
}

const SERVICE_STATUS = { invalid: 422, unsupported: 422, conflict: 409, not_found: 404 } as const;

/** A PolicyError or UserError with its field renamed from `from` (a prefix) to `to`, in the message too. */
export function renameField<E extends PolicyError | UserError>(e: E, from: string, to: string): ApiError {
  const field = e.field === null ? null : e.field === from ? to : e.field.startsWith(`${from}.`) ? to + e.field.slice(from.length) : e.field;
  const message = from !== '' && e.message.startsWith(from) ? to.replace(/^body\./, '') + e.message.slice(from.length) : e.message;
  return new ApiError(SERVICE_STATUS[e.code], e.code, field, message, e instanceof PolicyError ? e.available : undefined);
}

/** Where a service's field lives in the request: ids in the path, the rest in the body. */
function serviceField(e: PolicyError | UserError): string | null {
  if (e.field === null) return null;
  if (e.code === 'not_found' && (e.field === 'id' || e.field === 'username')) return `params.${e.field}`;
  return `body.${e.field}`;
}

// ---- schema failures ----

type AjvError = FastifySchemaValidationError & { parentSchema?: Record<string, unknown>; schema?: unknown };

/** "/policies/0/transport" -> "policies[0].transport" */
function pointerToPath(pointer: string): string {
  let out = '';
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    out += /^[0-9]+$/.test(seg) ? `[${seg}]` : `.${seg}`;
  }
  return out;
}

function depth(e: AjvError): number {
  return e.instancePath === '' ? 0 : e.instancePath.split('/').length - 1;
}

/** How telling an error is: a type mismatch inside one alternative says less than a missing field. */
function specificity(e: AjvError): number {
  if (e.keyword === 'anyOf' || e.keyword === 'oneOf') return 0;
  if (e.keyword === 'type' || e.keyword === 'const' || e.keyword === 'enum') return 1;
  return 2;
}

/** "an object", "false", "\"1\"", "a string" for one alternative of an anyOf. */
function describeAlternative(s: unknown): string {
  if (typeof s !== 'object' || s === null) return 'valid';
  const o = s as Record<string, unknown>;
  if ('const' in o) return JSON.stringify(o.const);
  const types = Array.isArray(o.type) ? o.type : [o.type];
  return types
    .map((t) => (t === 'null' ? 'null' : t === 'object' ? 'an object' : t === 'array' ? 'an array' : t === 'integer' ? 'an integer' : `a ${String(t)}`))
    .join(' or ');
}

function listAlternatives(items: string[]): string {
  const unique = [...new Set(items)];
  if (unique.length <= 1) return unique[0] ?? 'valid';
  return `${unique.slice(0, -1).join(', ')} or ${unique[unique.length - 1]}`;
}

function sentence(e: AjvError, path: string, all: AjvError[]): { message: string; field: string } {
  const p = e.params;
  switch (e.keyword) {
    case 'additionalProperties':
      return { message: `${path}: unknown field "${String(p.additionalProperty)}"`, field: `${path}.${String(p.additionalProperty)}` };
    case 'required':
      return { message: `${path}: missing required field "${String(p.missingProperty)}"`, field: `${path}.${String(p.missingProperty)}` };
    case 'type': {
      // a type mismatch inside one alternative of an anyOf: name all the alternatives instead
      const parent = all.find((a) => a.keyword === 'anyOf' && a.instancePath === e.instancePath && e.schemaPath.startsWith(a.schemaPath.replace(/\/anyOf$/, '/')));
      if (parent) return sentence(parent, path, all);
      return { message: `${path} must be ${String(p.type).split(',').join(' or ')}`, field: path };
    }
    case 'const': {
      const parent = all.find((a) => a.keyword === 'anyOf' && a.instancePath === e.instancePath);
      if (parent) return sentence(parent, path, all);
      return { message: `${path} must be ${JSON.stringify(p.allowedValue)}`, field: path };
    }
    case 'anyOf':
    case 'oneOf': {
      const alternatives = Array.isArray(e.schema) ? e.schema.map(describeAlternative) : [];
      return { message: `${path} must be ${listAlternatives(alternatives)}`, field: path };
    }
    case 'pattern': {
      // a pattern stands for a kind of value; its schema's title names it ("an integer")
      const title = e.parentSchema?.title;
      return { message: `${path} must be ${typeof title === 'string' ? title : `text matching ${String(p.pattern)}`}`, field: path };
    }
    default:
      return { message: `${path} ${e.message ?? 'is invalid'}`, field: path };
  }
}

/**
 * One sentence for a failed schema validation, naming the field. `pickBranch` chooses the
 * alternative of a top-level anyOf the input was meant for (0-based), so that the error is about
 * that alternative and not a list of everything the input failed to be.
 */
export function validationError(errors: readonly FastifySchemaValidationError[], context: string, pickBranch?: () => number | null): ErrorReply {
  let errs = errors as AjvError[];
  const rootUnion = errs.find((e) => e.keyword === 'anyOf' && e.instancePath === '' && e.schemaPath === '#/anyOf');
  const branch = rootUnion && pickBranch ? pickBranch() : null;
  if (branch !== null) {
    const prefix = `#/anyOf/${branch}/`;
    const inBranch = errs.filter((e) => e.schemaPath.startsWith(prefix));
    if (inBranch.length > 0) errs = inBranch;
  }
  let best = errs[0];
  for (const e of errs) {
    if (!best || depth(e) > depth(best) || (depth(e) === depth(best) && specificity(e) > specificity(best))) best = e;
  }
  if (!best) return reply(400, 'invalid_request', null, `${context} is invalid`);
  const { message, field } = sentence(best, context + pointerToPath(best.instancePath), errs);
  return reply(400, 'invalid_request', field, message);
}

// ---- everything else ----

/** The reply for any error thrown while handling a request; `internal` is set for a real fault. */
export function errorReply(err: unknown): ErrorReply & { internal?: boolean } {
  if (err instanceof ApiError) return reply(err.status, err.code, err.field, err.message, err.available);
  if (err instanceof PolicyError) return reply(SERVICE_STATUS[err.code], err.code, serviceField(err), err.message, err.available);
  if (err instanceof UserError) return reply(SERVICE_STATUS[err.code], err.code, serviceField(err), err.message);
  const fe = err as Partial<FastifyError>;
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return reply(400, 'invalid_json', 'body', `body is not valid JSON: ${jsonDetail(err)}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return reply(400, 'invalid_json', 'body', 'body is empty but content-type is application/json');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return reply(415, 'unsupported_media_type', 'headers.content-type', 'content-type must be application/json');
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return reply(413, 'body_too_large', 'body', 'body is too large for this endpoint');
    default:
      break;
  }
  if (err instanceof SyntaxError && (err as { statusCode?: number }).statusCode === 400) {
    return reply(400, 'invalid_json', 'body', `body is not valid JSON: ${err.message}`);
  }
  const status = fe.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return reply(status, 'bad_request', null, fe.message ?? 'bad request');
  }
  return { ...reply(500, 'internal_error', null, 'internal error: see the edgeward log'), internal: true };
}

function jsonDetail(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : 'parse error';
}

import type { Duplex } from 'node:stream';
import { Ajv, type ErrorObject, type SchemaValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import secureJson from 'secure-json-parse';
import { ulid } from './ids.js';
import { inputProblem, type JsonShape, shapeProblem } from './input.js';
import { AppError, type FieldError, toProblem } from './problem.js';

export const REQUEST_ID_HEADER = 'x-request-id';

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(headers: { authorization?: string | undefined }): string | undefined {
  return BEARER.exec(headers.authorization ?? '')?.[1];
}
const BEARER = /^Bearer\s+(\S+)$/i;
const CLIENT_REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** A client's own X-Request-Id is kept when it is sane, so its logs and ours line up. */
export function requestIdFrom(req: { headers: Record<string, string | string[] | undefined> }): string {
  const given = req.headers[REQUEST_ID_HEADER];
  return typeof given === 'string' && CLIENT_REQUEST_ID.test(given) ? given : `req_${ulid()}`;
}

/**
 * Human messages for the few formats we use, and for schemas that carry their own
 * `x-message` (a pattern's meaning, said in words).
 */
const FORMAT_MESSAGES: Record<string, string> = {
  email: 'must be an email address',
  'date-time': 'must be an RFC 3339 date-time such as 2026-01-31T00:00:00Z',
  date: 'must be a date such as 2026-01-31',
  uri: 'must be an absolute URL',
};

function fieldOf(err: ErrorObject): string {
  const path = err.instancePath
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
  if (err.keyword === 'required') path.push(String(err.params.missingProperty));
  if (err.keyword === 'additionalProperties') path.push(String(err.params.additionalProperty));
  return path.join('.');
}

function messageOf(err: ErrorObject): string {
  const custom = (err.parentSchema as { 'x-message'?: string } | undefined)?.['x-message'];
  switch (err.keyword) {
    case 'required':
      return 'is required';
    case 'additionalProperties':
      return 'is not a known field';
    case 'format':
      return FORMAT_MESSAGES[String(err.params.format)] ?? `must be a valid ${err.params.format}`;
    case 'pattern':
      return custom ?? 'has an invalid format';
    case 'enum':
      return `must be one of ${(err.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'type':
      return `must be ${err.params.type === 'integer' ? 'a whole number' : `of type ${err.params.type}`}`;
    default:
      return custom ?? err.message ?? 'is invalid';
  }
}

/** Turns Ajv's errors into `{field, message}`: one per field, the most useful first. */
export function toFieldErrors(errors: ErrorObject[]): FieldError[] {
  const out = new Map<string, string>();
  // A union of constants (an enum written as literals) fails once per branch: name them all.
  const allowed = new Map<string, unknown[]>();
  for (const e of errors)
    if (e.keyword === 'const') {
      const field = fieldOf(e) || '(body)';
      allowed.set(field, [...(allowed.get(field) ?? []), e.params.allowedValue]);
    }
  // anyOf/oneOf wrap their branches' errors; the branch errors say more.
  for (const e of errors) {
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') continue;
    const field = fieldOf(e) || '(body)';
    const values = allowed.get(field);
    if (!out.has(field))
      out.set(
        field,
        e.keyword === 'const' && values
          ? `must be one of ${values.map((v) => JSON.stringify(v)).join(', ')}`
          : messageOf(e),
      );
  }
  if (out.size === 0 && errors[0]) out.set(fieldOf(errors[0]) || '(body)', messageOf(errors[0]));
  return [...out].map(([field, message]) => ({ field, message }));
}

function makeAjv(coerce: boolean) {
  const ajv = new Ajv({
    allErrors: true,
    verbose: true,
    coerceTypes: coerce ? 'array' : false,
    useDefaults: true,
    removeAdditional: false,
    strict: false,
  });
  addFormats.default(ajv);
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  // Free-form JSON (metadata) under caps a schema cannot say: depth, size, and keys at every level.
  const checkShape: SchemaValidateFunction = (shape: JsonShape, data: unknown) => {
    const problem = shapeProblem(data, shape);
    checkShape.errors = problem
      ? [
          {
            keyword: 'x-json',
            message: problem.path ? `${problem.path}: ${problem.message}` : problem.message,
          },
        ]
      : [];
    return problem === undefined;
  };
  ajv.addKeyword({ keyword: 'x-json', schemaType: 'object', errors: true, validate: checkShape });
  return ajv;
}

function isEmptyObject(v: unknown): boolean {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
}

function invalidInput(problem: { field: string; message: string }): AppError {
  return new AppError('validation_failed', `${problem.field}: ${problem.message}`, { errors: [problem] });
}

/**
 * Bodies are validated strictly (a string is never a number, an unknown field is an error);
 * query strings and path parameters are text, so they are coerced. Before any schema, every
 * string of the path and query passes the one rule for stored text (src/lib/input.ts); the
 * body's did in the parser.
 */
export function installValidation(app: FastifyInstance): void {
  app.addHook('preValidation', (req, _reply, done) => {
    const problem = inputProblem(req.params, '', 2) ?? inputProblem(req.query, '', 2);
    if (problem) return done(invalidInput(problem));
    // A route that takes no body refuses one rather than ignore it (an empty object is no body);
    // Better Auth's routes are passed through whole, and their handler reads what they take.
    const takesBody =
      req.routeOptions.schema?.body !== undefined || req.routeOptions.url?.startsWith('/api/auth/');
    if (!takesBody && req.body !== undefined && !isEmptyObject(req.body))
      return done(invalidInput({ field: '(body)', message: 'must be empty: this endpoint takes no body' }));
    done();
  });
  const strict = makeAjv(false);
  const coercing = makeAjv(true);
  app.setValidatorCompiler(({ schema, httpPart }) => {
    const ajv = httpPart === 'body' ? strict : coercing;
    return ajv.compile(schema) as ReturnType<Parameters<FastifyInstance['setValidatorCompiler']>[0]>;
  });
  app.setSchemaErrorFormatter((errors, dataVar) => {
    const fieldErrors = toFieldErrors(errors as ErrorObject[]);
    const detail = fieldErrors.map((e) => `${e.field}: ${e.message}`).join('; ');
    return new AppError('validation_failed', detail || `${dataVar} is invalid`, { errors: fieldErrors });
  });
}

/** JSON only; an empty body is "no body" (a POST to an action route often has none). */
export function installJsonParser(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(
    /^application\/(?:[a-z0-9.+-]*\+)?json\s*(?:;.*)?$/i,
    { parseAs: 'string' },
    (_req, body, done) => {
      const text = String(body);
      if (text.trim() === '') return done(null, undefined);
      let parsed: unknown;
      try {
        parsed = secureJson.parse(text, undefined, { protoAction: 'remove', constructorAction: 'remove' });
      } catch (err) {
        return done(
          new AppError('invalid_json', `The body is not valid JSON: ${(err as Error).message}`),
          undefined,
        );
      }
      const problem = inputProblem(parsed);
      if (problem) return done(invalidInput(problem), undefined);
      done(null, parsed);
    },
  );
}

function fromFastifyError(err: FastifyError): AppError | undefined {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError('payload_too_large', 'The body is larger than this endpoint accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE'
        ? new AppError('unsupported_media_type', 'Send the body as application/json')
        : new AppError('validation_failed', 'The Content-Length header does not match the body');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new AppError('invalid_json', err.message);
    case 'FST_ERR_RATE_LIMIT':
    case 'FST_ERR_RATE_LIMIT_EXCEEDED':
      return new AppError('rate_limited', err.message);
    default:
      break;
  }
  if (err.validation) {
    const errors = toFieldErrors(err.validation as ErrorObject[]);
    return new AppError('validation_failed', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
      errors,
    });
  }
  if (err.statusCode === 429) return new AppError('rate_limited', err.message);
  if (err.statusCode === 413) return new AppError('payload_too_large', err.message);
  if (err.statusCode === 415) return new AppError('unsupported_media_type', err.message);
  if (err.statusCode === 400) return new AppError('validation_failed', err.message);
  return undefined;
}

/**
 * What Node's HTTP parser refuses before Fastify sees a request (headers past 16 KiB, a malformed
 * request line or header) is answered as problem+json too, on the raw socket, and closed.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const problem =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new AppError('headers_too_large', 'The request headers are larger than 16 KiB')
      : new AppError('validation_failed', 'The request is not valid HTTP/1.1');
  const body = JSON.stringify(toProblem(problem, `req_${ulid()}`));
  socket.end(
    `HTTP/1.1 ${problem.status} ${problem.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: application/problem+json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
      `Connection: close\r\n\r\n${body}`,
  );
}

export function sendProblem(reply: FastifyReply, err: AppError, requestId: string): FastifyReply {
  return reply
    .status(err.status)
    .type('application/problem+json')
    .send(JSON.stringify(toProblem(err, requestId)));
}

/** Every error leaves as problem+json; anything unexpected is a logged 500 with a generic detail. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    const known = error instanceof AppError ? error : fromFastifyError(error);
    if (known) {
      if (known.status >= 500) req.log.error({ err: error }, 'request failed');
      return sendProblem(reply, known, req.id);
    }
    req.log.error({ err: error }, 'unexpected error');
    return sendProblem(
      reply,
      new AppError('internal_error', 'Something went wrong on our side; quote the request id'),
      req.id,
    );
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(
      reply,
      new AppError('route_not_found', `No route for ${req.method} ${req.url.split('?')[0]}`),
      req.id,
    ),
  );
}

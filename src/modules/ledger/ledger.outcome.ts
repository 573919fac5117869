/**
 * What a ledger operation decided, in the ledger's own terms: applied, with the value it answers
 * (a view from ledger.views.ts, plain JSON), or refused, with a code of the closed catalogue
 * (src/lib/problem.ts) and its detail. No HTTP here: the routes render an outcome (JSON, or
 * problem+json for a refusal). An idempotency record keeps the outcome as JSON text (toStored),
 * and a replay parses it back (fromStored): rendering what was parsed gives the bytes the first
 * rendering gave, because JSON text read back into JavaScript keeps its key order.
 *
 * The transactions an operation posted are not in its outcome: they are in the batch's
 * (BatchOutcome.transactions in ledger.batch.ts), every transaction one database transaction
 * applies, in order — a refusal can post one too (a capture that finds its hold expired).
 */
import { AppError, type ErrorCode, ErrorCodes, type FieldError } from '../../lib/problem.js';

export interface Applied<V = unknown> {
  readonly ok: true;
  /** What the operation answers: plain JSON (no bigint, no Date), kept as-is for replays. */
  readonly value: V;
  /** An answer given again from its idempotency record: nothing was applied this time. */
  readonly replayed?: boolean;
}

export interface Refused {
  readonly ok: false;
  readonly code: ErrorCode;
  readonly detail: string;
  readonly errors?: FieldError[] | undefined;
  /** The problem's extra members (an AppError's `extra`). */
  readonly extra?: Record<string, unknown> | undefined;
  /** The request that was refused: a replay answers with the first request's id, as it was. */
  readonly requestId: string;
  readonly replayed?: boolean;
}

export type Outcome<V = unknown> = Applied<V> | Refused;

export function applied<V>(value: V): Applied<V> {
  return { ok: true, value };
}

export function refused(code: ErrorCode, detail: string, requestId: string): Refused {
  return { ok: false, code, detail, requestId };
}

/** The refusal an AppError thrown while deciding stands for. */
export function refusedBy(err: AppError, requestId: string): Refused {
  return {
    ok: false,
    code: err.code,
    detail: err.message,
    errors: err.errors,
    extra: err.extra,
    requestId,
  };
}

/** The refusal as the error the routes render (problem+json). */
export function asError(r: Refused): AppError {
  return new AppError(r.code, r.detail, {
    ...(r.errors ? { errors: r.errors } : {}),
    ...(r.extra ? { extra: r.extra } : {}),
  });
}

/** The same outcome, answered again from its record. */
export function replayed<V>(o: Outcome<V>): Outcome<V> {
  return { ...o, replayed: true };
}

/**
 * An outcome as an idempotency record keeps it (the `outcome` text column): JSON text, never
 * jsonb, which would reorder the keys of the answer and of the metadata inside it.
 */
export function toStored(o: Outcome): string {
  if (o.ok) return `{"ok":true,"value":${JSON.stringify(o.value) ?? 'null'}}`;
  return JSON.stringify({
    ok: false,
    code: o.code,
    detail: o.detail,
    request_id: o.requestId,
    errors: o.errors,
    extra: o.extra,
  });
}

function errorCode(v: unknown): ErrorCode {
  return typeof v === 'string' && Object.hasOwn(ErrorCodes, v) ? (v as ErrorCode) : 'internal_error';
}

/** An outcome from its record: written by toStored, or by a version before it (`legacy`). */
export function fromStored(record: {
  outcome: string | null;
  status_code: number | null;
  response: unknown;
}): Outcome {
  if (record.outcome === null) return fromLegacy(record.status_code ?? 500, record.response);
  const o = JSON.parse(record.outcome) as Record<string, unknown>;
  if (o.ok === true) return { ok: true, value: o.value };
  return {
    ok: false,
    code: errorCode(o.code),
    detail: String(o.detail),
    requestId: String(o.request_id),
    errors: o.errors as FieldError[] | undefined,
    extra: o.extra as Record<string, unknown> | undefined,
  };
}

/**
 * A record written before outcomes were stored (migration 0013): the HTTP status and body, as
 * jsonb. A success's body is its value; a problem's members are its refusal. Its replay has the
 * first answer's members and values, in jsonb's key order: the first order is not known anymore.
 */
function fromLegacy(status: number, response: unknown): Outcome {
  if (status < 400) return { ok: true, value: response };
  const {
    type: _type,
    title: _title,
    status: _status,
    code,
    detail,
    request_id,
    errors,
    ...extra
  } = (response ?? {}) as Record<string, unknown>;
  return {
    ok: false,
    code: errorCode(code),
    detail: String(detail ?? ''),
    requestId: String(request_id ?? ''),
    errors: errors as FieldError[] | undefined,
    extra: Object.keys(extra).length > 0 ? extra : undefined,
  };
}

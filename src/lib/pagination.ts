import { Type } from 'typebox';
import { textProblem } from './input.js';
import { AppError } from './problem.js';

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;

export const PageQuery = {
  limit: Type.Optional(
    Type.Integer({ minimum: 1, maximum: MAX_LIMIT, default: DEFAULT_LIMIT, description: 'Page size' }),
  ),
  cursor: Type.Optional(
    Type.String({ maxLength: 512, description: 'The `next_cursor` of the previous page' }),
  ),
};

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

/** Cursors are opaque to clients: base64url of the sort key of the last row returned. */
export function encodeCursor(key: string): string {
  return Buffer.from(JSON.stringify({ k: key })).toString('base64url');
}

export function decodeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    // A forged cursor is text like any other: it must be storable to be compared in SQL.
    if (
      parsed &&
      typeof parsed === 'object' &&
      'k' in parsed &&
      typeof parsed.k === 'string' &&
      textProblem(parsed.k) === undefined
    )
      return parsed.k;
  } catch {
    // fall through to the 400 below
  }
  throw new AppError('invalid_cursor', 'cursor: is not a cursor this API returned', {
    errors: [{ field: 'cursor', message: 'is not a cursor this API returned' }],
  });
}

/**
 * Builds a page from `limit + 1` fetched rows: the extra row only says whether there is more.
 */
export function toPage<R, T>(rows: R[], limit: number, key: (row: R) => string, map: (row: R) => T): Page<T> {
  const more = rows.length > limit;
  const pageRows = more ? rows.slice(0, limit) : rows;
  const last = pageRows.at(-1);
  return {
    data: pageRows.map(map),
    next_cursor: more && last !== undefined ? encodeCursor(key(last)) : null,
  };
}

export const PageResponse = <T extends import('typebox').TSchema>(item: T) =>
  Type.Object({ data: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });

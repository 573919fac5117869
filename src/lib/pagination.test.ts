import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeCursor, encodeCursor, toPage } from './pagination.js';
import { AppError } from './problem.js';

function expectInvalidCursor(cursor: string) {
  let thrown: unknown;
  try {
    decodeCursor(cursor);
  } catch (err) {
    thrown = err;
  }
  expect(thrown, `cursor ${JSON.stringify(cursor)} should be rejected`).toBeInstanceOf(AppError);
  const err = thrown as AppError;
  expect(err.code).toBe('invalid_cursor');
  expect(err.status).toBe(400);
  expect(err.errors).toEqual([{ field: 'cursor', message: expect.any(String) }]);
}

const b64 = (text: string) => Buffer.from(text).toString('base64url');

describe('cursors', () => {
  it.each(['org_01jd9zzzzzzzzzzzzzzzzzzzzz', '', 'a', 'ünïcödé 東京', '{"k":"x"}', 'x'.repeat(300)])(
    'round-trips %j',
    (key) => {
      const cursor = encodeCursor(key);
      expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeCursor(cursor)).toBe(key);
    },
  );

  it('no cursor means the first page', () => {
    expect(decodeCursor(undefined)).toBeUndefined();
    expect(decodeCursor('')).toBeUndefined();
  });

  it.each([
    ['not base64 at all', '!!!'],
    ['base64 of non-JSON', b64('hello')],
    ['random letters', 'abc'],
    ['JSON null', b64('null')],
    ['a JSON string', b64('"org_x"')],
    ['a JSON number', b64('42')],
    ['a JSON array', b64('["k"]')],
    ['an object without k', b64('{"x":"org_x"}')],
    ['k not a string', b64('{"k":42}')],
    ['k null', b64('{"k":null}')],
    ['truncated cursor', encodeCursor('org_01jd9zzzzzzzzzzzzzzzzzzzzz').slice(0, 10)],
    ['a space', ' '],
  ])('rejects %s', (_label, cursor) => {
    expectInvalidCursor(cursor);
  });

  it('round-trips any string (property)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.string({ unit: 'grapheme' })), (key) => {
        expect(decodeCursor(encodeCursor(key))).toBe(key);
      }),
      { numRuns: 1000 },
    );
  });

  it('any garbage either decodes to a string or throws invalid_cursor (property)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 100 }), (cursor) => {
        try {
          const key = decodeCursor(cursor);
          expect(key === undefined || typeof key === 'string').toBe(true);
        } catch (err) {
          expect(err).toBeInstanceOf(AppError);
          expect((err as AppError).code).toBe('invalid_cursor');
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('toPage', () => {
  const rows = [{ id: 'c' }, { id: 'b' }, { id: 'a' }];

  it('gives a cursor to the last returned row when limit + 1 rows came back', () => {
    const page = toPage(
      rows,
      2,
      (r) => r.id,
      (r) => r.id.toUpperCase(),
    );
    expect(page.data).toEqual(['C', 'B']);
    expect(page.next_cursor).not.toBeNull();
    expect(decodeCursor(page.next_cursor as string)).toBe('b');
  });

  it('has no next cursor on the last page', () => {
    expect(
      toPage(
        rows,
        3,
        (r) => r.id,
        (r) => r,
      ),
    ).toEqual({ data: rows, next_cursor: null });
    expect(
      toPage(
        [],
        3,
        (r: { id: string }) => r.id,
        (r) => r,
      ),
    ).toEqual({ data: [], next_cursor: null });
  });
});

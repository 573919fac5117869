import { type TSchema, Type } from 'typebox';

/**
 * Schema pieces every module uses, so a rule about text or amounts is written once.
 * PostgreSQL cannot store NUL in text, so no text field accepts it.
 */
export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/** A name: one line, not blank, no control characters. Stored as given. */
export const DisplayName = (maxLength = 200) =>
  Type.String({
    minLength: 1,
    maxLength,
    pattern: '^(?=[\\s\\S]*\\S)[^\\u0000-\\u001F\\u007F]*$',
    'x-message': 'must not be blank or contain control characters',
  });

/** Free text: newlines and tabs allowed, other control characters not. */
export const FreeText = (maxLength = 2000) =>
  Type.String({
    maxLength,
    pattern: '^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F]*$',
    'x-message': 'must not contain control characters',
  });

/**
 * A decimal amount: a string such as "12.5" (exact), or a JSON number, accepted as the seed's own
 * examples send them and converted without going through a float (src/lib/money.ts).
 */
export const DecimalInput = (description: string) =>
  Type.Union([Type.String({ maxLength: 40 }), Type.Number()], { description });

// Years 1000 to 9998: Date.UTC reads years 0-99 as 1900-1999, a day's window reaching back from
// early in year 1 would start in year 0 (which PostgreSQL refuses), and one ending late in 9999
// would end in a year of five digits, which no ISO 8601 timestamp holds.
const YEAR = '([1-8]\\d{3}|9[0-8]\\d{2}|99[0-8]\\d|999[0-8])';

/** A calendar month, e.g. "2026-11". */
export const MonthString = Type.String({
  pattern: `^${YEAR}-(0[1-9]|1[0-2])$`,
  'x-message': 'must be a month such as 2026-11, from 1000-01 to 9998-12',
});

/** A UTC day, e.g. "2026-11-30". */
export const DayString = (description = 'A UTC day, YYYY-MM-DD') =>
  Type.String({
    format: 'date',
    pattern: `^${YEAR}-`,
    'x-message': 'must be a day such as 2026-11-30, from 1000-01-01 to 9998-12-31',
    description,
  });

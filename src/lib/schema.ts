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

/**
 * Array literal for a text[]/bigint[] parameter, passed as text so both drivers agree. Elements
 * that need no quoting (ids, codes, numbers) go bare, so a literal nested in another (an array
 * of arrays passed as text[]) needs no escaping either.
 */
export function pgArray(values: Array<string | bigint | null>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i > 0) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (typeof v === 'bigint') out += v.toString();
    else if (BARE.test(v) && !(v.length === 4 && v.toLowerCase() === 'null')) out += v;
    else out += `"${NEEDS_ESCAPE.test(v) ? v.replace(ESCAPED, '\\$&') : v}"`;
  }
  return `${out}}`;
}

/** Safe unquoted in an array literal: no braces, commas, quotes, backslashes or white space. */
const BARE = /^[A-Za-z0-9_:.+@-]+$/;
const NEEDS_ESCAPE = /["\\]/;
const ESCAPED = /["\\]/g;

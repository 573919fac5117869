/** Array literal for a text[]/bigint[] parameter, passed as text so both drivers agree. */
export function pgArray(values: Array<string | bigint | null>): string {
  return `{${values.map((v) => (v === null ? 'NULL' : `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`)).join(',')}}`;
}

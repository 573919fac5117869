import { Ajv, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { InjectOptions } from 'fastify';
import { type BaseRequest, type Operation, type Schema, sessionOnly } from './fuzz-catalog.js';

/**
 * The malformations of the request fuzzer: ways to break exactly one part of an otherwise valid
 * request (one path parameter, one query parameter, one body field, the body as a whole or one
 * header), each with the reason it must be refused:
 * - `schema`: the published schema (/openapi.json, or Better Auth's rules) refuses the value; an
 *   Ajv of our own checks that, so a variant the schema would take is never generated;
 * - `text`: NUL or a lone UTF-16 surrogate in a string or a key (PostgreSQL stores neither);
 * - `depth`: JSON nested deeper than 32 levels (src/lib/input.ts);
 * - `json`: not JSON; `media`: not sent as JSON; `size`: over the 1 MiB body limit;
 * - `money`: not an amount ("1e308", "NaN", "-1", 7 decimals, past 10^12 credits, 0 where > 0);
 * - `meta`: metadata past its caps (keys of 64 characters, 5 levels, 16 KiB);
 * - `ref`: an id, slug or email that names nothing; `auth`: no valid credentials;
 * - `cursor`: not a cursor the API returned; `range`: a date range past its documented bound.
 * A variant marked `any` is merely odd (a far-future month on a GET): it must not fail (no 5xx,
 * problem+json if refused) but may be answered.
 */
export type Why =
  | 'schema'
  | 'text'
  | 'depth'
  | 'json'
  | 'media'
  | 'size'
  | 'money'
  | 'meta'
  | 'ref'
  | 'auth'
  | 'cursor'
  | 'range'
  | 'odd';

/** A request under construction: the parts a variant may break. */
export interface Draft {
  method: Operation['method'];
  /** Path parameters as they go into the URL (already percent-encoded, or deliberately not). */
  params: Record<string, string>;
  /** The raw query string, without `?`. */
  query: string;
  headers: Record<string, string>;
  /** The body's JSON value; `bodyText` wins when set (raw JSON, not JSON, or a Buffer). */
  body?: unknown;
  bodyText?: string | Buffer;
}

export interface Variant {
  kind: string;
  why: Why;
  expect: 'refuse' | 'any';
  /** Breaks the draft; returns what it did, for the report. */
  apply: (d: Draft, g: string, cut: number) => string;
}

export interface Target {
  group: 'path' | 'query' | 'body-field' | 'body' | 'header';
  name: string;
  variants: Variant[];
}

// ---------------------------------------------------------------------------------------------
// Oracles: the schemas, checked by an Ajv configured like the service's (strict bodies, coerced
// query strings), so that a `schema` variant is refused by the published contract.
// ---------------------------------------------------------------------------------------------

function makeAjv(coerce: boolean) {
  const ajv = new Ajv({ allErrors: false, coerceTypes: coerce ? 'array' : false, strict: false });
  addFormats.default(ajv);
  ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
  ajv.addKeyword({ keyword: 'x-json', schemaType: 'object' });
  return ajv;
}
const strictAjv = makeAjv(false);
const coercingAjv = makeAjv(true);
const compiled = new Map<Schema, ValidateFunction>();
function validator(schema: Schema, coerce: boolean): ValidateFunction {
  let v = compiled.get(schema);
  if (!v) {
    v = (coerce ? coercingAjv : strictAjv).compile(schema);
    compiled.set(schema, v);
  }
  return v;
}

export function bodyValid(op: Operation, value: unknown): boolean {
  return op.body ? Boolean(validator(op.body, false)(value)) : true;
}

const querySchemas = new Map<Operation, Schema>();
export function queryValid(op: Operation, query: Record<string, unknown>): boolean {
  let schema = querySchemas.get(op);
  if (!schema) {
    schema = { type: 'object', properties: op.query };
    querySchemas.set(op, schema);
  }
  return Boolean(validator(schema, true)(structuredClone(query)));
}

/** NUL or a lone surrogate anywhere in a JSON value, its keys included. */
export function hasBadText(v: unknown): boolean {
  const bad = (s: string) => s.includes('\u0000') || !s.isWellFormed();
  const stack = [v];
  while (stack.length) {
    const x = stack.pop();
    if (typeof x === 'string') {
      if (bad(x)) return true;
    } else if (x && typeof x === 'object') {
      for (const [k, c] of Object.entries(x)) {
        if (bad(k)) return true;
        stack.push(c);
      }
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Building blocks
// ---------------------------------------------------------------------------------------------

const ONE_MIB = 1024 * 1024;
/** A JSON text that stands for itself inside a body (raw numbers, deep nesting). */
class Raw {
  constructor(readonly text: string) {}
}
const HOLE = '\u0001fuzz-raw\u0001';

/** The JSON text of a body whose values may be Raw. */
export function bodyJson(body: unknown): string {
  const raws: string[] = [];
  const text = JSON.stringify(body, (_k, v) => {
    if (v instanceof Raw) {
      raws.push(v.text);
      return HOLE;
    }
    return v;
  });
  let i = 0;
  return text.replaceAll(JSON.stringify(HOLE), () => raws[i++] as string);
}

const deepArray = (n: number) => new Raw(`${'['.repeat(n)}${']'.repeat(n)}`);
const deepObject = (n: number) => new Raw(`${'{"a":'.repeat(n)}1${'}'.repeat(n)}`);
/** The JS value a Raw parses to (for the oracles), or the value itself. */
const parsed = (v: unknown): unknown => (v instanceof Raw ? JSON.parse(v.text) : v);

function short(v: unknown, max = 120): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : v instanceof Raw ? v.text : JSON.stringify(v);
  if (s === undefined) return String(s);
  return s.length > max ? `${s.slice(0, max)}… (${s.length} chars)` : s;
}

function clone<T>(v: T): T {
  return v === undefined ? v : (JSON.parse(JSON.stringify(v)) as T);
}

type Path = Array<string | number>;
function getAt(obj: unknown, path: Path): unknown {
  let cur = obj;
  for (const k of path)
    cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[k] : undefined;
  return cur;
}
function setAt(obj: unknown, path: Path, value: unknown): unknown {
  const root = clone(obj) ?? {};
  let cur = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) {
    if (cur[k] === undefined || cur[k] === null || typeof cur[k] !== 'object') cur[k] = {};
    cur = cur[k] as Record<string | number, unknown>;
  }
  cur[path[path.length - 1] as string | number] = value;
  return root;
}
function deleteAt(obj: unknown, path: Path): unknown {
  const root = clone(obj);
  const parent = getAt(root, path.slice(0, -1)) as Record<string | number, unknown> | undefined;
  if (parent) delete parent[path[path.length - 1] as string | number];
  return root;
}
const label = (path: Path) => path.join('.');

/** The types a schema admits (through anyOf). */
function typesOf(s: Schema): Set<string> {
  const out = new Set<string>();
  const walk = (x: Schema) => {
    if (typeof x.type === 'string') out.add(x.type);
    if (Array.isArray(x.anyOf)) for (const b of x.anyOf as Schema[]) walk(b);
    if (Array.isArray(x.enum)) for (const e of x.enum) out.add(e === null ? 'null' : typeof e);
  };
  walk(s);
  return out;
}
/** The branch of a schema with `properties` (an object), or with `items` (an array). */
function branch(s: Schema, key: 'properties' | 'items'): Schema | undefined {
  if (s[key]) return s;
  for (const b of (s.anyOf as Schema[] | undefined) ?? []) {
    const found = branch(b, key);
    if (found) return found;
  }
  return undefined;
}
function maxLengthOf(s: Schema): number | undefined {
  if (typeof s.maxLength === 'number') return s.maxLength;
  for (const b of (s.anyOf as Schema[] | undefined) ?? []) {
    const m = maxLengthOf(b);
    if (m !== undefined) return m;
  }
  return undefined;
}
/** Our amounts: a decimal string of at most 40 characters, or a JSON number. */
function isMoney(s: Schema): boolean {
  const branches = (s.anyOf as Schema[] | undefined) ?? [];
  if (branches.some((b) => b.anyOf && isMoney(b))) return true;
  return (
    branches.some((b) => b.type === 'string' && b.maxLength === 40) &&
    branches.some((b) => b.type === 'number')
  );
}
const POSITIVE_AMOUNTS = new Set(['amount', 'credits']);
const REFERENCES = new Set(['organization_id', 'to_organization_id', 'agent_id', 'team_id', 'user_id']);

/** Strings to latin-1, the only characters an HTTP header can carry. */
const latin1 = (g: string) =>
  [...g].map((c) => String.fromCharCode(((c.codePointAt(0) ?? 0x3f) & 0x7f) | 0x80)).join('');
const enc = (s: string) => encodeURIComponent(s);

// ---------------------------------------------------------------------------------------------
// Path parameters: ids that name nothing, and encodings a router and a database must survive.
// Dot segments (".." in any encoding) and raw "?", "#", "/" are never generated: they would
// change which route the URL names rather than break its parameter.
// ---------------------------------------------------------------------------------------------

function pathVariants(name: string, realId: string): Variant[] {
  const prefix = /^[a-z]+_/.exec(realId)?.[0] ?? 'x_';
  const list: Array<[string, (g: string) => string, Why?]> = [
    ['NUL %00', () => '%00', 'text'],
    ['NUL inside', (g) => `x%00${enc(g)}`, 'text'],
    ['real id + %00', () => `${realId}%00`, 'text'],
    ['raw NUL', (g) => `\u0000${enc(g)}`, 'text'],
    ['real id + lone surrogate %ED%A0%80', () => `${realId}%ED%A0%80`],
    ['lone low surrogate %ED%B0%80', () => '%ED%B0%80'],
    ['raw lone surrogate', () => '\ud800'],
    ['malformed percent %E0%A4%A', () => '%E0%A4%A'],
    ['lone %', () => '%'],
    ['percent %zz', () => '%zz'],
    ['overlong UTF-8 %C0%AF', () => '%C0%AF'],
    ['101 characters', () => 'x'.repeat(101), 'schema'],
    ['100,000 characters', () => 'x'.repeat(100_000), 'schema'],
    ['non-ASCII', (g) => enc(`café-${g}`)],
    ['emoji', () => enc('🦄🦄')],
    ['1e308', () => '1e308'],
    ['-0', () => '-0'],
    ['NaN', () => 'NaN'],
    ['null', () => 'null'],
    ['SQL', () => enc("' OR 1=1 --")],
    ['real id + encoded slash', () => `${realId}%2Fx`],
    ['backslash', () => '%5C'],
    ['well-formed unknown id', () => `${prefix}${'Z'.repeat(26)}`],
    ['real id + space', () => `${realId}%20`],
  ];
  return list.map(([kind, value, why]) => ({
    kind,
    why: why ?? 'ref',
    expect: 'refuse',
    apply: (d, g) => {
      d.params[name] = value(g);
      return `path {${name}} = ${short(d.params[name])}`;
    },
  }));
}

// ---------------------------------------------------------------------------------------------
// Query parameters (only GET routes take them): values the schema refuses, forged cursors and
// odd dates. What the schema takes, once decoded, is `any`.
// ---------------------------------------------------------------------------------------------

const b64 = (s: string) => Buffer.from(s).toString('base64url');

function queryVariants(op: Operation, name: string, s: Schema): Variant[] {
  const types = typesOf(s);
  // [kind, raw (encoded) value, decoded value for the oracle, why if refused by more than schema]
  const list: Array<[string, string, unknown, Why?]> = [];
  const add = (kind: string, decoded: string, why?: Why) => list.push([kind, enc(decoded), decoded, why]);
  list.push(['nul %00', '%00', '\u0000', 'text'], ['nul inside', 'a%00b', 'a\u0000b', 'text']);
  list.push(
    ['lone surrogate %ED%A0%80', '%ED%A0%80', undefined],
    ['malformed percent', '%E0%A4%A', undefined],
  );
  list.push(['repeated', '1', ['1', '2']]);
  if (types.has('integer') || types.has('number'))
    for (const x of [
      'abc',
      '0',
      '-1',
      '101',
      '1e308',
      '-0',
      'NaN',
      '1.5',
      '',
      '0x10',
      '9'.repeat(400),
      'Infinity',
    ])
      add(`number ${short(x, 20)}`, x);
  if (types.has('boolean')) for (const x of ['maybe', '2', 'yes', 'TRUE ', '']) add(`boolean ${short(x)}`, x);
  if (types.has('string') || types.has('array')) {
    const max = maxLengthOf(s);
    if (max !== undefined) add(`${max + 1} characters`, 'x'.repeat(max + 1));
    add('100,000 characters', 'x'.repeat(100_000));
    // What a LIKE pattern, a quoted literal or a path might choke on.
    for (const x of ['\\', '%', '_', "'", '"', '*', '..', ' ', '\\%', "a'; --"])
      add(`text ${JSON.stringify(x)}`, x);
    if (name === 'month' || name === 'from' || name === 'to') {
      for (const x of [
        '9999-12',
        '0000-00',
        '2026-13',
        '2026-1',
        '10000-01',
        '2026-00',
        '-2026-01',
        '1000-01',
        '0099-12',
      ])
        add(`month ${x}`, x);
      for (const x of [
        '0000-00-00',
        '9999-12-31',
        '9999-12-30',
        '2026-02-30',
        '2026-13-01',
        '+275760-09-13',
        '0001-01-01',
        '0099-12-31',
        '1000-01-01',
        '1969-12-31',
      ])
        add(`date ${x}`, x);
      for (const x of [
        '0000-00-00T00:00:00Z',
        '9999-12-31T23:59:59Z',
        '2026-02-30T00:00:00Z',
        '1e308',
        'yesterday',
      ])
        add(`date-time ${x}`, x);
      if (op.path.endsWith('/sub-organizations/usage') && name === 'from')
        add('range past 366 days', '1900-01-01', 'range');
    }
    if (name === 'format' || name === 'type')
      for (const x of ['xml', 'JSON', 'csv,json', 'nope']) add(`enum ${x}`, x);
    if (name === 'cursor') {
      list.push(['cursor not base64 JSON', enc('not-a-cursor!'), 'not-a-cursor!', 'cursor']);
      list.push(['cursor truncated JSON', b64('{"k":'), b64('{"k":'), 'cursor']);
      list.push(['cursor k not a string', b64('{"k":1}'), b64('{"k":1}'), 'cursor']);
      list.push(['cursor array', b64('[]'), b64('[]'), 'cursor']);
      for (const [kind, k] of [
        ['forged cursor k=NUL', '\u0000'],
        ['forged cursor k=lone surrogate', '\ud800'],
        ['forged cursor k=garbage', 'zz|not-a-key'],
        ['forged cursor k=far date', '9999-99-99T99:99:99.999Z|x'],
        ['forged cursor k=5000 chars', 'x'.repeat(5000)],
      ] as const)
        list.push([kind, b64(JSON.stringify({ k })), b64(JSON.stringify({ k })), 'odd']);
    }
  }
  return list.map(([kind, raw, decoded, why]) => {
    let refused: Why | undefined;
    if (why === 'text' || why === 'cursor' || why === 'range') refused = why;
    else if (decoded !== undefined && !queryValid(op, { [name]: decoded })) refused = 'schema';
    return {
      kind,
      why: refused ?? 'odd',
      expect: refused ? 'refuse' : 'any',
      apply: (d) => {
        d.query =
          kind === 'repeated' ? `${name}=1&${name}=2` : `${name}=${raw}${d.query ? `&${d.query}` : ''}`;
        return `query ${short(kind === 'repeated' ? `${name}=1&${name}=2` : `${name}=${raw}`)}`;
      },
    } satisfies Variant;
  });
}

// ---------------------------------------------------------------------------------------------
// Body fields: one field of the valid body replaced (or added, or removed).
// ---------------------------------------------------------------------------------------------

interface Field {
  path: Path;
  schema: Schema;
  inBase: boolean;
  required: boolean;
}

function fieldsOf(schema: Schema, base: unknown, path: Path = []): Field[] {
  const obj = branch(schema, 'properties');
  if (!obj) return [];
  const out: Field[] = [];
  const required = new Set((obj.required as string[] | undefined) ?? []);
  for (const [key, s] of Object.entries(obj.properties as Record<string, Schema>)) {
    const p = [...path, key];
    const value = getAt(base, p);
    out.push({ path: p, schema: s, inBase: value !== undefined, required: required.has(key) });
    if (s['x-json']) continue;
    const arr = branch(s, 'items');
    if (arr && Array.isArray(value) && value.length > 0)
      out.push(...fieldsOf(arr.items as Schema, base, [...p, 0]));
    else if (branch(s, 'properties')) out.push(...fieldsOf(s, base, p));
  }
  return out;
}

const TYPE_CANDIDATES: Array<[string, unknown]> = [
  ['number', 42],
  ['negative number', -1],
  ['fraction', 1.5],
  ['boolean', true],
  ['string', 'fuzz'],
  ['empty string', ''],
  ['array', []],
  ['array of string', ['x']],
  ['object', {}],
  ['object with a field', { a: 1 }],
  ['null', null],
  ['1e308', new Raw('1e308')],
  ['1e309 (Infinity)', new Raw('1e309')],
  ['-1e308', new Raw('-1e308')],
  ['30-digit number', new Raw('123456789012345678901234567890')],
];
const STRING_CANDIDATES = [
  'OWNER',
  'root',
  ' ',
  'a b',
  '\t',
  'not-an-email',
  'a@',
  'http://fuzz.test/logo.png',
  'javascript:alert(1)',
  '#12345',
  'red',
  '2026-02-30T00:00:00Z',
  '9999-99-99T00:00:00Z',
  '0000-00-00T00:00:00Z',
  '2026-01-01',
  'tomorrow',
  '-',
  'a--b',
  'UPPER',
  '<script>',
  '1'.repeat(41),
];
const BAD_AMOUNTS = [
  'abc',
  '1e308',
  '1E3',
  'NaN',
  'Infinity',
  '-Infinity',
  '-1',
  '-0.000001',
  '1.0000001',
  '1000000000001',
  '99999999999999999999',
  '0x10',
  '1,5',
  '',
  '.',
  '+1',
  '1.',
  '١٢',
  '1_000',
];
const BAD_AMOUNT_NUMBERS = ['1e308', '1e309', '-1e308', '1e21', '-1', '1.0000001', '1000000000001'];
const NOT_POSITIVE = ['0', '-0', '0.000000', '-0.0'];
const NOT_POSITIVE_NUMBERS = ['0', '-0', '1e-400'];

function fieldVariants(op: Operation, base: unknown, f: Field): Variant[] {
  const out: Variant[] = [];
  const key = String(f.path[f.path.length - 1]);
  const at = label(f.path);
  const set =
    (value: (g: string, cut: number) => unknown) =>
    (d: Draft, g: string, cut: number): string => {
      const v = value(g, cut);
      d.body = setAt(d.body, f.path, v);
      return `body.${at} = ${short(v)}`;
    };
  const schemaRefuses = (v: unknown) => !bodyValid(op, setAt(base, f.path, parsed(v)));
  for (const [kind, value] of TYPE_CANDIDATES)
    if (schemaRefuses(value))
      out.push({ kind: `type: ${kind}`, why: 'schema', expect: 'refuse', apply: set(() => value) });
  if (f.required)
    out.push({
      kind: 'missing required field',
      why: 'schema',
      expect: 'refuse',
      apply: (d) => {
        d.body = deleteAt(d.body, f.path);
        return `body.${at} removed`;
      },
    });
  const types = typesOf(f.schema);
  const text = (kind: string, value: (g: string) => string) =>
    out.push({ kind, why: 'text', expect: 'refuse', apply: set(value) });
  const money = isMoney(f.schema);
  if (types.has('string')) {
    text('NUL', (g) => `${g}\u0000${g}`);
    text('only NUL', () => '\u0000');
    text('lone high surrogate', (g) => `${g}\ud800${g}`);
    text('lone low surrogate', () => '\udc00');
    text('reversed surrogate pair', () => '\udc00\ud800');
    const max = maxLengthOf(f.schema);
    if (max !== undefined && schemaRefuses('x'.repeat(max + 1)))
      out.push({
        kind: `${max + 1} characters`,
        why: 'schema',
        expect: 'refuse',
        apply: set(() => 'x'.repeat(max + 1)),
      });
    out.push({
      kind: 'string over 1 MiB',
      why: 'size',
      expect: 'refuse',
      apply: set(() => 'x'.repeat(ONE_MIB + 16)),
    });
    if (!money)
      for (const s of STRING_CANDIDATES)
        if (schemaRefuses(s))
          out.push({ kind: `value ${short(s, 24)}`, why: 'schema', expect: 'refuse', apply: set(() => s) });
  }
  if (money && f.inBase) {
    const positive = POSITIVE_AMOUNTS.has(key);
    for (const s of [...BAD_AMOUNTS, ...(positive ? NOT_POSITIVE : [])])
      out.push({ kind: `amount ${JSON.stringify(s)}`, why: 'money', expect: 'refuse', apply: set(() => s) });
    for (const s of [...BAD_AMOUNT_NUMBERS, ...(positive ? NOT_POSITIVE_NUMBERS : [])])
      out.push({
        kind: `amount ${s} (number)`,
        why: 'money',
        expect: 'refuse',
        apply: set(() => new Raw(s)),
      });
  }
  if (types.has('integer') || (types.has('number') && !money))
    for (const s of ['1e308', '1e309', '-1', '1.5', '-1e308', '1e16', '2592001'])
      if (schemaRefuses(new Raw(s)))
        out.push({ kind: `number ${s}`, why: 'schema', expect: 'refuse', apply: set(() => new Raw(s)) });
  if (REFERENCES.has(key) && f.inBase)
    for (const [kind, value] of [
      ['unknown id', 'org_ZZZZZZZZZZZZZZZZZZZZZZZZZZ'],
      ['unknown slug', 'zz-fuzz-missing'],
      ['100-character id', 'z'.repeat(100)],
      ['id with space', 'org_ZZ ZZ'],
    ])
      out.push({ kind: `reference ${kind}`, why: 'ref', expect: 'refuse', apply: set(() => value) });
  if (key === 'email' && op.path === '/api/organizations/{id}/members')
    out.push({
      kind: 'unknown user email',
      why: 'ref',
      expect: 'refuse',
      apply: set(() => 'nobody@fuzz.test'),
    });
  if (key === 'password' && op.path === '/api/auth/sign-in/email')
    out.push({ kind: 'wrong password', why: 'auth', expect: 'refuse', apply: set(() => 'wrong-password-1') });
  if (key === 'currentPassword')
    out.push({
      kind: 'wrong current password',
      why: 'auth',
      expect: 'refuse',
      apply: set(() => 'wrong-password-1'),
    });
  // Nesting, in any field: an object or array where a scalar goes, or past metadata's 5 levels.
  out.push({
    kind: '20,000 levels of arrays',
    why: 'depth',
    expect: 'refuse',
    apply: set(() => deepArray(20_000)),
  });
  out.push({
    kind: '100 levels of objects',
    why: 'depth',
    expect: 'refuse',
    apply: set(() => deepObject(100)),
  });
  out.push({
    kind: '40 levels of objects',
    why: 'depth',
    expect: 'refuse',
    apply: set(() => deepObject(40)),
  });
  if (f.schema['x-json']) {
    const meta = (kind: string, value: (g: string) => unknown, why: Why = 'meta') =>
      out.push({ kind: `metadata ${kind}`, why, expect: 'refuse', apply: set(value) });
    meta('key of 65 characters', () => ({ ['k'.repeat(65)]: 1 }));
    meta('nested key of 65 characters', () => ({ a: { ['k'.repeat(65)]: 1 } }));
    meta('key of 33 emoji (66 UTF-16 units)', () => ({ ['😀'.repeat(33)]: 1 }));
    meta('key of 10,000 characters', () => ({ ['k'.repeat(10_000)]: 1 }));
    meta('6 levels', () => ({ a: { b: { c: { d: { e: { f: 1 } } } } } }));
    meta('over 16 KiB', () => ({ a: 'x'.repeat(17_000) }));
    meta('NUL key', (g) => ({ [`${g}\u0000`]: 1 }), 'text');
    meta('lone surrogate key', (g) => ({ [`${g}\ud800`]: 1 }), 'text');
    meta('NUL value', (g) => ({ k: `${g}\u0000` }), 'text');
    meta('lone surrogate value', (g) => ({ k: `\udfff${g}` }), 'text');
    meta('lone surrogate nested key', () => ({ a: [{ '\udbff': 1 }] }), 'text');
    if (schemaRefuses(Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i]))))
      meta('51 keys', () => Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, i])), 'schema');
  } else if (branch(f.schema, 'properties') && schemaRefuses({ ...(getAt(base, f.path) as object), zz: 1 })) {
    out.push({
      kind: 'unknown nested field',
      why: 'schema',
      expect: 'refuse',
      apply: set(() => ({ ...(getAt(base, f.path) as object), zz_unexpected: 1 })),
    });
  }
  const arr = branch(f.schema, 'items');
  if (arr) {
    const current = getAt(base, f.path);
    const item = Array.isArray(current) && current.length > 0 ? current[0] : 'x';
    const candidates: Array<[string, unknown]> = [
      ['empty array', []],
      ['unknown item', ['root']],
      ['duplicate items', [item, item]],
      ['1,001 items', Array.from({ length: 1001 }, () => item)],
      ['null item', [null]],
    ];
    for (const [kind, value] of candidates)
      if (schemaRefuses(value)) out.push({ kind, why: 'schema', expect: 'refuse', apply: set(() => value) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The body as a whole, and bodies where none belongs.
// ---------------------------------------------------------------------------------------------

const INVALID_JSON: Array<[string, (text: string, cut: number) => string]> = [
  ['truncated', (text, cut) => text.slice(0, 1 + (cut % Math.max(1, text.length - 1)))],
  ['trailing comma', (text) => `${text.slice(0, -1)},}`],
  ['single quotes', (text) => text.replaceAll('"', "'")],
  ['two documents', (text) => `${text}${text}`],
  ['NaN literal', () => '{"a":NaN}'],
  ['leading zero', () => '{"amount":01}'],
  ['raw control character in a string', (text) => text.replace('"', '"\u0000')],
  ['a comment', (text) => `/* x */${text}`],
  ['bare word', () => 'undefined'],
  ['unterminated string', () => '{"name":"abc'],
  ['20,000 open brackets', () => '['.repeat(20_000)],
];
const BAD_MEDIA = [
  'text/plain',
  'application/xml',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  'application/jsonx',
  'text/json',
  'application/octet-stream',
  'application/json-seq',
];

function wholeBodyVariants(op: Operation, base: unknown): Variant[] {
  const out: Variant[] = [];
  const raw =
    (kind: string, text: (t: string, cut: number) => string): Variant['apply'] =>
    (d, _g, cut) => {
      d.bodyText = text(bodyJson(d.body), cut);
      return `body (${kind}) = ${short(d.bodyText)}`;
    };
  for (const [kind, text] of INVALID_JSON)
    out.push({
      kind: `invalid JSON: ${kind}`,
      why: 'json',
      expect: 'refuse',
      apply: raw(kind, text),
    });
  for (const [kind, value] of [
    ['array', []],
    ['string', 'x'],
    ['number', 1],
    ['true', true],
    ['null', null],
    ['array of the body', [base]],
  ] as Array<[string, unknown]>)
    if (!bodyValid(op, value))
      out.push({
        kind: `top-level ${kind}`,
        why: 'schema',
        expect: 'refuse',
        apply: (d) => {
          d.bodyText = JSON.stringify(value);
          return `body = ${short(d.bodyText)}`;
        },
      });
  const unknownKey = (kind: string, why: Why, key: (g: string) => string) =>
    out.push({
      kind,
      why,
      expect: 'refuse',
      apply: (d, g) => {
        const k = key(g);
        d.body = { ...(d.body as object), [k]: 1 };
        return `body[${short(k)}] = 1`;
      },
    });
  if (!bodyValid(op, { ...(base as object), zz_unexpected: 1 })) {
    unknownKey('unknown field', 'schema', () => 'zz_unexpected');
    unknownKey('unknown field with a 10,000-character name', 'schema', () => 'k'.repeat(10_000));
  }
  unknownKey('NUL key', 'text', (g) => `${g}\u0000`);
  unknownKey('lone surrogate key', 'text', (g) => `\ud800${g}`);
  out.push({
    kind: '20,000 levels of arrays',
    why: 'depth',
    expect: 'refuse',
    apply: (d) => {
      d.bodyText = deepArray(20_000).text;
      return 'body = [[[[… (20,000 levels)';
    },
  });
  out.push({
    kind: '20,000 levels of objects',
    why: 'depth',
    expect: 'refuse',
    apply: (d) => {
      d.bodyText = deepObject(20_000).text;
      return 'body = {"a":{"a":… (20,000 levels)';
    },
  });
  out.push({
    kind: 'over 1 MiB',
    why: 'size',
    expect: 'refuse',
    apply: (d) => {
      d.bodyText = `${bodyJson(d.body).slice(0, -1)},"zz":"${'x'.repeat(ONE_MIB)}"}`;
      return `body over 1 MiB (${d.bodyText.length} bytes)`;
    },
  });
  return out;
}

function bodilessVariants(op: Operation): Variant[] {
  const get = op.method === 'GET';
  const out: Variant[] = [];
  const body = (kind: string, why: Why, text: string | (() => string), contentType = 'application/json') =>
    out.push({
      kind,
      why,
      expect: get ? 'any' : 'refuse',
      apply: (d) => {
        d.bodyText = typeof text === 'string' ? text : text();
        d.headers['content-type'] = contentType;
        return `${contentType} body ${short(d.bodyText)} on a bodiless route`;
      },
    });
  for (const [kind, text] of INVALID_JSON) body(`invalid JSON: ${kind}`, 'json', () => text('{"zz":1}', 3));
  body('20,000 levels of arrays', 'depth', () => deepArray(20_000).text);
  body('100 levels of objects', 'depth', () => deepObject(100).text);
  body('NUL in a JSON body', 'text', '{"zz":"\\u0000"}');
  body('lone surrogate key in a JSON body', 'text', '{"\\ud800":1}');
  body('text/plain body', 'media', 'garbage', 'text/plain');
  body('XML body', 'media', '<x/>', 'application/xml');
  body('over 1 MiB', 'size', () => `{"zz":"${'x'.repeat(ONE_MIB)}"}`);
  if (get) body('unexpected JSON body', 'odd', '{"zz":1}');
  return out;
}

// ---------------------------------------------------------------------------------------------
// Headers: credentials, the idempotency key, the content type.
// ---------------------------------------------------------------------------------------------

function authVariants(op: Operation): Variant[] {
  // Sign-out without a session has nothing to end: odd, not necessarily refused.
  const expect = op.path === '/api/auth/sign-out' ? 'any' : 'refuse';
  const set = (kind: string, value: (token: string, g: string) => string): Variant => ({
    kind,
    why: 'auth',
    expect,
    apply: (d, g) => {
      d.headers.authorization = value((d.headers.authorization ?? '').replace(/^Bearer /, ''), g);
      return `Authorization: ${short(d.headers.authorization)}`;
    },
  });
  return [
    set('64 KiB bearer token', () => `Bearer ${'A'.repeat(64 * 1024)}`),
    set('16 KiB API-key-looking token', () => `Bearer obk_${'a'.repeat(16 * 1024)}`),
    set('16 KiB operator-looking token', () => `Bearer obo_${'a'.repeat(16 * 1024)}`),
    set('non-ASCII (latin-1) token', (_t, g) => `Bearer tøkén-ÿ${latin1(g)}`),
    set('valid token + non-ASCII', (t) => `Bearer ${t}é`),
    set('UTF-8 read as latin-1', () => 'Bearer Ã©Ã¨Ã¼'),
    set('non-ASCII scheme', (t) => `Bëarer ${t}`),
    set('Basic scheme', (t) => `Basic ${Buffer.from(`x:${t}`).toString('base64')}`),
    set('two tokens', (t) => `Bearer ${t} ${t}`),
    set('truncated token', (t) => `Bearer ${t.slice(0, -1)}`),
    set('scheme only', () => 'Bearer'),
    set('empty token', () => 'Bearer '),
    set('JWT-looking garbage', () => 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.'),
    {
      kind: 'garbage session cookie, no Authorization',
      why: 'auth',
      expect,
      apply: (d, g) => {
        delete d.headers.authorization;
        d.headers.cookie = `better-auth.session_token=${enc(g)}%00${'z'.repeat(4000)}`;
        return `Cookie: ${short(d.headers.cookie)}`;
      },
    },
  ];
}

function idempotencyVariants(): Variant[] {
  return (
    [
      ['256 characters', 'a'.repeat(256)],
      ['20,000 characters', 'a'.repeat(20_000)],
      ['space inside', 'a b'],
      ['non-ASCII', 'clé'],
      ['blank', ' '],
    ] as const
  ).map(([kind, value]) => ({
    kind: `idempotency key ${kind}`,
    why: 'schema' as const,
    expect: 'refuse' as const,
    apply: (d: Draft) => {
      d.headers['idempotency-key'] = value;
      return `Idempotency-Key: ${short(value)}`;
    },
  }));
}

function mediaVariants(): Variant[] {
  const out: Variant[] = BAD_MEDIA.map((type) => ({
    kind: `content type ${type}`,
    why: 'media',
    expect: 'refuse',
    apply: (d) => {
      d.bodyText = bodyJson(d.body);
      d.headers['content-type'] = type;
      return `Content-Type: ${type}`;
    },
  }));
  out.push({
    kind: 'no content type',
    why: 'media',
    expect: 'refuse',
    apply: (d) => {
      d.bodyText = Buffer.from(bodyJson(d.body));
      delete d.headers['content-type'];
      return 'a JSON body without Content-Type';
    },
  });
  return out;
}

/** Every way this operation's valid request can be broken, grouped by the part broken. */
export function targetsOf(op: Operation, base: BaseRequest, realParams: Record<string, string>): Target[] {
  const targets: Target[] = [];
  for (const name of op.pathParams)
    targets.push({ group: 'path', name, variants: pathVariants(name, realParams[name] as string) });
  for (const [name, s] of Object.entries(op.query))
    targets.push({ group: 'query', name, variants: queryVariants(op, name, s) });
  if (op.body) {
    for (const f of fieldsOf(op.body, base.body))
      targets.push({ group: 'body-field', name: label(f.path), variants: fieldVariants(op, base.body, f) });
    targets.push({ group: 'body', name: 'body', variants: wholeBodyVariants(op, base.body) });
    targets.push({ group: 'header', name: 'content-type', variants: mediaVariants() });
  } else {
    targets.push({ group: 'body', name: 'body', variants: bodilessVariants(op) });
  }
  if (op.requirement !== 'public')
    targets.push({ group: 'header', name: 'authorization', variants: authVariants(op) });
  if ('idempotency-key' in op.headers)
    targets.push({ group: 'header', name: 'idempotency-key', variants: idempotencyVariants() });
  return targets.filter((t) => t.variants.length > 0);
}

/** The inject options of a draft. */
export function toInject(op: Operation, d: Draft): InjectOptions {
  let path = op.path;
  for (const [name, value] of Object.entries(d.params)) path = path.replace(`{${name}}`, value);
  const headers = { ...d.headers };
  let payload: string | Buffer | undefined;
  // A string body goes as JSON unless a variant said otherwise; a Buffer goes without a type.
  if (d.bodyText !== undefined) payload = d.bodyText;
  else if (d.body !== undefined) payload = bodyJson(d.body);
  if (typeof payload === 'string') headers['content-type'] ??= 'application/json';
  return {
    method: d.method,
    url: d.query ? `${path}?${d.query}` : path,
    headers,
    ...(payload !== undefined ? { payload } : {}),
  };
}

/** Who sends a request of `op`, from a generated pick. */
export function principalFor(op: Operation, pick: number): 'operator' | 'owner' | 'key' {
  if (sessionOnly(op)) return 'owner';
  return (['operator', 'operator', 'operator', 'owner', 'owner', 'key'] as const)[pick % 6] as 'operator';
}

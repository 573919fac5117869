import type { FieldError } from './problem.js';

/**
 * The one rule for text that may reach the database, applied to every request's body, query and
 * path before any route sees them: PostgreSQL stores neither NUL nor half a UTF-16 surrogate pair
 * (in `text` or `jsonb`), and a value nested without bound would overflow the stack of whatever
 * walks it next (JSON.stringify, a hash, the driver). Refusing them here, as a 400 naming the
 * field, means no request can fail in the database for its text, nor fail the batch it joins.
 */
export const MAX_JSON_DEPTH = 32;

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what is refused.
const NUL = /\u0000/;

/** Why `s` cannot be stored, or undefined. */
export function textProblem(s: string): string | undefined {
  if (NUL.test(s)) return 'must not contain the NUL character (\\u0000)';
  if (!s.isWellFormed()) return 'must be valid Unicode (it holds a lone surrogate)';
  return undefined;
}

function join(path: string, key: string | number): string {
  return path === '' ? String(key) : `${path}.${key}`;
}

/**
 * The first problem in a JSON value (a parsed body, a query, path parameters), as a field error;
 * undefined when every string and key can be stored and nothing nests deeper than `maxDepth`.
 * Iterative, so that depth itself cannot overflow the stack while it is being measured.
 */
export function inputProblem(value: unknown, root = '', maxDepth = MAX_JSON_DEPTH): FieldError | undefined {
  const stack: Array<[unknown, string, number]> = [[value, root, 0]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop() as [unknown, string, number];
    if (typeof v === 'string') {
      const problem = textProblem(v);
      if (problem) return { field: path || '(body)', message: problem };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth)
      return { field: path || '(body)', message: `nests deeper than ${maxDepth} levels` };
    if (Array.isArray(v)) {
      // Pushed last to first, so that the first problem in the document's order is the one named.
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], join(path, i), depth + 1]);
      continue;
    }
    // Pushed last to first, so that the first problem in the document's order is the one named.
    const entries = Object.entries(v);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [k, child] = entries[i] as [string, unknown];
      const problem = textProblem(k);
      if (problem) return { field: path || '(body)', message: `has a key that ${problem}` };
      stack.push([child, join(path, k), depth + 1]);
    }
  }
  return undefined;
}

export interface JsonShape {
  /** Levels of objects and arrays, the value itself included (an object of scalars is 1). */
  maxDepth: number;
  /** Size of the value written as JSON, in UTF-8 bytes. */
  maxBytes: number;
  /** Length of any key, at any level. */
  maxKeyLength: number;
}

/**
 * What is wrong with a free-form JSON value (metadata) against its caps, as a message and the
 * sub-path it concerns; undefined when it fits. Its size is measured last, by JSON.stringify,
 * once its depth is known to be within the cap.
 */
export function shapeProblem(
  value: unknown,
  shape: JsonShape,
): { path: string; message: string } | undefined {
  const stack: Array<[unknown, string, number]> = [[value, '', 1]];
  while (stack.length > 0) {
    const [v, path, depth] = stack.pop() as [unknown, string, number];
    if (v === null || typeof v !== 'object') continue;
    if (depth > shape.maxDepth) return { path, message: `nests deeper than ${shape.maxDepth} levels` };
    const entries = Array.isArray(v) ? v.map((c, i) => [String(i), c] as const) : Object.entries(v);
    for (const [k, child] of entries) {
      if (!Array.isArray(v) && k.length > shape.maxKeyLength)
        return { path, message: `has a key longer than ${shape.maxKeyLength} characters` };
      stack.push([child, path === '' ? k : `${path}.${k}`, depth + 1]);
    }
  }
  const bytes = Buffer.byteLength(JSON.stringify(value));
  if (bytes > shape.maxBytes) return { path: '', message: `is larger than ${shape.maxBytes} bytes as JSON` };
  return undefined;
}

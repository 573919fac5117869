import type { FieldError } from './problem.js';

/**
 * The one rule for text that may reach the database, applied to every request's body, query and
 * path before any route sees them: PostgreSQL stores neither NUL nor half a UTF-16 surrogate pair
 * (in `text` or `jsonb`), and a value nested without bound would overflow the stack of whatever
 * walks it next (JSON.stringify, a hash, the driver). Refusing them here, as a 400 naming the
 * field, means no request can fail in the database for its text, nor fail the batch it joins.
 */
export const MAX_JSON_DEPTH = 32;

/** Why `s` cannot be stored, or undefined. */
export function textProblem(s: string): string | undefined {
  if (s.includes('\u0000')) return 'must not contain the NUL character (\\u0000)';
  if (!s.isWellFormed()) return 'must be valid Unicode (it holds a lone surrogate)';
  return undefined;
}

interface Found {
  /** From the value at fault up to the root: reversed once, when it is reported. */
  path: Array<string | number>;
  message: string;
}

/**
 * Depth-first, in the document's order. Recursion is bounded: it stops at `maxDepth` before going
 * deeper, so no value can overflow the stack while it is measured. The path is built only on the
 * way back from a problem, so a clean value (every request) allocates nothing for it.
 */
function find(v: unknown, depth: number, maxDepth: number): Found | undefined {
  if (typeof v === 'string') {
    const message = textProblem(v);
    return message ? { path: [], message } : undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  if (depth >= maxDepth) return { path: [], message: `nests deeper than ${maxDepth} levels` };
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const found = find(v[i], depth + 1, maxDepth);
      if (found) {
        found.path.push(i);
        return found;
      }
    }
    return undefined;
  }
  for (const k in v) {
    const bad = textProblem(k);
    if (bad) return { path: [], message: `has a key that ${bad}` };
    const found = find((v as Record<string, unknown>)[k], depth + 1, maxDepth);
    if (found) {
      found.path.push(k);
      return found;
    }
  }
  return undefined;
}

/**
 * The first problem in a JSON value (a parsed body, a query, path parameters), as a field error;
 * undefined when every string and key can be stored and nothing nests deeper than `maxDepth`.
 */
export function inputProblem(value: unknown, root = '', maxDepth = MAX_JSON_DEPTH): FieldError | undefined {
  const found = find(value, 0, maxDepth);
  if (!found) return undefined;
  const path = [root, ...found.path.reverse()].filter((p) => p !== '').join('.');
  return { field: path || '(body)', message: found.message };
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

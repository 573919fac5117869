import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { withMatrix } from './permissions-doc.js';

it('README shows the permission matrix and the error codes as the code defines them (run npm run docs:permissions)', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  expect(withMatrix(readme)).toBe(readme);
});

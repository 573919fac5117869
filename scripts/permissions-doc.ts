// Rewrites the permission matrix in README.md from src/lib/authz.ts.
import { readFileSync, writeFileSync } from 'node:fs';
import { withMatrix } from '../src/lib/permissions-doc.js';

writeFileSync('README.md', withMatrix(readFileSync('README.md', 'utf8')));

#!/usr/bin/env node
// check-layers: "repos own the SQL; a module reads another module only through its service".
//
// (a) src/modules/<m>/*.repo.ts is imported only from inside src/modules/<m>/. Another module
//     that needs <m>'s data asks <m>'s service, which keeps <m>'s rules (liveness, locks, caches)
//     and lets <m> change its tables without breaking anyone else. Checked in src/, bench/ and
//     scripts/; tests may reach into the module they test.
// (b) In src/modules/, only *.repo.ts (and ledger/ledger.batch.ts, the ledger's one-statement
//     batch writer) builds SQL: imports `sql` or `CompiledQuery` from kysely, or calls Kysely's
//     query builder (.selectFrom( .insertInto( .updateTable( .deleteFrom( .replaceInto(
//     .mergeInto( .selectNoFrom( .with('…' .withRecursive('…'). Services hand an executor (db or
//     tx) to their repo instead. `.with(` counts only with a string first, a CTE's name:
//     Array.prototype.with takes an index. Tests (*.test.ts) are exempt.
//
// Comments and the contents of string literals are ignored. Prints `file:line: rule` for each
// violation, then the count per file (`--summary`: the counts only); exits 1 if there is any.
// Paths given (`node scripts/check-layers.mjs src/modules/teams`) limit it to the files below them.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SQL_EXEMPT = /\.(repo|test)\.ts$|^src\/modules\/ledger\/ledger\.batch\.ts$/;
const BUILDER =
  /\.(selectFrom|insertInto|updateTable|deleteFrom|replaceInto|mergeInto|selectNoFrom)\s*\(|\.with(Recursive)?\s*\(\s*['"`]/g;
const KYSELY_IMPORT = /\bimport\s+(type\s+)?([^;]*?)\s*from\s*(['"])kysely\3/g;
const IMPORT_FROM =
  /\b(?:import|export)\s[^;]*?from\s*(['"])([^'"]+)\1|\bimport\s*\(\s*(['"])([^'"]+)\3\s*\)/g;

const sourceFiles = (dir) =>
  readdirSync(join(ROOT, dir), { recursive: true })
    .map((path) => posix.join(dir, path.split(sep).join('/')))
    .filter((path) => /\.(ts|mts|js|mjs)$/.test(path) && !path.endsWith('.d.ts'));

/**
 * The text with its comments, and with `strings` the contents of its string literals, replaced by
 * spaces: offsets and lines stay. Knows template literals and their `${}`, not regex literals (one
 * holding a quote or `//` blanks the rest of its line: a missed violation at worst, never a false one).
 */
function blank(text, strings) {
  const out = text.split('');
  const wipe = (from, to) => {
    for (let k = from; k < to && k < out.length; k++) if (out[k] !== '\n') out[k] = ' ';
  };
  const upTo = (s, from, past) => (text.indexOf(s, from) < 0 ? text.length : text.indexOf(s, from) + past);
  const templates = []; // per open template literal: the `{` depth inside its current `${`
  for (let i = 0; i < text.length; ) {
    const c = text[i];
    if (text.startsWith('//', i) || text.startsWith('/*', i)) {
      const end = text[i + 1] === '/' ? upTo('\n', i, 0) : upTo('*/', i + 2, 2);
      wipe(i, end);
      i = end;
    } else if (c === "'" || c === '"' || c === '`' || (c === '}' && templates.at(-1) === 0)) {
      if (c === '}') templates.pop();
      const quote = c === '}' ? '`' : c;
      let j = i + 1;
      while (j < text.length && text[j] !== quote && !(quote !== '`' && text[j] === '\n')) {
        if (quote === '`' && text.startsWith('${', j)) break;
        j += text[j] === '\\' ? 2 : 1;
      }
      if (strings) wipe(i + 1, j);
      if (text.startsWith('${', j)) templates.push(0);
      i = text.startsWith('${', j) ? j + 2 : j + 1;
    } else {
      if (templates.length && c === '{') templates[templates.length - 1]++;
      if (templates.length && c === '}') templates[templates.length - 1]--;
      i++;
    }
  }
  return out.join('');
}

const lineOf = (text, offset) => text.slice(0, offset).split('\n').length;
const moduleOf = (path) => /^src\/modules\/([^/]+)\//.exec(path)?.[1];
const violations = [];
const only = process.argv
  .slice(2)
  .filter((a) => !a.startsWith('--'))
  .map((p) => relative(ROOT, resolve(p)));
const chosen = (file) => only.length === 0 || only.some((p) => file === p || file.startsWith(`${p}/`));

for (const file of ['src', 'bench', 'scripts'].flatMap(sourceFiles).filter(chosen)) {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const code = blank(text, false);
  const report = (offset, rule) => violations.push({ file, line: lineOf(text, offset), rule });
  for (const m of code.matchAll(IMPORT_FROM)) {
    const spec = m[2] ?? m[4];
    if (!spec.startsWith('.')) continue;
    const target = relative(ROOT, resolve(ROOT, dirname(file), spec)).replaceAll(sep, '/');
    const owner = /^src\/modules\/([^/]+)\/[^/]+\.repo\.(js|ts)$/.exec(target)?.[1];
    if (owner && owner !== moduleOf(file))
      report(m.index, `imports the ${owner} repo (${spec}): go through the ${owner} service`);
  }
  if (!moduleOf(file) || SQL_EXEMPT.test(file)) continue;
  const bare = blank(text, true);
  for (const m of code.matchAll(KYSELY_IMPORT)) {
    const names = m[1] ? [] : m[2].replace(/[{}]/g, '').split(',');
    for (const name of names.map((n) => n.trim()).filter((n) => /^(sql|CompiledQuery)\b|^\*/.test(n))) {
      // Each use counts (sql`…`, sql<T>`…`, sql.raw(…), CompiledQuery.raw(…)): the import alone if unused.
      const local = name
        .split(/\s+as\s+/)
        .at(-1)
        .replace('$', '\\$');
      const use = new RegExp(`(?<![\\w$.])${local}\\s*(<[^\`]{0,400}?>\\s*)?[\`.]`, 'g');
      const uses = [...bare.matchAll(use)];
      for (const u of uses) report(u.index, `uses ${name} from kysely: SQL belongs in a repo`);
      if (!uses.length) report(m.index, `imports ${name} from kysely: SQL belongs in a repo`);
    }
  }
  for (const m of bare.matchAll(BUILDER))
    report(m.index, `builds SQL (${m[0].replace(/\s*\(.*$/s, '(')}): SQL belongs in a repo`);
}

violations.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line);
const perFile = new Map();
for (const v of violations) perFile.set(v.file, (perFile.get(v.file) ?? 0) + 1);
if (!process.argv.includes('--summary'))
  for (const v of violations) console.log(`${v.file}:${v.line}: ${v.rule}`);
if (violations.length) {
  console.log(`\ncheck-layers: ${violations.length} violation(s) in ${perFile.size} file(s)`);
  for (const [file, n] of [...perFile].sort((a, b) => b[1] - a[1]))
    console.log(`${String(n).padStart(5)}  ${file}`);
  process.exit(1);
}
console.log('check-layers: no violations');

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestProject } from 'vitest/node';
import { createPgliteDb, openPglite } from '../src/db/client.js';
import { migrate } from '../src/db/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteTemplate: string;
  }
}

/**
 * On PGlite, initdb and migrations run once: every test file starts from a copy of this
 * migrated template (a data-dir dump), which loads in well under a second.
 */
export default async function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'orgbase-template-'));
  const file = join(dir, 'template.tar');
  if (!process.env.DATABASE_URL) {
    const pg = await openPglite('memory://');
    const handle = createPgliteDb(pg);
    await migrate(handle.db);
    const dump = await pg.dumpDataDir('none');
    writeFileSync(file, Buffer.from(await dump.arrayBuffer()));
    await handle.close();
  }
  project.provide('pgliteTemplate', file);
  return () => rmSync(dir, { recursive: true, force: true });
}

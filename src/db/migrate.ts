import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import type { Db } from './client.js';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');
/** Arbitrary constant shared by every Orgbase process: only one of them migrates at a time. */
const MIGRATION_LOCK = 727_001_001n;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  checksum: string;
}

export function loadMigrations(dir = MIGRATIONS_DIR): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const text = readFileSync(join(dir, file), 'utf8');
      return {
        version: Number(file.slice(0, 4)),
        name: file.slice(5, -4),
        sql: text,
        checksum: createHash('sha256').update(text).digest('hex'),
      };
    });
}

export interface MigrateResult {
  applied: string[];
  current: number;
}

/**
 * Applies the pending forward-only migrations, each in its own transaction. A session-level
 * advisory lock on one dedicated connection makes concurrent starts safe: the second process
 * waits, then finds nothing left to do. An applied migration whose file changed is refused.
 */
export async function migrate(db: Db, migrations = loadMigrations()): Promise<MigrateResult> {
  return db.connection().execute(async (conn) => {
    await sql`select pg_advisory_lock(${MIGRATION_LOCK})`.execute(conn);
    try {
      await sql`create table if not exists schema_migrations (
        version integer primary key,
        name text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`.execute(conn);
      const done = await conn
        .selectFrom('schema_migrations')
        .select(['version', 'name', 'checksum'])
        .execute();
      const byVersion = new Map(done.map((m) => [m.version, m]));
      for (const m of migrations) {
        const prior = byVersion.get(m.version);
        if (prior && prior.checksum !== m.checksum)
          throw new Error(
            `Migration ${m.version}_${m.name} was changed after it was applied; add a new one instead`,
          );
      }
      const applied: string[] = [];
      for (const m of migrations) {
        if (byVersion.has(m.version)) continue;
        await conn.transaction().execute(async (tx) => {
          await sql.raw(m.sql).execute(tx);
          await tx
            .insertInto('schema_migrations')
            .values({ version: m.version, name: m.name, checksum: m.checksum })
            .execute();
        });
        applied.push(`${String(m.version).padStart(4, '0')}_${m.name}`);
      }
      const current = Math.max(0, ...migrations.map((m) => m.version));
      return { applied, current };
    } finally {
      await sql`select pg_advisory_unlock(${MIGRATION_LOCK})`.execute(conn);
    }
  });
}

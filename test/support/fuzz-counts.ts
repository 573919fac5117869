import { sql } from 'kysely';
import type { DbHandle } from '../../src/db/client.js';

/**
 * Counts every row inserted into, updated in or deleted from any table, with a trigger per table writing to
 * a schema of its own (`fuzz`, outside `public`, so test/harness.ts's `tableCounts` does not see
 * it). Reading one sum after each request is cheap, so a write is pinned to the request that made
 * it; a rolled-back write leaves no count, as it leaves no row. Test databases only.
 */
export async function writeCounter(db: DbHandle): Promise<{
  total: () => Promise<number>;
  byTable: () => Promise<Record<string, number>>;
}> {
  const { rows } = await sql<{ table_name: string }>`select table_name from information_schema.tables
    where table_schema = 'public' and table_type = 'BASE TABLE' order by table_name`.execute(db.db);
  await sql`create schema if not exists fuzz`.execute(db.db);
  await sql`create table if not exists fuzz.writes (t text primary key, n bigint not null)`.execute(db.db);
  await sql
    .raw(`create or replace function fuzz.count_write() returns trigger language plpgsql as $$
    begin
      insert into fuzz.writes values (TG_TABLE_NAME || ' ' || lower(TG_OP), 1)
        on conflict (t) do update set n = fuzz.writes.n + 1;
      return null;
    end $$`)
    .execute(db.db);
  for (const { table_name } of rows) {
    const table = `"${table_name.replaceAll('"', '""')}"`;
    await sql
      .raw(`create trigger fuzz_count_write after insert or update or delete on ${table}
        for each row execute function fuzz.count_write()`)
      .execute(db.db);
  }
  return {
    total: async () =>
      Number(
        (await sql<{ n: string }>`select coalesce(sum(n), 0) as n from fuzz.writes`.execute(db.db)).rows[0]
          ?.n,
      ),
    byTable: async () =>
      Object.fromEntries(
        (await sql<{ t: string; n: string }>`select t, n from fuzz.writes`.execute(db.db)).rows.map((r) => [
          r.t,
          Number(r.n),
        ]),
      ),
  };
}

/** What differs between two readings, as "table insert +n". */
export function countDiff(before: Record<string, number>, after: Record<string, number>): string[] {
  return Object.keys({ ...before, ...after })
    .filter((k) => (before[k] ?? 0) !== (after[k] ?? 0))
    .map((k) => `${k} +${(after[k] ?? 0) - (before[k] ?? 0)}`);
}

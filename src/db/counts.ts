import { sql } from 'kysely';
import type { Executor } from './client.js';

/**
 * Rows per organization among `organizationIds` in a tenant table, in one query (for list
 * pages). Tables with `deleted_at` count only live rows.
 */
export async function countByOrganization(
  db: Executor,
  table: 'members' | 'agents' | 'teams',
  organizationIds: string[],
): Promise<Map<string, number>> {
  if (organizationIds.length === 0) return new Map();
  const live = table === 'members' ? sql`` : sql`and deleted_at is null`;
  const { rows } = await sql<{ organization_id: string; n: bigint }>`select organization_id, count(*) as n
    from ${sql.table(table)} where organization_id = any(${`{${organizationIds.map((id) => JSON.stringify(id)).join(',')}}`}::text[]) ${live}
    group by organization_id`.execute(db);
  return new Map(rows.map((r) => [r.organization_id, Number(r.n)]));
}

import type { Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import { countByOrganization } from '../../db/counts.js';
import type { TeamsTable } from '../../db/schema.js';

// The `teams` table's SQL. The ledger also writes a team's month_spend as it enforces budgets.

export type TeamRow = Selectable<TeamsTable>;

export type TeamPatch = Partial<Pick<TeamRow, 'name' | 'description' | 'monthly_budget' | 'organization_id'>>;

/** A live team, its row locked until the transaction ends when `forUpdate`. */
export async function findTeam(db: Executor, id: string, forUpdate = false): Promise<TeamRow | undefined> {
  let q = db.selectFrom('teams').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

/**
 * A page of live teams in id order after `afterId`: of one organization, of any of
 * `organizationIds`, or all of them (both undefined).
 */
export async function findTeamsPage(
  db: Executor,
  opts: {
    organizationIds: string[] | undefined;
    afterId: string | undefined;
    limit: number;
  },
): Promise<TeamRow[]> {
  if (opts.organizationIds?.length === 0) return [];
  let q = db.selectFrom('teams').selectAll().where('deleted_at', 'is', null);
  if (opts.organizationIds) q = q.where('organization_id', 'in', opts.organizationIds);
  if (opts.afterId) q = q.where('id', '>', opts.afterId);
  return q.orderBy('id').limit(opts.limit).execute();
}

export async function insertTeam(
  db: Executor,
  row: {
    id: string;
    organization_id: string | null;
    name: string;
    description: string | null;
    monthly_budget: bigint | null;
  },
): Promise<TeamRow> {
  return db.insertInto('teams').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function updateTeam(db: Executor, id: string, patch: TeamPatch): Promise<TeamRow> {
  return db
    .updateTable('teams')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function softDeleteTeam(db: Executor, id: string): Promise<void> {
  const now = new Date();
  await db.updateTable('teams').set({ deleted_at: now, updated_at: now }).where('id', '=', id).execute();
}

/** The organization's teams lose it; they remain. */
export async function detachTeamsOf(db: Executor, organizationId: string): Promise<void> {
  await db
    .updateTable('teams')
    .set({ organization_id: null, updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .execute();
}

export async function countTeams(db: Executor, organizationId: string): Promise<number> {
  const r = await db
    .selectFrom('teams')
    .select((eb) => eb.fn.countAll<bigint>().as('n'))
    .where('organization_id', '=', organizationId)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Live teams per organization among `organizationIds`, in one query (list pages). */
export function countTeamsByOrganization(db: Executor, organizationIds: string[]) {
  return countByOrganization(db, 'teams', organizationIds);
}

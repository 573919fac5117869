import { type Selectable, sql } from 'kysely';
import type { Executor } from '../../db/client.js';
import { pgArray } from '../../db/pg-array.js';
import type { AgentsTable } from '../../db/schema.js';

export type AgentRow = Selectable<AgentsTable>;

export async function findAgent(db: Executor, id: string, forUpdate = false): Promise<AgentRow | undefined> {
  let q = db.selectFrom('agents').selectAll().where('id', '=', id).where('deleted_at', 'is', null);
  if (forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

export async function findAgents(
  db: Executor,
  opts: { organizationIds: string[] | undefined; afterId: string | undefined; limit: number },
): Promise<AgentRow[]> {
  if (opts.organizationIds?.length === 0) return [];
  let q = db.selectFrom('agents').selectAll().where('deleted_at', 'is', null);
  if (opts.organizationIds) q = q.where('organization_id', 'in', opts.organizationIds);
  if (opts.afterId) q = q.where('id', '>', opts.afterId);
  return q.orderBy('id').limit(opts.limit).execute();
}

export async function countAgents(db: Executor, organizationId: string): Promise<number> {
  const r = await db
    .selectFrom('agents')
    .select((eb) => eb.fn.countAll<bigint>().as('n'))
    .where('organization_id', '=', organizationId)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

export async function insertAgent(
  db: Executor,
  row: {
    organization_id: string;
    id: string;
    name: string;
    description: string | null;
    status: string;
    billing_rate: bigint | null;
  },
) {
  return db.insertInto('agents').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function updateAgent(
  db: Executor,
  id: string,
  patch: Partial<
    Pick<AgentRow, 'name' | 'description' | 'status' | 'billing_rate' | 'organization_id' | 'deleted_at'>
  >,
) {
  return db
    .updateTable('agents')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Closes the agent's open assignment and, unless it is being deleted, opens one in `to`. */
export async function moveAssignment(db: Executor, agentId: string, at: Date, to: string | null) {
  await db
    .updateTable('agent_assignments')
    .set({ unassigned_at: at })
    .where('agent_id', '=', agentId)
    .where('unassigned_at', 'is', null)
    .execute();
  if (to)
    await db
      .insertInto('agent_assignments')
      .values({ organization_id: to, agent_id: agentId, assigned_at: at })
      .execute();
}

/** Assignment intervals overlapping [start, end), of one organization or (null) of all. */
export async function findAssignmentsDuring(
  db: Executor,
  organizationId: string | null,
  start: Date,
  end: Date,
) {
  let q = db
    .selectFrom('agent_assignments')
    .select(['organization_id', 'agent_id', 'assigned_at', 'unassigned_at']);
  if (organizationId !== null) q = q.where('organization_id', '=', organizationId);
  return q
    .where('assigned_at', '<', end)
    .where((eb) => eb.or([eb('unassigned_at', 'is', null), eb('unassigned_at', '>', start)]))
    .execute();
}

/** Agents by id, deleted ones included (their history still bills). */
export async function findAgentsByIds(db: Executor, ids: string[]): Promise<AgentRow[]> {
  if (ids.length === 0) return [];
  return db.selectFrom('agents').selectAll().where('id', 'in', ids).execute();
}

/** The organization each live agent among `ids` works for. */
export async function findAgentOrganizations(db: Executor, ids: string[]): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('agents')
    .select(['id', 'organization_id'])
    .where('id', 'in', ids)
    .where('deleted_at', 'is', null)
    .execute();
  return new Map(rows.map((r) => [r.id, r.organization_id]));
}

/** Each of these agents' own-rate history, oldest first (a few rows each). */
export async function findRateHistories(
  db: Executor,
  agentIds: string[],
): Promise<Map<string, Array<{ at: Date; rate: bigint | null }>>> {
  const out = new Map<string, Array<{ at: Date; rate: bigint | null }>>();
  if (agentIds.length === 0) return out;
  const { rows } = await sql<{ agent_id: string; changed_at: Date; billing_rate: bigint | null }>`
    select agent_id, changed_at, billing_rate from agent_rate_history
    where agent_id = any(${pgArray(agentIds)}::text[])
    order by agent_id, changed_at`.execute(db);
  for (const r of rows) {
    const list = out.get(r.agent_id) ?? [];
    list.push({ at: r.changed_at, rate: r.billing_rate });
    out.set(r.agent_id, list);
  }
  return out;
}

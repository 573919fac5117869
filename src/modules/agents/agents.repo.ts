import { type Selectable, sql } from 'kysely';
import type { Executor } from '../../db/client.js';
import { countByOrganization } from '../../db/counts.js';
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
): Promise<
  Array<{ organization_id: string; agent_id: string; assigned_at: Date; unassigned_at: Date | null }>
> {
  // Times as epoch milliseconds: the platform's month reads every assignment, and a float parses
  // far faster than a timestamp.
  const only = organizationId === null ? sql`` : sql`organization_id = ${organizationId} and`;
  const { rows } = await sql<{
    organization_id: string;
    agent_id: string;
    from_ms: number;
    to_ms: number | null;
  }>`
    select organization_id, agent_id, extract(epoch from assigned_at)::float8 * 1000 as from_ms,
      extract(epoch from unassigned_at)::float8 * 1000 as to_ms
    from agent_assignments
    where ${only} assigned_at < ${end} and (unassigned_at is null or unassigned_at > ${start})`.execute(db);
  return rows.map((r) => ({
    organization_id: r.organization_id,
    agent_id: r.agent_id,
    assigned_at: new Date(r.from_ms),
    unassigned_at: r.to_ms === null ? null : new Date(r.to_ms),
  }));
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

/** `at_ms`: the time as epoch milliseconds (a float parses far faster than a timestamp, thousands of rows at a time). */
type RateRow = { agent_id: string; at_ms: number; billing_rate: bigint | null };

/** Histories per agent, each oldest first (rows come unordered: sorting text keys costs more in SQL). */
function histories(rows: RateRow[]): Map<string, Array<{ at: Date; rate: bigint | null }>> {
  const out = new Map<string, Array<{ at: Date; rate: bigint | null }>>();
  for (const r of rows) {
    const list = out.get(r.agent_id);
    const entry = { at: new Date(r.at_ms), rate: r.billing_rate };
    if (list) list.push(entry);
    else out.set(r.agent_id, [entry]);
  }
  for (const list of out.values()) if (list.length > 1) list.sort((a, b) => a.at.getTime() - b.at.getTime());
  return out;
}

/** Each of these agents' own-rate history, oldest first (a few rows each). */
export async function findRateHistories(
  db: Executor,
  agentIds: string[],
): Promise<Map<string, Array<{ at: Date; rate: bigint | null }>>> {
  if (agentIds.length === 0) return new Map();
  const { rows } = await sql<RateRow>`
    select agent_id, extract(epoch from changed_at)::float8 * 1000 as at_ms, billing_rate from agent_rate_history
    where agent_id = any(${pgArray(agentIds)}::text[])`.execute(db);
  return histories(rows);
}

/** Assignments overlapping [start, end), of one organization (or of all: null). */
const assignedDuring = (organizationId: string | null, start: Date, end: Date) =>
  sql`select agent_id from agent_assignments
      where ${organizationId === null ? sql`` : sql`organization_id = ${organizationId} and`}
        assigned_at < ${end} and (unassigned_at is null or unassigned_at > ${start})`;

/**
 * The own-rate histories of every agent assigned during [start, end) — in one organization, or
 * anywhere (null) — in one semi-join.
 */
export async function findRateHistoriesDuring(
  db: Executor,
  organizationId: string | null,
  start: Date,
  end: Date,
): Promise<Map<string, Array<{ at: Date; rate: bigint | null }>>> {
  const { rows } = await sql<RateRow>`
    select agent_id, extract(epoch from changed_at)::float8 * 1000 as at_ms, billing_rate from agent_rate_history
    where agent_id in (${assignedDuring(organizationId, start, end)})`.execute(db);
  return histories(rows);
}

/** The agents (deleted ones too) assigned to an organization during [start, end). */
export async function findAgentsAssignedDuring(
  db: Executor,
  organizationId: string,
  start: Date,
  end: Date,
): Promise<Array<{ id: string; name: string; billing_rate: bigint | null }>> {
  const { rows } = await sql<{ id: string; name: string; billing_rate: bigint | null }>`
    select id, name, billing_rate from agents
    where id in (${assignedDuring(organizationId, start, end)})`.execute(db);
  return rows;
}

/** Live agents per organization among `organizationIds`, in one query (list pages). */
export function countAgentsByOrganization(db: Executor, organizationIds: string[]) {
  return countByOrganization(db, 'agents', organizationIds);
}

import { type Selectable, sql } from 'kysely';
import type { Executor, Tx } from '../../db/client.js';
import { pgArray } from '../../db/pg-array.js';
import type { OrganizationsTable } from '../../db/schema.js';

export type OrganizationRow = Selectable<OrganizationsTable>;

export interface NewOrganizationRow {
  id: string;
  name: string;
  slug: string;
  description: string | null;
  contact_name: string | null;
  contact_email: string | null;
  billing_rate_per_agent: bigint;
  currency: string;
  parent_id: string | null;
  plan?: string;
}

export type OrganizationPatch = Partial<
  Pick<
    NewOrganizationRow,
    'name' | 'slug' | 'description' | 'contact_name' | 'contact_email' | 'billing_rate_per_agent' | 'currency'
  > & { active: boolean; plan: string; parent_id: string | null; branding: string }
>;

export async function findOrganization(
  db: Executor,
  key: { id: string } | { slug: string },
  opts: { includeDeleted?: boolean; forUpdate?: boolean } = {},
): Promise<OrganizationRow | undefined> {
  let q = db.selectFrom('organizations').selectAll();
  q = 'id' in key ? q.where('id', '=', key.id) : q.where('slug', '=', key.slug);
  if (!opts.includeDeleted) q = q.where('deleted_at', 'is', null);
  if (opts.forUpdate) q = q.forUpdate();
  // A deleted organization's slug may have been reused: the live one wins.
  return q
    .orderBy('deleted_at', (ob) => ob.desc().nullsFirst())
    .limit(1)
    .executeTakeFirst();
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}

export async function findOrganizations(
  db: Executor,
  opts: {
    visibleIds: string[] | undefined;
    q: string | undefined;
    active: boolean | undefined;
    beforeId: string | undefined;
    limit: number;
  },
): Promise<OrganizationRow[]> {
  if (opts.visibleIds?.length === 0) return [];
  let q = db.selectFrom('organizations').selectAll().where('deleted_at', 'is', null);
  if (opts.visibleIds) q = q.where('id', 'in', opts.visibleIds);
  if (opts.q !== undefined) {
    const pattern = `%${escapeLike(opts.q)}%`;
    q = q.where((eb) => eb.or([eb('name', 'ilike', pattern), eb('slug', 'ilike', pattern)]));
  }
  if (opts.active !== undefined) q = q.where('active', '=', opts.active);
  if (opts.beforeId !== undefined) q = q.where('id', '<', opts.beforeId);
  return q.orderBy('id', 'desc').limit(opts.limit).execute();
}

/** Live slugs equal to `base` or of the form `base-N`. */
export async function findSlugFamily(db: Executor, base: string): Promise<string[]> {
  const rows = await db
    .selectFrom('organizations')
    .select('slug')
    .where('deleted_at', 'is', null)
    .where((eb) => eb.or([eb('slug', '=', base), eb('slug', '~', `^${base}-[0-9]+$`)]))
    .execute();
  return rows.map((r) => r.slug);
}

/** Inserts unless the slug is taken by a live organization; undefined then, and nothing written. */
export async function insertOrganization(
  db: Executor,
  row: NewOrganizationRow,
): Promise<OrganizationRow | undefined> {
  return db
    .insertInto('organizations')
    .values(row)
    .onConflict((oc) => oc.column('slug').where('deleted_at', 'is', null).doNothing())
    .returningAll()
    .executeTakeFirst();
}

export async function updateOrganization(
  db: Executor,
  id: string,
  patch: OrganizationPatch,
): Promise<OrganizationRow> {
  return db
    .updateTable('organizations')
    .set({ ...patch, updated_at: new Date() })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function slugInUse(db: Executor, slug: string, exceptId: string): Promise<boolean> {
  const row = await db
    .selectFrom('organizations')
    .select('id')
    .where('slug', '=', slug)
    .where('deleted_at', 'is', null)
    .where('id', '!=', exceptId)
    .executeTakeFirst();
  return row !== undefined;
}

export async function countSubOrganizations(db: Executor, id: string): Promise<number> {
  const row = await db
    .selectFrom('organizations')
    .select((eb) => eb.fn.countAll<bigint>().as('n'))
    .where('parent_id', '=', id)
    .where('deleted_at', 'is', null)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

export async function findSubOrganizationIds(db: Executor, id: string): Promise<string[]> {
  const rows = await db
    .selectFrom('organizations')
    .select('id')
    .where('parent_id', '=', id)
    .where('deleted_at', 'is', null)
    .orderBy('id')
    .execute();
  return rows.map((r) => r.id);
}

export async function softDeleteOrganization(db: Executor, id: string): Promise<void> {
  const now = new Date();
  await db
    .updateTable('organizations')
    .set({ deleted_at: now, updated_at: now, active: false })
    .where('id', '=', id)
    .execute();
}

export async function findLiveStates(db: Executor, ids: string[]): Promise<Map<string, { active: boolean }>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('organizations')
    .select(['id', 'active'])
    .where('id', 'in', ids)
    .where('deleted_at', 'is', null)
    .execute();
  return new Map(rows.map((r) => [r.id, { active: r.active }]));
}

export interface TreeNode {
  id: string;
  parent_id: string | null;
  plan: string;
  /** Levels below the organization the walk started from (its ancestors: above). */
  depth: number;
}

/** Every live organization below `rootIds` (not the roots themselves), nearest first. */
export async function findDescendants(db: Executor, rootIds: string[]): Promise<TreeNode[]> {
  if (rootIds.length === 0) return [];
  const { rows } = await sql<TreeNode>`with recursive tree as (
      select o.id, o.parent_id, o.plan, 1 as depth from organizations o
      where o.parent_id = any(${pgArray(rootIds)}::text[]) and o.deleted_at is null
      union all
      select c.id, c.parent_id, c.plan, t.depth + 1 from organizations c
      join tree t on c.parent_id = t.id
      where c.deleted_at is null)
    select id, parent_id, plan, depth::int as depth from tree order by depth, id`.execute(db);
  return rows;
}

/** The organization and its ancestors, itself first (depth 0), then parent (1), up to the top. */
export async function findAncestry(db: Executor, id: string): Promise<TreeNode[]> {
  const { rows } = await sql<TreeNode>`with recursive chain as (
      select o.id, o.parent_id, o.plan, 0 as depth from organizations o where o.id = ${id}
      union all
      select p.id, p.parent_id, p.plan, c.depth + 1 from organizations p join chain c on p.id = c.parent_id)
    select id, parent_id, plan, depth::int as depth from chain order by depth`.execute(db);
  return rows;
}

/** Live direct children of an organization, newest first (`beforeId`: the previous page's last id). */
export async function findChildren(
  db: Executor,
  parentId: string,
  opts: { beforeId: string | undefined; limit: number },
): Promise<OrganizationRow[]> {
  let q = db
    .selectFrom('organizations')
    .selectAll()
    .where('parent_id', '=', parentId)
    .where('deleted_at', 'is', null);
  if (opts.beforeId !== undefined) q = q.where('id', '<', opts.beforeId);
  return q.orderBy('id', 'desc').limit(opts.limit).execute();
}

/**
 * Locks the user's row (FOR NO KEY UPDATE: it serializes these lockers without holding up what
 * merely references the user, such as a new session) until the transaction ends.
 */
/** The live organizations among `ids`, by id: what a member's organization switcher shows. */
export async function findLiveSummaries(
  db: Executor,
  ids: string[],
): Promise<Array<{ id: string; name: string; slug: string; active: boolean; parent_id: string | null }>> {
  if (ids.length === 0) return [];
  return db
    .selectFrom('organizations')
    .select(['id', 'name', 'slug', 'active', 'parent_id'])
    .where('id', 'in', ids)
    .where('deleted_at', 'is', null)
    .orderBy('id')
    .execute();
}

/** The live top-level organizations among `ids`, the default one left out, with their plans. */
export async function findTopLevelAmong(db: Executor, ids: string[]) {
  if (ids.length === 0) return [];
  return db
    .selectFrom('organizations')
    .select(['id', 'plan'])
    .where('id', 'in', ids)
    .where('parent_id', 'is', null)
    .where('is_default', '=', false)
    .where('deleted_at', 'is', null)
    .execute();
}

/** Names, currencies and parents of these organizations (live or not), for reports. */
export async function findSummaries(db: Executor, ids: string[]) {
  if (ids.length === 0) return [];
  return db
    .selectFrom('organizations')
    .select(['id', 'name', 'slug', 'currency', 'parent_id', 'plan'])
    .where('id', 'in', ids)
    .execute();
}

/**
 * billing_rate_per_agent over time for these organizations (undefined: all of them), each oldest
 * first. Rows come unordered: sorting text keys costs more in SQL than a few dates in Node.
 */
export async function findRateHistories(
  db: Executor,
  organizationIds: string[] | undefined,
): Promise<Map<string, Array<{ at: Date; rate: bigint | null }>>> {
  const out = new Map<string, Array<{ at: Date; rate: bigint | null }>>();
  if (organizationIds?.length === 0) return out;
  const only = organizationIds
    ? sql`where organization_id = any(${pgArray(organizationIds)}::text[])`
    : sql``;
  const { rows } = await sql<{ organization_id: string; changed_at: Date; rate: bigint }>`
    select organization_id, changed_at, rate from organization_rate_history ${only}`.execute(db);
  for (const r of rows) {
    const list = out.get(r.organization_id);
    if (list) list.push({ at: r.changed_at, rate: r.rate });
    else out.set(r.organization_id, [{ at: r.changed_at, rate: r.rate }]);
  }
  for (const list of out.values()) if (list.length > 1) list.sort((a, b) => a.at.getTime() - b.at.getTime());
  return out;
}

/** NOTIFY `channel` with `payload` when `tx` commits (other processes forget what they cached). */
export async function notify(tx: Tx, channel: string, payload: string): Promise<void> {
  await sql`select pg_notify(${channel}, ${payload})`.execute(tx);
}

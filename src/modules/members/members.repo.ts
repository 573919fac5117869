import type { Executor } from '../../db/client.js';
import { countByOrganization } from '../../db/counts.js';
import type { Role } from '../../lib/authz.js';

// The `members` table's SQL. Some statements join `users` (the auth module's table) for a
// member's name and email, read-only: one statement where going through the auth module would
// take two round trips (a page of members), or where one statement of one shape is the point
// (findAccountMembershipsAmong).

export interface MemberRow {
  organization_id: string;
  user_id: string;
  role: Role;
  name: string;
  email: string;
  created_at: Date;
  updated_at: Date;
}

export async function findRolesOfUser(
  db: Executor,
  userId: string,
): Promise<Array<{ organization_id: string; role: Role }>> {
  return (await db
    .selectFrom('members')
    .select(['organization_id', 'role'])
    .where('user_id', '=', userId)
    .execute()) as Array<{
    organization_id: string;
    role: Role;
  }>;
}

function memberQuery(db: Executor) {
  return db
    .selectFrom('members as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select([
      'm.organization_id',
      'm.user_id',
      'm.role',
      'u.name',
      'u.email',
      'm.created_at',
      'm.updated_at',
    ]);
}

export async function findMembers(
  db: Executor,
  organizationId: string,
  opts: { afterUserId: string | undefined; limit: number },
): Promise<MemberRow[]> {
  let q = memberQuery(db).where('m.organization_id', '=', organizationId);
  if (opts.afterUserId) q = q.where('m.user_id', '>', opts.afterUserId);
  return (await q.orderBy('m.user_id').limit(opts.limit).execute()) as MemberRow[];
}

export async function findMember(db: Executor, organizationId: string, userId: string, forUpdate = false) {
  let q = memberQuery(db).where('m.organization_id', '=', organizationId).where('m.user_id', '=', userId);
  if (forUpdate) q = q.forUpdate();
  return (await q.executeTakeFirst()) as MemberRow | undefined;
}

/** Locks the organization's owner rows, so two demotions cannot both leave it ownerless. */
export async function lockOwners(db: Executor, organizationId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('members')
    .select('user_id')
    .where('organization_id', '=', organizationId)
    .where('role', '=', 'owner')
    .forUpdate()
    .execute();
  return rows.map((r) => r.user_id);
}

export async function insertMember(
  db: Executor,
  row: { organization_id: string; user_id: string; role: Role },
) {
  const inserted = await db
    .insertInto('members')
    .values(row)
    .onConflict((oc) => oc.columns(['organization_id', 'user_id']).doNothing())
    .returning('user_id')
    .executeTakeFirst();
  return inserted !== undefined;
}

export async function updateMemberRole(db: Executor, organizationId: string, userId: string, role: Role) {
  await db
    .updateTable('members')
    .set({ role, updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .execute();
}

export async function deleteMember(db: Executor, organizationId: string, userId: string) {
  await db
    .deleteFrom('members')
    .where('organization_id', '=', organizationId)
    .where('user_id', '=', userId)
    .execute();
}

export async function deleteMembersOf(db: Executor, organizationId: string) {
  await db.deleteFrom('members').where('organization_id', '=', organizationId).execute();
}

export async function countMembers(db: Executor, organizationId: string): Promise<number> {
  const r = await db
    .selectFrom('members')
    .select((eb) => eb.fn.countAll<bigint>().as('n'))
    .where('organization_id', '=', organizationId)
    .executeTakeFirstOrThrow();
  return Number(r.n);
}

/** Members per organization among `organizationIds`, in one query (list pages). */
export function countMembersByOrganization(db: Executor, organizationIds: string[]) {
  return countByOrganization(db, 'members', organizationIds);
}

/** The organization the user joined first, if any. */
export async function findFirstOrganizationOf(db: Executor, userId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('members')
    .select('organization_id')
    .where('user_id', '=', userId)
    .orderBy('created_at')
    .limit(1)
    .executeTakeFirst();
  return row?.organization_id;
}

/** Whether the account with this (lower-case) address is a member of the organization. */
export async function isMemberByEmail(db: Executor, organizationId: string, email: string): Promise<boolean> {
  const row = await db
    .selectFrom('members as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select('u.id')
    .where('m.organization_id', '=', organizationId)
    .where('u.email', '=', email)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * The memberships among `organizationIds` of the account with this id or email (one of them
 * given), in one statement of the same shape either way ('' matches no account): it says whether
 * such an account exists only through whether it shares one of these organizations.
 */
export async function findAccountMembershipsAmong(
  db: Executor,
  who: { userId?: string | undefined; email?: string | undefined },
  organizationIds: string[],
): Promise<Array<{ user_id: string; organization_id: string }>> {
  return db
    .selectFrom('members as m')
    .innerJoin('users as u', 'u.id', 'm.user_id')
    .select(['m.user_id', 'm.organization_id'])
    .where((eb) =>
      eb.or([eb('u.id', '=', who.userId ?? ''), eb('u.email', '=', who.email?.toLowerCase() ?? '')]),
    )
    .where('m.organization_id', 'in', organizationIds)
    .execute();
}

/**
 * How many organizations each of `userIds` belongs to, their membership rows locked: two
 * deletions (or leavings) of one person's last two organizations take turns and the second sees
 * the first. Memberships of deleted organizations are deleted with them.
 */
export async function lockMembershipCounts(db: Executor, userIds: string[]): Promise<Map<string, number>> {
  const counts = new Map<string, number>(userIds.map((id) => [id, 0]));
  if (userIds.length === 0) return counts;
  const rows = await db
    .selectFrom('members')
    .select(['user_id', 'organization_id'])
    .where('user_id', 'in', userIds)
    .orderBy('user_id')
    .orderBy('organization_id')
    .forUpdate()
    .execute();
  for (const r of rows) counts.set(r.user_id, (counts.get(r.user_id) ?? 0) + 1);
  return counts;
}

/** The owners of an organization. */
export async function findOwners(db: Executor, organizationId: string): Promise<string[]> {
  const rows = await db
    .selectFrom('members')
    .select('user_id')
    .where('organization_id', '=', organizationId)
    .where('role', '=', 'owner')
    .execute();
  return rows.map((r) => r.user_id);
}

/** The members of `organizationId` who are owners or admins of any of `overseers`. */
export async function findMembersManagingAny(
  db: Executor,
  organizationId: string,
  overseers: string[],
): Promise<string[]> {
  if (overseers.length === 0) return [];
  const rows = await db
    .selectFrom('members as m')
    .select('m.user_id')
    .where('m.organization_id', '=', organizationId)
    .where((eb) =>
      eb.exists(
        eb
          .selectFrom('members as p')
          .select('p.user_id')
          .whereRef('p.user_id', '=', 'm.user_id')
          .where('p.organization_id', 'in', overseers)
          .where('p.role', 'in', ['owner', 'admin']),
      ),
    )
    .orderBy('m.user_id')
    .execute();
  return rows.map((r) => r.user_id);
}

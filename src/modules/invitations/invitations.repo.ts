import { sql } from 'kysely';
import type { Executor } from '../../db/client.js';

export interface InvitationRow {
  organization_id: string;
  id: string;
  email: string;
  role: string;
  token_hash: string;
  status: string;
  invited_by: string | null;
  expires_at: Date;
  sent_count: number;
  last_sent_at: Date | null;
  accepted_by: string | null;
  created_at: Date;
  updated_at: Date;
}

/** The invitation's role and status, its row locked until the transaction ends; undefined if none. */
export async function findInvitationForUpdate(
  db: Executor,
  organizationId: string,
  invitationId: string,
): Promise<{ role: string; status: string } | undefined> {
  return db
    .selectFrom('invitations')
    .select(['role', 'status'])
    .where('organization_id', '=', organizationId)
    .where('id', '=', invitationId)
    .forUpdate()
    .executeTakeFirst();
}

export async function findInvitationByTokenHash(
  db: Executor,
  tokenHash: string,
): Promise<InvitationRow | undefined> {
  return db.selectFrom('invitations').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
}

export async function findInvitationsOf(db: Executor, organizationId: string): Promise<InvitationRow[]> {
  return db
    .selectFrom('invitations')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('id')
    .execute();
}

/** Newest first, before `beforeId` when given. */
export async function findInvitationsPage(
  db: Executor,
  organizationId: string,
  opts: { beforeId: string | undefined; limit: number },
): Promise<InvitationRow[]> {
  let q = db.selectFrom('invitations').selectAll().where('organization_id', '=', organizationId);
  if (opts.beforeId) q = q.where('id', '<', opts.beforeId);
  return q.orderBy('id', 'desc').limit(opts.limit).execute();
}

/** Revokes the organization's pending invitations, or only `email`'s expired ones when given. */
export async function updatePendingRevoked(
  db: Executor,
  organizationId: string,
  only?: { expiredFor: string },
): Promise<void> {
  let q = db
    .updateTable('invitations')
    .set({ status: 'revoked', updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .where('status', '=', 'pending');
  if (only) q = q.where('email', '=', only.expiredFor).where('expires_at', '<=', new Date());
  await q.execute();
}

/** Inserts a pending invitation; undefined when the address already has one pending. */
export async function insertInvitation(
  db: Executor,
  row: {
    organization_id: string;
    id: string;
    email: string;
    role: string;
    token_hash: string;
    invited_by: string;
    expires_at: Date;
  },
): Promise<InvitationRow | undefined> {
  return db
    .insertInto('invitations')
    .values({ ...row, sent_count: 1, last_sent_at: new Date() })
    .onConflict((oc) =>
      oc.expression(sql`organization_id, lower(email)`).where('status', '=', 'pending').doNothing(),
    )
    .returningAll()
    .executeTakeFirst();
}

/** A pending invitation's new token and expiry, one more send counted; undefined unless pending. */
export async function updateInvitationResent(
  db: Executor,
  organizationId: string,
  invitationId: string,
  change: { token_hash: string; expires_at: Date },
): Promise<InvitationRow | undefined> {
  return db
    .updateTable('invitations')
    .set((eb) => ({
      ...change,
      sent_count: eb('sent_count', '+', 1),
      last_sent_at: new Date(),
      updated_at: new Date(),
    }))
    .where('organization_id', '=', organizationId)
    .where('id', '=', invitationId)
    .where('status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

/** Revokes one pending invitation. */
export async function updateInvitationRevoked(
  db: Executor,
  organizationId: string,
  invitationId: string,
): Promise<void> {
  await db
    .updateTable('invitations')
    .set({ status: 'revoked', updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .where('id', '=', invitationId)
    .where('status', '=', 'pending')
    .execute();
}

/** Marks a pending invitation accepted by `userId`; false when it is no longer pending. */
export async function updateInvitationAccepted(
  db: Executor,
  organizationId: string,
  invitationId: string,
  userId: string,
): Promise<boolean> {
  const row = await db
    .updateTable('invitations')
    .set({ status: 'accepted', accepted_by: userId, updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .where('id', '=', invitationId)
    .where('status', '=', 'pending')
    .returning('id')
    .executeTakeFirst();
  return row !== undefined;
}

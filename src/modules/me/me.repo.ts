import type { Executor } from '../../db/client.js';

// The `session_contexts` table's SQL: per session, its active organization and "join as" state.

export async function findActiveOrganization(db: Executor, sessionId: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('session_contexts')
    .select('active_organization_id')
    .where('session_id', '=', sessionId)
    .executeTakeFirst();
  return row?.active_organization_id;
}

export async function upsertActiveOrganization(db: Executor, sessionId: string, organizationId: string) {
  await db
    .insertInto('session_contexts')
    .values({ session_id: sessionId, active_organization_id: organizationId })
    .onConflict((oc) =>
      oc.column('session_id').doUpdateSet({ active_organization_id: organizationId, updated_at: new Date() }),
    )
    .execute();
}

/** The session's first context; a session that has one keeps it. */
export async function insertSessionContext(db: Executor, sessionId: string, organizationId: string) {
  await db
    .insertInto('session_contexts')
    .values({ session_id: sessionId, active_organization_id: organizationId })
    .onConflict((oc) => oc.column('session_id').doNothing())
    .execute();
}

export async function findJoined(db: Executor, sessionId: string) {
  return db
    .selectFrom('session_contexts')
    .select(['joined_organization_id', 'joined_role', 'return_organization_id'])
    .where('session_id', '=', sessionId)
    .executeTakeFirst();
}

export async function upsertJoined(
  db: Executor,
  sessionId: string,
  joined: {
    active_organization_id: string;
    joined_organization_id: string;
    joined_role: string;
    return_organization_id: string | null;
  },
) {
  await db
    .insertInto('session_contexts')
    .values({ session_id: sessionId, ...joined })
    .onConflict((oc) => oc.column('session_id').doUpdateSet({ ...joined, updated_at: new Date() }))
    .execute();
}

/** Ends "join as": active in `returnTo` again. */
export async function updateLeft(db: Executor, sessionId: string, returnTo: string) {
  await db
    .updateTable('session_contexts')
    .set({
      active_organization_id: returnTo,
      joined_organization_id: null,
      joined_role: null,
      return_organization_id: null,
      updated_at: new Date(),
    })
    .where('session_id', '=', sessionId)
    .execute();
}

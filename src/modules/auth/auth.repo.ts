import type { Executor, Tx } from '../../db/client.js';

/** An account as other modules see it: never its password, sessions or verification state. */
export interface AccountRow {
  id: string;
  name: string;
  email: string;
  created_at: Date;
}

/** The account with this address (compared as stored: lower-case), if any. */
export async function findUserIdByEmail(db: Executor, email: string): Promise<string | undefined> {
  const row = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  return row?.id;
}

export async function findAccountById(db: Executor, id: string): Promise<AccountRow | undefined> {
  return db
    .selectFrom('users')
    .select(['id', 'name', 'email', 'created_at'])
    .where('id', '=', id)
    .executeTakeFirst();
}

/** `email` is compared as stored: the caller lower-cases it. */
export async function findAccountByEmail(db: Executor, email: string): Promise<AccountRow | undefined> {
  return db
    .selectFrom('users')
    .select(['id', 'name', 'email', 'created_at'])
    .where('email', '=', email)
    .executeTakeFirst();
}

/**
 * Locks the user's row (FOR NO KEY UPDATE: it serializes these lockers without holding up what
 * merely references the user, such as a new session) until the transaction ends.
 */
export async function lockUser(tx: Tx, userId: string): Promise<void> {
  await tx.selectFrom('users').select('id').where('id', '=', userId).forNoKeyUpdate().execute();
}

export async function updateUserEmailVerified(db: Executor, email: string): Promise<void> {
  await db.updateTable('users').set({ email_verified: true }).where('email', '=', email).execute();
}

/** Stores `value` under `key` unless a value is there already; returns the stored one. */
export async function insertSettingOnce(db: Executor, key: string, value: string): Promise<string> {
  await db
    .insertInto('platform_settings')
    .values({ key, value })
    .onConflict((oc) => oc.column('key').doNothing())
    .execute();
  const row = await db
    .selectFrom('platform_settings')
    .select('value')
    .where('key', '=', key)
    .executeTakeFirstOrThrow();
  return row.value;
}

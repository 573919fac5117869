import type { Executor } from '../../db/client.js';

/** The account with this address (compared as stored: lower-case), if any. */
export async function findUserIdByEmail(db: Executor, email: string): Promise<string | undefined> {
  const row = await db.selectFrom('users').select('id').where('email', '=', email).executeTakeFirst();
  return row?.id;
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

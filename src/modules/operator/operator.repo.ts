import type { Executor, Tx } from '../../db/client.js';

// The `operator_credentials` table's SQL: SHA-256 hashes of operator tokens.

/** The hashes not revoked (one, normally). */
export async function findLiveCredentials(db: Executor): Promise<Array<{ id: string; token_hash: string }>> {
  return db
    .selectFrom('operator_credentials')
    .select(['id', 'token_hash'])
    .where('revoked_at', 'is', null)
    .execute();
}

/** Revokes every live credential and stores the new one, in the caller's transaction. */
export async function replaceCredential(tx: Tx, row: { id: string; token_hash: string }): Promise<void> {
  await tx
    .updateTable('operator_credentials')
    .set({ revoked_at: new Date() })
    .where('revoked_at', 'is', null)
    .execute();
  await tx.insertInto('operator_credentials').values(row).execute();
}

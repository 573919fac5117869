import { type Selectable, sql } from 'kysely';
import type { Executor, Tx } from '../../db/client.js';
import type { ApiKeysTable } from '../../db/schema.js';

// The `api_keys` table's SQL, and the NOTIFY that tells every process a key changed.

export type KeyRow = Selectable<ApiKeysTable>;

/** What revoking or forgetting a key needs. */
export type KeyRef = Pick<KeyRow, 'organization_id' | 'id' | 'prefix'>;

export async function findKeyByPrefix(db: Executor, prefix: string): Promise<KeyRow | undefined> {
  return db.selectFrom('api_keys').selectAll().where('prefix', '=', prefix).executeTakeFirst();
}

/** An organization's keys in id order (`desc`: newest first). */
export async function findKeysOf(
  db: Executor,
  organizationId: string,
  order: 'asc' | 'desc',
): Promise<KeyRow[]> {
  return db
    .selectFrom('api_keys')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('id', order)
    .execute();
}

/** The key, its row locked until the transaction ends; undefined if none. */
export async function findKeyForUpdate(
  tx: Tx,
  organizationId: string,
  id: string,
): Promise<(KeyRef & Pick<KeyRow, 'revoked_at'>) | undefined> {
  return tx
    .selectFrom('api_keys')
    .select(['organization_id', 'id', 'prefix', 'revoked_at'])
    .where('organization_id', '=', organizationId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

/** The keys not yet revoked of an organization, or of an agent. */
export async function findLiveKeys(
  db: Executor,
  of: { organizationId: string } | { agentId: string },
): Promise<KeyRef[]> {
  let q = db
    .selectFrom('api_keys')
    .select(['organization_id', 'id', 'prefix'])
    .where('revoked_at', 'is', null);
  q =
    'agentId' in of
      ? q.where('agent_id', '=', of.agentId)
      : q.where('organization_id', '=', of.organizationId);
  return q.execute();
}

export async function insertKey(
  db: Executor,
  row: Pick<
    KeyRow,
    | 'organization_id'
    | 'id'
    | 'name'
    | 'prefix'
    | 'key_hash'
    | 'scopes'
    | 'created_by'
    | 'expires_at'
    | 'agent_id'
  >,
): Promise<KeyRow> {
  return db.insertInto('api_keys').values(row).returningAll().executeTakeFirstOrThrow();
}

export async function updateLastUsed(db: Executor, key: KeyRef, at: Date): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ last_used_at: at })
    .where('organization_id', '=', key.organization_id)
    .where('id', '=', key.id)
    .execute();
}

export async function updateRevoked(db: Executor, key: KeyRef): Promise<void> {
  await db
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('organization_id', '=', key.organization_id)
    .where('id', '=', key.id)
    .where('revoked_at', 'is', null)
    .execute();
}

/** Moves the agent's keys to the organization it moved to; returns their prefixes. */
export async function moveAgentKeys(tx: Tx, agentId: string, organizationId: string): Promise<string[]> {
  const rows = await tx.selectFrom('api_keys').select(['prefix']).where('agent_id', '=', agentId).execute();
  await tx
    .updateTable('api_keys')
    .set({ organization_id: organizationId })
    .where('agent_id', '=', agentId)
    .execute();
  return rows.map((r) => r.prefix);
}

/** Tells every process listening on `channel`, this one included, once `tx` commits. */
export async function notify(tx: Tx, channel: string, payload: string): Promise<void> {
  await sql`select pg_notify(${channel}, ${payload})`.execute(tx);
}

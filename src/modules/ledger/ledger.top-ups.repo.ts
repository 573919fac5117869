/** The SQL of top-ups (`top_ups`): the outbox of credits bought through the payment provider. */
import type { Insertable, Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { TopUpsTable } from '../../db/schema.js';

export type TopUpRow = Selectable<TopUpsTable>;

/** Queues an auto-recharge unless the organization has one pending already (then nothing). */
export async function insertAutoRecharge(
  ex: Executor,
  topUp: Omit<Insertable<TopUpsTable>, 'reason'>,
): Promise<void> {
  await ex
    .insertInto('top_ups')
    .values({ ...topUp, reason: 'auto_recharge' })
    .onConflict((oc) =>
      oc
        .column('organization_id')
        .where('status', '=', 'pending')
        .where('reason', '=', 'auto_recharge')
        .doNothing(),
    )
    .execute();
}

/** The top-up, locked until the transaction ends; undefined if there is none. */
export function lockTopUp(
  ex: Executor,
  organizationId: string,
  topUpId: string,
): Promise<TopUpRow | undefined> {
  return ex
    .selectFrom('top_ups')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', topUpId)
    .forUpdate()
    .executeTakeFirst();
}

/** The organization's top-ups: the newest `limit` first, or (no limit) all of them in id order. */
export function findTopUps(ex: Executor, organizationId: string, limit?: number): Promise<TopUpRow[]> {
  const q = ex.selectFrom('top_ups').selectAll().where('organization_id', '=', organizationId);
  return limit === undefined ? q.orderBy('id').execute() : q.orderBy('id', 'desc').limit(limit).execute();
}

/** Pending top-ups not yet started with the provider (no external id). */
export function findUnstartedTopUps(ex: Executor, limit: number): Promise<TopUpRow[]> {
  return ex
    .selectFrom('top_ups')
    .selectAll()
    .where('status', '=', 'pending')
    .where('external_id', 'is', null)
    .limit(limit)
    .execute();
}

/** Records the provider's answer, unless another process recorded one first. */
export async function updateTopUpStarted(
  ex: Executor,
  organizationId: string,
  topUpId: string,
  started: { externalId: string; status: 'pending' | 'failed' },
  at: Date,
): Promise<void> {
  await ex
    .updateTable('top_ups')
    .set({ external_id: started.externalId, status: started.status, updated_at: at })
    .where('organization_id', '=', organizationId)
    .where('id', '=', topUpId)
    .where('external_id', 'is', null)
    .execute();
}

/** Marks the top-up paid by `transactionId`. */
export function updateTopUpPaid(
  ex: Executor,
  organizationId: string,
  topUpId: string,
  transactionId: string,
  at: Date,
): Promise<TopUpRow> {
  return ex
    .updateTable('top_ups')
    .set({ status: 'paid', transaction_id: transactionId, updated_at: at })
    .where('organization_id', '=', organizationId)
    .where('id', '=', topUpId)
    .returningAll()
    .executeTakeFirstOrThrow();
}

import type { Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { SubscriptionsTable } from '../../db/schema.js';

export type SubscriptionRow = Selectable<SubscriptionsTable>;

export async function insertSubscription(
  db: Executor,
  row: {
    organization_id: string;
    billing_cycle: string;
    current_period_start: Date;
    current_period_end: Date;
  },
): Promise<void> {
  await db
    .insertInto('subscriptions')
    .values(row)
    .onConflict((oc) => oc.column('organization_id').doNothing())
    .execute();
}

export async function findSubscription(
  db: Executor,
  organizationId: string,
  opts: { forUpdate?: boolean } = {},
): Promise<SubscriptionRow | undefined> {
  let q = db.selectFrom('subscriptions').selectAll().where('organization_id', '=', organizationId);
  if (opts.forUpdate) q = q.forUpdate();
  return q.executeTakeFirst();
}

export async function updateSubscription(
  db: Executor,
  organizationId: string,
  patch: Partial<
    Pick<
      SubscriptionRow,
      | 'billing_cycle'
      | 'status'
      | 'cancel_at_period_end'
      | 'current_period_start'
      | 'current_period_end'
      | 'canceled_at'
    >
  >,
): Promise<SubscriptionRow> {
  return db
    .updateTable('subscriptions')
    .set({ ...patch, updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Subscriptions whose period ended by `now`, locked; those another process holds are skipped. */
export async function findDueSubscriptions(
  db: Executor,
  now: Date,
  limit: number,
): Promise<SubscriptionRow[]> {
  return db
    .selectFrom('subscriptions')
    .selectAll()
    .where('current_period_end', '<=', now)
    .orderBy('current_period_end')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

/** Features granted to each of these organizations by its parent. */
export async function findGrants(db: Executor, organizationIds: string[]): Promise<Map<string, Set<string>>> {
  const out = new Map<string, Set<string>>(organizationIds.map((id) => [id, new Set()]));
  if (organizationIds.length === 0) return out;
  const rows = await db
    .selectFrom('organization_features')
    .select(['organization_id', 'feature'])
    .where('organization_id', 'in', organizationIds)
    .execute();
  for (const r of rows) out.get(r.organization_id)?.add(r.feature);
  return out;
}

export async function replaceGrants(db: Executor, organizationId: string, features: string[]): Promise<void> {
  await db.deleteFrom('organization_features').where('organization_id', '=', organizationId).execute();
  if (features.length)
    await db
      .insertInto('organization_features')
      .values(features.map((feature) => ({ organization_id: organizationId, feature })))
      .execute();
}

/** Takes these features away from these organizations; returns what was taken from whom. */
export async function deleteGrants(
  db: Executor,
  organizationIds: string[],
  features: string[],
): Promise<Array<{ organization_id: string; feature: string }>> {
  if (organizationIds.length === 0 || features.length === 0) return [];
  return db
    .deleteFrom('organization_features')
    .where('organization_id', 'in', organizationIds)
    .where('feature', 'in', features)
    .returning(['organization_id', 'feature'])
    .execute();
}

export async function deleteAllGrants(db: Executor, organizationId: string): Promise<void> {
  await db.deleteFrom('organization_features').where('organization_id', '=', organizationId).execute();
}

import type { Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { AuditEventsTable } from '../../db/schema.js';

export type AuditRow = Selectable<AuditEventsTable>;

export async function insertAuditEvent(db: Executor, row: Omit<AuditRow, 'created_at'>): Promise<void> {
  await db
    .insertInto('audit_events')
    .values({ ...row, changes: JSON.stringify(row.changes) })
    .execute();
}

/** Newest first; `beforeId` is the last id of the previous page. */
export async function findAuditEvents(
  db: Executor,
  organizationId: string,
  opts: { beforeId: string | undefined; limit: number | undefined },
): Promise<AuditRow[]> {
  let q = db.selectFrom('audit_events').selectAll().where('organization_id', '=', organizationId);
  if (opts.beforeId !== undefined) q = q.where('id', '<', opts.beforeId);
  q = q.orderBy('id', 'desc');
  if (opts.limit !== undefined) q = q.limit(opts.limit);
  return q.execute();
}

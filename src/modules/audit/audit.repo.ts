import type { Executor } from '../../db/client.js';

export interface AuditRow {
  organization_id: string;
  id: string;
  actor_type: string;
  actor_id: string | null;
  action: string;
  target_type: string;
  target_id: string;
  changes: Record<string, unknown>;
  request_id: string | null;
  created_at: Date;
}

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

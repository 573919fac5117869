/**
 * The audit module owns `audit_events`: the append-only trail of who changed what, with before and
 * after values, written by every module in the transaction that makes the change (so a rolled-back
 * change leaves no trace) and read per organization, newest first.
 */
import { Type } from 'typebox';
import type { Executor, Tx } from '../../db/client.js';
import type { RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { type Page, toPage } from '../../lib/pagination.js';
import { type AuditRow, findAuditEvents, insertAuditEvent } from './audit.repo.js';

/** `{ field: { before, after } }` for each field an action changed. */
export type Changes = Record<string, { before: unknown; after: unknown }>;

export interface AuditEvent {
  organizationId: string;
  action: string;
  targetType: string;
  targetId: string;
  changes?: Changes;
}

export const AuditEventResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  actor: Type.Object({
    type: Type.String(),
    id: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([Type.String(), Type.Null()], {
      description: "The user's role in the organization when it acted",
    }),
    via: Type.Union(
      [Type.Literal('member'), Type.Literal('oversight'), Type.Literal('join_as'), Type.Null()],
      {
        description:
          'member: its own membership; oversight: as an owner/admin of a parent organization; join_as: having joined as the role',
      },
    ),
  }),
  action: Type.String(),
  target: Type.Object({ type: Type.String(), id: Type.String() }),
  changes: Type.Record(Type.String(), Type.Unknown()),
  request_id: Type.Union([Type.String(), Type.Null()]),
  created_at: Type.String({ format: 'date-time' }),
});

export type AuditEventView = {
  id: string;
  organization_id: string;
  actor: {
    type: string;
    id: string | null;
    role: string | null;
    via: 'member' | 'oversight' | 'join_as' | null;
  };
  action: string;
  target: { type: string; id: string };
  changes: Record<string, unknown>;
  request_id: string | null;
  created_at: string;
};

function view(row: AuditRow): AuditEventView {
  return {
    id: row.id,
    organization_id: row.organization_id,
    actor: {
      type: row.actor_type,
      id: row.actor_id,
      role: row.actor_role,
      via: row.actor_via as AuditEventView['actor']['via'],
    },
    action: row.action,
    target: { type: row.target_type, id: row.target_id },
    changes: row.changes,
    request_id: row.request_id,
    created_at: row.created_at.toISOString(),
  };
}

/** How a user held its rights in the organization: the audit trail names the real user and this. */
function actingAs(ctx: RequestContext, organizationId: string) {
  const a = ctx.actor;
  if (a.type !== 'user') return { actor_role: null, actor_via: null };
  const via =
    a.joined?.organizationId === organizationId
      ? 'join_as'
      : a.oversight?.has(organizationId)
        ? 'oversight'
        : 'member';
  return {
    actor_role: a.roles.get(organizationId) ?? null,
    actor_via: a.roles.has(organizationId) ? via : null,
  };
}

/** The fields whose values differ between two snapshots, as before/after pairs. */
export function diff<T extends Record<string, unknown>>(before: T, after: Partial<T>): Changes {
  const changes: Changes = {};
  for (const [field, value] of Object.entries(after)) {
    if (value === undefined) continue;
    if (JSON.stringify(before[field]) !== JSON.stringify(value))
      changes[field] = { before: before[field] ?? null, after: value };
  }
  return changes;
}

/**
 * The audit trail. Callers record inside their own transaction, so an audit entry exists
 * exactly when the change it describes was committed. Reading is gated by the caller
 * (the organizations service), which has already resolved and authorized the organization.
 */
export function createAuditService() {
  return {
    async record(tx: Tx, ctx: RequestContext, event: AuditEvent): Promise<void> {
      await insertAuditEvent(tx, {
        organization_id: event.organizationId,
        id: newId('aud'),
        actor_type: ctx.actor.type,
        actor_id: ctx.actor.id,
        ...actingAs(ctx, event.organizationId),
        action: event.action,
        target_type: event.targetType,
        target_id: event.targetId,
        changes: event.changes ?? {},
        request_id: ctx.requestId,
      });
    },

    async list(
      db: Executor,
      organizationId: string,
      page: { beforeId: string | undefined; limit: number },
    ): Promise<Page<AuditEventView>> {
      const rows = await findAuditEvents(db, organizationId, {
        beforeId: page.beforeId,
        limit: page.limit + 1,
      });
      return toPage(rows, page.limit, (r) => r.id, view);
    },

    async exportAll(db: Executor, organizationId: string): Promise<AuditEventView[]> {
      return (await findAuditEvents(db, organizationId, { beforeId: undefined, limit: undefined })).map(view);
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;

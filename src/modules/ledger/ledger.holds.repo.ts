/** The SQL of holds (`ledger_holds`): a hold's row, written with the transaction that moves its credits. */
import type { Insertable, Selectable } from 'kysely';
import type { Executor } from '../../db/client.js';
import type { LedgerHoldsTable } from '../../db/schema.js';

export type HoldRow = Selectable<LedgerHoldsTable>;

/** The hold, or undefined; `forUpdate` locks its row until the transaction ends. */
export function findHold(
  ex: Executor,
  organizationId: string,
  holdId: string,
  opts: { forUpdate: boolean },
): Promise<HoldRow | undefined> {
  return ex
    .selectFrom('ledger_holds')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .where('id', '=', holdId)
    .$if(opts.forUpdate, (q) => q.forUpdate())
    .executeTakeFirst();
}

/** Every hold of the organization, in id order (its export). */
export function findHolds(ex: Executor, organizationId: string): Promise<HoldRow[]> {
  return ex
    .selectFrom('ledger_holds')
    .selectAll()
    .where('organization_id', '=', organizationId)
    .orderBy('id')
    .execute();
}

/** Active holds whose deadline is past `now`, the longest overdue first. */
export function findDueHolds(
  ex: Executor,
  now: Date,
  limit: number,
): Promise<Array<{ organization_id: string; id: string }>> {
  return ex
    .selectFrom('ledger_holds')
    .select(['organization_id', 'id'])
    .where('status', '=', 'active')
    .where('expires_at', '<=', now)
    .orderBy('expires_at')
    .limit(limit)
    .execute();
}

export function insertHold(ex: Executor, hold: Insertable<LedgerHoldsTable>): Promise<HoldRow> {
  return ex.insertInto('ledger_holds').values(hold).returningAll().executeTakeFirstOrThrow();
}

/** Closes the hold with its final status at `closedAt`. */
export function updateHoldClosed(
  ex: Executor,
  organizationId: string,
  holdId: string,
  set: { status: 'captured'; captured_amount: bigint } | { status: 'released' | 'expired' },
  closedAt: Date,
): Promise<HoldRow> {
  return ex
    .updateTable('ledger_holds')
    .set({ ...set, closed_at: closedAt })
    .where('organization_id', '=', organizationId)
    .where('id', '=', holdId)
    .returningAll()
    .executeTakeFirstOrThrow();
}

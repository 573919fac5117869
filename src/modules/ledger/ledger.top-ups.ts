/**
 * Top-ups: credits bought through the payment provider. The top-up row is the outbox: written
 * pending (an auto-recharge, or an invoice), started with the provider, credited once when paid.
 */
import type { Tx } from '../../db/client.js';
import type { Actor, RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { AppError } from '../../lib/problem.js';
import type { LedgerContext } from './ledger.context.js';
import { CREDITS, type CreditState, checkCredit, SYSTEM } from './ledger.core.js';
import { applied, type Outcome, refused } from './ledger.outcome.js';
import { fmt, type TopUpView, viewTopUp } from './ledger.views.js';
import type { PaymentProvider } from './payments.js';

/**
 * Queues an auto-recharge, in the transaction whose change took the balance under the
 * threshold. An organization has at most one pending auto-recharge: a second is not queued.
 */
export async function queueAutoRecharge(tx: Tx, s: CreditState, payments: PaymentProvider) {
  await tx
    .insertInto('top_ups')
    .values({
      organization_id: s.organizationId,
      id: newId('top'),
      amount: s.autoRechargeAmount,
      reason: 'auto_recharge',
      provider: payments.name,
      payment_method: s.autoRechargePaymentMethod,
    })
    .onConflict((oc) =>
      oc
        .column('organization_id')
        .where('status', '=', 'pending')
        .where('reason', '=', 'auto_recharge')
        .doNothing(),
    )
    .execute();
}

export function createLedgerTopUps({ db, payments, engine, resolve }: LedgerContext) {
  /** Credits a pending top-up and marks it paid, in one transaction; any other status is refused. */
  async function settleTopUp(
    orgId: string,
    topUpId: string,
    actor: Actor,
    requestId: string,
  ): Promise<Outcome<TopUpView>> {
    return engine.submit({
      organizationIds: [orgId],
      requestId,
      run: async (book) => {
        const t = await book.tx
          .selectFrom('top_ups')
          .selectAll()
          .where('organization_id', '=', orgId)
          .where('id', '=', topUpId)
          .forUpdate()
          .executeTakeFirst();
        if (!t) throw new AppError('not_found', `No top-up "${topUpId}"`);
        if (t.status !== 'pending')
          return refused('top_up_not_pending', `The top-up is ${t.status}`, requestId);
        const capped = checkCredit(book.state(orgId), t.amount, fmt);
        if (capped) return refused(capped.code, capped.detail, requestId);
        const txn = book.post(orgId, {
          type: 'top_up',
          amount: t.amount,
          legs: [
            [SYSTEM.topUps, -t.amount],
            [CREDITS, t.amount],
          ],
          description: t.reason === 'auto_recharge' ? 'Auto-recharge' : 'Top-up',
          relatedId: t.id,
          actor,
        });
        const paid = await book.tx
          .updateTable('top_ups')
          .set({ status: 'paid', transaction_id: txn.id, updated_at: book.now })
          .where('organization_id', '=', orgId)
          .where('id', '=', topUpId)
          .returningAll()
          .executeTakeFirstOrThrow();
        return applied(viewTopUp(paid));
      },
    });
  }

  return {
    async listTopUps(ctx: RequestContext, idOrSlug: string): Promise<TopUpView[]> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const rows = await db
        .selectFrom('top_ups')
        .selectAll()
        .where('organization_id', '=', org.id)
        .orderBy('id', 'desc')
        .limit(100)
        .execute();
      return rows.map(viewTopUp);
    },

    /** Starts pending top-ups with the payment provider (the top-up row is the outbox). */
    async startPendingTopUps(): Promise<number> {
      const pending = await db
        .selectFrom('top_ups')
        .selectAll()
        .where('status', '=', 'pending')
        .where('external_id', 'is', null)
        .limit(100)
        .execute();
      for (const t of pending) {
        const started = await payments.startTopUp({
          organizationId: t.organization_id,
          topUpId: t.id,
          amount: fmt(t.amount),
          paymentMethod: t.payment_method,
        });
        await db
          .updateTable('top_ups')
          .set({
            external_id: started.externalId,
            status: started.status === 'failed' ? 'failed' : 'pending',
            updated_at: new Date(),
          })
          .where('organization_id', '=', t.organization_id)
          .where('id', '=', t.id)
          .where('external_id', 'is', null)
          .execute();
        if (started.status === 'paid')
          await settleTopUp(t.organization_id, t.id, { type: 'operator', id: payments.name }, 'provider');
      }
      return pending.length;
    },

    /** The operator confirms an invoice was paid: the organization is credited, once. */
    async markTopUpPaid(ctx: RequestContext, idOrSlug: string, topUpId: string) {
      const org = await resolve(ctx, idOrSlug, 'top_ups:mark_paid');
      return settleTopUp(org.id, topUpId, ctx.actor, ctx.requestId);
    },
  };
}

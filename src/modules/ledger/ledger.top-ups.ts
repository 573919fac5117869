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
import * as repo from './ledger.top-ups.repo.js';
import { fmt, type TopUpView, viewTopUp } from './ledger.views.js';
import type { PaymentProvider } from './payments.js';

/**
 * Queues an auto-recharge, in the transaction whose change took the balance under the
 * threshold. An organization has at most one pending auto-recharge: a second is not queued.
 */
export async function queueAutoRecharge(tx: Tx, s: CreditState, payments: PaymentProvider) {
  await repo.insertAutoRecharge(tx, {
    organization_id: s.organizationId,
    id: newId('top'),
    amount: s.autoRechargeAmount,
    provider: payments.name,
    payment_method: s.autoRechargePaymentMethod,
  });
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
        const t = await repo.lockTopUp(book.tx, orgId, topUpId);
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
        const paid = await repo.updateTopUpPaid(book.tx, orgId, topUpId, txn.id, book.now);
        return applied(viewTopUp(paid));
      },
    });
  }

  return {
    async listTopUps(ctx: RequestContext, idOrSlug: string): Promise<TopUpView[]> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      return (await repo.findTopUps(db, org.id, 100)).map(viewTopUp);
    },

    /** Starts pending top-ups with the payment provider (the top-up row is the outbox). */
    async startPendingTopUps(): Promise<number> {
      const pending = await repo.findUnstartedTopUps(db, 100);
      for (const t of pending) {
        const started = await payments.startTopUp({
          organizationId: t.organization_id,
          topUpId: t.id,
          amount: fmt(t.amount),
          paymentMethod: t.payment_method,
        });
        await repo.updateTopUpStarted(
          db,
          t.organization_id,
          t.id,
          { externalId: started.externalId, status: started.status === 'failed' ? 'failed' : 'pending' },
          new Date(),
        );
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

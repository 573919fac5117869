/**
 * Holds: credits reserved from `credits` into `held` for work whose cost is known at the end.
 * Invariant: the `held` balance equals the sum of the active holds. A hold closes exactly once:
 * captured (up to its amount is spent, the rest returned), released, or expired.
 */
import type { Static } from 'typebox';
import type { Executor } from '../../db/client.js';
import type { Actor, RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { Book } from './ledger.book.js';
import { idem, type LedgerContext } from './ledger.context.js';
import { CREDITS, checkDebit, HELD, SYSTEM } from './ledger.core.js';
import * as repo from './ledger.holds.repo.js';
import { applied, refused } from './ledger.outcome.js';
import type { CreateHoldBody } from './ledger.schema.js';
import { fmt, type HoldView, positive, viewHold, viewTransaction } from './ledger.views.js';

const HOLD_EXPIRY: Actor = { type: 'operator', id: 'hold_expiry' };

/** The hold, or a 404; `forUpdate` locks its row until the transaction ends. */
async function findHold(ex: Executor, orgId: string, holdId: string, forUpdate: boolean) {
  const hold = await repo.findHold(ex, orgId, holdId, { forUpdate });
  if (!hold) throw new AppError('not_found', `No hold "${holdId}"`);
  return hold;
}

const lockHold = (book: Book, orgId: string, holdId: string) => findHold(book.tx, orgId, holdId, true);

/** Closes the hold's row now with its final status; the caller has posted the matching transaction. */
function markClosed(
  book: Book,
  hold: repo.HoldRow,
  set: { status: 'captured'; captured_amount: bigint } | { status: 'released' | 'expired' },
) {
  return repo.updateHoldClosed(book.tx, hold.organization_id, hold.id, set, book.now);
}

/** Returns an active hold's credits (release or expiry), closing it. */
async function closeHold(book: Book, hold: repo.HoldRow, status: 'released' | 'expired', actor: Actor) {
  const t = book.post(hold.organization_id, {
    type: status === 'released' ? 'release' : 'expiry',
    amount: hold.amount,
    legs: [
      [HELD, -hold.amount],
      [CREDITS, hold.amount],
    ],
    relatedId: hold.id,
    actor,
  });
  const closed = await markClosed(book, hold, { status });
  return { hold: closed, transaction: t };
}

export function createLedgerHolds({ db, engine, resolve, submit }: LedgerContext) {
  return {
    /** Reserves credits for work whose cost is known at the end. */
    async createHold(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof CreateHoldBody>,
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'usage:record');
      const amount = positive('amount', body.amount);
      const seconds = body.expires_in_seconds ?? 3600;
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        idempotency: idem(key, [
          'holds.create',
          org.id,
          amount,
          seconds,
          body.description ?? null,
          body.metadata ?? {},
        ]),
        run: async (book) => {
          // The monthly limit is checked here, so that capturing finished work is never refused.
          const refusal = checkDebit(book.state(org.id), amount, book.month, true, fmt);
          if (refusal) return refused(refusal.code, refusal.detail, ctx.requestId);
          const id = newId('hld');
          book.post(org.id, {
            type: 'hold',
            amount,
            legs: [
              [CREDITS, -amount],
              [HELD, amount],
            ],
            description: body.description ?? null,
            relatedId: id,
            actor: ctx.actor,
          });
          const hold = await repo.insertHold(book.tx, {
            organization_id: org.id,
            id,
            amount,
            description: body.description ?? null,
            metadata: JSON.stringify(body.metadata ?? {}),
            expires_at: new Date(book.now.getTime() + seconds * 1000),
          });
          return applied(viewHold(hold));
        },
      });
    },

    /** Takes up to the held amount as spend and returns the rest. */
    async captureHold(
      ctx: RequestContext,
      idOrSlug: string,
      holdId: string,
      body: { amount?: string | number },
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'usage:record');
      const requested = body.amount === undefined ? undefined : positive('amount', body.amount);
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        idempotency: idem(key, ['holds.capture', org.id, holdId, requested ?? null]),
        run: async (book) => {
          const hold = await lockHold(book, org.id, holdId);
          if (hold.status !== 'active')
            return refused('hold_not_active', `The hold is ${hold.status}`, ctx.requestId);
          if (hold.expires_at <= book.now) {
            await closeHold(book, hold, 'expired', HOLD_EXPIRY);
            return refused('hold_not_active', 'The hold expired before it was captured', ctx.requestId);
          }
          const amount = requested ?? hold.amount;
          if (amount > hold.amount)
            throw invalidField('amount', `must not exceed the held ${fmt(hold.amount)}`);
          const legs: Array<[string, bigint]> = [
            [HELD, -hold.amount],
            [SYSTEM.usage, amount],
          ];
          if (hold.amount > amount) legs.push([CREDITS, hold.amount - amount]);
          const t = book.post(org.id, {
            type: 'capture',
            amount,
            legs,
            spend: amount,
            relatedId: hold.id,
            actor: ctx.actor,
          });
          const closed = await markClosed(book, hold, { status: 'captured', captured_amount: amount });
          return applied({ hold: viewHold(closed), transaction: viewTransaction(t) });
        },
      });
    },

    async releaseHold(ctx: RequestContext, idOrSlug: string, holdId: string, key?: string) {
      const org = await resolve(ctx, idOrSlug, 'usage:record');
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        idempotency: idem(key, ['holds.release', org.id, holdId]),
        run: async (book) => {
          const hold = await lockHold(book, org.id, holdId);
          if (hold.status !== 'active')
            return refused('hold_not_active', `The hold is ${hold.status}`, ctx.requestId);
          const { hold: closed, transaction } = await closeHold(book, hold, 'released', ctx.actor);
          return applied({ hold: viewHold(closed), transaction: viewTransaction(transaction) });
        },
      });
    },

    async getHold(ctx: RequestContext, idOrSlug: string, holdId: string): Promise<HoldView> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      return viewHold(await findHold(db, org.id, holdId, false));
    },

    /** Returns the credits of every hold past its deadline. Safe to run from every process at once. */
    async expireDueHolds(limit = 500): Promise<number> {
      const due = await repo.findDueHolds(db, new Date(), limit);
      const results = await Promise.all(
        due.map((d) =>
          engine.submit({
            organizationIds: [d.organization_id],
            requestId: 'hold-expiry',
            run: async (book) => {
              const hold = await lockHold(book, d.organization_id, d.id);
              if (hold.status !== 'active' || hold.expires_at > book.now) return applied<string | null>(null);
              await closeHold(book, hold, 'expired', HOLD_EXPIRY);
              return applied<string | null>(hold.id);
            },
          }),
        ),
      );
      return results.filter((o) => o.ok && o.value !== null).length;
    },
  };
}

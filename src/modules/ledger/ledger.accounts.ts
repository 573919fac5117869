/**
 * An organization's accounts as it reads and configures them: opening, balance, credit
 * settings, transaction history (paged or CSV), its export section; and the whole ledger's
 * invariant check.
 */
import type { Static } from 'typebox';
import type { Executor, Tx } from '../../db/client.js';
import { authorize, type RequestContext } from '../../lib/authz.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { invalidField } from '../../lib/problem.js';
import { diff } from '../audit/audit.service.js';
import { planOf } from '../plans/plans.catalog.js';
import { assertOverdraftWithin } from '../plans/plans.limits.js';
import type { LedgerContext } from './ledger.context.js';
import { type CreditState, eventsThisMonth, floorOf, HELD, monthOf, spentThisMonth } from './ledger.core.js';
import { findHolds } from './ledger.holds.repo.js';
import * as repo from './ledger.repo.js';
import type { BalanceResponse, CreditSettingsBody, TransactionsQuery } from './ledger.schema.js';
import { findTopUps } from './ledger.top-ups.repo.js';
import {
  fmt,
  nonNegative,
  positive,
  rowToView,
  type TransactionView,
  transactionsCsv,
  viewHold,
  viewTopUp,
} from './ledger.views.js';

/** The repository filter a transactions query asks for; the page size is left to the caller. */
function transactionFilter(query: Static<typeof TransactionsQuery>) {
  return {
    types: query.type === undefined ? undefined : ([] as string[]).concat(query.type),
    from: query.from ? new Date(query.from) : undefined,
    to: query.to ? new Date(query.to) : undefined,
    beforeId: decodeCursor(query.cursor),
  };
}

/** The credit policy as the API writes it, for the audit trail. */
function policyView(s: CreditState): Record<string, unknown> {
  return {
    overdraft_enabled: s.overdraftEnabled,
    overdraft_limit: fmt(s.overdraftLimit),
    monthly_spending_limit: s.monthlySpendingLimit === null ? null : fmt(s.monthlySpendingLimit),
    auto_recharge_enabled: s.autoRechargeEnabled,
    auto_recharge_threshold: fmt(s.autoRechargeThreshold),
    auto_recharge_amount: fmt(s.autoRechargeAmount),
    auto_recharge_payment_method: s.autoRechargePaymentMethod,
  };
}

export function createLedgerAccounts({ db, organizations, resolve, audit, settingsGuards }: LedgerContext) {
  async function balance(ctx: RequestContext, idOrSlug: string): Promise<Static<typeof BalanceResponse>> {
    return balanceOf(await resolve(ctx, idOrSlug, 'credits:read'));
  }

  /** The balance view without an authorization check: for callers that checked another permission. */
  async function balanceOf(org: { id: string; active: boolean }): Promise<Static<typeof BalanceResponse>> {
    const [s, held] = await Promise.all([
      repo.findCreditAccount(db, org.id),
      repo.findAccountBalance(db, org.id, HELD),
    ]);
    const month = monthOf(new Date());
    const state: CreditState = s ?? {
      organizationId: org.id,
      active: org.active,
      balance: 0n,
      overdraftEnabled: false,
      overdraftLimit: 0n,
      monthlySpendingLimit: null,
      spendMonth: month,
      monthSpend: 0n,
      usageEventsLimit: null,
      monthEvents: 0n,
      autoRechargeEnabled: false,
      autoRechargeThreshold: 0n,
      autoRechargeAmount: 0n,
      autoRechargePaymentMethod: null,
    };
    return {
      organization_id: org.id,
      available: fmt(state.balance),
      held: fmt(held),
      overdraft_enabled: state.overdraftEnabled,
      overdraft_limit: fmt(state.overdraftLimit),
      spendable: fmt(state.balance - floorOf(state)),
      month,
      month_spend: fmt(spentThisMonth(state, month)),
      monthly_spending_limit: state.monthlySpendingLimit === null ? null : fmt(state.monthlySpendingLimit),
      month_usage_events: Number(eventsThisMonth(state, month)),
      usage_events_limit: state.usageEventsLimit === null ? null : Number(state.usageEventsLimit),
      auto_recharge: {
        enabled: state.autoRechargeEnabled,
        threshold: fmt(state.autoRechargeThreshold),
        amount: fmt(state.autoRechargeAmount),
        payment_method: state.autoRechargePaymentMethod,
      },
    };
  }

  return {
    /** The ledger's part of an organization's export: accounts, every transaction, holds, top-ups. */
    async exportSection(ex: Executor, organizationId: string) {
      const [accounts, transactions, holds, topUps] = await Promise.all([
        repo.findAccounts(ex, organizationId),
        repo.findTransactions(ex, organizationId, {
          types: undefined,
          from: undefined,
          to: undefined,
          beforeId: undefined,
          limit: undefined,
        }),
        findHolds(ex, organizationId),
        findTopUps(ex, organizationId),
      ]);
      return {
        ledger: {
          accounts: accounts.map((a) => ({ account: a.code, balance: fmt(a.balance) })),
          transactions: transactions.map(rowToView),
          holds: holds.map(viewHold),
          top_ups: topUps.map(viewTopUp),
        },
      };
    },

    /** Sets the plan's monthly usage-event allowance (null: unlimited), in the plan change's transaction. */
    async setUsageEventsLimit(tx: Tx, organizationId: string, limit: number | null) {
      await repo.updateCreditPolicy(tx, organizationId, {
        usage_events_limit: limit === null ? null : BigInt(limit),
      });
    },

    /** Usage events counted this month for the organization. */
    async monthUsageEvents(ex: Executor, organizationId: string): Promise<number> {
      const s = await repo.findCreditAccount(ex, organizationId);
      return s ? Number(eventsThisMonth(s, monthOf(new Date()))) : 0;
    },

    /**
     * Turns overdraft off for these organizations (they lost `allow_overdraft`), audited, in the
     * transaction that took the feature away: from then on their floor is zero.
     */
    async withdrawOverdraft(tx: Tx, ctx: RequestContext, organizationIds: string[]) {
      if (organizationIds.length === 0) return;
      const states = await repo.lockCreditAccounts(tx, organizationIds, new Map());
      for (const s of states.values()) {
        if (!s.overdraftEnabled) continue;
        await repo.updateCreditPolicy(tx, s.organizationId, { overdraft_enabled: false });
        await audit.record(tx, ctx, {
          organizationId: s.organizationId,
          action: 'credits.settings_changed',
          targetType: 'organization',
          targetId: s.organizationId,
          changes: { overdraft_enabled: { before: true, after: false } },
        });
      }
    },

    /**
     * Lowers the overdraft limit to `max` (the organization's new plan's cap; null: none), audited,
     * in the transaction that changed the plan: a downgrade never leaves a limit the plan refuses.
     */
    async capOverdraft(tx: Tx, ctx: RequestContext, organizationId: string, max: bigint | null) {
      if (max === null) return;
      const [s] = [...(await repo.lockCreditAccounts(tx, [organizationId], new Map())).values()];
      if (!s || s.overdraftLimit <= max) return;
      await repo.updateCreditPolicy(tx, organizationId, { overdraft_limit: max });
      await audit.record(tx, ctx, {
        organizationId,
        action: 'credits.settings_changed',
        targetType: 'organization',
        targetId: organizationId,
        changes: { overdraft_limit: { before: fmt(s.overdraftLimit), after: fmt(max) } },
      });
    },

    /** The `credits` balance of each of these organizations (missing: none yet). */
    async balancesOf(ex: Executor, organizationIds: string[]): Promise<Map<string, bigint>> {
      if (organizationIds.length === 0) return new Map();
      return repo.findCreditBalances(ex, organizationIds);
    },

    /** Money that came in (top-ups, credits added, transfers received), newest first. */
    async paymentHistory(ex: Executor, organizationId: string, limit: number) {
      const rows = await repo.findTransactions(ex, organizationId, {
        types: ['top_up', 'adjustment_credit', 'transfer_in'],
        from: undefined,
        to: undefined,
        beforeId: undefined,
        limit,
      });
      return rows.map(rowToView);
    },

    /** Opens the organization's credits account; run when the organization is created. */
    openAccount: (tx: Tx, organizationId: string) => repo.insertCreditAccounts(tx, [organizationId]),

    balance,
    balanceOf,

    /** Overdraft, monthly spending limit and auto-recharge; audited with before/after. */
    async updateSettings(ctx: RequestContext, idOrSlug: string, body: Static<typeof CreditSettingsBody>) {
      const org = await resolve(ctx, idOrSlug, 'credits:settings');
      const policy: repo.CreditPolicy = {};
      if (body.overdraft_enabled !== undefined) policy.overdraft_enabled = body.overdraft_enabled;
      if (body.overdraft_limit !== undefined)
        policy.overdraft_limit = nonNegative('overdraft_limit', body.overdraft_limit);
      if (body.monthly_spending_limit !== undefined)
        policy.monthly_spending_limit =
          body.monthly_spending_limit === null
            ? null
            : nonNegative('monthly_spending_limit', body.monthly_spending_limit);
      const ar = body.auto_recharge;
      if (ar) {
        policy.auto_recharge_enabled = ar.enabled;
        if (ar.threshold !== undefined)
          policy.auto_recharge_threshold = nonNegative('auto_recharge.threshold', ar.threshold);
        if (ar.amount !== undefined)
          policy.auto_recharge_amount = positive('auto_recharge.amount', ar.amount);
        if (ar.payment_method !== undefined) policy.auto_recharge_payment_method = ar.payment_method;
      }
      for (const guard of settingsGuards) await guard(ctx, org.id, policy);
      await repo.transaction(db, async (tx) => {
        const [current] = [...(await repo.lockCreditAccounts(tx, [org.id], new Map())).values()];
        // Again under the row lock a plan change takes to cap the limit (capOverdraft): a
        // downgrade that committed since the guards read the plan is seen here, one still running
        // lowers this limit once it gets the lock.
        if (policy.overdraft_limit !== undefined)
          assertOverdraftWithin(planOf((await organizations.load(tx, org.id)).plan), policy.overdraft_limit);
        if (ar?.enabled && (policy.auto_recharge_amount ?? current?.autoRechargeAmount ?? 0n) <= 0n)
          throw invalidField('auto_recharge.amount', 'is required to enable auto-recharge');
        await repo.updateCreditPolicy(tx, org.id, policy);
        if (!current) return;
        const before = policyView(current);
        const wire = (v: unknown) => (typeof v === 'bigint' ? fmt(v) : v);
        const after = {
          ...before,
          ...Object.fromEntries(Object.entries(policy).map(([k, v]) => [k, wire(v)])),
        };
        const changes = diff(before, after);
        if (Object.keys(changes).length)
          await audit.record(tx, ctx, {
            organizationId: org.id,
            action: 'credits.settings_changed',
            targetType: 'organization',
            targetId: org.id,
            changes,
          });
      });
      return balance(ctx, org.id);
    },

    async transactions(
      ctx: RequestContext,
      idOrSlug: string,
      query: Static<typeof TransactionsQuery>,
    ): Promise<Page<TransactionView>> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findTransactions(db, org.id, { ...transactionFilter(query), limit: limit + 1 });
      return toPage(rows, limit, (r) => r.id, rowToView);
    },

    /** The same filters as `transactions`, every matching row, as CSV. */
    async transactionsCsv(ctx: RequestContext, idOrSlug: string, query: Static<typeof TransactionsQuery>) {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const rows = await repo.findTransactions(db, org.id, { ...transactionFilter(query), limit: undefined });
      return { filename: `${org.slug}-transactions.csv`, body: transactionsCsv(rows) };
    },

    /**
     * Checks both invariants over the whole database: every transaction sums to zero, and every
     * account's balance (and the held total) equals the sum of its entries.
     */
    async verify(ctx: RequestContext) {
      authorize(ctx, ['ledger:verify'], null);
      const [violations, counts] = await Promise.all([
        repo.findInvariantViolations(db),
        repo.countLedger(db),
      ]);
      return {
        ok: violations.length === 0,
        ...counts,
        violations: violations.map((v) => ({
          ...v,
          expected: fmt(BigInt(v.expected)),
          actual: fmt(BigInt(v.actual)),
        })),
      };
    },
  };
}

import type { Static } from 'typebox';
import type { Db, Executor, Tx } from '../../db/client.js';
import {
  type Actor,
  authorize,
  can,
  canSee,
  NO_SUCH_ORGANIZATION,
  type RequestContext,
} from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { formatAmount, parseAmount } from '../../lib/money.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import {
  CREDITS,
  type CreditState,
  checkDebit,
  floorOf,
  HELD,
  monthOf,
  SYSTEM,
  spentThisMonth,
} from './ledger.core.js';
import {
  type Book,
  createLedgerEngine,
  fingerprint,
  type LedgerOp,
  type OpResult,
  refusal,
} from './ledger.engine.js';
import * as repo from './ledger.repo.js';
import type {
  AddCreditsBody,
  BalanceResponse,
  CreateHoldBody,
  CreditSettingsBody,
  DeductCreditsBody,
  HoldResponse,
  TopUpResponse,
  TransactionResponse,
  TransactionsQuery,
  TransferBody,
  UsageBody,
} from './ledger.schema.js';
import type { PaymentProvider } from './payments.js';

export type TransactionView = Static<typeof TransactionResponse>;
type HoldView = Static<typeof HoldResponse>;
type TopUpView = Static<typeof TopUpResponse>;

const fmt = (m: bigint) => formatAmount(m);

/** A positive amount of credits, or a 400 naming the field. */
function positive(field: string, input: string | number): bigint {
  const p = parseAmount(input);
  if (!p.ok) throw invalidField(field, p.reason);
  if (p.micros <= 0n) throw invalidField(field, 'must be greater than zero');
  return p.micros;
}

function nonNegative(field: string, input: string | number): bigint {
  const p = parseAmount(input);
  if (!p.ok) throw invalidField(field, p.reason);
  if (p.micros < 0n) throw invalidField(field, 'must not be negative');
  return p.micros;
}

type TxLike = Pick<
  repo.TransactionRow,
  | 'organization_id'
  | 'id'
  | 'type'
  | 'amount'
  | 'balance_after'
  | 'description'
  | 'actor_type'
  | 'actor_id'
  | 'metadata'
  | 'related_id'
  | 'created_at'
> & { entries: Array<[string, bigint]> };

export function viewTransaction(t: TxLike): TransactionView {
  let change = 0n;
  for (const [account, amount] of t.entries) if (account === CREDITS) change += amount;
  return {
    id: t.id,
    organization_id: t.organization_id,
    type: t.type,
    amount: fmt(t.amount),
    balance_change: fmt(change),
    balance_after: fmt(t.balance_after),
    description: t.description,
    actor: { type: t.actor_type, id: t.actor_id },
    metadata: t.metadata,
    related_id: t.related_id,
    entries: t.entries.map(([account, amount]) => ({ account, amount: fmt(amount) })),
    created_at: t.created_at.toISOString(),
  };
}

const rowToView = (r: repo.TransactionRow) =>
  viewTransaction({ ...r, entries: r.entry_accounts.map((a, i) => [a, r.entry_amounts[i] ?? 0n]) });

function viewHold(h: {
  organization_id: string;
  id: string;
  amount: bigint;
  captured_amount: bigint;
  status: string;
  description: string | null;
  metadata: Record<string, unknown>;
  expires_at: Date;
  created_at: Date;
  closed_at: Date | null;
}): HoldView {
  return {
    id: h.id,
    organization_id: h.organization_id,
    amount: fmt(h.amount),
    captured_amount: fmt(h.captured_amount),
    status: h.status,
    description: h.description,
    metadata: h.metadata,
    expires_at: h.expires_at.toISOString(),
    created_at: h.created_at.toISOString(),
    closed_at: h.closed_at ? h.closed_at.toISOString() : null,
  };
}

const CSV_COLUMNS = [
  'id',
  'created_at',
  'type',
  'amount',
  'balance_change',
  'balance_after',
  'description',
  'actor_type',
  'actor_id',
  'related_id',
] as const;

function csvCell(v: string | null): string {
  if (v === null) return '';
  // Quote always; neutralize spreadsheet formulas (CSV injection).
  const safe = /^[=+\-@\t\r]/.test(v) && !/^-?\d/.test(v) ? `'${v}` : v;
  return `"${safe.replaceAll('"', '""')}"`;
}

export interface LedgerDeps {
  db: Db;
  organizations: OrganizationsService;
  payments: PaymentProvider;
  /** Commit lanes for group commit: 1 on PGlite (one connection), a few on PostgreSQL. */
  lanes: number;
}

/**
 * The credits ledger. Invariants: every transaction's entries sum to zero; every account's
 * balance equals the sum of its entries; a debit never takes `credits` below its floor (zero,
 * or minus the overdraft limit) nor this month's spend past the limit; a request with an
 * Idempotency-Key moves credits at most once and a replay returns the first response.
 */
export function createLedgerService(deps: LedgerDeps) {
  const { db, organizations } = deps;

  async function onRecharge(tx: Tx, s: CreditState) {
    await tx
      .insertInto('top_ups')
      .values({
        organization_id: s.organizationId,
        id: newId('top'),
        amount: s.autoRechargeAmount,
        reason: 'auto_recharge',
        provider: deps.payments.name,
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

  const engine = createLedgerEngine({
    db,
    organizationStates: (tx, ids) => organizations.liveStates(tx, ids),
    onRecharge: (tx, s) => onRecharge(tx, s),
    lanes: deps.lanes,
    maxBatch: 1000,
  });

  async function resolve(
    ctx: RequestContext,
    idOrSlug: string,
    permission: Parameters<typeof authorize>[1][number],
  ) {
    const org = await organizations.load(db, idOrSlug);
    authorize(ctx, [permission], org.id);
    return org;
  }

  function idem(key: string | undefined, parts: unknown[]) {
    return key === undefined ? undefined : { key, fingerprint: fingerprint(parts) };
  }

  function ok(status: number, body: unknown): OpResult {
    return { status, body };
  }

  /** Debit `credits` to a system account: deductions and usage. */
  function debit(
    book: Book,
    orgId: string,
    amount: bigint,
    requestId: string,
    posting: {
      type: 'deduction' | 'usage';
      counter: string;
      description: string | null;
      metadata: Record<string, unknown>;
      actor: Actor;
    },
  ) {
    const s = book.state(orgId);
    const refused = checkDebit(s, amount, book.month, true, fmt);
    if (refused) return { refused: refusal(refused.code, refused.detail, requestId) };
    const t = book.post(orgId, {
      type: posting.type,
      amount,
      legs: [
        [CREDITS, -amount],
        [posting.counter, amount],
      ],
      spend: amount,
      description: posting.description,
      metadata: posting.metadata,
      actor: posting.actor,
    });
    return { transaction: t };
  }

  async function lockHold(tx: Tx, orgId: string, holdId: string) {
    const hold = await tx
      .selectFrom('ledger_holds')
      .selectAll()
      .where('organization_id', '=', orgId)
      .where('id', '=', holdId)
      .forUpdate()
      .executeTakeFirst();
    if (!hold) throw new AppError('not_found', `No hold "${holdId}"`);
    return hold;
  }

  /** Returns an active hold's credits (release or expiry), closing it. */
  async function closeHold(
    book: Book,
    hold: Awaited<ReturnType<typeof lockHold>>,
    status: 'released' | 'expired',
    actor: Actor,
  ) {
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
    const closed = await book.tx
      .updateTable('ledger_holds')
      .set({ status, closed_at: book.now })
      .where('organization_id', '=', hold.organization_id)
      .where('id', '=', hold.id)
      .returningAll()
      .executeTakeFirstOrThrow();
    return { hold: closed, transaction: t };
  }

  async function submit(op: LedgerOp): Promise<OpResult> {
    return op.organizationIds.length > 1 ? engine.run(op) : engine.submit(op);
  }

  return {
    engine,

    /** The ledger's part of an organization's export: accounts, every transaction, holds, top-ups. */
    async exportSection(ex: Executor, organizationId: string) {
      const [accounts, transactions, holds, topUps] = await Promise.all([
        ex
          .selectFrom('ledger_accounts')
          .select(['code', 'balance'])
          .where('organization_id', '=', organizationId)
          .orderBy('code')
          .execute(),
        repo.findTransactions(ex, organizationId, {
          types: undefined,
          from: undefined,
          to: undefined,
          beforeId: undefined,
          limit: undefined,
        }),
        ex
          .selectFrom('ledger_holds')
          .selectAll()
          .where('organization_id', '=', organizationId)
          .orderBy('id')
          .execute(),
        ex
          .selectFrom('top_ups')
          .selectAll()
          .where('organization_id', '=', organizationId)
          .orderBy('id')
          .execute(),
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

    /** Opens the organization's credits account; run when the organization is created. */
    openAccount: (tx: Tx, organizationId: string) => repo.insertCreditAccounts(tx, [organizationId]),

    /** Credits an organization (a manual top-up). Inactive organizations can still receive credits. */
    async addCredits(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof AddCreditsBody>,
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'credits:add');
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        idempotency: idem(key, [
          'credits.add',
          org.id,
          amount,
          body.description ?? null,
          body.metadata ?? {},
        ]),
        run: (book) => {
          const t = book.post(org.id, {
            type: 'top_up',
            amount,
            legs: [
              [SYSTEM.topUps, -amount],
              [CREDITS, amount],
            ],
            description: body.description ?? null,
            metadata: body.metadata ?? {},
            actor: ctx.actor,
          });
          return ok(201, viewTransaction(t));
        },
      });
    },

    async deductCredits(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof DeductCreditsBody>,
      key?: string,
    ) {
      const org = await resolve(ctx, idOrSlug, 'credits:deduct');
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [org.id],
        requestId: ctx.requestId,
        idempotency: idem(key, ['credits.deduct', org.id, amount, body.reason ?? null, body.metadata ?? {}]),
        run: (book) => {
          const r = debit(book, org.id, amount, ctx.requestId, {
            type: 'deduction',
            counter: SYSTEM.adjustments,
            description: body.reason ?? null,
            metadata: body.metadata ?? {},
            actor: ctx.actor,
          });
          return r.refused ?? ok(201, viewTransaction(r.transaction));
        },
      });
    },

    /** Moves credits from one organization to another in one atomic transaction. */
    async transfer(ctx: RequestContext, idOrSlug: string, body: Static<typeof TransferBody>, key?: string) {
      const from = await resolve(ctx, idOrSlug, 'credits:transfer');
      // The receiver must be an organization the caller can see (a sub-organization, say).
      const to = await organizations.load(db, body.to_organization_id).catch(() => undefined);
      if (!to || !canSee(ctx.actor, to.id))
        throw invalidField('to_organization_id', 'is not an organization you can see');
      if (to.id === from.id)
        throw invalidField('to_organization_id', 'must differ from the sending organization');
      const amount = positive('amount', body.amount);
      return submit({
        organizationIds: [from.id, to.id],
        requestId: ctx.requestId,
        idempotency: idem(key, [
          'credits.transfer',
          from.id,
          to.id,
          amount,
          body.description ?? null,
          body.metadata ?? {},
        ]),
        run: (book) => {
          const refused = checkDebit(book.state(from.id), amount, book.month, false, fmt);
          if (refused) return refusal(refused.code, refused.detail, ctx.requestId);
          const meta = body.metadata ?? {};
          const out = book.post(from.id, {
            type: 'transfer_out',
            amount,
            legs: [
              [CREDITS, -amount],
              [SYSTEM.transfers, amount],
            ],
            description: body.description ?? null,
            metadata: { ...meta, to_organization_id: to.id },
            actor: ctx.actor,
          });
          const inbound = book.post(to.id, {
            type: 'transfer_in',
            amount,
            legs: [
              [SYSTEM.transfers, -amount],
              [CREDITS, amount],
            ],
            description: body.description ?? null,
            metadata: { ...meta, from_organization_id: from.id },
            relatedId: out.id,
            actor: ctx.actor,
          });
          out.related_id = inbound.id;
          return ok(201, { from: viewTransaction(out), to: viewTransaction(inbound) });
        },
      });
    },

    async balance(ctx: RequestContext, idOrSlug: string): Promise<Static<typeof BalanceResponse>> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
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
        auto_recharge: {
          enabled: state.autoRechargeEnabled,
          threshold: fmt(state.autoRechargeThreshold),
          amount: fmt(state.autoRechargeAmount),
          payment_method: state.autoRechargePaymentMethod,
        },
      };
    },

    /** Overdraft, monthly spending limit and auto-recharge. Audited with before/after. */
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
      await db.transaction().execute(async (tx) => {
        const [current] = [...(await repo.lockCreditAccounts(tx, [org.id], new Map())).values()];
        if (ar?.enabled && (policy.auto_recharge_amount ?? current?.autoRechargeAmount ?? 0n) <= 0n)
          throw invalidField('auto_recharge.amount', 'is required to enable auto-recharge');
        await repo.updateCreditPolicy(tx, org.id, policy);
      });
      return this.balance(ctx, org.id);
    },

    async transactions(
      ctx: RequestContext,
      idOrSlug: string,
      query: Static<typeof TransactionsQuery>,
    ): Promise<Page<TransactionView>> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findTransactions(db, org.id, {
        types: query.type === undefined ? undefined : ([] as string[]).concat(query.type),
        from: query.from ? new Date(query.from) : undefined,
        to: query.to ? new Date(query.to) : undefined,
        beforeId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      return toPage(rows, limit, (r) => r.id, rowToView);
    },

    /** The same filters as `transactions`, every matching row, as CSV. */
    async transactionsCsv(ctx: RequestContext, idOrSlug: string, query: Static<typeof TransactionsQuery>) {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const rows = await repo.findTransactions(db, org.id, {
        types: query.type === undefined ? undefined : ([] as string[]).concat(query.type),
        from: query.from ? new Date(query.from) : undefined,
        to: query.to ? new Date(query.to) : undefined,
        beforeId: decodeCursor(query.cursor),
        limit: undefined,
      });
      const lines = [CSV_COLUMNS.join(',')];
      for (const r of rows) {
        const v = rowToView(r);
        const cells: Record<(typeof CSV_COLUMNS)[number], string | null> = {
          ...v,
          actor_type: v.actor.type,
          actor_id: v.actor.id,
        };
        lines.push(CSV_COLUMNS.map((c) => csvCell(cells[c])).join(','));
      }
      return { filename: `${org.slug}-transactions.csv`, body: `${lines.join('\r\n')}\r\n` };
    },

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
          const refused = checkDebit(book.state(org.id), amount, book.month, true, fmt);
          if (refused) return refusal(refused.code, refused.detail, ctx.requestId);
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
          const hold = await book.tx
            .insertInto('ledger_holds')
            .values({
              organization_id: org.id,
              id,
              amount,
              description: body.description ?? null,
              metadata: JSON.stringify(body.metadata ?? {}),
              expires_at: new Date(book.now.getTime() + seconds * 1000),
            })
            .returningAll()
            .executeTakeFirstOrThrow();
          return ok(201, viewHold(hold));
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
          const hold = await lockHold(book.tx, org.id, holdId);
          if (hold.status !== 'active')
            return refusal('hold_not_active', `The hold is ${hold.status}`, ctx.requestId);
          if (hold.expires_at <= book.now) {
            await closeHold(book, hold, 'expired', { type: 'operator', id: 'hold_expiry' });
            return refusal('hold_not_active', 'The hold expired before it was captured', ctx.requestId);
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
          const closed = await book.tx
            .updateTable('ledger_holds')
            .set({ status: 'captured', captured_amount: amount, closed_at: book.now })
            .where('organization_id', '=', org.id)
            .where('id', '=', hold.id)
            .returningAll()
            .executeTakeFirstOrThrow();
          return ok(200, { hold: viewHold(closed), transaction: viewTransaction(t) });
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
          const hold = await lockHold(book.tx, org.id, holdId);
          if (hold.status !== 'active')
            return refusal('hold_not_active', `The hold is ${hold.status}`, ctx.requestId);
          const { hold: closed, transaction } = await closeHold(book, hold, 'released', ctx.actor);
          return ok(200, { hold: viewHold(closed), transaction: viewTransaction(transaction) });
        },
      });
    },

    async getHold(ctx: RequestContext, idOrSlug: string, holdId: string): Promise<HoldView> {
      const org = await resolve(ctx, idOrSlug, 'credits:read');
      const hold = await db
        .selectFrom('ledger_holds')
        .selectAll()
        .where('organization_id', '=', org.id)
        .where('id', '=', holdId)
        .executeTakeFirst();
      if (!hold) throw new AppError('not_found', `No hold "${holdId}"`);
      return viewHold(hold);
    },

    /** Returns the credits of every hold past its deadline. Safe to run from every process at once. */
    async expireDueHolds(limit = 500): Promise<number> {
      const due = await db
        .selectFrom('ledger_holds')
        .select(['organization_id', 'id'])
        .where('status', '=', 'active')
        .where('expires_at', '<=', new Date())
        .orderBy('expires_at')
        .limit(limit)
        .execute();
      const results = await Promise.all(
        due.map((d) =>
          engine.submit({
            organizationIds: [d.organization_id],
            requestId: 'hold-expiry',
            run: async (book) => {
              const hold = await lockHold(book.tx, d.organization_id, d.id);
              if (hold.status !== 'active' || hold.expires_at > book.now) return ok(200, null);
              await closeHold(book, hold, 'expired', { type: 'operator', id: 'hold_expiry' });
              return ok(200, hold.id);
            },
          }),
        ),
      );
      return results.filter((r) => r.body !== null).length;
    },

    /**
     * Applies a batch of usage events in order, each on its own: a refused event does not stop
     * the others. Each event's idempotency key makes its retry safe.
     */
    async recordUsage(ctx: RequestContext, body: Static<typeof UsageBody>) {
      // Authorized per event: one batch may span organizations, and each answers on its own.
      const parsed = body.events.map((e, i) => {
        const credits = positive(`events.${i}.credits`, e.credits);
        const cost = e.cost === undefined ? undefined : nonNegative(`events.${i}.cost`, e.cost);
        return { e, credits, cost };
      });
      const results = await Promise.all(
        parsed.map(({ e, credits, cost }) => {
          const { idempotency_key, ...content } = e;
          if (!can(ctx.actor, ['usage:record'], e.organization_id))
            return Promise.resolve(
              canSee(ctx.actor, e.organization_id)
                ? refusal('forbidden', 'Requires usage:record', ctx.requestId)
                : refusal('not_found', NO_SUCH_ORGANIZATION, ctx.requestId),
            );
          return engine.submit({
            organizationIds: [e.organization_id],
            requestId: ctx.requestId,
            idempotency: idem(idempotency_key, [
              'usage',
              content.organization_id,
              credits,
              cost ?? null,
              content.agent_id ?? null,
              content.tokens_in ?? null,
              content.tokens_out ?? null,
              content.description ?? null,
              content.metadata ?? {},
            ]),
            run: (book) => {
              const metadata: Record<string, unknown> = { ...(e.metadata ?? {}) };
              if (e.agent_id !== undefined) metadata.agent_id = e.agent_id;
              if (e.tokens_in !== undefined) metadata.tokens_in = e.tokens_in;
              if (e.tokens_out !== undefined) metadata.tokens_out = e.tokens_out;
              if (cost !== undefined) metadata.cost = fmt(cost);
              const r = debit(book, e.organization_id, credits, ctx.requestId, {
                type: 'usage',
                counter: SYSTEM.usage,
                description: e.description ?? null,
                metadata,
                actor: ctx.actor,
              });
              if (r.refused) return r.refused;
              return ok(200, {
                transaction_id: r.transaction.id,
                balance_after: fmt(r.transaction.balance_after),
              });
            },
          });
        }),
      );
      const view = results.map((r, index) => {
        const body = r.body as {
          code?: string;
          detail?: string;
          transaction_id?: string;
          balance_after?: string;
        };
        return r.status < 300
          ? {
              index,
              status: 'applied' as const,
              transaction_id: body.transaction_id ?? null,
              balance_after: body.balance_after ?? null,
              code: null,
              detail: null,
              replayed: r.replayed === true,
            }
          : {
              index,
              status: 'rejected' as const,
              transaction_id: null,
              balance_after: null,
              code: body.code ?? 'internal_error',
              detail: body.detail ?? null,
              replayed: r.replayed === true,
            };
      });
      return {
        applied: view.filter((v) => v.status === 'applied').length,
        rejected: view.filter((v) => v.status === 'rejected').length,
        results: view,
      };
    },

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
        const started = await deps.payments.startTopUp({
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
          await settleTopUp(
            t.organization_id,
            t.id,
            { type: 'operator', id: deps.payments.name },
            'provider',
          );
      }
      return pending.length;
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

    /** The operator confirms an invoice was paid: the organization is credited, once. */
    async markTopUpPaid(ctx: RequestContext, idOrSlug: string, topUpId: string) {
      const org = await resolve(ctx, idOrSlug, 'top_ups:mark_paid');
      return settleTopUp(org.id, topUpId, ctx.actor, ctx.requestId);
    },
  };

  async function settleTopUp(
    orgId: string,
    topUpId: string,
    actor: Actor,
    requestId: string,
  ): Promise<OpResult> {
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
          return refusal('top_up_not_pending', `The top-up is ${t.status}`, requestId);
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
        return ok(200, viewTopUp(paid));
      },
    });
  }
}

function viewTopUp(t: {
  organization_id: string;
  id: string;
  amount: bigint;
  status: string;
  reason: string;
  provider: string;
  payment_method: string | null;
  transaction_id: string | null;
  created_at: Date;
  updated_at: Date;
}): TopUpView {
  return {
    id: t.id,
    organization_id: t.organization_id,
    amount: fmt(t.amount),
    status: t.status,
    reason: t.reason,
    provider: t.provider,
    payment_method: t.payment_method,
    transaction_id: t.transaction_id,
    created_at: t.created_at.toISOString(),
    updated_at: t.updated_at.toISOString(),
  };
}

export type LedgerService = ReturnType<typeof createLedgerService>;

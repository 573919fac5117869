/**
 * The ledger's SQL: accounts, transactions, idempotency records, team budgets, the invariant
 * check. Holds and top-ups have repos of their own (ledger.holds.repo.ts, ledger.top-ups.repo.ts),
 * the usage roll-ups' reads too (ledger.usage.repo.ts); a batch's one write is ledger.batch.ts.
 */
import { type Selectable, sql } from 'kysely';
import type { Db, Executor, Tx } from '../../db/client.js';
import { pgArray } from '../../db/pg-array.js';

import type { LedgerTransactionsTable } from '../../db/schema.js';
import { CREDITS, type CreditState, type TeamState } from './ledger.core.js';
import type { Outcome } from './ledger.outcome.js';

export interface NewTransaction {
  organization_id: string;
  id: string;
  type: string;
  amount: bigint;
  entries: Array<[account: string, amount: bigint]>;
  balance_after: bigint;
  description: string | null;
  actor_type: string;
  actor_id: string | null;
  metadata: Record<string, unknown>;
  related_id: string | null;
  created_at: Date;
}

export type TransactionRow = Selectable<LedgerTransactionsTable>;

interface CreditRow {
  organization_id: string;
  balance: bigint;
  overdraft_enabled: boolean;
  overdraft_limit: bigint;
  monthly_spending_limit: bigint | null;
  spend_month: string;
  month_spend: bigint;
  usage_events_limit: bigint | null;
  month_events: bigint;
  auto_recharge_enabled: boolean;
  auto_recharge_threshold: bigint;
  auto_recharge_amount: bigint;
  auto_recharge_payment_method: string | null;
}

function toState(r: CreditRow, active: boolean): CreditState {
  return {
    organizationId: r.organization_id,
    active,
    balance: r.balance,
    overdraftEnabled: r.overdraft_enabled,
    overdraftLimit: r.overdraft_limit,
    monthlySpendingLimit: r.monthly_spending_limit,
    spendMonth: r.spend_month,
    monthSpend: r.month_spend,
    usageEventsLimit: r.usage_events_limit,
    monthEvents: r.month_events,
    autoRechargeEnabled: r.auto_recharge_enabled,
    autoRechargeThreshold: r.auto_recharge_threshold,
    autoRechargeAmount: r.auto_recharge_amount,
    autoRechargePaymentMethod: r.auto_recharge_payment_method,
  };
}

/** Runs `work` in one database transaction: committed when it resolves, rolled back if it throws. */
export function transaction<T>(db: Db, work: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction().execute(work);
}

/** Every account of the organization with its balance, by code. */
export function findAccounts(db: Executor, organizationId: string) {
  return db
    .selectFrom('ledger_accounts')
    .select(['code', 'balance'])
    .where('organization_id', '=', organizationId)
    .orderBy('code')
    .execute();
}

/** The `credits` balance of each of these organizations that has an account. */
export async function findCreditBalances(
  db: Executor,
  organizationIds: string[],
): Promise<Map<string, bigint>> {
  const rows = await db
    .selectFrom('ledger_accounts')
    .select(['organization_id', 'balance'])
    .where('organization_id', 'in', organizationIds)
    .where('code', '=', CREDITS)
    .execute();
  return new Map(rows.map((r) => [r.organization_id, r.balance]));
}

/** Creates the `credits` accounts that do not exist yet (idempotent). */
export async function insertCreditAccounts(db: Executor, organizationIds: string[]): Promise<void> {
  await sql`insert into ledger_accounts (organization_id, code)
    select unnest(${pgArray(organizationIds)}::text[]), ${CREDITS}
    on conflict do nothing`.execute(db);
}

/**
 * Locks the `credits` rows of these organizations, in id order (every writer locks in the
 * same order, so writers never deadlock), and returns their state.
 */
export async function lockCreditAccounts(
  db: Executor,
  organizationIds: string[],
  active: Map<string, boolean>,
): Promise<Map<string, CreditState>> {
  const { rows } = await sql<CreditRow>`select organization_id, balance, overdraft_enabled, overdraft_limit,
      monthly_spending_limit, spend_month, month_spend, usage_events_limit, month_events,
      auto_recharge_enabled, auto_recharge_threshold,
      auto_recharge_amount, auto_recharge_payment_method
    from ledger_accounts
    where code = ${CREDITS} and organization_id = any(${pgArray(organizationIds)}::text[])
    order by organization_id
    for update`.execute(db);
  return new Map(rows.map((r) => [r.organization_id, toState(r, active.get(r.organization_id) ?? false)]));
}

/**
 * The batch's one read, in one round trip: locks the `credits` rows of these organizations in id
 * order (every writer locks in the same order, so writers never deadlock) and returns them with
 * the idempotency records already stored for these keys.
 */
export async function lockAccountsAndFindRecords(
  db: Executor,
  organizationIds: string[],
  active: Map<string, boolean>,
  pairs: Array<[org: string, key: string]>,
): Promise<{
  states: Map<string, CreditState>;
  versions: Map<string, bigint>;
  records: StoredRecord[];
}> {
  const { rows } = await sql<{ kind: 'account' | 'record'; row: Record<string, unknown> }>`with
    locked as (
      select organization_id, version::text, balance::text, overdraft_enabled, overdraft_limit::text,
        monthly_spending_limit::text, spend_month, month_spend::text, usage_events_limit::text,
        month_events::text, auto_recharge_enabled,
        auto_recharge_threshold::text, auto_recharge_amount::text, auto_recharge_payment_method
      from ledger_accounts
      where code = ${CREDITS} and organization_id = any(${pgArray(organizationIds)}::text[])
      order by organization_id
      for update)
    select 'account' as kind, to_jsonb(locked) as row from locked
    union all
    select 'record', jsonb_build_object('organization_id', r.organization_id, 'key', r.key,
      'fingerprint', r.fingerprint, 'outcome', r.outcome, 'status_code', r.status_code, 'response', r.response)
    from idempotency_records r
    join unnest(${pgArray(pairs.map((p) => p[0]))}::text[], ${pgArray(pairs.map((p) => p[1]))}::text[]) as v(o, k)
      on r.organization_id = v.o and r.key = v.k`.execute(db);
  const states = new Map<string, CreditState>();
  const versions = new Map<string, bigint>();
  const records: StoredRecord[] = [];
  const big = (v: unknown) => BigInt(v as string);
  for (const { kind, row } of rows) {
    if (kind === 'record') {
      records.push(row as unknown as StoredRecord);
      continue;
    }
    const r: CreditRow = {
      organization_id: row.organization_id as string,
      balance: big(row.balance),
      overdraft_enabled: row.overdraft_enabled as boolean,
      overdraft_limit: big(row.overdraft_limit),
      monthly_spending_limit: row.monthly_spending_limit === null ? null : big(row.monthly_spending_limit),
      spend_month: row.spend_month as string,
      month_spend: big(row.month_spend),
      usage_events_limit: row.usage_events_limit === null ? null : big(row.usage_events_limit),
      month_events: big(row.month_events),
      auto_recharge_enabled: row.auto_recharge_enabled as boolean,
      auto_recharge_threshold: big(row.auto_recharge_threshold),
      auto_recharge_amount: big(row.auto_recharge_amount),
      auto_recharge_payment_method: row.auto_recharge_payment_method as string | null,
    };
    states.set(r.organization_id, toState(r, active.get(r.organization_id) ?? false));
    versions.set(r.organization_id, big(row.version));
  }
  return { states, versions, records };
}

/** Locks the teams' rows (in id order, as every writer does) and returns their budget state. */
export async function lockTeams(db: Executor, ids: string[]): Promise<Map<string, TeamState>> {
  const { rows } = await sql<{
    id: string;
    organization_id: string | null;
    monthly_budget: bigint | null;
    spend_month: string;
    month_spend: bigint;
  }>`
    select id, organization_id, monthly_budget, spend_month, month_spend from teams
    where id = any(${pgArray(ids)}::text[]) and deleted_at is null
    order by id
    for update`.execute(db);
  return new Map(
    rows.map((r) => [
      r.id,
      {
        id: r.id,
        organizationId: r.organization_id,
        monthlyBudget: r.monthly_budget,
        spendMonth: r.spend_month,
        monthSpend: r.month_spend,
      },
    ]),
  );
}

export async function findCreditAccount(
  db: Executor,
  organizationId: string,
): Promise<CreditState | undefined> {
  const { rows } = await sql<CreditRow>`select organization_id, balance, overdraft_enabled, overdraft_limit,
      monthly_spending_limit, spend_month, month_spend, usage_events_limit, month_events,
      auto_recharge_enabled, auto_recharge_threshold,
      auto_recharge_amount, auto_recharge_payment_method
    from ledger_accounts where organization_id = ${organizationId} and code = ${CREDITS}`.execute(db);
  return rows[0] ? toState(rows[0], true) : undefined;
}

export async function findAccountBalance(
  db: Executor,
  organizationId: string,
  code: string,
): Promise<bigint> {
  const { rows } = await sql<{ balance: bigint }>`select balance from ledger_accounts
    where organization_id = ${organizationId} and code = ${code}`.execute(db);
  return rows[0]?.balance ?? 0n;
}

export interface CreditPolicy {
  usage_events_limit?: bigint | null;
  overdraft_enabled?: boolean;
  overdraft_limit?: bigint;
  monthly_spending_limit?: bigint | null;
  auto_recharge_enabled?: boolean;
  auto_recharge_threshold?: bigint;
  auto_recharge_amount?: bigint;
  auto_recharge_payment_method?: string | null;
}

export async function updateCreditPolicy(
  db: Executor,
  organizationId: string,
  policy: CreditPolicy,
): Promise<void> {
  if (Object.keys(policy).length === 0) return;
  await db
    .updateTable('ledger_accounts')
    .set({ ...policy, updated_at: new Date() })
    .where('organization_id', '=', organizationId)
    .where('code', '=', CREDITS)
    .execute();
}

/** One organization's usage on one UTC day by one agent ('' for none), as a batch adds it up. */
export interface UsageRollup {
  organization_id: string;
  day: string;
  agent_id: string;
  events: bigint;
  credits: bigint;
  tokens_in: bigint;
  tokens_out: bigint;
  cost: bigint;
}

/** An idempotency record as a batch writes it: the outcome is stored as text (toStored). */
export interface IdempotencyRecord {
  organization_id: string;
  key: string;
  fingerprint: string;
  outcome: Outcome;
}

/**
 * An idempotency record as stored: `outcome` text, or, written before migration 0013, the
 * HTTP status and body (read back by fromStored in ledger.outcome.ts).
 */
export interface StoredRecord {
  organization_id: string;
  key: string;
  fingerprint: string;
  outcome: string | null;
  status_code: number | null;
  response: unknown;
}

export async function findTransactions(
  db: Executor,
  organizationId: string,
  opts: {
    types: string[] | undefined;
    from: Date | undefined;
    to: Date | undefined;
    beforeId: string | undefined;
    limit: number | undefined;
  },
): Promise<TransactionRow[]> {
  let q = db.selectFrom('ledger_transactions').selectAll().where('organization_id', '=', organizationId);
  if (opts.types?.length) q = q.where('type', 'in', opts.types);
  if (opts.from) q = q.where('created_at', '>=', opts.from);
  if (opts.to) q = q.where('created_at', '<', opts.to);
  if (opts.beforeId) q = q.where('id', '<', opts.beforeId);
  q = q.orderBy('id', 'desc');
  if (opts.limit !== undefined) q = q.limit(opts.limit);
  return q.execute();
}

export interface Violation {
  kind: 'unbalanced_transaction' | 'balance_mismatch' | 'held_mismatch';
  organization_id: string;
  subject: string;
  expected: string;
  actual: string;
}

/** Checks the ledger's invariants over the whole database. Empty means sound. */
export async function findInvariantViolations(db: Executor): Promise<Violation[]> {
  const unbalanced =
    await sql<Violation>`select 'unbalanced_transaction' as kind, organization_id, id as subject,
      '0' as expected, (select coalesce(sum(a), 0) from unnest(entry_amounts) a)::text as actual
    from ledger_transactions
    where (select coalesce(sum(a), 0) from unnest(entry_amounts) a) <> 0
       or cardinality(entry_amounts) < 2`.execute(db);
  const balances = await sql<Violation>`with sums as (
      select t.organization_id, u.account, sum(u.amount) as total
      from ledger_transactions t, unnest(t.entry_accounts, t.entry_amounts) as u(account, amount)
      group by t.organization_id, u.account)
    select 'balance_mismatch' as kind, coalesce(a.organization_id, s.organization_id) as organization_id,
      coalesce(a.code, s.account) as subject, coalesce(s.total, 0)::text as expected, coalesce(a.balance, 0)::text as actual
    from ledger_accounts a full outer join sums s on s.organization_id = a.organization_id and s.account = a.code
    where coalesce(a.balance, 0) <> coalesce(s.total, 0)`.execute(db);
  const held = await sql<Violation>`with active as (
      select organization_id, sum(amount) as total from ledger_holds where status = 'active' group by organization_id)
    select 'held_mismatch' as kind, coalesce(a.organization_id, h.organization_id) as organization_id, 'held' as subject,
      coalesce(h.total, 0)::text as expected, coalesce(a.balance, 0)::text as actual
    from (select organization_id, balance from ledger_accounts where code = 'held') a
    full outer join active h on h.organization_id = a.organization_id
    where coalesce(a.balance, 0) <> coalesce(h.total, 0)`.execute(db);
  return [...unbalanced.rows, ...balances.rows, ...held.rows];
}

export async function countLedger(db: Executor): Promise<{ transactions: number; accounts: number }> {
  const { rows } = await sql<{ t: bigint; a: bigint }>`select
    (select count(*) from ledger_transactions) as t, (select count(*) from ledger_accounts) as a`.execute(db);
  return { transactions: Number(rows[0]?.t ?? 0), accounts: Number(rows[0]?.a ?? 0) };
}

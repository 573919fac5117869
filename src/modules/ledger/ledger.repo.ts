import { sql } from 'kysely';
import type { Executor } from '../../db/client.js';
import { CREDITS, type CreditState } from './ledger.core.js';

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

export interface TransactionRow {
  organization_id: string;
  id: string;
  type: string;
  amount: bigint;
  entry_accounts: string[];
  entry_amounts: bigint[];
  balance_after: bigint;
  description: string | null;
  actor_type: string;
  actor_id: string | null;
  metadata: Record<string, unknown>;
  related_id: string | null;
  created_at: Date;
}

interface CreditRow {
  organization_id: string;
  balance: bigint;
  overdraft_enabled: boolean;
  overdraft_limit: bigint;
  monthly_spending_limit: bigint | null;
  spend_month: string;
  month_spend: bigint;
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
    autoRechargeEnabled: r.auto_recharge_enabled,
    autoRechargeThreshold: r.auto_recharge_threshold,
    autoRechargeAmount: r.auto_recharge_amount,
    autoRechargePaymentMethod: r.auto_recharge_payment_method,
  };
}

/** Array literal for a text[]/bigint[] parameter, passed as text so both drivers agree. */
export function pgArray(values: Array<string | bigint | null>): string {
  return `{${values.map((v) => (v === null ? 'NULL' : `"${String(v).replace(/["\\]/g, (c) => `\\${c}`)}"`)).join(',')}}`;
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
      monthly_spending_limit, spend_month, month_spend, auto_recharge_enabled, auto_recharge_threshold,
      auto_recharge_amount, auto_recharge_payment_method
    from ledger_accounts
    where code = ${CREDITS} and organization_id = any(${pgArray(organizationIds)}::text[])
    order by organization_id
    for update`.execute(db);
  return new Map(rows.map((r) => [r.organization_id, toState(r, active.get(r.organization_id) ?? false)]));
}

export async function findCreditAccount(
  db: Executor,
  organizationId: string,
): Promise<CreditState | undefined> {
  const { rows } = await sql<CreditRow>`select organization_id, balance, overdraft_enabled, overdraft_limit,
      monthly_spending_limit, spend_month, month_spend, auto_recharge_enabled, auto_recharge_threshold,
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

/** Writes the new state of `credits` rows (balance and month spend) in one statement. */
export async function updateCreditBalances(db: Executor, states: CreditState[]): Promise<void> {
  if (states.length === 0) return;
  await sql`update ledger_accounts a
    set balance = v.balance, spend_month = v.spend_month, month_spend = v.month_spend, updated_at = now()
    from unnest(${pgArray(states.map((s) => s.organizationId))}::text[],
                ${pgArray(states.map((s) => s.balance))}::bigint[],
                ${pgArray(states.map((s) => s.spendMonth))}::text[],
                ${pgArray(states.map((s) => s.monthSpend))}::bigint[]) as v(organization_id, balance, spend_month, month_spend)
    where a.organization_id = v.organization_id and a.code = ${CREDITS}`.execute(db);
}

export interface CreditPolicy {
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

/** Adds deltas to non-`credits` accounts, creating them on first use; sorted to avoid deadlocks. */
export async function addToAccounts(db: Executor, deltas: Array<[org: string, code: string, delta: bigint]>) {
  if (deltas.length === 0) return;
  const sorted = [...deltas].sort((a, b) => (a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : a[0] < b[0] ? -1 : 1));
  await sql`insert into ledger_accounts (organization_id, code, balance)
    select * from unnest(${pgArray(sorted.map((d) => d[0]))}::text[], ${pgArray(sorted.map((d) => d[1]))}::text[],
                         ${pgArray(sorted.map((d) => d[2]))}::bigint[])
    on conflict (organization_id, code)
    do update set balance = ledger_accounts.balance + excluded.balance, updated_at = now()`.execute(db);
}

export async function insertTransactions(db: Executor, txs: NewTransaction[]): Promise<void> {
  if (txs.length === 0) return;
  const col = <T>(f: (t: NewTransaction) => T) => txs.map(f);
  await sql`insert into ledger_transactions (organization_id, id, type, amount, entry_accounts, entry_amounts,
      balance_after, description, actor_type, actor_id, metadata, related_id, created_at)
    select v.organization_id, v.id, v.type, v.amount, v.entry_accounts::text[], v.entry_amounts::bigint[],
      v.balance_after, v.description, v.actor_type, v.actor_id, v.metadata::jsonb, v.related_id,
      ${txs[0]?.created_at ?? new Date()}::timestamptz
    from unnest(${pgArray(col((t) => t.organization_id))}::text[], ${pgArray(col((t) => t.id))}::text[],
                ${pgArray(col((t) => t.type))}::text[], ${pgArray(col((t) => t.amount))}::bigint[],
                ${pgArray(col((t) => pgArray(t.entries.map((e) => e[0]))))}::text[],
                ${pgArray(col((t) => pgArray(t.entries.map((e) => e[1]))))}::text[],
                ${pgArray(col((t) => t.balance_after))}::bigint[],
                ${pgArray(col((t) => t.description))}::text[],
                ${pgArray(col((t) => t.actor_type))}::text[], ${pgArray(col((t) => t.actor_id))}::text[],
                ${pgArray(col((t) => JSON.stringify(t.metadata)))}::text[], ${pgArray(col((t) => t.related_id))}::text[])
      as v(organization_id, id, type, amount, entry_accounts, entry_amounts, balance_after, description,
           actor_type, actor_id, metadata, related_id)`.execute(db);
}

export interface IdempotencyRecord {
  organization_id: string;
  key: string;
  fingerprint: string;
  status_code: number;
  response: unknown;
}

export async function findIdempotencyRecords(
  db: Executor,
  pairs: Array<[org: string, key: string]>,
): Promise<IdempotencyRecord[]> {
  if (pairs.length === 0) return [];
  const { rows } =
    await sql<IdempotencyRecord>`select r.organization_id, r.key, r.fingerprint, r.status_code, r.response
    from idempotency_records r
    join unnest(${pgArray(pairs.map((p) => p[0]))}::text[], ${pgArray(pairs.map((p) => p[1]))}::text[]) as v(o, k)
      on r.organization_id = v.o and r.key = v.k`.execute(db);
  return rows;
}

/** Inserts the records; returns how many were new (fewer means another writer got there first). */
export async function insertIdempotencyRecords(db: Executor, records: IdempotencyRecord[]): Promise<number> {
  if (records.length === 0) return 0;
  const { rows } = await sql<{
    key: string;
  }>`insert into idempotency_records (organization_id, key, fingerprint, status_code, response)
    select v.o, v.k, v.f, v.s, v.r::jsonb
    from unnest(${pgArray(records.map((r) => r.organization_id))}::text[], ${pgArray(records.map((r) => r.key))}::text[],
                ${pgArray(records.map((r) => r.fingerprint))}::text[], ${pgArray(records.map((r) => BigInt(r.status_code)))}::int[],
                ${pgArray(records.map((r) => JSON.stringify(r.response)))}::text[]) as v(o, k, f, s, r)
    on conflict do nothing
    returning key`.execute(db);
  return rows.length;
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
  return (await q.execute()) as TransactionRow[];
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

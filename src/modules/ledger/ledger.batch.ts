/**
 * The ledger repo's one write: a batch's whole outcome as a single statement (see
 * writeBatchStatement), run in the locking path's transaction or, guarded, as a transaction of
 * its own.
 */
import { CompiledQuery } from 'kysely';
import type { Executor } from '../../db/client.js';
import { pgArray } from '../../db/pg-array.js';
import type { CreditState, TeamState } from './ledger.core.js';
import { toStored } from './ledger.outcome.js';
import type { IdempotencyRecord, NewTransaction, UsageRollup } from './ledger.repo.js';

/** The `credits` versions a batch was decided from: its write stands only if they are still current. */
export interface VersionGuard {
  organizationIds: string[];
  versions: bigint[];
}

/** SQLSTATE raised by `ledger_assert_current` when a guarded batch was decided from stale state. */
export const STALE_STATE = 'OB001';

/**
 * What one database transaction of the ledger applies: a batch (or one operation alone) as its
 * statement writes it. Once it commits, this is the one place that holds everything it applied —
 * where domain events of the batch would be read from.
 */
export interface BatchOutcome {
  /** When the batch was decided: the time of every transaction it posts (one book, one clock). */
  at: Date;
  states: CreditState[];
  deltas: Array<[org: string, code: string, delta: bigint]>;
  /**
   * Every transaction the batch's operations posted, in the order they were decided: additions,
   * deductions, both legs of a transfer, usage, holds, captures, releases, expiries, top-ups
   * (a hold's or a top-up's id is the transaction's `related_id`).
   */
  transactions: NewTransaction[];
  records: IdempotencyRecord[];
  usage: UsageRollup[];
  teams: TeamState[];
}

/** A statement's name, text and parameters; the name and text depend only on its shape. */
export interface Statement {
  name: string;
  text: string;
  values: unknown[];
}

/**
 * One batch's outcome as a single statement: the new `credits` states, the deltas to other
 * accounts (created on first use, in a fixed order so writers never deadlock), the transactions,
 * the idempotency records, the usage roll-ups and team spend. Its one row's `n` is how many
 * idempotency records were new: fewer than given means another writer got there first.
 *
 * Unguarded, the caller's transaction already holds the `credits` rows' locks. With a `guard`,
 * the statement is the whole transaction: it first locks the guard's `credits` rows (in id
 * order, as every writer does) and checks their versions, and every write waits on that check;
 * a changed version, or an idempotency key stored meanwhile, raises STALE_STATE and writes
 * nothing.
 *
 * The text is the same for every batch of one shape (guarded or not, how many legs its
 * transactions have), with every value a parameter: PostgreSQL can keep it as a prepared
 * statement and skip parsing and planning it. Only what a caller reads is returned: a
 * data-modifying CTE runs to completion whether or not anything reads it.
 */
export function writeBatchStatement(batch: BatchOutcome, guard?: VersionGuard): Statement {
  const { states, transactions: txs, records, teams } = batch;
  // Sorted, like the account deltas, so concurrent batches take row locks in one order.
  // Field by field: a key string per comparison was a visible share of a large batch's CPU.
  const usage = [...batch.usage].sort(
    (a, b) =>
      compare(a.organization_id, b.organization_id) ||
      compare(a.day, b.day) ||
      compare(a.agent_id, b.agent_id),
  );
  // The same usage by organization and day (all agents), in the same (sorted) order.
  const byOrgDay: UsageRollup[] = [];
  for (const u of usage) {
    const last = byOrgDay.at(-1);
    if (last?.organization_id === u.organization_id && last.day === u.day) {
      last.events += u.events;
      last.credits += u.credits;
      last.tokens_in += u.tokens_in;
      last.tokens_out += u.tokens_out;
      last.cost += u.cost;
    } else byOrgDay.push({ ...u, agent_id: '' });
  }
  const deltas = [...batch.deltas].sort((a, b) => compare(a[0], b[0]) || compare(a[1], b[1]));
  const values: unknown[] = [];
  /** A parameter: `$n` in the text, its value in `values`. */
  const $ = (value: unknown, type: string) => {
    values.push(value);
    return `$${values.length}::${type}`;
  };
  const col = <T>(rows: T[], type: string, f: (r: T) => string | bigint | null) =>
    $(pgArray(rows.map(f)), `${type}[]`);
  // Each transaction's legs as one column per position (account `a1`…, amount `m1`…): an array
  // built in the statement costs PostgreSQL far less than a nested literal parsed row by row. A
  // batch whose transactions have fewer legs than its widest trims the missing tail.
  const width = Math.max(2, ...txs.map((t) => t.entries.length));
  const ragged = txs.some((t) => t.entries.length !== width);
  const positions = Array.from({ length: width }, (_, i) => i);
  const legColumns = [
    ...positions.map((i) => col(txs, 'text', (t) => t.entries[i]?.[0] ?? null)),
    ...positions.map((i) => col(txs, 'bigint', (t) => t.entries[i]?.[1] ?? null)),
    ...(ragged ? [col(txs, 'int', (t) => BigInt(width - t.entries.length))] : []),
  ].join(', ');
  const legNames = [
    ...positions.map((i) => `a${i + 1}`),
    ...positions.map((i) => `m${i + 1}`),
    ...(ragged ? ['short'] : []),
  ].join(', ');
  const legs = (prefix: 'a' | 'm') => {
    const built = `array[${positions.map((i) => `v.${prefix}${i + 1}`).join(', ')}]`;
    return ragged ? `trim_array(${built}, v.short)` : built;
  };
  const guarded = guard && $(pgArray(guard.organizationIds), 'text[]');
  const checks = guard
    ? `locked as (
      select organization_id, version from ledger_accounts
      where code = 'credits' and organization_id = any(${guarded})
      order by organization_id
      for update),
    gate as (
      select ledger_assert_current(count(*) = ${$(guard.organizationIds.length, 'int')}) as ok
      from locked join unnest(${guarded}, ${$(pgArray(guard.versions), 'bigint[]')})
        as v(organization_id, version) using (organization_id, version)),`
    : '';
  // Every write waits on the gate (an init plan evaluated before its first row): the locks are
  // taken, and the versions checked, before anything is written. The result reads it first, so
  // it runs even when nothing is written (a batch of refusals was decided from state that must
  // still be current too).
  const gated = guard ? '(select ok from gate)' : 'true';
  const text = `with ${checks}
    credits as (
      update ledger_accounts a
      set balance = v.balance, spend_month = v.spend_month, month_spend = v.month_spend,
        month_events = v.month_events, version = a.version + 1, updated_at = now()
      from unnest(${col(states, 'text', (s) => s.organizationId)}, ${col(states, 'bigint', (s) => s.balance)},
                  ${col(states, 'text', (s) => s.spendMonth)}, ${col(states, 'bigint', (s) => s.monthSpend)},
                  ${col(states, 'bigint', (s) => s.monthEvents)})
        as v(organization_id, balance, spend_month, month_spend, month_events)
      where a.organization_id = v.organization_id and a.code = 'credits' and ${gated}),
    others as (
      insert into ledger_accounts (organization_id, code, balance)
      select * from unnest(${col(deltas, 'text', (d) => d[0])}, ${col(deltas, 'text', (d) => d[1])},
                           ${col(deltas, 'bigint', (d) => d[2])}) as v(organization_id, code, balance)
      where ${gated}
      on conflict (organization_id, code)
      do update set balance = ledger_accounts.balance + excluded.balance,
        version = ledger_accounts.version + 1, updated_at = now()),
    transactions as (
      insert into ledger_transactions (organization_id, id, type, amount, entry_accounts, entry_amounts,
        balance_after, description, actor_type, actor_id, metadata, related_id, created_at)
      select v.organization_id, v.id, v.type, v.amount, ${legs('a')}, ${legs('m')}, v.balance_after,
        v.description, v.actor_type, v.actor_id, coalesce(v.metadata::jsonb, '{}'::jsonb), v.related_id,
        ${$(batch.at.toISOString(), 'timestamptz')}
      from unnest(${col(txs, 'text', (t) => t.organization_id)}, ${col(txs, 'text', (t) => t.id)},
                  ${col(txs, 'text', (t) => t.type)}, ${col(txs, 'bigint', (t) => t.amount)},
                  ${legColumns}, ${col(txs, 'bigint', (t) => t.balance_after)},
                  ${col(txs, 'text', (t) => t.description)}, ${col(txs, 'text', (t) => t.actor_type)},
                  ${col(txs, 'text', (t) => t.actor_id)}, ${col(txs, 'text', (t) => jsonOrNull(t.metadata))},
                  ${col(txs, 'text', (t) => t.related_id)})
        as v(organization_id, id, type, amount, ${legNames}, balance_after, description,
             actor_type, actor_id, metadata, related_id)
      where ${gated}),
    records as (
      insert into idempotency_records (organization_id, key, fingerprint, outcome)
      select * from unnest(${col(records, 'text', (r) => r.organization_id)}, ${col(records, 'text', (r) => r.key)},
                           ${col(records, 'text', (r) => r.fingerprint)},
                           ${col(records, 'text', (r) => toStored(r.outcome))}) as v(o, k, f, r)
      where ${gated}
      on conflict do nothing
      returning 1),
    rollups as (
      insert into usage_daily (organization_id, day, agent_id, events, credits, tokens_in, tokens_out, cost)
      select * from unnest(${col(usage, 'text', (u) => u.organization_id)}, ${col(usage, 'date', (u) => u.day)},
                           ${col(usage, 'text', (u) => u.agent_id)}, ${col(usage, 'bigint', (u) => u.events)},
                           ${col(usage, 'bigint', (u) => u.credits)}, ${col(usage, 'bigint', (u) => u.tokens_in)},
                           ${col(usage, 'bigint', (u) => u.tokens_out)}, ${col(usage, 'bigint', (u) => u.cost)})
        as v(organization_id, day, agent_id, events, credits, tokens_in, tokens_out, cost)
      where ${gated}
      on conflict (organization_id, day, agent_id) do update set
        events = usage_daily.events + excluded.events, credits = usage_daily.credits + excluded.credits,
        tokens_in = usage_daily.tokens_in + excluded.tokens_in, tokens_out = usage_daily.tokens_out + excluded.tokens_out,
        cost = usage_daily.cost + excluded.cost),
    org_rollups as (
      insert into usage_org_daily (organization_id, day, events, credits, tokens_in, tokens_out, cost)
      select * from unnest(${col(byOrgDay, 'text', (u) => u.organization_id)}, ${col(byOrgDay, 'date', (u) => u.day)},
                           ${col(byOrgDay, 'bigint', (u) => u.events)}, ${col(byOrgDay, 'bigint', (u) => u.credits)},
                           ${col(byOrgDay, 'bigint', (u) => u.tokens_in)}, ${col(byOrgDay, 'bigint', (u) => u.tokens_out)},
                           ${col(byOrgDay, 'bigint', (u) => u.cost)})
        as v(organization_id, day, events, credits, tokens_in, tokens_out, cost)
      where ${gated}
      on conflict (organization_id, day) do update set
        events = usage_org_daily.events + excluded.events, credits = usage_org_daily.credits + excluded.credits,
        tokens_in = usage_org_daily.tokens_in + excluded.tokens_in,
        tokens_out = usage_org_daily.tokens_out + excluded.tokens_out, cost = usage_org_daily.cost + excluded.cost),
    team_spend as (
      update teams t set spend_month = v.spend_month, month_spend = v.month_spend, updated_at = now()
      from unnest(${col(teams, 'text', (x) => x.id)}, ${col(teams, 'text', (x) => x.spendMonth)},
                  ${col(teams, 'bigint', (x) => x.monthSpend)}) as v(id, spend_month, month_spend)
      where t.id = v.id and ${gated})
    select ${
      guard
        ? `(select ok from gate) as ok,
           ledger_assert_current((select count(*) from records) = ${$(records.length, 'int')}) as current,`
        : ''
    } (select count(*) from records) as n`;
  return { name: `ledger_write${guard ? '_guarded' : ''}_${width}${ragged ? 'r' : ''}`, text, values };
}

/** String order by code unit, as the sorts before writing need (the same in every process). */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** JSON text for a jsonb column, or null for an empty object (the column's default, not parsed). */
function jsonOrNull(value: Record<string, unknown>): string | null {
  for (const _ in value) return JSON.stringify(value);
  return null;
}

/** Runs writeBatchStatement on `db` (in the caller's transaction, when it is one); the new records' count. */
export async function writeBatch(db: Executor, batch: BatchOutcome, guard?: VersionGuard): Promise<number> {
  const { text, values } = writeBatchStatement(batch, guard);
  const { rows } = await db.executeQuery<{ n: bigint | string | number }>(CompiledQuery.raw(text, values));
  return Number(rows[0]?.n ?? 0);
}

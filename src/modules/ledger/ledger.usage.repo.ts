/**
 * Reads of the usage roll-ups (`usage_daily` per organization, day and agent; `usage_org_daily`
 * per organization and day), which the batch statement (ledger.batch.ts) adds to with each debit.
 * Every read sums roll-ups, never events. Days are UTC dates ('YYYY-MM-DD').
 */
import { sql } from 'kysely';
import type { Executor } from '../../db/client.js';
import { pgArray } from '../../db/pg-array.js';

export interface UsageTotals {
  events: bigint;
  credits: bigint;
  tokens_in: bigint;
  tokens_out: bigint;
  cost: bigint;
}

/** Sums the daily roll-ups of each organization over [from, to] (inclusive UTC days), in one query. */
export async function sumUsageByOrganization(
  db: Executor,
  organizationIds: string[],
  from: string,
  to: string,
): Promise<Map<string, UsageTotals>> {
  const { rows } = await sql<UsageTotals & { organization_id: string }>`
    select organization_id, sum(events)::bigint as events, sum(credits)::bigint as credits,
      sum(tokens_in)::bigint as tokens_in, sum(tokens_out)::bigint as tokens_out, sum(cost)::bigint as cost
    from usage_org_daily
    where organization_id = any(${pgArray(organizationIds)}::text[]) and day between ${from}::date and ${to}::date
    group by organization_id`.execute(db);
  return new Map(rows.map(({ organization_id, ...t }) => [organization_id, t]));
}

/** Every organization's usage over [from, until), from the per-organization roll-up. */
export async function sumUsageOfEveryOrganization(
  db: Executor,
  from: string,
  until: string,
): Promise<Map<string, UsageTotals>> {
  const { rows } = await sql<UsageTotals & { organization_id: string }>`select organization_id,
      sum(events)::bigint as events, sum(credits)::bigint as credits, sum(tokens_in)::bigint as tokens_in,
      sum(tokens_out)::bigint as tokens_out, sum(cost)::bigint as cost
    from usage_org_daily where day >= ${from}::date and day < ${until}::date
    group by organization_id`.execute(db);
  return new Map(rows.map(({ organization_id, ...t }) => [organization_id, t]));
}

/** One organization's usage over [from, until) per calendar month ('YYYY-MM') and agent ('' for none). */
export async function sumUsageByMonthAndAgent(
  db: Executor,
  organizationId: string,
  from: string,
  until: string,
): Promise<Array<UsageTotals & { month: string; agent_id: string }>> {
  const { rows } = await sql<UsageTotals & { month: string; agent_id: string }>`select
      to_char(day, 'YYYY-MM') as month, agent_id, sum(events)::bigint as events, sum(credits)::bigint as credits,
      sum(tokens_in)::bigint as tokens_in, sum(tokens_out)::bigint as tokens_out, sum(cost)::bigint as cost
    from usage_daily where organization_id = ${organizationId} and day >= ${from}::date and day < ${until}::date
    group by 1, 2`.execute(db);
  return rows;
}

/** One organization's usage over [from, until) per day, oldest first (days without usage are absent). */
export async function sumUsageByDay(
  db: Executor,
  organizationId: string,
  from: string,
  until: string,
): Promise<Array<{ day: string; events: bigint; credits: bigint; cost: bigint }>> {
  const { rows } = await sql<{ day: string; events: bigint; credits: bigint; cost: bigint }>`select day,
      sum(events)::bigint as events, sum(credits)::bigint as credits, sum(cost)::bigint as cost
    from usage_daily where organization_id = ${organizationId} and day >= ${from}::date and day < ${until}::date
    group by day order by day`.execute(db);
  return rows;
}

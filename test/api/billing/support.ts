import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { expect } from 'vitest';
import { parseAmount } from '../../../src/lib/money.js';
import type { TestContext } from '../../harness.js';

/**
 * What the billing suites share: the requests they check billing, billing-summary and
 * analytics with, assignment histories rewritten to chosen days, and the usage roll-ups both as
 * stored and as recomputed from the ledger.
 */

export type Json = Record<string, unknown>;

/** A POST as the operator that must succeed (2xx). */
export async function post(t: TestContext, url: string, payload?: Json): Promise<LightMyRequestResponse> {
  const res = await t.call({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) });
  expect(res.statusCode, res.body).toBeLessThan(300);
  return res;
}

export const get = (t: TestContext, url: string) => t.call({ method: 'GET', url });

/** A GET as the operator that must answer 200; its body. */
export async function ok(t: TestContext, url: string) {
  const res = await get(t, url);
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.json();
}

export interface UsageResult {
  index: number;
  status: 'applied' | 'rejected';
  transaction_id: string | null;
  code: string | null;
  replayed: boolean;
}

export async function usage(
  t: TestContext,
  events: Json[],
): Promise<{ applied: number; rejected: number; results: UsageResult[] }> {
  const res = await t.call({ method: 'POST', url: '/api/usage', payload: { events } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

export interface BillingRow {
  agent_id: string | null;
  agent_name: string | null;
  days_assigned: number;
  rate: string;
  revenue: string;
  events: number;
  credits: string;
  tokens_in: number;
  tokens_out: number;
  cost: string;
}

export const billing = (t: TestContext, orgId: string, month?: string) =>
  ok(t, `/api/organizations/${orgId}/billing${month ? `?month=${month}` : ''}`) as Promise<{
    organization_id: string;
    month: string;
    currency: string;
    days_in_month: number;
    data: BillingRow[];
  }>;

export const NO_USAGE = { events: 0, credits: '0', tokens_in: 0, tokens_out: 0, cost: '0.00' };

/** The records of a month keyed by agent id ('' for usage without an agent). */
export async function billingByAgent(
  t: TestContext,
  orgId: string,
  month: string,
): Promise<Map<string, BillingRow>> {
  const { data } = await billing(t, orgId, month);
  const ids = data.map((r) => r.agent_id);
  // Agents in id order, then the unattributed row (if any) last.
  const named = ids.filter((id): id is string => id !== null);
  expect(ids).toEqual([...[...named].sort(), ...(ids.includes(null) ? [null] : [])]);
  expect(new Set(ids).size).toBe(ids.length);
  return new Map(data.map((r) => [r.agent_id ?? '', r]));
}

/**
 * Rewrites an agent's assignment history to chosen intervals (the API only stamps "now"). Callers
 * first move the agent through the API to the organization of its open interval, so that its
 * current organization agrees with the history.
 */
export async function setHistory(
  t: TestContext,
  agentId: string,
  intervals: Array<[orgId: string, from: string, to: string | null]>,
) {
  await t.db.db.deleteFrom('agent_assignments').where('agent_id', '=', agentId).execute();
  await t.db.db
    .insertInto('agent_assignments')
    .values(
      intervals.map(([organization_id, from, to]) => ({
        organization_id,
        agent_id: agentId,
        assigned_at: new Date(from),
        unassigned_at: to === null ? null : new Date(to),
      })),
    )
    .execute();
}

export function micros(text: unknown): bigint {
  const p = parseAmount(text);
  if (!p.ok) throw new Error(`not an amount: ${String(text)}`);
  return p.micros;
}

export const today = () => new Date().toISOString().slice(0, 10);
export const thisMonth = () => today().slice(0, 7);
export function daysInMonth(key: string): number {
  const [y, m] = key.split('-').map(Number) as [number, number];
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

export interface RollupRow {
  organization_id: string;
  day: string;
  agent_id: string;
  events: string;
  credits: string;
  tokens_in: string;
  tokens_out: string;
  cost: string;
}

/** Both roll-ups (daily per agent; daily per organization, agent '*'), stored and recomputed. */
export async function rollupsAndRecomputation(t: TestContext) {
  const stored = await sql<RollupRow>`select * from (
      select organization_id, to_char(day, 'YYYY-MM-DD') as day, agent_id,
        events::text as events, credits::text as credits, tokens_in::text as tokens_in,
        tokens_out::text as tokens_out, cost::text as cost
      from usage_daily
      union all
      select organization_id, to_char(day, 'YYYY-MM-DD') as day, '*' as agent_id,
        events::text, credits::text, tokens_in::text, tokens_out::text, cost::text
      from usage_org_daily) r
    order by organization_id, day, agent_id`.execute(t.db.db);
  const recomputed = await sql<RollupRow>`with usage as (
      select organization_id, created_at at time zone 'UTC' as at, coalesce(metadata->>'agent_id', '') as agent_id,
        amount, coalesce((metadata->>'tokens_in')::bigint, 0) as tokens_in,
        coalesce((metadata->>'tokens_out')::bigint, 0) as tokens_out,
        coalesce(((metadata->>'cost')::numeric * 1000000)::bigint, 0) as cost
      from ledger_transactions where type = 'usage')
    select * from (
      select organization_id, to_char(at, 'YYYY-MM-DD') as day, agent_id, count(*)::text as events,
        sum(amount)::text as credits, sum(tokens_in)::text as tokens_in, sum(tokens_out)::text as tokens_out,
        sum(cost)::text as cost
      from usage group by 1, 2, 3
      union all
      select organization_id, to_char(at, 'YYYY-MM-DD'), '*', count(*)::text, sum(amount)::text,
        sum(tokens_in)::text, sum(tokens_out)::text, sum(cost)::text
      from usage group by 1, 2) r
    order by organization_id, day, agent_id`.execute(t.db.db);
  return { stored: stored.rows, recomputed: recomputed.rows };
}

/**
 * Billing, billing summary and analytics, driven through HTTP.
 *
 * Pro-rating is checked against assignment histories rewritten in the database to chosen
 * timestamps (the API only ever stamps "now"); usage roll-ups are checked against exact sums and,
 * by a property test, against a full recomputation from the ledger's usage transactions.
 */

import fc from 'fast-check';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAmount, formatMoney, parseAmount } from '../../src/lib/money.js';
import { createTestApp, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

// ---------------------------------------------------------------------------------------------
// Helpers

let n = 0;
type Json = Record<string, unknown>;

async function org(payload: Json = {}): Promise<{ id: string; slug: string }> {
  const res = await t.call({
    method: 'POST',
    url: '/api/organizations',
    payload: { name: `Billing Org ${++n}`, ...payload },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function agent(payload: Json): Promise<{ id: string; name: string }> {
  const res = await t.call({
    method: 'POST',
    url: '/api/agents',
    payload: { name: `Bot ${++n}`, ...payload },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function post(url: string, payload?: Json): Promise<LightMyRequestResponse> {
  const res = await t.call({ method: 'POST', url, ...(payload === undefined ? {} : { payload }) });
  expect(res.statusCode, res.body).toBeLessThan(300);
  return res;
}

async function addCredits(orgId: string, amount: string) {
  await post(`/api/organizations/${orgId}/credits/add`, { amount });
}

interface UsageResult {
  index: number;
  status: 'applied' | 'rejected';
  transaction_id: string | null;
  code: string | null;
  replayed: boolean;
}

async function usage(events: Json[]): Promise<{ applied: number; rejected: number; results: UsageResult[] }> {
  const res = await t.call({ method: 'POST', url: '/api/usage', payload: { events } });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

const get = (url: string) => t.call({ method: 'GET', url });

async function ok(url: string) {
  const res = await get(url);
  expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
  return res.json();
}

interface BillingRow {
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

const billing = (orgId: string, month?: string) =>
  ok(`/api/organizations/${orgId}/billing${month ? `?month=${month}` : ''}`) as Promise<{
    organization_id: string;
    month: string;
    currency: string;
    days_in_month: number;
    data: BillingRow[];
  }>;

const NO_USAGE = { events: 0, credits: '0', tokens_in: 0, tokens_out: 0, cost: '0.00' };

/** The records of a month keyed by agent id ('' for usage without an agent). */
async function billingByAgent(orgId: string, month: string): Promise<Map<string, BillingRow>> {
  const { data } = await billing(orgId, month);
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
async function setHistory(
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

function micros(text: unknown): bigint {
  const p = parseAmount(text);
  if (!p.ok) throw new Error(`not an amount: ${String(text)}`);
  return p.micros;
}

const today = () => new Date().toISOString().slice(0, 10);
const thisMonth = () => today().slice(0, 7);
function daysInMonth(key: string): number {
  const [y, m] = key.split('-').map(Number) as [number, number];
  return new Date(Date.UTC(y, m, 0)).getUTCDate();
}

// ---------------------------------------------------------------------------------------------

describe('a new organization', () => {
  it('has empty billing, summary and analytics', async () => {
    const o = await org();
    const month = thisMonth();
    expect(await billing(o.id)).toEqual({
      organization_id: o.id,
      month,
      currency: 'USD',
      days_in_month: daysInMonth(month),
      projected: false,
      data: [],
    });
    expect(await billing(o.slug, '2026-02')).toMatchObject({ month: '2026-02', days_in_month: 28, data: [] });
    expect(await billing(o.id, '2028-02')).toMatchObject({ days_in_month: 29, data: [] });
    expect(await ok(`/api/organizations/${o.id}/billing-summary`)).toEqual({
      organization_id: o.id,
      currency: 'USD',
      data: [],
    });
    expect(await ok(`/api/organizations/${o.id}/billing-summary?from=2020-01&to=2026-12`)).toMatchObject({
      data: [],
    });
    const analytics = await ok(`/api/organizations/${o.id}/analytics`);
    const from = new Date(Date.parse(today()) - 29 * 86_400_000).toISOString().slice(0, 10);
    expect(analytics).toEqual({
      organization_id: o.id,
      from,
      to: today(),
      currency: 'USD',
      days: [],
      top_agents: [],
    });
  });
});

describe('pro-rated revenue', () => {
  it('bills each organization for the UTC days an agent belonged to it, any part of a day counting', async () => {
    const a = await org({ billing_rate_per_agent: '30.00', currency: 'EUR' });
    const b = await org({ billing_rate_per_agent: '30.00', currency: 'EUR' });
    const internal = (await ok('/api/organizations/internal')).id as string;

    // x1: A for 1–10 Sept, then B from 11 Sept at midnight: no day in both.
    const x1 = await agent({ organization_id: a.id });
    await post(`/api/agents/${x1.id}/assign-org`, { organization_id: b.id });
    await setHistory(x1.id, [
      [a.id, '2026-09-01T00:00:00Z', '2026-09-11T00:00:00Z'],
      [b.id, '2026-09-11T00:00:00Z', null],
    ]);
    // x2, with its own rate: moves at noon, so 15 and 20 Sept count in both.
    const x2 = await agent({ organization_id: a.id, billing_rate: '45.5' });
    await post(`/api/agents/${x2.id}/assign-org`, { organization_id: b.id });
    await setHistory(x2.id, [
      [a.id, '2026-09-15T12:00:00Z', '2026-09-20T12:00:00Z'],
      [b.id, '2026-09-20T12:00:00Z', null],
    ]);
    // x3: A from 20 Aug to 5 Oct (midnight, exclusive), then back to internal.
    const x3 = await agent({ organization_id: a.id });
    await post(`/api/agents/${x3.id}/unassign-org`);
    await setHistory(x3.id, [
      [a.id, '2026-08-20T00:00:00Z', '2026-10-05T00:00:00Z'],
      [internal, '2026-10-05T00:00:00Z', null],
    ]);
    // x4: deleted (through the API) on 5 Sept at 08:00: its days still bill, its name stays.
    const x4 = await agent({ organization_id: a.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${x4.id}` })).statusCode).toBe(204);
    const deleted = await t.db.db
      .selectFrom('agent_assignments')
      .selectAll()
      .where('agent_id', '=', x4.id)
      .execute();
    expect(deleted).toHaveLength(1);
    expect(deleted[0]?.unassigned_at).not.toBeNull();
    await setHistory(x4.id, [[a.id, '2026-09-01T00:00:00Z', '2026-09-05T08:00:00Z']]);
    // x5: A, a few hours in B on 5 Sept, back in A: 5 Sept counts once in A and once in B.
    const x5 = await agent({ organization_id: a.id });
    await post(`/api/agents/${x5.id}/assign-org`, { organization_id: b.id });
    await post(`/api/agents/${x5.id}/assign-org`, { organization_id: a.id });
    await setHistory(x5.id, [
      [a.id, '2026-09-03T00:00:00Z', '2026-09-05T12:00:00Z'],
      [b.id, '2026-09-05T12:00:00Z', '2026-09-05T18:00:00Z'],
      [a.id, '2026-09-05T18:00:00Z', null],
    ]);

    const row = (x: { id: string; name: string }, days: number, rate: string, revenue: string) => ({
      agent_id: x.id,
      agent_name: x.name,
      days_assigned: days,
      rate,
      revenue,
      projected: false,
      ...NO_USAGE,
    });
    const byId = (rows: BillingRow[]) =>
      [...rows].sort((p, q) => String(p.agent_id).localeCompare(String(q.agent_id)));

    const septA = await billing(a.id, '2026-09');
    expect(septA).toMatchObject({
      organization_id: a.id,
      month: '2026-09',
      currency: 'EUR',
      days_in_month: 30,
    });
    expect(byId(septA.data)).toEqual(
      byId([
        row(x1, 10, '30.00', '10.00'),
        row(x2, 6, '45.50', '9.10'), // 15..20 Sept
        row(x3, 30, '30.00', '30.00'),
        row(x4, 5, '30.00', '5.00'),
        row(x5, 28, '30.00', '28.00'), // 3..30 Sept, 5 Sept once
      ]),
    );
    const septB = await billing(b.id, '2026-09');
    expect(byId(septB.data)).toEqual(
      byId([
        row(x1, 20, '30.00', '20.00'), // 11..30 Sept
        row(x2, 11, '45.50', '16.683333'), // 20..30 Sept: 45.5 × 11 / 30 = 16.68333…
        row(x5, 1, '30.00', '1.00'),
      ]),
    );
    // August has 31 days: 20..31 Aug = 12 days, 30 × 12 / 31 = 11.6129032…
    expect((await billing(a.id, '2026-08')).data).toEqual([row(x3, 12, '30.00', '11.612903')]);
    // October: x3 for 1..4 Oct (30 × 4 / 31 = 3.8709677… rounds up), x5 all month.
    const octA = await billing(a.id, '2026-10');
    expect(octA.days_in_month).toBe(31);
    expect(byId(octA.data)).toEqual(byId([row(x3, 4, '30.00', '3.870968'), row(x5, 31, '30.00', '30.00')]));
    expect((await billing(a.id, '2026-07')).data).toEqual([]);
    // The internal organization bills x3 from 5 Oct.
    const octInternal = await billingByAgent(internal, '2026-10');
    expect(octInternal.get(x3.id)).toMatchObject({ days_assigned: 27 });

    const summaryA = await ok(`/api/organizations/${a.id}/billing-summary?from=2026-06&to=2026-10`);
    expect(summaryA).toEqual({
      organization_id: a.id,
      currency: 'EUR',
      data: [
        { month: '2026-10', revenue: '33.870968', projected: false, agents: 2, ...NO_USAGE },
        { month: '2026-09', revenue: '82.10', projected: false, agents: 5, ...NO_USAGE },
        { month: '2026-08', revenue: '11.612903', projected: false, agents: 1, ...NO_USAGE },
      ],
    });
    const summaryB = await ok(`/api/organizations/${b.id}/billing-summary?from=2026-09&to=2026-09`);
    expect(summaryB.data).toEqual([
      { month: '2026-09', revenue: '37.683333', projected: false, agents: 3, ...NO_USAGE },
    ]);
  });

  it('bills each day at the rate in force at its end: past months keep their rates', async () => {
    const c = await org({ billing_rate_per_agent: '31' });
    const a = await agent({ organization_id: c.id });
    const b = await agent({ organization_id: c.id, billing_rate: '62' });
    for (const x of [a, b]) await setHistory(x.id, [[c.id, '2026-10-01T00:00:00Z', null]]);
    // The API stamps rate changes "now"; move the history to October to replay those changes then.
    const patch = (url: string, payload: Json) => t.call({ method: 'PATCH', url, payload });
    expect((await patch(`/api/organizations/${c.id}`, { billing_rate_per_agent: '62' })).statusCode).toBe(
      200,
    );
    expect((await patch(`/api/agents/${b.id}`, { billing_rate: '93' })).statusCode).toBe(200);
    const db = t.db.db;
    await db
      .updateTable('organization_rate_history')
      .set({ changed_at: new Date('2026-01-01T00:00:00Z') })
      .where('organization_id', '=', c.id)
      .where('rate', '=', 31_000_000n)
      .execute();
    await db
      .updateTable('organization_rate_history')
      .set({ changed_at: new Date('2026-10-16T12:00:00Z') })
      .where('organization_id', '=', c.id)
      .where('rate', '=', 62_000_000n)
      .execute();
    await db
      .updateTable('agent_rate_history')
      .set({ changed_at: new Date('2026-01-01T00:00:00Z') })
      .where('agent_id', '=', b.id)
      .where('billing_rate', '=', 62_000_000n)
      .execute();
    await db
      .updateTable('agent_rate_history')
      .set({ changed_at: new Date('2026-10-21T00:00:00Z') })
      .where('agent_id', '=', b.id)
      .where('billing_rate', '=', 93_000_000n)
      .execute();

    const oct = await billingByAgent(c.id, '2026-10');
    // a has no rate of its own: days 1-15 at 31, the 16th (changed at noon) and after at 62:
    // (15 × 31 + 16 × 62) / 31 = 47.
    expect(oct.get(a.id)).toMatchObject({ days_assigned: 31, rate: '62.00', revenue: '47.00' });
    // b's own rate: 62 to the 20th, 93 from the 21st (a change at midnight belongs to the new day):
    // (20 × 62 + 11 × 93) / 31 = 73.
    expect(oct.get(b.id)).toMatchObject({ days_assigned: 31, rate: '93.00', revenue: '73.00' });
    // September, before any change: the rates of then.
    await setHistory(a.id, [[c.id, '2026-09-01T00:00:00Z', null]]);
    const sept = await billingByAgent(c.id, '2026-09');
    expect(sept.get(a.id)).toMatchObject({ days_assigned: 30, rate: '31.00', revenue: '31.00' });
  });

  it('rounds half up to the micro-unit, per agent', async () => {
    const c = await org({ billing_rate_per_agent: '10' });
    const internal = (await ok('/api/organizations/internal')).id as string;
    // 10 × 7 / 31 = 2.2580645… -> 2.258065
    const y1 = await agent({ organization_id: c.id });
    await post(`/api/agents/${y1.id}/unassign-org`);
    await setHistory(y1.id, [
      [c.id, '2026-10-10T00:00:00Z', '2026-10-17T00:00:00Z'],
      [internal, '2026-10-17T00:00:00Z', null],
    ]);
    // 0.000015 × 1 / 30 = 0.0000005: exactly half a micro-unit rounds up; one second is a day.
    const y2 = await agent({ organization_id: c.id, billing_rate: '0.000015' });
    await post(`/api/agents/${y2.id}/unassign-org`);
    await setHistory(y2.id, [
      [c.id, '2026-09-30T23:59:59Z', '2026-10-01T00:00:00Z'],
      [internal, '2026-10-01T00:00:00Z', null],
    ]);
    // 0.000014 × 1 / 30 = 0.000000466…: under half rounds down.
    const y3 = await agent({ organization_id: c.id, billing_rate: '0.000014' });
    await post(`/api/agents/${y3.id}/unassign-org`);
    await setHistory(y3.id, [
      [c.id, '2026-09-10T10:00:00Z', '2026-09-10T11:00:00Z'],
      [internal, '2026-09-10T11:00:00Z', null],
    ]);

    // Across a year end: 20..31 Dec (12 days) and 1..9 Jan (9 days), both months of 31 days.
    const y4 = await agent({ organization_id: c.id });
    await post(`/api/agents/${y4.id}/unassign-org`);
    await setHistory(y4.id, [
      [c.id, '2025-12-20T00:00:00Z', '2026-01-09T23:00:00Z'],
      [internal, '2026-01-09T23:00:00Z', null],
    ]);

    const oct = await billingByAgent(c.id, '2026-10');
    expect([...oct.keys()]).toEqual([y1.id]);
    expect(oct.get(y1.id)).toMatchObject({ days_assigned: 7, rate: '10.00', revenue: '2.258065' });
    const sept = await billingByAgent(c.id, '2026-09');
    expect(sept.get(y2.id)).toMatchObject({ days_assigned: 1, rate: '0.000015', revenue: '0.000001' });
    expect(sept.get(y3.id)).toMatchObject({ days_assigned: 1, rate: '0.000014', revenue: '0.00' });
    const summary = await ok(`/api/organizations/${c.id}/billing-summary?from=2026-09&to=2026-10`);
    expect(summary.data).toEqual([
      { month: '2026-10', revenue: '2.258065', projected: false, agents: 1, ...NO_USAGE },
      { month: '2026-09', revenue: '0.000001', projected: false, agents: 2, ...NO_USAGE },
    ]);
    const newYear = await ok(`/api/organizations/${c.id}/billing-summary?from=2025-11&to=2026-02`);
    expect(newYear.data).toEqual([
      { month: '2026-01', revenue: '2.903226', projected: false, agents: 1, ...NO_USAGE }, // 10 × 9 / 31 = 2.9032258…
      { month: '2025-12', revenue: '3.870968', projected: false, agents: 1, ...NO_USAGE }, // 10 × 12 / 31 = 3.8709677…
    ]);
  });

  it('bills an agent created and deleted today for today only (this month by default)', async () => {
    const o = await org({ billing_rate_per_agent: '31' });
    const x = await agent({ organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${x.id}` })).statusCode).toBe(204);
    const month = thisMonth();
    const dim = daysInMonth(month);
    const record = await billing(o.id);
    expect(record).toMatchObject({ month, days_in_month: dim });
    // 31 × 1 / dim, rounded half up to the micro-unit.
    const expected = (31_000_000n * 2n + BigInt(dim)) / (2n * BigInt(dim));
    expect(record.data).toEqual([
      {
        agent_id: x.id,
        agent_name: x.name,
        days_assigned: 1,
        rate: '31.00',
        revenue: formatMoney(expected),
        // Deleted: its assignment is closed, so nothing is projected.
        projected: false,
        ...NO_USAGE,
      },
    ]);
    expect((await ok(`/api/organizations/${o.id}/billing-summary`)).data).toEqual([
      { month, revenue: formatMoney(expected), projected: false, agents: 1, ...NO_USAGE },
    ]);
  });
});

describe('usage roll-ups', () => {
  it('count applied events exactly, by agent, and nothing refused or replayed', async () => {
    const o = await org();
    await addCredits(o.id, '10');
    const a1 = await agent({ organization_id: o.id });
    const a2 = await agent({ organization_id: o.id });
    const gone = await agent({ organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${gone.id}` })).statusCode).toBe(204);
    const elsewhere = await agent({ organization_id: (await org()).id });
    const batch = [
      {
        organization_id: o.id,
        agent_id: a1.id,
        credits: '1.5',
        tokens_in: 100,
        tokens_out: 20,
        cost: '0.002',
        idempotency_key: 'r1',
      },
      {
        organization_id: o.id,
        agent_id: a1.id,
        credits: '2',
        tokens_in: 5,
        cost: '0.5',
        idempotency_key: 'r2',
      },
      { organization_id: o.id, agent_id: a2.id, credits: '4.25', tokens_out: 7, idempotency_key: 'r3' },
      { organization_id: o.id, credits: '0.25', cost: '1', idempotency_key: 'r4' },
      {
        organization_id: o.id,
        agent_id: a2.id,
        credits: '1000',
        tokens_in: 9,
        cost: '9',
        idempotency_key: 'r5',
      },
      // Named agents must exist, be live and work for the organization: otherwise refused.
      {
        organization_id: o.id,
        agent_id: 'external-bot',
        credits: '0.1',
        tokens_in: 1,
        idempotency_key: 'r6',
      },
      { organization_id: o.id, agent_id: gone.id, credits: '0.1', tokens_in: 1, idempotency_key: 'r7' },
      { organization_id: o.id, agent_id: elsewhere.id, credits: '0.1', cost: '2', idempotency_key: 'r8' },
    ];
    const first = await usage(batch);
    expect(first.results.map((r) => r.code ?? r.status)).toEqual([
      'applied',
      'applied',
      'applied',
      'applied',
      'insufficient_credits',
      'not_found',
      'not_found',
      'agent_not_in_organization',
    ]);

    const month = thisMonth();
    const dim = daysInMonth(month);
    const daysLeft = dim - Number(today().slice(8, 10)) + 1;
    const expectBilling = async () => {
      const rows = await billingByAgent(o.id, month);
      // The deleted agent was assigned today: it bills its day, with no usage.
      expect([...rows.keys()].sort()).toEqual([a1.id, a2.id, gone.id, ''].sort());
      expect(rows.get(gone.id)).toEqual({
        agent_id: gone.id,
        agent_name: gone.name,
        days_assigned: 1,
        rate: '0.00',
        revenue: '0.00',
        projected: false,
        ...NO_USAGE,
      });
      expect(rows.get(a1.id)).toEqual({
        agent_id: a1.id,
        agent_name: a1.name,
        days_assigned: daysLeft,
        rate: '0.00',
        revenue: '0.00',
        // Still assigned: billed to the month's end.
        projected: true,
        events: 2,
        credits: '3.5',
        tokens_in: 105,
        tokens_out: 20,
        cost: '0.502',
      });
      expect(rows.get(a2.id)).toMatchObject({
        events: 1,
        credits: '4.25',
        tokens_in: 0,
        tokens_out: 7,
        cost: '0.00',
      });
      expect(rows.get('')).toEqual({
        agent_id: null,
        agent_name: null,
        days_assigned: 0,
        rate: '0.00',
        revenue: '0.00',
        projected: false,
        events: 1,
        credits: '0.25',
        tokens_in: 0,
        tokens_out: 0,
        cost: '1.00',
      });
      const summary = await ok(`/api/organizations/${o.id}/billing-summary?from=${month}&to=${month}`);
      expect(summary.data).toEqual([
        {
          month,
          revenue: '0.00',
          // Its agents are still assigned: this month is billed to its end.
          projected: true,
          agents: 3,
          events: 4,
          credits: '8',
          tokens_in: 105,
          tokens_out: 27,
          cost: '1.502',
        },
      ]);
      const day = today();
      const analytics = await ok(`/api/organizations/${o.id}/analytics?from=${day}&to=${day}`);
      expect(analytics).toEqual({
        organization_id: o.id,
        from: day,
        to: day,
        currency: 'USD',
        days: [{ day, events: 4, credits: '8', cost: '1.502' }],
        top_agents: [
          { agent_id: a2.id, agent_name: a2.name, events: 1, credits: '4.25' },
          { agent_id: a1.id, agent_name: a1.name, events: 2, credits: '3.5' },
        ],
      });
      const top1 = await ok(`/api/organizations/${o.id}/analytics?top=1`);
      expect(top1.top_agents).toEqual([{ agent_id: a2.id, agent_name: a2.name, events: 1, credits: '4.25' }]);
      expect(top1.days).toEqual(analytics.days);
    };
    await expectBilling();
    const stored = await t.db.db
      .selectFrom('usage_daily')
      .select(['agent_id', 'events', 'credits', 'tokens_in', 'tokens_out', 'cost'])
      .where('organization_id', '=', o.id)
      .orderBy('agent_id')
      .execute();
    expect(stored).toHaveLength(3);

    // The whole batch again: every event replays (the refusal too) and nothing is written.
    const before = await tableCounts(t.db);
    const replay = await usage(batch);
    expect(replay.results.map((r) => [r.status, r.replayed, r.transaction_id])).toEqual(
      first.results.map((r) => [r.status, true, r.transaction_id]),
    );
    expect(await tableCounts(t.db)).toEqual(before);
    await expectBilling();

    // Refusals with fresh keys (too little credit, over the spending limit) count nothing either.
    const poor = await usage([
      { organization_id: o.id, agent_id: a1.id, credits: '2.000001', tokens_in: 3, idempotency_key: 'r9' },
    ]);
    expect(poor.results.map((r) => r.code)).toEqual(['insufficient_credits']);
    const limited = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { monthly_spending_limit: '8.5' },
    });
    expect(limited.statusCode, limited.body).toBe(200);
    const capped = await usage([
      { organization_id: o.id, agent_id: a1.id, credits: '0.6', cost: '3', idempotency_key: 'r10' },
      { organization_id: o.id, credits: '0.500001', idempotency_key: 'r11' },
    ]);
    expect(capped.results.map((r) => r.code)).toEqual(['spending_limit_exceeded', 'spending_limit_exceeded']);
    await expectBilling();
    expect(
      await t.db.db
        .selectFrom('usage_daily')
        .select(['agent_id', 'events', 'credits', 'tokens_in', 'tokens_out', 'cost'])
        .where('organization_id', '=', o.id)
        .orderBy('agent_id')
        .execute(),
    ).toEqual(stored);

    // A past range has no usage.
    const past = await ok(`/api/organizations/${o.id}/analytics?from=2026-01-01&to=2026-01-31`);
    expect(past).toMatchObject({ from: '2026-01-01', to: '2026-01-31', days: [], top_agents: [] });
  });

  it('follow the agent: usage counts only in the organization it works for at the time', async () => {
    const p = await org();
    const q = await org();
    await addCredits(p.id, '5');
    await addCredits(q.id, '5');
    const mover = await agent({ organization_id: p.id });
    const before = await usage([
      { organization_id: p.id, agent_id: mover.id, credits: '1', idempotency_key: 's1' },
      { organization_id: q.id, agent_id: mover.id, credits: '2', tokens_in: 4, idempotency_key: 's1' },
    ]);
    expect(before.results.map((r) => r.code ?? r.status)).toEqual(['applied', 'agent_not_in_organization']);
    await post(`/api/agents/${mover.id}/assign-org`, { organization_id: q.id });
    const after = await usage([
      { organization_id: p.id, agent_id: mover.id, credits: '1', idempotency_key: 's2' },
      { organization_id: q.id, agent_id: mover.id, credits: '2', tokens_in: 4, idempotency_key: 's2' },
    ]);
    expect(after.results.map((r) => r.code ?? r.status)).toEqual(['agent_not_in_organization', 'applied']);
    const month = thisMonth();
    const daysLeft = daysInMonth(month) - Number(today().slice(8, 10)) + 1;
    // Moved today: today counts in both organizations.
    expect((await billingByAgent(p.id, month)).get(mover.id)).toMatchObject({
      days_assigned: 1,
      events: 1,
      credits: '1',
      tokens_in: 0,
    });
    expect((await billingByAgent(q.id, month)).get(mover.id)).toMatchObject({
      days_assigned: daysLeft,
      events: 1,
      credits: '2',
      tokens_in: 4,
    });
    const { stored, recomputed } = await rollupsAndRecomputation();
    expect(stored).toEqual(recomputed);
  });
});

describe('usage roll-ups under concurrency', () => {
  it('count each applied event once when many batches race for the same rows and credits', async () => {
    const o = await org();
    await addCredits(o.id, '30');
    const a = await agent({ organization_id: o.id });
    const batches = Array.from({ length: 25 }, (_, i) => [
      {
        organization_id: o.id,
        agent_id: a.id,
        credits: '1',
        tokens_in: 10,
        cost: '0.01',
        idempotency_key: `c${i}a`,
      },
      { organization_id: o.id, credits: '0.5', tokens_out: 3, idempotency_key: `c${i}n` },
    ]);
    // Each batch twice at once: the duplicate only ever replays.
    const responses = await Promise.all([...batches, ...batches].map((b) => usage(b)));
    const firsts = responses.slice(0, batches.length);
    const applied = { agent: 0, none: 0 };
    for (const [i, r] of firsts.entries()) {
      const twin = responses[i + batches.length] as (typeof responses)[number];
      expect(twin.results.map((x) => [x.status, x.transaction_id, x.code])).toEqual(
        r.results.map((x) => [x.status, x.transaction_id, x.code]),
      );
      if (r.results[0]?.status === 'applied') applied.agent++;
      if (r.results[1]?.status === 'applied') applied.none++;
    }
    // 30 credits: exactly as many events applied as they pay for, nothing more.
    expect(applied.agent + applied.none / 2).toBeLessThanOrEqual(30);
    expect(30 - (applied.agent + applied.none / 2)).toBeLessThan(1);
    const rows = await billingByAgent(o.id, thisMonth());
    expect(rows.get(a.id)).toMatchObject({
      events: applied.agent,
      credits: formatAmount(BigInt(applied.agent) * 1_000_000n),
      tokens_in: 10 * applied.agent,
      cost: formatMoney(BigInt(applied.agent) * 10_000n),
    });
    expect(rows.get('')).toMatchObject({
      events: applied.none,
      credits: formatAmount(BigInt(applied.none) * 500_000n),
      tokens_out: 3 * applied.none,
    });
    const { stored, recomputed } = await rollupsAndRecomputation();
    expect(stored).toEqual(recomputed);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: the roll-ups always equal a recomputation from the ledger.

interface Ev {
  org: number;
  /** 0..2: an agent; 3: none. */
  agent: number;
  credits: bigint;
  tokensIn: number | undefined;
  tokensOut: number | undefined;
  cost: bigint | undefined;
}
type Item = { kind: 'new'; ev: Ev } | { kind: 'replay'; pick: number; same: boolean };

const evArb: fc.Arbitrary<Ev> = fc.record({
  org: fc.integer({ min: 0, max: 1 }),
  agent: fc.integer({ min: 0, max: 3 }),
  credits: fc.oneof(fc.bigInt({ min: 1n, max: 2_000_000n }), fc.bigInt({ min: 1n, max: 9_999_999n })),
  tokensIn: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
  tokensOut: fc.option(fc.integer({ min: 0, max: 1_000_000 }), { nil: undefined }),
  cost: fc.option(fc.bigInt({ min: 0n, max: 50_000_000n }), { nil: undefined }),
});
const itemArb: fc.Arbitrary<Item> = fc.oneof(
  { weight: 4, arbitrary: evArb.map((ev) => ({ kind: 'new' as const, ev })) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: fc.nat(), same: fc.boolean() }),
  },
);
const runArb = fc.record({
  funds: fc.tuple(fc.bigInt({ min: 0n, max: 8_000_000n }), fc.bigInt({ min: 0n, max: 8_000_000n })),
  batches: fc.array(
    fc.record({
      /** Moves an agent to an organization before the batch. */
      move: fc.option(
        fc.record({ agent: fc.integer({ min: 0, max: 2 }), to: fc.integer({ min: 0, max: 1 }) }),
        {
          nil: undefined,
        },
      ),
      items: fc.array(itemArb, { minLength: 1, maxLength: 8 }),
    }),
    { minLength: 1, maxLength: 5 },
  ),
});

interface Totals {
  events: number;
  credits: bigint;
  tokensIn: number;
  tokensOut: number;
  cost: bigint;
}

interface RollupRow {
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
async function rollupsAndRecomputation() {
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

describe('usage roll-ups (property)', () => {
  let run = 0;

  it('equal a full recomputation from the ledger, and billing equals the model', async () => {
    await fc.assert(
      fc.asyncProperty(runArb, async ({ funds, batches }) => {
        const label = `p${++run}`;
        const orgs = [await org(), await org()];
        const ids = orgs.map((o) => o.id);
        const created = [
          await agent({ organization_id: ids[0] }),
          await agent({ organization_id: ids[0] }),
          await agent({ organization_id: ids[1] }),
        ];
        const agents = created.map((x) => x.id);
        const agentNames = new Map(created.map((x) => [x.id, x.name]));
        /** The organization (index) each agent works for. */
        const home = [0, 0, 1];
        const available = [...funds];
        for (const [i, f] of funds.entries()) if (f > 0n) await addCredits(ids[i] as string, formatAmount(f));

        /** Applied usage per organization and agent ('' for none). */
        const model = new Map<string, Totals>();
        const sent: Array<{ event: Json; org: number; result?: UsageResult }> = [];
        let keySeq = 0;

        for (const [b, { move, items }] of batches.entries()) {
          const where = `${label} batch ${b}`;
          if (move) {
            const moved = await post(`/api/agents/${agents[move.agent]}/assign-org`, {
              organization_id: ids[move.to],
            });
            expect(moved.json().organization_id, where).toBe(ids[move.to]);
            home[move.agent] = move.to;
          }
          const events: Json[] = [];
          const plans: Array<{ sentIndex: number; expect: (r: UsageResult) => void }> = [];
          for (const item of items) {
            if (item.kind === 'replay') {
              if (sent.length === 0) continue;
              const pick = item.pick % sent.length;
              const original = sent[pick] as (typeof sent)[number];
              const event = item.same
                ? original.event
                : { ...original.event, credits: formatAmount(micros(original.event.credits) + 1n) };
              events.push(event);
              plans.push({
                sentIndex: pick,
                expect: (r) => {
                  if (item.same) {
                    const first = original.result as UsageResult;
                    expect([r.status, r.code, r.transaction_id, r.replayed], where).toEqual([
                      first.status,
                      first.code,
                      first.transaction_id,
                      true,
                    ]);
                  } else {
                    expect([r.status, r.code], where).toEqual(['rejected', 'idempotency_key_reused']);
                  }
                },
              });
              continue;
            }
            const { ev } = item;
            const orgId = ids[ev.org] as string;
            const agentId = ev.agent < 3 ? (agents[ev.agent] as string) : undefined;
            const event: Json = {
              organization_id: orgId,
              credits: formatAmount(ev.credits),
              idempotency_key: `${label}-k${++keySeq}`,
            };
            if (agentId !== undefined) event.agent_id = agentId;
            if (ev.tokensIn !== undefined) event.tokens_in = ev.tokensIn;
            if (ev.tokensOut !== undefined) event.tokens_out = ev.tokensOut;
            if (ev.cost !== undefined) event.cost = formatAmount(ev.cost);
            const elsewhere = agentId !== undefined && home[ev.agent] !== ev.org;
            const applies = !elsewhere && (available[ev.org] as bigint) >= ev.credits;
            if (applies) {
              available[ev.org] = (available[ev.org] as bigint) - ev.credits;
              const k = `${orgId}|${agentId ?? ''}`;
              const m = model.get(k) ?? { events: 0, credits: 0n, tokensIn: 0, tokensOut: 0, cost: 0n };
              m.events += 1;
              m.credits += ev.credits;
              m.tokensIn += ev.tokensIn ?? 0;
              m.tokensOut += ev.tokensOut ?? 0;
              m.cost += ev.cost ?? 0n;
              model.set(k, m);
            }
            sent.push({ event, org: ev.org });
            events.push(event);
            const sentIndex = sent.length - 1;
            plans.push({
              sentIndex,
              expect: (r) => {
                expect([r.status, r.code, r.replayed], `${where} ${JSON.stringify(event)}`).toEqual(
                  applies
                    ? ['applied', null, false]
                    : ['rejected', elsewhere ? 'agent_not_in_organization' : 'insufficient_credits', false],
                );
                (sent[sentIndex] as (typeof sent)[number]).result = r;
              },
            });
          }
          if (events.length === 0) continue;
          const res = await usage(events);
          for (const [i, plan] of plans.entries()) plan.expect(res.results[i] as UsageResult);
        }

        // The roll-up table, whole, equals the GROUP BY over the ledger's usage transactions.
        const { stored, recomputed } = await rollupsAndRecomputation();
        expect(stored, label).toEqual(recomputed);

        // Billing (over every month with usage) reports exactly the model's sums.
        for (const orgId of ids) {
          const months = new Set([
            thisMonth(),
            ...stored.filter((r) => r.organization_id === orgId).map((r) => r.day.slice(0, 7)),
          ]);
          const reported = new Map<string, Totals>();
          for (const month of months)
            for (const r of (await billing(orgId, month)).data) {
              const k = `${orgId}|${r.agent_id ?? ''}`;
              const m = reported.get(k) ?? { events: 0, credits: 0n, tokensIn: 0, tokensOut: 0, cost: 0n };
              m.events += r.events;
              m.credits += micros(r.credits);
              m.tokensIn += r.tokens_in;
              m.tokensOut += r.tokens_out;
              m.cost += micros(r.cost);
              expect(r.cost, label).toMatch(/^\d+\.\d{2,6}$/);
              if (m.events > 0) reported.set(k, m);
            }
          const expected = new Map([...model].filter(([k]) => k.startsWith(`${orgId}|`)));
          expect(reported, `${label} ${orgId}`).toEqual(expected);

          // Analytics over the days with usage: the same totals, and the agents ranked by credits.
          const days = stored
            .filter((r) => r.organization_id === orgId && r.agent_id !== '*')
            .map((r) => r.day);
          if (days.length === 0) continue;
          const from = days.reduce((p, q) => (q < p ? q : p));
          const to = days.reduce((p, q) => (q > p ? q : p));
          const analytics = await ok(`/api/organizations/${orgId}/analytics?from=${from}&to=${to}&top=100`);
          const all = [...expected.values()];
          const sum = (f: (m: Totals) => bigint) => all.reduce((acc, m) => acc + f(m), 0n);
          const daysTotal = (
            analytics.days as Array<{ events: number; credits: string; cost: string }>
          ).reduce(
            (acc, d) => ({
              events: acc.events + BigInt(d.events),
              credits: acc.credits + micros(d.credits),
              cost: acc.cost + micros(d.cost),
            }),
            { events: 0n, credits: 0n, cost: 0n },
          );
          expect(daysTotal, label).toEqual({
            events: sum((m) => BigInt(m.events)),
            credits: sum((m) => m.credits),
            cost: sum((m) => m.cost),
          });
          const ranked = [...expected]
            .filter(([k]) => !k.endsWith('|'))
            .map(([k, m]) => ({ id: k.slice(orgId.length + 1), m }))
            .sort((p, q) =>
              p.m.credits === q.m.credits ? (p.id < q.id ? -1 : 1) : p.m.credits > q.m.credits ? -1 : 1,
            );
          expect(analytics.top_agents, label).toEqual(
            ranked.map(({ id, m }) => ({
              agent_id: id,
              agent_name: agentNames.get(id),
              events: m.events,
              credits: formatAmount(m.credits),
            })),
          );
        }
      }),
      { numRuns: 20 },
    );
  }, 120_000);
});

// ---------------------------------------------------------------------------------------------

describe('permissions', () => {
  async function signUp(name: string) {
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      payload: { email: `${name}-${++n}@billing.test`, password: 'long-enough-1', name },
    });
    expect(res.statusCode, res.body).toBe(200);
    return { token: String(res.headers['set-auth-token']), email: res.json().user.email as string };
  }
  const as = (token: string, opts: InjectOptions) =>
    t.app.inject({ ...opts, headers: { authorization: `Bearer ${token}` } });

  it('billing needs billing:read (owner, admin, manager); analytics needs usage:read; outsiders see nothing', async () => {
    const o = await org();
    const users: Record<string, { token: string; email: string }> = {};
    for (const role of ['owner', 'admin', 'manager', 'developer', 'agent']) {
      users[role] = await signUp(role);
      await post(`/api/organizations/${o.id}/members`, { email: users[role]?.email, role });
    }
    const outsider = await signUp('outsider');
    // An API key sees its own organization only.
    const other = await org();
    const key = (
      await post(`/api/organizations/${other.id}/api-keys`, { name: 'reader', scopes: ['read'] })
    ).json().key as string;

    const paths = {
      billing: `/api/organizations/${o.id}/billing`,
      summary: `/api/organizations/${o.id}/billing-summary`,
      analytics: `/api/organizations/${o.id}/analytics`,
    };
    const expected: Record<string, [number, number, number]> = {
      owner: [200, 200, 200],
      admin: [200, 200, 200],
      manager: [200, 200, 200],
      developer: [403, 403, 200],
      agent: [403, 403, 403],
    };
    const before = await tableCounts(t.db);
    for (const [role, statuses] of Object.entries(expected)) {
      const token = users[role]?.token as string;
      const got = [];
      for (const url of Object.values(paths)) {
        const res = await as(token, { method: 'GET', url });
        got.push(res.statusCode);
        if (res.statusCode === 403) expect(res.json().code).toBe('forbidden');
      }
      expect(got, role).toEqual(statuses);
    }
    for (const url of Object.values(paths)) {
      const hidden = await as(outsider.token, { method: 'GET', url });
      expect(hidden.statusCode).toBe(404);
      expect(hidden.json().code).toBe('not_found');
      const apiKey = await as(key, { method: 'GET', url });
      expect(apiKey.statusCode).toBe(404);
      expect(apiKey.json().code).toBe('not_found');
      const anonymous = await t.app.inject({ method: 'GET', url });
      expect(anonymous.statusCode).toBe(401);
      expect(anonymous.json().code).toBe('unauthenticated');
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('bad queries', () => {
  it.each([
    ['billing?month=2026-13', 'month'],
    ['billing?month=2026-00', 'month'],
    ['billing?month=2026-1', 'month'],
    ['billing?month=november', 'month'],
    ['billing?colour=red', 'colour'],
    ['billing-summary?from=2026-05&to=2026-04', 'from'],
    ['billing-summary?from=garbage', 'from'],
    ['billing-summary?to=2026-13', 'to'],
    ['billing-summary?from=2010-01&to=2026-12', 'from'],
    ['analytics?from=garbage', 'from'],
    ['analytics?to=2026-02-30', 'to'],
    ['analytics?from=2026-05-02&to=2026-05-01', 'from'],
    ['analytics?from=2025-01-01&to=2026-06-01', 'from'],
    ['analytics?top=0', 'top'],
    ['analytics?top=101', 'top'],
    ['analytics?top=two', 'top'],
  ])('?%s answers 400 naming %s, writing nothing', async (query, field) => {
    const o = await org();
    const before = await tableCounts(t.db);
    const res = await get(`/api/organizations/${o.id}/${query}`);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().code).toBe('validation_failed');
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('answers 404 for an unknown organization', async () => {
    for (const path of ['billing', 'billing-summary', 'analytics']) {
      const res = await get(`/api/organizations/no-such-org/${path}`);
      expect(res.statusCode).toBe(404);
      expect(res.json().code).toBe('not_found');
    }
  });

  it('accepts the 120-month and 366-day limits exactly', async () => {
    const o = await org();
    expect((await get(`/api/organizations/${o.id}/billing-summary?from=2017-01&to=2026-12`)).statusCode).toBe(
      200,
    );
    expect((await get(`/api/organizations/${o.id}/analytics?from=2025-06-01&to=2026-06-02`)).statusCode).toBe(
      200,
    );
  });

  // The month pattern accepts years 0000–0099; Date.UTC maps those to 1900–1999.
  it('BUG: billing-summary spanning 0099-12..0100-01 answers 500 instead of 200 or 400', async () => {
    const o = await org();
    const res = await get(`/api/organizations/${o.id}/billing-summary?from=0099-12&to=0100-01`);
    expect(res.statusCode, res.body).toBeLessThan(500);
    if (res.statusCode === 200) expect(res.json().data).toEqual([]);
    else expect(res.json().errors[0].field).toBe('from');
  });

  it('BUG: billing for month 0050-02 reports the agents of February 1950', async () => {
    const o = await org({ billing_rate_per_agent: '28' });
    const x = await agent({ organization_id: o.id });
    await setHistory(x.id, [[o.id, '1950-02-01T00:00:00Z', null]]);
    const res = await get(`/api/organizations/${o.id}/billing?month=0050-02`);
    if (res.statusCode === 400) {
      expect(res.json().errors[0].field).toBe('month');
      return;
    }
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ month: '0050-02', data: [] });
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatMoney } from '../../../src/lib/money.js';
import { createAgent, createOrg } from '../../factories.js';
import { createTestApp, type TestContext } from '../../harness.js';
import {
  type BillingRow,
  billing,
  billingByAgent,
  daysInMonth,
  type Json,
  NO_USAGE,
  ok,
  post,
  setHistory,
  thisMonth,
  today,
} from './support.js';

/**
 * Billing, driven through HTTP: a new organization's empty billing, summary and analytics, and
 * pro-rated revenue, checked against assignment histories rewritten in the database to chosen
 * timestamps (the API only ever stamps "now").
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('a new organization', () => {
  it('has empty billing, summary and analytics', async () => {
    const o = await createOrg(t);
    const month = thisMonth();
    expect(await billing(t, o.id)).toEqual({
      organization_id: o.id,
      month,
      currency: 'USD',
      days_in_month: daysInMonth(month),
      projected: false,
      data: [],
    });
    expect(await billing(t, o.slug, '2026-02')).toMatchObject({
      month: '2026-02',
      days_in_month: 28,
      data: [],
    });
    expect(await billing(t, o.id, '2028-02')).toMatchObject({ days_in_month: 29, data: [] });
    expect(await ok(t, `/api/organizations/${o.id}/billing-summary`)).toEqual({
      organization_id: o.id,
      currency: 'USD',
      data: [],
    });
    expect(await ok(t, `/api/organizations/${o.id}/billing-summary?from=2020-01&to=2026-12`)).toMatchObject({
      data: [],
    });
    const analytics = await ok(t, `/api/organizations/${o.id}/analytics`);
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
    const a = await createOrg(t, { billing_rate_per_agent: '30.00', currency: 'EUR' });
    const b = await createOrg(t, { billing_rate_per_agent: '30.00', currency: 'EUR' });
    const internal = (await ok(t, '/api/organizations/internal')).id as string;

    // x1: A for 1–10 Sept, then B from 11 Sept at midnight: no day in both.
    const x1 = await createAgent(t, { organization_id: a.id });
    await post(t, `/api/agents/${x1.id}/assign-org`, { organization_id: b.id });
    await setHistory(t, x1.id, [
      [a.id, '2026-09-01T00:00:00Z', '2026-09-11T00:00:00Z'],
      [b.id, '2026-09-11T00:00:00Z', null],
    ]);
    // x2, with its own rate: moves at noon, so 15 and 20 Sept count in both.
    const x2 = await createAgent(t, { organization_id: a.id, billing_rate: '45.5' });
    await post(t, `/api/agents/${x2.id}/assign-org`, { organization_id: b.id });
    await setHistory(t, x2.id, [
      [a.id, '2026-09-15T12:00:00Z', '2026-09-20T12:00:00Z'],
      [b.id, '2026-09-20T12:00:00Z', null],
    ]);
    // x3: A from 20 Aug to 5 Oct (midnight, exclusive), then back to internal.
    const x3 = await createAgent(t, { organization_id: a.id });
    await post(t, `/api/agents/${x3.id}/unassign-org`);
    await setHistory(t, x3.id, [
      [a.id, '2026-08-20T00:00:00Z', '2026-10-05T00:00:00Z'],
      [internal, '2026-10-05T00:00:00Z', null],
    ]);
    // x4: deleted (through the API) on 5 Sept at 08:00: its days still bill, its name stays.
    const x4 = await createAgent(t, { organization_id: a.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${x4.id}` })).statusCode).toBe(204);
    const deleted = await t.db.db
      .selectFrom('agent_assignments')
      .selectAll()
      .where('agent_id', '=', x4.id)
      .execute();
    expect(deleted).toHaveLength(1);
    expect(deleted[0]?.unassigned_at).not.toBeNull();
    await setHistory(t, x4.id, [[a.id, '2026-09-01T00:00:00Z', '2026-09-05T08:00:00Z']]);
    // x5: A, a few hours in B on 5 Sept, back in A: 5 Sept counts once in A and once in B.
    const x5 = await createAgent(t, { organization_id: a.id });
    await post(t, `/api/agents/${x5.id}/assign-org`, { organization_id: b.id });
    await post(t, `/api/agents/${x5.id}/assign-org`, { organization_id: a.id });
    await setHistory(t, x5.id, [
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

    const septA = await billing(t, a.id, '2026-09');
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
    const septB = await billing(t, b.id, '2026-09');
    expect(byId(septB.data)).toEqual(
      byId([
        row(x1, 20, '30.00', '20.00'), // 11..30 Sept
        row(x2, 11, '45.50', '16.683333'), // 20..30 Sept: 45.5 × 11 / 30 = 16.68333…
        row(x5, 1, '30.00', '1.00'),
      ]),
    );
    // August has 31 days: 20..31 Aug = 12 days, 30 × 12 / 31 = 11.6129032…
    expect((await billing(t, a.id, '2026-08')).data).toEqual([row(x3, 12, '30.00', '11.612903')]);
    // October: x3 for 1..4 Oct (30 × 4 / 31 = 3.8709677… rounds up), x5 all month.
    const octA = await billing(t, a.id, '2026-10');
    expect(octA.days_in_month).toBe(31);
    expect(byId(octA.data)).toEqual(byId([row(x3, 4, '30.00', '3.870968'), row(x5, 31, '30.00', '30.00')]));
    expect((await billing(t, a.id, '2026-07')).data).toEqual([]);
    // The internal organization bills x3 from 5 Oct.
    const octInternal = await billingByAgent(t, internal, '2026-10');
    expect(octInternal.get(x3.id)).toMatchObject({ days_assigned: 27 });

    const summaryA = await ok(t, `/api/organizations/${a.id}/billing-summary?from=2026-06&to=2026-10`);
    expect(summaryA).toEqual({
      organization_id: a.id,
      currency: 'EUR',
      data: [
        { month: '2026-10', revenue: '33.870968', projected: false, agents: 2, ...NO_USAGE },
        { month: '2026-09', revenue: '82.10', projected: false, agents: 5, ...NO_USAGE },
        { month: '2026-08', revenue: '11.612903', projected: false, agents: 1, ...NO_USAGE },
      ],
    });
    const summaryB = await ok(t, `/api/organizations/${b.id}/billing-summary?from=2026-09&to=2026-09`);
    expect(summaryB.data).toEqual([
      { month: '2026-09', revenue: '37.683333', projected: false, agents: 3, ...NO_USAGE },
    ]);
  });

  it('bills each day at the rate in force at its end: past months keep their rates', async () => {
    const c = await createOrg(t, { billing_rate_per_agent: '31' });
    const a = await createAgent(t, { organization_id: c.id });
    const b = await createAgent(t, { organization_id: c.id, billing_rate: '62' });
    for (const x of [a, b]) await setHistory(t, x.id, [[c.id, '2026-10-01T00:00:00Z', null]]);
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

    const oct = await billingByAgent(t, c.id, '2026-10');
    // a has no rate of its own: days 1-15 at 31, the 16th (changed at noon) and after at 62:
    // (15 × 31 + 16 × 62) / 31 = 47.
    expect(oct.get(a.id)).toMatchObject({ days_assigned: 31, rate: '62.00', revenue: '47.00' });
    // b's own rate: 62 to the 20th, 93 from the 21st (a change at midnight belongs to the new day):
    // (20 × 62 + 11 × 93) / 31 = 73.
    expect(oct.get(b.id)).toMatchObject({ days_assigned: 31, rate: '93.00', revenue: '73.00' });
    // September, before any change: the rates of then.
    await setHistory(t, a.id, [[c.id, '2026-09-01T00:00:00Z', null]]);
    const sept = await billingByAgent(t, c.id, '2026-09');
    expect(sept.get(a.id)).toMatchObject({ days_assigned: 30, rate: '31.00', revenue: '31.00' });
  });

  it('rounds half up to the micro-unit, per agent', async () => {
    const c = await createOrg(t, { billing_rate_per_agent: '10' });
    const internal = (await ok(t, '/api/organizations/internal')).id as string;
    // 10 × 7 / 31 = 2.2580645… -> 2.258065
    const y1 = await createAgent(t, { organization_id: c.id });
    await post(t, `/api/agents/${y1.id}/unassign-org`);
    await setHistory(t, y1.id, [
      [c.id, '2026-10-10T00:00:00Z', '2026-10-17T00:00:00Z'],
      [internal, '2026-10-17T00:00:00Z', null],
    ]);
    // 0.000015 × 1 / 30 = 0.0000005: exactly half a micro-unit rounds up; one second is a day.
    const y2 = await createAgent(t, { organization_id: c.id, billing_rate: '0.000015' });
    await post(t, `/api/agents/${y2.id}/unassign-org`);
    await setHistory(t, y2.id, [
      [c.id, '2026-09-30T23:59:59Z', '2026-10-01T00:00:00Z'],
      [internal, '2026-10-01T00:00:00Z', null],
    ]);
    // 0.000014 × 1 / 30 = 0.000000466…: under half rounds down.
    const y3 = await createAgent(t, { organization_id: c.id, billing_rate: '0.000014' });
    await post(t, `/api/agents/${y3.id}/unassign-org`);
    await setHistory(t, y3.id, [
      [c.id, '2026-09-10T10:00:00Z', '2026-09-10T11:00:00Z'],
      [internal, '2026-09-10T11:00:00Z', null],
    ]);

    // Across a year end: 20..31 Dec (12 days) and 1..9 Jan (9 days), both months of 31 days.
    const y4 = await createAgent(t, { organization_id: c.id });
    await post(t, `/api/agents/${y4.id}/unassign-org`);
    await setHistory(t, y4.id, [
      [c.id, '2025-12-20T00:00:00Z', '2026-01-09T23:00:00Z'],
      [internal, '2026-01-09T23:00:00Z', null],
    ]);

    const oct = await billingByAgent(t, c.id, '2026-10');
    expect([...oct.keys()]).toEqual([y1.id]);
    expect(oct.get(y1.id)).toMatchObject({ days_assigned: 7, rate: '10.00', revenue: '2.258065' });
    const sept = await billingByAgent(t, c.id, '2026-09');
    expect(sept.get(y2.id)).toMatchObject({ days_assigned: 1, rate: '0.000015', revenue: '0.000001' });
    expect(sept.get(y3.id)).toMatchObject({ days_assigned: 1, rate: '0.000014', revenue: '0.00' });
    const summary = await ok(t, `/api/organizations/${c.id}/billing-summary?from=2026-09&to=2026-10`);
    expect(summary.data).toEqual([
      { month: '2026-10', revenue: '2.258065', projected: false, agents: 1, ...NO_USAGE },
      { month: '2026-09', revenue: '0.000001', projected: false, agents: 2, ...NO_USAGE },
    ]);
    const newYear = await ok(t, `/api/organizations/${c.id}/billing-summary?from=2025-11&to=2026-02`);
    expect(newYear.data).toEqual([
      { month: '2026-01', revenue: '2.903226', projected: false, agents: 1, ...NO_USAGE }, // 10 × 9 / 31 = 2.9032258…
      { month: '2025-12', revenue: '3.870968', projected: false, agents: 1, ...NO_USAGE }, // 10 × 12 / 31 = 3.8709677…
    ]);
  });

  it('bills an agent created and deleted today for today only (this month by default)', async () => {
    const o = await createOrg(t, { billing_rate_per_agent: '31' });
    const x = await createAgent(t, { organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${x.id}` })).statusCode).toBe(204);
    const month = thisMonth();
    const dim = daysInMonth(month);
    const record = await billing(t, o.id);
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
    expect((await ok(t, `/api/organizations/${o.id}/billing-summary`)).data).toEqual([
      { month, revenue: formatMoney(expected), projected: false, agents: 1, ...NO_USAGE },
    ]);
  });
});

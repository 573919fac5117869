import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatAmount, formatMoney } from '../../../src/lib/money.js';
import { addCredits, createAgent, createOrg } from '../../factories.js';
import { createTestApp, type TestContext, tableCounts } from '../../harness.js';
import {
  billingByAgent,
  daysInMonth,
  NO_USAGE,
  ok,
  post,
  rollupsAndRecomputation,
  thisMonth,
  today,
  usage,
} from './support.js';

/**
 * Usage roll-ups in billing, billing summary and analytics: exact sums by agent, nothing refused
 * or replayed counted, usage following the agent, and batches racing for the same rows.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('usage roll-ups', () => {
  it('count applied events exactly, by agent, and nothing refused or replayed', async () => {
    const o = await createOrg(t);
    await addCredits(t, o.id, '10');
    const a1 = await createAgent(t, { organization_id: o.id });
    const a2 = await createAgent(t, { organization_id: o.id });
    const gone = await createAgent(t, { organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${gone.id}` })).statusCode).toBe(204);
    const elsewhere = await createAgent(t, { organization_id: (await createOrg(t)).id });
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
    const first = await usage(t, batch);
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
      const rows = await billingByAgent(t, o.id, month);
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
      const summary = await ok(t, `/api/organizations/${o.id}/billing-summary?from=${month}&to=${month}`);
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
      const analytics = await ok(t, `/api/organizations/${o.id}/analytics?from=${day}&to=${day}`);
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
      const top1 = await ok(t, `/api/organizations/${o.id}/analytics?top=1`);
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
    const replay = await usage(t, batch);
    expect(replay.results.map((r) => [r.status, r.replayed, r.transaction_id])).toEqual(
      first.results.map((r) => [r.status, true, r.transaction_id]),
    );
    expect(await tableCounts(t.db)).toEqual(before);
    await expectBilling();

    // Refusals with fresh keys (too little credit, over the spending limit) count nothing either.
    const poor = await usage(t, [
      { organization_id: o.id, agent_id: a1.id, credits: '2.000001', tokens_in: 3, idempotency_key: 'r9' },
    ]);
    expect(poor.results.map((r) => r.code)).toEqual(['insufficient_credits']);
    const limited = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { monthly_spending_limit: '8.5' },
    });
    expect(limited.statusCode, limited.body).toBe(200);
    const capped = await usage(t, [
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
    const past = await ok(t, `/api/organizations/${o.id}/analytics?from=2026-01-01&to=2026-01-31`);
    expect(past).toMatchObject({ from: '2026-01-01', to: '2026-01-31', days: [], top_agents: [] });
  });

  it('follow the agent: usage counts only in the organization it works for at the time', async () => {
    const p = await createOrg(t);
    const q = await createOrg(t);
    await addCredits(t, p.id, '5');
    await addCredits(t, q.id, '5');
    const mover = await createAgent(t, { organization_id: p.id });
    const before = await usage(t, [
      { organization_id: p.id, agent_id: mover.id, credits: '1', idempotency_key: 's1' },
      { organization_id: q.id, agent_id: mover.id, credits: '2', tokens_in: 4, idempotency_key: 's1' },
    ]);
    expect(before.results.map((r) => r.code ?? r.status)).toEqual(['applied', 'agent_not_in_organization']);
    await post(t, `/api/agents/${mover.id}/assign-org`, { organization_id: q.id });
    const after = await usage(t, [
      { organization_id: p.id, agent_id: mover.id, credits: '1', idempotency_key: 's2' },
      { organization_id: q.id, agent_id: mover.id, credits: '2', tokens_in: 4, idempotency_key: 's2' },
    ]);
    expect(after.results.map((r) => r.code ?? r.status)).toEqual(['agent_not_in_organization', 'applied']);
    const month = thisMonth();
    const daysLeft = daysInMonth(month) - Number(today().slice(8, 10)) + 1;
    // Moved today: today counts in both organizations.
    expect((await billingByAgent(t, p.id, month)).get(mover.id)).toMatchObject({
      days_assigned: 1,
      events: 1,
      credits: '1',
      tokens_in: 0,
    });
    expect((await billingByAgent(t, q.id, month)).get(mover.id)).toMatchObject({
      days_assigned: daysLeft,
      events: 1,
      credits: '2',
      tokens_in: 4,
    });
    const { stored, recomputed } = await rollupsAndRecomputation(t);
    expect(stored).toEqual(recomputed);
  });
});

describe('usage roll-ups under concurrency', () => {
  it('count each applied event once when many batches race for the same rows and credits', async () => {
    const o = await createOrg(t);
    await addCredits(t, o.id, '30');
    const a = await createAgent(t, { organization_id: o.id });
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
    const responses = await Promise.all([...batches, ...batches].map((b) => usage(t, b)));
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
    const rows = await billingByAgent(t, o.id, thisMonth());
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
    const { stored, recomputed } = await rollupsAndRecomputation(t);
    expect(stored).toEqual(recomputed);
  });
});

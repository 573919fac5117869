import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

it('sums the platform’s month per currency, pro-rated like each organization’s billing', async () => {
  const usd = (
    await t.call({
      method: 'POST',
      url: '/api/organizations',
      payload: { name: 'Dollar Co', billing_rate_per_agent: '31.00' },
    })
  ).json();
  const eur = (
    await t.call({
      method: 'POST',
      url: '/api/organizations',
      payload: { name: 'Euro Co', billing_rate_per_agent: '62', currency: 'EUR' },
    })
  ).json();
  const a = (
    await t.call({ method: 'POST', url: '/api/agents', payload: { name: 'A', organization_id: usd.id } })
  ).json();
  const b = (
    await t.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'B', organization_id: eur.id, billing_rate: '3.1' },
    })
  ).json();
  // October 2026 (31 days): A all month, B for 10 days (1st to 10th).
  await t.db.db
    .updateTable('agent_assignments')
    .set({ assigned_at: new Date('2026-10-01T00:00:00Z') })
    .where('agent_id', '=', a.id)
    .execute();
  await t.db.db
    .updateTable('agent_assignments')
    .set({ assigned_at: new Date('2026-10-01T00:00:00Z'), unassigned_at: new Date('2026-10-10T12:00:00Z') })
    .where('agent_id', '=', b.id)
    .execute();
  await t.db.db
    .insertInto('usage_daily')
    .values([
      {
        organization_id: usd.id,
        day: '2026-10-05',
        agent_id: a.id,
        events: 3n,
        credits: 1_500_000n,
        tokens_in: 10n,
        tokens_out: 20n,
        cost: 250_000n,
      },
      {
        organization_id: eur.id,
        day: '2026-10-06',
        agent_id: '',
        events: 1n,
        credits: 500_000n,
        tokens_in: 1n,
        tokens_out: 2n,
        cost: 10_000n,
      },
    ])
    .execute();
  // The per-organization roll-up the ledger keeps beside the per-agent one (the summary reads it).
  await t.db.db
    .insertInto('usage_org_daily')
    .values([
      {
        organization_id: usd.id,
        day: '2026-10-05',
        events: 3n,
        credits: 1_500_000n,
        tokens_in: 10n,
        tokens_out: 20n,
        cost: 250_000n,
      },
      {
        organization_id: eur.id,
        day: '2026-10-06',
        events: 1n,
        credits: 500_000n,
        tokens_in: 1n,
        tokens_out: 2n,
        cost: 10_000n,
      },
    ])
    .execute();
  const res = await t.call({ method: 'GET', url: '/api/billing-summary?month=2026-10' });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json()).toEqual({
    month: '2026-10',
    organizations: 2,
    projected: false,
    events: 4,
    credits: '2',
    tokens_in: 11,
    tokens_out: 22,
    by_currency: [
      { currency: 'EUR', revenue: '1.00', cost: '0.01' },
      { currency: 'USD', revenue: '31.00', cost: '0.25' },
    ],
  });
  const perOrg = (
    await t.call({ method: 'GET', url: `/api/organizations/${eur.id}/billing?month=2026-10` })
  ).json();
  expect(perOrg.data.find((r: { agent_id: string | null }) => r.agent_id === b.id)).toMatchObject({
    days_assigned: 10,
    rate: '3.10',
    revenue: '1.00',
  });
  expect((await t.call({ method: 'GET', url: '/api/billing-summary?month=2026-13' })).statusCode).toBe(400);
});

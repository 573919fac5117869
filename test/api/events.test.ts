import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DomainEvent } from '../../src/lib/events.js';
import { formatAmount, nonNegativeAmount } from '../../src/lib/money.js';
import { AppError } from '../../src/lib/problem.js';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
const seen: DomainEvent[] = [];
let refuse: string | undefined;

beforeAll(async () => {
  t = await createTestApp();
  t.app.events.subscribeAll(async (_tx, event) => {
    seen.push(event);
    if (event.type === refuse) throw new AppError('validation_failed', 'refused by the test');
  });
});
afterAll(() => t.close());

async function createOrg(name: string) {
  return t.call({ method: 'POST', url: '/api/organizations', payload: { name } });
}

describe('domain events', () => {
  it('are published by the owning service, in causal order', async () => {
    seen.length = 0;
    const res = await createOrg('Events Co');
    expect(res.statusCode, res.body).toBe(201);
    const id = res.json().id;
    expect(seen).toEqual([
      { type: 'organization.created', organization_id: id, parent_id: null },
      { type: 'subscription.changed', organization_id: id, from: null, to: 'free' },
    ]);
    seen.length = 0;
    await t.call({ method: 'PATCH', url: `/api/organizations/${id}`, payload: { name: 'Events Inc' } });
    await t.call({ method: 'POST', url: `/api/organizations/${id}/toggle` });
    expect(seen).toEqual([
      { type: 'organization.updated', organization_id: id, fields: ['name'] },
      { type: 'organization.toggled', organization_id: id, active: false },
    ]);
  });

  it('run inside the change: a handler that throws rolls the whole change back', async () => {
    refuse = 'organization.created';
    const before = (await t.call({ method: 'GET', url: '/api/organizations?limit=100' })).json().data.length;
    const res = await createOrg('Never Co');
    refuse = undefined;
    expect(res.statusCode, res.body).toBe(400);
    const after = (await t.call({ method: 'GET', url: '/api/organizations?limit=100' })).json().data;
    expect(after.length).toBe(before);
    expect(after.some((o: { name: string }) => o.name === 'Never Co')).toBe(false);
    // The account, subscription and membership the reacting modules wrote went with it.
    const again = await createOrg('Never Co');
    expect(again.statusCode, again.body).toBe(201);
    expect(again.json().slug).toBe('never-co');
  });

  it('are not published for a refused change', async () => {
    const res = await createOrg('Agents Co');
    const id = res.json().id;
    const agent = await t.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'A', organization_id: id },
    });
    expect(agent.statusCode, agent.body).toBe(201);
    seen.length = 0;
    const del = await t.call({ method: 'DELETE', url: `/api/organizations/${id}` });
    expect(del.statusCode).toBe(409);
    expect(seen).toEqual([]);
    await t.call({ method: 'DELETE', url: `/api/agents/${agent.json().id}` });
    expect(seen).toEqual([{ type: 'agent.deleted', organization_id: id, agent_id: agent.json().id }]);
  });

  it('from the ledger: one per credit move, one usage.recorded per organization and batch', async () => {
    const id = (await createOrg('Ledger Events')).json().id;
    seen.length = 0;
    const add = await t.call({
      method: 'POST',
      url: `/api/organizations/${id}/credits/add`,
      payload: { amount: '10.5', description: 'grant' },
    });
    expect(add.statusCode, add.body).toBe(201);
    const usage = await t.call({
      method: 'POST',
      url: '/api/usage',
      payload: {
        events: Array.from({ length: 50 }, (_, i) => ({
          organization_id: id,
          credits: '0.01',
          idempotency_key: `ev-${i}`,
        })),
      },
    });
    expect(usage.statusCode, usage.body).toBe(200);
    expect(seen[0]).toEqual({
      type: 'credits.added',
      organization_id: id,
      transaction_id: add.json().id,
      amount: '10.5',
    });
    // The events ride in a few group-committed batches (an idle lane runs the first at once):
    // one usage.recorded per batch, adding up to what was recorded.
    const recorded = seen.slice(1) as Array<DomainEvent<'usage.recorded'>>;
    expect(recorded.every((e) => e.type === 'usage.recorded' && e.organization_id === id)).toBe(true);
    expect(recorded.length).toBeLessThan(10);
    expect(recorded.reduce((n, e) => n + e.events, 0)).toBe(50);
    expect(formatAmount(recorded.reduce((n, e) => n + nonNegativeAmount('amount', e.amount), 0n))).toBe(
      '0.5',
    );
  });
});

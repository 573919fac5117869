import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  as,
  createAgent,
  createOrg,
  createSubOrg,
  nextSeq,
  readAuditLog,
  readBalance,
  signUp,
  type User,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../../harness.js';
import { createSub, deduct, subsUrl } from './support.js';

/**
 * Money in a tree: usage summed over the tree, the spending limit a parent sets on a child,
 * credits moved down by transfer, and the plan a parent chooses for a child.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');

async function usage(events: Array<Record<string, unknown>>) {
  const res = await t.call({
    method: 'POST',
    url: '/api/usage',
    payload: { events: events.map((e) => ({ idempotency_key: `sub-usage-${run}-${nextSeq()}`, ...e })) },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().results as Array<{ status: string; code?: string }>;
}

/** Exact decimal credits as integer micro-units. */
function micros(s: string): bigint {
  const negative = s.startsWith('-');
  const [whole = '0', frac = ''] = s.replace('-', '').split('.');
  const v = BigInt(whole) * 1_000_000n + BigInt(frac.padEnd(6, '0') || '0');
  return negative ? -v : v;
}

function day(offsetDays: number): string {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

describe('tree usage', () => {
  it('sums each organization of the tree, with zeros for the idle and spend per currency', async () => {
    const top = await createOrg(t, { plan: 'business' });
    const c1 = await createSubOrg(t, top.id, { name: `Usage USD ${run}` });
    const c2 = await createSubOrg(t, top.id, { name: `Usage EUR ${run}`, currency: 'EUR' });
    const idle = await createSubOrg(t, top.id, { name: `Usage idle ${run}` });
    const g = await createSubOrg(t, c1.id, { name: `Usage grandchild ${run}` });
    for (const o of [top, c1, c2, g]) await addCredits(t, o.id, '100');
    const agent = await createAgent(t, { name: 'Counter', organization_id: g.id });

    const results = await usage([
      { organization_id: top.id, credits: '1.5', cost: '0.5', tokens_in: 100, tokens_out: 50 },
      { organization_id: c1.id, credits: '2', cost: '1', tokens_in: 10, tokens_out: 20 },
      { organization_id: c1.id, credits: '0.25', cost: '0.1' },
      { organization_id: c2.id, credits: '3', cost: '2', tokens_in: 7, tokens_out: 0 },
      { organization_id: g.id, agent_id: agent.id, credits: '4', cost: '0.75', tokens_out: 1000 },
      { organization_id: g.id, credits: '0.000001' },
      // Refused (no credits): counts nowhere.
      { organization_id: idle.id, credits: '1', cost: '1' },
    ]);
    expect(results.map((r) => r.status)).toEqual([
      'applied',
      'applied',
      'applied',
      'applied',
      'applied',
      'applied',
      'rejected',
    ]);

    const res = await t.call({ method: 'GET', url: `${subsUrl(top.id)}/usage?from=${day(-1)}&to=${day(1)}` });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ organization_id: top.id, from: day(-1), to: day(1), organization_count: 5 });
    const rows = Object.fromEntries(
      (body.organizations as Array<{ organization_id: string }>).map((r) => [r.organization_id, r]),
    );
    expect(rows[top.id]).toMatchObject({
      depth: 0,
      parent_id: null,
      currency: 'USD',
      events: 1,
      credits: '1.5',
      tokens_in: 100,
      tokens_out: 50,
      spend: '0.5',
    });
    expect(rows[c1.id]).toMatchObject({
      depth: 1,
      parent_id: top.id,
      events: 2,
      credits: '2.25',
      spend: '1.1',
    });
    expect(rows[c2.id]).toMatchObject({ depth: 1, currency: 'EUR', events: 1, credits: '3', spend: '2' });
    expect(rows[g.id]).toMatchObject({
      depth: 2,
      parent_id: c1.id,
      name: g.name,
      events: 2,
      credits: '4.000001',
      tokens_in: 0,
      tokens_out: 1000,
      spend: '0.75',
    });
    expect(rows[idle.id]).toMatchObject({
      depth: 1,
      name: idle.name,
      events: 0,
      credits: '0',
      tokens_in: 0,
      tokens_out: 0,
      spend: '0',
    });

    // The totals are the sum of the rows; spend is kept apart per currency.
    const list = body.organizations as Array<{
      events: number;
      credits: string;
      tokens_in: number;
      tokens_out: number;
      spend: string;
      currency: string;
    }>;
    expect(body.total.events).toBe(list.reduce((s, r) => s + r.events, 0));
    expect(body.total.tokens_in).toBe(list.reduce((s, r) => s + r.tokens_in, 0));
    expect(body.total.tokens_out).toBe(list.reduce((s, r) => s + r.tokens_out, 0));
    expect(micros(body.total.credits)).toBe(list.reduce((s, r) => s + micros(r.credits), 0n));
    expect(body.total).toEqual({
      events: 6,
      credits: '10.750001',
      tokens_in: 117,
      tokens_out: 1070,
      spend: { USD: '2.35', EUR: '2' },
    });

    // A subtree counts only itself.
    const subtree = (
      await t.call({ method: 'GET', url: `${subsUrl(c1.id)}/usage?from=${day(-1)}&to=${day(1)}` })
    ).json();
    expect(subtree.organization_count).toBe(2);
    expect(subtree.total).toMatchObject({ events: 4, credits: '6.250001', spend: { USD: '1.85' } });
    expect(subtree.organizations[0]).toMatchObject({ organization_id: c1.id, depth: 0, parent_id: top.id });

    // Days without usage: every organization, all zeros.
    const past = (
      await t.call({ method: 'GET', url: `${subsUrl(top.id)}/usage?from=2020-01-01&to=2020-01-31` })
    ).json();
    expect(past.organization_count).toBe(5);
    expect(past.total).toEqual({
      events: 0,
      credits: '0',
      tokens_in: 0,
      tokens_out: 0,
      spend: { USD: '0', EUR: '0' },
    });

    // Default range: the last 30 days up to today.
    const dflt = (await t.call({ method: 'GET', url: `${subsUrl(top.id)}/usage` })).json();
    expect(dflt).toMatchObject({ from: day(-29), to: day(0) });
    expect(dflt.total.events).toBe(6);
  });

  it('accepts a range of exactly 366 days', async () => {
    const top = await createOrg(t, { plan: 'business' });
    const res = await t.call({
      method: 'GET',
      url: `${subsUrl(top.id)}/usage?from=2020-01-01&to=2020-12-31`,
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ from: '2020-01-01', to: '2020-12-31', organization_count: 1 });
  });

  it.each([
    ['from after to', `from=${day(0)}&to=${day(-1)}`, 'from'],
    ['over 366 days', `from=2020-01-01&to=2021-01-02`, 'from'],
    ['not a date', 'from=2024-13-45', 'from'],
    ['unknown parameter', 'since=2024-01-01', 'since'],
  ])('refuses a range %s with 400 naming the field', async (_label, query, field) => {
    const top = await createOrg(t, { plan: 'business' });
    await writesNothing(t.db, async () =>
      expectProblem(
        await t.call({ method: 'GET', url: `${subsUrl(top.id)}/usage?${query}` }),
        400,
        'validation_failed',
        field,
      ),
    );
  });
});

describe('billing and the spending limit', () => {
  it('is set by the parent, enforced on the child’s debits, and not liftable by the child’s owner', async () => {
    const [owner, childOwner] = await Promise.all([
      signUp(t, { name: 'bowner' }),
      signUp(t, { name: 'bchildowner' }),
    ]);
    const top = await createOrg(t, { by: owner, plan: 'business' });
    const child = await createSubOrg(t, top.id);
    await addMember(t, child.id, childOwner, 'owner');
    await addCredits(t, child.id, '100');

    const summary = await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` });
    expect(summary.statusCode, summary.body).toBe(200);
    expect(summary.json()).toMatchObject({
      organization_id: child.id,
      subscription: { plan: 'business', plan_name: 'Business', status: 'active', billing_cycle: 'monthly' },
      currency: 'USD',
      available_balance: '100',
      monthly_spending_limit: null,
      month_spend: '0',
      auto_recharge: { enabled: false },
    });
    expect(
      summary.json().payment_history.map((p: { type: string; amount: string }) => [p.type, p.amount]),
    ).toEqual([['top_up', '100']]);

    await writesNothing(t.db, async () => {
      for (const limit of ['-1', 'lots'])
        expectProblem(
          await as(t, owner, {
            method: 'PUT',
            url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
            payload: { monthly_spending_limit: limit },
          }),
          400,
          'validation_failed',
          'monthly_spending_limit',
        );
      expectProblem(
        await as(t, owner, {
          method: 'PUT',
          url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
          payload: {},
        }),
        400,
        'validation_failed',
      );
    });

    const set = await as(t, owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '10' },
    });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({ organization_id: child.id, monthly_spending_limit: '10' });
    expect((await readBalance(t, child.id)).monthly_spending_limit).toBe('10');

    // The child's own owner cannot lift or change it, by any route.
    await writesNothing(t.db, async () => {
      for (const monthly_spending_limit of [null, '1000', '10'])
        expectProblem(
          await as(t, childOwner, {
            method: 'PATCH',
            url: `/api/organizations/${child.id}/credit-settings`,
            payload: { monthly_spending_limit },
          }),
          403,
          'forbidden',
          'monthly_spending_limit',
        );
      expectProblem(
        await as(t, childOwner, {
          method: 'PUT',
          url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
          payload: { monthly_spending_limit: null },
        }),
        404,
        'not_found',
      );
    });
    // Its other settings are still its own.
    const own = await as(t, childOwner, {
      method: 'PATCH',
      url: `/api/organizations/${child.id}/credit-settings`,
      payload: { overdraft_limit: '5' },
    });
    expect(own.statusCode, own.body).toBe(200);

    // Enforced on every debit.
    expect((await deduct(t, child.id, '8', childOwner)).statusCode).toBe(201);
    await writesNothing(t.db, async () =>
      expectProblem(await deduct(t, child.id, '3', childOwner), 402, 'spending_limit_exceeded'),
    );
    expect((await usage([{ organization_id: child.id, credits: '2.5' }]))[0]).toMatchObject({
      status: 'rejected',
      code: 'spending_limit_exceeded',
    });
    expect((await deduct(t, child.id, '2', childOwner)).statusCode).toBe(201);
    const after = (
      await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` })
    ).json();
    expect(after).toMatchObject({ available_balance: '90', month_spend: '10', monthly_spending_limit: '10' });

    // The parent's oversight admin may change it on the child's own settings too.
    const viaSettings = await as(t, owner, {
      method: 'PATCH',
      url: `/api/organizations/${child.id}/credit-settings`,
      payload: { monthly_spending_limit: '12' },
    });
    expect(viaSettings.statusCode, viaSettings.body).toBe(200);
    expect((await deduct(t, child.id, '2', childOwner)).statusCode).toBe(201);

    // Lifted by the parent.
    const lifted = await as(t, owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: null },
    });
    expect(lifted.json().monthly_spending_limit).toBeNull();
    expect((await deduct(t, child.id, '3', childOwner)).statusCode).toBe(201);

    const audit = await readAuditLog(t, child.id);
    const change = audit.find(
      (e) => e.action === 'credits.settings_changed' && e.changes.monthly_spending_limit !== undefined,
    );
    expect(change?.actor).toMatchObject({ type: 'user', id: owner.id, role: 'admin', via: 'oversight' });

    // A top-level organization's owner sets its own limit.
    const self = await as(t, owner, {
      method: 'PATCH',
      url: `/api/organizations/${top.id}/credit-settings`,
      payload: { monthly_spending_limit: '1' },
    });
    expect(self.statusCode, self.body).toBe(200);
  });

  it('reaches a grandchild through the grandparent, and nothing outside the tree', async () => {
    const owner = await signUp(t, { name: 'gbowner' });
    const top = await createOrg(t, { by: owner, plan: 'business' });
    const child = await createSubOrg(t, top.id);
    const grandchild = await createSubOrg(t, child.id);
    await addCredits(t, grandchild.id, '10');
    const set = await as(t, owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${grandchild.id}/spending-limit`,
      payload: { monthly_spending_limit: '1' },
    });
    expect(set.statusCode, set.body).toBe(200);
    expectProblem(await deduct(t, grandchild.id, '1.5'), 402, 'spending_limit_exceeded');
    const billing = await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${grandchild.id}/billing` });
    expect(billing.json()).toMatchObject({ organization_id: grandchild.id, available_balance: '10' });

    const outside = await createOrg(t, { plan: 'business' });
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${outside.id}/billing` }),
        404,
        'not_found',
      );
      expectProblem(
        await t.call({ method: 'GET', url: `${subsUrl(child.id)}/${top.id}/billing` }),
        404,
        'not_found',
      );
      expectProblem(
        await t.call({
          method: 'PUT',
          url: `${subsUrl(top.id)}/${outside.id}/spending-limit`,
          payload: { monthly_spending_limit: '1' },
        }),
        404,
        'not_found',
      );
    });
  });
});

describe('funding a sub-organization', () => {
  it('moves credits from parent to child by transfer, once per idempotency key', async () => {
    const [owner, manager, childOwner] = await Promise.all([
      signUp(t, { name: 'towner' }),
      signUp(t, { name: 'tmanager' }),
      signUp(t, { name: 'tchildowner' }),
    ]);
    const top = await createOrg(t, { by: owner, plan: 'business' });
    await addMember(t, top.id, manager, 'manager');
    const child = await createSubOrg(t, top.id);
    const grandchild = await createSubOrg(t, child.id);
    await addMember(t, child.id, childOwner, 'owner');
    await addCredits(t, top.id, '100');

    const transfer = (by: User, from: string, to: string, amount: string, key?: string) =>
      as(t, by, {
        method: 'POST',
        url: `/api/organizations/${from}/credits/transfer`,
        payload: { to_organization_id: to, amount },
        headers: key ? { 'idempotency-key': key } : {},
      });

    const key = `fund-${run}`;
    const first = await transfer(owner, top.id, child.id, '30', key);
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json().from).toMatchObject({ type: 'transfer_out', amount: '30', balance_after: '70' });
    expect(first.json().to).toMatchObject({
      type: 'transfer_in',
      organization_id: child.id,
      balance_after: '30',
      actor: { type: 'user', id: owner.id },
    });
    await writesNothing(t.db, async () => {
      const replay = await transfer(owner, top.id, child.id, '30', key);
      expect(replay.statusCode).toBe(201);
      expect(replay.json()).toEqual(first.json());
      expectProblem(await transfer(owner, top.id, child.id, '31', key), 422, 'idempotency_key_reused');
      expectProblem(await transfer(owner, top.id, child.id, '1000'), 402, 'insufficient_credits');
      expectProblem(await transfer(manager, top.id, child.id, '1'), 403, 'forbidden');
      // The child's owner cannot pull from the parent, nor send to it (it cannot see it).
      expectProblem(await transfer(childOwner, top.id, child.id, '1'), 404, 'not_found');
      expectProblem(
        await transfer(childOwner, child.id, top.id, '1'),
        400,
        'validation_failed',
        'to_organization_id',
      );
    });

    // Straight to a grandchild as well.
    expect((await transfer(owner, top.id, grandchild.id, '5')).statusCode).toBe(201);

    expect((await readBalance(t, top.id)).available).toBe('65');
    expect((await readBalance(t, child.id)).available).toBe('30');
    expect((await readBalance(t, grandchild.id)).available).toBe('5');
    const list = (await as(t, owner, { method: 'GET', url: subsUrl(top.id) })).json().data;
    expect(list.find((o: { id: string }) => o.id === child.id)).toMatchObject({
      balance: '30',
      member_count: 1,
    });
    const billing = (
      await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` })
    ).json();
    expect(billing.payment_history).toEqual([
      expect.objectContaining({ type: 'transfer_in', amount: '30', related_id: first.json().from.id }),
    ]);
    expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('what the parent decides', () => {
  it('chooses the sub-organization’s plan, never above its own', async () => {
    const [owner, childOwner] = await Promise.all([
      signUp(t, { name: 'pplan' }),
      signUp(t, { name: 'pchildowner' }),
    ]);
    const top = await createOrg(t, { by: owner, plan: 'business' });
    const child = await createSubOrg(t, top.id, { by: owner });
    await addMember(t, child.id, childOwner, 'owner');
    const url = `/api/organizations/${child.id}/subscription`;
    await writesNothing(t.db, async () => {
      // The child's own owner may read its plan but not change, cancel or reactivate it.
      expect((await as(t, childOwner, { method: 'GET', url })).statusCode).toBe(200);
      expectProblem(
        await as(t, childOwner, { method: 'PUT', url, payload: { plan: 'starter' } }),
        403,
        'forbidden',
      );
      expectProblem(await as(t, childOwner, { method: 'POST', url: `${url}/cancel` }), 403, 'forbidden');
      // Above the parent's plan: refused, at creation and by a change.
      expectProblem(
        await as(t, owner, { method: 'PUT', url, payload: { plan: 'enterprise' } }),
        400,
        'validation_failed',
        'plan',
      );
      expectProblem(
        await createSub(t, top.id, { plan: 'enterprise' }, owner),
        400,
        'validation_failed',
        'plan',
      );
    });
    const down = await as(t, owner, { method: 'PUT', url, payload: { plan: 'growth' } });
    expect(down.statusCode, down.body).toBe(200);
    expect(down.json().plan).toBe('growth');
  });

  it('counts transfers out against the monthly limit it set', async () => {
    const [owner, childOwner] = await Promise.all([
      signUp(t, { name: 'tlimit' }),
      signUp(t, { name: 'tchild' }),
    ]);
    const top = await createOrg(t, { by: owner, plan: 'business' });
    const child = await createSubOrg(t, top.id, { by: owner });
    await addMember(t, child.id, childOwner, 'owner');
    await addCredits(t, child.id, '100');
    const limit = await as(t, owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '5' },
    });
    expect(limit.statusCode, limit.body).toBe(200);
    // Credits stay in the tree: to a sibling (out of it, even to one's own, is refused outright).
    const sibling = await createSubOrg(t, top.id, { by: owner });
    await addMember(t, sibling.id, childOwner, 'developer');
    const transfer = (amount: string) =>
      as(t, childOwner, {
        method: 'POST',
        url: `/api/organizations/${child.id}/credits/transfer`,
        payload: { to_organization_id: sibling.id, amount },
      });
    await writesNothing(t.db, async () =>
      expectProblem(await transfer('100'), 402, 'spending_limit_exceeded'),
    );
    expect((await transfer('5')).statusCode).toBe(201);
    expect(await readBalance(t, child.id)).toMatchObject({ available: '95', month_spend: '5' });
    await writesNothing(t.db, async () =>
      expectProblem(await transfer('0.000001'), 402, 'spending_limit_exceeded'),
    );
  });
});

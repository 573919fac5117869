import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMember,
  as,
  createAgent,
  createApiKey,
  createOrg,
  readAuditLog,
  readBalance,
  setPlan,
  signUp,
} from '../../factories.js';
import { expectProblem, type TestContext, tableCounts } from '../../harness.js';
import { createPlansApp, DAY, monthsLater, newAgent, subscription } from './support.js';

/**
 * Plans and subscriptions through the HTTP API: the catalogue, a new organization's
 * subscription, upgrades and blocked downgrades, cancellation and renewal, and who may change
 * the plan.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createPlansApp();
});
afterAll(() => t?.close());

describe('the plan catalogue', () => {
  it('lists the six plans with prices, limits and features, and the feature registry', async () => {
    const res = await t.call({ method: 'GET', url: '/api/plans' });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.data.map((p: { key: string }) => p.key)).toEqual([
      'free',
      'pay_as_you_go',
      'starter',
      'growth',
      'business',
      'enterprise',
    ]);
    const byKey = Object.fromEntries(body.data.map((p: { key: string }) => [p.key, p]));
    expect(byKey.free).toEqual({
      key: 'free',
      name: 'Free',
      price: { monthly: '0.00', annual: '0.00' },
      limits: { agents: 5, members: 5, sub_organizations: 0, monthly_usage_events: 10_000, organizations: 3 },
      max_overdraft_limit: '100.00',
      features: ['api_access', 'allow_overdraft'],
    });
    // Credits only: no fee, no monthly allowance of events, no overdraft to speak of.
    expect(byKey.pay_as_you_go).toMatchObject({
      name: 'Pay As You Go',
      price: { monthly: '0.00', annual: '0.00' },
      limits: { monthly_usage_events: null },
      max_overdraft_limit: '0.00',
    });
    expect(byKey.starter).toMatchObject({
      price: { monthly: '29.00', annual: '290.00' },
      limits: { agents: 20, members: 10, sub_organizations: 0, monthly_usage_events: 100_000 },
    });
    expect(byKey.growth.features).toContain('custom_branding');
    expect(byKey.growth.features).not.toContain('custom_domains');
    expect(byKey.business.features).toEqual(
      expect.arrayContaining(['custom_branding', 'custom_domains', 'sub_organizations']),
    );
    expect(byKey.business.limits.sub_organizations).toBe(50);
    expect(byKey.enterprise.limits).toEqual({
      agents: null,
      members: null,
      sub_organizations: null,
      monthly_usage_events: null,
      organizations: null,
    });
    expect(byKey.enterprise.max_overdraft_limit).toBeNull();
    // Every plan includes the base features, and each higher plan includes the lower one's.
    for (let i = 1; i < body.data.length; i++)
      expect(body.data[i].features).toEqual(expect.arrayContaining(body.data[i - 1].features));

    const registry = body.features.map((f: { key: string }) => f.key);
    expect(registry).toEqual([
      'api_access',
      'allow_overdraft',
      'workflows',
      'broadcasts',
      'analytics',
      'custom_branding',
      'custom_domains',
      'sub_organizations',
    ]);
    for (const f of body.features) {
      expect(typeof f.name).toBe('string');
      expect(f.description.length).toBeGreaterThan(0);
    }
    expect([...byKey.enterprise.features].sort()).toEqual([...registry].sort());

    // Any signed-in user may read it; nobody anonymous.
    const user = await signUp(t, { name: 'Catalogue Reader' });
    expect((await user.call({ method: 'GET', url: '/api/plans' })).json()).toEqual(body);
    expect((await t.app.inject({ method: 'GET', url: '/api/plans' })).statusCode).toBe(401);
  });
});

describe('a new organization', () => {
  it('is on Free, monthly and active, with usage against each limit and a one-month period', async () => {
    const owner = await signUp(t, { name: 'Fresh Owner' });
    const o = await createOrg(t, { by: owner, name: 'Fresh Start Co' });
    await createAgent(t, { organization_id: o.id, by: owner });
    const before = Date.now();
    const sub = await subscription(t, o.id, owner.call);
    expect(sub).toMatchObject({
      organization_id: o.id,
      plan: 'free',
      plan_name: 'Free',
      billing_cycle: 'monthly',
      price: '0.00',
      currency: 'USD',
      status: 'active',
      cancel_at_period_end: false,
      canceled_at: null,
      limits: {
        agents: { used: 1, max: 5 },
        members: { used: 1, max: 5 },
        sub_organizations: { used: 0, max: 0 },
        monthly_usage_events: { used: 0, max: 10_000 },
      },
      features: ['api_access', 'allow_overdraft'],
    });
    const start = Date.parse(sub.current_period_start);
    expect(start).toBeLessThanOrEqual(before);
    expect(before - start).toBeLessThan(60_000);
    expect(sub.current_period_end).toBe(monthsLater(sub.current_period_start, 1));
    const days = (Date.parse(sub.current_period_end) - start) / DAY;
    expect(days).toBeGreaterThanOrEqual(28);
    expect(days).toBeLessThanOrEqual(31);

    const org = (await owner.call({ method: 'GET', url: `/api/organizations/${o.id}` })).json();
    expect(org.plan).toBe('free');
    const features = await owner.call({ method: 'GET', url: `/api/organizations/${o.id}/features` });
    expect(features.statusCode, features.body).toBe(200);
    expect(features.json()).toMatchObject({ plan: 'free', enabled: ['api_access', 'allow_overdraft'] });
    expect(features.json().features.find((f: { key: string }) => f.key === 'custom_branding')).toEqual(
      expect.objectContaining({ enabled: false, in_plan: false, granted: null, parent_has: null }),
    );
    const bal = await readBalance(t, o.id);
    expect(bal).toMatchObject({ month_usage_events: 0, usage_events_limit: 10_000 });
  });
});

describe('changing plans', () => {
  it('upgrades at once, audited; refuses a downgrade the usage exceeds, writing nothing; then allows it', async () => {
    const owner = await signUp(t, { name: 'Upgrading Owner' });
    const o = await createOrg(t, { by: owner, name: 'Upgrade Path Ltd' });

    const up = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'starter', billing_cycle: 'annual' },
    });
    expect(up.statusCode, up.body).toBe(200);
    const upgraded = up.json();
    expect(upgraded).toMatchObject({
      plan: 'starter',
      plan_name: 'Starter',
      billing_cycle: 'annual',
      price: '290.00',
      status: 'active',
      limits: { agents: { used: 0, max: 20 }, members: { used: 1, max: 10 } },
    });
    expect(upgraded.current_period_end).toBe(monthsLater(upgraded.current_period_start, 12));
    expect((await owner.call({ method: 'GET', url: `/api/organizations/${o.id}` })).json().plan).toBe(
      'starter',
    );
    expect(await subscription(t, o.id, owner.call)).toEqual(upgraded);
    const [event] = await readAuditLog(t, o.id);
    expect(event).toMatchObject({
      action: 'subscription.upgraded',
      target: { type: 'subscription', id: o.id },
      actor: { type: 'user', role: 'owner' },
      changes: {
        plan: { before: 'free', after: 'starter' },
        billing_cycle: { before: 'monthly', after: 'annual' },
      },
    });
    const bal = await readBalance(t, o.id);
    expect(bal.usage_events_limit).toBe(100_000);

    const agents = [];
    for (let i = 0; i < 6; i++) agents.push(await createAgent(t, { organization_id: o.id, by: owner }));

    const before = await tableCounts(t.db);
    const blocked = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'free' },
    });
    const problem = expectProblem(blocked, 409, 'plan_downgrade_blocked');
    expect(problem.plan).toBe('free');
    expect(problem.exceeded).toEqual([{ limit: 'agents', used: 6, max: 5 }]);
    expect(problem.detail).toMatch(/agents 6 > 5/);
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await subscription(t, o.id, owner.call)).toEqual({
      ...upgraded,
      limits: { ...upgraded.limits, agents: { used: 6, max: 20 } },
    });
    expect((await readBalance(t, o.id)).usage_events_limit).toBe(100_000);

    const del = await owner.call({ method: 'DELETE', url: `/api/agents/${agents[0]?.id}` });
    expect(del.statusCode, del.body).toBe(204);
    const down = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'free', billing_cycle: 'monthly' },
    });
    expect(down.statusCode, down.body).toBe(200);
    expect(down.json()).toMatchObject({
      plan: 'free',
      billing_cycle: 'monthly',
      status: 'active',
      limits: { agents: { used: 5, max: 5 } },
    });
    expect((await owner.call({ method: 'GET', url: `/api/organizations/${o.id}` })).json().plan).toBe('free');
    expect((await readAuditLog(t, o.id))[0]).toMatchObject({
      action: 'subscription.downgraded',
      changes: { plan: { before: 'starter', after: 'free' } },
    });
    expect((await readBalance(t, o.id)).usage_events_limit).toBe(10_000);
    // Free is full now: a sixth agent is refused.
    expectProblem(await newAgent(t, o.id, owner.call), 402, 'plan_limit_exceeded');
  });

  it('rejects an unknown plan or cycle with 400 naming the field', async () => {
    const o = await createOrg(t);
    const before = await tableCounts(t.db);
    for (const [payload, field] of [
      [{ plan: 'platinum' }, 'plan'],
      [{ plan: 'growth', billing_cycle: 'weekly' }, 'billing_cycle'],
      [{}, 'plan'],
      [{ plan: 'growth', coupon: 'FREE' }, 'coupon'],
    ] as const) {
      const res = await t.call({ method: 'PUT', url: `/api/organizations/${o.id}/subscription`, payload });
      expectProblem(res, 400, 'validation_failed', field);
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('cancellation', () => {
  it('keeps the plan active until the period ends; cancel and reactivate refuse the wrong state', async () => {
    const owner = await signUp(t, { name: 'Canceling Owner' });
    const o = await createOrg(t, { by: owner, name: 'Cancel Culture Inc' });
    const cancel = () =>
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/cancel` });
    const reactivate = () =>
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/reactivate` });

    // Nothing to cancel on Free.
    let before = await tableCounts(t.db);
    expectProblem(await cancel(), 409, 'subscription_not_cancelable');
    expect(await tableCounts(t.db)).toEqual(before);

    await setPlan(t, o.id, 'growth');
    const canceled = await cancel();
    expect(canceled.statusCode, canceled.body).toBe(200);
    expect(canceled.json()).toMatchObject({ plan: 'growth', status: 'active', cancel_at_period_end: true });
    expect(Date.now() - Date.parse(canceled.json().canceled_at)).toBeLessThan(60_000);
    expect((await readAuditLog(t, o.id))[0]?.action).toBe('subscription.canceled');
    expect((await owner.call({ method: 'GET', url: `/api/organizations/${o.id}` })).json().plan).toBe(
      'growth',
    );

    before = await tableCounts(t.db);
    expectProblem(await cancel(), 409, 'subscription_not_cancelable');
    expect(await tableCounts(t.db)).toEqual(before);

    const back = await reactivate();
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json()).toMatchObject({
      plan: 'growth',
      status: 'active',
      cancel_at_period_end: false,
      canceled_at: null,
    });
    expect((await readAuditLog(t, o.id))[0]?.action).toBe('subscription.reactivated');

    before = await tableCounts(t.db);
    expectProblem(await reactivate(), 409, 'subscription_not_canceled');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('at the period end a canceled subscription falls to Free and any other renews on its plan', async () => {
    const ending = await createOrg(t, { name: 'Ending Soon Co' });
    const renewing = await createOrg(t, { name: 'Renewing Forever Co' });
    await setPlan(t, ending.id, 'growth');
    await setPlan(t, renewing.id, 'starter');
    const put = await t.call({
      method: 'PUT',
      url: `/api/organizations/${renewing.id}/subscription`,
      payload: { plan: 'starter', billing_cycle: 'monthly' },
    });
    expect(put.statusCode, put.body).toBe(200);
    const cancel = await t.call({
      method: 'POST',
      url: `/api/organizations/${ending.id}/subscription/cancel`,
    });
    expect(cancel.statusCode, cancel.body).toBe(200);
    const endingBefore = await subscription(t, ending.id);
    const renewingBefore = await subscription(t, renewing.id);

    // Not due yet: nothing changes.
    await t.app.services.plans.renewDue(new Date());
    expect(await subscription(t, ending.id)).toEqual(endingBefore);
    expect(await subscription(t, renewing.id)).toEqual(renewingBefore);

    const done = await t.app.services.plans.renewDue(new Date(Date.now() + 40 * DAY));
    expect(done).toBeGreaterThanOrEqual(2);

    const ended = await subscription(t, ending.id);
    expect(ended).toMatchObject({
      plan: 'free',
      status: 'canceled',
      cancel_at_period_end: false,
      billing_cycle: 'monthly',
      price: '0.00',
      current_period_start: endingBefore.current_period_end,
      current_period_end: monthsLater(endingBefore.current_period_end, 1),
      limits: { agents: { max: 5 }, monthly_usage_events: { max: 10_000 } },
    });
    expect((await t.call({ method: 'GET', url: `/api/organizations/${ending.id}` })).json().plan).toBe(
      'free',
    );
    expect((await readBalance(t, ending.id)).usage_events_limit).toBe(10_000);
    expect((await readAuditLog(t, ending.id))[0]).toMatchObject({
      action: 'subscription.ended',
      changes: { plan: { before: 'growth', after: 'free' } },
    });
    // The branding feature went with the plan.
    const put2 = await t.call({
      method: 'PUT',
      url: `/api/organizations/${ending.id}/customization`,
      payload: { primary_color: '#123456' },
    });
    expectProblem(put2, 403, 'feature_not_enabled');

    const renewed = await subscription(t, renewing.id);
    expect(renewed).toMatchObject({
      plan: 'starter',
      status: 'active',
      cancel_at_period_end: false,
      billing_cycle: 'monthly',
      current_period_start: renewingBefore.current_period_end,
      current_period_end: monthsLater(renewingBefore.current_period_end, 1),
    });
    expect((await readBalance(t, renewing.id)).usage_events_limit).toBe(100_000);

    // A second run at the same instant finds nothing more to do for them.
    await t.app.services.plans.renewDue(new Date(Date.now() + 40 * DAY));
    expect(await subscription(t, ending.id)).toEqual(ended);
    expect(await subscription(t, renewing.id)).toEqual(renewed);

    // A canceled organization can subscribe again.
    const again = await t.call({
      method: 'PUT',
      url: `/api/organizations/${ending.id}/subscription`,
      payload: { plan: 'growth' },
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ plan: 'growth', status: 'active', cancel_at_period_end: false });
  });
});

describe('who may change the plan', () => {
  it('refuses developers and managers (403) and outsiders (404); a read API key reads subscription and features', async () => {
    const owner = await signUp(t, { name: 'Perm Owner' });
    const o = await createOrg(t, { by: owner, name: 'Permission Matters' });
    const dev = await signUp(t, { name: 'Perm Developer' });
    const manager = await signUp(t, { name: 'Perm Manager' });
    const admin = await signUp(t, { name: 'Perm Admin' });
    const outsider = await signUp(t, { name: 'Perm Outsider' });
    await addMember(t, o.id, { email: dev.email }, 'developer');
    await addMember(t, o.id, { email: manager.email }, 'manager');
    await addMember(t, o.id, { email: admin.email }, 'admin');

    const base = `/api/organizations/${o.id}/subscription`;
    const writes: InjectOptions[] = [
      { method: 'PUT', url: base, payload: { plan: 'growth' } },
      { method: 'POST', url: `${base}/cancel` },
      { method: 'POST', url: `${base}/reactivate` },
    ];
    const before = await tableCounts(t.db);
    for (const [user, status, code] of [
      [dev, 403, 'forbidden'],
      [manager, 403, 'forbidden'],
      [outsider, 404, 'not_found'],
    ] as const)
      for (const req of writes) {
        const res = await user.call(req);
        expectProblem(res, status, code, { where: `${user.email} ${req.method} ${req.url}` });
      }
    expect(await tableCounts(t.db)).toEqual(before);

    // A manager reads the subscription; a developer (no subscription:read) does not, but reads features.
    expect((await subscription(t, o.id, manager.call)).plan).toBe('free');
    expectProblem(await dev.call({ method: 'GET', url: base }), 403, 'forbidden');
    expect((await dev.call({ method: 'GET', url: `/api/organizations/${o.id}/features` })).statusCode).toBe(
      200,
    );
    expectProblem(await outsider.call({ method: 'GET', url: base }), 404, 'not_found');

    const { key } = await createApiKey(t, o.id, { by: owner, name: 'reader', scopes: ['read'] });
    const asKey = (opts: InjectOptions) => as(t, key, opts);
    expect((await subscription(t, o.id, asKey)).plan).toBe('free');
    const feats = await asKey({ method: 'GET', url: `/api/organizations/${o.id}/features` });
    expect(feats.statusCode, feats.body).toBe(200);
    expect(feats.json().enabled).toEqual(['api_access', 'allow_overdraft']);
    const before2 = await tableCounts(t.db);
    expectProblem(await asKey(writes[0] as InjectOptions), 403, 'forbidden');
    expect(await tableCounts(t.db)).toEqual(before2);

    // An admin may.
    const up = await admin.call({ method: 'PUT', url: base, payload: { plan: 'growth' } });
    expect(up.statusCode, up.body).toBe(200);
    expect(up.json().plan).toBe('growth');
  });
});

import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

/**
 * Plans and subscriptions through the HTTP API: the catalogue, a new organization's
 * subscription, upgrades and blocked downgrades, cancellation and renewal, the limits that bite
 * (agents, members, monthly usage events), who may change the plan, overdraft as a feature, and
 * customization (white-label) reaching the invitation mail.
 */

let t: TestContext;
beforeAll(async () => {
  // No smtpUrl: mail is kept in the local mailbox, which the operator reads. Owners change plans
  // here (PLAN_CHANGES=owners); the operator-only default is test/api/governance.test.ts's.
  t = await createTestApp({ planChanges: 'owners' });
});
afterAll(() => t?.close());

const DAY = 24 * 3600 * 1000;
const PASSWORD = 'plans-password-1';
let n = 0;

interface User {
  id: string;
  email: string;
  token: string;
  call: (opts: InjectOptions) => Promise<LightMyRequestResponse>;
}

async function signUp(name: string): Promise<User> {
  const email = `${name.toLowerCase().replace(/\W+/g, '-')}-${++n}@plans.test`;
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password: PASSWORD, name },
  });
  expect(res.statusCode, res.body).toBe(200);
  const token = String(res.headers['set-auth-token']);
  return {
    id: res.json().user.id,
    email,
    token,
    call: (opts) => t.app.inject({ ...opts, headers: { ...opts.headers, authorization: `Bearer ${token}` } }),
  };
}

/** An organization created by the operator (no members), on the Free plan. */
async function org(name = `Planned ${++n}`): Promise<{ id: string; name: string }> {
  const res = await t.call({ method: 'POST', url: '/api/organizations', payload: { name } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

/** An organization created by `owner`, who is its one member. */
async function ownedOrg(owner: User, name = `Owned ${++n}`): Promise<{ id: string; name: string }> {
  const res = await owner.call({ method: 'POST', url: '/api/organizations', payload: { name } });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

/** The operator moves the organization to `plan`. */
async function setPlan(id: string, plan: string) {
  const res = await t.call({
    method: 'PUT',
    url: `/api/organizations/${id}/subscription`,
    payload: { plan },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

async function subscription(id: string, as: (o: InjectOptions) => Promise<LightMyRequestResponse> = t.call) {
  const res = await as({ method: 'GET', url: `/api/organizations/${id}/subscription` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

async function balance(id: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${id}/balance` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

function newAgent(
  orgId: string | undefined,
  as: (o: InjectOptions) => Promise<LightMyRequestResponse> = t.call,
) {
  return as({
    method: 'POST',
    url: '/api/agents',
    payload: { name: `Agent ${++n}`, ...(orgId ? { organization_id: orgId } : {}) },
  });
}

async function agent(orgId: string | undefined, as = t.call): Promise<{ id: string }> {
  const res = await newAgent(orgId, as);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function addMember(orgId: string, email: string, role: string) {
  const res = await t.call({
    method: 'POST',
    url: `/api/organizations/${orgId}/members`,
    payload: { email, role },
  });
  expect(res.statusCode, res.body).toBe(201);
}

async function auditLog(orgId: string): Promise<Array<{ action: string; changes: Record<string, unknown> }>> {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/audit-log?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data;
}

function usage(orgId: string, count: number, credits = '0.01') {
  return t.call({
    method: 'POST',
    url: '/api/usage',
    payload: {
      events: Array.from({ length: count }, () => ({
        organization_id: orgId,
        credits,
        idempotency_key: `plan-usage-${++n}`,
      })),
    },
  });
}

/** The same day `months` later in UTC, clamped to the month's end (Jan 31 + 1 month = Feb 28/29). */
function monthsLater(iso: string, months: number): string {
  const d = new Date(iso);
  const day = d.getUTCDate();
  const target = new Date(d);
  target.setUTCDate(1);
  target.setUTCMonth(target.getUTCMonth() + months);
  const last = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(day, last));
  return target.toISOString();
}

/** The token in the newest mail the local mailbox kept for `email`. */
async function invitationToken(email: string): Promise<string> {
  const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
  expect(box.statusCode, box.body).toBe(200);
  const mail = box.json().data.find((m: { to: string }) => m.to === email);
  expect(mail, `mail to ${email}`).toBeDefined();
  const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail.html)?.[1];
  expect(token).toBeTruthy();
  return token as string;
}

// ---------------------------------------------------------------------------------------------

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
    const user = await signUp('Catalogue Reader');
    expect((await user.call({ method: 'GET', url: '/api/plans' })).json()).toEqual(body);
    expect((await t.app.inject({ method: 'GET', url: '/api/plans' })).statusCode).toBe(401);
  });
});

describe('a new organization', () => {
  it('is on Free, monthly and active, with usage against each limit and a one-month period', async () => {
    const owner = await signUp('Fresh Owner');
    const o = await ownedOrg(owner, 'Fresh Start Co');
    await agent(o.id, owner.call);
    const before = Date.now();
    const sub = await subscription(o.id, owner.call);
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
    const bal = await balance(o.id);
    expect(bal).toMatchObject({ month_usage_events: 0, usage_events_limit: 10_000 });
  });
});

describe('changing plans', () => {
  it('upgrades at once, audited; refuses a downgrade the usage exceeds, writing nothing; then allows it', async () => {
    const owner = await signUp('Upgrading Owner');
    const o = await ownedOrg(owner, 'Upgrade Path Ltd');

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
    expect(await subscription(o.id, owner.call)).toEqual(upgraded);
    const [event] = await auditLog(o.id);
    expect(event).toMatchObject({
      action: 'subscription.upgraded',
      target: { type: 'subscription', id: o.id },
      actor: { type: 'user', role: 'owner' },
      changes: {
        plan: { before: 'free', after: 'starter' },
        billing_cycle: { before: 'monthly', after: 'annual' },
      },
    });
    const bal = await balance(o.id);
    expect(bal.usage_events_limit).toBe(100_000);

    const agents = [];
    for (let i = 0; i < 6; i++) agents.push(await agent(o.id, owner.call));

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
    expect(await subscription(o.id, owner.call)).toEqual({
      ...upgraded,
      limits: { ...upgraded.limits, agents: { used: 6, max: 20 } },
    });
    expect((await balance(o.id)).usage_events_limit).toBe(100_000);

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
    expect((await auditLog(o.id))[0]).toMatchObject({
      action: 'subscription.downgraded',
      changes: { plan: { before: 'starter', after: 'free' } },
    });
    expect((await balance(o.id)).usage_events_limit).toBe(10_000);
    // Free is full now: a sixth agent is refused.
    expectProblem(await newAgent(o.id, owner.call), 402, 'plan_limit_exceeded');
  });

  it('rejects an unknown plan or cycle with 400 naming the field', async () => {
    const o = await org();
    const before = await tableCounts(t.db);
    for (const [payload, field] of [
      [{ plan: 'platinum' }, 'plan'],
      [{ plan: 'growth', billing_cycle: 'weekly' }, 'billing_cycle'],
      [{}, 'plan'],
      [{ plan: 'growth', coupon: 'FREE' }, 'coupon'],
    ] as const) {
      const res = await t.call({ method: 'PUT', url: `/api/organizations/${o.id}/subscription`, payload });
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('cancellation', () => {
  it('keeps the plan active until the period ends; cancel and reactivate refuse the wrong state', async () => {
    const owner = await signUp('Canceling Owner');
    const o = await ownedOrg(owner, 'Cancel Culture Inc');
    const cancel = () =>
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/cancel` });
    const reactivate = () =>
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/reactivate` });

    // Nothing to cancel on Free.
    let before = await tableCounts(t.db);
    expectProblem(await cancel(), 409, 'subscription_not_cancelable');
    expect(await tableCounts(t.db)).toEqual(before);

    await setPlan(o.id, 'growth');
    const canceled = await cancel();
    expect(canceled.statusCode, canceled.body).toBe(200);
    expect(canceled.json()).toMatchObject({ plan: 'growth', status: 'active', cancel_at_period_end: true });
    expect(Date.now() - Date.parse(canceled.json().canceled_at)).toBeLessThan(60_000);
    expect((await auditLog(o.id))[0]?.action).toBe('subscription.canceled');
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
    expect((await auditLog(o.id))[0]?.action).toBe('subscription.reactivated');

    before = await tableCounts(t.db);
    expectProblem(await reactivate(), 409, 'subscription_not_canceled');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('at the period end a canceled subscription falls to Free and any other renews on its plan', async () => {
    const ending = await org('Ending Soon Co');
    const renewing = await org('Renewing Forever Co');
    await setPlan(ending.id, 'growth');
    await setPlan(renewing.id, 'starter');
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
    const endingBefore = await subscription(ending.id);
    const renewingBefore = await subscription(renewing.id);

    // Not due yet: nothing changes.
    await t.app.services.plans.renewDue(new Date());
    expect(await subscription(ending.id)).toEqual(endingBefore);
    expect(await subscription(renewing.id)).toEqual(renewingBefore);

    const done = await t.app.services.plans.renewDue(new Date(Date.now() + 40 * DAY));
    expect(done).toBeGreaterThanOrEqual(2);

    const ended = await subscription(ending.id);
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
    expect((await balance(ending.id)).usage_events_limit).toBe(10_000);
    expect((await auditLog(ending.id))[0]).toMatchObject({
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

    const renewed = await subscription(renewing.id);
    expect(renewed).toMatchObject({
      plan: 'starter',
      status: 'active',
      cancel_at_period_end: false,
      billing_cycle: 'monthly',
      current_period_start: renewingBefore.current_period_end,
      current_period_end: monthsLater(renewingBefore.current_period_end, 1),
    });
    expect((await balance(renewing.id)).usage_events_limit).toBe(100_000);

    // A second run at the same instant finds nothing more to do for them.
    await t.app.services.plans.renewDue(new Date(Date.now() + 40 * DAY));
    expect(await subscription(ending.id)).toEqual(ended);
    expect(await subscription(renewing.id)).toEqual(renewed);

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

describe('limits', () => {
  it('refuses a sixth agent on Free with 402 plan_limit_exceeded naming the limit and the plan that lifts it', async () => {
    const o = await org('Agent Cap Co');
    for (let i = 0; i < 5; i++) await agent(o.id);
    const before = await tableCounts(t.db);
    const problem = expectProblem(await newAgent(o.id), 402, 'plan_limit_exceeded');
    expect(problem).toMatchObject({ limit: 'agents', plan: 'free', max: 5, used: 5, upgrade_to: 'starter' });
    expect(await tableCounts(t.db)).toEqual(before);

    // Assigning an agent from elsewhere into the full organization is refused the same way.
    const stray = await agent(undefined);
    const from = (await t.call({ method: 'GET', url: `/api/agents/${stray.id}` })).json().organization_id;
    const before2 = await tableCounts(t.db);
    const assign = await t.call({
      method: 'POST',
      url: `/api/agents/${stray.id}/assign-org`,
      payload: { organization_id: o.id },
    });
    expect(expectProblem(assign, 402, 'plan_limit_exceeded')).toMatchObject({
      limit: 'agents',
      plan: 'free',
      upgrade_to: 'starter',
    });
    expect(await tableCounts(t.db)).toEqual(before2);
    expect((await t.call({ method: 'GET', url: `/api/agents/${stray.id}` })).json().organization_id).toBe(
      from,
    );

    // Upgrading lifts it.
    await setPlan(o.id, 'starter');
    const moved = await t.call({
      method: 'POST',
      url: `/api/agents/${stray.id}/assign-org`,
      payload: { organization_id: o.id },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect((await subscription(o.id)).limits.agents).toEqual({ used: 6, max: 20 });
  });

  it('refuses a sixth member on Free, added or invited, with 402 naming members', async () => {
    const owner = await signUp('Crowded Owner');
    const o = await ownedOrg(owner, 'Crowded House');
    for (let i = 0; i < 4; i++) await addMember(o.id, (await signUp(`Member ${i}`)).email, 'developer');
    expect((await subscription(o.id)).limits.members).toEqual({ used: 5, max: 5 });

    const extra = await signUp('One Too Many');
    const before = await tableCounts(t.db);
    // The operator adds directly (the owner would have to invite someone outside the tree).
    const added = await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/members`,
      payload: { email: extra.email, role: 'developer' },
    });
    expect(expectProblem(added, 402, 'plan_limit_exceeded')).toMatchObject({
      limit: 'members',
      plan: 'free',
      max: 5,
      used: 5,
      upgrade_to: 'starter',
    });
    const invited = await owner.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/invitations`,
      payload: { email: 'invitee-over-limit@plans.test', role: 'agent' },
    });
    expect(expectProblem(invited, 402, 'plan_limit_exceeded')).toMatchObject({
      limit: 'members',
      plan: 'free',
    });
    // Nothing written, and no mail kept (the mailbox is a table too).
    expect(await tableCounts(t.db)).toEqual(before);

    await setPlan(o.id, 'starter');
    const ok = await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/members`,
      payload: { email: extra.email, role: 'developer' },
    });
    expect(ok.statusCode, ok.body).toBe(201);
    expect((await subscription(o.id)).limits.members).toEqual({ used: 6, max: 10 });
  });

  it('refuses accepting an invitation into a full organization without leaving an account behind', async () => {
    const owner = await signUp('Door Owner');
    const o = await ownedOrg(owner, 'Revolving Door');
    for (let i = 0; i < 3; i++) await addMember(o.id, (await signUp(`Door Member ${i}`)).email, 'developer');
    expect((await subscription(o.id)).limits.members).toEqual({ used: 4, max: 5 });

    // With room for one, two invitations go out; the second to be accepted finds the plan full.
    const tokens: string[] = [];
    for (const email of ['first-in@plans.test', 'second-in@plans.test']) {
      const res = await owner.call({
        method: 'POST',
        url: `/api/organizations/${o.id}/invitations`,
        payload: { email, role: 'agent' },
      });
      expect(res.statusCode, res.body).toBe(201);
      tokens.push(await invitationToken(email));
    }
    const accept = (token: string | undefined) =>
      t.app.inject({
        method: 'POST',
        url: `/api/invitations/${token}/accept`,
        payload: { name: 'Invited Person', password: PASSWORD },
      });
    const first = await accept(tokens[0]);
    expect(first.statusCode, first.body).toBe(200);

    const before = await tableCounts(t.db);
    expect(expectProblem(await accept(tokens[1]), 402, 'plan_limit_exceeded')).toMatchObject({
      limit: 'members',
      plan: 'free',
      max: 5,
      used: 5,
    });
    expect((await subscription(o.id)).limits.members).toEqual({ used: 5, max: 5 });
    // BUG: the refused accept still created the invitee's account (user, session, personal
    // organization with its subscription and ledger accounts): the sign-up runs before, and
    // outside, the transaction that claims the invitation and adds the member.
    expect.soft(await tableCounts(t.db)).toEqual(before);
    const account = await t.db.db
      .selectFrom('users')
      .select('id')
      .where('email', '=', 'second-in@plans.test')
      .execute();
    expect.soft(account).toEqual([]);

    // Once the owner makes room, the same link (still pending) lets the invitee in. With the
    // bug it answers 409 email_taken: the account the refused attempt left behind blocks it.
    await setPlan(o.id, 'starter');
    const second = await accept(tokens[1]);
    expect(second.statusCode, second.body).toBe(200);
    expect((await subscription(o.id)).limits.members).toEqual({ used: 6, max: 10 });
  });

  it('rejects the usage event past the monthly allowance per event, applying the others; upgrading lifts it', async () => {
    const o = await org('Busy Events Co');
    const add = await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/credits/add`,
      payload: { amount: '100' },
    });
    expect(add.statusCode, add.body).toBeLessThan(300);
    const month = new Date().toISOString().slice(0, 7);
    // Nearly a month's worth, without sending 9,998 events.
    await sql`update ledger_accounts set month_events = 9998, spend_month = ${month}
      where organization_id = ${o.id} and code = 'credits'`.execute(t.db.db);
    expect(await balance(o.id)).toMatchObject({ month_usage_events: 9998, usage_events_limit: 10_000 });

    const res = await usage(o.id, 3);
    expect(res.statusCode, res.body).toBe(200);
    const results = res.json().results;
    expect(results.map((r: { status: string }) => r.status)).toEqual(['applied', 'applied', 'rejected']);
    expect(results[2]).toMatchObject({ code: 'plan_limit_exceeded', transaction_id: null });
    expect(results[2].detail).toMatch(/10000/);
    // Pay As You Go has no monthly allowance: every event is paid for in credits.
    expect(results[2].detail).toMatch(/pay_as_you_go/);
    expect(await balance(o.id)).toMatchObject({
      available: '99.98',
      month_usage_events: 10_000,
      usage_events_limit: 10_000,
    });
    expect((await subscription(o.id)).limits.monthly_usage_events).toEqual({ used: 10_000, max: 10_000 });

    await setPlan(o.id, 'growth');
    expect((await balance(o.id)).usage_events_limit).toBe(1_000_000);
    const after = await usage(o.id, 1);
    expect(after.json().results[0].status).toBe('applied');
    expect((await balance(o.id)).month_usage_events).toBe(10_001);

    // This month's events are usage the lower plan would not allow.
    const before = await tableCounts(t.db);
    const down = await t.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'free' },
    });
    expect(expectProblem(down, 409, 'plan_downgrade_blocked').exceeded).toEqual([
      { limit: 'monthly_usage_events', used: 10_001, max: 10_000 },
    ]);
    expect(await tableCounts(t.db)).toEqual(before);

    await setPlan(o.id, 'enterprise');
    expect((await balance(o.id)).usage_events_limit).toBeNull();
    expect((await subscription(o.id)).limits.monthly_usage_events).toEqual({ used: 10_001, max: null });
    expect((await usage(o.id, 2)).json().results.map((r: { status: string }) => r.status)).toEqual([
      'applied',
      'applied',
    ]);
    expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('the monthly allowance', () => {
  it('starts over in a new calendar month', async () => {
    const o = await org('Last Month Heavy Co');
    await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/credits/add`,
      payload: { amount: '10' },
    });
    const d = new Date();
    const lastMonth = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 15))
      .toISOString()
      .slice(0, 7);
    await sql`update ledger_accounts set month_events = 10000, spend_month = ${lastMonth}
      where organization_id = ${o.id} and code = 'credits'`.execute(t.db.db);
    expect(await balance(o.id)).toMatchObject({ month_usage_events: 0, usage_events_limit: 10_000 });
    expect((await subscription(o.id)).limits.monthly_usage_events).toEqual({ used: 0, max: 10_000 });
    const res = await usage(o.id, 2);
    expect(res.json().results.map((r: { status: string }) => r.status)).toEqual(['applied', 'applied']);
    expect((await balance(o.id)).month_usage_events).toBe(2);
  });
});

describe('the sub-organization limit', () => {
  it('refuses the 51st sub-organization on Business with 402, reporting the 50 in use', async () => {
    const parent = await org('Umbrella Corp');
    await setPlan(parent.id, 'business');
    for (let i = 0; i < 50; i++) {
      const res = await t.call({
        method: 'POST',
        url: `/api/organizations/${parent.id}/sub-organizations`,
        payload: { name: `Umbrella Branch ${i}` },
      });
      expect(res.statusCode, res.body).toBe(201);
    }
    expect((await subscription(parent.id)).limits.sub_organizations).toEqual({ used: 50, max: 50 });
    const before = await tableCounts(t.db);
    const res = await t.call({
      method: 'POST',
      url: `/api/organizations/${parent.id}/sub-organizations`,
      payload: { name: 'Umbrella Branch 51' },
    });
    const problem = expectProblem(res, 402, 'plan_limit_exceeded');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await subscription(parent.id)).limits.sub_organizations).toEqual({ used: 50, max: 50 });
    expect(problem).toMatchObject({
      limit: 'sub_organizations',
      plan: 'business',
      max: 50,
      upgrade_to: 'enterprise',
    });
    // BUG: the problem counts the refused sub-organization as in use ("51 in use", used: 51)
    // although only 50 exist, unlike the agents and members limits which report what exists.
    expect(problem.used).toBe(50);
    expect(problem.detail).toContain('50 in use');
  });
});

describe('who may change the plan', () => {
  it('refuses developers and managers (403) and outsiders (404); a read API key reads subscription and features', async () => {
    const owner = await signUp('Perm Owner');
    const o = await ownedOrg(owner, 'Permission Matters');
    const dev = await signUp('Perm Developer');
    const manager = await signUp('Perm Manager');
    const admin = await signUp('Perm Admin');
    const outsider = await signUp('Perm Outsider');
    await addMember(o.id, dev.email, 'developer');
    await addMember(o.id, manager.email, 'manager');
    await addMember(o.id, admin.email, 'admin');

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
        expect(res.statusCode, `${user.email} ${req.method} ${req.url}: ${res.body}`).toBe(status);
        expect(res.json().code).toBe(code);
      }
    expect(await tableCounts(t.db)).toEqual(before);

    // A manager reads the subscription; a developer (no subscription:read) does not, but reads features.
    expect((await subscription(o.id, manager.call)).plan).toBe('free');
    expectProblem(await dev.call({ method: 'GET', url: base }), 403, 'forbidden');
    expect((await dev.call({ method: 'GET', url: `/api/organizations/${o.id}/features` })).statusCode).toBe(
      200,
    );
    expectProblem(await outsider.call({ method: 'GET', url: base }), 404, 'not_found');

    const key = await owner.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/api-keys`,
      payload: { name: 'reader', scopes: ['read'] },
    });
    expect(key.statusCode, key.body).toBe(201);
    const asKey = (opts: InjectOptions) =>
      t.app.inject({ ...opts, headers: { authorization: `Bearer ${key.json().key}` } });
    expect((await subscription(o.id, asKey)).plan).toBe('free');
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

describe('allow_overdraft', () => {
  it('lets a Free organization spend into its overdraft', async () => {
    const o = await org('Overdraft Free Co');
    const res = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { overdraft_enabled: true, overdraft_limit: '50' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ overdraft_enabled: true, overdraft_limit: '50', spendable: '50' });
    const spent = await usage(o.id, 1, '30');
    expect(spent.json().results[0]).toMatchObject({ status: 'applied', balance_after: '-30' });
    const over = await usage(o.id, 1, '20.01');
    expect(over.json().results[0]).toMatchObject({ status: 'rejected', code: 'insufficient_credits' });
    expect(await balance(o.id)).toMatchObject({ available: '-30', spendable: '20' });
  });

  it('is refused to a sub-organization its parent did not grant it, and withdrawn when revoked', async () => {
    const parent = await org('Overdraft Parent Co');
    await setPlan(parent.id, 'business');
    const created = await t.call({
      method: 'POST',
      url: `/api/organizations/${parent.id}/sub-organizations`,
      payload: { name: 'Tight Budget Sub', features: [] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const sub = created.json();
    const feats = (await t.call({ method: 'GET', url: `/api/organizations/${sub.id}/features` })).json();
    expect(feats.enabled).toEqual([]);
    expect(feats.features.find((f: { key: string }) => f.key === 'allow_overdraft')).toMatchObject({
      enabled: false,
      in_plan: true,
      granted: false,
      parent_has: true,
    });

    const enable = () =>
      t.call({
        method: 'PATCH',
        url: `/api/organizations/${sub.id}/credit-settings`,
        payload: { overdraft_enabled: true, overdraft_limit: '10' },
      });
    const before = await tableCounts(t.db);
    const auditBefore = (await auditLog(sub.id)).length;
    expect(expectProblem(await enable(), 403, 'feature_not_enabled')).toMatchObject({
      feature: 'allow_overdraft',
      upgrade_to: null,
    });
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await auditLog(sub.id)).length).toBe(auditBefore);
    expect(await balance(sub.id)).toMatchObject({ overdraft_enabled: false, overdraft_limit: '0' });
    // Without overdraft the floor is zero.
    expect((await usage(sub.id, 1, '1')).json().results[0].code).toBe('insufficient_credits');

    // Granted, it works; revoked, the ledger withdraws it.
    const grant = await t.call({
      method: 'PUT',
      url: `/api/organizations/${sub.id}/features`,
      payload: { features: ['allow_overdraft'] },
    });
    expect(grant.statusCode, grant.body).toBe(200);
    const ok = await enable();
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ overdraft_enabled: true, spendable: '10' });
    expect((await usage(sub.id, 1, '4')).json().results[0]).toMatchObject({
      status: 'applied',
      balance_after: '-4',
    });
    const revoke = await t.call({
      method: 'PUT',
      url: `/api/organizations/${sub.id}/features`,
      payload: { features: [] },
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expect((await balance(sub.id)).overdraft_enabled).toBe(false);
    expect((await usage(sub.id, 1, '1')).json().results[0].code).toBe('insufficient_credits');

    // The parent cannot fall below Business while it has a sub-organization.
    const down = await t.call({
      method: 'PUT',
      url: `/api/organizations/${parent.id}/subscription`,
      payload: { plan: 'growth' },
    });
    expect(expectProblem(down, 409, 'plan_downgrade_blocked').exceeded).toEqual([
      { limit: 'sub_organizations', used: 1, max: 0 },
    ]);
  });
});

describe('customization', () => {
  it('needs custom_branding: Free answers 403 feature_not_enabled, writing nothing', async () => {
    const owner = await signUp('Plain Owner');
    const o = await ownedOrg(owner, 'Plain Vanilla');
    const got = await owner.call({ method: 'GET', url: `/api/organizations/${o.id}/customization` });
    expect(got.statusCode, got.body).toBe(200);
    expect(got.json()).toEqual({
      organization_id: o.id,
      name: 'Plain Vanilla',
      display_name: null,
      logo_url: null,
      primary_color: null,
    });
    const before = await tableCounts(t.db);
    const put = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/customization`,
      payload: { display_name: 'Fancy', primary_color: '#aabbcc' },
    });
    expect(expectProblem(put, 403, 'feature_not_enabled')).toMatchObject({
      feature: 'custom_branding',
      plan: 'free',
      upgrade_to: 'growth',
    });
    expect(await tableCounts(t.db)).toEqual(before);
    expect(
      (await owner.call({ method: 'GET', url: `/api/organizations/${o.id}/customization` })).json(),
    ).toEqual(got.json());
  });

  it('on Growth brands the invitation mail with the display name, logo and colour', async () => {
    const owner = await signUp('Brand Owner');
    const o = await ownedOrg(owner, 'Generic Holdings');
    await setPlan(o.id, 'growth');
    const url = `/api/organizations/${o.id}/customization`;
    const put = await owner.call({
      method: 'PUT',
      url,
      payload: {
        display_name: 'Brandy & Co',
        logo_url: 'https://cdn.brand.test/logo.png',
        primary_color: '#aabbcc',
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const custom = {
      organization_id: o.id,
      name: 'Brandy & Co',
      display_name: 'Brandy & Co',
      logo_url: 'https://cdn.brand.test/logo.png',
      primary_color: '#aabbcc',
    };
    expect(put.json()).toEqual(custom);
    expect((await owner.call({ method: 'GET', url })).json()).toEqual(custom);
    expect((await auditLog(o.id))[0]).toMatchObject({
      action: 'organization.customized',
      changes: { display_name: { before: null, after: 'Brandy & Co' } },
    });

    const invited = await owner.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/invitations`,
      payload: { email: 'branded-invitee@plans.test', role: 'developer' },
    });
    expect(invited.statusCode, invited.body).toBe(201);
    const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
    expect(box.statusCode, box.body).toBe(200);
    const mail = box.json().data.find((m: { to: string }) => m.to === 'branded-invitee@plans.test');
    expect(mail).toBeDefined();
    expect(mail.subject).toBe('Brand Owner invited you to join Brandy & Co');
    expect(mail.subject).not.toContain('Generic Holdings');
    expect(mail.html).toContain('Brandy &#38; Co');
    expect(mail.html).not.toContain('Generic Holdings');
    expect(mail.html).toMatch(/<img src="https:\/\/cdn\.brand\.test\/logo\.png"/);
    expect(mail.html).toContain('border-top:4px solid #aabbcc');
    expect(mail.html).toContain('background:#aabbcc');
    expect(mail.text).toContain('to join Brandy & Co as developer');

    // The accept page's preview shows the same brand.
    const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail.html)?.[1];
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode, preview.body).toBe(200);
    expect(preview.json().organization.branding).toMatchObject({
      display_name: 'Brandy & Co',
      logo_url: 'https://cdn.brand.test/logo.png',
      primary_color: '#aabbcc',
    });

    const page = await t.app.inject({ method: 'GET', url: `/invitations/${token}` });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<h1>Join Brandy &#38; Co</h1>');
    expect(page.body).toContain('border-top:4px solid #aabbcc');

    // Bad input answers 400 naming the field and changes nothing.
    for (const [payload, field] of [
      [{ logo_url: 'http://cdn.brand.test/logo.png' }, 'logo_url'],
      [{ logo_url: 'not a url' }, 'logo_url'],
      [{ primary_color: 'red' }, 'primary_color'],
      [{ primary_color: '#abcd' }, 'primary_color'],
      [{ display_name: '' }, 'display_name'],
      [{ favicon: 'https://cdn.brand.test/f.ico' }, 'favicon'],
    ] as const) {
      const before = await tableCounts(t.db);
      const res = await owner.call({ method: 'PUT', url, payload });
      expectProblem(res, 400, 'validation_failed');
      expect(
        res.json().errors.map((e: { field: string }) => e.field),
        JSON.stringify(payload),
      ).toContain(field);
      expect(await tableCounts(t.db)).toEqual(before);
      expect((await owner.call({ method: 'GET', url })).json()).toEqual(custom);
    }

    // Fields left out fall back to the defaults.
    const reset = await owner.call({ method: 'PUT', url, payload: { primary_color: '#123' } });
    expect(reset.statusCode, reset.body).toBe(200);
    expect(reset.json()).toEqual({
      organization_id: o.id,
      name: 'Generic Holdings',
      display_name: null,
      logo_url: null,
      primary_color: '#123',
    });

    // A developer may read it but not change it.
    const dev = await signUp('Brand Developer');
    await addMember(o.id, dev.email, 'developer');
    expect((await dev.call({ method: 'GET', url })).statusCode).toBe(200);
    expectProblem(
      await dev.call({ method: 'PUT', url, payload: { primary_color: '#000000' } }),
      403,
      'forbidden',
    );
  });
});

describe('the default (internal) organization', () => {
  // Its own app: this changes the organization every agent without one belongs to.
  let d: TestContext;
  beforeAll(async () => {
    d = await createTestApp();
  });
  afterAll(() => d?.close());

  it('is on Enterprise and stays unlimited, so agents can always return to it', async () => {
    const sub = await d.call({ method: 'GET', url: '/api/organizations/internal/subscription' });
    expect(sub.statusCode, sub.body).toBe(200);
    expect(sub.json()).toMatchObject({ plan: 'enterprise', limits: { agents: { max: null } } });
    for (let i = 0; i < 6; i++) {
      const res = await d.call({ method: 'POST', url: '/api/agents', payload: { name: `Unassigned ${i}` } });
      expect(res.statusCode, res.body).toBe(201);
    }
    const elsewhere = (
      await d.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Elsewhere' } })
    ).json();
    const agentThere = await d.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Homebound', organization_id: elsewhere.id },
    });
    expect(agentThere.statusCode, agentThere.body).toBe(201);

    // The operator cancels its subscription (whatever the answer), and the period ends.
    await d.call({ method: 'POST', url: '/api/organizations/internal/subscription/cancel' });
    await d.app.services.plans.renewDue(new Date(Date.now() + 40 * DAY));

    // BUG: the cancellation is accepted and renewal drops the internal organization to Free
    // (5 agents, 10,000 events a month), so unassigning an agent or creating one without an
    // organization answers 402 plan_limit_exceeded. The default organization "is never limited
    // by a plan" (migration 0008; README: "the internal organization on Enterprise").
    const internal = await d.call({ method: 'GET', url: '/api/organizations/internal' });
    expect(internal.json().plan).toBe('enterprise');
    const back = await d.call({ method: 'POST', url: `/api/agents/${agentThere.json().id}/unassign-org` });
    expect(back.statusCode, back.body).toBe(200);
    const created = await d.call({ method: 'POST', url: '/api/agents', payload: { name: 'One more' } });
    expect(created.statusCode, created.body).toBe(201);
  });
});

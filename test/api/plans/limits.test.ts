import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  createAgent,
  createOrg,
  createSubOrg,
  PASSWORD,
  readBalance,
  setPlan,
  signUp,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../../harness.js';
import { createPlansApp, DAY, invitationToken, newAgent, subscription, usage } from './support.js';

/**
 * The limits a plan sets and where they bite: agents, members (added, invited, accepting),
 * monthly usage events, sub-organizations; and the default organization, never limited.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createPlansApp();
});
afterAll(() => t?.close());

describe('limits', () => {
  it('refuses a sixth agent on Free with 402 plan_limit_exceeded naming the limit and the plan that lifts it', async () => {
    const o = await createOrg(t, { name: 'Agent Cap Co' });
    for (let i = 0; i < 5; i++) await createAgent(t, { organization_id: o.id });
    const before = await tableCounts(t.db);
    const problem = expectProblem(await newAgent(t, o.id), 402, 'plan_limit_exceeded');
    expect(problem).toMatchObject({ limit: 'agents', plan: 'free', max: 5, used: 5, upgrade_to: 'starter' });
    expect(await tableCounts(t.db)).toEqual(before);

    // Assigning an agent from elsewhere into the full organization is refused the same way.
    const stray = await createAgent(t);
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
    await setPlan(t, o.id, 'starter');
    const moved = await t.call({
      method: 'POST',
      url: `/api/agents/${stray.id}/assign-org`,
      payload: { organization_id: o.id },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect((await subscription(t, o.id)).limits.agents).toEqual({ used: 6, max: 20 });
  });

  it('refuses a sixth member on Free, added or invited, with 402 naming members', async () => {
    const owner = await signUp(t, { name: 'Crowded Owner' });
    const o = await createOrg(t, { by: owner, name: 'Crowded House' });
    for (let i = 0; i < 4; i++)
      await addMember(t, o.id, { email: (await signUp(t, { name: `Member ${i}` })).email }, 'developer');
    expect((await subscription(t, o.id)).limits.members).toEqual({ used: 5, max: 5 });

    const extra = await signUp(t, { name: 'One Too Many' });
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

    await setPlan(t, o.id, 'starter');
    const ok = await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/members`,
      payload: { email: extra.email, role: 'developer' },
    });
    expect(ok.statusCode, ok.body).toBe(201);
    expect((await subscription(t, o.id)).limits.members).toEqual({ used: 6, max: 10 });
  });

  it('refuses accepting an invitation into a full organization without leaving an account behind', async () => {
    const owner = await signUp(t, { name: 'Door Owner' });
    const o = await createOrg(t, { by: owner, name: 'Revolving Door' });
    for (let i = 0; i < 3; i++)
      await addMember(t, o.id, { email: (await signUp(t, { name: `Door Member ${i}` })).email }, 'developer');
    expect((await subscription(t, o.id)).limits.members).toEqual({ used: 4, max: 5 });

    // With room for one, two invitations go out; the second to be accepted finds the plan full.
    const tokens: string[] = [];
    for (const email of ['first-in@plans.test', 'second-in@plans.test']) {
      const res = await owner.call({
        method: 'POST',
        url: `/api/organizations/${o.id}/invitations`,
        payload: { email, role: 'agent' },
      });
      expect(res.statusCode, res.body).toBe(201);
      tokens.push(await invitationToken(t, email));
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
    expect((await subscription(t, o.id)).limits.members).toEqual({ used: 5, max: 5 });
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
    await setPlan(t, o.id, 'starter');
    const second = await accept(tokens[1]);
    expect(second.statusCode, second.body).toBe(200);
    expect((await subscription(t, o.id)).limits.members).toEqual({ used: 6, max: 10 });
  });

  it('rejects the usage event past the monthly allowance per event, applying the others; upgrading lifts it', async () => {
    const o = await createOrg(t, { name: 'Busy Events Co' });
    await addCredits(t, o.id, '100');
    const month = new Date().toISOString().slice(0, 7);
    // Nearly a month's worth, without sending 9,998 events.
    await sql`update ledger_accounts set month_events = 9998, spend_month = ${month}
      where organization_id = ${o.id} and code = 'credits'`.execute(t.db.db);
    expect(await readBalance(t, o.id)).toMatchObject({
      month_usage_events: 9998,
      usage_events_limit: 10_000,
    });

    const res = await usage(t, o.id, 3);
    expect(res.statusCode, res.body).toBe(200);
    const results = res.json().results;
    expect(results.map((r: { status: string }) => r.status)).toEqual(['applied', 'applied', 'rejected']);
    expect(results[2]).toMatchObject({ code: 'plan_limit_exceeded', transaction_id: null });
    expect(results[2].detail).toMatch(/10000/);
    // Pay As You Go has no monthly allowance: every event is paid for in credits.
    expect(results[2].detail).toMatch(/pay_as_you_go/);
    expect(await readBalance(t, o.id)).toMatchObject({
      available: '99.98',
      month_usage_events: 10_000,
      usage_events_limit: 10_000,
    });
    expect((await subscription(t, o.id)).limits.monthly_usage_events).toEqual({ used: 10_000, max: 10_000 });

    await setPlan(t, o.id, 'growth');
    expect((await readBalance(t, o.id)).usage_events_limit).toBe(1_000_000);
    const after = await usage(t, o.id, 1);
    expect(after.json().results[0].status).toBe('applied');
    expect((await readBalance(t, o.id)).month_usage_events).toBe(10_001);

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

    await setPlan(t, o.id, 'enterprise');
    expect((await readBalance(t, o.id)).usage_events_limit).toBeNull();
    expect((await subscription(t, o.id)).limits.monthly_usage_events).toEqual({ used: 10_001, max: null });
    expect((await usage(t, o.id, 2)).json().results.map((r: { status: string }) => r.status)).toEqual([
      'applied',
      'applied',
    ]);
    expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('the monthly allowance', () => {
  it('starts over in a new calendar month', async () => {
    const o = await createOrg(t, { name: 'Last Month Heavy Co' });
    await addCredits(t, o.id, '10');
    const d = new Date();
    const lastMonth = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, 15))
      .toISOString()
      .slice(0, 7);
    await sql`update ledger_accounts set month_events = 10000, spend_month = ${lastMonth}
      where organization_id = ${o.id} and code = 'credits'`.execute(t.db.db);
    expect(await readBalance(t, o.id)).toMatchObject({ month_usage_events: 0, usage_events_limit: 10_000 });
    expect((await subscription(t, o.id)).limits.monthly_usage_events).toEqual({ used: 0, max: 10_000 });
    const res = await usage(t, o.id, 2);
    expect(res.json().results.map((r: { status: string }) => r.status)).toEqual(['applied', 'applied']);
    expect((await readBalance(t, o.id)).month_usage_events).toBe(2);
  });
});

describe('the sub-organization limit', () => {
  it('refuses the 51st sub-organization on Business with 402, reporting the 50 in use', async () => {
    const parent = await createOrg(t, { name: 'Umbrella Corp' });
    await setPlan(t, parent.id, 'business');
    for (let i = 0; i < 50; i++) await createSubOrg(t, parent.id, { name: `Umbrella Branch ${i}` });
    expect((await subscription(t, parent.id)).limits.sub_organizations).toEqual({ used: 50, max: 50 });
    const before = await tableCounts(t.db);
    const res = await t.call({
      method: 'POST',
      url: `/api/organizations/${parent.id}/sub-organizations`,
      payload: { name: 'Umbrella Branch 51' },
    });
    const problem = expectProblem(res, 402, 'plan_limit_exceeded');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await subscription(t, parent.id)).limits.sub_organizations).toEqual({ used: 50, max: 50 });
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

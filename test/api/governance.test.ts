import { readFileSync } from 'node:fs';
import type { LightMyRequestResponse } from 'fastify';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PlanKey } from '../../src/modules/plans/plans.catalog.js';
import {
  addCredits,
  type Call,
  createOrg,
  createSubOrg,
  readBalance,
  setPlan,
  signUp,
  type User,
} from '../factories.js';
import { createTestApp, expectProblem, onPostgres, type TestContext, tableCounts } from '../harness.js';

/**
 * Issue 12: another tenant's agent or team is a 404; credits move within one tree of
 * organizations; overdraft limits are capped by the plan; plans with a fee are the operator's
 * (PLAN_CHANGES); an inactive organization suspends its agents; the seeds' field names; billing
 * says when it projects; the plan's limit of organizations per account; Pay As You Go.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t?.close());

let n = 0;
async function ok(res: LightMyRequestResponse | Promise<LightMyRequestResponse>, status = 200) {
  const r = await res;
  expect(r.statusCode, r.body.slice(0, 600)).toBe(status);
  return r.json();
}

/** A membership written straight to the table: the members API is not what is under test. */
async function member(orgId: string, user: User, role: string, ctx = t) {
  await ctx.db.db.insertInto('members').values({ organization_id: orgId, user_id: user.id, role }).execute();
}

async function newAgent(orgId: string, as: Call = t.call, extra: Record<string, unknown> = {}) {
  return ok(
    as({
      method: 'POST',
      url: '/api/agents',
      payload: { name: `Agent ${++n}`, organization_id: orgId, ...extra },
    }),
    201,
  );
}

function usageEvent(as: Call, event: Record<string, unknown>) {
  return as({
    method: 'POST',
    url: '/api/usage',
    payload: { events: [{ credits: '1', idempotency_key: `gov-${++n}`, ...event }] },
  });
}

// ---------------------------------------------------------------------------------------------

describe("another tenant's agent or team", () => {
  it('is a 404 on a usage event, as an unknown one is; 409 only where the caller sees its organization', async () => {
    const alice = await signUp(t);
    const mine = await createOrg(t, { by: alice });
    const mineToo = await createOrg(t, { by: alice });
    const theirs = await createOrg(t);
    for (const o of [mine, mineToo]) await addCredits(t, o.id, '100');
    const foreign = await newAgent(theirs.id);
    const ownOther = await newAgent(mineToo.id);

    const before = await readBalance(t, mine.id);
    const codes = [];
    for (const agent_id of [foreign.id, 'agt_unknown', ownOther.id]) {
      const res = await ok(usageEvent(alice.call, { organization_id: mine.id, agent_id }));
      codes.push(res.results[0].code);
    }
    expect(codes).toEqual(['not_found', 'not_found', 'agent_not_in_organization']);
    // The unknown and the foreign agent answer alike: nothing tells them apart.
    const detail = async (agent_id: string) =>
      (await ok(usageEvent(alice.call, { organization_id: mine.id, agent_id }))).results[0].detail;
    expect(await detail(foreign.id)).toBe(`No agent "${foreign.id}"`);
    expect(await detail('agt_nobody')).toBe('No agent "agt_nobody"');
    // The operator sees every organization: the precise answer.
    const op = await ok(usageEvent(t.call, { organization_id: mine.id, agent_id: foreign.id }));
    expect(op.results[0].code).toBe('agent_not_in_organization');
    expect((await readBalance(t, mine.id)).available).toBe(before.available);
  });

  it('is a 404 for a team on a deduction and on a usage event; 409 for a team of another of your organizations', async () => {
    const bob = await signUp(t);
    const mine = await createOrg(t, { by: bob });
    const mineToo = await createOrg(t, { by: bob });
    const theirs = await createOrg(t);
    await addCredits(t, mine.id, '100');
    const foreignTeam = await ok(
      t.call({ method: 'POST', url: '/api/teams', payload: { name: 'Theirs', organization_id: theirs.id } }),
      201,
    );
    const ownTeam = await ok(
      t.call({ method: 'POST', url: '/api/teams', payload: { name: 'Own', organization_id: mineToo.id } }),
      201,
    );
    const loose = await ok(t.call({ method: 'POST', url: '/api/teams', payload: { name: 'Loose' } }), 201);
    const deduct = (team_id: string) =>
      bob.call({
        method: 'POST',
        url: `/api/organizations/${mine.id}/credits/deduct`,
        payload: { amount: '1', team_id },
      });
    const before = await tableCounts(t.db);
    const foreign = expectProblem(await deduct(foreignTeam.id), 404, 'not_found');
    const unknown = expectProblem(await deduct('tem_unknown'), 404, 'not_found');
    expect(foreign.detail).toBe(`No team "${foreignTeam.id}"`);
    expect(unknown.detail).toBe('No team "tem_unknown"');
    expectProblem(await deduct(loose.id), 404, 'not_found');
    expectProblem(await deduct(ownTeam.id), 409, 'team_not_in_organization');
    expect(await tableCounts(t.db)).toEqual(before);

    const event = await ok(usageEvent(bob.call, { organization_id: mine.id, team_id: foreignTeam.id }));
    expect(event.results[0]).toMatchObject({ status: 'rejected', code: 'not_found' });
    const own = await ok(usageEvent(bob.call, { organization_id: mine.id, team_id: ownTeam.id }));
    expect(own.results[0]).toMatchObject({ status: 'rejected', code: 'team_not_in_organization' });
  });

  it('is a 404 when assigning another tenant’s agent', async () => {
    const carol = await signUp(t);
    const mine = await createOrg(t, { by: carol });
    const foreign = await newAgent((await createOrg(t)).id);
    const res = await carol.call({
      method: 'POST',
      url: `/api/agents/${foreign.id}/assign-org`,
      payload: { organization_id: mine.id },
    });
    expectProblem(res, 404, 'not_found');
  });
});

describe('transfers', () => {
  it('go within one tree of organizations; to an unrelated organization, even your own, 403 naming to_organization_id', async () => {
    const admin = await signUp(t);
    const top = await createOrg(t);
    await setPlan(t, top.id, 'business');
    await member(top.id, admin, 'admin');
    const own = await createOrg(t, { by: admin });
    const child = await createSubOrg(t, top.id);
    const sibling = await createSubOrg(t, top.id);
    await addCredits(t, top.id, '50');
    const transfer = (from: string, to: string, amount = '5') =>
      admin.call({
        method: 'POST',
        url: `/api/organizations/${from}/credits/transfer`,
        payload: { to_organization_id: to, amount },
      });

    const before = await tableCounts(t.db);
    const refused = expectProblem(await transfer(top.id, own.id), 403, 'outside_organization_tree');
    expect(refused.errors).toEqual([{ field: 'to_organization_id', message: expect.any(String) }]);
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await readBalance(t, top.id)).available).toBe('50');
    // From one's own organization into the tree is refused just the same.
    await addCredits(t, own.id, '5');
    expectProblem(await transfer(own.id, top.id), 403, 'outside_organization_tree');

    // Down the tree, across it, and back up.
    await ok(transfer(top.id, child.id, '10'), 201);
    await ok(transfer(child.id, sibling.id, '4'), 201);
    await ok(transfer(sibling.id, top.id, '1'), 201);
    expect((await readBalance(t, top.id)).available).toBe('41');
    expect((await readBalance(t, child.id)).available).toBe('6');
    expect((await readBalance(t, sibling.id)).available).toBe('3');

    // The operator moves credits anywhere.
    await ok(
      t.call({
        method: 'POST',
        url: `/api/organizations/${top.id}/credits/transfer`,
        payload: { to_organization_id: own.id, amount: '1' },
      }),
      201,
    );
    expect((await readBalance(t, own.id)).available).toBe('6');
  });

  // PGlite runs one transaction at a time: the lock the test holds would stop everything.
  it.skipIf(!onPostgres)(
    'are checked in the ledger transaction: a detach that commits while a transfer waits for its lock refuses it (403)',
    async () => {
      const admin = await signUp(t);
      const top = await createOrg(t);
      await setPlan(t, top.id, 'business');
      await member(top.id, admin, 'admin');
      const child = await createSubOrg(t, top.id);
      await addCredits(t, top.id, '50');
      let locked!: () => void;
      const held = new Promise<void>((resolve) => {
        locked = resolve;
      });
      let release!: () => void;
      const released = new Promise<void>((resolve) => {
        release = resolve;
      });
      // Holds the sender's credits row, as a long batch would: the transfer, its tree checked
      // before the ledger, waits for it.
      const holder = t.db.db.transaction().execute(async (tx) => {
        await sql`select 1 from ledger_accounts where organization_id = ${top.id} and code = 'credits' for update`.execute(
          tx,
        );
        locked();
        await released;
      });
      await held;
      const transfer = admin.call({
        method: 'POST',
        url: `/api/organizations/${top.id}/credits/transfer`,
        payload: { to_organization_id: child.id, amount: '5' },
      });
      for (let waiting = 0; waiting === 0; ) {
        await new Promise((r) => setTimeout(r, 10));
        const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock'`.execute(t.db.db);
        waiting = rows[0]?.n ?? 0;
      }
      // On its own plan, the detach leaves the child's credits row alone: it commits meanwhile.
      await ok(
        t.call({
          method: 'POST',
          url: `/api/organizations/${top.id}/sub-organizations/${child.id}/detach`,
          payload: { plan: 'business' },
        }),
      );
      release();
      await holder;
      expectProblem(await transfer, 403, 'outside_organization_tree');
      expect((await readBalance(t, top.id)).available).toBe('50');
      expect((await readBalance(t, child.id)).available).toBe('0');
    },
  );
});

describe('overdraft limits', () => {
  it('are capped by the plan: a manager on Free cannot set 10^12 (402 naming the limit), writing nothing', async () => {
    const manager = await signUp(t);
    const o = await createOrg(t);
    await member(o.id, manager, 'manager');
    const patch = (payload: Record<string, unknown>) =>
      manager.call({ method: 'PATCH', url: `/api/organizations/${o.id}/credit-settings`, payload });

    const before = await tableCounts(t.db);
    const huge = expectProblem(
      await patch({ overdraft_enabled: true, overdraft_limit: '1000000000000' }),
      402,
      'plan_limit_exceeded',
    );
    expect(huge).toMatchObject({
      limit: 'overdraft_limit',
      plan: 'free',
      max: '100',
      requested: '1000000000000',
      upgrade_to: 'enterprise',
      errors: [{ field: 'overdraft_limit', message: expect.stringContaining('100') }],
    });
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await readBalance(t, o.id)).toMatchObject({ overdraft_enabled: false, overdraft_limit: '0' });
    expect(
      expectProblem(await patch({ overdraft_limit: '100.000001' }), 402, 'plan_limit_exceeded').upgrade_to,
    ).toBe('starter');

    // At the cap is fine.
    const set = await ok(patch({ overdraft_enabled: true, overdraft_limit: '100' }));
    expect(set).toMatchObject({ overdraft_enabled: true, overdraft_limit: '100', spendable: '100' });
  });

  it('follow the plan: a higher plan lifts the cap, a downgrade lowers the limit to the new cap, audited', async () => {
    const o = await createOrg(t);
    await setPlan(t, o.id, 'growth');
    const settings = (payload: Record<string, unknown>) =>
      t.call({ method: 'PATCH', url: `/api/organizations/${o.id}/credit-settings`, payload });
    await ok(settings({ overdraft_enabled: true, overdraft_limit: '10000' }));
    expectProblem(await settings({ overdraft_limit: '10001' }), 402, 'plan_limit_exceeded');

    await setPlan(t, o.id, 'starter');
    expect(await readBalance(t, o.id)).toMatchObject({ overdraft_enabled: true, overdraft_limit: '1000' });
    const audit = await ok(t.call({ method: 'GET', url: `/api/organizations/${o.id}/audit-log` }));
    expect(audit.data).toContainEqual(
      expect.objectContaining({
        action: 'credits.settings_changed',
        changes: { overdraft_limit: { before: '10000', after: '1000' } },
      }),
    );
    // Enterprise has no cap.
    await setPlan(t, o.id, 'enterprise');
    await ok(settings({ overdraft_limit: '1000000000000' }));
  });

  it('stay within the plan when a downgrade commits between the checks and the write of a settings change (402)', async () => {
    const o = await createOrg(t);
    await setPlan(t, o.id, 'growth');
    // A guard of the test's, run after the plan's check (passed, on Growth): the request waits
    // there while the downgrade to Starter commits, then writes.
    let arrived!: () => void;
    const atGate = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    t.app.services.ledger.guardSettings(async (_ctx, id) => {
      if (id !== o.id) return;
      arrived();
      await gate;
    });
    const settings = t.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { overdraft_limit: '10000' },
    });
    await atGate;
    await setPlan(t, o.id, 'starter');
    open();
    const refused = expectProblem(await settings, 402, 'plan_limit_exceeded');
    expect(refused).toMatchObject({ limit: 'overdraft_limit', plan: 'starter', max: '1000' });
    expect((await readBalance(t, o.id)).overdraft_limit).toBe('0');
  });
});

describe('plan changes (PLAN_CHANGES=operator, the default)', () => {
  it('refuse an owner a plan with a fee (403 naming plan), writing nothing; the operator gives it', async () => {
    const owner = await signUp(t);
    const o = await createOrg(t, { by: owner });
    const put = (plan: string, as: Call = owner.call) =>
      as({ method: 'PUT', url: `/api/organizations/${o.id}/subscription`, payload: { plan } });

    const before = await tableCounts(t.db);
    for (const plan of ['enterprise', 'starter']) {
      const refused = expectProblem(await put(plan), 403, 'plan_change_requires_operator');
      expect(refused.errors).toEqual([{ field: 'plan', message: expect.any(String) }]);
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect(
      (await ok(owner.call({ method: 'GET', url: `/api/organizations/${o.id}/subscription` }))).plan,
    ).toBe('free');

    // Plans without a fee are the owner's to choose.
    expect((await ok(put('pay_as_you_go'))).plan).toBe('pay_as_you_go');
    expect((await ok(put('free'))).plan).toBe('free');

    // The operator puts it on a paid plan; the owner may cancel it (a downgrade at the period's
    // end) and undo that, which keeps only what the operator gave.
    expect((await ok(put('business', t.call))).plan).toBe('business');
    const cancel = await ok(
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/cancel` }),
    );
    expect(cancel).toMatchObject({ plan: 'business', cancel_at_period_end: true });
    const back = await ok(
      owner.call({ method: 'POST', url: `/api/organizations/${o.id}/subscription/reactivate` }),
    );
    expect(back).toMatchObject({ plan: 'business', cancel_at_period_end: false });
    // Changing the cycle of a paid plan is a plan change too.
    const cycle = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'business', billing_cycle: 'annual' },
    });
    expectProblem(cycle, 403, 'plan_change_requires_operator');
  });

  it('refuse detaching a sub-organization onto a plan with a fee', async () => {
    const owner = await signUp(t);
    const top = await createOrg(t, { by: owner });
    await setPlan(t, top.id, 'business');
    const child = await createSubOrg(t, top.id, { by: owner });
    const detach = (plan?: string) =>
      owner.call({
        method: 'POST',
        url: `/api/organizations/${top.id}/sub-organizations/${child.id}/detach`,
        // Its creator stays its owner (the parent side's people leave it otherwise).
        payload: { keep_members: [owner.id], ...(plan ? { plan } : {}) },
      });
    const before = await tableCounts(t.db);
    expectProblem(await detach('enterprise'), 403, 'plan_change_requires_operator');
    expect(await tableCounts(t.db)).toEqual(before);
    const detached = await detach();
    expect(detached.statusCode, detached.body).toBe(200);
  });
});

describe('plan changes with PLAN_CHANGES=owners', () => {
  let u: TestContext;
  beforeAll(async () => {
    u = await createTestApp({ planChanges: 'owners' });
  });
  afterAll(() => u?.close());

  it('let an owner choose any plan', async () => {
    const owner = await signUp(u);
    const o = await ok(
      owner.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Self-serve' } }),
      201,
    );
    const res = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/subscription`,
      payload: { plan: 'enterprise' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().plan).toBe('enterprise');
  });
});

describe('an inactive organization', () => {
  it('shows its agents suspended, and gives them back their own status when reactivated', async () => {
    const o = await createOrg(t);
    const a = await newAgent(o.id);
    const p = await newAgent(o.id, t.call, { status: 'paused' });
    const toggle = () => ok(t.call({ method: 'POST', url: `/api/organizations/${o.id}/toggle` }));
    const status = async (id: string) =>
      (await ok(t.call({ method: 'GET', url: `/api/agents/${id}` }))).status;

    expect((await toggle()).active).toBe(false);
    expect([await status(a.id), await status(p.id)]).toEqual(['suspended', 'suspended']);
    const listed = await ok(t.call({ method: 'GET', url: `/api/agents?organization_id=${o.id}` }));
    expect(listed.data.map((x: { status: string }) => x.status)).toEqual(['suspended', 'suspended']);
    const detail = await ok(t.call({ method: 'GET', url: `/api/organizations/${o.id}` }));
    expect(detail.agents.map((x: { status: string }) => x.status)).toEqual(['suspended', 'suspended']);

    expect((await toggle()).active).toBe(true);
    expect([await status(a.id), await status(p.id)]).toEqual(['active', 'paused']);
  });

  it('takes no new agents, created or assigned (403 organization_inactive), writing nothing', async () => {
    const o = await createOrg(t);
    const elsewhere = await createOrg(t);
    const stray = await newAgent(elsewhere.id);
    await ok(t.call({ method: 'POST', url: `/api/organizations/${o.id}/toggle` }));
    const before = await tableCounts(t.db);
    const created = await t.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Late', organization_id: o.id },
    });
    expect(expectProblem(created, 403, 'organization_inactive').errors).toEqual([
      { field: 'organization_id', message: expect.any(String) },
    ]);
    const assigned = await t.call({
      method: 'POST',
      url: `/api/agents/${stray.id}/assign-org`,
      payload: { organization_id: o.id },
    });
    expectProblem(assigned, 403, 'organization_inactive');
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await ok(t.call({ method: 'GET', url: `/api/agents/${stray.id}` }))).organization_id).toBe(
      elsewhere.id,
    );
  });
});

describe("the seeds' field names", () => {
  it('POST /api/agents takes billingRate like PATCH does; both spellings at odds are a 400', async () => {
    const o = await createOrg(t);
    const a = await newAgent(o.id, t.call, { billingRate: '12.50' });
    expect(a).toMatchObject({ billing_rate: '12.50', effective_billing_rate: '12.50' });
    const same = await newAgent(o.id, t.call, { billingRate: '3', billing_rate: '3' });
    expect(same.billing_rate).toBe('3.00');
    const before = await tableCounts(t.db);
    const clash = await t.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Clash', organization_id: o.id, billing_rate: '1', billingRate: '2' },
    });
    expect(expectProblem(clash, 400, 'validation_failed').errors).toEqual([
      { field: 'billingRate', message: expect.any(String) },
    ]);
    const bad = await t.call({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Bad', organization_id: o.id, billingRate: '-1' },
    });
    expect(expectProblem(bad, 400, 'validation_failed').errors?.[0]?.field).toBe('billingRate');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('a deduction answers with its reason as both reason and description', async () => {
    const o = await createOrg(t);
    await addCredits(t, o.id, '100');
    const res = await ok(
      t.call({
        method: 'POST',
        url: `/api/organizations/${o.id}/credits/deduct`,
        payload: { amount: '2', reason: 'Manual correction' },
      }),
      201,
    );
    expect(res).toMatchObject({
      type: 'deduction',
      reason: 'Manual correction',
      description: 'Manual correction',
    });
    const bare = await ok(
      t.call({ method: 'POST', url: `/api/organizations/${o.id}/credits/deduct`, payload: { amount: '1' } }),
      201,
    );
    expect(bare).toMatchObject({ reason: null, description: null });
  });
});

describe('billing', () => {
  it('says when it projects: this month, with an agent still assigned, is billed to its end', async () => {
    const o = await createOrg(t);
    const billing = (month?: string) =>
      ok(
        t.call({ method: 'GET', url: `/api/organizations/${o.id}/billing${month ? `?month=${month}` : ''}` }),
      );
    expect((await billing()).projected).toBe(false);
    const a = await newAgent(o.id);
    const now = await billing();
    expect(now.projected).toBe(true);
    expect(now.data).toEqual([expect.objectContaining({ agent_id: a.id, projected: true })]);
    const summary = await ok(t.call({ method: 'GET', url: `/api/organizations/${o.id}/billing-summary` }));
    expect(summary.data[0]).toMatchObject({ month: now.month, projected: true });
    const platform = await ok(t.call({ method: 'GET', url: '/api/billing-summary' }));
    expect(platform.projected).toBe(true);
    // A past month is billed as it was.
    expect((await billing('2020-01')).projected).toBe(false);
    // Unassigned (moved back to the internal organization): its days here are over.
    await ok(t.call({ method: 'POST', url: `/api/agents/${a.id}/unassign-org` }));
    const after = await billing();
    expect(after.projected).toBe(false);
    expect(after.data).toEqual([expect.objectContaining({ agent_id: a.id, projected: false })]);
  });
});

describe('organizations per account', () => {
  it('are limited by the best plan among those the user owns (Free: 3), with 402 naming the limit', async () => {
    const user = await signUp(t);
    // The personal organization counts: two more fit Free's three.
    const first = await createOrg(t, { by: user });
    const second = await createOrg(t, { by: user });
    const before = await tableCounts(t.db);
    const refused = expectProblem(
      await user.call({ method: 'POST', url: '/api/organizations', payload: { name: 'One too many' } }),
      402,
      'plan_limit_exceeded',
    );
    expect(refused).toMatchObject({
      limit: 'organizations',
      plan: 'free',
      max: 3,
      used: 3,
      upgrade_to: 'starter',
    });
    expect(await tableCounts(t.db)).toEqual(before);

    // Owning a Starter organization lifts the allowance to five.
    await setPlan(t, first.id, 'starter');
    await createOrg(t, { by: user });
    await createOrg(t, { by: user });
    expectProblem(
      await user.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Sixth' } }),
      402,
      'plan_limit_exceeded',
    );
    // Deleting one frees its place.
    expect((await user.call({ method: 'DELETE', url: `/api/organizations/${second.id}` })).statusCode).toBe(
      204,
    );
    await createOrg(t, { by: user });
  });

  it('do not count sub-organizations, nor what the operator creates', async () => {
    const user = await signUp(t);
    const top = await createOrg(t);
    await setPlan(t, top.id, 'business');
    await member(top.id, user, 'admin');
    // Their creator owns these three, below an organization they do not own.
    for (let i = 0; i < 3; i++) await createSubOrg(t, top.id, { by: user });
    // Only the personal organization counts: two more fit Free's three.
    await createOrg(t, { by: user });
    await createOrg(t, { by: user });
    expectProblem(
      await user.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Fourth' } }),
      402,
      'plan_limit_exceeded',
    );
  });

  it('hold under concurrent creates: exactly the allowance succeeds, the rest 402, counted from the database', async () => {
    const user = await signUp(t);
    const created = await Promise.all(
      Array.from({ length: 8 }, () =>
        user.call({ method: 'POST', url: '/api/organizations', payload: { name: `Race ${++n}` } }),
      ),
    );
    // The personal organization and two more make Free's three.
    expect(created.filter((r) => r.statusCode === 201)).toHaveLength(2);
    for (const r of created.filter((r) => r.statusCode !== 201))
      expect(expectProblem(r, 402, 'plan_limit_exceeded')).toMatchObject({ limit: 'organizations', max: 3 });
    const owned = await t.db.db
      .selectFrom('members as m')
      .innerJoin('organizations as o', 'o.id', 'm.organization_id')
      .select('o.id')
      .where('m.user_id', '=', user.id)
      .where('m.role', '=', 'owner')
      .where('o.parent_id', 'is', null)
      .where('o.deleted_at', 'is', null)
      .execute();
    expect(owned).toHaveLength(3);
  });
});

describe('Pay As You Go', () => {
  it('is a plan without a fee or monthly allowance, whose overdraft is capped at zero', async () => {
    const plans = await ok(t.call({ method: 'GET', url: '/api/plans' }));
    const keys = plans.data.map((p: { key: string }) => p.key);
    expect(keys.indexOf('pay_as_you_go')).toBe(keys.indexOf('free') + 1);
    const owner = await signUp(t);
    const o = await createOrg(t, { by: owner });
    await ok(
      owner.call({
        method: 'PUT',
        url: `/api/organizations/${o.id}/subscription`,
        payload: { plan: 'pay_as_you_go' },
      }),
    );
    expect(await readBalance(t, o.id)).toMatchObject({ usage_events_limit: null });
    const overdraft = await owner.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { overdraft_limit: '0.000001' },
    });
    expect(expectProblem(overdraft, 402, 'plan_limit_exceeded')).toMatchObject({
      limit: 'overdraft_limit',
      plan: 'pay_as_you_go',
      max: '0',
    });
  });
});

describe('the plan that lifts a monthly allowance of usage events', () => {
  it('is Pay As You Go from Free, and the next plan up from Starter, never one below', async () => {
    const month = new Date().toISOString().slice(0, 7);
    const detailAt = async (plan: PlanKey, used: number) => {
      const o = await createOrg(t);
      if (plan !== 'free') await setPlan(t, o.id, plan);
      await addCredits(t, o.id, '100');
      await sql`update ledger_accounts set month_events = ${used}, spend_month = ${month}
        where organization_id = ${o.id} and code = 'credits'`.execute(t.db.db);
      const res = await ok(usageEvent(t.call, { organization_id: o.id }));
      expect(res.results[0]).toMatchObject({ status: 'rejected', code: 'plan_limit_exceeded' });
      return res.results[0].detail as string;
    };
    expect(await detailAt('free', 10_000)).toMatch(/the pay_as_you_go plan lifts it/);
    expect(await detailAt('starter', 100_000)).toMatch(/the growth plan lifts it/);
  });
});

describe('the overdraft-cap migration', () => {
  it('brings a limit set above its plan’s cap before the cap existed down to it', async () => {
    const free = await createOrg(t);
    const growth = await createOrg(t);
    await setPlan(t, growth.id, 'growth');
    const enterprise = await createOrg(t);
    await setPlan(t, enterprise.id, 'enterprise');
    const huge = 10n ** 18n;
    await t.db.db
      .updateTable('ledger_accounts')
      .set({ overdraft_limit: huge })
      .where('organization_id', 'in', [free.id, growth.id, enterprise.id])
      .where('code', '=', 'credits')
      .execute();
    const migration = readFileSync(
      new URL('../../src/db/migrations/0012_overdraft_caps.sql', import.meta.url),
      'utf8',
    );
    await sql.raw(migration).execute(t.db.db);
    expect((await readBalance(t, free.id)).overdraft_limit).toBe('100');
    expect((await readBalance(t, growth.id)).overdraft_limit).toBe('10000');
    expect((await readBalance(t, enterprise.id)).overdraft_limit).toBe('1000000000000');
  });
});

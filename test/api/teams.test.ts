import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFundedOrg, createOrg, createTeam } from '../factories.js';
import { createTestApp, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

let n = 0;
const usage = (orgId: string, teamId: string | undefined, credits: string) =>
  t.call({
    method: 'POST',
    url: '/api/usage',
    payload: {
      events: [
        {
          organization_id: orgId,
          credits,
          idempotency_key: `team-${++n}`,
          ...(teamId ? { team_id: teamId } : {}),
        },
      ],
    },
  });

describe('teams', () => {
  it('are assigned, moved and removed without being deleted; the organization counts them', async () => {
    const a = await createFundedOrg(t, '100');
    const b = await createFundedOrg(t, '100');
    const tm = await createTeam(t, { organization_id: a.id });
    expect((await t.call({ method: 'GET', url: `/api/organizations/${a.id}` })).json().team_count).toBe(1);
    const moved = await t.call({
      method: 'POST',
      url: `/api/teams/${tm.id}/assign-org`,
      payload: { organization_id: b.id },
    });
    expect(moved.json().organization_id).toBe(b.id);
    expect((await t.call({ method: 'GET', url: `/api/organizations/${a.id}` })).json().team_count).toBe(0);
    const removed = await t.call({ method: 'POST', url: `/api/teams/${tm.id}/unassign-org` });
    expect(removed.json().organization_id).toBeNull();
    expect((await t.call({ method: 'GET', url: `/api/teams/${tm.id}` })).statusCode).toBe(200);
    const audit = (await t.call({ method: 'GET', url: `/api/organizations/${b.id}/audit-log` })).json().data;
    expect(audit.map((e: { action: string }) => e.action).slice(0, 2)).toEqual([
      'team.removed',
      'team.assigned',
    ]);
  });

  it('survive the deletion of their organization, which only loses the association', async () => {
    const o = await createOrg(t);
    const tm = await createTeam(t, { organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/organizations/${o.id}` })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: `/api/teams/${tm.id}` })).json()).toMatchObject({
      id: tm.id,
      organization_id: null,
    });
  });

  it('spend from their organization within their monthly budget', async () => {
    const o = await createFundedOrg(t, '100');
    const tm = await createTeam(t, { organization_id: o.id, monthly_budget: '5' });
    expect((await usage(o.id, tm.id, '3')).json().results[0].status).toBe('applied');
    const over = (await usage(o.id, tm.id, '2.000001')).json().results[0];
    expect(over).toMatchObject({ status: 'rejected', code: 'team_budget_exceeded' });
    expect((await usage(o.id, tm.id, '2')).json().results[0].status).toBe('applied');
    const deduct = await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/credits/deduct`,
      payload: { amount: '0.5', team_id: tm.id },
    });
    expect(deduct.statusCode).toBe(402);
    expect(deduct.json().code).toBe('team_budget_exceeded');
    // Without the team the organization's credits are still there.
    expect((await usage(o.id, undefined, '1')).json().results[0].status).toBe('applied');
    expect((await t.call({ method: 'GET', url: `/api/teams/${tm.id}` })).json()).toMatchObject({
      monthly_budget: '5',
      month_spend: '5',
    });
    expect(
      (await t.call({ method: 'GET', url: `/api/organizations/${o.id}/balance` })).json().available,
    ).toBe('94');
    await t.call({ method: 'PATCH', url: `/api/teams/${tm.id}`, payload: { monthly_budget: null } });
    expect((await usage(o.id, tm.id, '10')).json().results[0].status).toBe('applied');
    expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });

  it('hold exactly to the budget under concurrent spending', async () => {
    const o = await createFundedOrg(t, '1000');
    const tm = await createTeam(t, { organization_id: o.id, monthly_budget: '10' });
    const results = await Promise.all(Array.from({ length: 40 }, () => usage(o.id, tm.id, '0.5')));
    const applied = results.filter((r) => r.json().results[0].status === 'applied').length;
    expect(applied).toBe(20);
    expect((await t.call({ method: 'GET', url: `/api/teams/${tm.id}` })).json().month_spend).toBe('10');
  });

  it('spend only from their own organization', async () => {
    const a = await createFundedOrg(t, '100');
    const b = await createFundedOrg(t, '100');
    const tm = await createTeam(t, { organization_id: a.id });
    expect((await usage(b.id, tm.id, '1')).json().results[0].code).toBe('team_not_in_organization');
    expect((await usage(b.id, 'tem_00000000000000000000000000', '1')).json().results[0].code).toBe(
      'not_found',
    );
  });

  it.each([
    [{ name: '', organization_id: 'internal' }, 'name'],
    [{ name: 'x', organization_id: 'internal', monthly_budget: '-1' }, 'monthly_budget'],
    [{ name: 'x', organization_id: 'internal', monthly_budget: 'much' }, 'monthly_budget'],
    [{ name: 'x', colour: 'red' }, 'colour'],
  ])('rejects %j with 400 naming the field', async (payload, field) => {
    const before = await tableCounts(t.db);
    const res = await t.call({ method: 'POST', url: '/api/teams', payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('without an organization are the operator’s alone', async () => {
    const solo = await createTeam(t);
    expect(solo.organization_id).toBeNull();
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      payload: { email: `solo-${++n}@teams.test`, password: 'long-enough-1', name: 'Solo' },
    });
    const token = String(res.headers['set-auth-token']);
    const as = (method: 'GET' | 'POST', url: string, payload?: Record<string, unknown>) =>
      t.app.inject({
        method,
        url,
        headers: { authorization: `Bearer ${token}` },
        ...(payload ? { payload } : {}),
      });
    expect((await as('GET', `/api/teams/${solo.id}`)).statusCode).toBe(404);
    expect((await as('POST', '/api/teams', { name: 'Mine' })).statusCode).toBe(400);
    const mine = (await as('GET', '/api/me')).json().active_organization.id;
    const created = await as('POST', '/api/teams', { name: 'Mine', organization_id: mine });
    expect(created.statusCode).toBe(201);
    expect((await as('GET', '/api/teams')).json().data.map((x: { id: string }) => x.id)).toEqual([
      created.json().id,
    ]);
  });
});

describe('the organization list', () => {
  it('shows each organization’s member, agent and team counts', async () => {
    const o = (
      await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Countable Unique Co' } })
    ).json();
    await t.call({ method: 'POST', url: '/api/agents', payload: { name: 'One', organization_id: o.id } });
    await t.call({ method: 'POST', url: '/api/agents', payload: { name: 'Two', organization_id: o.id } });
    await createTeam(t, { organization_id: o.id });
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      payload: { email: `count-${++n}@teams.test`, password: 'long-enough-1', name: 'Counter' },
    });
    await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/members`,
      payload: { email: res.json().user.email, role: 'agent' },
    });
    const list = (await t.call({ method: 'GET', url: '/api/organizations?q=countable%20unique' })).json();
    expect(list.data).toHaveLength(1);
    expect(list.data[0]).toMatchObject({ id: o.id, member_count: 1, agent_count: 2, team_count: 1 });
  });
});

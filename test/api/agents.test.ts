import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAgent, createOrg } from '../factories.js';
import { createTestApp, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

let n = 0;
const get = (url: string) => t.call({ method: 'GET', url });

describe('agents', () => {
  it('belong to the internal organization unless given one', async () => {
    const a = await createAgent(t);
    const internal = (await get('/api/organizations/internal')).json();
    expect(a.organization_id).toBe(internal.id);
    expect(a).toMatchObject({ status: 'active', billing_rate: null, currency: 'USD' });
  });

  it('bill at their own rate, else their organization’s; null clears, billingRate is the same field', async () => {
    const o = await createOrg(t, { billing_rate_per_agent: '99.00', currency: 'EUR' });
    const a = await createAgent(t, { organization_id: o.id });
    expect(a).toMatchObject({ billing_rate: null, effective_billing_rate: '99.00', currency: 'EUR' });
    const custom = await t.call({
      method: 'PATCH',
      url: `/api/agents/${a.id}`,
      payload: { billing_rate: '120.5' },
    });
    expect(custom.json()).toMatchObject({ billing_rate: '120.50', effective_billing_rate: '120.50' });
    const seedSpelling = await t.call({
      method: 'PATCH',
      url: `/api/agents/${a.id}`,
      payload: { billingRate: 75 },
    });
    expect(seedSpelling.json()).toMatchObject({ billing_rate: '75.00', effective_billing_rate: '75.00' });
    const cleared = await t.call({
      method: 'PATCH',
      url: `/api/agents/${a.id}`,
      payload: { billing_rate: null },
    });
    expect(cleared.json()).toMatchObject({ billing_rate: null, effective_billing_rate: '99.00' });
    const audit = (await get(`/api/organizations/${o.id}/audit-log`)).json().data;
    expect(audit[0]).toMatchObject({
      action: 'agent.updated',
      changes: { billing_rate: { before: '75.00', after: null } },
    });
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ name: 'x', billing_rate: '-1' }, 'billing_rate'],
    [{ name: 'x', billing_rate: 'lots' }, 'billing_rate'],
    [{ name: 'x', status: 'sleeping' }, 'status'],
    [{ name: 'x', colour: 'red' }, 'colour'],
  ])('rejects %j with 400 naming the field, writing nothing', async (payload, field) => {
    const before = await tableCounts(t.db);
    const res = await t.call({ method: 'POST', url: '/api/agents', payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('rejects conflicting billing_rate and billingRate', async () => {
    const a = await createAgent(t);
    const res = await t.call({
      method: 'PATCH',
      url: `/api/agents/${a.id}`,
      payload: { billing_rate: '1', billingRate: '2' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors[0].field).toBe('billingRate');
  });

  it('move between organizations one at a time, audited in both; unassigning returns them to internal', async () => {
    const from = await createOrg(t);
    const to = await createOrg(t);
    const a = await createAgent(t, { organization_id: from.id });
    const moved = await t.call({
      method: 'POST',
      url: `/api/agents/${a.id}/assign-org`,
      payload: { organization_id: to.slug },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json().organization_id).toBe(to.id);
    expect((await get(`/api/organizations/${from.id}`)).json()).toMatchObject({ agent_count: 0, agents: [] });
    expect((await get(`/api/organizations/${to.id}`)).json()).toMatchObject({
      agent_count: 1,
      agents: [
        { id: a.id, name: a.name, status: 'active', billing_rate: null, effective_billing_rate: '0.00' },
      ],
    });
    const change = { organization_id: { before: from.id, after: to.id } };
    expect((await get(`/api/organizations/${from.id}/audit-log`)).json().data[0]).toMatchObject({
      action: 'agent.moved_out',
      changes: change,
    });
    expect((await get(`/api/organizations/${to.id}/audit-log`)).json().data[0]).toMatchObject({
      action: 'agent.assigned',
      changes: change,
    });
    const back = await t.call({ method: 'POST', url: `/api/agents/${a.id}/unassign-org` });
    expect(back.json().organization_id).toBe((await get('/api/organizations/internal')).json().id);
    const rows = await t.db.db
      .selectFrom('agent_assignments')
      .selectAll()
      .where('agent_id', '=', a.id)
      .orderBy('assigned_at')
      .execute();
    expect(rows.map((r) => [r.organization_id, r.unassigned_at === null])).toEqual([
      [from.id, false],
      [to.id, false],
      [(await get('/api/organizations/internal')).json().id, true],
    ]);
  });

  it('keep an organization from being deleted until they are unassigned', async () => {
    const o = await createOrg(t);
    const a = await createAgent(t, { organization_id: o.id });
    const before = await tableCounts(t.db);
    const refused = await t.call({ method: 'DELETE', url: `/api/organizations/${o.id}` });
    expect(refused.statusCode).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'organization_has_agents', agent_count: 1 });
    expect(await tableCounts(t.db)).toEqual(before);
    await t.call({ method: 'POST', url: `/api/agents/${a.id}/unassign-org` });
    expect((await t.call({ method: 'DELETE', url: `/api/organizations/${o.id}` })).statusCode).toBe(204);
  });

  it('are deleted softly: gone from the API, their history kept', async () => {
    const o = await createOrg(t);
    const a = await createAgent(t, { organization_id: o.id });
    expect((await t.call({ method: 'DELETE', url: `/api/agents/${a.id}` })).statusCode).toBe(204);
    expect((await get(`/api/agents/${a.id}`)).statusCode).toBe(404);
    expect((await get(`/api/agents?organization_id=${o.id}`)).json().data).toEqual([]);
    const history = await t.db.db
      .selectFrom('agent_assignments')
      .selectAll()
      .where('agent_id', '=', a.id)
      .execute();
    expect(history).toHaveLength(1);
    expect(history[0]?.unassigned_at).not.toBeNull();
    expect((await t.call({ method: 'DELETE', url: `/api/organizations/${o.id}` })).statusCode).toBe(204);
  });

  it('list with pagination and an organization filter, and appear in the export', async () => {
    const o = await createOrg(t);
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await createAgent(t, { organization_id: o.id })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: Array<{ id: string }>; next_cursor: string | null } = (
        await get(`/api/agents?organization_id=${o.id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      seen.push(...page.data.map((x) => x.id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(seen).toEqual(ids);
    const exported = (await get(`/api/organizations/${o.id}/export`)).json();
    expect(exported.agents.map((x: { id: string }) => x.id)).toEqual(ids);
  });

  it('need agents:manage in the target organization too to be moved there', async () => {
    const signUp = async (name: string) => {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-up/email',
        payload: { email: `${name}-${++n}@agents.test`, password: 'long-enough-1', name },
      });
      return { token: String(res.headers['set-auth-token']), email: res.json().user.email as string };
    };
    const dev = await signUp('dev');
    const home = await createOrg(t);
    const other = await createOrg(t);
    await t.call({
      method: 'POST',
      url: `/api/organizations/${home.id}/members`,
      payload: { email: dev.email, role: 'developer' },
    });
    await t.call({
      method: 'POST',
      url: `/api/organizations/${other.id}/members`,
      payload: { email: dev.email, role: 'agent' },
    });
    const as = (opts: InjectOptions) =>
      t.app.inject({ ...opts, headers: { authorization: `Bearer ${dev.token}` } });
    const a = (
      await as({ method: 'POST', url: '/api/agents', payload: { name: 'Mine', organization_id: home.id } })
    ).json();
    expect(a.organization_id).toBe(home.id);
    const refused = await as({
      method: 'POST',
      url: `/api/agents/${a.id}/assign-org`,
      payload: { organization_id: other.id },
    });
    expect(refused.statusCode).toBe(403);
    const hidden = await createOrg(t);
    const invisible = await as({
      method: 'POST',
      url: `/api/agents/${a.id}/assign-org`,
      payload: { organization_id: hidden.id },
    });
    expect(invisible.statusCode).toBe(400);
    expect(
      (await as({ method: 'GET', url: '/api/agents' })).json().data.map((x: { id: string }) => x.id),
    ).toEqual([a.id]);
    // The internal organization is the operator's: a developer elsewhere cannot create agents there.
    expect((await as({ method: 'POST', url: '/api/agents', payload: { name: 'Stray' } })).statusCode).toBe(
      404,
    );
  });
});

describe('usage attributed to agents', () => {
  it('counts only in the organization the agent works for', async () => {
    const home = await createOrg(t);
    const elsewhere = await createOrg(t);
    for (const o of [home, elsewhere])
      await t.call({
        method: 'POST',
        url: `/api/organizations/${o.id}/credits/add`,
        payload: { amount: '10' },
      });
    const a = await createAgent(t, { organization_id: home.id });
    const res = await t.call({
      method: 'POST',
      url: '/api/usage',
      payload: {
        events: [
          { organization_id: home.id, agent_id: a.id, credits: '1', idempotency_key: `a-${n}-1` },
          { organization_id: elsewhere.id, agent_id: a.id, credits: '1', idempotency_key: `a-${n}-2` },
          {
            organization_id: home.id,
            agent_id: 'agt_00000000000000000000000000',
            credits: '1',
            idempotency_key: `a-${n}-3`,
          },
        ],
      },
    });
    expect(
      res.json().results.map((r: { status: string; code: string | null }) => r.code ?? r.status),
    ).toEqual(['applied', 'agent_not_in_organization', 'not_found']);
    expect((await get(`/api/organizations/${elsewhere.id}/balance`)).json().available).toBe('10');
  });

  it('stops while the agent’s organization is inactive', async () => {
    const o = await createOrg(t);
    await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/credits/add`,
      payload: { amount: '10' },
    });
    const a = await createAgent(t, { organization_id: o.id });
    await t.call({ method: 'POST', url: `/api/organizations/${o.id}/toggle` });
    const event = (k: string) => ({
      events: [{ organization_id: o.id, agent_id: a.id, credits: '1', idempotency_key: k }],
    });
    const suspended = await t.call({ method: 'POST', url: '/api/usage', payload: event(`s-${n}-1`) });
    expect(suspended.json().results[0].code).toBe('organization_inactive');
    await t.call({ method: 'POST', url: `/api/organizations/${o.id}/toggle` });
    const resumed = await t.call({ method: 'POST', url: '/api/usage', payload: event(`s-${n}-2`) });
    expect(resumed.json().results[0].status).toBe('applied');
  });
});

describe('an agent’s own key', () => {
  it('records usage as that agent, follows it between organizations, and dies with it', async () => {
    const home = await createOrg(t);
    const next = await createOrg(t);
    for (const o of [home, next])
      await t.call({
        method: 'POST',
        url: `/api/organizations/${o.id}/credits/add`,
        payload: { amount: '10' },
      });
    const a = await createAgent(t, { organization_id: home.id });
    const created = await t.call({
      method: 'POST',
      url: `/api/agents/${a.id}/api-keys`,
      payload: { name: 'runner' },
    });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ agent_id: a.id, organization_id: home.id, scopes: ['write'] });
    const key = created.json().key as string;
    const as = (opts: InjectOptions) =>
      t.app.inject({ ...opts, headers: { authorization: `Bearer ${key}` } });
    const use = (orgId: string, extra: Record<string, unknown> = {}) =>
      as({
        method: 'POST',
        url: '/api/usage',
        payload: {
          events: [{ organization_id: orgId, credits: '1', idempotency_key: `k-${++n}`, ...extra }],
        },
      });

    const first = (await use(home.id)).json().results[0];
    expect(first.status).toBe('applied');
    const txs = (await get(`/api/organizations/${home.id}/transactions?type=usage`)).json().data;
    expect(txs[0].metadata.agent_id).toBe(a.id);
    const impostor = await use(home.id, { agent_id: 'agt_00000000000000000000000001' });
    expect(impostor.statusCode).toBe(400);
    expect(impostor.json().errors[0].field).toBe('events.0.agent_id');
    expect((await use(next.id)).json().results[0].code).toBe('not_found');

    await t.call({
      method: 'POST',
      url: `/api/agents/${a.id}/assign-org`,
      payload: { organization_id: next.id },
    });
    expect((await use(next.id)).json().results[0].status).toBe('applied');
    expect((await use(home.id)).json().results[0].code).toBe('not_found');
    expect((await as({ method: 'GET', url: '/api/organization' })).json().id).toBe(next.id);

    await t.call({ method: 'DELETE', url: `/api/agents/${a.id}` });
    expect((await use(next.id)).statusCode).toBe(401);
  });

  it('keeps metadata from contradicting the event', async () => {
    const o = await createOrg(t);
    await t.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/credits/add`,
      payload: { amount: '10' },
    });
    await t.call({
      method: 'POST',
      url: '/api/usage',
      payload: {
        events: [
          {
            organization_id: o.id,
            credits: '1',
            idempotency_key: `m-${++n}`,
            metadata: { agent_id: 'agt_fake', tokens_in: 999, cost: '7', note: 'kept' },
          },
        ],
      },
    });
    const tx = (await get(`/api/organizations/${o.id}/transactions?type=usage`)).json().data[0];
    expect(tx.metadata).toEqual({ note: 'kept' });
  });
});

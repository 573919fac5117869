import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  as,
  createAgent,
  createApiKey,
  createFundedOrg,
  createOrg,
  createSubOrg,
  createTeam,
  readAuditLog,
  readBalance,
  readMe,
  signUp,
} from '../factories.js';
import { createTestApp, expectProblem, type TestContext } from '../harness.js';

/**
 * The factories (test/factories.ts) do what they say: the scenario they set up is the one the API
 * then shows. Also a template: a new API test file starts like this one.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('the factories', () => {
  it('set up people, organizations, members, credits and keys the API then shows', async () => {
    const alice = await signUp(t, { name: 'Alice' });
    const acme = await createOrg(t, { by: alice, name: 'Acme', plan: 'business' });
    expect(acme).toMatchObject({ name: 'Acme', plan: 'business', parent_id: null });
    expect((await readMe(t, alice)).organizations.find((o) => o.id === acme.id)).toMatchObject({
      role: 'owner',
      via: 'member',
    });

    const bob = await signUp(t);
    expect(await addMember(t, acme.id, bob, 'developer')).toMatchObject({
      user_id: bob.id,
      role: 'developer',
    });
    const carol = await signUp(t);
    expect(await addMember(t, acme.id, { email: carol.email }, 'manager')).toMatchObject({
      user_id: carol.id,
      role: 'manager',
    });
    expect((await readAuditLog(t, acme.id)).map((e) => e.action)).toEqual(
      expect.arrayContaining(['organization.created', 'member.added']),
    );

    const lab = await createSubOrg(t, acme.id, { by: alice, features: ['api_access'] });
    expect(lab).toMatchObject({ parent_id: acme.id, plan: 'business' });
    expect((await addCredits(t, lab.id, '12.5')).balance_after).toBe('12.5');
    expect(await readBalance(t, lab.id)).toMatchObject({ organization_id: lab.id, available: '12.5' });

    const { key, scopes } = await createApiKey(t, lab.id, { scopes: ['read'] });
    expect(scopes).toEqual(['read']);
    const read = await as(t, key, { method: 'GET', url: `/api/organizations/${lab.id}` });
    expect(read.statusCode, read.body).toBe(200);
    expectProblem(
      await as(t, key, { method: 'DELETE', url: `/api/organizations/${lab.id}` }),
      403,
      'forbidden',
    );
    // Bob (a developer of the parent) sees nothing below it.
    expectProblem(await bob.call({ method: 'GET', url: `/api/organizations/${lab.id}` }), 404, 'not_found');
  });

  it('make agents, teams and funded organizations, by the operator or a user', async () => {
    const dana = await signUp(t);
    const funded = await createFundedOrg(t, '40', { by: dana });
    expect((await readBalance(t, funded.id)).available).toBe('40');
    const agent = await createAgent(t, { organization_id: funded.id, by: dana, billing_rate: '9.5' });
    expect(agent).toMatchObject({ organization_id: funded.id, billing_rate: '9.50' });
    const team = await createTeam(t, { organization_id: funded.id, monthly_budget: '5' });
    expect(team).toMatchObject({ organization_id: funded.id, monthly_budget: '5' });
    const internal = await createAgent(t);
    expect(internal.organization_id).not.toBe(funded.id);
  });
});

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  as,
  createOrg,
  PASSWORD,
  readAuditLog,
  readMe,
  signUp,
  type User,
  uniqueEmail,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../../harness.js';
import { rolesIn } from './support.js';

/**
 * People through the HTTP API: accounts and sessions (bearer token and cookie, sign-out,
 * sessions, passwords), the organizations a user sees, and the active organization.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('accounts and sessions', () => {
  it('signs up with a personal organization owned by the user, active in the session', async () => {
    const ada = await signUp(t, { name: 'Ada Lovelace', email: uniqueEmail('ada') });
    const body = await readMe(t, ada);
    expect(body.user).toMatchObject({ id: ada.id, name: 'Ada Lovelace', email: ada.email });
    expect(body.organizations).toHaveLength(1);
    const [personal] = body.organizations;
    expect(personal).toMatchObject({ name: 'Ada Lovelace', active: true, role: 'owner' });
    expect(personal?.slug).toMatch(/^ada-lovelace(-\d+)?$/);
    expect(body.active_organization).toEqual(personal);

    const detail = await as(t, ada.token, { method: 'GET', url: `/api/organizations/${personal?.id}` });
    expect(detail.statusCode).toBe(200);
    expect(detail.json()).toMatchObject({ id: personal?.id, active: true, member_count: 1 });
    expect(await rolesIn(t, personal?.id as string)).toEqual({ [ada.id]: 'owner' });
    const created = (await readAuditLog(t, personal?.id as string)).find(
      (e) => e.action === 'organization.created',
    );
    expect(created?.actor).toEqual({ type: 'user', id: ada.id, role: null, via: null });
  });

  it('generates distinct slugs for users with the same name', async () => {
    const a = await signUp(t, { name: 'Same Name' });
    const b = await signUp(t, { name: 'Same Name' });
    const [oa] = (await readMe(t, a)).organizations;
    const [ob] = (await readMe(t, b)).organizations;
    expect(oa?.name).toBe('Same Name');
    expect(ob?.name).toBe('Same Name');
    expect(oa?.slug).not.toBe(ob?.slug);
    expect(oa?.id).not.toBe(ob?.id);
  });

  it('accepts the session as a bearer token and as a cookie', async () => {
    const u = await signUp(t);
    const byBearer = await as(t, u.token, { method: 'GET', url: '/api/me' });
    const byCookie = await t.app.inject({ method: 'GET', url: '/api/me', headers: { cookie: u.cookie } });
    expect(byBearer.statusCode, byBearer.body).toBe(200);
    expect(byCookie.statusCode, byCookie.body).toBe(200);
    expect(byCookie.json()).toEqual(byBearer.json());
    const none = await t.app.inject({ method: 'GET', url: '/api/me' });
    expectProblem(none, 401, 'unauthenticated');
    expectProblem(
      await as(t, 'not-a-session-token', { method: 'GET', url: '/api/me' }),
      401,
      'unauthenticated',
    );
    const badCookie = await t.app.inject({
      method: 'GET',
      url: '/api/me',
      headers: { cookie: `${u.cookie.split('=')[0]}=forged.value` },
    });
    expectProblem(badCookie, 401, 'unauthenticated');
  });

  it('refuses a second account with the same email (409 email_taken), writing nothing', async () => {
    const u = await signUp(t);
    const before = await tableCounts(t.db);
    for (const email of [u.email, u.email.toUpperCase()]) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-up/email',
        payload: { email, password: 'another password', name: 'Impostor' },
      });
      expectProblem(res, 409, 'email_taken');
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('refuses a wrong password and an unknown email with 401', async () => {
    const u = await signUp(t);
    const wrong = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: 'not the password' },
    });
    expectProblem(wrong, 401, 'unauthenticated');
    const unknown = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: uniqueEmail('nobody'), password: PASSWORD },
    });
    expectProblem(unknown, 401, 'unauthenticated');
    const right = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: u.password },
    });
    expect(right.statusCode, right.body).toBe(200);
    expect(right.headers['set-auth-token']).toBeTruthy();
  });

  it('refuses a too-short password with 400 naming password, writing nothing', async () => {
    const before = await tableCounts(t.db);
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-up/email',
      payload: { email: uniqueEmail('short'), password: 'short', name: 'Shorty' },
    });
    expectProblem(res, 400, 'validation_failed', 'password');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('signs out: the token stops working', async () => {
    const u = await signUp(t);
    const out = await as(t, u.token, { method: 'POST', url: '/api/auth/sign-out', payload: {} });
    expect(out.statusCode, out.body).toBe(200);
    expectProblem(await as(t, u.token, { method: 'GET', url: '/api/me' }), 401, 'unauthenticated');
    const byCookie = await t.app.inject({ method: 'GET', url: '/api/me', headers: { cookie: u.cookie } });
    expectProblem(byCookie, 401, 'unauthenticated');
  });

  it('signs out on a POST without a body (as curl -X POST sends it)', async () => {
    const u = await signUp(t);
    const out = await as(t, u.token, { method: 'POST', url: '/api/auth/sign-out' });
    expect(out.statusCode, out.body).toBe(200);
    expectProblem(await as(t, u.token, { method: 'GET', url: '/api/me' }), 401, 'unauthenticated');
  });

  it('lists sessions and revokes one, leaving the others working', async () => {
    const u = await signUp(t);
    const second = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: u.password },
    });
    expect(second.statusCode, second.body).toBe(200);
    const secondToken = String(second.headers['set-auth-token']);
    const list = await as(t, u.token, { method: 'GET', url: '/api/auth/list-sessions' });
    expect(list.statusCode, list.body).toBe(200);
    const sessions = list.json() as Array<{ token: string; userId: string }>;
    expect(sessions).toHaveLength(2);
    expect(sessions.every((s) => s.userId === u.id)).toBe(true);
    const other = sessions.find((s) => secondToken.startsWith(s.token));
    expect(other, 'the second session is listed').toBeDefined();

    expect((await as(t, secondToken, { method: 'GET', url: '/api/me' })).statusCode).toBe(200);
    const revoke = await as(t, u.token, {
      method: 'POST',
      url: '/api/auth/revoke-session',
      payload: { token: other?.token },
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expectProblem(await as(t, secondToken, { method: 'GET', url: '/api/me' }), 401, 'unauthenticated');
    expect((await as(t, u.token, { method: 'GET', url: '/api/me' })).statusCode).toBe(200);
    const after = await as(t, u.token, { method: 'GET', url: '/api/auth/list-sessions' });
    expect(after.json()).toHaveLength(1);
  });

  it('changes the password: the old one stops working, the new one signs in', async () => {
    const u = await signUp(t);
    const newPassword = 'a brand new passphrase';
    const change = await as(t, u.token, {
      method: 'POST',
      url: '/api/auth/change-password',
      payload: { currentPassword: u.password, newPassword },
    });
    expect(change.statusCode, change.body).toBe(200);
    const old = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: u.password },
    });
    expectProblem(old, 401, 'unauthenticated');
    const fresh = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: newPassword },
    });
    expect(fresh.statusCode, fresh.body).toBe(200);
  });
});

describe('organizations of a user', () => {
  let ann: User;
  let bob: User;
  let annOrg: { id: string; slug: string };
  let bobPersonal: string;
  beforeAll(async () => {
    ann = await signUp(t, { name: 'Ann Owner' });
    bob = await signUp(t, { name: 'Bob Outsider' });
    annOrg = await createOrg(t, { by: ann, name: 'Ann Team', plan: 'growth' });
    bobPersonal = (await readMe(t, bob)).organizations[0]?.id as string;
  });

  it('lists only the user’s organizations; the creator is the owner', async () => {
    const list = await as(t, ann.token, { method: 'GET', url: '/api/organizations?limit=100' });
    expect(list.statusCode).toBe(200);
    const ids = (list.json().data as Array<{ id: string }>).map((o) => o.id).sort();
    const mine = (await readMe(t, ann)).organizations;
    expect(ids).toEqual(mine.map((o) => o.id).sort());
    expect(ids).toHaveLength(2);
    expect(ids).toContain(annOrg.id);
    expect(ids).not.toContain(bobPersonal);
    expect(mine.find((o) => o.id === annOrg.id)?.role).toBe('owner');
    const detail = await as(t, ann.token, { method: 'GET', url: `/api/organizations/${annOrg.id}` });
    expect(detail.json()).toMatchObject({ id: annOrg.id, name: 'Ann Team', member_count: 1 });
    expect(await rolesIn(t, annOrg.id)).toEqual({ [ann.id]: 'owner' });
    const internal = await as(t, ann.token, { method: 'GET', url: '/api/organizations/internal' });
    expectProblem(internal, 404, 'not_found');
  });

  it('answers 404 not_found for everything about another organization, writing nothing', async () => {
    const base = `/api/organizations/${annOrg.id}`;
    const requests: InjectOptions[] = [
      { method: 'GET', url: base },
      { method: 'GET', url: `/api/organizations/${annOrg.slug}` },
      { method: 'PATCH', url: base, payload: { name: 'Hijacked' } },
      { method: 'DELETE', url: base },
      { method: 'POST', url: `${base}/toggle` },
      { method: 'GET', url: `${base}/export` },
      { method: 'GET', url: `${base}/audit-log` },
      { method: 'GET', url: `${base}/members` },
      { method: 'POST', url: `${base}/members`, payload: { user_id: bob.id, role: 'owner' } },
      { method: 'PATCH', url: `${base}/members/${ann.id}`, payload: { role: 'agent' } },
      { method: 'DELETE', url: `${base}/members/${ann.id}` },
      { method: 'DELETE', url: `${base}/members/me` },
      { method: 'POST', url: `${base}/transfer-ownership`, payload: { user_id: bob.id } },
      { method: 'GET', url: `${base}/balance` },
      { method: 'GET', url: `${base}/transactions` },
      { method: 'PATCH', url: `${base}/credit-settings`, payload: { overdraft_enabled: true } },
      { method: 'GET', url: `${base}/api-keys` },
      { method: 'POST', url: `${base}/api-keys`, payload: { name: 'stolen', scopes: ['write'] } },
    ];
    const before = await tableCounts(t.db);
    for (const req of requests) {
      const res = await as(t, bob.token, req);
      expect(res.statusCode, `${req.method} ${req.url}: ${res.body}`).toBe(404);
      expect(res.json().code, `${req.method} ${req.url}`).toBe('not_found');
    }
    expect(await tableCounts(t.db)).toEqual(before);
    // The same answer as for an organization that does not exist.
    const ghost = await as(t, bob.token, {
      method: 'GET',
      url: '/api/organizations/org_00000000000000000000000099',
    });
    expectProblem(ghost, 404, 'not_found');
    expect(ghost.json().detail).toBe((await as(t, bob.token, { method: 'GET', url: base })).json().detail);
  });

  it('answers 403 forbidden to a member without the permission, writing nothing', async () => {
    const agent = await signUp(t, { name: 'Agent Smith' });
    await addMember(t, annOrg.id, agent, 'agent');
    const before = await tableCounts(t.db);
    expectProblem(
      await as(t, agent.token, { method: 'GET', url: `/api/organizations/${annOrg.id}/members` }),
      403,
      'forbidden',
    );
    expectProblem(
      await as(t, agent.token, {
        method: 'PATCH',
        url: `/api/organizations/${annOrg.id}`,
        payload: { name: 'Agent Org' },
      }),
      403,
      'forbidden',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    const read = await as(t, agent.token, { method: 'GET', url: `/api/organizations/${annOrg.id}` });
    expect(read.statusCode).toBe(200);
    expect(read.json()).toMatchObject({ name: 'Ann Team', member_count: 2 });
  });
});

describe('the active organization', () => {
  it('switches only to the user’s organizations; org-implicit routes follow; nothing is lost', async () => {
    const u = await signUp(t, { name: 'Switcher' });
    const personal = (await readMe(t, u)).active_organization?.id as string;
    const team = await createOrg(t, { by: u, name: 'Switcher Team', plan: 'growth' });
    // Creating an organization does not switch to it.
    expect((await readMe(t, u)).active_organization?.id).toBe(personal);
    await addCredits(t, team.id, '42.5');
    await addCredits(t, personal, '3');
    const patched = await as(t, u.token, {
      method: 'PATCH',
      url: `/api/organizations/${personal}`,
      payload: { description: 'my own' },
    });
    expect(patched.statusCode, patched.body).toBe(200);

    const current = async () => {
      const org = await as(t, u.token, { method: 'GET', url: '/api/organization' });
      const balance = await as(t, u.token, { method: 'GET', url: '/api/organization/balance' });
      expect(org.statusCode, org.body).toBe(200);
      expect(balance.statusCode, balance.body).toBe(200);
      return { org: org.json(), balance: balance.json() };
    };
    const onPersonal = await current();
    expect(onPersonal.org).toMatchObject({ id: personal, description: 'my own' });
    expect(onPersonal.balance).toMatchObject({ organization_id: personal, available: '3' });

    const switched = await as(t, u.token, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: team.id },
    });
    expect(switched.statusCode, switched.body).toBe(200);
    expect(switched.json().active_organization).toMatchObject({ id: team.id, role: 'owner' });
    const onTeam = await current();
    expect(onTeam.org).toMatchObject({ id: team.id, name: 'Switcher Team' });
    expect(onTeam.balance).toMatchObject({ organization_id: team.id, available: '42.5' });

    // Back (by slug), and forth again: everything as it was.
    const personalSlug = (await readMe(t, u)).organizations.find((o) => o.id === personal)?.slug as string;
    for (const target of [personalSlug, team.id, personal]) {
      const res = await as(t, u.token, {
        method: 'POST',
        url: '/api/me/active-organization',
        payload: { organization_id: target },
      });
      expect(res.statusCode, res.body).toBe(200);
    }
    expect(await current()).toEqual(onPersonal);
    const after = await readMe(t, u);
    expect(after.active_organization?.id).toBe(personal);
    expect(after.organizations.map((o) => [o.id, o.role]).sort()).toEqual(
      [
        [personal, 'owner'],
        [team.id, 'owner'],
      ].sort(),
    );
    expect(await rolesIn(t, team.id)).toEqual({ [u.id]: 'owner' });
    expect(
      (await t.call({ method: 'GET', url: `/api/organizations/${team.id}/balance` })).json().available,
    ).toBe('42.5');

    // Another session of the same user keeps its own active organization.
    const other = await t.app.inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email: u.email, password: u.password },
    });
    const otherToken = String(other.headers['set-auth-token']);
    await as(t, otherToken, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: team.id },
    });
    expect((await readMe(t, u)).active_organization?.id).toBe(personal);
    expect((await as(t, otherToken, { method: 'GET', url: '/api/organization' })).json().id).toBe(team.id);
  });

  it('refuses to switch to an organization the user does not belong to (400 organization_id)', async () => {
    const u = await signUp(t);
    const stranger = await signUp(t);
    const strangerOrg = (await readMe(t, stranger)).organizations[0]?.id as string;
    const active = (await readMe(t, u)).active_organization?.id;
    const before = await tableCounts(t.db);
    for (const organization_id of [strangerOrg, 'internal', 'org_00000000000000000000000099', 'no-such']) {
      const res = await as(t, u.token, {
        method: 'POST',
        url: '/api/me/active-organization',
        payload: { organization_id },
      });
      expectProblem(res, 400, 'validation_failed', 'organization_id');
    }
    expectProblem(
      await as(t, u.token, { method: 'POST', url: '/api/me/active-organization', payload: {} }),
      400,
      'validation_failed',
      'organization_id',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await readMe(t, u)).active_organization?.id).toBe(active);
  });

  it('falls back to another membership when the active organization is left', async () => {
    const owner = await signUp(t);
    const u = await signUp(t);
    const team = await createOrg(t, { by: owner, name: 'Leavable Team', plan: 'growth' });
    await addMember(t, team.id, u, 'developer');
    const personal = (await readMe(t, u)).active_organization?.id;
    await as(t, u.token, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: team.id },
    });
    expect((await as(t, u.token, { method: 'GET', url: '/api/organization' })).json().id).toBe(team.id);
    const left = await as(t, u.token, {
      method: 'DELETE',
      url: `/api/organizations/${team.id}/members/me`,
    });
    expect(left.statusCode, left.body).toBe(204);
    expect((await readMe(t, u)).active_organization?.id).toBe(personal);
    expect((await as(t, u.token, { method: 'GET', url: '/api/organization' })).json().id).toBe(personal);
  });
});

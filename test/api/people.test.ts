import { createHash, randomBytes } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_ONLY, type Permission, ROLE_PERMISSIONS, ROLES, type Role } from '../../src/lib/authz.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

type Res = LightMyRequestResponse;

interface User {
  id: string;
  name: string;
  email: string;
  password: string;
  /** The session's bearer token (`set-auth-token`). */
  token: string;
  /** The session cookie, as a `Cookie` header value. */
  cookie: string;
}

const PASSWORD = 'correct horse battery';
const run = randomBytes(3).toString('hex');
let seq = 0;

function uniqueEmail(label: string) {
  seq += 1;
  return `${label}.${run}.${seq}@example.test`;
}

/** Signs a user up through the API; returns their bearer token and session cookie. */
async function signUp(
  t: TestContext,
  opts: { name?: string; email?: string; password?: string; remoteAddress?: string } = {},
): Promise<User> {
  const name = opts.name ?? `Person ${seq + 1}`;
  const email = opts.email ?? uniqueEmail('person');
  const password = opts.password ?? PASSWORD;
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password, name },
    ...(opts.remoteAddress ? { remoteAddress: opts.remoteAddress } : {}),
  });
  expect(res.statusCode, res.body).toBe(200);
  const token = res.headers['set-auth-token'];
  expect(typeof token).toBe('string');
  const setCookie = res.headers['set-cookie'];
  const cookies = Array.isArray(setCookie) ? setCookie : [String(setCookie)];
  const session = cookies.find((c) => c.includes('session_token='));
  expect(session, 'a session cookie').toBeDefined();
  return {
    id: res.json().user.id,
    name,
    email,
    password,
    token: String(token),
    cookie: String(session).split(';')[0] as string,
  };
}

/** A request as a user (or an API key): app.inject with that bearer token, never the operator's. */
function as(t: TestContext, token: string, opts: InjectOptions): Promise<Res> {
  return t.app.inject({ ...opts, headers: { ...opts.headers, authorization: `Bearer ${token}` } });
}

function fieldsOf(res: Res): string[] {
  return ((res.json().errors ?? []) as Array<{ field: string }>).map((e) => e.field);
}

async function createOrg(t: TestContext, user: User, name: string) {
  const res = await as(t, user.token, { method: 'POST', url: '/api/organizations', payload: { name } });
  expect(res.statusCode, res.body).toBe(201);
  // Room for more members than the Free plan allows.
  const up = await t.call({
    method: 'PUT',
    url: `/api/organizations/${res.json().id}/subscription`,
    payload: { plan: 'growth' },
  });
  expect(up.statusCode, up.body).toBe(200);
  return res.json() as { id: string; slug: string; name: string };
}

/** The operator adds directly; a user may add only someone already in the organization's tree. */
async function addMember(t: TestContext, orgId: string, user: User, role: Role) {
  const res = await t.call({
    method: 'POST',
    url: `/api/organizations/${orgId}/members`,
    payload: { user_id: user.id, role },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function me(t: TestContext, user: User) {
  const res = await as(t, user.token, { method: 'GET', url: '/api/me' });
  expect(res.statusCode, res.body).toBe(200);
  return res.json() as {
    user: { id: string; name: string; email: string };
    organizations: Array<{ id: string; name: string; slug: string; active: boolean; role: string }>;
    active_organization: { id: string; role: string } | null;
  };
}

async function rolesIn(t: TestContext, orgId: string): Promise<Record<string, string>> {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/members?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return Object.fromEntries(
    (res.json().data as Array<{ user_id: string; role: string }>).map((m) => [m.user_id, m.role]),
  );
}

async function auditOf(t: TestContext, orgId: string) {
  const res = await t.call({ method: 'GET', url: `/api/organizations/${orgId}/audit-log?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<{
    action: string;
    actor: { type: string; id: string | null };
    target: { type: string; id: string };
    changes: Record<string, { before: unknown; after: unknown }>;
  }>;
}

async function addCredits(t: TestContext, orgId: string, amount: string) {
  const res = await t.call({
    method: 'POST',
    url: `/api/organizations/${orgId}/credits/add`,
    payload: { amount },
  });
  expect(res.statusCode, res.body).toBe(201);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('people, organizations, members and API keys', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  describe('accounts and sessions', () => {
    it('signs up with a personal organization owned by the user, active in the session', async () => {
      const ada = await signUp(t, { name: 'Ada Lovelace', email: uniqueEmail('ada') });
      const body = await me(t, ada);
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
      const created = (await auditOf(t, personal?.id as string)).find(
        (e) => e.action === 'organization.created',
      );
      expect(created?.actor).toEqual({ type: 'user', id: ada.id, role: null, via: null });
    });

    it('generates distinct slugs for users with the same name', async () => {
      const a = await signUp(t, { name: 'Same Name' });
      const b = await signUp(t, { name: 'Same Name' });
      const [oa] = (await me(t, a)).organizations;
      const [ob] = (await me(t, b)).organizations;
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
      annOrg = await createOrg(t, ann, 'Ann Team');
      bobPersonal = (await me(t, bob)).organizations[0]?.id as string;
    });

    it('lists only the user’s organizations; the creator is the owner', async () => {
      const list = await as(t, ann.token, { method: 'GET', url: '/api/organizations?limit=100' });
      expect(list.statusCode).toBe(200);
      const ids = (list.json().data as Array<{ id: string }>).map((o) => o.id).sort();
      const mine = (await me(t, ann)).organizations;
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
      const personal = (await me(t, u)).active_organization?.id as string;
      const team = await createOrg(t, u, 'Switcher Team');
      // Creating an organization does not switch to it.
      expect((await me(t, u)).active_organization?.id).toBe(personal);
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
      const personalSlug = (await me(t, u)).organizations.find((o) => o.id === personal)?.slug as string;
      for (const target of [personalSlug, team.id, personal]) {
        const res = await as(t, u.token, {
          method: 'POST',
          url: '/api/me/active-organization',
          payload: { organization_id: target },
        });
        expect(res.statusCode, res.body).toBe(200);
      }
      expect(await current()).toEqual(onPersonal);
      const after = await me(t, u);
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
      expect((await me(t, u)).active_organization?.id).toBe(personal);
      expect((await as(t, otherToken, { method: 'GET', url: '/api/organization' })).json().id).toBe(team.id);
    });

    it('refuses to switch to an organization the user does not belong to (400 organization_id)', async () => {
      const u = await signUp(t);
      const stranger = await signUp(t);
      const strangerOrg = (await me(t, stranger)).organizations[0]?.id as string;
      const active = (await me(t, u)).active_organization?.id;
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
      expect((await me(t, u)).active_organization?.id).toBe(active);
    });

    it('falls back to another membership when the active organization is left', async () => {
      const owner = await signUp(t);
      const u = await signUp(t);
      const team = await createOrg(t, owner, 'Leavable Team');
      await addMember(t, team.id, u, 'developer');
      const personal = (await me(t, u)).active_organization?.id;
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
      expect((await me(t, u)).active_organization?.id).toBe(personal);
      expect((await as(t, u.token, { method: 'GET', url: '/api/organization' })).json().id).toBe(personal);
    });
  });

  describe('members', () => {
    let owner: User;
    let admin: User;
    let dev: User;
    let extra: User;
    let org: { id: string; slug: string };
    beforeAll(async () => {
      owner = await signUp(t, { name: 'Olive Owner' });
      admin = await signUp(t, { name: 'Adam Admin' });
      dev = await signUp(t, { name: 'Dee Developer' });
      extra = await signUp(t, { name: 'Ezra Extra' });
      org = await createOrg(t, owner, 'Member Works');
      // Users add directly only people already in the organization's tree: here, a
      // sub-organization the operator put them in (its members are visible to the owner).
      const up = await t.call({
        method: 'PUT',
        url: `/api/organizations/${org.id}/subscription`,
        payload: { plan: 'business' },
      });
      expect(up.statusCode, up.body).toBe(200);
      const staff = await t.call({
        method: 'POST',
        url: `/api/organizations/${org.id}/sub-organizations`,
        payload: { name: 'Member Works Staff' },
      });
      expect(staff.statusCode, staff.body).toBe(201);
      for (const u of [admin, dev, extra]) await addMember(t, staff.json().id, u, 'agent');
    });

    it('adds existing users by user_id or by email, and lists them', async () => {
      const byId = await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${org.id}/members`,
        payload: { user_id: admin.id, role: 'admin' },
      });
      expect(byId.statusCode, byId.body).toBe(201);
      expect(byId.json()).toMatchObject({
        user_id: admin.id,
        role: 'admin',
        email: admin.email,
        name: admin.name,
      });
      const byEmail = await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${org.slug}/members`,
        payload: { email: dev.email, role: 'developer' },
      });
      expect(byEmail.statusCode, byEmail.body).toBe(201);
      expect(byEmail.json()).toMatchObject({ user_id: dev.id, role: 'developer' });

      const list = await as(t, dev.token, { method: 'GET', url: `/api/organizations/${org.id}/members` });
      expect(list.statusCode).toBe(200);
      expect(
        Object.fromEntries(
          (list.json().data as Array<{ user_id: string; role: string }>).map((m) => [m.user_id, m.role]),
        ),
      ).toEqual({ [owner.id]: 'owner', [admin.id]: 'admin', [dev.id]: 'developer' });
      expect(
        (await as(t, dev.token, { method: 'GET', url: `/api/organizations/${org.id}` })).json().member_count,
      ).toBe(3);
      const myRole = (await me(t, dev)).organizations.find((o) => o.id === org.id)?.role;
      expect(myRole).toBe('developer');

      const audit = await auditOf(t, org.id);
      const added = audit.filter((e) => e.action === 'member.added');
      expect(added.map((e) => [e.target.id, e.actor, e.changes.role])).toEqual([
        [
          dev.id,
          { type: 'user', id: owner.id, role: 'owner', via: 'member' },
          { before: null, after: 'developer' },
        ],
        [
          admin.id,
          { type: 'user', id: owner.id, role: 'owner', via: 'member' },
          { before: null, after: 'admin' },
        ],
      ]);
    });

    it('refuses unknown users and strangers alike (403 invitation_required), existing members (409) and anything but exactly one of user_id/email (400)', async () => {
      const url = `/api/organizations/${org.id}/members`;
      const stranger = await signUp(t, { name: 'Sam Stranger' });
      const before = await tableCounts(t.db);
      for (const payload of [
        { email: uniqueEmail('ghost'), role: 'agent' },
        { user_id: 'usr_nobody', role: 'agent' },
        { email: stranger.email, role: 'agent' },
        { user_id: stranger.id, role: 'agent' },
      ])
        expectProblem(
          await as(t, owner.token, { method: 'POST', url, payload }),
          403,
          'invitation_required',
          'user_id' in payload ? 'user_id' : 'email',
        );
      expectProblem(
        await as(t, owner.token, { method: 'POST', url, payload: { user_id: dev.id, role: 'agent' } }),
        409,
        'already_member',
      );
      expectProblem(
        await as(t, owner.token, { method: 'POST', url, payload: { email: dev.email, role: 'admin' } }),
        409,
        'already_member',
      );
      const both = await as(t, owner.token, {
        method: 'POST',
        url,
        payload: { user_id: extra.id, email: extra.email, role: 'agent' },
      });
      expectProblem(both, 400, 'validation_failed');
      expect(fieldsOf(both).some((f) => f === 'user_id' || f === 'email')).toBe(true);
      const neither = await as(t, owner.token, { method: 'POST', url, payload: { role: 'agent' } });
      expectProblem(neither, 400, 'validation_failed');
      expect(fieldsOf(neither).some((f) => f === 'user_id' || f === 'email')).toBe(true);
      expectProblem(
        await as(t, owner.token, { method: 'POST', url, payload: { user_id: extra.id, role: 'emperor' } }),
        400,
        'validation_failed',
        'role',
      );
      expectProblem(
        await as(t, owner.token, { method: 'POST', url, payload: { email: 'not-an-email', role: 'agent' } }),
        400,
        'validation_failed',
        'email',
      );
      expect(await tableCounts(t.db)).toEqual(before);
      expect((await rolesIn(t, org.id))[dev.id]).toBe('developer');
    });

    it('keeps the last owner: cannot leave or be demoted (409 last_owner), nothing written', async () => {
      const before = await tableCounts(t.db);
      expectProblem(
        await as(t, owner.token, { method: 'DELETE', url: `/api/organizations/${org.id}/members/me` }),
        409,
        'last_owner',
      );
      expectProblem(
        await as(t, owner.token, {
          method: 'DELETE',
          url: `/api/organizations/${org.id}/members/${owner.id}`,
        }),
        409,
        'last_owner',
      );
      for (const who of ['me', owner.id]) {
        expectProblem(
          await as(t, owner.token, {
            method: 'PATCH',
            url: `/api/organizations/${org.id}/members/${who}`,
            payload: { role: 'admin' },
          }),
          409,
          'last_owner',
        );
      }
      expect(await tableCounts(t.db)).toEqual(before);
      expect((await rolesIn(t, org.id))[owner.id]).toBe('owner');
      // A personal organization's only owner cannot leave it either.
      const personal = (await me(t, extra)).organizations[0]?.id as string;
      expectProblem(
        await as(t, extra.token, { method: 'DELETE', url: `/api/organizations/${personal}/members/me` }),
        409,
        'last_owner',
      );
    });

    it('lets an admin manage others but never make or unmake owners (403)', async () => {
      const base = `/api/organizations/${org.id}/members`;
      const before = await tableCounts(t.db);
      const refused: InjectOptions[] = [
        { method: 'POST', url: base, payload: { user_id: extra.id, role: 'owner' } },
        { method: 'PATCH', url: `${base}/${dev.id}`, payload: { role: 'owner' } },
        { method: 'PATCH', url: `${base}/me`, payload: { role: 'owner' } },
        { method: 'PATCH', url: `${base}/${owner.id}`, payload: { role: 'admin' } },
        { method: 'DELETE', url: `${base}/${owner.id}` },
        {
          method: 'POST',
          url: `/api/organizations/${org.id}/transfer-ownership`,
          payload: { user_id: admin.id },
        },
      ];
      for (const req of refused) {
        const res = await as(t, admin.token, req);
        expect(res.statusCode, `${req.method} ${req.url}: ${res.body}`).toBe(403);
        expect(res.json().code).toBe('forbidden');
      }
      expect(await tableCounts(t.db)).toEqual(before);

      const added = await as(t, admin.token, {
        method: 'POST',
        url: base,
        payload: { user_id: extra.id, role: 'agent' },
      });
      expect(added.statusCode, added.body).toBe(201);
      const changed = await as(t, admin.token, {
        method: 'PATCH',
        url: `${base}/${extra.id}`,
        payload: { role: 'manager' },
      });
      expect(changed.statusCode, changed.body).toBe(200);
      expect(changed.json()).toMatchObject({ user_id: extra.id, role: 'manager' });
      const removed = await as(t, admin.token, { method: 'DELETE', url: `${base}/${extra.id}` });
      expect(removed.statusCode, removed.body).toBe(204);
      expectProblem(
        await as(t, admin.token, { method: 'DELETE', url: `${base}/${extra.id}` }),
        404,
        'not_found',
      );
      expectProblem(
        await as(t, admin.token, { method: 'PATCH', url: `${base}/${extra.id}`, payload: { role: 'agent' } }),
        404,
        'not_found',
      );
      expect(await rolesIn(t, org.id)).toEqual({
        [owner.id]: 'owner',
        [admin.id]: 'admin',
        [dev.id]: 'developer',
      });
      // The removed user no longer sees the organization at all.
      expectProblem(
        await as(t, extra.token, { method: 'GET', url: `/api/organizations/${org.id}` }),
        404,
        'not_found',
      );

      const audit = await auditOf(t, org.id);
      const [removal, change, addition] = audit;
      expect(removal).toMatchObject({
        action: 'member.removed',
        actor: { type: 'user', id: admin.id },
        target: { type: 'member', id: extra.id },
        changes: { role: { before: 'manager', after: null } },
      });
      expect(change).toMatchObject({
        action: 'member.role_changed',
        actor: { type: 'user', id: admin.id },
        target: { id: extra.id },
        changes: { role: { before: 'agent', after: 'manager' } },
      });
      expect(addition).toMatchObject({ action: 'member.added', actor: { type: 'user', id: admin.id } });
    });

    it('lets a developer leave, and refuses a developer managing members', async () => {
      const base = `/api/organizations/${org.id}/members`;
      expectProblem(
        await as(t, dev.token, { method: 'POST', url: base, payload: { user_id: extra.id, role: 'agent' } }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, dev.token, { method: 'DELETE', url: `${base}/${admin.id}` }),
        403,
        'forbidden',
      );
      const left = await as(t, dev.token, { method: 'DELETE', url: `${base}/me` });
      expect(left.statusCode, left.body).toBe(204);
      expect((await me(t, dev)).organizations.map((o) => o.id)).not.toContain(org.id);
      const [entry] = await auditOf(t, org.id);
      expect(entry).toMatchObject({
        action: 'member.left',
        actor: { type: 'user', id: dev.id },
        target: { id: dev.id },
        changes: { role: { before: 'developer', after: null } },
      });
      // Re-added afterwards, for the next test.
      await addMember(t, org.id, dev, 'developer');
    });

    it('transfers ownership: the target becomes owner, the caller admin', async () => {
      const res = await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${org.id}/transfer-ownership`,
        payload: { user_id: dev.id },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ user_id: dev.id, role: 'owner' });
      expect(await rolesIn(t, org.id)).toEqual({
        [owner.id]: 'admin',
        [admin.id]: 'admin',
        [dev.id]: 'owner',
      });
      expect((await me(t, owner)).organizations.find((o) => o.id === org.id)?.role).toBe('admin');
      const changes = (await auditOf(t, org.id))
        .filter((e) => e.action === 'member.role_changed')
        .slice(0, 2)
        .map((e) => [e.target.id, e.actor, e.changes.role]);
      expect(changes).toEqual(
        expect.arrayContaining([
          [
            dev.id,
            { type: 'user', id: owner.id, role: 'owner', via: 'member' },
            { before: 'developer', after: 'owner' },
          ],
          [
            owner.id,
            { type: 'user', id: owner.id, role: 'owner', via: 'member' },
            { before: 'owner', after: 'admin' },
          ],
        ]),
      );
      // The former owner, now an admin, can no longer hand ownership around.
      expectProblem(
        await as(t, owner.token, {
          method: 'POST',
          url: `/api/organizations/${org.id}/transfer-ownership`,
          payload: { user_id: owner.id },
        }),
        403,
        'forbidden',
      );
      // Transferring to a non-member is a 400 naming user_id, and writes nothing.
      const before = await tableCounts(t.db);
      expectProblem(
        await as(t, dev.token, {
          method: 'POST',
          url: `/api/organizations/${org.id}/transfer-ownership`,
          payload: { user_id: extra.id },
        }),
        400,
        'validation_failed',
        'user_id',
      );
      expect(await tableCounts(t.db)).toEqual(before);
    });

    it('lets an owner promote another owner, after which the first can step down', async () => {
      const base = `/api/organizations/${org.id}/members`;
      const promoted = await as(t, dev.token, {
        method: 'PATCH',
        url: `${base}/${admin.id}`,
        payload: { role: 'owner' },
      });
      expect(promoted.statusCode, promoted.body).toBe(200);
      const stepDown = await as(t, dev.token, {
        method: 'PATCH',
        url: `${base}/me`,
        payload: { role: 'manager' },
      });
      expect(stepDown.statusCode, stepDown.body).toBe(200);
      expect(await rolesIn(t, org.id)).toEqual({
        [owner.id]: 'admin',
        [admin.id]: 'owner',
        [dev.id]: 'manager',
      });
      expectProblem(await as(t, admin.token, { method: 'DELETE', url: `${base}/me` }), 409, 'last_owner');
      const [entry] = await auditOf(t, org.id);
      expect(entry).toMatchObject({
        action: 'member.role_changed',
        actor: { type: 'user', id: dev.id },
        target: { id: dev.id },
        changes: { role: { before: 'owner', after: 'manager' } },
      });
    });
  });

  describe('the permission matrix', () => {
    interface Check {
      label: string;
      permission: Permission;
      ok: number;
      /** The problem code of an `ok` that is a refusal past authorization. */
      code?: string;
      request: (orgId: string, bystander: User) => InjectOptions;
    }
    // DELETE last: it ends the organization.
    const checks: Check[] = [
      {
        label: 'GET balance',
        permission: 'credits:read',
        ok: 200,
        request: (id) => ({ method: 'GET', url: `/api/organizations/${id}/balance` }),
      },
      {
        label: 'GET members',
        permission: 'members:read',
        ok: 200,
        request: (id) => ({ method: 'GET', url: `/api/organizations/${id}/members` }),
      },
      {
        label: 'PATCH organization',
        permission: 'organization:update',
        ok: 200,
        request: (id) => ({
          method: 'PATCH',
          url: `/api/organizations/${id}`,
          payload: { description: 'changed' },
        }),
      },
      {
        // The bystander is outside the organization's tree: allowed roles are told to invite.
        label: 'POST members',
        permission: 'members:manage',
        ok: 403,
        code: 'invitation_required',
        request: (id, b) => ({
          method: 'POST',
          url: `/api/organizations/${id}/members`,
          payload: { user_id: b.id, role: 'agent' },
        }),
      },
      {
        label: 'POST api-keys',
        permission: 'api_keys:manage',
        ok: 201,
        request: (id) => ({
          method: 'POST',
          url: `/api/organizations/${id}/api-keys`,
          payload: { name: 'ci', scopes: ['read'] },
        }),
      },
      {
        label: 'PATCH credit-settings',
        permission: 'credits:settings',
        ok: 200,
        request: (id) => ({
          method: 'PATCH',
          url: `/api/organizations/${id}/credit-settings`,
          payload: { overdraft_enabled: true },
        }),
      },
      {
        label: 'POST credits/add',
        permission: 'credits:add',
        ok: 201,
        request: (id) => ({
          method: 'POST',
          url: `/api/organizations/${id}/credits/add`,
          payload: { amount: '5' },
        }),
      },
      {
        label: 'GET audit-log',
        permission: 'audit_log:read',
        ok: 200,
        request: (id) => ({ method: 'GET', url: `/api/organizations/${id}/audit-log` }),
      },
      {
        label: 'DELETE organization',
        permission: 'organization:delete',
        ok: 204,
        request: (id) => ({ method: 'DELETE', url: `/api/organizations/${id}` }),
      },
    ];

    let boss: User;
    let bystander: User;
    beforeAll(async () => {
      boss = await signUp(t, { name: 'Matrix Boss' });
      bystander = await signUp(t, { name: 'Matrix Bystander' });
    });

    it('matches the brief for the representative routes', () => {
      // The data the test follows says what the brief says.
      const allowed = (p: Permission) => ROLES.filter((r) => ROLE_PERMISSIONS[r].includes(p));
      expect(allowed('organization:update')).toEqual(['owner', 'admin']);
      expect(allowed('organization:delete')).toEqual(['owner']);
      expect(allowed('members:manage')).toEqual(['owner', 'admin']);
      expect(allowed('members:read').sort()).toEqual(['admin', 'developer', 'manager', 'owner']);
      expect(allowed('api_keys:manage').sort()).toEqual(['admin', 'developer', 'owner']);
      expect(allowed('credits:settings').sort()).toEqual(['admin', 'manager', 'owner']);
      expect(allowed('credits:add')).toEqual([]);
      expect(OPERATOR_ONLY).toContain('credits:add');
      expect(allowed('credits:read')).toEqual([...ROLES]);
    });

    it.each(ROLES.map((r) => [r]))('%s gets exactly what ROLE_PERMISSIONS grants', async (role) => {
      const org = await createOrg(t, boss, `Matrix ${role}`);
      let actor = boss;
      if (role !== 'owner') {
        actor = await signUp(t, { name: `Matrix ${role}` });
        await addMember(t, org.id, actor, role);
      }
      for (const check of checks) {
        const granted = ROLE_PERMISSIONS[role].includes(check.permission);
        const req = check.request(org.id, bystander);
        const before = granted ? undefined : await tableCounts(t.db);
        const res = await as(t, actor.token, req);
        const what = `${role} ${check.label}: ${res.body}`;
        if (granted) {
          expect(res.statusCode, what).toBe(check.ok);
          if (check.code) expect(res.json().code, what).toBe(check.code);
        } else {
          expect(res.statusCode, what).toBe(403);
          expect(res.json().code, what).toBe('forbidden');
          expect(await tableCounts(t.db), what).toEqual(before);
        }
      }
      // What no role may do, the operator can.
      if (role !== 'owner') {
        const op = await t.call(
          checks.find((c) => c.permission === 'credits:add')?.request(org.id, bystander) as InjectOptions,
        );
        expect(op.statusCode, op.body).toBe(201);
      }
    });
  });

  describe('API keys', () => {
    let owner: User;
    let org: { id: string; slug: string };
    let otherOrg: { id: string };
    const created: Array<{ id: string; key: string }> = [];

    async function createKey(payload: Record<string, unknown>, orgId = org.id) {
      const res = await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${orgId}/api-keys`,
        payload,
      });
      expect(res.statusCode, res.body).toBe(201);
      const body = res.json() as { id: string; key: string; prefix: string; scopes: string[]; name: string };
      created.push({ id: body.id, key: body.key });
      return body;
    }

    beforeAll(async () => {
      owner = await signUp(t, { name: 'Key Keeper' });
      org = await createOrg(t, owner, 'Keyed Org');
      const stranger = await signUp(t, { name: 'Key Stranger' });
      otherOrg = await createOrg(t, stranger, 'Unkeyed Org');
      await addCredits(t, org.id, '10');
      await addCredits(t, otherOrg.id, '10');
    });

    it('returns the key once and lists keys without secrets', async () => {
      const k = await createKey({ name: 'Reader', scopes: ['read'] });
      expect(k.key).toMatch(/^obk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
      expect(k.key.startsWith(`obk_${k.prefix}_`)).toBe(true);
      expect(k).toMatchObject({
        name: 'Reader',
        scopes: ['read'],
        organization_id: org.id,
        revoked_at: null,
      });
      const secret = k.key.slice(`obk_${k.prefix}_`.length);

      const list = await as(t, owner.token, { method: 'GET', url: `/api/organizations/${org.id}/api-keys` });
      expect(list.statusCode).toBe(200);
      expect(list.body).not.toContain(secret);
      const [entry] = list.json().data as Array<Record<string, unknown>>;
      expect(Object.keys(entry ?? {}).sort()).toEqual(
        [
          'agent_id',
          'created_at',
          'expires_at',
          'id',
          'last_used_at',
          'name',
          'organization_id',
          'prefix',
          'revoked_at',
          'scopes',
        ].sort(),
      );
      expect(entry).toMatchObject({
        id: k.id,
        name: 'Reader',
        prefix: k.prefix,
        scopes: ['read'],
        last_used_at: null,
      });

      // Using the key sets last_used_at (written off the request path).
      expect((await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` })).statusCode).toBe(
        200,
      );
      let lastUsed: unknown = null;
      for (let i = 0; i < 40 && lastUsed === null; i++) {
        await sleep(50);
        const again = await as(t, owner.token, {
          method: 'GET',
          url: `/api/organizations/${org.id}/api-keys`,
        });
        lastUsed = (again.json().data as Array<{ id: string; last_used_at: string | null }>).find(
          (e) => e.id === k.id,
        )?.last_used_at;
      }
      expect(typeof lastUsed).toBe('string');
    });

    it('lets a read key read its organization, and nothing more', async () => {
      const k = await createKey({ name: 'Read only', scopes: ['read'] });
      const get = await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` });
      expect(get.statusCode, get.body).toBe(200);
      expect(get.json().id).toBe(org.id);
      const balance = await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}/balance` });
      expect(balance.statusCode, balance.body).toBe(200);
      expect(balance.json()).toMatchObject({ organization_id: org.id, available: '10' });
      const implicit = await as(t, k.key, { method: 'GET', url: '/api/organization/balance' });
      expect(implicit.json().organization_id).toBe(org.id);
      const list = await as(t, k.key, { method: 'GET', url: '/api/organizations' });
      expect((list.json().data as Array<{ id: string }>).map((o) => o.id)).toEqual([org.id]);

      const before = await tableCounts(t.db);
      const usage = await as(t, k.key, {
        method: 'POST',
        url: '/api/usage',
        payload: { events: [{ organization_id: org.id, credits: '1', idempotency_key: `ro-${run}` }] },
      });
      // Usage is authorized per event: the refusal is a 403 problem, or the event's own 403.
      if (usage.statusCode === 200)
        expect(usage.json(), usage.body).toMatchObject({
          applied: 0,
          rejected: 1,
          results: [{ status: 'rejected', code: 'forbidden' }],
        });
      else expectProblem(usage, 403, 'forbidden');
      expectProblem(
        await as(t, k.key, {
          method: 'PATCH',
          url: `/api/organizations/${org.id}`,
          payload: { name: 'Key Org' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, k.key, {
          method: 'POST',
          url: `/api/organizations/${org.id}/api-keys`,
          payload: { name: 'x', scopes: ['write'] },
        }),
        403,
        'forbidden',
      );
      expect(await tableCounts(t.db)).toEqual(before);
    });

    it('lets a write key record usage for its own organization', async () => {
      const k = await createKey({ name: 'Writer', scopes: ['write'] });
      const res = await as(t, k.key, {
        method: 'POST',
        url: '/api/usage',
        payload: { events: [{ organization_id: org.id, credits: '2.5', idempotency_key: `w-${run}` }] },
      });
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json()).toMatchObject({ applied: 1, rejected: 0 });
      const balance = await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}/balance` });
      expect(balance.json().available).toBe('7.5');
    });

    it('never works for another organization (404), writing nothing', async () => {
      const r = await createKey({ name: 'Roamer R', scopes: ['read'] });
      const w = await createKey({ name: 'Roamer W', scopes: ['read', 'write'] });
      const before = await tableCounts(t.db);
      for (const key of [r.key, w.key]) {
        for (const url of ['', '/balance', '/members', '/audit-log', '/api-keys', '/transactions']) {
          const res = await as(t, key, { method: 'GET', url: `/api/organizations/${otherOrg.id}${url}` });
          expect(res.statusCode, `${url}: ${res.body}`).toBe(404);
          expect(res.json().code).toBe('not_found');
        }
      }
      const usage = await as(t, w.key, {
        method: 'POST',
        url: '/api/usage',
        payload: { events: [{ organization_id: otherOrg.id, credits: '1', idempotency_key: `x-${run}` }] },
      });
      const refused =
        (usage.statusCode === 404 && usage.json().code === 'not_found') ||
        (usage.statusCode === 200 &&
          usage.json().applied === 0 &&
          usage.json().results[0]?.code === 'not_found');
      expect(refused, usage.body).toBe(true);
      expect(await tableCounts(t.db)).toEqual(before);
      expect(
        (await t.call({ method: 'GET', url: `/api/organizations/${otherOrg.id}/balance` })).json().available,
      ).toBe('10');
    });

    it('stops working the moment it is revoked (401), every time', async () => {
      // Several keys, each used (so it is cached) and then revoked: the very next request fails.
      const answers: number[] = [];
      for (let i = 0; i < 6; i++) {
        const k = await createKey({ name: `Doomed ${i}`, scopes: ['read'] });
        const used = await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` });
        expect(used.statusCode).toBe(200);
        const del = await as(t, owner.token, {
          method: 'DELETE',
          url: `/api/organizations/${org.id}/api-keys/${k.id}`,
        });
        expect(del.statusCode, del.body).toBe(204);
        const after = await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` });
        answers.push(after.statusCode);
        if (i === 0) {
          const list = await as(t, owner.token, {
            method: 'GET',
            url: `/api/organizations/${org.id}/api-keys`,
          });
          const entry = (list.json().data as Array<{ id: string; revoked_at: string | null }>).find(
            (e) => e.id === k.id,
          );
          expect(typeof entry?.revoked_at).toBe('string');
          const audit = await auditOf(t, org.id);
          expect(audit[0]).toMatchObject({
            action: 'api_key.revoked',
            actor: { type: 'user', id: owner.id },
            target: { type: 'api_key', id: k.id },
          });
        }
      }
      expect(answers, 'the first request after each revocation').toEqual(Array(6).fill(401));
      // Revoking twice is harmless; an unknown key id is 404.
      const again = await as(t, owner.token, {
        method: 'DELETE',
        url: `/api/organizations/${org.id}/api-keys/${created.at(-1)?.id}`,
      });
      expect(again.statusCode, again.body).toBe(204);
      expectProblem(
        await as(t, owner.token, { method: 'DELETE', url: `/api/organizations/${org.id}/api-keys/key_nope` }),
        404,
        'not_found',
      );
    });

    it('stops working once expired (401)', async () => {
      const expiresAt = new Date(Date.now() + 1500);
      const k = await createKey({ name: 'Brief', scopes: ['read'], expires_at: expiresAt.toISOString() });
      expect((await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` })).statusCode).toBe(
        200,
      );
      await sleep(Math.max(0, expiresAt.getTime() - Date.now()) + 100);
      expectProblem(
        await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` }),
        401,
        'unauthenticated',
      );
    });

    it('refuses a forged or mangled key (401)', async () => {
      const k = await createKey({ name: 'Original', scopes: ['read'] });
      const flipped = `${k.key.slice(0, -1)}${k.key.endsWith('A') ? 'B' : 'A'}`;
      for (const key of [flipped, `obk_${k.prefix}_`, 'obk_nonsense']) {
        expectProblem(
          await as(t, key, { method: 'GET', url: `/api/organizations/${org.id}` }),
          401,
          'unauthenticated',
        );
      }
    });

    it.each([
      ['blank name', { name: '   ', scopes: ['read'] }, 'name'],
      ['empty name', { name: '', scopes: ['read'] }, 'name'],
      ['missing name', { scopes: ['read'] }, 'name'],
      ['unknown scope', { name: 'k', scopes: ['admin'] }, 'scopes'],
      ['no scopes', { name: 'k', scopes: [] }, 'scopes'],
      ['past expires_at', { name: 'k', scopes: ['read'], expires_at: '2020-01-01T00:00:00Z' }, 'expires_at'],
      ['malformed expires_at', { name: 'k', scopes: ['read'], expires_at: 'tomorrow' }, 'expires_at'],
    ])('refuses %s with 400 naming the field, writing nothing', async (_label, payload, field) => {
      const before = await tableCounts(t.db);
      const res = await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${org.id}/api-keys`,
        payload,
      });
      expectProblem(res, 400, 'validation_failed', field);
      expect(await tableCounts(t.db)).toEqual(before);
    });

    it('stores only the hash of each key', async () => {
      expect(created.length).toBeGreaterThan(3);
      const rows = await t.db.db.selectFrom('api_keys').selectAll().execute();
      for (const { id, key } of created) {
        const row = rows.find((r) => r.id === id);
        expect(row, id).toBeDefined();
        const secret = key.split('_').slice(2).join('_');
        expect(row?.key_hash).not.toBe(key);
        expect(row?.key_hash).toBe(createHash('sha256').update(key).digest('hex'));
        for (const [column, value] of Object.entries(row ?? {})) {
          const text = value instanceof Date ? value.toISOString() : JSON.stringify(value);
          expect(text.includes(secret), `${column} holds the secret`).toBe(false);
          expect(text.includes(key), `${column} holds the key`).toBe(false);
        }
      }
    });
  });
});

describe('rate limits', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp({ rateLimit: { perIp: 5, perKey: 3 } });
  });
  afterAll(() => t.close());

  function expectLimited(res: Res) {
    expectProblem(res, 429, 'rate_limited');
    expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
  }

  it('limits unauthenticated requests per IP: the 6th in a minute is 429', async () => {
    const remoteAddress = '203.0.113.1';
    // No credentials, or credentials that are not valid: all count against the address.
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: 'Bearer guessed-session-token' },
      { cookie: 'better-auth.session_token=guessed.value' },
      { authorization: 'Bearer obo_guessed-operator-token' },
      {},
    ];
    for (const headers of attempts) {
      const res = await t.app.inject({ method: 'GET', url: '/api/me', remoteAddress, headers });
      expectProblem(res, 401, 'unauthenticated');
    }
    expectLimited(await t.app.inject({ method: 'GET', url: '/api/me', remoteAddress }));
    // Another address is not affected.
    expectProblem(
      await t.app.inject({ method: 'GET', url: '/api/me', remoteAddress: '203.0.113.2' }),
      401,
      'unauthenticated',
    );
  });

  it('limits sign-in attempts per IP', async () => {
    const remoteAddress = '203.0.113.5';
    const signIn = () =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        remoteAddress,
        payload: { email: uniqueEmail('brute'), password: 'guess-guess' },
      });
    for (let i = 0; i < 5; i++) expectProblem(await signIn(), 401, 'unauthenticated');
    expectLimited(await signIn());
  });

  it('limits session requests per IP, sign-up included', async () => {
    const remoteAddress = '203.0.113.10';
    const u = await signUp(t, { remoteAddress });
    for (let i = 0; i < 4; i++) {
      const res = await t.app.inject({
        method: 'GET',
        url: '/api/me',
        remoteAddress,
        headers: { authorization: `Bearer ${u.token}` },
      });
      expect(res.statusCode, res.body).toBe(200);
    }
    expectLimited(
      await t.app.inject({
        method: 'GET',
        url: '/api/me',
        remoteAddress,
        headers: { authorization: `Bearer ${u.token}` },
      }),
    );
    expectLimited(
      await t.app.inject({ method: 'GET', url: '/api/me', remoteAddress, headers: { cookie: u.cookie } }),
    );
  });

  it('limits an API key per key (4th is 429), independently of the IP; the operator never', async () => {
    const exhausted = '203.0.113.20';
    const u = await signUp(t, { remoteAddress: '203.0.113.21' });
    const orgId = (
      await t.app.inject({
        method: 'GET',
        url: '/api/me',
        remoteAddress: '203.0.113.21',
        headers: { authorization: `Bearer ${u.token}` },
      })
    ).json().active_organization.id as string;
    const mint = async () => {
      const res = await t.call({
        method: 'POST',
        url: `/api/organizations/${orgId}/api-keys`,
        remoteAddress: exhausted,
        payload: { name: 'limited', scopes: ['read'] },
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json().key as string;
    };
    const key = await mint();
    const other = await mint();
    const signIn = () =>
      t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        remoteAddress: exhausted,
        payload: { email: u.email, password: 'not the password' },
      });
    for (let i = 0; i < 5; i++) expectProblem(await signIn(), 401, 'unauthenticated');
    expectLimited(await signIn());

    const withKey = (k: string, remoteAddress: string) =>
      t.app.inject({
        method: 'GET',
        url: `/api/organizations/${orgId}/balance`,
        remoteAddress,
        headers: { authorization: `Bearer ${k}` },
      });
    // The exhausted IP does not limit the key...
    for (let i = 0; i < 3; i++) expect((await withKey(key, exhausted)).statusCode).toBe(200);
    // ...and the key is limited wherever it comes from.
    expectLimited(await withKey(key, '198.51.100.7'));
    expectLimited(await withKey(key, exhausted));
    // Another key has its own budget; the address the key came from keeps its own budget too.
    expect((await withKey(other, '198.51.100.7')).statusCode).toBe(200);
    const session = await t.app.inject({
      method: 'GET',
      url: '/api/me',
      remoteAddress: '198.51.100.7',
      headers: { authorization: `Bearer ${u.token}` },
    });
    expect(session.statusCode, session.body).toBe(200);

    // The operator token is never limited, even from the exhausted address.
    for (let i = 0; i < 12; i++) {
      const res = await t.call({
        method: 'GET',
        url: `/api/organizations/${orgId}/balance`,
        remoteAddress: exhausted,
      });
      expect(res.statusCode, res.body).toBe(200);
    }
  });
});

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPERATOR_ONLY, type Permission, ROLE_PERMISSIONS, ROLES } from '../../../src/lib/authz.js';
import type { ErrorCode } from '../../../src/lib/problem.js';
import { addMember, as, createOrg, type Res, signUp, type User, uniqueEmail } from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../../harness.js';

/**
 * Who may do what: each role against the permission matrix (ROLE_PERMISSIONS), and the rate
 * limits per IP and per API key.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('the permission matrix', () => {
  interface Check {
    label: string;
    permission: Permission;
    ok: number;
    /** The problem code of an `ok` that is a refusal past authorization. */
    code?: ErrorCode;
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
    const org = await createOrg(t, { by: boss, name: `Matrix ${role}`, plan: 'growth' });
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

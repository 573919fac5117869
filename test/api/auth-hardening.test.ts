import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NEGATIVE_CACHE_MAX } from '../../src/modules/api-keys/api-keys.service.js';
import { SIGN_IN_FAILURES_PER_ACCOUNT } from '../../src/modules/auth/auth.service.js';
import { freshAddress, PASSWORD, uniqueEmail } from '../factories.js';
import { createTestApp, expectProblem, type TestContext } from '../harness.js';

/** A user signed up from a fresh address; `rawToken` is the session token in the answer's body. */
async function signUp(t: TestContext, remoteAddress = freshAddress()) {
  const email = uniqueEmail('user');
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    remoteAddress,
    payload: { email, password: PASSWORD, name: 'Hardened User' },
  });
  expect(res.statusCode, res.body).toBe(200);
  return { email, token: String(res.headers['set-auth-token']), rawToken: res.json().token as string };
}

function signIn(t: TestContext, email: string, password: string, remoteAddress = freshAddress()) {
  return t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-in/email',
    remoteAddress,
    payload: { email, password },
  });
}

const me = (t: TestContext, token: string, remoteAddress = freshAddress()) =>
  t.app.inject({
    method: 'GET',
    url: '/api/me',
    remoteAddress,
    headers: { authorization: `Bearer ${token}` },
  });

describe('sessions', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('accepts the session token only as issued (signed), never the bare token', async () => {
    const u = await signUp(t);
    expect(u.token).toContain('.');
    expect((await me(t, u.token)).statusCode).toBe(200);
    const bare = u.token.split('.')[0] as string;
    expect(bare).toBe(u.rawToken);
    expectProblem(await me(t, bare), 401, 'unauthenticated');
    // A signature made with another secret is no better.
    expectProblem(await me(t, `${bare}.${'A'.repeat(43)}`), 401, 'unauthenticated');
    expect((await me(t, u.token)).statusCode).toBe(200);
  });

  it('ends every other session when the password changes, whatever the client asks', async () => {
    const u = await signUp(t);
    const second = await signIn(t, u.email, PASSWORD);
    expect(second.statusCode, second.body).toBe(200);
    const secondToken = String(second.headers['set-auth-token']);
    expect((await me(t, secondToken)).statusCode).toBe(200);

    const change = await t.app.inject({
      method: 'POST',
      url: '/api/auth/change-password',
      headers: { authorization: `Bearer ${u.token}` },
      payload: {
        currentPassword: PASSWORD,
        newPassword: 'a brand new passphrase',
        revokeOtherSessions: false,
      },
    });
    expect(change.statusCode, change.body).toBe(200);
    const fresh = String(change.headers['set-auth-token']);
    expect(fresh).toContain('.');
    expectProblem(await me(t, secondToken), 401, 'unauthenticated');
    expectProblem(await me(t, u.token), 401, 'unauthenticated');
    expect((await me(t, fresh)).statusCode).toBe(200);
    const list = await t.app.inject({
      method: 'GET',
      url: '/api/auth/list-sessions',
      headers: { authorization: `Bearer ${fresh}` },
    });
    expect(list.json()).toHaveLength(1);
  });

  it(`throttles failed sign-ins per account: after ${SIGN_IN_FAILURES_PER_ACCOUNT}, from any address, 429`, async () => {
    const u = await signUp(t);
    const other = await signUp(t);
    for (let i = 0; i < SIGN_IN_FAILURES_PER_ACCOUNT; i++)
      expectProblem(await signIn(t, u.email, `wrong guess ${i}`), 401, 'unauthenticated');
    // Even the right password waits now, and so does the same address written otherwise.
    for (const email of [u.email, ` ${u.email.toUpperCase()}`]) {
      const limited = await signIn(t, email, PASSWORD);
      expectProblem(limited, 429, 'rate_limited');
      expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(15 * 60);
    }
    // Other accounts are not affected, and the sessions the account has keep working.
    expect((await signIn(t, other.email, PASSWORD)).statusCode).toBe(200);
    expect((await me(t, u.token)).statusCode).toBe(200);
  });

  it(`holds the limit under concurrency: of 40 wrong passwords at once, ${SIGN_IN_FAILURES_PER_ACCOUNT} reach Better Auth`, async () => {
    const u = await signUp(t);
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => signIn(t, u.email, `wrong guess ${i}`)),
    );
    const statuses = answers.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 401)).toHaveLength(SIGN_IN_FAILURES_PER_ACCOUNT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(40 - SIGN_IN_FAILURES_PER_ACCOUNT);
    expectProblem(await signIn(t, u.email, PASSWORD), 429, 'rate_limited');
  });

  it('counts only wrong passwords: refused requests of another kind leave the count as it was', async () => {
    const u = await signUp(t);
    for (let i = 0; i < SIGN_IN_FAILURES_PER_ACCOUNT - 1; i++)
      expectProblem(await signIn(t, u.email, 'wrong'), 401, 'unauthenticated');
    // No password at all: a 400, not a failed sign-in.
    for (let i = 0; i < 3; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: '/api/auth/sign-in/email',
        remoteAddress: freshAddress(),
        payload: { email: u.email },
      });
      expect(res.statusCode, res.body).toBe(400);
    }
    expect((await signIn(t, u.email, PASSWORD)).statusCode).toBe(200);
  });

  it('forgets the failures of an account at a successful sign-in', async () => {
    const u = await signUp(t);
    for (let i = 0; i < SIGN_IN_FAILURES_PER_ACCOUNT - 1; i++)
      expectProblem(await signIn(t, u.email, 'wrong'), 401, 'unauthenticated');
    expect((await signIn(t, u.email, PASSWORD)).statusCode).toBe(200);
    for (let i = 0; i < SIGN_IN_FAILURES_PER_ACCOUNT - 1; i++)
      expectProblem(await signIn(t, u.email, 'wrong'), 401, 'unauthenticated');
    expect((await signIn(t, u.email, PASSWORD)).statusCode).toBe(200);
  });
});

describe('API keys: failed attempts are counted apart from the key', () => {
  let t: TestContext;
  let orgId: string;
  beforeAll(async () => {
    // 5 per address, 3 per key; failed attempts per prefix: 5, like the address.
    t = await createTestApp({ rateLimit: { perIp: 5, perKey: 3 } });
    const org = await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Keyed' } });
    expect(org.statusCode, org.body).toBe(201);
    orgId = org.json().id;
  });
  afterAll(() => t.close());

  async function mint(): Promise<string> {
    const res = await t.call({
      method: 'POST',
      url: `/api/organizations/${orgId}/api-keys`,
      payload: { name: 'k', scopes: ['read'] },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().key as string;
  }
  const wrongSecret = (key: string) => `${key.slice(0, 17)}${'A'.repeat(43)}`;
  const withKey = (key: string, remoteAddress: string) =>
    t.app.inject({
      method: 'GET',
      url: `/api/organizations/${orgId}/balance`,
      remoteAddress,
      headers: { authorization: `Bearer ${key}` },
    });

  it('a known prefix with wrong secrets spends the address’s budget, never the key’s', async () => {
    const key = await mint();
    const attacker = '198.51.100.1';
    for (let i = 0; i < 5; i++)
      expectProblem(await withKey(wrongSecret(key), attacker), 401, 'unauthenticated');
    expectProblem(await withKey(wrongSecret(key), attacker), 429, 'rate_limited');
    // The key itself still has its whole budget (3), wherever it is used from.
    for (let i = 0; i < 3; i++) expect((await withKey(key, '198.51.100.2')).statusCode).toBe(200);
    expectProblem(await withKey(key, '198.51.100.3'), 429, 'rate_limited');
  });

  it('refuses wrong secrets for a prefix that failed too often, from any address; the key still works', async () => {
    const key = await mint();
    for (let i = 0; i < 5; i++)
      expectProblem(await withKey(wrongSecret(key), `198.51.100.${20 + i}`), 401, 'unauthenticated');
    const limited = await withKey(wrongSecret(key), '198.51.100.30');
    expectProblem(limited, 429, 'rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(limited.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await withKey(key, '198.51.100.31')).statusCode).toBe(200);
  });

  it('counts random obk_ prefixes against the address', async () => {
    const address = '198.51.100.40';
    const random = () =>
      `obk_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url').slice(0, 43)}`;
    for (let i = 0; i < 5; i++) expectProblem(await withKey(random(), address), 401, 'unauthenticated');
    expectProblem(await withKey(random(), address), 429, 'rate_limited');
    // A random prefix never takes the limit of an address that did not send it.
    expectProblem(await withKey(random(), '198.51.100.41'), 401, 'unauthenticated');
  });

  it('keeps at most NEGATIVE_CACHE_MAX unknown prefixes in memory', { timeout: 120_000 }, async () => {
    for (let i = 0; i < NEGATIVE_CACHE_MAX + 20; i++) {
      const token = `obk_${i.toString(36).padStart(12, '0')}_${'B'.repeat(43)}`;
      expect((await t.app.services.apiKeys.verify(token)).actor).toBeUndefined();
    }
    expect(t.app.services.apiKeys.cacheSizes().unknown).toBe(NEGATIVE_CACHE_MAX);
    // Keys made later are still found.
    const key = await mint();
    expect((await withKey(key, '198.51.100.50')).statusCode).toBe(200);
  });
});

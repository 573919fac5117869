import { randomBytes } from 'node:crypto';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type App, buildApp } from '../../src/app.js';
import type { SignUpPolicy } from '../../src/config.js';
import { ADMIN_TOKEN, createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

const PASSWORD = 'correct horse battery';
const run = randomBytes(3).toString('hex');
let seq = 0;
const uniqueEmail = (label: string) => `${label}.${run}.${++seq}@example.test`;

// One database; an app per SIGNUP policy on it (accounts made under `open` exist for the others).
let t: TestContext;
const apps = new Map<SignUpPolicy, App>();
beforeAll(async () => {
  t = await createTestApp();
  apps.set('open', t.app);
  for (const policy of ['invite-only', 'closed'] as const) {
    const app = await buildApp({
      db: t.db,
      adminToken: ADMIN_TOKEN,
      rateLimit: { perIp: 1e6, perKey: 1e6 },
      signUp: policy,
    });
    await app.ready();
    apps.set(policy, app);
  }
});
afterAll(async () => {
  for (const [policy, app] of apps) if (policy !== 'open') await app.close();
  await t.close();
});

const app = (policy: SignUpPolicy) => apps.get(policy) as App;
const operator = (policy: SignUpPolicy, opts: InjectOptions) =>
  app(policy).inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

const signUp = (policy: SignUpPolicy, email = uniqueEmail('self')) =>
  app(policy).inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password: PASSWORD, name: 'Self Made' },
  });

/** An invitation from a new organization; returns the link's token (read from the mailbox). */
async function invite(policy: SignUpPolicy, email: string): Promise<string> {
  const org = await operator(policy, {
    method: 'POST',
    url: '/api/organizations',
    payload: { name: 'Inviting' },
  });
  expect(org.statusCode, org.body).toBe(201);
  const inv = await operator(policy, {
    method: 'POST',
    url: `/api/organizations/${org.json().id}/invitations`,
    payload: { email, role: 'developer' },
  });
  expect(inv.statusCode, inv.body).toBe(201);
  const box = await operator(policy, { method: 'GET', url: '/api/dev/mailbox' });
  const mail = (box.json().data as Array<{ to: string; text: string }>).find((m) => m.to === email);
  return /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail?.text ?? '')?.[1] as string;
}

const accept = (policy: SignUpPolicy, token: string, payload: object, authorization?: string) =>
  app(policy).inject({
    method: 'POST',
    url: `/api/invitations/${token}/accept`,
    payload,
    ...(authorization ? { headers: { authorization } } : {}),
  });

describe('SIGNUP=open (the default)', () => {
  it('lets anyone sign up', async () => {
    expect((await signUp('open')).statusCode).toBe(200);
  });
});

describe('SIGNUP=invite-only', () => {
  it('refuses a self sign-up with 403 sign_up_disabled, writing nothing', async () => {
    const before = await tableCounts(t.db);
    expectProblem(await signUp('invite-only'), 403, 'sign_up_disabled');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it.each([
    '/api/auth/sign-up/email/',
    '/api/auth//sign-up/email',
    '/api/auth/sign-up//email',
    '/api/auth/./sign-up/email',
    '/api/auth/x/../sign-up/email',
    '/api/auth/sign-up/email?callbackURL=/',
    '/api/auth/sign-up/email#x',
    '/api/auth/Sign-Up/Email',
    '/api/auth/sign-up%2Femail',
    '/api/auth/sign-up/%65mail',
    '/api//auth/sign-up/email',
  ])('creates no account however the path is written: %s', async (url) => {
    const before = await tableCounts(t.db);
    const res = await app('invite-only').inject({
      method: 'POST',
      url,
      payload: { email: uniqueEmail('sneaky'), password: PASSWORD, name: 'Sneaky' },
    });
    expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('creates the account through an invitation link', async () => {
    const email = uniqueEmail('invited');
    const token = await invite('invite-only', email);
    const res = await accept('invite-only', token, { name: 'Invited', password: PASSWORD });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['set-auth-token']).toBeTruthy();
  });

  it('still signs existing accounts in', async () => {
    const email = uniqueEmail('existing');
    expect((await signUp('open', email)).statusCode).toBe(200);
    const res = await app('invite-only').inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email, password: PASSWORD },
    });
    expect(res.statusCode, res.body).toBe(200);
  });
});

describe('SIGNUP=closed', () => {
  it('refuses a self sign-up, writing nothing', async () => {
    const before = await tableCounts(t.db);
    expectProblem(await signUp('closed'), 403, 'sign_up_disabled');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('has Better Auth itself refuse a sign-up, however it is asked', async () => {
    const before = await tableCounts(t.db);
    const res = await app('closed').services.auth.api.signUpEmail({
      body: { email: uniqueEmail('direct'), password: PASSWORD, name: 'Direct' },
      asResponse: true,
    });
    expect(res.status).toBeGreaterThanOrEqual(400);
    expect(((await res.json()) as { code?: string }).code).toBe('EMAIL_PASSWORD_SIGN_UP_DISABLED');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('refuses to create an account through an invitation link; an existing account accepts it', async () => {
    const email = uniqueEmail('closed');
    const token = await invite('closed', email);
    const before = await tableCounts(t.db);
    expectProblem(
      await accept('closed', token, { name: 'Newcomer', password: PASSWORD }),
      403,
      'sign_up_disabled',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    const preview = await app('closed').inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode, preview.body).toBe(200);

    // The account exists (made while sign-up was open): signed in, it accepts.
    const made = await signUp('open', email);
    expect(made.statusCode).toBe(200);
    const session = await app('closed').inject({
      method: 'POST',
      url: '/api/auth/sign-in/email',
      payload: { email, password: PASSWORD },
    });
    expect(session.statusCode, session.body).toBe(200);
    const res = await accept('closed', token, {}, `Bearer ${session.headers['set-auth-token']}`);
    expect(res.statusCode, res.body).toBe(200);
  });
});

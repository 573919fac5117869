import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAILS_PER_ACCOUNT } from '../../src/modules/auth/auth.service.js';
import { freshAddress, PASSWORD, signUp, uniqueEmail } from '../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

const PUBLIC_URL = 'https://orgbase.test';
const NEW_PASSWORD = 'an entirely new passphrase';

const post = (t: TestContext, url: string, payload: object, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, payload, headers, remoteAddress: freshAddress() });

/** A user signed up from an address of its own, as every request here comes from. */
const newUser = (t: TestContext) => signUp(t, { name: 'Reset Tester', remoteAddress: freshAddress() });

const signIn = (t: TestContext, email: string, password: string) =>
  post(t, '/api/auth/sign-in/email', { email, password });

const me = (t: TestContext, token: string) =>
  t.app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Bearer ${token}` } });

interface Kept {
  to: string;
  subject: string;
  text: string;
  html: string;
}

/** The local mailbox's messages to `to`, newest first (operator, over HTTP). */
async function mailboxTo(t: TestContext, to: string): Promise<Kept[]> {
  const res = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
  expect(res.statusCode, res.body).toBe(200);
  return (res.json().data as Kept[]).filter((m) => m.to === to);
}

/**
 * Account mail is sent in the background (the answer never waits for it): the mailbox's messages
 * to `to` once there are at least `n` of them, newest first.
 */
async function mailboxAwait(t: TestContext, to: string, n = 1): Promise<Kept[]> {
  const deadline = Date.now() + 5000;
  let box = await mailboxTo(t, to);
  while (box.length < n && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    box = await mailboxTo(t, to);
  }
  expect(box.length, `mails to ${to}`).toBeGreaterThanOrEqual(n);
  return box;
}

const resetTokenIn = (text: string) => {
  const token = /Reset token: ([A-Za-z0-9_-]+)/.exec(text)?.[1];
  expect(token, text).toBeTruthy();
  return token as string;
};

describe('password reset, with the local mailbox', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp({ publicUrl: PUBLIC_URL });
  });
  afterAll(() => t.close());

  it('mails a token that sets a new password once and ends every session', async () => {
    const u = await newUser(t);
    const second = String((await signIn(t, u.email, PASSWORD)).headers['set-auth-token']);
    const asked = await post(t, '/api/auth/request-password-reset', { email: u.email });
    expect(asked.statusCode, asked.body).toBe(200);
    const [mail, ...more] = await mailboxAwait(t, u.email);
    expect(more).toHaveLength(0);
    expect(mail?.subject).toBe('Reset your Orgbase password');
    expect(mail?.text).toContain(`POST ${PUBLIC_URL}/api/auth/reset-password`);
    const token = resetTokenIn(mail?.text ?? '');
    expect(mail?.html).toContain(token);

    const reset = await post(t, '/api/auth/reset-password', { token, newPassword: NEW_PASSWORD });
    expect(reset.statusCode, reset.body).toBe(200);
    expectProblem(await me(t, u.token), 401, 'unauthenticated');
    expectProblem(await me(t, second), 401, 'unauthenticated');
    expectProblem(await signIn(t, u.email, PASSWORD), 401, 'unauthenticated');
    expect((await signIn(t, u.email, NEW_PASSWORD)).statusCode).toBe(200);
    // Once only.
    expectProblem(
      await post(t, '/api/auth/reset-password', { token, newPassword: 'yet another passphrase' }),
      400,
      'validation_failed',
      'token',
    );
    expect((await signIn(t, u.email, NEW_PASSWORD)).statusCode).toBe(200);
  });

  it('answers an unknown address like a known one, and mails nothing', async () => {
    const nobody = uniqueEmail('nobody');
    const res = await post(t, '/api/auth/request-password-reset', { email: nobody });
    expect(res.statusCode, res.body).toBe(200);
    expect(await mailboxTo(t, nobody)).toHaveLength(0);
  });

  it('refuses a wrong token and a too short password (400 naming the field), changing nothing', async () => {
    const u = await newUser(t);
    await post(t, '/api/auth/request-password-reset', { email: u.email });
    const token = resetTokenIn((await mailboxAwait(t, u.email))[0]?.text ?? '');
    const before = await tableCounts(t.db);
    expectProblem(
      await post(t, '/api/auth/reset-password', { token: 'not-the-token', newPassword: NEW_PASSWORD }),
      400,
      'validation_failed',
      'token',
    );
    expectProblem(
      await post(t, '/api/auth/reset-password', { token, newPassword: 'short' }),
      400,
      'validation_failed',
      'newPassword',
    );
    const noToken = await post(t, '/api/auth/reset-password', { newPassword: NEW_PASSWORD });
    expect(noToken.statusCode, noToken.body).toBe(400);
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await me(t, u.token)).statusCode).toBe(200);
    // The token still works after the refusals.
    expect((await post(t, '/api/auth/reset-password', { token, newPassword: NEW_PASSWORD })).statusCode).toBe(
      200,
    );
  });

  it('refuses a malformed address with 400', async () => {
    const res = await post(t, '/api/auth/request-password-reset', { email: 'not an address' });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
  });

  it('links to the client’s own page (redirectTo) on PUBLIC_URL only', async () => {
    const u = await newUser(t);
    const ok = await post(t, '/api/auth/request-password-reset', {
      email: u.email,
      redirectTo: `${PUBLIC_URL}/reset`,
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const mail = (await mailboxAwait(t, u.email))[0];
    const token = resetTokenIn(mail?.text ?? '');
    const link = new RegExp(`${PUBLIC_URL}/api/auth/reset-password/${token}\\?callbackURL=[^\\s"]+`).exec(
      mail?.text ?? '',
    )?.[0];
    expect(link, mail?.text).toBeTruthy();
    const opened = await t.app.inject({ method: 'GET', url: (link as string).slice(PUBLIC_URL.length) });
    expect(opened.statusCode).toBe(302);
    expect(opened.headers.location).toBe(`${PUBLIC_URL}/reset?token=${token}`);

    const foreign = await post(t, '/api/auth/request-password-reset', {
      email: u.email,
      redirectTo: 'https://evil.test/steal',
    });
    expectProblem(foreign, 403, 'forbidden');
    expect(await mailboxTo(t, u.email)).toHaveLength(1);
  });

  it(`sends at most ${MAILS_PER_ACCOUNT} account mails an hour to one address (then 429)`, async () => {
    const u = await newUser(t);
    for (let i = 0; i < MAILS_PER_ACCOUNT; i++)
      expect((await post(t, '/api/auth/request-password-reset', { email: u.email })).statusCode).toBe(200);
    const limited = await post(t, '/api/auth/request-password-reset', { email: u.email.toUpperCase() });
    expectProblem(limited, 429, 'rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect(await mailboxAwait(t, u.email, MAILS_PER_ACCOUNT)).toHaveLength(MAILS_PER_ACCOUNT);
  });

  it('does not count a refused request against the address’s mail', async () => {
    const u = await newUser(t);
    for (let i = 0; i < MAILS_PER_ACCOUNT + 1; i++)
      expectProblem(
        await post(t, '/api/auth/request-password-reset', {
          email: u.email,
          redirectTo: 'https://evil.test/',
        }),
        403,
        'forbidden',
      );
    expect((await post(t, '/api/auth/request-password-reset', { email: u.email })).statusCode).toBe(200);
    expect(await mailboxAwait(t, u.email)).toHaveLength(1);
  });
});

describe('password reset over SMTP', () => {
  const received: Array<{ to: string[]; raw: string }> = [];
  // The server acknowledges a message (and it counts as received) only once this is settled.
  let accepting: Promise<void> = Promise.resolve();
  const smtp = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        void accepting.then(() => {
          received.push({
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString(),
          });
          callback();
        });
      });
    },
  });
  let t: TestContext;
  beforeAll(async () => {
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    const { port } = smtp.server.address() as AddressInfo;
    t = await createTestApp({ publicUrl: PUBLIC_URL, smtpUrl: `smtp://127.0.0.1:${port}` });
  });
  afterAll(async () => {
    await t.close();
    await new Promise<void>((resolve) => smtp.close(() => resolve()));
  });

  it('sends the reset mail to the SMTP server', async () => {
    const u = await newUser(t);
    expect((await post(t, '/api/auth/request-password-reset', { email: u.email })).statusCode).toBe(200);
    const deadline = Date.now() + 5000;
    while (!received.some((m) => m.to.includes(u.email)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    const mail = received.find((m) => m.to.includes(u.email));
    expect(mail, 'a mail over SMTP').toBeDefined();
    // Quoted-printable soft line breaks and escapes, undone.
    const text = (mail?.raw ?? '')
      .replace(/=\r?\n/g, '')
      .replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
    expect(text).toContain('Reset your Orgbase password');
    const token = resetTokenIn(text);
    expect((await post(t, '/api/auth/reset-password', { token, newPassword: NEW_PASSWORD })).statusCode).toBe(
      200,
    );
    expect((await signIn(t, u.email, NEW_PASSWORD)).statusCode).toBe(200);
  });

  it('answers before the mail is delivered, so an existing account answers like an unknown one', async () => {
    const u = await newUser(t);
    let accept = () => {};
    accepting = new Promise<void>((resolve) => {
      accept = resolve;
    });
    // Accepted anyway after 3 s, so that waiting for delivery fails the assertions, not the timeout.
    const fallback = setTimeout(() => accept(), 3000);
    try {
      const started = Date.now();
      const res = await post(t, '/api/auth/request-password-reset', { email: u.email });
      expect(res.statusCode, res.body).toBe(200);
      expect(
        received.some((m) => m.to.includes(u.email)),
        'the answer waited for the SMTP server',
      ).toBe(false);
      expect(Date.now() - started).toBeLessThan(2000);
    } finally {
      accept();
      clearTimeout(fallback);
      accepting = Promise.resolve();
    }
    // The mail still goes out.
    const deadline = Date.now() + 5000;
    while (!received.some((m) => m.to.includes(u.email)) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    expect(received.some((m) => m.to.includes(u.email))).toBe(true);
  });

  it(`holds the mail limit under concurrency: of 20 asked at once, ${MAILS_PER_ACCOUNT} are sent`, async () => {
    const u = await newUser(t);
    // A slow SMTP server keeps requests in flight together (if they wait for it).
    let accept = () => {};
    accepting = new Promise<void>((resolve) => {
      accept = resolve;
    });
    const fallback = setTimeout(() => accept(), 1000);
    let statuses: number[];
    try {
      const answers = await Promise.all(
        Array.from({ length: 20 }, () => post(t, '/api/auth/request-password-reset', { email: u.email })),
      );
      statuses = answers.map((r) => r.statusCode);
    } finally {
      accept();
      clearTimeout(fallback);
      accepting = Promise.resolve();
    }
    expect(statuses.filter((s) => s === 200)).toHaveLength(MAILS_PER_ACCOUNT);
    expect(statuses.filter((s) => s === 429)).toHaveLength(20 - MAILS_PER_ACCOUNT);
    const deadline = Date.now() + 5000;
    const mails = () => received.filter((m) => m.to.includes(u.email)).length;
    while (mails() < MAILS_PER_ACCOUNT && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    expect(mails()).toBe(MAILS_PER_ACCOUNT);
  });
});

describe('REQUIRE_EMAIL_VERIFICATION=true', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp({ publicUrl: PUBLIC_URL, requireEmailVerification: true });
  });
  afterAll(() => t.close());

  const verifyLinkIn = (text: string) => {
    const link = new RegExp(`${PUBLIC_URL}(/api/auth/verify-email\\?token=[A-Za-z0-9._-]+)`).exec(text)?.[1];
    expect(link, text).toBeTruthy();
    return link as string;
  };

  it('signs in only once the address is verified through the mailed link', async () => {
    const email = uniqueEmail('verify');
    const res = await post(t, '/api/auth/sign-up/email', { email, password: PASSWORD, name: 'Verify Me' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['set-auth-token']).toBeUndefined();
    const [mail] = await mailboxAwait(t, email);
    expect(mail?.subject).toBe('Confirm your email address for Orgbase');
    const link = verifyLinkIn(mail?.text ?? '');

    expectProblem(await signIn(t, email, PASSWORD), 403, 'email_not_verified');
    // The refused sign-in mailed a fresh link.
    expect(await mailboxAwait(t, email, 2)).toHaveLength(2);
    expectProblem(await signIn(t, email, 'not the password'), 401, 'unauthenticated');

    const bad = await t.app.inject({ method: 'GET', url: '/api/auth/verify-email?token=forged.token.value' });
    expect(bad.statusCode).toBeGreaterThanOrEqual(400);
    expect(bad.statusCode).toBeLessThan(500);
    expectProblem(await signIn(t, email, PASSWORD), 403, 'email_not_verified');

    const verified = await t.app.inject({ method: 'GET', url: link });
    expect(verified.statusCode, verified.body).toBe(200);
    expect(verified.json()).toMatchObject({ status: true });
    const signedIn = await signIn(t, email, PASSWORD);
    expect(signedIn.statusCode, signedIn.body).toBe(200);
    expect((await me(t, String(signedIn.headers['set-auth-token']))).statusCode).toBe(200);
  });

  it('answers a sign-up with a taken address like a new one, writing nothing', async () => {
    const email = uniqueEmail('taken');
    expect(
      (await post(t, '/api/auth/sign-up/email', { email, password: PASSWORD, name: 'First' })).statusCode,
    ).toBe(200);
    const before = await tableCounts(t.db);
    const again = await post(t, '/api/auth/sign-up/email', {
      email,
      password: 'other password',
      name: 'Second',
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('lets an invitation link create a signed-in account: the link proved the address', async () => {
    const org = await t.call({
      method: 'POST',
      url: '/api/organizations',
      payload: { name: 'Verified Inc' },
    });
    expect(org.statusCode, org.body).toBe(201);
    const email = uniqueEmail('invitee');
    const inv = await t.call({
      method: 'POST',
      url: `/api/organizations/${org.json().id}/invitations`,
      payload: { email, role: 'developer' },
    });
    expect(inv.statusCode, inv.body).toBe(201);
    const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec((await mailboxTo(t, email))[0]?.text ?? '')?.[1];
    const accepted = await post(t, `/api/invitations/${token}/accept`, {
      name: 'Invitee',
      password: PASSWORD,
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
    const session = String(accepted.headers['set-auth-token']);
    expect((await me(t, session)).json().organizations.map((o: { id: string }) => o.id)).toContain(
      org.json().id,
    );
    expect((await signIn(t, email, PASSWORD)).statusCode).toBe(200);
    // Only the invitation was mailed: no verification mail.
    expect(await mailboxTo(t, email)).toHaveLength(1);
  });
});

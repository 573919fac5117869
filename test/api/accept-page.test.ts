import { afterAll, beforeAll, expect, it } from 'vitest';
import { createOrg } from '../factories.js';
import { createTestApp, type TestContext } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp({ publicUrl: 'https://orgbase.test' });
});
afterAll(() => t.close());

async function invite(orgName: string, email: string): Promise<string> {
  const org = await createOrg(t, { name: orgName });
  await t.call({
    method: 'POST',
    url: `/api/organizations/${org.id}/invitations`,
    payload: { email, role: 'developer' },
  });
  const mail = (await t.call({ method: 'GET', url: '/api/dev/mailbox' }))
    .json()
    .data.find((m: { to: string }) => m.to === email);
  return /orgbase\.test\/invitations\/([A-Za-z0-9_-]+)/.exec(mail.text)?.[1] as string;
}

it('renders the invitation the mail links to, escaping what the organization controls', async () => {
  const token = await invite('<script>alert(1)</script> & Co', 'page@example.test');
  const res = await t.app.inject({ method: 'GET', url: `/invitations/${token}` });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toMatch(/^text\/html/);
  expect(res.body).toContain('&#60;script&#62;alert(1)&#60;/script&#62; &#38; Co');
  expect(res.body).not.toContain('<script>alert(1)');
  expect(res.body).toContain('page@example.test');
  expect(res.body).toContain('/api/invitations/');
});

it('says plainly when the link can no longer be used', async () => {
  const token = await invite('Gone Inc', 'gone@example.test');
  const accepted = await t.app.inject({
    method: 'POST',
    url: `/api/invitations/${token}/accept`,
    payload: { name: 'Gone', password: 'long-enough-1' },
  });
  expect(accepted.statusCode).toBe(200);
  const res = await t.app.inject({ method: 'GET', url: `/invitations/${token}` });
  expect(res.statusCode).toBe(410);
  expect(res.body).toContain('cannot be used');
  expect(
    (await t.app.inject({ method: 'GET', url: '/invitations/not-a-real-token-at-all-xx' })).statusCode,
  ).toBe(404);
});

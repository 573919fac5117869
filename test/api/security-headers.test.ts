import { createHash } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signUp, uniqueEmail } from '../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';

type Res = LightMyRequestResponse;

const PUBLIC_URL = 'https://orgbase.test';

/** The directives of a Content-Security-Policy header, by name. */
function csp(res: Res): Map<string, string[]> {
  const header = String(res.headers['content-security-policy'] ?? '');
  expect(header, 'a Content-Security-Policy').not.toBe('');
  return new Map(
    header
      .split(';')
      .map((d) => d.trim().split(/\s+/))
      .filter((parts) => parts[0])
      .map(([name, ...values]) => [name as string, values]),
  );
}

function expectBaseHeaders(res: Res) {
  expect(res.headers['x-content-type-options']).toBe('nosniff');
  expect(res.headers['x-frame-options']).toBe('DENY');
  expect(csp(res).has('frame-ancestors')).toBe(true);
}

describe('security headers on http (PUBLIC_URL unset)', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it('sends nosniff, no framing and a CSP on every kind of response; no HSTS', async () => {
    const u = await signUp(t);
    const responses = [
      await t.app.inject({ method: 'GET', url: '/healthz' }),
      await t.app.inject({ method: 'GET', url: '/api/me', headers: { authorization: `Bearer ${u.token}` } }),
      await t.app.inject({ method: 'GET', url: '/api/me' }),
      await t.app.inject({ method: 'GET', url: '/no/such/route' }),
      await t.app.inject({ method: 'POST', url: '/api/auth/sign-in/email', payload: { email: 'x' } }),
      await t.app.inject({ method: 'GET', url: '/openapi.json' }),
    ];
    for (const res of responses) {
      expectBaseHeaders(res);
      expect(res.headers['strict-transport-security']).toBeUndefined();
      // On plain http, upgrade-insecure-requests would break the pages' own requests.
      expect(csp(res).has('upgrade-insecure-requests')).toBe(false);
    }
    // A JSON answer is never a document: its policy allows nothing at all.
    expect(csp(responses[0] as Res).get('default-src')).toEqual(["'none'"]);
    expect(csp(responses[0] as Res).get('frame-ancestors')).toEqual(["'none'"]);
  });

  it('marks every /api answer Cache-Control: no-store, errors included', async () => {
    const u = await signUp(t);
    const me = await t.app.inject({
      method: 'GET',
      url: '/api/me',
      headers: { authorization: `Bearer ${u.token}` },
    });
    expect(me.statusCode).toBe(200);
    expect(me.headers['cache-control']).toBe('no-store');
    const list = await t.call({ method: 'GET', url: '/api/organizations' });
    expect(list.headers['cache-control']).toBe('no-store');
    const refused = await t.app.inject({ method: 'GET', url: '/api/me' });
    expect(refused.statusCode).toBe(401);
    expect(refused.headers['cache-control']).toBe('no-store');
    const signIn = await t.app.inject({ method: 'POST', url: '/api/auth/sign-in/email', payload: {} });
    expect(signIn.headers['cache-control']).toMatch(/no-store/);
  });

  it('serves /docs under a CSP that allows what the page loads', async () => {
    const page = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    const policy = csp(page);
    expect(page.headers['x-content-type-options']).toBe('nosniff');
    expect(policy.get('script-src')).toContain("'self'");
    expect(policy.has('upgrade-insecure-requests')).toBe(false);
    // Every inline script runs by its hash; every other script and stylesheet is same-origin.
    const scripts = [...page.body.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.length).toBeGreaterThan(0);
    for (const [, attributes, body] of scripts) {
      if (/\bsrc=/.test(attributes ?? '')) {
        const src = /\bsrc="([^"]+)"/.exec(attributes ?? '')?.[1] as string;
        expect(src, 'a same-origin script').not.toMatch(/^(https?:)?\/\//);
        const loaded = await t.app.inject({ method: 'GET', url: new URL(src, 'http://x/docs/').pathname });
        expect(loaded.statusCode, src).toBe(200);
      } else {
        const hash = `'sha256-${createHash('sha256')
          .update(body ?? '')
          .digest('base64')}'`;
        expect(policy.get('script-src'), 'the inline script’s hash').toContain(hash);
      }
    }
    for (const [, href] of page.body.matchAll(/<link[^>]+href="([^"]+)"/g))
      expect(href, 'a same-origin stylesheet or icon').not.toMatch(/^(https?:)?\/\//);
    expect(page.body).not.toMatch(/<style[\s>]/);
  });

  it('runs the invitation page’s inline script and style only through this response’s nonces', async () => {
    const org = await t.call({ method: 'POST', url: '/api/organizations', payload: { name: 'Nonce Inc' } });
    const email = uniqueEmail('page');
    await t.call({
      method: 'POST',
      url: `/api/organizations/${org.json().id}/invitations`,
      payload: { email, role: 'developer' },
    });
    const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
    const mail = (box.json().data as Array<{ to: string; text: string }>).find((m) => m.to === email);
    const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail?.text ?? '')?.[1];
    const nonces = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const page = await t.app.inject({ method: 'GET', url: `/invitations/${token}` });
      expect(page.statusCode).toBe(200);
      expectBaseHeaders(page);
      const policy = csp(page);
      const script = /<script nonce="([0-9a-f]+)">/.exec(page.body)?.[1];
      const style = /<style nonce="([0-9a-f]+)">/.exec(page.body)?.[1];
      expect(script, page.body).toBeTruthy();
      expect(style, page.body).toBeTruthy();
      expect(policy.get('script-src')).toContain(`'nonce-${script}'`);
      expect(policy.get('style-src')).toContain(`'nonce-${style}'`);
      expect(policy.get('script-src')).not.toContain("'unsafe-inline'");
      nonces.add(script as string);
    }
    expect(nonces.size, 'a new nonce per response').toBe(2);
  });
});

describe('on https (PUBLIC_URL=https://…)', () => {
  let t: TestContext;
  beforeAll(async () => {
    t = await createTestApp({ publicUrl: PUBLIC_URL });
  });
  afterAll(() => t.close());

  it('adds HSTS everywhere, and upgrade-insecure-requests to the pages', async () => {
    for (const url of ['/healthz', '/api/me', '/docs/'])
      expect((await t.app.inject({ method: 'GET', url })).headers['strict-transport-security'], url).toBe(
        'max-age=31536000',
      );
    expect(csp(await t.app.inject({ method: 'GET', url: '/docs/' })).has('upgrade-insecure-requests')).toBe(
      true,
    );
    const page = await t.app.inject({
      method: 'GET',
      url: '/invitations/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    });
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    expect(csp(page).has('upgrade-insecure-requests')).toBe(true);
    expect(page.headers['referrer-policy']).toBe('no-referrer');
  });
});

describe('cookie-authenticated state changes check Origin against PUBLIC_URL', () => {
  let t: TestContext;
  let u: { token: string; cookie: string };
  let orgId: string;
  beforeAll(async () => {
    t = await createTestApp({ publicUrl: PUBLIC_URL });
    u = await signUp(t);
    const org = await t.app.inject({
      method: 'POST',
      url: '/api/organizations',
      headers: { authorization: `Bearer ${u.token}` },
      payload: { name: 'Origin Checked' },
    });
    expect(org.statusCode, org.body).toBe(201);
    orgId = org.json().id;
  });
  afterAll(() => t.close());

  const withCookie = (opts: InjectOptions, headers: Record<string, string>) =>
    t.app.inject({ ...opts, headers: { cookie: u.cookie, ...headers } });
  const orgActive = async () =>
    (await t.call({ method: 'GET', url: `/api/organizations/${orgId}` })).json().active as boolean;

  it('refuses a bodiless POST from a foreign origin with 403 origin_not_allowed, changing nothing', async () => {
    const before = await tableCounts(t.db);
    const toggle = { method: 'POST' as const, url: `/api/organizations/${orgId}/toggle` };
    for (const origin of [
      'https://evil.test',
      'http://orgbase.test',
      'https://orgbase.test.evil.test',
      'null',
    ])
      expectProblem(await withCookie(toggle, { origin }), 403, 'origin_not_allowed');
    // No Origin, but the browser says cross-site.
    expectProblem(await withCookie(toggle, { 'sec-fetch-site': 'cross-site' }), 403, 'origin_not_allowed');
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await orgActive()).toBe(true);
  });

  it('refuses PATCH, DELETE and the auth routes the same way', async () => {
    const origin = 'https://evil.test';
    expectProblem(
      await withCookie(
        { method: 'PATCH', url: `/api/organizations/${orgId}`, payload: { description: 'defaced' } },
        { origin },
      ),
      403,
      'origin_not_allowed',
    );
    expectProblem(
      await withCookie({ method: 'DELETE', url: `/api/organizations/${orgId}` }, { origin }),
      403,
      'origin_not_allowed',
    );
    expectProblem(
      await withCookie({ method: 'POST', url: '/api/auth/sign-out' }, { origin }),
      403,
      'origin_not_allowed',
    );
    // The session survived the forged sign-out.
    expect((await withCookie({ method: 'GET', url: '/api/me' }, {})).statusCode).toBe(200);
  });

  it('lets the same origin, reads, and clients that are not browsers through', async () => {
    const toggle = { method: 'POST' as const, url: `/api/organizations/${orgId}/toggle` };
    expect((await withCookie(toggle, { origin: PUBLIC_URL })).statusCode).toBe(200);
    expect((await withCookie(toggle, { 'sec-fetch-site': 'same-origin' })).statusCode).toBe(200);
    expect((await withCookie(toggle, {})).statusCode).toBe(200);
    expect((await withCookie(toggle, { origin: PUBLIC_URL })).statusCode).toBe(200);
    expect(await orgActive()).toBe(true);
    // Reading is not a state change.
    expect(
      (await withCookie({ method: 'GET', url: '/api/me' }, { origin: 'https://evil.test' })).statusCode,
    ).toBe(200);
  });

  it('does not check bearer-token requests (a browser never attaches the token by itself)', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/organizations/${orgId}/toggle`,
      headers: { authorization: `Bearer ${u.token}`, origin: 'https://evil.test' },
    });
    expect(res.statusCode, res.body).toBe(200);
    const back = await t.app.inject({
      method: 'POST',
      url: `/api/organizations/${orgId}/toggle`,
      headers: { authorization: `Bearer ${u.token}`, origin: 'https://evil.test' },
    });
    expect(back.statusCode, back.body).toBe(200);
    expect(await orgActive()).toBe(true);
  });
});

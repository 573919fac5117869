import type { HTTPMethods, InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ID_PATTERN } from '../../src/lib/ids.js';
import { ADMIN_TOKEN, createTestApp, expectProblem, type TestContext, writesNothing } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const ONE_MIB = 1024 * 1024;
const DEFAULT_ORG = 'internal';

/** Every response of this file carries an X-Request-Id. */
function checked(res: LightMyRequestResponse): LightMyRequestResponse {
  const id = res.headers['x-request-id'];
  expect(id, `${res.statusCode} ${res.body.slice(0, 200)}`).toBeTypeOf('string');
  expect(String(id).length).toBeGreaterThan(0);
  return res;
}

/** As the operator. */
async function call(opts: InjectOptions) {
  return checked(await t.call(opts));
}

/** Exactly as given: no Authorization header unless the caller sets one. */
async function raw(opts: InjectOptions) {
  return checked(await t.app.inject(opts));
}

/** A complete RFC 9457 problem with our `code` and `request_id`. */

const createJson = (payload: string, headers: Record<string, string> = {}): InjectOptions => ({
  method: 'POST',
  url: '/api/organizations',
  headers: { 'content-type': 'application/json', ...headers },
  payload,
});

describe('authentication', () => {
  function expectUnauthenticated(res: LightMyRequestResponse) {
    expectProblem(res, 401, 'unauthenticated');
    expect(res.headers['www-authenticate']).toMatch(/^Bearer\b/);
  }

  it('rejects a missing token', async () => {
    await writesNothing(t.db, async () => {
      expectUnauthenticated(await raw({ method: 'GET', url: '/api/organizations' }));
      expectUnauthenticated(await raw(createJson('{"name":"Nope"}')));
    });
  });

  it('rejects a wrong token', async () => {
    await writesNothing(t.db, async () => {
      const headers = { authorization: 'Bearer not-the-operator-token-at-all' };
      expectUnauthenticated(await raw({ method: 'GET', url: '/api/organizations', headers }));
      expectUnauthenticated(await raw(createJson('{"name":"Nope"}', headers)));
      expectUnauthenticated(
        await raw({ method: 'POST', url: `/api/organizations/${DEFAULT_ORG}/toggle`, headers }),
      );
      expectUnauthenticated(await raw({ method: 'DELETE', url: '/api/organizations/internal', headers }));
    });
  });

  it.each([
    ['Basic x'],
    [`Basic ${Buffer.from(`operator:${ADMIN_TOKEN}`).toString('base64')}`],
    ['Bearer'],
    ['Bearer '],
    [ADMIN_TOKEN],
    [`Bearer ${ADMIN_TOKEN} extra`],
    [`Token ${ADMIN_TOKEN}`],
  ])('rejects the malformed header %j', async (authorization) => {
    await writesNothing(t.db, async () => {
      expectUnauthenticated(
        await raw({ method: 'GET', url: '/api/organizations', headers: { authorization } }),
      );
      expectUnauthenticated(await raw(createJson('{"name":"Nope"}', { authorization })));
    });
  });

  it('accepts the operator token, with the scheme in any case', async () => {
    expect((await call({ method: 'GET', url: '/api/organizations' })).statusCode).toBe(200);
    const lower = await raw({
      method: 'GET',
      url: '/api/organizations',
      headers: { authorization: `bearer ${ADMIN_TOKEN}` },
    });
    expect(lower.statusCode).toBe(200);
  });
});

describe('routing and bodies', () => {
  it('answers an unknown route with 404 route_not_found as problem+json', async () => {
    for (const url of ['/nope', '/api/nope', '/api/organizations/x/y/z']) {
      const body = expectProblem(await call({ method: 'GET', url }), 404, 'route_not_found');
      expect(body.detail).toContain(url);
    }
    expectProblem(await raw({ method: 'GET', url: '/nope?secret=1' }), 404, 'route_not_found');
  });

  it('answers a malformed percent-encoding in the path with a 400 problem', async () => {
    const res = await t.call({ method: 'GET', url: '/api/organizations/%E0%A4%A' });
    expectProblem(res, 400, 'validation_failed');
    checked(res);
  });

  it.each([
    ['truncated', '{"name":'],
    ['trailing comma', '{"name":"a",}'],
    ['single quotes', "{'name':'a'}"],
    ['not JSON', 'name=a'],
    ['two documents', '{"name":"a"}{"name":"b"}'],
  ])('rejects bad JSON (%s) with 400 invalid_json', async (_label, payload) => {
    await writesNothing(t.db, async () => {
      expectProblem(await call(createJson(payload)), 400, 'invalid_json');
    });
  });

  it('rejects a body over 1 MiB with 413 payload_too_large', async () => {
    await writesNothing(t.db, async () => {
      const payload = JSON.stringify({ name: 'x'.repeat(ONE_MIB) });
      expect(payload.length).toBeGreaterThan(ONE_MIB);
      expectProblem(await call(createJson(payload)), 413, 'payload_too_large');
      const patch = await call({
        ...createJson(payload),
        method: 'PATCH',
        url: `/api/organizations/${DEFAULT_ORG}`,
      });
      expectProblem(patch, 413, 'payload_too_large');
    });
  });

  it('reads a body just under 1 MiB (and then validates it)', async () => {
    await writesNothing(t.db, async () => {
      const payload = JSON.stringify({ name: 'x'.repeat(ONE_MIB - 100) });
      expect(payload.length).toBeLessThan(ONE_MIB);
      const body = expectProblem(await call(createJson(payload)), 400, 'validation_failed');
      expect(body.errors).toEqual([{ field: 'name', message: expect.any(String) }]);
    });
  });

  it.each([
    ['text/plain', '{"name":"Plain"}'],
    ['text/plain; charset=utf-8', 'name'],
    ['application/x-www-form-urlencoded', 'name=Form'],
    [
      'multipart/form-data; boundary=x',
      '--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nForm\r\n--x--\r\n',
    ],
    ['application/xml', '<name>Xml</name>'],
    ['application/jsonx', '{"name":"Jsonx"}'],
  ])('rejects a %s body with 415 unsupported_media_type', async (contentType, payload) => {
    await writesNothing(t.db, async () => {
      const res = await call({ ...createJson(payload), headers: { 'content-type': contentType } });
      expectProblem(res, 415, 'unsupported_media_type');
    });
  });

  it('rejects a body without a content type with 415', async () => {
    await writesNothing(t.db, async () => {
      const res = await call({
        method: 'POST',
        url: '/api/organizations',
        payload: Buffer.from('{"name":"None"}'),
      });
      expectProblem(res, 415, 'unsupported_media_type');
    });
  });

  it.each([
    'application/json; charset=utf-8',
    'application/json;charset=UTF-8',
    'Application/JSON',
    'application/merge-patch+json',
  ])('accepts JSON sent as %j', async (contentType) => {
    const res = await call(createJson('{"name":"Charset Co"}', { 'content-type': contentType }));
    expect(res.statusCode, res.body.slice(0, 300)).toBe(201);
    expect(res.json().name).toBe('Charset Co');
  });

  it('drops __proto__ and constructor.prototype keys without polluting anything', async () => {
    for (const payload of [
      '{"__proto__":{"x":1},"name":"a"}',
      '{"name":"b","constructor":{"prototype":{"x":1}}}',
      '{"name":"c","nested":{"__proto__":{"x":1}}}',
    ]) {
      const res = await call(createJson(payload));
      expect(res.statusCode, res.body.slice(0, 300)).toBeLessThan(500);
      if (res.statusCode === 201) {
        const body = res.json();
        expect(Object.hasOwn(body, 'x')).toBe(false);
        expect(Object.hasOwn(body, '__proto__')).toBe(false);
      } else {
        expectProblem(res, res.statusCode, res.json().code);
      }
      expect(({} as Record<string, unknown>).x).toBeUndefined();
      expect(Object.hasOwn(Object.prototype, 'x')).toBe(false);
    }
    // the first one is a clean create: its only field is name
    const list = await call({ method: 'GET', url: '/api/organizations?q=a&limit=100' });
    for (const org of list.json().data as Record<string, unknown>[])
      expect(Object.hasOwn(org, 'x')).toBe(false);
  });

  it('takes an empty JSON body on an action route as no body', async () => {
    const url = `/api/organizations/${DEFAULT_ORG}/toggle`;
    const before = (await call({ method: 'GET', url: `/api/organizations/${DEFAULT_ORG}` })).json().active;
    const off = await call({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(off.statusCode, off.body.slice(0, 300)).toBe(200);
    expect(off.json().active).toBe(!before);
    const back = await call({
      method: 'POST',
      url,
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expect(back.statusCode, back.body.slice(0, 300)).toBe(200);
    expect(back.json().active).toBe(before);
  });

  it('takes an action route with no body and no content type', async () => {
    const url = `/api/organizations/${DEFAULT_ORG}/toggle`;
    const off = await call({ method: 'POST', url });
    expect(off.statusCode, off.body.slice(0, 300)).toBe(200);
    const back = await call({ method: 'POST', url });
    expect(back.statusCode, back.body.slice(0, 300)).toBe(200);
    expect(back.json().active).toBe(!off.json().active);
  });
});

describe('request ids', () => {
  it('gives every response an X-Request-Id of its own', async () => {
    const responses = [
      await call({ method: 'GET', url: '/api/organizations' }),
      await raw({ method: 'GET', url: '/api/organizations' }),
      await raw({ method: 'GET', url: '/healthz' }),
      await raw({ method: 'GET', url: '/nope' }),
      await call(createJson('{')),
    ];
    const ids = responses.map((r) => String(r.headers['x-request-id']));
    for (const id of ids) expect(id).toMatch(ID_PATTERN);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("keeps a client's sane X-Request-Id and quotes it in problems", async () => {
    const headers = { 'x-request-id': 'abc-123' };
    const ok = await call({ method: 'GET', url: '/api/organizations', headers });
    expect(ok.headers['x-request-id']).toBe('abc-123');
    const body = expectProblem(
      await raw({ method: 'GET', url: '/api/organizations', headers }),
      401,
      'unauthenticated',
    );
    expect(body.request_id).toBe('abc-123');
    const notFound = expectProblem(
      await call({ method: 'GET', url: '/nope', headers }),
      404,
      'route_not_found',
    );
    expect(notFound.request_id).toBe('abc-123');
  });

  it.each([
    ['spaces', 'abc 123'],
    ['300 characters', 'a'.repeat(300)],
    ['a backslash', 'abc\\123'],
    ['quotes', '"abc"'],
    ['non-ASCII', 'abc-123-é'],
  ])('replaces an insane X-Request-Id (%s)', async (_label, given) => {
    const res = await raw({ method: 'GET', url: '/api/organizations', headers: { 'x-request-id': given } });
    const id = String(res.headers['x-request-id']);
    expect(id).not.toBe(given);
    expect(id).toMatch(/^req_/);
    expect(id).toMatch(ID_PATTERN);
    expect(expectProblem(res, 401, 'unauthenticated').request_id).toBe(id);
  });
});

describe('health', () => {
  it('/healthz answers 200 without auth', async () => {
    const res = await raw({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });

  it('/readyz answers 200 without auth and names the database', async () => {
    const res = await raw({ method: 'GET', url: '/readyz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({
      status: 'ready',
      database: process.env.DATABASE_URL ? 'postgres' : 'pglite',
    });
  });
});

describe('documentation', () => {
  const EXPECTED_API: Record<string, string[]> = {
    '/api/organizations': ['get', 'post'],
    '/api/organizations/{id}': ['delete', 'get', 'patch'],
    '/api/organizations/{id}/toggle': ['post'],
    '/api/organizations/{id}/export': ['get'],
    '/api/organizations/{id}/audit-log': ['get'],
    '/api/organizations/{id}/credits/add': ['post'],
    '/api/organizations/{id}/credits/deduct': ['post'],
    '/api/organizations/{id}/credits/transfer': ['post'],
    '/api/organizations/{id}/balance': ['get'],
    '/api/organizations/{id}/credit-settings': ['patch'],
    '/api/organizations/{id}/transactions': ['get'],
    '/api/organizations/{id}/holds': ['post'],
    '/api/organizations/{id}/holds/{holdId}': ['get'],
    '/api/organizations/{id}/holds/{holdId}/capture': ['post'],
    '/api/organizations/{id}/holds/{holdId}/release': ['post'],
    '/api/organizations/{id}/top-ups': ['get'],
    '/api/organizations/{id}/top-ups/{topUpId}/mark-paid': ['post'],
    '/api/ledger/verify': ['get'],
    '/api/usage': ['post'],
    '/api/organizations/{id}/members': ['get', 'post'],
    '/api/organizations/{id}/members/{userId}': ['delete', 'patch'],
    '/api/organizations/{id}/transfer-ownership': ['post'],
    '/api/me': ['get'],
    '/api/me/active-organization': ['post'],
    '/api/organization': ['get'],
    '/api/organization/balance': ['get'],
    '/api/organization/transactions': ['get'],
    '/api/organizations/{id}/api-keys': ['get', 'post'],
    '/api/organizations/{id}/api-keys/{keyId}': ['delete'],
    '/api/organizations/{id}/invitations': ['get', 'post'],
    '/api/organizations/{id}/invitations/{invitationId}': ['delete'],
    '/api/organizations/{id}/invitations/{invitationId}/resend': ['post'],
    '/api/invitations/{token}': ['get'],
    '/api/invitations/{token}/accept': ['post'],
    '/api/dev/mailbox': ['get'],
    '/api/operator/admin-token/rotate': ['post'],
    '/api/agents': ['get', 'post'],
    '/api/agents/{id}': ['delete', 'get', 'patch'],
    '/api/agents/{id}/assign-org': ['post'],
    '/api/agents/{id}/unassign-org': ['post'],
    '/api/agents/{id}/api-keys': ['post'],
    '/api/organizations/{id}/billing-summary': ['get'],
    '/api/organizations/{id}/billing': ['get'],
    '/api/organizations/{id}/analytics': ['get'],
    '/api/billing-summary': ['get'],
    '/api/teams': ['get', 'post'],
    '/api/teams/{id}': ['delete', 'get', 'patch'],
    '/api/teams/{id}/assign-org': ['post'],
    '/api/teams/{id}/unassign-org': ['post'],
    '/api/plans': ['get'],
    '/api/organizations/{id}/subscription': ['get', 'put'],
    '/api/organizations/{id}/subscription/cancel': ['post'],
    '/api/organizations/{id}/subscription/reactivate': ['post'],
    '/api/organizations/{id}/features': ['get', 'put'],
    '/api/organizations/{id}/sub-organizations': ['get', 'post'],
    '/api/organizations/{id}/sub-organizations/usage': ['get'],
    '/api/organizations/{id}/sub-organizations/{subId}/billing': ['get'],
    '/api/organizations/{id}/sub-organizations/{subId}/spending-limit': ['put'],
    '/api/organizations/{id}/sub-organizations/{subId}/detach': ['post'],
    '/api/organizations/{id}/sub-organizations/{subId}/join-as': ['post'],
    '/api/me/join-as': ['delete'],
    '/api/organizations/{id}/customization': ['get', 'put'],
    '/api/organizations/{id}/domains': ['get', 'post'],
    '/api/organizations/{id}/domains/{domainId}': ['delete'],
    '/api/organizations/{id}/domains/{domainId}/verify': ['post'],
  };

  it('/openapi.json is OpenAPI 3.1.0 and lists every /api route with its methods', async () => {
    const res = await raw({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.info).toMatchObject({ title: 'Orgbase', version: expect.any(String) });
    const methods = (path: string) => Object.keys(doc.paths[path] ?? {}).sort();
    const apiPaths = Object.keys(doc.paths)
      .filter((p) => p.startsWith('/api'))
      .sort();
    const expected = EXPECTED_API;
    expect(apiPaths).toEqual(Object.keys(expected).sort());
    for (const [path, list] of Object.entries(expected)) expect(methods(path), path).toEqual(list);
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(doc.paths['/healthz'].get.security).toEqual([]);
    expect(doc.paths['/openapi.json']).toBeUndefined();
  });

  it('documents only routes the server actually serves', async () => {
    const doc = (await raw({ method: 'GET', url: '/openapi.json' })).json();
    let operations = 0;
    for (const [path, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) {
      for (const method of Object.keys(ops)) {
        const route = {
          method: method.toUpperCase() as HTTPMethods,
          url: path.replaceAll(/\{(\w+)\}/g, ':$1'),
        };
        expect(t.app.hasRoute(route), `${method} ${path}`).toBe(true);
        if (path.startsWith('/api')) operations++;
      }
    }
    expect(operations).toBe(Object.values(EXPECTED_API).flat().length);
  });

  it('/docs serves HTML', async () => {
    let res = await raw({ method: 'GET', url: '/docs' });
    for (let hops = 0; hops < 3 && res.statusCode >= 300 && res.statusCode < 400; hops++) {
      const location = String(res.headers.location);
      res = await raw({ method: 'GET', url: new URL(location, 'http://localhost/docs').pathname });
    }
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/html/);
    expect(res.body).toMatch(/<html/i);
  });
});

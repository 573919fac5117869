import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addCredits, as, createOrg, readAuditLog, signUp, type User } from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../../harness.js';

/**
 * Organization API keys: shown once and stored as a hash, what read and write keys may do,
 * never another organization, revocation and expiry at once, and the refusals of a bad body.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    org = await createOrg(t, { by: owner, name: 'Keyed Org', plan: 'growth' });
    const stranger = await signUp(t, { name: 'Key Stranger' });
    otherOrg = await createOrg(t, { by: stranger, name: 'Unkeyed Org', plan: 'growth' });
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
    expect((await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` })).statusCode).toBe(200);
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
        const audit = await readAuditLog(t, org.id);
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
    expect((await as(t, k.key, { method: 'GET', url: `/api/organizations/${org.id}` })).statusCode).toBe(200);
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

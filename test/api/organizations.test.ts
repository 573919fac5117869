import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readAuditLog } from '../factories.js';
import { createTestApp, type TestContext, tableCounts } from '../harness.js';

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

async function create(payload: Record<string, unknown>) {
  return t.call({ method: 'POST', url: '/api/organizations', payload });
}

async function createOk(payload: Record<string, unknown>) {
  const res = await create(payload);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

describe('POST /api/organizations', () => {
  it('creates with every field from the seed, returning exact strings', async () => {
    const org = await createOk({
      name: 'AgenticMail',
      slug: 'agenticmail',
      contact_name: 'Ope Olatunji',
      contact_email: 'ope@agenticmail.com',
      description: 'Enterprise client — Q1 2026 onboarding',
      billing_rate_per_agent: 99.0,
      currency: 'USD',
    });
    expect(org).toMatchObject({
      name: 'AgenticMail',
      slug: 'agenticmail',
      contact_name: 'Ope Olatunji',
      contact_email: 'ope@agenticmail.com',
      description: 'Enterprise client — Q1 2026 onboarding',
      billing_rate_per_agent: '99.00',
      currency: 'USD',
      active: true,
      parent_id: null,
      is_default: false,
    });
    expect(org.id).toMatch(/^org_[0-9a-z]{26}$/);
  });

  it('applies the defaults', async () => {
    const org = await createOk({ name: 'Defaults Ltd' });
    expect(org).toMatchObject({
      slug: 'defaults-ltd',
      billing_rate_per_agent: '0.00',
      currency: 'USD',
      description: null,
      contact_name: null,
      contact_email: null,
      plan: 'free',
    });
  });

  it('keeps up to six fractional digits of the rate, as a string', async () => {
    expect(
      (await createOk({ name: 'Rate A', billing_rate_per_agent: '12.345678' })).billing_rate_per_agent,
    ).toBe('12.345678');
    expect((await createOk({ name: 'Rate B', billing_rate_per_agent: '0' })).billing_rate_per_agent).toBe(
      '0.00',
    );
    expect(
      (await createOk({ name: 'Rate C', billing_rate_per_agent: 7.5, currency: 'NGN' }))
        .billing_rate_per_agent,
    ).toBe('7.50');
  });

  it('generates ASCII-folded slugs and makes them unique', async () => {
    expect((await createOk({ name: 'Café Zürich' })).slug).toBe('cafe-zurich');
    expect((await createOk({ name: 'Café Zürich' })).slug).toBe('cafe-zurich-2');
    expect((await createOk({ name: 'CAFÉ   zürich!' })).slug).toBe('cafe-zurich-3');
    expect((await createOk({ name: '東京' })).slug).toBe('org');
    expect((await createOk({ name: '大阪' })).slug).toBe('org-2');
  });

  it('gives concurrent creations of one name distinct slugs', async () => {
    const results = await Promise.all(Array.from({ length: 8 }, () => create({ name: 'Race Condition' })));
    expect(results.map((r) => r.statusCode)).toEqual(Array(8).fill(201));
    const slugs = results.map((r) => r.json().slug);
    expect(new Set(slugs).size).toBe(8);
    expect(slugs).toContain('race-condition');
  });

  it('stores unicode and SQL-looking names verbatim', async () => {
    const names = [
      "Robert'); DROP TABLE organizations;--",
      'Zoë 🚀 株式会社',
      "' OR 1=1 --",
      '  padded  ',
      'a\\b%_',
    ];
    for (const name of names) {
      const org = await createOk({ name, description: 'multi\nline\ttext' });
      const back = await t.call({ method: 'GET', url: `/api/organizations/${org.id}` });
      expect(back.json().name).toBe(name);
      expect(back.json().description).toBe('multi\nline\ttext');
    }
  });

  it('answers 409 slug_taken for a given slug in use, and writes nothing', async () => {
    await createOk({ name: 'Taken', slug: 'taken-slug' });
    const before = await tableCounts(t.db);
    const res = await create({ name: 'Other', slug: 'taken-slug' });
    expect(res.statusCode).toBe(409);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json()).toMatchObject({ code: 'slug_taken', status: 409, errors: [{ field: 'slug' }] });
    expect(await tableCounts(t.db)).toEqual(before);
  });

  const bad: Array<[string, Record<string, unknown>, string]> = [
    ['missing name', {}, 'name'],
    ['blank name', { name: '   ' }, 'name'],
    ['name with NUL', { name: 'a\u0000b' }, 'name'],
    ['name with a newline', { name: 'a\nb' }, 'name'],
    ['numeric name', { name: 42 }, 'name'],
    ['null name', { name: null }, 'name'],
    ['oversized name', { name: 'x'.repeat(201) }, 'name'],
    ['oversized description', { name: 'ok', description: 'x'.repeat(2001) }, 'description'],
    ['malformed slug', { name: 'ok', slug: 'Not A Slug' }, 'slug'],
    ['slug with double hyphen', { name: 'ok', slug: 'a--b' }, 'slug'],
    ['slug too long', { name: 'ok', slug: 'a'.repeat(64) }, 'slug'],
    ['empty slug', { name: 'ok', slug: '' }, 'slug'],
    ['bad email', { name: 'ok', contact_email: 'not-an-email' }, 'contact_email'],
    ['unknown currency', { name: 'ok', currency: 'JPY' }, 'currency'],
    ['lower-case currency', { name: 'ok', currency: 'usd' }, 'currency'],
    ['negative rate', { name: 'ok', billing_rate_per_agent: '-1' }, 'billing_rate_per_agent'],
    ['too precise rate', { name: 'ok', billing_rate_per_agent: '0.0000001' }, 'billing_rate_per_agent'],
    ['non-numeric rate', { name: 'ok', billing_rate_per_agent: 'ten' }, 'billing_rate_per_agent'],
    ['exponent rate', { name: 'ok', billing_rate_per_agent: 1e21 }, 'billing_rate_per_agent'],
    ['boolean rate', { name: 'ok', billing_rate_per_agent: true }, 'billing_rate_per_agent'],
    ['huge rate', { name: 'ok', billing_rate_per_agent: '99999999999999999999' }, 'billing_rate_per_agent'],
    ['unknown field', { name: 'ok', colour: 'red' }, 'colour'],
    ['array body', [] as unknown as Record<string, unknown>, ''],
  ];
  it.each(bad)('rejects %s with 400 naming the field, writing nothing', async (_label, payload, field) => {
    const before = await tableCounts(t.db);
    const res = await create(payload);
    expect(res.statusCode, res.body).toBe(400);
    const problem = res.json();
    expect(problem.code).toBe('validation_failed');
    expect(problem.request_id).toBeTruthy();
    if (field) expect(problem.errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('names the allowed values of a field that takes one of a few', async () => {
    const res = await create({ name: 'ok', currency: 'JPY' });
    expect(res.json().errors).toEqual([
      { field: 'currency', message: 'must be one of "USD", "EUR", "GBP", "NGN", "CAD", "AUD"' },
    ]);
  });
});

describe('GET /api/organizations', () => {
  it('walks every page once, newest first', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 7; i++) ids.add((await createOk({ name: `Pager ${i}` })).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/api/organizations?q=pager&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await t.call({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      expect(body.data.length).toBeLessThanOrEqual(3);
      seen.push(...body.data.map((o: { id: string }) => o.id));
      cursor = body.next_cursor;
    } while (cursor);
    expect(new Set(seen)).toEqual(ids);
    expect(seen).toEqual([...seen].sort().reverse());
  });

  it('searches name and slug, treating % and _ literally', async () => {
    await createOk({ name: '100% Organic', slug: 'organic-co' });
    await createOk({ name: '1000 Organics' });
    const res = await t.call({ method: 'GET', url: `/api/organizations?q=${encodeURIComponent('100%')}` });
    expect(res.json().data.map((o: { name: string }) => o.name)).toEqual(['100% Organic']);
    const bySlug = await t.call({ method: 'GET', url: '/api/organizations?q=ORGANIC-CO' });
    expect(bySlug.json().data.map((o: { slug: string }) => o.slug)).toEqual(['organic-co']);
  });

  it('filters by active', async () => {
    const org = await createOk({ name: 'Sleepy Filter' });
    await t.call({ method: 'POST', url: `/api/organizations/${org.id}/toggle` });
    const inactive = await t.call({ method: 'GET', url: '/api/organizations?active=false&limit=100' });
    expect(inactive.json().data.map((o: { id: string }) => o.id)).toContain(org.id);
    expect(inactive.json().data.every((o: { active: boolean }) => !o.active)).toBe(true);
    const active = await t.call({ method: 'GET', url: '/api/organizations?active=true&q=sleepy' });
    expect(active.json().data).toEqual([]);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=abc', 'limit'],
    ['cursor=garbage', 'cursor'],
    ['active=maybe', 'active'],
    ['sort=name', 'sort'],
  ])('rejects ?%s', async (qs, field) => {
    const res = await t.call({ method: 'GET', url: `/api/organizations?${qs}` });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
  });
});

describe('GET /api/organizations/{id}', () => {
  it('finds by id and by slug, with the sub-organization count', async () => {
    const org = await createOk({ name: 'Lookup Co' });
    const byId = await t.call({ method: 'GET', url: `/api/organizations/${org.id}` });
    const bySlug = await t.call({ method: 'GET', url: '/api/organizations/lookup-co' });
    expect(byId.statusCode).toBe(200);
    expect(bySlug.json()).toEqual(byId.json());
    expect(byId.json().sub_organization_count).toBe(0);
  });

  it('has the default internal organization from the first start', async () => {
    const res = await t.call({ method: 'GET', url: '/api/organizations/internal' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ slug: 'internal', is_default: true, active: true });
  });

  it.each(['org_00000000000000000000000099', 'no-such-org', '%27%3B--'])('answers 404 for %s', async (id) => {
    const res = await t.call({ method: 'GET', url: `/api/organizations/${id}` });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('not_found');
  });
});

describe('PATCH /api/organizations/{id}', () => {
  it('updates fields, clears with null, and audits before/after', async () => {
    const org = await createOk({ name: 'Patchable', contact_name: 'Ann', billing_rate_per_agent: '10' });
    const res = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org.id}`,
      payload: { name: 'Patched', contact_name: null, billing_rate_per_agent: '12.50', currency: 'EUR' },
      headers: { 'x-request-id': 'patch-req-1' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      name: 'Patched',
      contact_name: null,
      billing_rate_per_agent: '12.50',
      currency: 'EUR',
      slug: 'patchable',
    });
    const [last] = await readAuditLog(t, org.id);
    expect(last?.action).toBe('organization.updated');
    expect(last?.request_id).toBe('patch-req-1');
    expect(last?.actor.type).toBe('operator');
    expect(last?.changes).toEqual({
      name: { before: 'Patchable', after: 'Patched' },
      contact_name: { before: 'Ann', after: null },
      billing_rate_per_agent: { before: '10.00', after: '12.50' },
      currency: { before: 'USD', after: 'EUR' },
    });
  });

  it('writes no audit entry for a change that changes nothing', async () => {
    const org = await createOk({ name: 'Same Same' });
    const res = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org.id}`,
      payload: { name: 'Same Same' },
    });
    expect(res.statusCode).toBe(200);
    expect((await readAuditLog(t, org.id)).map((e) => e.action)).toEqual(['organization.created']);
  });

  it('lets the operator change a slug, and refuses one in use', async () => {
    const a = await createOk({ name: 'Slug Owner A' });
    await createOk({ name: 'Slug Owner B' });
    const ok = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${a.id}`,
      payload: { slug: 'renamed-a' },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json().slug).toBe('renamed-a');
    const before = await tableCounts(t.db);
    const taken = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${a.id}`,
      payload: { slug: 'slug-owner-b' },
    });
    expect(taken.statusCode).toBe(409);
    expect(taken.json().code).toBe('slug_taken');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ slug: 'UPPER' }, 'slug'],
    [{ currency: 'XYZ' }, 'currency'],
    [{ billing_rate_per_agent: '-0.01' }, 'billing_rate_per_agent'],
    [{ active: false }, 'active'],
    [{ id: 'org_x' }, 'id'],
  ])('rejects %j and changes nothing', async (payload, field) => {
    const org = await createOk({ name: 'Patch Victim' });
    const before = await tableCounts(t.db);
    const res = await t.call({ method: 'PATCH', url: `/api/organizations/${org.id}`, payload });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    expect(await tableCounts(t.db)).toEqual(before);
    const after = await t.call({ method: 'GET', url: `/api/organizations/${org.id}` });
    expect(after.json().updated_at).toBe(org.updated_at);
  });

  it('answers 404 for an unknown organization', async () => {
    const res = await t.call({ method: 'PATCH', url: '/api/organizations/ghost', payload: { name: 'x' } });
    expect(res.statusCode).toBe(404);
  });
});

describe('POST /api/organizations/{id}/toggle', () => {
  it('flips active and back, auditing each', async () => {
    const org = await createOk({ name: 'Toggler' });
    const off = await t.call({ method: 'POST', url: `/api/organizations/${org.slug}/toggle` });
    expect(off.json().active).toBe(false);
    const on = await t.call({ method: 'POST', url: `/api/organizations/${org.id}/toggle` });
    expect(on.json().active).toBe(true);
    const actions = (await readAuditLog(t, org.id)).map((e) => e.action);
    expect(actions).toEqual(['organization.activated', 'organization.deactivated', 'organization.created']);
  });
});

describe('DELETE /api/organizations/{id}', () => {
  it('deletes, frees the slug, and keeps the audit trail', async () => {
    const org = await createOk({ name: 'Doomed', slug: 'doomed' });
    const res = await t.call({ method: 'DELETE', url: `/api/organizations/${org.id}` });
    expect(res.statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: `/api/organizations/${org.id}` })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/api/organizations/doomed' })).statusCode).toBe(404);
    expect((await t.call({ method: 'DELETE', url: `/api/organizations/${org.id}` })).statusCode).toBe(404);
    const actions = (await readAuditLog(t, org.id)).map((e) => e.action);
    expect(actions).toEqual(['organization.deleted', 'organization.created']);
    const reborn = await createOk({ name: 'Doomed again', slug: 'doomed' });
    expect(reborn.id).not.toBe(org.id);
    expect((await t.call({ method: 'GET', url: '/api/organizations/doomed' })).json().id).toBe(reborn.id);
  });

  it('never deletes the default internal organization', async () => {
    const before = await tableCounts(t.db);
    const res = await t.call({ method: 'DELETE', url: '/api/organizations/internal' });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('default_organization_protected');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('refuses while sub-organizations are attached', async () => {
    const parent = await createOk({ name: 'Parent Holdings' });
    const child = await createOk({ name: 'Child Unit' });
    // Sub-organizations get their own API later; attach one directly for now.
    await t.db.db
      .updateTable('organizations')
      .set({ parent_id: parent.id })
      .where('id', '=', child.id)
      .execute();
    const detail = await t.call({ method: 'GET', url: `/api/organizations/${parent.id}` });
    expect(detail.json().sub_organization_count).toBe(1);
    const res = await t.call({ method: 'DELETE', url: `/api/organizations/${parent.id}` });
    expect(res.statusCode).toBe(409);
    expect(res.json()).toMatchObject({
      code: 'organization_has_sub_organizations',
      sub_organization_count: 1,
    });
    expect((await t.call({ method: 'GET', url: `/api/organizations/${parent.id}` })).statusCode).toBe(200);
  });
});

describe('GET /api/organizations/{id}/export', () => {
  it('returns everything the organization owns', async () => {
    const org = await createOk({ name: 'Exporter', contact_email: 'a@b.co' });
    await t.call({ method: 'PATCH', url: `/api/organizations/${org.id}`, payload: { description: 'd' } });
    const res = await t.call({ method: 'GET', url: `/api/organizations/${org.id}/export` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-disposition']).toContain('exporter-export.json');
    const doc = res.json();
    expect(doc.format).toBe('orgbase.organization-export.v1');
    expect(doc.organization).toMatchObject({ id: org.id, contact_email: 'a@b.co', description: 'd' });
    expect(doc.audit_log.map((e: { action: string }) => e.action)).toEqual([
      'organization.updated',
      'organization.created',
    ]);
    expect(doc.sub_organization_ids).toEqual([]);
    expect(doc.members).toEqual([]);
    expect(doc.api_keys).toEqual([]);
    expect(doc.invitations).toEqual([]);
    expect(doc.ledger).toMatchObject({
      accounts: [{ account: 'credits', balance: '0' }],
      transactions: [],
      holds: [],
      top_ups: [],
    });
  });

  it('includes the ledger, keys and invitations, never a secret', async () => {
    const org = await createOk({ name: 'Exporter Two' });
    await t.call({
      method: 'POST',
      url: `/api/organizations/${org.id}/credits/add`,
      payload: { amount: '5' },
    });
    const key = (
      await t.call({
        method: 'POST',
        url: `/api/organizations/${org.id}/api-keys`,
        payload: { name: 'ci', scopes: ['read'] },
      })
    ).json();
    await t.call({
      method: 'POST',
      url: `/api/organizations/${org.id}/invitations`,
      payload: { email: 'x@export.test', role: 'agent' },
    });
    const res = await t.call({ method: 'GET', url: `/api/organizations/${org.id}/export` });
    const doc = res.json();
    expect(doc.ledger.transactions.map((x: { type: string; amount: string }) => [x.type, x.amount])).toEqual([
      ['top_up', '5'],
    ]);
    expect(doc.ledger.accounts).toContainEqual({ account: 'credits', balance: '5' });
    expect(doc.api_keys.map((k: { id: string }) => k.id)).toEqual([key.id]);
    expect(doc.invitations.map((i: { email: string }) => i.email)).toEqual(['x@export.test']);
    expect(res.body).not.toContain(key.key);
    expect(res.body).not.toContain('key_hash');
    expect(res.body).not.toContain('token_hash');
  });
});

describe('GET /api/organizations/{id}/audit-log', () => {
  it('records the creation with every field and pages newest first', async () => {
    const org = await createOk({ name: 'Audited', currency: 'GBP' });
    for (let i = 0; i < 4; i++)
      await t.call({
        method: 'PATCH',
        url: `/api/organizations/${org.id}`,
        payload: { description: `v${i}` },
      });
    const first = await t.call({ method: 'GET', url: `/api/organizations/${org.id}/audit-log?limit=2` });
    const page1 = first.json();
    expect(page1.data).toHaveLength(2);
    expect(page1.data[0].changes.description).toEqual({ before: 'v2', after: 'v3' });
    const second = await t.call({
      method: 'GET',
      url: `/api/organizations/${org.id}/audit-log?limit=10&cursor=${page1.next_cursor}`,
    });
    const rest = second.json().data;
    expect(rest).toHaveLength(3);
    const created = rest.at(-1);
    expect(created.action).toBe('organization.created');
    expect(created.changes.currency).toEqual({ before: null, after: 'GBP' });
    expect(created.changes.name).toEqual({ before: null, after: 'Audited' });
    expect(second.json().next_cursor).toBeNull();
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMember, as, createAgent, createApiKey, createOrg, signUp, type User } from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts, writesNothing } from '../../harness.js';
import { get, setHistory } from './support.js';

/**
 * Refusals: who may not read billing, summary and analytics (and outsiders, other
 * organizations' keys and anonymous requests see nothing), and bad queries.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('permissions', () => {
  it('billing needs billing:read (owner, admin, manager); analytics needs usage:read; outsiders see nothing', async () => {
    const o = await createOrg(t);
    const users: Record<string, User> = {};
    for (const role of ['owner', 'admin', 'manager', 'developer', 'agent'] as const) {
      const user = await signUp(t, { name: role });
      users[role] = user;
      await addMember(t, o.id, { email: user.email }, role);
    }
    const outsider = await signUp(t, { name: 'outsider' });
    // An API key sees its own organization only.
    const other = await createOrg(t);
    const { key } = await createApiKey(t, other.id, { name: 'reader', scopes: ['read'] });

    const paths = {
      billing: `/api/organizations/${o.id}/billing`,
      summary: `/api/organizations/${o.id}/billing-summary`,
      analytics: `/api/organizations/${o.id}/analytics`,
    };
    const expected: Record<string, [number, number, number]> = {
      owner: [200, 200, 200],
      admin: [200, 200, 200],
      manager: [200, 200, 200],
      developer: [403, 403, 200],
      agent: [403, 403, 403],
    };
    const before = await tableCounts(t.db);
    for (const [role, statuses] of Object.entries(expected)) {
      const token = users[role]?.token as string;
      const got = [];
      for (const url of Object.values(paths)) {
        const res = await as(t, token, { method: 'GET', url });
        got.push(res.statusCode);
        if (res.statusCode === 403) expect(res.json().code).toBe('forbidden');
      }
      expect(got, role).toEqual(statuses);
    }
    for (const url of Object.values(paths)) {
      expectProblem(await as(t, outsider, { method: 'GET', url }), 404, 'not_found');
      expectProblem(await as(t, key, { method: 'GET', url }), 404, 'not_found');
      expectProblem(await t.app.inject({ method: 'GET', url }), 401, 'unauthenticated');
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('bad queries', () => {
  it.each([
    ['billing?month=2026-13', 'month'],
    ['billing?month=2026-00', 'month'],
    ['billing?month=2026-1', 'month'],
    ['billing?month=november', 'month'],
    ['billing?colour=red', 'colour'],
    ['billing-summary?from=2026-05&to=2026-04', 'from'],
    ['billing-summary?from=garbage', 'from'],
    ['billing-summary?to=2026-13', 'to'],
    ['billing-summary?from=2010-01&to=2026-12', 'from'],
    ['analytics?from=garbage', 'from'],
    ['analytics?to=2026-02-30', 'to'],
    ['analytics?from=2026-05-02&to=2026-05-01', 'from'],
    ['analytics?from=2025-01-01&to=2026-06-01', 'from'],
    ['analytics?top=0', 'top'],
    ['analytics?top=101', 'top'],
    ['analytics?top=two', 'top'],
  ])('?%s answers 400 naming %s, writing nothing', async (query, field) => {
    const o = await createOrg(t);
    await writesNothing(t.db, async () =>
      expectProblem(await get(t, `/api/organizations/${o.id}/${query}`), 400, 'validation_failed', field),
    );
  });

  it('answers 404 for an unknown organization', async () => {
    for (const path of ['billing', 'billing-summary', 'analytics']) {
      expectProblem(await get(t, `/api/organizations/no-such-org/${path}`), 404, 'not_found');
    }
  });

  it('accepts the 120-month and 366-day limits exactly', async () => {
    const o = await createOrg(t);
    expect(
      (await get(t, `/api/organizations/${o.id}/billing-summary?from=2017-01&to=2026-12`)).statusCode,
    ).toBe(200);
    expect(
      (await get(t, `/api/organizations/${o.id}/analytics?from=2025-06-01&to=2026-06-02`)).statusCode,
    ).toBe(200);
  });

  // The month pattern accepts years 0000–0099; Date.UTC maps those to 1900–1999.
  it('BUG: billing-summary spanning 0099-12..0100-01 answers 500 instead of 200 or 400', async () => {
    const o = await createOrg(t);
    const res = await get(t, `/api/organizations/${o.id}/billing-summary?from=0099-12&to=0100-01`);
    expect(res.statusCode, res.body).toBeLessThan(500);
    if (res.statusCode === 200) expect(res.json().data).toEqual([]);
    else expect(res.json().errors[0].field).toBe('from');
  });

  it('BUG: billing for month 0050-02 reports the agents of February 1950', async () => {
    const o = await createOrg(t, { billing_rate_per_agent: '28' });
    const x = await createAgent(t, { organization_id: o.id });
    await setHistory(t, x.id, [[o.id, '1950-02-01T00:00:00Z', null]]);
    const res = await get(t, `/api/organizations/${o.id}/billing?month=0050-02`);
    if (res.statusCode === 400) {
      expect(res.json().errors[0].field).toBe('month');
      return;
    }
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ month: '0050-02', data: [] });
  });
});

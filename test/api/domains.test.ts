import { createSocket } from 'node:dgram';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addMember, type Call, createOrg, readAuditLog, signUp } from '../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../harness.js';
import { startDnsServer, type TestDnsServer } from '../support/dns-server.js';

/**
 * Custom domains proven with a DNS TXT record, against a real DNS server on loopback: the
 * feature gate, adding, verifying before and after the record is published, one verified owner
 * per domain, DNS failures, deletion, and who may do what.
 */

let t: TestContext;
let dns: TestDnsServer;
beforeAll(async () => {
  dns = await startDnsServer();
  t = await createTestApp({ dnsServers: [dns.address] });
});
afterAll(async () => {
  await t?.close();
  await dns?.close();
});

let n = 0;

interface Domain {
  id: string;
  organization_id: string;
  domain: string;
  status: 'pending' | 'verified';
  verification: { type: 'TXT'; name: string; value: string };
  verified_at: string | null;
  last_checked_at: string | null;
  created_at: string;
}

/** A domain name nobody else in this file uses. */
const fresh = (label = 'site') => `${label}-${++n}.example.com`;

const addDomain = (orgId: string, domain: string, as: Call = t.call) =>
  as({ method: 'POST', url: `/api/organizations/${orgId}/domains`, payload: { domain } });

const verify = (orgId: string, domainId: string, as: Call = t.call) =>
  as({ method: 'POST', url: `/api/organizations/${orgId}/domains/${domainId}/verify` });

const remove = (orgId: string, domainId: string, as: Call = t.call) =>
  as({ method: 'DELETE', url: `/api/organizations/${orgId}/domains/${domainId}` });

async function added(orgId: string, domain: string, ctx: TestContext = t): Promise<Domain> {
  const res = await addDomain(orgId, domain, ctx.call);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function list(orgId: string, as: Call = t.call): Promise<Domain[]> {
  const res = await as({ method: 'GET', url: `/api/organizations/${orgId}/domains` });
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json().next_cursor).toBeNull();
  return res.json().data;
}

/** Publishes the domain's challenge record on the test DNS server (with whatever else is there). */
function publish(...domains: Domain[]) {
  const name = domains[0]?.verification.name as string;
  for (const d of domains) expect(d.verification.name).toBe(name);
  dns.setTxt(name, ['v=spf1 -all', ...domains.map((d) => d.verification.value)]);
}

async function verified(orgId: string, d: Domain): Promise<Domain> {
  const res = await verify(orgId, d.id);
  expect(res.statusCode, res.body).toBe(200);
  expect(res.json().status).toBe('verified');
  return res.json();
}

const auditActions = async (orgId: string) => (await readAuditLog(t, orgId)).map((e) => e.action);

// ---------------------------------------------------------------------------------------------

describe('adding a domain', () => {
  it('needs custom_domains: Free and Growth answer 403 feature_not_enabled, writing nothing', async () => {
    for (const plan of ['free', 'growth'] as const) {
      const o = await createOrg(t, { plan });
      const before = await tableCounts(t.db);
      const res = await addDomain(o.id, fresh());
      expect(expectProblem(res, 403, 'feature_not_enabled')).toMatchObject({
        feature: 'custom_domains',
        plan,
        upgrade_to: 'business',
      });
      expect(await tableCounts(t.db)).toEqual(before);
      expect(await list(o.id)).toEqual([]);
    }
  });

  it('on Business answers 201 pending with the TXT record to publish', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const name = fresh('agents');
    const res = await addDomain(o.id, name.toUpperCase());
    expect(res.statusCode, res.body).toBe(201);
    const d = res.json() as Domain;
    expect(d).toMatchObject({
      organization_id: o.id,
      domain: name,
      status: 'pending',
      verification: { type: 'TXT', name: `_orgbase-challenge.${name}` },
      verified_at: null,
      last_checked_at: null,
    });
    expect(d.id).toMatch(/^dom_/);
    expect(d.verification.value).toMatch(/^orgbase-verify=[0-9a-f]{40}$/);
    expect(Date.now() - Date.parse(d.created_at)).toBeLessThan(60_000);
    expect(await list(o.id)).toEqual([d]);
    expect(await auditActions(o.id)).toContain('domain.added');

    // Each domain gets its own token.
    const other = await added(o.id, fresh('other'));
    expect(other.verification.value).not.toBe(d.verification.value);
    expect((await list(o.id)).map((x) => x.id).sort()).toEqual([d.id, other.id].sort());
  });

  it('answers 409 domain_taken for a domain the organization already lists, in any spelling', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const name = fresh('dup');
    await added(o.id, name);
    const before = await tableCounts(t.db);
    for (const spelling of [name, name.toUpperCase(), `${name}.`]) {
      const res = await addDomain(o.id, spelling);
      expect(expectProblem(res, 409, 'domain_taken').errors).toEqual([
        { field: 'domain', message: 'is already listed' },
      ]);
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await list(o.id)).toHaveLength(1);
  });

  it.each([
    ['not a domain'],
    ['localhost'],
    ['example'],
    ['-bad.example.com'],
    ['bad-.example.com'],
    ['exa_mple.com'],
    ['https://example.com'],
    ['example.com/path'],
    ['user@example.com'],
    ['example.123'],
    [`${'a'.repeat(64)}.example.com`],
    [`${'abcdefghi.'.repeat(26)}com`],
    [''],
  ])('rejects %j with 400 naming domain, writing nothing', async (domain) => {
    const o = await createOrg(t, { plan: 'business' });
    const before = await tableCounts(t.db);
    const res = await addDomain(o.id, domain);
    expectProblem(res, 400, 'validation_failed');
    expect(res.json().errors.map((e: { field: string }) => e.field)).toContain('domain');
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('rejects a missing domain or an unknown field with 400 naming it', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const before = await tableCounts(t.db);
    for (const [payload, field] of [
      [{}, 'domain'],
      [{ domain: fresh(), primary: true }, 'primary'],
      [{ domain: 42 }, 'domain'],
    ] as const) {
      const res = await t.call({ method: 'POST', url: `/api/organizations/${o.id}/domains`, payload });
      expectProblem(res, 400, 'validation_failed');
      expect(res.json().errors.map((e: { field: string }) => e.field)).toContain(field);
    }
    expect(await tableCounts(t.db)).toEqual(before);
  });
});

describe('verifying a domain', () => {
  it('answers 409 domain_not_verified with the expected record until it is published, writing nothing', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const d = await added(o.id, fresh('proof'));

    // No record at all (NXDOMAIN), then only unrelated or wrong records.
    for (const records of [
      undefined,
      [],
      ['v=spf1 -all', 'orgbase-verify=0000'],
      [`${d.verification.value}x`],
    ]) {
      if (records === undefined) dns.clear(d.verification.name);
      else dns.setTxt(d.verification.name, records);
      const before = await tableCounts(t.db);
      const res = await verify(o.id, d.id);
      const problem = expectProblem(res, 409, 'domain_not_verified');
      expect(problem.record).toEqual(d.verification);
      expect(problem.found).toBe(records?.length ?? 0);
      expect(problem.detail).toContain(d.verification.name);
      expect(await tableCounts(t.db)).toEqual(before);
      expect(await list(o.id)).toEqual([d]);
    }

    publish(d);
    const res = await verify(o.id, d.id);
    expect(res.statusCode, res.body).toBe(200);
    const v = res.json() as Domain;
    expect(v).toMatchObject({ id: d.id, domain: d.domain, status: 'verified', verification: d.verification });
    expect(v.verified_at).not.toBeNull();
    expect(v.last_checked_at).toBe(v.verified_at);
    expect(Date.now() - Date.parse(v.verified_at as string)).toBeLessThan(60_000);
    expect(await list(o.id)).toEqual([v]);
    expect(await auditActions(o.id)).toEqual(expect.arrayContaining(['domain.added', 'domain.verified']));

    // Verifying again is a no-op that needs no DNS.
    dns.clear(d.verification.name);
    const again = await verify(o.id, d.id);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toEqual(v);
  });

  it('accepts the record with surrounding whitespace, among other records', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const d = await added(o.id, fresh('spaced'));
    dns.setTxt(d.verification.name, ['google-site-verification=abc', ` ${d.verification.value} `]);
    await verified(o.id, d);
  });

  it('lets only one organization hold a domain verified; deleting it lets another verify', async () => {
    const a = await createOrg(t, { plan: 'business' });
    const b = await createOrg(t, { plan: 'business' });
    const name = fresh('contested');
    const da = await added(a.id, name);
    // While A's is only pending, B may list the same domain too.
    const db = await added(b.id, name);
    expect(db.verification.name).toBe(da.verification.name);
    expect(db.verification.value).not.toBe(da.verification.value);
    publish(da, db);
    await verified(a.id, da);

    // B's verification now fails, even with its own record published.
    let before = await tableCounts(t.db);
    const lost = await verify(b.id, db.id);
    expect(expectProblem(lost, 409, 'domain_taken').errors).toEqual([
      { field: 'domain', message: 'is verified by another organization' },
    ]);
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await list(b.id))[0]).toMatchObject({ id: db.id, status: 'pending', verified_at: null });

    // A third organization cannot even add it.
    const c = await createOrg(t, { plan: 'business' });
    before = await tableCounts(t.db);
    for (const spelling of [name, name.toUpperCase(), `${name}.`])
      expectProblem(await addDomain(c.id, spelling), 409, 'domain_taken');
    expect(await tableCounts(t.db)).toEqual(before);

    // B cannot act on A's domain through its own organization.
    expectProblem(await verify(b.id, da.id), 404, 'not_found');
    expectProblem(await remove(b.id, da.id), 404, 'not_found');

    const del = await remove(a.id, da.id);
    expect(del.statusCode, del.body).toBe(204);
    expect(del.body).toBe('');
    expect(await list(a.id)).toEqual([]);
    expect(await auditActions(a.id)).toContain('domain.removed');
    expectProblem(await remove(a.id, da.id), 404, 'not_found');

    await verified(b.id, db);
    expect((await list(b.id))[0]).toMatchObject({ id: db.id, status: 'verified' });
    // And now A is the one refused.
    expectProblem(await addDomain(a.id, name), 409, 'domain_taken');
  });

  it('under concurrent verification by two organizations lets exactly one win', async () => {
    const a = await createOrg(t, { plan: 'business' });
    const b = await createOrg(t, { plan: 'business' });
    const name = fresh('race');
    const da = await added(a.id, name);
    const db = await added(b.id, name);
    publish(da, db);
    const results = await Promise.all([verify(a.id, da.id), verify(b.id, db.id)]);
    const codes = results.map((r) => r.statusCode).sort();
    expect(codes, results.map((r) => r.body).join('\n')).toEqual([200, 409]);
    const loser = results.find((r) => r.statusCode === 409) as LightMyRequestResponse;
    expect(loser.json().code).toBe('domain_taken');
    const states = [...(await list(a.id)), ...(await list(b.id))].map((d) => d.status).sort();
    expect(states).toEqual(['pending', 'verified']);
  });

  it('answers 404 for an unknown domain id', async () => {
    const o = await createOrg(t, { plan: 'business' });
    expectProblem(await verify(o.id, 'dom_00000000000000000000000000'), 404, 'not_found');
    expectProblem(await remove(o.id, 'dom_00000000000000000000000000'), 404, 'not_found');
  });
});

describe('a deleted organization', () => {
  it('frees its verified domain for another organization', async () => {
    const doomed = await createOrg(t, { plan: 'business' });
    const heir = await createOrg(t, { plan: 'business' });
    const name = fresh('inherited');
    const d = await added(doomed.id, name);
    publish(d);
    await verified(doomed.id, d);
    expectProblem(await addDomain(heir.id, name), 409, 'domain_taken');

    const del = await t.call({ method: 'DELETE', url: `/api/organizations/${doomed.id}` });
    expect(del.statusCode, del.body).toBe(204);

    const mine = await added(heir.id, name);
    publish(mine);
    const v = await verified(heir.id, mine);
    expect(v.organization_id).toBe(heir.id);
    expect(await list(heir.id)).toEqual([v]);
  });
});

describe('when DNS cannot be reached', () => {
  let dead: TestContext;
  beforeAll(async () => {
    // A UDP port on loopback that nothing listens on: bound once to learn it, then released.
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    const { port } = socket.address();
    await new Promise<void>((resolve) => socket.close(resolve));
    dead = await createTestApp({ dnsServers: [`127.0.0.1:${port}`] });
  });
  afterAll(() => dead?.close());

  it('answers 503 dns_unavailable and writes nothing; the domain stays pending', async () => {
    const o = await createOrg(dead, { plan: 'business' });
    const d = await added(o.id, fresh('offline'), dead);
    const before = await tableCounts(dead.db);
    const res = await verify(o.id, d.id, dead.call);
    const problem = expectProblem(res, 503, 'dns_unavailable');
    expect(problem.detail).toContain(d.verification.name);
    expect(await tableCounts(dead.db)).toEqual(before);
    expect(await list(o.id, dead.call)).toEqual([d]);
  });
});

describe('permissions', () => {
  it('lets a developer or manager list but not add, verify or remove (403); an outsider gets 404', async () => {
    const o = await createOrg(t, { plan: 'business' });
    const d = await added(o.id, fresh('guarded'));
    publish(d);
    const dev = await signUp(t, { name: 'Domain Developer' });
    const manager = await signUp(t, { name: 'Domain Manager' });
    const outsider = await signUp(t, { name: 'Domain Outsider' });
    for (const [u, role] of [
      [dev, 'developer'],
      [manager, 'manager'],
    ] as const) {
      await addMember(t, o.id, { email: u.email }, role);
    }

    expect(await list(o.id, dev.call)).toEqual([d]);
    expect(await list(o.id, manager.call)).toEqual([d]);

    const before = await tableCounts(t.db);
    const requests: InjectOptions[] = [
      { method: 'POST', url: `/api/organizations/${o.id}/domains`, payload: { domain: fresh('sneaky') } },
      { method: 'POST', url: `/api/organizations/${o.id}/domains/${d.id}/verify` },
      { method: 'DELETE', url: `/api/organizations/${o.id}/domains/${d.id}` },
    ];
    for (const [user, status, code] of [
      [dev, 403, 'forbidden'],
      [manager, 403, 'forbidden'],
      [outsider, 404, 'not_found'],
    ] as const)
      for (const req of requests) {
        const res = await user.call(req);
        expectProblem(res, status, code, { where: `${user.email} ${req.method} ${req.url}` });
      }
    expectProblem(
      await outsider.call({ method: 'GET', url: `/api/organizations/${o.id}/domains` }),
      404,
      'not_found',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    expect(await list(o.id)).toEqual([d]);

    // An admin may.
    const admin = await signUp(t, { name: 'Domain Admin' });
    await addMember(t, o.id, { email: admin.email }, 'admin');
    const v = await verify(o.id, d.id, admin.call);
    expect(v.statusCode, v.body).toBe(200);
    expect((await addDomain(o.id, fresh('by-admin'), admin.call)).statusCode).toBe(201);
  });
});

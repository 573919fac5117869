import { randomBytes } from 'node:crypto';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Permission, ROLE_PERMISSIONS, ROLES, type Role } from '../../src/lib/authz.js';
import { addCredits, addMember, createAgent, createOrg, createTeam, signUp } from '../factories.js';
import { createTestApp, type TestContext, tableCounts } from '../harness.js';
import { startDnsServer, type TestDnsServer } from '../support/dns-server.js';

/**
 * Walks every operation in /openapi.json as each role of the organization and as a member of
 * another organization, and checks the answer against the declared requirement
 * (`x-permissions`) and the role matrix: an outsider gets 404 and a role without the permission
 * 403, both writing nothing; a role with it gets past authorization.
 */
let t: TestContext;
let dns: TestDnsServer;
let orgA: string;
let orgT: string;
const tokens = new Map<Role | 'outsider', string>();
const emails = new Map<string, string>();
type Operation = { method: string; path: string; requirement: 'public' | 'authenticated' | Permission[] };
let operations: Operation[] = [];

const rnd = () => randomBytes(4).toString('hex');
const asOperator = (opts: InjectOptions) => t.call(opts);

/** Fresh objects for path parameters, so each call acts on something of its own. */
const fixtures: Record<string, () => Promise<string>> = {
  id: async () => orgA,
  holdId: async () =>
    (
      await asOperator({
        method: 'POST',
        url: `/api/organizations/${orgA}/holds`,
        payload: { amount: '0.01' },
      })
    ).json().id,
  topUpId: async () => {
    const id = `top_${rnd()}`;
    await t.db.db
      .insertInto('top_ups')
      .values({ organization_id: orgA, id, amount: 1_000_000n, reason: 'manual', provider: 'invoice' })
      .execute();
    return id;
  },
  userId: async () => {
    const u = await signUp(t, { name: 'victim' });
    await addMember(t, orgA, { email: u.email }, 'agent');
    return u.id;
  },
  keyId: async () =>
    (
      await asOperator({
        method: 'POST',
        url: `/api/organizations/${orgA}/api-keys`,
        payload: { name: 'k', scopes: ['read'] },
      })
    ).json().id,
  subId: async () =>
    (
      await asOperator({
        method: 'POST',
        url: `/api/organizations/${orgA}/sub-organizations`,
        payload: { name: `Walk Sub ${rnd()}` },
      })
    ).json().id,
  domainId: async () =>
    (
      await asOperator({
        method: 'POST',
        url: `/api/organizations/${orgA}/domains`,
        payload: { domain: `walk-${rnd()}.example.test` },
      })
    ).json().id,
  invitationId: async () =>
    (
      await asOperator({
        method: 'POST',
        url: `/api/organizations/${orgA}/invitations`,
        payload: { email: `i-${rnd()}@walk.test`, role: 'agent' },
      })
    ).json().id,
};

/** A valid body for each operation that takes one. */
async function bodyFor(op: Operation): Promise<Record<string, unknown> | undefined> {
  const key = `${op.method} ${op.path}`;
  switch (key) {
    case 'POST /api/organizations':
      return { name: `Walk ${rnd()}` };
    case 'PATCH /api/organizations/{id}':
      return { description: `walked ${rnd()}` };
    case 'POST /api/organizations/{id}/credits/add':
      return { amount: '1' };
    case 'POST /api/organizations/{id}/credits/deduct':
      return { amount: '0.01' };
    case 'POST /api/organizations/{id}/credits/transfer':
      return { to_organization_id: orgT, amount: '0.01' };
    case 'PATCH /api/organizations/{id}/credit-settings':
      return { monthly_spending_limit: null };
    case 'POST /api/organizations/{id}/holds':
      return { amount: '0.01' };
    case 'POST /api/usage':
      return { events: [{ organization_id: orgA, credits: '0.01', idempotency_key: `walk-${rnd()}` }] };
    case 'POST /api/organizations/{id}/members': {
      // Someone of the organization's tree (a member of a sub-organization, which its owners
      // and admins oversee): anyone else must be invited.
      const u = await signUp(t, { name: 'joiner' });
      await addMember(t, await (fixtures.subId as () => Promise<string>)(), { email: u.email }, 'agent');
      return { email: u.email, role: 'agent' };
    }
    case 'PATCH /api/organizations/{id}/members/{userId}':
      return { role: 'developer' };
    case 'POST /api/organizations/{id}/transfer-ownership': {
      const u = await signUp(t, { name: 'heir' });
      await addMember(t, orgA, { email: u.email }, 'agent');
      return { user_id: u.id };
    }
    case 'POST /api/organizations/{id}/api-keys':
      return { name: 'walk', scopes: ['read'] };
    case 'POST /api/organizations/{id}/invitations':
      return { email: `w-${rnd()}@walk.test`, role: 'agent' };
    case 'POST /api/me/active-organization':
      return { organization_id: orgA };
    case 'POST /api/agents':
      return { name: `Agent ${rnd()}`, organization_id: orgA };
    case 'PATCH /api/agents/{id}':
      return { description: 'walked' };
    case 'POST /api/agents/{id}/assign-org':
      return { organization_id: orgA };
    case 'POST /api/teams':
      return { name: `Team ${rnd()}`, organization_id: orgA };
    case 'POST /api/agents/{id}/api-keys':
      return { name: 'agent key' };
    case 'PATCH /api/teams/{id}':
      return { description: 'walked' };
    case 'PUT /api/organizations/{id}/subscription':
      return { plan: 'enterprise' };
    case 'PUT /api/organizations/{id}/features':
      return { features: ['workflows'] };
    case 'POST /api/organizations/{id}/sub-organizations':
      return { name: `Walk Child ${rnd()}` };
    case 'PUT /api/organizations/{id}/sub-organizations/{subId}/spending-limit':
      return { monthly_spending_limit: '100' };
    case 'POST /api/organizations/{id}/sub-organizations/{subId}/join-as':
      return { role: 'developer' };
    case 'PUT /api/organizations/{id}/customization':
      return { primary_color: '#123456' };
    case 'POST /api/organizations/{id}/domains':
      return { domain: `w-${rnd()}.example.test` };
    case 'POST /api/teams/{id}/assign-org':
      return { organization_id: orgA };
    default:
      return op.method === 'POST' || op.method === 'PATCH' ? {} : undefined;
  }
}

/** Builds the request's fixtures, counts every table, then sends it: `before` excludes fixture writes. */
async function request(op: Operation, token: string) {
  let url = op.path;
  for (const [, name] of op.path.matchAll(/\{(\w+)\}/g)) {
    // Deleting gets an organization of its own, so the walk goes on with orgA.
    const make =
      op.method === 'DELETE' && op.path === '/api/organizations/{id}'
        ? freshOrganization
        : op.path.startsWith('/api/agents/')
          ? newAgent
          : op.path.startsWith('/api/teams/')
            ? newTeam
            : fixtures[name as string];
    if (!make) throw new Error(`no fixture for {${name}} in ${op.path}`);
    url = url.replace(`{${name}}`, await make());
  }
  const payload = await bodyFor(op);
  const before = await tableCounts(t.db);
  const res = await t.app.inject({
    method: op.method as InjectOptions['method'],
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload ? { payload } : {}),
  });
  return { res, before };
}

const newAgent = async () => (await createAgent(t, { name: 'Walker', organization_id: orgA })).id;

const newTeam = async () => (await createTeam(t, { name: 'Walkers', organization_id: orgA })).id;

async function freshOrganization(): Promise<string> {
  const { id } = await createOrg(t, { name: 'Walk Doomed' });
  for (const role of ROLES) await addMember(t, id, { email: emails.get(role) as string }, role);
  return id;
}

async function unchanged(before: Record<string, number>, label: string) {
  expect(await tableCounts(t.db), `${label} wrote something`).toEqual(before);
}

/** Transferring ownership demotes the owner: it runs last. */
const LAST = ['POST /api/organizations/{id}/transfer-ownership'];

/** An Enterprise organization: every feature and no limits, so each route reaches its own rules. */
const enterpriseOrganization = async (name: string) => (await createOrg(t, { name, plan: 'enterprise' })).id;

beforeAll(async () => {
  dns = await startDnsServer();
  // Owners may change plans here, so that the walk reaches the route's permission check on its
  // own; who may choose a plan with a fee (PLAN_CHANGES) is test/api/governance.test.ts's.
  t = await createTestApp({ dnsServers: [dns.address], planChanges: 'owners' });
  orgA = await enterpriseOrganization('Walk Target');
  orgT = await transferTarget();
  await addCredits(t, orgA, '1000');
  for (const role of ROLES) {
    const u = await signUp(t, { name: role });
    tokens.set(role, u.token);
    emails.set(role, u.email);
    await addMember(t, orgA, { email: u.email }, role);
    await addMember(t, orgT, { email: u.email }, 'agent');
  }
  tokens.set('outsider', (await signUp(t, { name: 'outsider' })).token);
  const doc = (await asOperator({ method: 'GET', url: '/openapi.json' })).json();
  for (const [path, methods] of Object.entries(
    doc.paths as Record<string, Record<string, { 'x-permissions'?: Operation['requirement'] }>>,
  )) {
    if (!path.startsWith('/api/')) continue;
    for (const [method, spec] of Object.entries(methods)) {
      const requirement = spec['x-permissions'];
      expect(requirement, `${method} ${path} declares its requirement`).toBeDefined();
      operations.push({
        method: method.toUpperCase(),
        path,
        requirement: requirement as Operation['requirement'],
      });
    }
  }
  const rank = (o: Operation) => LAST.indexOf(`${o.method} ${o.path}`);
  operations = operations.sort((a, b) => rank(a) - rank(b));
});
afterAll(async () => {
  await t.close();
  await dns.close();
});

const orgScoped = (op: Operation) => op.path.includes('{id}');

describe('every API route, as every role and as an outsider', () => {
  it('found the routes', () => {
    expect(operations.length).toBeGreaterThan(35);
  });

  it('answers an outsider 404 for anything of the organization, writing nothing', async () => {
    const outsider = tokens.get('outsider') as string;
    for (const op of operations.filter((o) => Array.isArray(o.requirement) && orgScoped(o))) {
      const { res, before } = await request(op, outsider);
      const label = `${op.method} ${op.path}`;
      expect(res.statusCode, `${label}: ${res.body}`).toBe(404);
      expect(res.json().code, label).toBe('not_found');
      await unchanged(before, label);
    }
  });

  it('refuses a usage event for an invisible organization per event', async () => {
    const { res } = await request(
      operations.find((o) => o.path === '/api/usage') as Operation,
      tokens.get('outsider') as string,
    );
    expect(res.json().results[0]).toMatchObject({ status: 'rejected', code: 'not_found' });
  });

  for (const role of ROLES) {
    it(`enforces the matrix for ${role}`, async () => {
      const token = tokens.get(role) as string;
      for (const op of operations) {
        if (!Array.isArray(op.requirement)) continue;
        const label = `${role}: ${op.method} ${op.path}`;
        // Creating an organization needs none: any signed-in user may.
        const allowed = op.requirement.every(
          (p) => p === 'organization:create' || ROLE_PERMISSIONS[role].includes(p),
        );
        const { res, before } = await request(op, token);
        const body = res.body ? res.json() : {};
        if (op.path === '/api/usage') {
          expect(res.statusCode, label).toBe(200);
          expect(body.results[0].code, label).toBe(allowed ? null : 'forbidden');
          continue;
        }
        if (allowed) {
          expect([401, 403, 404], `${label} should pass authorization: ${res.body}`).not.toContain(
            res.statusCode,
          );
        } else {
          expect(res.statusCode, `${label}: ${res.body}`).toBe(403);
          expect(body.code, label).toBe('forbidden');
          await unchanged(before, label);
        }
        if (allowed && op.method === 'POST' && op.path.endsWith('/toggle'))
          await asOperator({ method: 'POST', url: `/api/organizations/${orgA}/toggle` });
      }
      // Put back what the last operations changed, for the next role.
      if (role === 'owner') await restoreOwner();
    });
  }
});

/** A sub-organization of orgA to transfer to: credits move only within one tree of organizations. */
async function transferTarget(): Promise<string> {
  const res = await asOperator({
    method: 'POST',
    url: `/api/organizations/${orgA}/sub-organizations`,
    payload: { name: 'Walk Transfer Target' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json().id;
}

/** The owner ran transfer-ownership last (becoming admin): give the next roles a fresh organization. */
async function restoreOwner() {
  orgA = await enterpriseOrganization('Walk Target');
  await addCredits(t, orgA, '1000');
  for (const role of ROLES) await addMember(t, orgA, { email: emails.get(role) as string }, role);
  orgT = await transferTarget();
}

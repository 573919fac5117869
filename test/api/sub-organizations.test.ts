import { randomBytes } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../harness.js';

type Res = LightMyRequestResponse;

interface User {
  id: string;
  email: string;
  token: string;
}

interface Org {
  id: string;
  name: string;
  slug: string;
  plan: string;
  parent_id: string | null;
  currency: string;
}

interface FeatureRow {
  key: string;
  enabled: boolean;
  in_plan: boolean;
  granted: boolean | null;
  parent_has: boolean | null;
}

interface MeView {
  user: { id: string };
  organizations: Array<{ id: string; role: string; via: string; parent_id: string | null }>;
  active_organization: { id: string; role: string; via: string } | null;
  joined_as: { organization_id: string; role: string; return_organization_id: string | null } | null;
}

const ALL_FEATURES = [
  'api_access',
  'allow_overdraft',
  'workflows',
  'broadcasts',
  'analytics',
  'custom_branding',
  'custom_domains',
  'sub_organizations',
];

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');
let seq = 0;

/** Signs a user up through the API (they get a personal organization on Free). */
async function signUp(label = 'person'): Promise<User> {
  seq += 1;
  const email = `${label}.${run}.${seq}@subs.test`;
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/auth/sign-up/email',
    payload: { email, password: 'correct horse battery', name: `${label} ${seq}` },
  });
  expect(res.statusCode, res.body).toBe(200);
  return { id: res.json().user.id, email, token: String(res.headers['set-auth-token']) };
}

/** A request as a user or an API key: never the operator's token. */
function as(who: User | string, opts: InjectOptions): Promise<Res> {
  const token = typeof who === 'string' ? who : who.token;
  return t.app.inject({ ...opts, headers: { ...opts.headers, authorization: `Bearer ${token}` } });
}

/** A request as the operator. */
const op = (opts: InjectOptions) => t.call(opts);

/** A top-level organization on `plan`: created by `owner` (who becomes its owner) or the operator. */
async function topOrg(opts: { owner?: User; plan?: string; name?: string } = {}): Promise<Org> {
  const payload = { name: opts.name ?? `Top ${run} ${++seq}` };
  const res = opts.owner
    ? await as(opts.owner, { method: 'POST', url: '/api/organizations', payload })
    : await op({ method: 'POST', url: '/api/organizations', payload });
  expect(res.statusCode, res.body).toBe(201);
  const plan = opts.plan ?? 'business';
  if (plan !== 'free') {
    const up = await op({
      method: 'PUT',
      url: `/api/organizations/${res.json().id}/subscription`,
      payload: { plan },
    });
    expect(up.statusCode, up.body).toBe(200);
  }
  return { ...res.json(), plan };
}

function createSub(parentId: string, payload: Record<string, unknown> = {}, by?: User) {
  const opts: InjectOptions = {
    method: 'POST',
    url: `/api/organizations/${parentId}/sub-organizations`,
    payload: { name: `Sub ${run} ${++seq}`, ...payload },
  };
  return by ? as(by, opts) : op(opts);
}

/** A sub-organization, created by the operator unless `by` is given. */
async function sub(parentId: string, payload: Record<string, unknown> = {}, by?: User): Promise<Org> {
  const res = await createSub(parentId, payload, by);
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function addMember(orgId: string, user: User, role: string) {
  const res = await op({
    method: 'POST',
    url: `/api/organizations/${orgId}/members`,
    payload: { user_id: user.id, role },
  });
  expect(res.statusCode, res.body).toBe(201);
}

async function fund(orgId: string, amount: string) {
  const res = await op({
    method: 'POST',
    url: `/api/organizations/${orgId}/credits/add`,
    payload: { amount },
  });
  expect(res.statusCode, res.body).toBe(201);
}

async function featuresOf(orgId: string) {
  const res = await op({ method: 'GET', url: `/api/organizations/${orgId}/features` });
  expect(res.statusCode, res.body).toBe(200);
  const body = res.json() as {
    organization_id: string;
    plan: string;
    enabled: string[];
    features: FeatureRow[];
  };
  return { ...body, byKey: Object.fromEntries(body.features.map((f) => [f.key, f])) };
}

async function auditOf(orgId: string) {
  const res = await op({ method: 'GET', url: `/api/organizations/${orgId}/audit-log?limit=100` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().data as Array<{
    action: string;
    actor: { type: string; id: string | null; role: string | null; via: string | null };
    target: { type: string; id: string };
    changes: Record<string, { before: unknown; after: unknown }>;
  }>;
}

async function balanceOf(orgId: string) {
  const res = await op({ method: 'GET', url: `/api/organizations/${orgId}/balance` });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

async function me(user: User): Promise<MeView> {
  const res = await as(user, { method: 'GET', url: '/api/me' });
  expect(res.statusCode, res.body).toBe(200);
  return res.json();
}

const deduct = (orgId: string, amount: string, by?: User) => {
  const opts: InjectOptions = {
    method: 'POST',
    url: `/api/organizations/${orgId}/credits/deduct`,
    payload: { amount },
  };
  return by ? as(by, opts) : op(opts);
};

async function usage(events: Array<Record<string, unknown>>) {
  const res = await op({
    method: 'POST',
    url: '/api/usage',
    payload: { events: events.map((e) => ({ idempotency_key: `sub-usage-${run}-${++seq}`, ...e })) },
  });
  expect(res.statusCode, res.body).toBe(200);
  return res.json().results as Array<{ status: string; code?: string }>;
}

/** Exact decimal credits as integer micro-units. */
function micros(s: string): bigint {
  const negative = s.startsWith('-');
  const [whole = '0', frac = ''] = s.replace('-', '').split('.');
  const v = BigInt(whole) * 1_000_000n + BigInt(frac.padEnd(6, '0') || '0');
  return negative ? -v : v;
}

function day(offsetDays: number): string {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

const subsUrl = (parentId: string) => `/api/organizations/${parentId}/sub-organizations`;

describe('features through three levels', () => {
  it('a grandchild can be given only what its parent has; GET features explains why', async () => {
    const top = await topOrg({ plan: 'enterprise' });
    const child = await sub(top.id, { features: ['api_access', 'workflows', 'sub_organizations'] });
    expect(child).toMatchObject({ parent_id: top.id, plan: 'enterprise' });

    const topView = await featuresOf(top.id);
    expect(topView.enabled).toEqual(ALL_FEATURES);
    for (const f of topView.features)
      expect(f).toMatchObject({ enabled: true, in_plan: true, granted: null, parent_has: null });

    const childView = await featuresOf(child.id);
    expect(childView.enabled).toEqual(['api_access', 'workflows', 'sub_organizations']);
    expect(childView.byKey.workflows).toMatchObject({
      enabled: true,
      in_plan: true,
      granted: true,
      parent_has: true,
    });
    expect(childView.byKey.analytics).toMatchObject({
      enabled: false,
      in_plan: true,
      granted: false,
      parent_has: true,
    });

    // What the child lacks cannot go to the grandchild, named one by one; nothing is written.
    await writesNothing(t.db, async () => {
      const refused = await createSub(child.id, { features: ['workflows', 'analytics', 'broadcasts'] });
      expectProblem(refused, 403, 'feature_not_grantable', 'features');
      expect(refused.json().features).toEqual(['analytics', 'broadcasts']);
    });

    const grandchild = await sub(child.id, { features: ['workflows'] });
    const gView = await featuresOf(grandchild.id);
    expect(gView.enabled).toEqual(['workflows']);
    expect(gView.byKey.workflows).toMatchObject({ enabled: true, granted: true, parent_has: true });
    expect(gView.byKey.api_access).toMatchObject({ enabled: false, granted: false, parent_has: true });
    expect(gView.byKey.analytics).toMatchObject({
      enabled: false,
      in_plan: true,
      granted: false,
      parent_has: false,
    });

    // Nor later, by PUT, even by the operator.
    await writesNothing(t.db, async () => {
      const put = await op({
        method: 'PUT',
        url: `/api/organizations/${grandchild.id}/features`,
        payload: { features: ['workflows', 'analytics'] },
      });
      expectProblem(put, 403, 'feature_not_grantable', 'features');
      expect(put.json().features).toEqual(['analytics']);
    });
    expect((await featuresOf(grandchild.id)).enabled).toEqual(['workflows']);

    // Default: everything the parent has, on the parent's plan.
    const byDefault = await sub(child.id);
    expect(byDefault.plan).toBe('enterprise');
    const dView = await featuresOf(byDefault.id);
    expect(dView.enabled).toEqual(childView.enabled);
    expect(dView.byKey.analytics).toMatchObject({ enabled: false, granted: false, parent_has: false });

    // A smaller plan caps what is granted: granted but not in the plan is not enabled.
    const starter = await sub(child.id, { plan: 'starter' });
    const sView = await featuresOf(starter.id);
    expect(sView.plan).toBe('starter');
    expect(sView.enabled).toEqual(['api_access', 'workflows']);
    expect(sView.byKey.sub_organizations).toMatchObject({
      enabled: false,
      in_plan: false,
      granted: true,
      parent_has: true,
    });

    // The grandchild without sub_organizations cannot have sub-organizations: its parent didn't grant it.
    await writesNothing(t.db, async () => {
      const deeper = await createSub(grandchild.id);
      expectProblem(deeper, 403, 'feature_not_enabled');
      expect(deeper.json()).toMatchObject({ feature: 'sub_organizations', upgrade_to: null });
    });
  });

  it('refuses PUT features on a top-level organization (409 not_a_sub_organization) and from the sub-organization itself', async () => {
    const owner = await signUp('fowner');
    const top = await topOrg({ owner });
    await writesNothing(t.db, async () => {
      for (const res of [
        await op({ method: 'PUT', url: `/api/organizations/${top.id}/features`, payload: { features: [] } }),
        await as(owner, {
          method: 'PUT',
          url: `/api/organizations/${top.id}/features`,
          payload: { features: ['api_access'] },
        }),
      ])
        expectProblem(res, 409, 'not_a_sub_organization');
    });

    // The sub-organization's own owner may read its features but not grant itself more.
    const child = await sub(top.id, { features: ['api_access'] });
    const childOwner = await signUp('childowner');
    await addMember(child.id, childOwner, 'owner');
    const read = await as(childOwner, { method: 'GET', url: `/api/organizations/${child.id}/features` });
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json().enabled).toEqual(['api_access']);
    const stranger = await signUp('fstranger');
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(childOwner, {
          method: 'PUT',
          url: `/api/organizations/${child.id}/features`,
          payload: { features: ALL_FEATURES },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(stranger, {
          method: 'PUT',
          url: `/api/organizations/${child.id}/features`,
          payload: { features: [] },
        }),
        404,
        'not_found',
      );
    });
    expect((await featuresOf(child.id)).enabled).toEqual(['api_access']);

    // The parent's owner grants it.
    const granted = await as(owner, {
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: ['api_access', 'workflows', 'workflows'] },
    });
    expect(granted.statusCode, granted.body).toBe(200);
    expect(granted.json().enabled).toEqual(['api_access', 'workflows']);
    const changed = (await auditOf(child.id)).find((e) => e.action === 'features.changed');
    expect(changed?.changes.features).toEqual({ before: ['api_access'], after: ['api_access', 'workflows'] });
    expect(changed?.actor).toMatchObject({ type: 'user', id: owner.id, role: 'admin', via: 'oversight' });
  });
});

describe('revoking a feature', () => {
  it('takes it from every organization below in one request, turning their overdraft off', async () => {
    const top = await topOrg({ plan: 'business' });
    const child = await sub(top.id);
    const grandchild = await sub(child.id);
    const great = await sub(grandchild.id);
    for (const o of [child, grandchild, great])
      expect((await featuresOf(o.id)).enabled).toEqual(ALL_FEATURES);

    await fund(grandchild.id, '10');
    for (const o of [grandchild, great]) {
      const on = await op({
        method: 'PATCH',
        url: `/api/organizations/${o.id}/credit-settings`,
        payload: { overdraft_enabled: true, overdraft_limit: '50' },
      });
      expect(on.statusCode, on.body).toBe(200);
    }
    expect(await balanceOf(grandchild.id)).toMatchObject({ overdraft_enabled: true, spendable: '60' });

    const withoutOverdraft = ALL_FEATURES.filter((f) => f !== 'allow_overdraft');
    const put = await op({
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: withoutOverdraft },
    });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json().enabled).toEqual(withoutOverdraft);

    for (const o of [grandchild, great]) {
      const v = await featuresOf(o.id);
      expect(v.enabled).toEqual(withoutOverdraft);
      expect(v.byKey.allow_overdraft).toMatchObject({ enabled: false, granted: false, parent_has: false });
      const audit = await auditOf(o.id);
      const revoked = audit.find((e) => e.action === 'features.revoked');
      expect(revoked?.changes).toEqual({
        features: { before: ['allow_overdraft'], after: [] },
        revoked_from: { before: null, after: child.id },
      });
      expect(revoked?.actor).toMatchObject({ type: 'operator' });
      const off = audit.find(
        (e) => e.action === 'credits.settings_changed' && 'overdraft_enabled' in e.changes,
      );
      expect(off?.changes.overdraft_enabled).toEqual({ before: true, after: false });
      expect((await balanceOf(o.id)).overdraft_enabled).toBe(false);
    }
    expect(await balanceOf(grandchild.id)).toMatchObject({ available: '10', spendable: '10' });
    // The child itself lost it too; the top-level keeps its plan's.
    expect((await featuresOf(child.id)).byKey.allow_overdraft).toMatchObject({
      enabled: false,
      granted: false,
    });
    expect((await featuresOf(top.id)).enabled).toEqual(ALL_FEATURES);

    // A debit below zero is refused now; down to zero still works.
    await writesNothing(t.db, async () =>
      expectProblem(await deduct(grandchild.id, '15'), 402, 'insufficient_credits'),
    );
    expect((await deduct(grandchild.id, '10')).statusCode).toBe(201);
    expect((await balanceOf(grandchild.id)).available).toBe('0');

    // Overdraft cannot be switched back on: the parent did not grant it (no plan lifts that).
    await writesNothing(t.db, async () => {
      const again = await op({
        method: 'PATCH',
        url: `/api/organizations/${grandchild.id}/credit-settings`,
        payload: { overdraft_enabled: true },
      });
      expectProblem(again, 403, 'feature_not_enabled');
      expect(again.json()).toMatchObject({ feature: 'allow_overdraft', upgrade_to: null });
    });

    // Granting it back to the child does not grant it back below.
    const back = await op({
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: ALL_FEATURES },
    });
    expect(back.statusCode, back.body).toBe(200);
    expect((await featuresOf(grandchild.id)).byKey.allow_overdraft).toMatchObject({
      enabled: false,
      granted: false,
      parent_has: true,
    });
    expect((await op({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('plan requirement and the sub-organization limit', () => {
  it('refuses a Free (and Starter, Growth) parent with 403 feature_not_enabled naming Business, writing nothing', async () => {
    const user = await signUp('freeparent');
    const personal = (await me(user)).organizations[0]?.id as string;
    await writesNothing(t.db, async () => {
      const res = await createSub(personal, {}, user);
      expectProblem(res, 403, 'feature_not_enabled');
      expect(res.json()).toMatchObject({
        feature: 'sub_organizations',
        plan: 'free',
        upgrade_to: 'business',
      });
    });
    for (const plan of ['starter', 'growth']) {
      const o = await topOrg({ plan });
      await writesNothing(t.db, async () => {
        const res = await createSub(o.id);
        expectProblem(res, 403, 'feature_not_enabled');
        expect(res.json()).toMatchObject({ plan, upgrade_to: 'business' });
      });
    }
  });

  it('holds the Business plan to its sub-organization limit, even under concurrent creation', async () => {
    const plans = (await op({ method: 'GET', url: '/api/plans' })).json().data as Array<{
      key: string;
      limits: { sub_organizations: number | null };
      features: string[];
    }>;
    const business = plans.find((p) => p.key === 'business');
    const max = business?.limits.sub_organizations as number;
    expect(typeof max).toBe('number');
    expect(max).toBeGreaterThan(0);
    expect(plans.find((p) => p.key === 'enterprise')?.limits.sub_organizations).toBeNull();
    for (const key of ['free', 'starter', 'growth'])
      expect(plans.find((p) => p.key === key)?.features).not.toContain('sub_organizations');

    const top = await topOrg({ plan: 'business' });
    const results = await Promise.all(
      Array.from({ length: max + 2 }, (_, i) => createSub(top.id, { name: `Many ${run} ${i}` })),
    );
    const statuses = results.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 201)).toHaveLength(max);
    const refused = results.filter((r) => r.statusCode !== 201);
    expect(refused).toHaveLength(2);
    for (const r of refused) {
      expectProblem(r, 402, 'plan_limit_exceeded');
      expect(r.json()).toMatchObject({
        limit: 'sub_organizations',
        plan: 'business',
        max,
        upgrade_to: 'enterprise',
      });
    }
    const subscription = (
      await op({ method: 'GET', url: `/api/organizations/${top.id}/subscription` })
    ).json();
    expect(subscription.limits.sub_organizations).toEqual({ used: max, max });

    await writesNothing(t.db, async () => expectProblem(await createSub(top.id), 402, 'plan_limit_exceeded'));
    // Downgrading below what it uses is refused.
    await writesNothing(t.db, async () => {
      const down = await op({
        method: 'PUT',
        url: `/api/organizations/${top.id}/subscription`,
        payload: { plan: 'growth' },
      });
      expectProblem(down, 409, 'plan_downgrade_blocked');
    });

    // Paging through the list sees every one exactly once.
    const seen = new Set<string>();
    let cursor: string | null = null;
    do {
      const page: Res = await op({
        method: 'GET',
        url: `${subsUrl(top.id)}?limit=20${cursor ? `&cursor=${cursor}` : ''}`,
      });
      expect(page.statusCode, page.body).toBe(200);
      for (const row of page.json().data as Array<{ id: string }>) seen.add(row.id);
      cursor = page.json().next_cursor;
    } while (cursor);
    expect(seen.size).toBe(max);

    // Enterprise lifts it.
    await op({
      method: 'PUT',
      url: `/api/organizations/${top.id}/subscription`,
      payload: { plan: 'enterprise' },
    });
    expect((await createSub(top.id)).statusCode).toBe(201);
  });
});

describe('nesting depth', () => {
  it('allows five levels below the top-level organization and refuses the sixth (409 nesting_too_deep)', async () => {
    const top = await topOrg({ plan: 'enterprise' });
    const chain: Org[] = [top];
    for (let level = 1; level <= 5; level++) {
      const parent = chain[chain.length - 1] as Org;
      const child = await sub(parent.id, { name: `Level ${level} ${run}` });
      expect(child.parent_id).toBe(parent.id);
      chain.push(child);
    }
    const deepest = chain[5] as Org;
    await writesNothing(t.db, async () => {
      const res = await createSub(deepest.id);
      expectProblem(res, 409, 'nesting_too_deep');
      expect(res.json().max_depth).toBe(5);
    });
    // Level 4 can still have another child (a sibling of level 5).
    expect((await createSub((chain[4] as Org).id)).statusCode).toBe(201);

    const tree = (await op({ method: 'GET', url: `${subsUrl(top.id)}/usage` })).json();
    expect(tree.organization_count).toBe(7);
    expect(
      tree.organizations.find((o: { organization_id: string }) => o.organization_id === deepest.id).depth,
    ).toBe(5);
  });
});

describe('oversight', () => {
  let owner: User;
  let admin: User;
  let manager: User;
  let developer: User;
  let stranger: User;
  let top: Org;
  let child: Org;
  let grandchild: Org;

  beforeAll(async () => {
    [owner, admin, manager, developer, stranger] = await Promise.all([
      signUp('owner'),
      signUp('admin'),
      signUp('manager'),
      signUp('developer'),
      signUp('stranger'),
    ]);
    top = await topOrg({ owner, plan: 'business' });
    await addMember(top.id, admin, 'admin');
    await addMember(top.id, manager, 'manager');
    await addMember(top.id, developer, 'developer');
    // Created by the operator: nobody is a member of them.
    child = await sub(top.id);
    grandchild = await sub(child.id);
  });

  it('makes the parent’s owners and admins admins of everything below, shown in GET /api/me', async () => {
    for (const u of [owner, admin]) {
      const view = await me(u);
      const byId = Object.fromEntries(view.organizations.map((o) => [o.id, o]));
      expect(byId[top.id]).toMatchObject({ role: u === owner ? 'owner' : 'admin', via: 'member' });
      expect(byId[child.id]).toMatchObject({ role: 'admin', via: 'oversight', parent_id: top.id });
      expect(byId[grandchild.id]).toMatchObject({ role: 'admin', via: 'oversight', parent_id: child.id });
    }
    for (const u of [manager, developer, stranger]) {
      const ids = (await me(u)).organizations.map((o) => o.id);
      expect(ids).not.toContain(child.id);
      expect(ids).not.toContain(grandchild.id);
    }
    const listed = (await as(owner, { method: 'GET', url: '/api/organizations?limit=100' })).json().data;
    expect(listed.map((o: { id: string }) => o.id)).toEqual(
      expect.arrayContaining([child.id, grandchild.id]),
    );
  });

  it('lets the parent’s owner read and manage the child without a membership, as admin', async () => {
    const detail = await as(owner, { method: 'GET', url: `/api/organizations/${child.id}` });
    expect(detail.statusCode, detail.body).toBe(200);
    expect(detail.json()).toMatchObject({ id: child.id, parent_id: top.id, member_count: 0 });
    const members = await as(owner, { method: 'GET', url: `/api/organizations/${child.id}/members` });
    expect(members.statusCode, members.body).toBe(200);
    expect(members.json().data).toEqual([]);

    // Added directly: someone of the same tree (a member of the parent) the owner can see.
    const newbie = await signUp('newbie');
    await addMember(top.id, newbie, 'agent');
    const added = await as(owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/members`,
      payload: { user_id: newbie.id, role: 'developer' },
    });
    expect(added.statusCode, added.body).toBe(201);
    const invited = await as(owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/invitations`,
      payload: { email: `invitee.${run}@subs.test`, role: 'manager' },
    });
    expect(invited.statusCode, invited.body).toBe(201);
    const balance = await as(owner, { method: 'GET', url: `/api/organizations/${child.id}/balance` });
    expect(balance.statusCode, balance.body).toBe(200);
    expect(balance.json().available).toBe('0');
    const renamed = await as(admin, {
      method: 'PATCH',
      url: `/api/organizations/${grandchild.id}`,
      payload: { description: 'Managed from above' },
    });
    expect(renamed.statusCode, renamed.body).toBe(200);

    const audit = await auditOf(child.id);
    expect(audit.find((e) => e.action === 'member.added')?.actor).toEqual({
      type: 'user',
      id: owner.id,
      role: 'admin',
      via: 'oversight',
    });
    expect(audit.find((e) => e.action === 'invitation.created')?.actor).toMatchObject({
      id: owner.id,
      via: 'oversight',
    });
    expect((await auditOf(grandchild.id)).find((e) => e.action === 'organization.updated')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'admin',
      via: 'oversight',
    });
  });

  it('stops oversight at admin: no deleting the child, no making owners', async () => {
    const someone = await signUp('would-be-owner');
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(owner, { method: 'DELETE', url: `/api/organizations/${child.id}` }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(owner, {
          method: 'POST',
          url: `/api/organizations/${child.id}/members`,
          payload: { user_id: someone.id, role: 'owner' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(admin, {
          method: 'POST',
          url: `/api/organizations/${child.id}/invitations`,
          payload: { email: `owner-invite.${run}@subs.test`, role: 'owner' },
        }),
        403,
        'forbidden',
      );
    });
    // Nor over an owner the child has.
    const childOwner = await signUp('real-owner');
    await addMember(child.id, childOwner, 'owner');
    await writesNothing(t.db, async () => {
      for (const res of [
        await as(owner, { method: 'DELETE', url: `/api/organizations/${child.id}/members/${childOwner.id}` }),
        await as(owner, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}/members/${childOwner.id}`,
          payload: { role: 'developer' },
        }),
        await as(owner, {
          method: 'POST',
          url: `/api/organizations/${child.id}/transfer-ownership`,
          payload: { user_id: owner.id },
        }),
      ])
        expectProblem(res, 403, 'forbidden');
    });
  });

  it('gives the parent’s developer nothing below (404), and its manager read-only sub-organization views', async () => {
    await writesNothing(t.db, async () => {
      for (const url of [
        `/api/organizations/${child.id}`,
        `/api/organizations/${child.id}/members`,
        `/api/organizations/${child.id}/balance`,
        `/api/organizations/${child.id}/features`,
        `/api/organizations/${grandchild.id}`,
      ]) {
        expectProblem(await as(developer, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(manager, { method: 'GET', url }), 404, 'not_found');
      }
      expectProblem(
        await as(developer, {
          method: 'POST',
          url: `/api/organizations/${child.id}/members`,
          payload: { user_id: developer.id, role: 'admin' },
        }),
        404,
        'not_found',
      );
      // The developer sees the parent, so its sub-organization routes answer 403.
      for (const url of [
        subsUrl(top.id),
        `${subsUrl(top.id)}/usage`,
        `${subsUrl(top.id)}/${child.id}/billing`,
      ])
        expectProblem(await as(developer, { method: 'GET', url }), 403, 'forbidden');
    });

    // The manager lists, reads usage and billing (sub_organizations:read) ...
    const list = await as(manager, { method: 'GET', url: subsUrl(top.id) });
    expect(list.statusCode, list.body).toBe(200);
    expect(list.json().data).toEqual([
      expect.objectContaining({
        id: child.id,
        name: child.name,
        plan: 'business',
        balance: '0',
        member_count: 2,
        sub_organization_count: 1,
      }),
    ]);
    expect((await as(manager, { method: 'GET', url: `${subsUrl(top.id)}/usage` })).statusCode).toBe(200);
    const billing = await as(manager, { method: 'GET', url: `${subsUrl(top.id)}/${grandchild.id}/billing` });
    expect(billing.statusCode, billing.body).toBe(200);
    expect(billing.json().organization_id).toBe(grandchild.id);

    // ... but changes nothing.
    await writesNothing(t.db, async () => {
      expectProblem(await createSub(top.id, {}, manager), 403, 'forbidden');
      expectProblem(
        await as(manager, {
          method: 'PUT',
          url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
          payload: { monthly_spending_limit: '1' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(manager, { method: 'POST', url: `${subsUrl(top.id)}/${child.id}/detach`, payload: {} }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(manager, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/join-as`,
          payload: { role: 'agent' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(manager, {
          method: 'PUT',
          url: `/api/organizations/${child.id}/features`,
          payload: { features: [] },
        }),
        404,
        'not_found',
      );
    });
  });

  it('hides a parent’s sub-organizations from outsiders, from the child’s own members and from read keys', async () => {
    const key = await op({
      method: 'POST',
      url: `/api/organizations/${top.id}/api-keys`,
      payload: { name: 'reader', scopes: ['read', 'write'] },
    });
    expect(key.statusCode, key.body).toBe(201);
    const childMember = await signUp('childmember');
    await addMember(child.id, childMember, 'owner');
    await writesNothing(t.db, async () => {
      for (const url of [
        subsUrl(top.id),
        `${subsUrl(top.id)}/usage`,
        `${subsUrl(top.id)}/${child.id}/billing`,
      ]) {
        expectProblem(await as(stranger, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(childMember, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(key.json().key, { method: 'GET', url }), 403, 'forbidden');
      }
      // The child's own owner reaches the grandchild through oversight, but not the parent.
      expect(
        (await as(childMember, { method: 'GET', url: `/api/organizations/${grandchild.id}` })).statusCode,
      ).toBe(200);
      expectProblem(
        await as(childMember, { method: 'GET', url: `/api/organizations/${top.id}` }),
        404,
        'not_found',
      );
    });
  });
});

describe('join as', () => {
  let owner: User;
  let admin: User;
  let manager: User;
  let top: Org;
  let child: Org;
  let grandchild: Org;

  beforeAll(async () => {
    [owner, admin, manager] = await Promise.all([signUp('jowner'), signUp('jadmin'), signUp('jmanager')]);
    top = await topOrg({ owner, plan: 'business' });
    await addMember(top.id, admin, 'admin');
    await addMember(top.id, manager, 'manager');
    child = await sub(top.id);
    grandchild = await sub(child.id);
  });

  it('switches the session into the child as developer, audited as the real user, and back', async () => {
    const switched = await as(admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: top.id },
    });
    expect(switched.statusCode, switched.body).toBe(200);

    const joined = await as(admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/join-as`,
      payload: { role: 'developer' },
    });
    expect(joined.statusCode, joined.body).toBe(200);
    expect(joined.json()).toEqual({
      organization_id: child.id,
      role: 'developer',
      return_organization_id: top.id,
    });

    const inside = await me(admin);
    expect(inside.joined_as).toEqual({
      organization_id: child.id,
      role: 'developer',
      return_organization_id: top.id,
    });
    expect(inside.active_organization).toMatchObject({ id: child.id, role: 'developer', via: 'join_as' });
    const byId = Object.fromEntries(inside.organizations.map((o) => [o.id, o]));
    expect(byId[child.id]).toMatchObject({ role: 'developer', via: 'join_as' });
    expect(byId[top.id]).toMatchObject({ role: 'admin', via: 'member' });
    expect((await as(admin, { method: 'GET', url: '/api/organization' })).json().id).toBe(child.id);

    // As developer: no changing the organization, no admin powers over what is below it ...
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(admin, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}`,
          payload: { description: 'nope' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(admin, {
          method: 'POST',
          url: `${subsUrl(child.id)}/${grandchild.id}/join-as`,
          payload: { role: 'admin' },
        }),
        403,
        'forbidden',
      );
    });
    // ... but agents, yes.
    const agent = await as(admin, {
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Joined agent', organization_id: child.id },
    });
    expect(agent.statusCode, agent.body).toBe(201);

    const childAudit = await auditOf(child.id);
    expect(childAudit.find((e) => e.action === 'agent.created')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'developer',
      via: 'join_as',
    });
    const joinedEvent = childAudit.find((e) => e.action === 'session.joined_as');
    expect(joinedEvent).toMatchObject({
      actor: { type: 'user', id: admin.id, role: 'admin', via: 'oversight' },
      target: { type: 'organization', id: child.id },
      changes: { role: { before: null, after: 'developer' } },
    });
    expect((await auditOf(top.id)).find((e) => e.action === 'session.joined_as')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'admin',
      via: 'member',
    });

    const left = await as(admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.statusCode, left.body).toBe(200);
    expect(left.json()).toEqual({
      organization_id: child.id,
      role: 'developer',
      return_organization_id: top.id,
    });
    const back = await me(admin);
    expect(back.joined_as).toBeNull();
    expect(back.active_organization).toMatchObject({ id: top.id, role: 'admin', via: 'member' });
    expect(back.organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    expect(
      (
        await as(admin, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}`,
          payload: { description: 'admin again' },
        })
      ).statusCode,
    ).toBe(200);
    expect((await auditOf(child.id)).find((e) => e.action === 'session.left')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'developer',
      via: 'join_as',
    });

    // Leaving again: not joined.
    await writesNothing(t.db, async () =>
      expectProblem(await as(admin, { method: 'DELETE', url: '/api/me/join-as' }), 409, 'not_joined'),
    );
  });

  it('joins a grandchild through the top and returns to where the session was', async () => {
    const before = await me(owner);
    const personal = before.active_organization?.id as string;
    expect(personal).not.toBe(top.id);
    const joined = await as(owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${grandchild.id}/join-as`,
      payload: { role: 'agent' },
    });
    expect(joined.statusCode, joined.body).toBe(200);
    expect(joined.json().return_organization_id).toBe(personal);
    const inside = await me(owner);
    expect(inside.active_organization).toMatchObject({ id: grandchild.id, role: 'agent', via: 'join_as' });
    // An agent reads but does not manage members.
    expectProblem(
      await as(owner, {
        method: 'POST',
        url: `/api/organizations/${grandchild.id}/invitations`,
        payload: { email: `agentinvite.${run}@subs.test`, role: 'developer' },
      }),
      403,
      'forbidden',
    );
    // The child stays an oversight admin.
    expect(inside.organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    const left = await as(owner, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.json().return_organization_id).toBe(personal);
    const after = await me(owner);
    expect(after.joined_as).toBeNull();
    expect(after.active_organization?.id).toBe(personal);
  });

  it('keeps the first way back when joining again from inside, and returns to the parent when started in the child', async () => {
    const switched = await as(admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: top.id },
    });
    expect(switched.statusCode, switched.body).toBe(200);
    const first = await as(admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/join-as`,
      payload: { role: 'manager' },
    });
    expect(first.json().return_organization_id).toBe(top.id);
    const second = await as(admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${grandchild.id}/join-as`,
      payload: { role: 'agent' },
    });
    expect(second.statusCode, second.body).toBe(200);
    expect(second.json()).toEqual({
      organization_id: grandchild.id,
      role: 'agent',
      return_organization_id: top.id,
    });
    const inside = await me(admin);
    expect(inside.joined_as).toEqual(second.json());
    // Only one joined organization at a time: the child is back to oversight.
    expect(inside.organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    expect(inside.organizations.find((o) => o.id === grandchild.id)).toMatchObject({
      role: 'agent',
      via: 'join_as',
    });
    const left = await as(admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.json()).toEqual({
      organization_id: grandchild.id,
      role: 'agent',
      return_organization_id: top.id,
    });
    expect((await me(admin)).active_organization?.id).toBe(top.id);

    // Started from inside the child (active there through oversight): the way back is the parent.
    await as(admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: child.id },
    });
    expect((await me(admin)).active_organization).toMatchObject({ id: child.id, via: 'oversight' });
    const fromInside = await as(admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/join-as`,
      payload: { role: 'developer' },
    });
    expect(fromInside.json().return_organization_id).toBe(top.id);
    await as(admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect((await me(admin)).active_organization?.id).toBe(top.id);
  });

  it('ends the joined role as soon as the oversight behind it ends', async () => {
    const [boss, deputy] = await Promise.all([signUp('jboss'), signUp('jdeputy')]);
    const org = await topOrg({ owner: boss, plan: 'business' });
    await addMember(org.id, deputy, 'admin');
    const kid = await sub(org.id);
    const joined = await as(deputy, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${kid.id}/join-as`,
      payload: { role: 'developer' },
    });
    expect(joined.statusCode, joined.body).toBe(200);
    expect((await as(deputy, { method: 'GET', url: `/api/organizations/${kid.id}` })).statusCode).toBe(200);

    // Demoted in the parent: no oversight, so no joined role either.
    const demoted = await op({
      method: 'PATCH',
      url: `/api/organizations/${org.id}/members/${deputy.id}`,
      payload: { role: 'developer' },
    });
    expect(demoted.statusCode, demoted.body).toBe(200);
    const view = await me(deputy);
    expect(view.joined_as).toBeNull();
    expect(view.organizations.map((o) => o.id)).not.toContain(kid.id);
    expectProblem(await as(deputy, { method: 'GET', url: `/api/organizations/${kid.id}` }), 404, 'not_found');
    expectProblem(
      await as(deputy, {
        method: 'POST',
        url: '/api/agents',
        payload: { name: 'Sneaky', organization_id: kid.id },
      }),
      404,
      'not_found',
    );
    // Leaving still tidies the session up.
    expect((await as(deputy, { method: 'DELETE', url: '/api/me/join-as' })).statusCode).toBe(200);
    expectProblem(await as(deputy, { method: 'DELETE', url: '/api/me/join-as' }), 409, 'not_joined');

    // Detached while joined: the joined role goes with the oversight.
    const other = await sub(org.id);
    const again = await as(boss, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${other.id}/join-as`,
      payload: { role: 'admin' },
    });
    expect(again.statusCode, again.body).toBe(200);
    const detached = await as(boss, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${other.id}/detach`,
      payload: {},
    });
    expect(detached.statusCode, detached.body).toBe(200);
    const after = await me(boss);
    expect(after.joined_as).toBeNull();
    expect(after.organizations.map((o) => o.id)).not.toContain(other.id);
    expectProblem(await as(boss, { method: 'GET', url: `/api/organizations/${other.id}` }), 404, 'not_found');
  });

  it('is refused to API keys, the operator, managers, and for organizations not below the parent', async () => {
    const key = await op({
      method: 'POST',
      url: `/api/organizations/${top.id}/api-keys`,
      payload: { name: 'joiner', scopes: ['read', 'write'] },
    });
    expect(key.statusCode, key.body).toBe(201);
    const other = await topOrg({ plan: 'business' });
    const elsewhere = await sub(other.id);
    const url = `${subsUrl(top.id)}/${child.id}/join-as`;
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(key.json().key, { method: 'POST', url, payload: { role: 'developer' } }),
        403,
        'forbidden',
      );
      expectProblem(await op({ method: 'POST', url, payload: { role: 'developer' } }), 403, 'forbidden');
      expectProblem(await as(manager, { method: 'POST', url, payload: { role: 'agent' } }), 403, 'forbidden');
      expectProblem(
        await as(admin, { method: 'POST', url, payload: { role: 'owner' } }),
        400,
        'validation_failed',
        'role',
      );
      for (const [parent, target] of [
        [top.id, other.id],
        [top.id, elsewhere.id],
        [top.id, top.id],
        [grandchild.id, child.id],
        [top.id, 'org_does_not_exist'],
      ] as const)
        expectProblem(
          await as(owner, {
            method: 'POST',
            url: `${subsUrl(parent)}/${target}/join-as`,
            payload: { role: 'developer' },
          }),
          404,
          'not_found',
        );
      expectProblem(await op({ method: 'DELETE', url: '/api/me/join-as' }), 403, 'forbidden');
      expectProblem(await as(key.json().key, { method: 'DELETE', url: '/api/me/join-as' }), 403, 'forbidden');
    });
  });
});

describe('creating a sub-organization', () => {
  it('makes its creator the owner; the parent’s other admins oversee it', async () => {
    const [owner, admin] = await Promise.all([signUp('cowner'), signUp('cadmin')]);
    const top = await topOrg({ owner, plan: 'business' });
    await addMember(top.id, admin, 'admin');
    const child = await sub(top.id, { description: 'Made by its owner', currency: 'GBP' }, owner);
    expect(child).toMatchObject({ parent_id: top.id, plan: 'business', currency: 'GBP' });
    expect((await me(owner)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'owner',
      via: 'member',
    });
    expect((await me(admin)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    const created = (await auditOf(top.id)).find((e) => e.action === 'sub_organization.created');
    expect(created).toMatchObject({
      actor: { type: 'user', id: owner.id, role: 'owner', via: 'member' },
      target: { type: 'organization', id: child.id },
    });
    const grantedFeatures = created?.changes.features as { before: unknown; after: string[] };
    expect(grantedFeatures.before).toBeNull();
    expect([...grantedFeatures.after].sort()).toEqual([...ALL_FEATURES].sort());
    // Detaching takes the parent side's people out of it: here the creator, its only owner, so it
    // is refused unless they are kept. And it is the parent's owners' to do, not its admins'.
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(admin, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/detach`,
          payload: { keep_members: [owner.id] },
        }),
        403,
        'forbidden',
      );
      const refused = await as(owner, {
        method: 'POST',
        url: `${subsUrl(top.id)}/${child.id}/detach`,
        payload: {},
      });
      expectProblem(refused, 409, 'last_owner');
      expect(refused.json().user_ids).toEqual([owner.id]);
    });
    const detached = await as(owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { keep_members: [owner.id] },
    });
    expect(detached.statusCode, detached.body).toBe(200);
    expect((await as(owner, { method: 'GET', url: `/api/organizations/${child.id}` })).statusCode).toBe(200);
    expectProblem(
      await as(admin, { method: 'GET', url: `/api/organizations/${child.id}` }),
      404,
      'not_found',
    );
  });

  it.each([
    [{ name: '' }, 'name'],
    [{ name: 'x', features: ['teleportation'] }, 'features'],
    [{ name: 'x', plan: 'platinum' }, 'plan'],
    [{ name: 'x', currency: 'XYZ' }, 'currency'],
    [{ name: 'x', slug: 'Not A Slug' }, 'slug'],
    [{ name: 'x', parent_id: 'org_elsewhere' }, 'parent_id'],
  ])('refuses %j with 400 naming the field, writing nothing', async (payload, field) => {
    const top = await topOrg({ plan: 'business' });
    await writesNothing(t.db, async () =>
      expectProblem(
        await op({ method: 'POST', url: subsUrl(top.id), payload }),
        400,
        'validation_failed',
        field,
      ),
    );
  });

  it('refuses a taken slug (409) and an unknown parent (404), writing nothing', async () => {
    const top = await topOrg({ plan: 'business' });
    const slug = `taken-${run}`;
    expect((await createSub(top.id, { slug })).statusCode).toBe(201);
    await writesNothing(t.db, async () => {
      expectProblem(await createSub(top.id, { slug }), 409, 'slug_taken', 'slug');
      expectProblem(await createSub(`no-such-parent-${run}`), 404, 'not_found');
    });
  });
});

describe('detach', () => {
  let owner: User;
  let member: User;
  let top: Org;

  beforeAll(async () => {
    [owner, member] = await Promise.all([signUp('downer'), signUp('dmember')]);
    top = await topOrg({ owner, plan: 'business' });
    await fund(top.id, '100');
  });

  it('makes a child independent on Free: no oversight, data and balance kept, grants dropped', async () => {
    const child = await sub(top.id, { features: ['api_access', 'workflows'] });
    // Someone of the tree (a member of the parent, not one who runs it) can be added directly.
    await addMember(top.id, member, 'agent');
    const added = await as(owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/members`,
      payload: { user_id: member.id, role: 'developer' },
    });
    expect(added.statusCode, added.body).toBe(201);
    const sent = await as(owner, {
      method: 'POST',
      url: `/api/organizations/${top.id}/credits/transfer`,
      payload: { to_organization_id: child.id, amount: '30' },
    });
    expect(sent.statusCode, sent.body).toBe(201);
    const limited = await as(owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '5' },
    });
    expect(limited.statusCode, limited.body).toBe(200);

    const res = await as(owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: {},
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: child.id, parent_id: null, plan: 'free' });

    // Oversight is gone at once.
    expectProblem(
      await as(owner, { method: 'GET', url: `/api/organizations/${child.id}` }),
      404,
      'not_found',
    );
    expect((await me(owner)).organizations.map((o) => o.id)).not.toContain(child.id);
    const list = (await as(owner, { method: 'GET', url: subsUrl(top.id) })).json().data;
    expect(list.map((o: { id: string }) => o.id)).not.toContain(child.id);
    expectProblem(
      await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` }),
      404,
      'not_found',
    );

    // Its data stays.
    expect((await balanceOf(child.id)).available).toBe('30');
    const members = (await op({ method: 'GET', url: `/api/organizations/${child.id}/members` })).json().data;
    expect(members.map((m: { user_id: string; role: string }) => [m.user_id, m.role])).toEqual([
      [member.id, 'developer'],
    ]);
    expect((await me(member)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'developer',
      via: 'member',
      parent_id: null,
    });

    // Its plan decides its features now.
    const features = await featuresOf(child.id);
    expect(features.plan).toBe('free');
    expect(features.enabled).toEqual(['api_access', 'allow_overdraft']);
    for (const f of features.features) expect(f).toMatchObject({ granted: null, parent_has: null });
    expect(
      (await op({ method: 'GET', url: `/api/organizations/${child.id}/subscription` })).json(),
    ).toMatchObject({ plan: 'free', status: 'active' });

    expect((await auditOf(child.id)).find((e) => e.action === 'organization.detached')?.changes).toEqual({
      parent_id: { before: top.id, after: null },
    });
    expect((await auditOf(top.id)).find((e) => e.action === 'sub_organization.detached')).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'organization', id: child.id },
    });

    // Not below any more: a second detach is 404.
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(owner, { method: 'POST', url: `${subsUrl(top.id)}/${child.id}/detach`, payload: {} }),
        404,
        'not_found',
      ),
    );
  });

  it('keeps the plan it is given, and refuses a grandchild through the grandparent', async () => {
    const child = await sub(top.id, { features: ['api_access'] });
    const parentWithChild = await sub(top.id);
    const below = await sub(parentWithChild.id);
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(owner, { method: 'POST', url: `${subsUrl(top.id)}/${below.id}/detach`, payload: {} }),
        409,
        'not_a_sub_organization',
      ),
    );

    // A plan with a fee for an independent organization is the operator's (PLAN_CHANGES=operator).
    const growth = await op({
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { plan: 'growth' },
    });
    expect(growth.statusCode, growth.body).toBe(200);
    expect(growth.json()).toMatchObject({ parent_id: null, plan: 'growth' });
    const features = await featuresOf(child.id);
    expect(features.enabled).toEqual([
      'api_access',
      'allow_overdraft',
      'workflows',
      'broadcasts',
      'analytics',
      'custom_branding',
    ]);
  });

  it('is the parent’s: the child’s own owner cannot detach it, and nothing detaches from itself', async () => {
    const child = await sub(top.id);
    const childOwner = await signUp('dchildowner');
    await addMember(child.id, childOwner, 'owner');
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(childOwner, { method: 'POST', url: `${subsUrl(top.id)}/${child.id}/detach`, payload: {} }),
        404,
        'not_found',
      );
      expectProblem(
        await as(owner, { method: 'POST', url: `${subsUrl(top.id)}/${top.id}/detach`, payload: {} }),
        404,
        'not_found',
      );
      expectProblem(
        await as(owner, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/detach`,
          payload: { plan: 'gold' },
        }),
        400,
        'validation_failed',
        'plan',
      );
    });
  });

  it('refuses (409 plan_downgrade_blocked) a child over the Free plan’s limits, changing nothing', async () => {
    const child = await sub(top.id);
    const grandchild = await sub(child.id);
    const featuresBefore = await featuresOf(child.id);
    await writesNothing(t.db, async () => {
      const res = await as(owner, {
        method: 'POST',
        url: `${subsUrl(top.id)}/${child.id}/detach`,
        payload: {},
      });
      expectProblem(res, 409, 'plan_downgrade_blocked');
      expect(res.json()).toMatchObject({
        plan: 'free',
        exceeded: [{ limit: 'sub_organizations', used: 1, max: 0 }],
      });
    });
    expect((await op({ method: 'GET', url: `/api/organizations/${child.id}` })).json()).toMatchObject({
      parent_id: top.id,
      plan: 'business',
    });
    expect(await featuresOf(child.id)).toEqual(featuresBefore);
    expect((await me(owner)).organizations.find((o) => o.id === grandchild.id)).toMatchObject({
      via: 'oversight',
    });

    // With a plan that fits, it goes, with its own sub-organization, out of the parent's oversight.
    // A plan with a fee for an independent organization is the operator's (PLAN_CHANGES=operator).
    const ok = await op({
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { plan: 'business' },
    });
    expect(ok.statusCode, ok.body).toBe(200);
    expect((await op({ method: 'GET', url: `/api/organizations/${grandchild.id}` })).json().parent_id).toBe(
      child.id,
    );
    expectProblem(
      await as(owner, { method: 'GET', url: `/api/organizations/${grandchild.id}` }),
      404,
      'not_found',
    );
    // Its grants are gone: it now has all of Business, and so can its sub-organization (what it was granted).
    expect((await featuresOf(child.id)).enabled).toEqual(ALL_FEATURES);
  });
});

describe('tree usage', () => {
  it('sums each organization of the tree, with zeros for the idle and spend per currency', async () => {
    const top = await topOrg({ plan: 'business' });
    const c1 = await sub(top.id, { name: `Usage USD ${run}` });
    const c2 = await sub(top.id, { name: `Usage EUR ${run}`, currency: 'EUR' });
    const idle = await sub(top.id, { name: `Usage idle ${run}` });
    const g = await sub(c1.id, { name: `Usage grandchild ${run}` });
    for (const o of [top, c1, c2, g]) await fund(o.id, '100');
    const agent = await op({
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Counter', organization_id: g.id },
    });
    expect(agent.statusCode, agent.body).toBe(201);

    const results = await usage([
      { organization_id: top.id, credits: '1.5', cost: '0.5', tokens_in: 100, tokens_out: 50 },
      { organization_id: c1.id, credits: '2', cost: '1', tokens_in: 10, tokens_out: 20 },
      { organization_id: c1.id, credits: '0.25', cost: '0.1' },
      { organization_id: c2.id, credits: '3', cost: '2', tokens_in: 7, tokens_out: 0 },
      { organization_id: g.id, agent_id: agent.json().id, credits: '4', cost: '0.75', tokens_out: 1000 },
      { organization_id: g.id, credits: '0.000001' },
      // Refused (no credits): counts nowhere.
      { organization_id: idle.id, credits: '1', cost: '1' },
    ]);
    expect(results.map((r) => r.status)).toEqual([
      'applied',
      'applied',
      'applied',
      'applied',
      'applied',
      'applied',
      'rejected',
    ]);

    const res = await op({ method: 'GET', url: `${subsUrl(top.id)}/usage?from=${day(-1)}&to=${day(1)}` });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({ organization_id: top.id, from: day(-1), to: day(1), organization_count: 5 });
    const rows = Object.fromEntries(
      (body.organizations as Array<{ organization_id: string }>).map((r) => [r.organization_id, r]),
    );
    expect(rows[top.id]).toMatchObject({
      depth: 0,
      parent_id: null,
      currency: 'USD',
      events: 1,
      credits: '1.5',
      tokens_in: 100,
      tokens_out: 50,
      spend: '0.5',
    });
    expect(rows[c1.id]).toMatchObject({
      depth: 1,
      parent_id: top.id,
      events: 2,
      credits: '2.25',
      spend: '1.1',
    });
    expect(rows[c2.id]).toMatchObject({ depth: 1, currency: 'EUR', events: 1, credits: '3', spend: '2' });
    expect(rows[g.id]).toMatchObject({
      depth: 2,
      parent_id: c1.id,
      name: g.name,
      events: 2,
      credits: '4.000001',
      tokens_in: 0,
      tokens_out: 1000,
      spend: '0.75',
    });
    expect(rows[idle.id]).toMatchObject({
      depth: 1,
      name: idle.name,
      events: 0,
      credits: '0',
      tokens_in: 0,
      tokens_out: 0,
      spend: '0',
    });

    // The totals are the sum of the rows; spend is kept apart per currency.
    const list = body.organizations as Array<{
      events: number;
      credits: string;
      tokens_in: number;
      tokens_out: number;
      spend: string;
      currency: string;
    }>;
    expect(body.total.events).toBe(list.reduce((s, r) => s + r.events, 0));
    expect(body.total.tokens_in).toBe(list.reduce((s, r) => s + r.tokens_in, 0));
    expect(body.total.tokens_out).toBe(list.reduce((s, r) => s + r.tokens_out, 0));
    expect(micros(body.total.credits)).toBe(list.reduce((s, r) => s + micros(r.credits), 0n));
    expect(body.total).toEqual({
      events: 6,
      credits: '10.750001',
      tokens_in: 117,
      tokens_out: 1070,
      spend: { USD: '2.35', EUR: '2' },
    });

    // A subtree counts only itself.
    const subtree = (
      await op({ method: 'GET', url: `${subsUrl(c1.id)}/usage?from=${day(-1)}&to=${day(1)}` })
    ).json();
    expect(subtree.organization_count).toBe(2);
    expect(subtree.total).toMatchObject({ events: 4, credits: '6.250001', spend: { USD: '1.85' } });
    expect(subtree.organizations[0]).toMatchObject({ organization_id: c1.id, depth: 0, parent_id: top.id });

    // Days without usage: every organization, all zeros.
    const past = (
      await op({ method: 'GET', url: `${subsUrl(top.id)}/usage?from=2020-01-01&to=2020-01-31` })
    ).json();
    expect(past.organization_count).toBe(5);
    expect(past.total).toEqual({
      events: 0,
      credits: '0',
      tokens_in: 0,
      tokens_out: 0,
      spend: { USD: '0', EUR: '0' },
    });

    // Default range: the last 30 days up to today.
    const dflt = (await op({ method: 'GET', url: `${subsUrl(top.id)}/usage` })).json();
    expect(dflt).toMatchObject({ from: day(-29), to: day(0) });
    expect(dflt.total.events).toBe(6);
  });

  it('accepts a range of exactly 366 days', async () => {
    const top = await topOrg({ plan: 'business' });
    const res = await op({ method: 'GET', url: `${subsUrl(top.id)}/usage?from=2020-01-01&to=2020-12-31` });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ from: '2020-01-01', to: '2020-12-31', organization_count: 1 });
  });

  it.each([
    ['from after to', `from=${day(0)}&to=${day(-1)}`, 'from'],
    ['over 366 days', `from=2020-01-01&to=2021-01-02`, 'from'],
    ['not a date', 'from=2024-13-45', 'from'],
    ['unknown parameter', 'since=2024-01-01', 'since'],
  ])('refuses a range %s with 400 naming the field', async (_label, query, field) => {
    const top = await topOrg({ plan: 'business' });
    await writesNothing(t.db, async () =>
      expectProblem(
        await op({ method: 'GET', url: `${subsUrl(top.id)}/usage?${query}` }),
        400,
        'validation_failed',
        field,
      ),
    );
  });
});

describe('billing and the spending limit', () => {
  it('is set by the parent, enforced on the child’s debits, and not liftable by the child’s owner', async () => {
    const [owner, childOwner] = await Promise.all([signUp('bowner'), signUp('bchildowner')]);
    const top = await topOrg({ owner, plan: 'business' });
    const child = await sub(top.id);
    await addMember(child.id, childOwner, 'owner');
    await fund(child.id, '100');

    const summary = await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` });
    expect(summary.statusCode, summary.body).toBe(200);
    expect(summary.json()).toMatchObject({
      organization_id: child.id,
      subscription: { plan: 'business', plan_name: 'Business', status: 'active', billing_cycle: 'monthly' },
      currency: 'USD',
      available_balance: '100',
      monthly_spending_limit: null,
      month_spend: '0',
      auto_recharge: { enabled: false },
    });
    expect(
      summary.json().payment_history.map((p: { type: string; amount: string }) => [p.type, p.amount]),
    ).toEqual([['top_up', '100']]);

    await writesNothing(t.db, async () => {
      for (const limit of ['-1', 'lots'])
        expectProblem(
          await as(owner, {
            method: 'PUT',
            url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
            payload: { monthly_spending_limit: limit },
          }),
          400,
          'validation_failed',
          'monthly_spending_limit',
        );
      expectProblem(
        await as(owner, { method: 'PUT', url: `${subsUrl(top.id)}/${child.id}/spending-limit`, payload: {} }),
        400,
        'validation_failed',
      );
    });

    const set = await as(owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '10' },
    });
    expect(set.statusCode, set.body).toBe(200);
    expect(set.json()).toMatchObject({ organization_id: child.id, monthly_spending_limit: '10' });
    expect((await balanceOf(child.id)).monthly_spending_limit).toBe('10');

    // The child's own owner cannot lift or change it, by any route.
    await writesNothing(t.db, async () => {
      for (const monthly_spending_limit of [null, '1000', '10'])
        expectProblem(
          await as(childOwner, {
            method: 'PATCH',
            url: `/api/organizations/${child.id}/credit-settings`,
            payload: { monthly_spending_limit },
          }),
          403,
          'forbidden',
          'monthly_spending_limit',
        );
      expectProblem(
        await as(childOwner, {
          method: 'PUT',
          url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
          payload: { monthly_spending_limit: null },
        }),
        404,
        'not_found',
      );
    });
    // Its other settings are still its own.
    const own = await as(childOwner, {
      method: 'PATCH',
      url: `/api/organizations/${child.id}/credit-settings`,
      payload: { overdraft_limit: '5' },
    });
    expect(own.statusCode, own.body).toBe(200);

    // Enforced on every debit.
    expect((await deduct(child.id, '8', childOwner)).statusCode).toBe(201);
    await writesNothing(t.db, async () =>
      expectProblem(await deduct(child.id, '3', childOwner), 402, 'spending_limit_exceeded'),
    );
    expect((await usage([{ organization_id: child.id, credits: '2.5' }]))[0]).toMatchObject({
      status: 'rejected',
      code: 'spending_limit_exceeded',
    });
    expect((await deduct(child.id, '2', childOwner)).statusCode).toBe(201);
    const after = (await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` })).json();
    expect(after).toMatchObject({ available_balance: '90', month_spend: '10', monthly_spending_limit: '10' });

    // The parent's oversight admin may change it on the child's own settings too.
    const viaSettings = await as(owner, {
      method: 'PATCH',
      url: `/api/organizations/${child.id}/credit-settings`,
      payload: { monthly_spending_limit: '12' },
    });
    expect(viaSettings.statusCode, viaSettings.body).toBe(200);
    expect((await deduct(child.id, '2', childOwner)).statusCode).toBe(201);

    // Lifted by the parent.
    const lifted = await as(owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: null },
    });
    expect(lifted.json().monthly_spending_limit).toBeNull();
    expect((await deduct(child.id, '3', childOwner)).statusCode).toBe(201);

    const audit = await auditOf(child.id);
    const change = audit.find(
      (e) => e.action === 'credits.settings_changed' && e.changes.monthly_spending_limit !== undefined,
    );
    expect(change?.actor).toMatchObject({ type: 'user', id: owner.id, role: 'admin', via: 'oversight' });

    // A top-level organization's owner sets its own limit.
    const self = await as(owner, {
      method: 'PATCH',
      url: `/api/organizations/${top.id}/credit-settings`,
      payload: { monthly_spending_limit: '1' },
    });
    expect(self.statusCode, self.body).toBe(200);
  });

  it('reaches a grandchild through the grandparent, and nothing outside the tree', async () => {
    const owner = await signUp('gbowner');
    const top = await topOrg({ owner, plan: 'business' });
    const child = await sub(top.id);
    const grandchild = await sub(child.id);
    await fund(grandchild.id, '10');
    const set = await as(owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${grandchild.id}/spending-limit`,
      payload: { monthly_spending_limit: '1' },
    });
    expect(set.statusCode, set.body).toBe(200);
    expectProblem(await deduct(grandchild.id, '1.5'), 402, 'spending_limit_exceeded');
    const billing = await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${grandchild.id}/billing` });
    expect(billing.json()).toMatchObject({ organization_id: grandchild.id, available_balance: '10' });

    const outside = await topOrg({ plan: 'business' });
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${outside.id}/billing` }),
        404,
        'not_found',
      );
      expectProblem(
        await op({ method: 'GET', url: `${subsUrl(child.id)}/${top.id}/billing` }),
        404,
        'not_found',
      );
      expectProblem(
        await op({
          method: 'PUT',
          url: `${subsUrl(top.id)}/${outside.id}/spending-limit`,
          payload: { monthly_spending_limit: '1' },
        }),
        404,
        'not_found',
      );
    });
  });
});

describe('funding a sub-organization', () => {
  it('moves credits from parent to child by transfer, once per idempotency key', async () => {
    const [owner, manager, childOwner] = await Promise.all([
      signUp('towner'),
      signUp('tmanager'),
      signUp('tchildowner'),
    ]);
    const top = await topOrg({ owner, plan: 'business' });
    await addMember(top.id, manager, 'manager');
    const child = await sub(top.id);
    const grandchild = await sub(child.id);
    await addMember(child.id, childOwner, 'owner');
    await fund(top.id, '100');

    const transfer = (by: User, from: string, to: string, amount: string, key?: string) =>
      as(by, {
        method: 'POST',
        url: `/api/organizations/${from}/credits/transfer`,
        payload: { to_organization_id: to, amount },
        headers: key ? { 'idempotency-key': key } : {},
      });

    const key = `fund-${run}`;
    const first = await transfer(owner, top.id, child.id, '30', key);
    expect(first.statusCode, first.body).toBe(201);
    expect(first.json().from).toMatchObject({ type: 'transfer_out', amount: '30', balance_after: '70' });
    expect(first.json().to).toMatchObject({
      type: 'transfer_in',
      organization_id: child.id,
      balance_after: '30',
      actor: { type: 'user', id: owner.id },
    });
    await writesNothing(t.db, async () => {
      const replay = await transfer(owner, top.id, child.id, '30', key);
      expect(replay.statusCode).toBe(201);
      expect(replay.json()).toEqual(first.json());
      expectProblem(await transfer(owner, top.id, child.id, '31', key), 422, 'idempotency_key_reused');
      expectProblem(await transfer(owner, top.id, child.id, '1000'), 402, 'insufficient_credits');
      expectProblem(await transfer(manager, top.id, child.id, '1'), 403, 'forbidden');
      // The child's owner cannot pull from the parent, nor send to it (it cannot see it).
      expectProblem(await transfer(childOwner, top.id, child.id, '1'), 404, 'not_found');
      expectProblem(
        await transfer(childOwner, child.id, top.id, '1'),
        400,
        'validation_failed',
        'to_organization_id',
      );
    });

    // Straight to a grandchild as well.
    expect((await transfer(owner, top.id, grandchild.id, '5')).statusCode).toBe(201);

    expect((await balanceOf(top.id)).available).toBe('65');
    expect((await balanceOf(child.id)).available).toBe('30');
    expect((await balanceOf(grandchild.id)).available).toBe('5');
    const list = (await as(owner, { method: 'GET', url: subsUrl(top.id) })).json().data;
    expect(list.find((o: { id: string }) => o.id === child.id)).toMatchObject({
      balance: '30',
      member_count: 1,
    });
    const billing = (
      await as(owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` })
    ).json();
    expect(billing.payment_history).toEqual([
      expect.objectContaining({ type: 'transfer_in', amount: '30', related_id: first.json().from.id }),
    ]);
    expect((await op({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('what the parent decides', () => {
  it('chooses the sub-organization’s plan, never above its own', async () => {
    const [owner, childOwner] = await Promise.all([signUp('pplan'), signUp('pchildowner')]);
    const top = await topOrg({ owner, plan: 'business' });
    const child = await sub(top.id, {}, owner);
    await addMember(child.id, childOwner, 'owner');
    const url = `/api/organizations/${child.id}/subscription`;
    await writesNothing(t.db, async () => {
      // The child's own owner may read its plan but not change, cancel or reactivate it.
      expect((await as(childOwner, { method: 'GET', url })).statusCode).toBe(200);
      expectProblem(
        await as(childOwner, { method: 'PUT', url, payload: { plan: 'starter' } }),
        403,
        'forbidden',
      );
      expectProblem(await as(childOwner, { method: 'POST', url: `${url}/cancel` }), 403, 'forbidden');
      // Above the parent's plan: refused, at creation and by a change.
      expectProblem(
        await as(owner, { method: 'PUT', url, payload: { plan: 'enterprise' } }),
        400,
        'validation_failed',
        'plan',
      );
      expectProblem(await createSub(top.id, { plan: 'enterprise' }, owner), 400, 'validation_failed', 'plan');
    });
    const down = await as(owner, { method: 'PUT', url, payload: { plan: 'growth' } });
    expect(down.statusCode, down.body).toBe(200);
    expect(down.json().plan).toBe('growth');
  });

  it('counts transfers out against the monthly limit it set', async () => {
    const [owner, childOwner] = await Promise.all([signUp('tlimit'), signUp('tchild')]);
    const top = await topOrg({ owner, plan: 'business' });
    const child = await sub(top.id, {}, owner);
    await addMember(child.id, childOwner, 'owner');
    await fund(child.id, '100');
    const limit = await as(owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '5' },
    });
    expect(limit.statusCode, limit.body).toBe(200);
    // Credits stay in the tree: to a sibling (out of it, even to one's own, is refused outright).
    const sibling = await sub(top.id, {}, owner);
    await addMember(sibling.id, childOwner, 'developer');
    const transfer = (amount: string) =>
      as(childOwner, {
        method: 'POST',
        url: `/api/organizations/${child.id}/credits/transfer`,
        payload: { to_organization_id: sibling.id, amount },
      });
    await writesNothing(t.db, async () =>
      expectProblem(await transfer('100'), 402, 'spending_limit_exceeded'),
    );
    expect((await transfer('5')).statusCode).toBe(201);
    expect(await balanceOf(child.id)).toMatchObject({ available: '95', month_spend: '5' });
    await writesNothing(t.db, async () =>
      expectProblem(await transfer('0.000001'), 402, 'spending_limit_exceeded'),
    );
  });
});

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  as,
  createOrg,
  createSubOrg,
  type Organization,
  readAuditLog,
  readBalance,
  readMe,
  signUp,
  type User,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../../harness.js';
import { ALL_FEATURES, createSub, featuresOf, subsUrl } from './support.js';

/**
 * A sub-organization's life: created by the operator or a parent's user (with the refusals of
 * a bad body), and detached into an independent organization, which is the parent's to do.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');

describe('creating a sub-organization', () => {
  it('makes its creator the owner; the parent’s other admins oversee it', async () => {
    const [owner, admin] = await Promise.all([signUp(t, { name: 'cowner' }), signUp(t, { name: 'cadmin' })]);
    const top = await createOrg(t, { by: owner, plan: 'business' });
    await addMember(t, top.id, admin, 'admin');
    const child = await createSubOrg(t, top.id, {
      description: 'Made by its owner',
      currency: 'GBP',
      by: owner,
    });
    expect(child).toMatchObject({ parent_id: top.id, plan: 'business', currency: 'GBP' });
    expect((await readMe(t, owner)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'owner',
      via: 'member',
    });
    expect((await readMe(t, admin)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    const created = (await readAuditLog(t, top.id)).find((e) => e.action === 'sub_organization.created');
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
        await as(t, admin, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/detach`,
          payload: { keep_members: [owner.id] },
        }),
        403,
        'forbidden',
      );
      const refused = await as(t, owner, {
        method: 'POST',
        url: `${subsUrl(top.id)}/${child.id}/detach`,
        payload: {},
      });
      expectProblem(refused, 409, 'last_owner');
      expect(refused.json().user_ids).toEqual([owner.id]);
    });
    const detached = await as(t, owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { keep_members: [owner.id] },
    });
    expect(detached.statusCode, detached.body).toBe(200);
    expect((await as(t, owner, { method: 'GET', url: `/api/organizations/${child.id}` })).statusCode).toBe(
      200,
    );
    expectProblem(
      await as(t, admin, { method: 'GET', url: `/api/organizations/${child.id}` }),
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
    const top = await createOrg(t, { plan: 'business' });
    await writesNothing(t.db, async () =>
      expectProblem(
        await t.call({ method: 'POST', url: subsUrl(top.id), payload }),
        400,
        'validation_failed',
        field,
      ),
    );
  });

  it('refuses a taken slug (409) and an unknown parent (404), writing nothing', async () => {
    const top = await createOrg(t, { plan: 'business' });
    const slug = `taken-${run}`;
    expect((await createSub(t, top.id, { slug })).statusCode).toBe(201);
    await writesNothing(t.db, async () => {
      expectProblem(await createSub(t, top.id, { slug }), 409, 'slug_taken', 'slug');
      expectProblem(await createSub(t, `no-such-parent-${run}`), 404, 'not_found');
    });
  });
});

describe('detach', () => {
  let owner: User;
  let member: User;
  let top: Organization;

  beforeAll(async () => {
    [owner, member] = await Promise.all([signUp(t, { name: 'downer' }), signUp(t, { name: 'dmember' })]);
    top = await createOrg(t, { by: owner, plan: 'business' });
    await addCredits(t, top.id, '100');
  });

  it('makes a child independent on Free: no oversight, data and balance kept, grants dropped', async () => {
    const child = await createSubOrg(t, top.id, { features: ['api_access', 'workflows'] });
    // Someone of the tree (a member of the parent, not one who runs it) can be added directly.
    await addMember(t, top.id, member, 'agent');
    const added = await as(t, owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/members`,
      payload: { user_id: member.id, role: 'developer' },
    });
    expect(added.statusCode, added.body).toBe(201);
    const sent = await as(t, owner, {
      method: 'POST',
      url: `/api/organizations/${top.id}/credits/transfer`,
      payload: { to_organization_id: child.id, amount: '30' },
    });
    expect(sent.statusCode, sent.body).toBe(201);
    const limited = await as(t, owner, {
      method: 'PUT',
      url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
      payload: { monthly_spending_limit: '5' },
    });
    expect(limited.statusCode, limited.body).toBe(200);

    const res = await as(t, owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: {},
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: child.id, parent_id: null, plan: 'free' });

    // Oversight is gone at once.
    expectProblem(
      await as(t, owner, { method: 'GET', url: `/api/organizations/${child.id}` }),
      404,
      'not_found',
    );
    expect((await readMe(t, owner)).organizations.map((o) => o.id)).not.toContain(child.id);
    const list = (await as(t, owner, { method: 'GET', url: subsUrl(top.id) })).json().data;
    expect(list.map((o: { id: string }) => o.id)).not.toContain(child.id);
    expectProblem(
      await as(t, owner, { method: 'GET', url: `${subsUrl(top.id)}/${child.id}/billing` }),
      404,
      'not_found',
    );

    // Its data stays.
    expect((await readBalance(t, child.id)).available).toBe('30');
    const members = (await t.call({ method: 'GET', url: `/api/organizations/${child.id}/members` })).json()
      .data;
    expect(members.map((m: { user_id: string; role: string }) => [m.user_id, m.role])).toEqual([
      [member.id, 'developer'],
    ]);
    expect((await readMe(t, member)).organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'developer',
      via: 'member',
      parent_id: null,
    });

    // Its plan decides its features now.
    const features = await featuresOf(t, child.id);
    expect(features.plan).toBe('free');
    expect(features.enabled).toEqual(['api_access', 'allow_overdraft']);
    for (const f of features.features) expect(f).toMatchObject({ granted: null, parent_has: null });
    expect(
      (await t.call({ method: 'GET', url: `/api/organizations/${child.id}/subscription` })).json(),
    ).toMatchObject({ plan: 'free', status: 'active' });

    expect(
      (await readAuditLog(t, child.id)).find((e) => e.action === 'organization.detached')?.changes,
    ).toEqual({
      parent_id: { before: top.id, after: null },
    });
    expect(
      (await readAuditLog(t, top.id)).find((e) => e.action === 'sub_organization.detached'),
    ).toMatchObject({
      actor: { type: 'user', id: owner.id },
      target: { type: 'organization', id: child.id },
    });

    // Not below any more: a second detach is 404.
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(t, owner, { method: 'POST', url: `${subsUrl(top.id)}/${child.id}/detach`, payload: {} }),
        404,
        'not_found',
      ),
    );
  });

  it('keeps the plan it is given, and refuses a grandchild through the grandparent', async () => {
    const child = await createSubOrg(t, top.id, { features: ['api_access'] });
    const parentWithChild = await createSubOrg(t, top.id);
    const below = await createSubOrg(t, parentWithChild.id);
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(t, owner, { method: 'POST', url: `${subsUrl(top.id)}/${below.id}/detach`, payload: {} }),
        409,
        'not_a_sub_organization',
      ),
    );

    // A plan with a fee for an independent organization is the operator's (PLAN_CHANGES=operator).
    const growth = await t.call({
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { plan: 'growth' },
    });
    expect(growth.statusCode, growth.body).toBe(200);
    expect(growth.json()).toMatchObject({ parent_id: null, plan: 'growth' });
    const features = await featuresOf(t, child.id);
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
    const child = await createSubOrg(t, top.id);
    const childOwner = await signUp(t, { name: 'dchildowner' });
    await addMember(t, child.id, childOwner, 'owner');
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, childOwner, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/detach`,
          payload: {},
        }),
        404,
        'not_found',
      );
      expectProblem(
        await as(t, owner, { method: 'POST', url: `${subsUrl(top.id)}/${top.id}/detach`, payload: {} }),
        404,
        'not_found',
      );
      expectProblem(
        await as(t, owner, {
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
    const child = await createSubOrg(t, top.id);
    const grandchild = await createSubOrg(t, child.id);
    const featuresBefore = await featuresOf(t, child.id);
    await writesNothing(t.db, async () => {
      const res = await as(t, owner, {
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
    expect((await t.call({ method: 'GET', url: `/api/organizations/${child.id}` })).json()).toMatchObject({
      parent_id: top.id,
      plan: 'business',
    });
    expect(await featuresOf(t, child.id)).toEqual(featuresBefore);
    expect((await readMe(t, owner)).organizations.find((o) => o.id === grandchild.id)).toMatchObject({
      via: 'oversight',
    });

    // With a plan that fits, it goes, with its own sub-organization, out of the parent's oversight.
    // A plan with a fee for an independent organization is the operator's (PLAN_CHANGES=operator).
    const ok = await t.call({
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/detach`,
      payload: { plan: 'business' },
    });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(
      (await t.call({ method: 'GET', url: `/api/organizations/${grandchild.id}` })).json().parent_id,
    ).toBe(child.id);
    expectProblem(
      await as(t, owner, { method: 'GET', url: `/api/organizations/${grandchild.id}` }),
      404,
      'not_found',
    );
    // Its grants are gone: it now has all of Business, and so can its sub-organization (what it was granted).
    expect((await featuresOf(t, child.id)).enabled).toEqual(ALL_FEATURES);
  });
});

import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addCredits,
  addMember,
  as,
  createOrg,
  createSubOrg,
  type Organization,
  type Res,
  readAuditLog,
  readBalance,
  readMe,
  signUp,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../../harness.js';
import { ALL_FEATURES, createSub, deduct, featuresOf, subsUrl } from './support.js';

/**
 * Sub-organizations: the features a parent grants down the tree (and revokes), the plan a
 * parent needs and the number of sub-organizations it allows, and how deep they nest.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');

describe('features through three levels', () => {
  it('a grandchild can be given only what its parent has; GET features explains why', async () => {
    const top = await createOrg(t, { plan: 'enterprise' });
    const child = await createSubOrg(t, top.id, {
      features: ['api_access', 'workflows', 'sub_organizations'],
    });
    expect(child).toMatchObject({ parent_id: top.id, plan: 'enterprise' });

    const topView = await featuresOf(t, top.id);
    expect(topView.enabled).toEqual(ALL_FEATURES);
    for (const f of topView.features)
      expect(f).toMatchObject({ enabled: true, in_plan: true, granted: null, parent_has: null });

    const childView = await featuresOf(t, child.id);
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
      const refused = await createSub(t, child.id, { features: ['workflows', 'analytics', 'broadcasts'] });
      expectProblem(refused, 403, 'feature_not_grantable', 'features');
      expect(refused.json().features).toEqual(['analytics', 'broadcasts']);
    });

    const grandchild = await createSubOrg(t, child.id, { features: ['workflows'] });
    const gView = await featuresOf(t, grandchild.id);
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
      const put = await t.call({
        method: 'PUT',
        url: `/api/organizations/${grandchild.id}/features`,
        payload: { features: ['workflows', 'analytics'] },
      });
      expectProblem(put, 403, 'feature_not_grantable', 'features');
      expect(put.json().features).toEqual(['analytics']);
    });
    expect((await featuresOf(t, grandchild.id)).enabled).toEqual(['workflows']);

    // Default: everything the parent has, on the parent's plan.
    const byDefault = await createSubOrg(t, child.id);
    expect(byDefault.plan).toBe('enterprise');
    const dView = await featuresOf(t, byDefault.id);
    expect(dView.enabled).toEqual(childView.enabled);
    expect(dView.byKey.analytics).toMatchObject({ enabled: false, granted: false, parent_has: false });

    // A smaller plan caps what is granted: granted but not in the plan is not enabled.
    const starter = await createSubOrg(t, child.id, { plan: 'starter' });
    const sView = await featuresOf(t, starter.id);
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
      const deeper = await createSub(t, grandchild.id);
      expectProblem(deeper, 403, 'feature_not_enabled');
      expect(deeper.json()).toMatchObject({ feature: 'sub_organizations', upgrade_to: null });
    });
  });

  it('refuses PUT features on a top-level organization (409 not_a_sub_organization) and from the sub-organization itself', async () => {
    const owner = await signUp(t, { name: 'fowner' });
    const top = await createOrg(t, { by: owner, plan: 'business' });
    await writesNothing(t.db, async () => {
      for (const res of [
        await t.call({
          method: 'PUT',
          url: `/api/organizations/${top.id}/features`,
          payload: { features: [] },
        }),
        await as(t, owner, {
          method: 'PUT',
          url: `/api/organizations/${top.id}/features`,
          payload: { features: ['api_access'] },
        }),
      ])
        expectProblem(res, 409, 'not_a_sub_organization');
    });

    // The sub-organization's own owner may read its features but not grant itself more.
    const child = await createSubOrg(t, top.id, { features: ['api_access'] });
    const childOwner = await signUp(t, { name: 'childowner' });
    await addMember(t, child.id, childOwner, 'owner');
    const read = await as(t, childOwner, { method: 'GET', url: `/api/organizations/${child.id}/features` });
    expect(read.statusCode, read.body).toBe(200);
    expect(read.json().enabled).toEqual(['api_access']);
    const stranger = await signUp(t, { name: 'fstranger' });
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, childOwner, {
          method: 'PUT',
          url: `/api/organizations/${child.id}/features`,
          payload: { features: ALL_FEATURES },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, stranger, {
          method: 'PUT',
          url: `/api/organizations/${child.id}/features`,
          payload: { features: [] },
        }),
        404,
        'not_found',
      );
    });
    expect((await featuresOf(t, child.id)).enabled).toEqual(['api_access']);

    // The parent's owner grants it.
    const granted = await as(t, owner, {
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: ['api_access', 'workflows', 'workflows'] },
    });
    expect(granted.statusCode, granted.body).toBe(200);
    expect(granted.json().enabled).toEqual(['api_access', 'workflows']);
    const changed = (await readAuditLog(t, child.id)).find((e) => e.action === 'features.changed');
    expect(changed?.changes.features).toEqual({ before: ['api_access'], after: ['api_access', 'workflows'] });
    expect(changed?.actor).toMatchObject({ type: 'user', id: owner.id, role: 'admin', via: 'oversight' });
  });
});

describe('revoking a feature', () => {
  it('takes it from every organization below in one request, turning their overdraft off', async () => {
    const top = await createOrg(t, { plan: 'business' });
    const child = await createSubOrg(t, top.id);
    const grandchild = await createSubOrg(t, child.id);
    const great = await createSubOrg(t, grandchild.id);
    for (const o of [child, grandchild, great])
      expect((await featuresOf(t, o.id)).enabled).toEqual(ALL_FEATURES);

    await addCredits(t, grandchild.id, '10');
    for (const o of [grandchild, great]) {
      const on = await t.call({
        method: 'PATCH',
        url: `/api/organizations/${o.id}/credit-settings`,
        payload: { overdraft_enabled: true, overdraft_limit: '50' },
      });
      expect(on.statusCode, on.body).toBe(200);
    }
    expect(await readBalance(t, grandchild.id)).toMatchObject({ overdraft_enabled: true, spendable: '60' });

    const withoutOverdraft = ALL_FEATURES.filter((f) => f !== 'allow_overdraft');
    const put = await t.call({
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: withoutOverdraft },
    });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json().enabled).toEqual(withoutOverdraft);

    for (const o of [grandchild, great]) {
      const v = await featuresOf(t, o.id);
      expect(v.enabled).toEqual(withoutOverdraft);
      expect(v.byKey.allow_overdraft).toMatchObject({ enabled: false, granted: false, parent_has: false });
      const audit = await readAuditLog(t, o.id);
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
      expect((await readBalance(t, o.id)).overdraft_enabled).toBe(false);
    }
    expect(await readBalance(t, grandchild.id)).toMatchObject({ available: '10', spendable: '10' });
    // The child itself lost it too; the top-level keeps its plan's.
    expect((await featuresOf(t, child.id)).byKey.allow_overdraft).toMatchObject({
      enabled: false,
      granted: false,
    });
    expect((await featuresOf(t, top.id)).enabled).toEqual(ALL_FEATURES);

    // A debit below zero is refused now; down to zero still works.
    await writesNothing(t.db, async () =>
      expectProblem(await deduct(t, grandchild.id, '15'), 402, 'insufficient_credits'),
    );
    expect((await deduct(t, grandchild.id, '10')).statusCode).toBe(201);
    expect((await readBalance(t, grandchild.id)).available).toBe('0');

    // Overdraft cannot be switched back on: the parent did not grant it (no plan lifts that).
    await writesNothing(t.db, async () => {
      const again = await t.call({
        method: 'PATCH',
        url: `/api/organizations/${grandchild.id}/credit-settings`,
        payload: { overdraft_enabled: true },
      });
      expectProblem(again, 403, 'feature_not_enabled');
      expect(again.json()).toMatchObject({ feature: 'allow_overdraft', upgrade_to: null });
    });

    // Granting it back to the child does not grant it back below.
    const back = await t.call({
      method: 'PUT',
      url: `/api/organizations/${child.id}/features`,
      payload: { features: ALL_FEATURES },
    });
    expect(back.statusCode, back.body).toBe(200);
    expect((await featuresOf(t, grandchild.id)).byKey.allow_overdraft).toMatchObject({
      enabled: false,
      granted: false,
      parent_has: true,
    });
    expect((await t.call({ method: 'GET', url: '/api/ledger/verify' })).json().ok).toBe(true);
  });
});

describe('plan requirement and the sub-organization limit', () => {
  it('refuses a Free (and Starter, Growth) parent with 403 feature_not_enabled naming Business, writing nothing', async () => {
    const user = await signUp(t, { name: 'freeparent' });
    const personal = (await readMe(t, user)).organizations[0]?.id as string;
    await writesNothing(t.db, async () => {
      const res = await createSub(t, personal, {}, user);
      expectProblem(res, 403, 'feature_not_enabled');
      expect(res.json()).toMatchObject({
        feature: 'sub_organizations',
        plan: 'free',
        upgrade_to: 'business',
      });
    });
    for (const plan of ['starter', 'growth'] as const) {
      const o = await createOrg(t, { plan });
      await writesNothing(t.db, async () => {
        const res = await createSub(t, o.id);
        expectProblem(res, 403, 'feature_not_enabled');
        expect(res.json()).toMatchObject({ plan, upgrade_to: 'business' });
      });
    }
  });

  it('holds the Business plan to its sub-organization limit, even under concurrent creation', async () => {
    const plans = (await t.call({ method: 'GET', url: '/api/plans' })).json().data as Array<{
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

    const top = await createOrg(t, { plan: 'business' });
    const results = await Promise.all(
      Array.from({ length: max + 2 }, (_, i) => createSub(t, top.id, { name: `Many ${run} ${i}` })),
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
      await t.call({ method: 'GET', url: `/api/organizations/${top.id}/subscription` })
    ).json();
    expect(subscription.limits.sub_organizations).toEqual({ used: max, max });

    await writesNothing(t.db, async () =>
      expectProblem(await createSub(t, top.id), 402, 'plan_limit_exceeded'),
    );
    // Downgrading below what it uses is refused.
    await writesNothing(t.db, async () => {
      const down = await t.call({
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
      const page: Res = await t.call({
        method: 'GET',
        url: `${subsUrl(top.id)}?limit=20${cursor ? `&cursor=${cursor}` : ''}`,
      });
      expect(page.statusCode, page.body).toBe(200);
      for (const row of page.json().data as Array<{ id: string }>) seen.add(row.id);
      cursor = page.json().next_cursor;
    } while (cursor);
    expect(seen.size).toBe(max);

    // Enterprise lifts it.
    await t.call({
      method: 'PUT',
      url: `/api/organizations/${top.id}/subscription`,
      payload: { plan: 'enterprise' },
    });
    expect((await createSub(t, top.id)).statusCode).toBe(201);
  });
});

describe('nesting depth', () => {
  it('allows five levels below the top-level organization and refuses the sixth (409 nesting_too_deep)', async () => {
    const top = await createOrg(t, { plan: 'enterprise' });
    const chain: Organization[] = [top];
    for (let level = 1; level <= 5; level++) {
      const parent = chain[chain.length - 1] as Organization;
      const child = await createSubOrg(t, parent.id, { name: `Level ${level} ${run}` });
      expect(child.parent_id).toBe(parent.id);
      chain.push(child);
    }
    const deepest = chain[5] as Organization;
    await writesNothing(t.db, async () => {
      const res = await createSub(t, deepest.id);
      expectProblem(res, 409, 'nesting_too_deep');
      expect(res.json().max_depth).toBe(5);
    });
    // Level 4 can still have another child (a sibling of level 5).
    expect((await createSub(t, (chain[4] as Organization).id)).statusCode).toBe(201);

    const tree = (await t.call({ method: 'GET', url: `${subsUrl(top.id)}/usage` })).json();
    expect(tree.organization_count).toBe(7);
    expect(
      tree.organizations.find((o: { organization_id: string }) => o.organization_id === deepest.id).depth,
    ).toBe(5);
  });
});

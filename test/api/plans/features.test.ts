import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMember,
  createOrg,
  createSubOrg,
  readAuditLog,
  readBalance,
  setPlan,
  signUp,
} from '../../factories.js';
import { expectProblem, type TestContext, tableCounts } from '../../harness.js';
import { createPlansApp, usage } from './support.js';

/**
 * Plan features: allow_overdraft (on Free, and only as granted to a sub-organization) and
 * customization (white-label) reaching the invitation mail and the accept page.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createPlansApp();
});
afterAll(() => t?.close());

describe('allow_overdraft', () => {
  it('lets a Free organization spend into its overdraft', async () => {
    const o = await createOrg(t, { name: 'Overdraft Free Co' });
    const res = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${o.id}/credit-settings`,
      payload: { overdraft_enabled: true, overdraft_limit: '50' },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ overdraft_enabled: true, overdraft_limit: '50', spendable: '50' });
    const spent = await usage(t, o.id, 1, '30');
    expect(spent.json().results[0]).toMatchObject({ status: 'applied', balance_after: '-30' });
    const over = await usage(t, o.id, 1, '20.01');
    expect(over.json().results[0]).toMatchObject({ status: 'rejected', code: 'insufficient_credits' });
    expect(await readBalance(t, o.id)).toMatchObject({ available: '-30', spendable: '20' });
  });

  it('is refused to a sub-organization its parent did not grant it, and withdrawn when revoked', async () => {
    const parent = await createOrg(t, { name: 'Overdraft Parent Co' });
    await setPlan(t, parent.id, 'business');
    const sub = await createSubOrg(t, parent.id, { name: 'Tight Budget Sub', features: [] });
    const feats = (await t.call({ method: 'GET', url: `/api/organizations/${sub.id}/features` })).json();
    expect(feats.enabled).toEqual([]);
    expect(feats.features.find((f: { key: string }) => f.key === 'allow_overdraft')).toMatchObject({
      enabled: false,
      in_plan: true,
      granted: false,
      parent_has: true,
    });

    const enable = () =>
      t.call({
        method: 'PATCH',
        url: `/api/organizations/${sub.id}/credit-settings`,
        payload: { overdraft_enabled: true, overdraft_limit: '10' },
      });
    const before = await tableCounts(t.db);
    const auditBefore = (await readAuditLog(t, sub.id)).length;
    expect(expectProblem(await enable(), 403, 'feature_not_enabled')).toMatchObject({
      feature: 'allow_overdraft',
      upgrade_to: null,
    });
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await readAuditLog(t, sub.id)).length).toBe(auditBefore);
    expect(await readBalance(t, sub.id)).toMatchObject({ overdraft_enabled: false, overdraft_limit: '0' });
    // Without overdraft the floor is zero.
    expect((await usage(t, sub.id, 1, '1')).json().results[0].code).toBe('insufficient_credits');

    // Granted, it works; revoked, the ledger withdraws it.
    const grant = await t.call({
      method: 'PUT',
      url: `/api/organizations/${sub.id}/features`,
      payload: { features: ['allow_overdraft'] },
    });
    expect(grant.statusCode, grant.body).toBe(200);
    const ok = await enable();
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ overdraft_enabled: true, spendable: '10' });
    expect((await usage(t, sub.id, 1, '4')).json().results[0]).toMatchObject({
      status: 'applied',
      balance_after: '-4',
    });
    const revoke = await t.call({
      method: 'PUT',
      url: `/api/organizations/${sub.id}/features`,
      payload: { features: [] },
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expect((await readBalance(t, sub.id)).overdraft_enabled).toBe(false);
    expect((await usage(t, sub.id, 1, '1')).json().results[0].code).toBe('insufficient_credits');

    // The parent cannot fall below Business while it has a sub-organization.
    const down = await t.call({
      method: 'PUT',
      url: `/api/organizations/${parent.id}/subscription`,
      payload: { plan: 'growth' },
    });
    expect(expectProblem(down, 409, 'plan_downgrade_blocked').exceeded).toEqual([
      { limit: 'sub_organizations', used: 1, max: 0 },
    ]);
  });
});

describe('customization', () => {
  it('needs custom_branding: Free answers 403 feature_not_enabled, writing nothing', async () => {
    const owner = await signUp(t, { name: 'Plain Owner' });
    const o = await createOrg(t, { by: owner, name: 'Plain Vanilla' });
    const got = await owner.call({ method: 'GET', url: `/api/organizations/${o.id}/customization` });
    expect(got.statusCode, got.body).toBe(200);
    expect(got.json()).toEqual({
      organization_id: o.id,
      name: 'Plain Vanilla',
      display_name: null,
      logo_url: null,
      primary_color: null,
    });
    const before = await tableCounts(t.db);
    const put = await owner.call({
      method: 'PUT',
      url: `/api/organizations/${o.id}/customization`,
      payload: { display_name: 'Fancy', primary_color: '#aabbcc' },
    });
    expect(expectProblem(put, 403, 'feature_not_enabled')).toMatchObject({
      feature: 'custom_branding',
      plan: 'free',
      upgrade_to: 'growth',
    });
    expect(await tableCounts(t.db)).toEqual(before);
    expect(
      (await owner.call({ method: 'GET', url: `/api/organizations/${o.id}/customization` })).json(),
    ).toEqual(got.json());
  });

  it('on Growth brands the invitation mail with the display name, logo and colour', async () => {
    const owner = await signUp(t, { name: 'Brand Owner' });
    const o = await createOrg(t, { by: owner, name: 'Generic Holdings' });
    await setPlan(t, o.id, 'growth');
    const url = `/api/organizations/${o.id}/customization`;
    const put = await owner.call({
      method: 'PUT',
      url,
      payload: {
        display_name: 'Brandy & Co',
        logo_url: 'https://cdn.brand.test/logo.png',
        primary_color: '#aabbcc',
      },
    });
    expect(put.statusCode, put.body).toBe(200);
    const custom = {
      organization_id: o.id,
      name: 'Brandy & Co',
      display_name: 'Brandy & Co',
      logo_url: 'https://cdn.brand.test/logo.png',
      primary_color: '#aabbcc',
    };
    expect(put.json()).toEqual(custom);
    expect((await owner.call({ method: 'GET', url })).json()).toEqual(custom);
    expect((await readAuditLog(t, o.id))[0]).toMatchObject({
      action: 'organization.customized',
      changes: { display_name: { before: null, after: 'Brandy & Co' } },
    });

    const invited = await owner.call({
      method: 'POST',
      url: `/api/organizations/${o.id}/invitations`,
      payload: { email: 'branded-invitee@plans.test', role: 'developer' },
    });
    expect(invited.statusCode, invited.body).toBe(201);
    const box = await t.call({ method: 'GET', url: '/api/dev/mailbox' });
    expect(box.statusCode, box.body).toBe(200);
    const mail = box.json().data.find((m: { to: string }) => m.to === 'branded-invitee@plans.test');
    expect(mail).toBeDefined();
    expect(mail.subject).toBe('Brand Owner invited you to join Brandy & Co');
    expect(mail.subject).not.toContain('Generic Holdings');
    expect(mail.html).toContain('Brandy &#38; Co');
    expect(mail.html).not.toContain('Generic Holdings');
    expect(mail.html).toMatch(/<img src="https:\/\/cdn\.brand\.test\/logo\.png"/);
    expect(mail.html).toContain('border-top:4px solid #aabbcc');
    expect(mail.html).toContain('background:#aabbcc');
    expect(mail.text).toContain('to join Brandy & Co as developer');

    // The accept page's preview shows the same brand.
    const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail.html)?.[1];
    const preview = await t.app.inject({ method: 'GET', url: `/api/invitations/${token}` });
    expect(preview.statusCode, preview.body).toBe(200);
    expect(preview.json().organization.branding).toMatchObject({
      display_name: 'Brandy & Co',
      logo_url: 'https://cdn.brand.test/logo.png',
      primary_color: '#aabbcc',
    });

    const page = await t.app.inject({ method: 'GET', url: `/invitations/${token}` });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('<h1>Join Brandy &#38; Co</h1>');
    expect(page.body).toContain('border-top:4px solid #aabbcc');

    // Bad input answers 400 naming the field and changes nothing.
    for (const [payload, field] of [
      [{ logo_url: 'http://cdn.brand.test/logo.png' }, 'logo_url'],
      [{ logo_url: 'not a url' }, 'logo_url'],
      [{ primary_color: 'red' }, 'primary_color'],
      [{ primary_color: '#abcd' }, 'primary_color'],
      [{ display_name: '' }, 'display_name'],
      [{ favicon: 'https://cdn.brand.test/f.ico' }, 'favicon'],
    ] as const) {
      const before = await tableCounts(t.db);
      const res = await owner.call({ method: 'PUT', url, payload });
      expectProblem(res, 400, 'validation_failed', { field, where: JSON.stringify(payload) });
      expect(await tableCounts(t.db)).toEqual(before);
      expect((await owner.call({ method: 'GET', url })).json()).toEqual(custom);
    }

    // Fields left out fall back to the defaults.
    const reset = await owner.call({ method: 'PUT', url, payload: { primary_color: '#123' } });
    expect(reset.statusCode, reset.body).toBe(200);
    expect(reset.json()).toEqual({
      organization_id: o.id,
      name: 'Generic Holdings',
      display_name: null,
      logo_url: null,
      primary_color: '#123',
    });

    // A developer may read it but not change it.
    const dev = await signUp(t, { name: 'Brand Developer' });
    await addMember(t, o.id, { email: dev.email }, 'developer');
    expect((await dev.call({ method: 'GET', url })).statusCode).toBe(200);
    expectProblem(
      await dev.call({ method: 'PUT', url, payload: { primary_color: '#000000' } }),
      403,
      'forbidden',
    );
  });
});

import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMember,
  as,
  createOrg,
  createSubOrg,
  readAuditLog,
  readMe,
  setPlan,
  signUp,
  type User,
  uniqueEmail,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, tableCounts } from '../../harness.js';
import { fieldsOf, rolesIn } from './support.js';

/**
 * Members: adding people already in the tree (by id or email), the refusals, the last owner,
 * what an admin and a developer may do, and transferring ownership.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

describe('members', () => {
  let owner: User;
  let admin: User;
  let dev: User;
  let extra: User;
  let org: { id: string; slug: string };
  beforeAll(async () => {
    owner = await signUp(t, { name: 'Olive Owner' });
    admin = await signUp(t, { name: 'Adam Admin' });
    dev = await signUp(t, { name: 'Dee Developer' });
    extra = await signUp(t, { name: 'Ezra Extra' });
    org = await createOrg(t, { by: owner, name: 'Member Works', plan: 'growth' });
    // Users add directly only people already in the organization's tree: here, a
    // sub-organization the operator put them in (its members are visible to the owner).
    await setPlan(t, org.id, 'business');
    const staff = await createSubOrg(t, org.id, { name: 'Member Works Staff' });
    for (const u of [admin, dev, extra]) await addMember(t, staff.id, u, 'agent');
  });

  it('adds existing users by user_id or by email, and lists them', async () => {
    const byId = await as(t, owner.token, {
      method: 'POST',
      url: `/api/organizations/${org.id}/members`,
      payload: { user_id: admin.id, role: 'admin' },
    });
    expect(byId.statusCode, byId.body).toBe(201);
    expect(byId.json()).toMatchObject({
      user_id: admin.id,
      role: 'admin',
      email: admin.email,
      name: admin.name,
    });
    const byEmail = await as(t, owner.token, {
      method: 'POST',
      url: `/api/organizations/${org.slug}/members`,
      payload: { email: dev.email, role: 'developer' },
    });
    expect(byEmail.statusCode, byEmail.body).toBe(201);
    expect(byEmail.json()).toMatchObject({ user_id: dev.id, role: 'developer' });

    const list = await as(t, dev.token, { method: 'GET', url: `/api/organizations/${org.id}/members` });
    expect(list.statusCode).toBe(200);
    expect(
      Object.fromEntries(
        (list.json().data as Array<{ user_id: string; role: string }>).map((m) => [m.user_id, m.role]),
      ),
    ).toEqual({ [owner.id]: 'owner', [admin.id]: 'admin', [dev.id]: 'developer' });
    expect(
      (await as(t, dev.token, { method: 'GET', url: `/api/organizations/${org.id}` })).json().member_count,
    ).toBe(3);
    const myRole = (await readMe(t, dev)).organizations.find((o) => o.id === org.id)?.role;
    expect(myRole).toBe('developer');

    const audit = await readAuditLog(t, org.id);
    const added = audit.filter((e) => e.action === 'member.added');
    expect(added.map((e) => [e.target.id, e.actor, e.changes.role])).toEqual([
      [
        dev.id,
        { type: 'user', id: owner.id, role: 'owner', via: 'member' },
        { before: null, after: 'developer' },
      ],
      [
        admin.id,
        { type: 'user', id: owner.id, role: 'owner', via: 'member' },
        { before: null, after: 'admin' },
      ],
    ]);
  });

  it('refuses unknown users and strangers alike (403 invitation_required), existing members (409) and anything but exactly one of user_id/email (400)', async () => {
    const url = `/api/organizations/${org.id}/members`;
    const stranger = await signUp(t, { name: 'Sam Stranger' });
    const before = await tableCounts(t.db);
    for (const payload of [
      { email: uniqueEmail('ghost'), role: 'agent' },
      { user_id: 'usr_nobody', role: 'agent' },
      { email: stranger.email, role: 'agent' },
      { user_id: stranger.id, role: 'agent' },
    ])
      expectProblem(
        await as(t, owner.token, { method: 'POST', url, payload }),
        403,
        'invitation_required',
        'user_id' in payload ? 'user_id' : 'email',
      );
    expectProblem(
      await as(t, owner.token, { method: 'POST', url, payload: { user_id: dev.id, role: 'agent' } }),
      409,
      'already_member',
    );
    expectProblem(
      await as(t, owner.token, { method: 'POST', url, payload: { email: dev.email, role: 'admin' } }),
      409,
      'already_member',
    );
    const both = await as(t, owner.token, {
      method: 'POST',
      url,
      payload: { user_id: extra.id, email: extra.email, role: 'agent' },
    });
    expectProblem(both, 400, 'validation_failed');
    expect(fieldsOf(both).some((f) => f === 'user_id' || f === 'email')).toBe(true);
    const neither = await as(t, owner.token, { method: 'POST', url, payload: { role: 'agent' } });
    expectProblem(neither, 400, 'validation_failed');
    expect(fieldsOf(neither).some((f) => f === 'user_id' || f === 'email')).toBe(true);
    expectProblem(
      await as(t, owner.token, { method: 'POST', url, payload: { user_id: extra.id, role: 'emperor' } }),
      400,
      'validation_failed',
      'role',
    );
    expectProblem(
      await as(t, owner.token, { method: 'POST', url, payload: { email: 'not-an-email', role: 'agent' } }),
      400,
      'validation_failed',
      'email',
    );
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await rolesIn(t, org.id))[dev.id]).toBe('developer');
  });

  it('keeps the last owner: cannot leave or be demoted (409 last_owner), nothing written', async () => {
    const before = await tableCounts(t.db);
    expectProblem(
      await as(t, owner.token, { method: 'DELETE', url: `/api/organizations/${org.id}/members/me` }),
      409,
      'last_owner',
    );
    expectProblem(
      await as(t, owner.token, {
        method: 'DELETE',
        url: `/api/organizations/${org.id}/members/${owner.id}`,
      }),
      409,
      'last_owner',
    );
    for (const who of ['me', owner.id]) {
      expectProblem(
        await as(t, owner.token, {
          method: 'PATCH',
          url: `/api/organizations/${org.id}/members/${who}`,
          payload: { role: 'admin' },
        }),
        409,
        'last_owner',
      );
    }
    expect(await tableCounts(t.db)).toEqual(before);
    expect((await rolesIn(t, org.id))[owner.id]).toBe('owner');
    // A personal organization's only owner cannot leave it either.
    const personal = (await readMe(t, extra)).organizations[0]?.id as string;
    expectProblem(
      await as(t, extra.token, { method: 'DELETE', url: `/api/organizations/${personal}/members/me` }),
      409,
      'last_owner',
    );
  });

  it('lets an admin manage others but never make or unmake owners (403)', async () => {
    const base = `/api/organizations/${org.id}/members`;
    const before = await tableCounts(t.db);
    const refused: InjectOptions[] = [
      { method: 'POST', url: base, payload: { user_id: extra.id, role: 'owner' } },
      { method: 'PATCH', url: `${base}/${dev.id}`, payload: { role: 'owner' } },
      { method: 'PATCH', url: `${base}/me`, payload: { role: 'owner' } },
      { method: 'PATCH', url: `${base}/${owner.id}`, payload: { role: 'admin' } },
      { method: 'DELETE', url: `${base}/${owner.id}` },
      {
        method: 'POST',
        url: `/api/organizations/${org.id}/transfer-ownership`,
        payload: { user_id: admin.id },
      },
    ];
    for (const req of refused) {
      const res = await as(t, admin.token, req);
      expect(res.statusCode, `${req.method} ${req.url}: ${res.body}`).toBe(403);
      expect(res.json().code).toBe('forbidden');
    }
    expect(await tableCounts(t.db)).toEqual(before);

    const added = await as(t, admin.token, {
      method: 'POST',
      url: base,
      payload: { user_id: extra.id, role: 'agent' },
    });
    expect(added.statusCode, added.body).toBe(201);
    const changed = await as(t, admin.token, {
      method: 'PATCH',
      url: `${base}/${extra.id}`,
      payload: { role: 'manager' },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(changed.json()).toMatchObject({ user_id: extra.id, role: 'manager' });
    const removed = await as(t, admin.token, { method: 'DELETE', url: `${base}/${extra.id}` });
    expect(removed.statusCode, removed.body).toBe(204);
    expectProblem(
      await as(t, admin.token, { method: 'DELETE', url: `${base}/${extra.id}` }),
      404,
      'not_found',
    );
    expectProblem(
      await as(t, admin.token, { method: 'PATCH', url: `${base}/${extra.id}`, payload: { role: 'agent' } }),
      404,
      'not_found',
    );
    expect(await rolesIn(t, org.id)).toEqual({
      [owner.id]: 'owner',
      [admin.id]: 'admin',
      [dev.id]: 'developer',
    });
    // The removed user no longer sees the organization at all.
    expectProblem(
      await as(t, extra.token, { method: 'GET', url: `/api/organizations/${org.id}` }),
      404,
      'not_found',
    );

    const audit = await readAuditLog(t, org.id);
    const [removal, change, addition] = audit;
    expect(removal).toMatchObject({
      action: 'member.removed',
      actor: { type: 'user', id: admin.id },
      target: { type: 'member', id: extra.id },
      changes: { role: { before: 'manager', after: null } },
    });
    expect(change).toMatchObject({
      action: 'member.role_changed',
      actor: { type: 'user', id: admin.id },
      target: { id: extra.id },
      changes: { role: { before: 'agent', after: 'manager' } },
    });
    expect(addition).toMatchObject({ action: 'member.added', actor: { type: 'user', id: admin.id } });
  });

  it('lets a developer leave, and refuses a developer managing members', async () => {
    const base = `/api/organizations/${org.id}/members`;
    expectProblem(
      await as(t, dev.token, { method: 'POST', url: base, payload: { user_id: extra.id, role: 'agent' } }),
      403,
      'forbidden',
    );
    expectProblem(await as(t, dev.token, { method: 'DELETE', url: `${base}/${admin.id}` }), 403, 'forbidden');
    const left = await as(t, dev.token, { method: 'DELETE', url: `${base}/me` });
    expect(left.statusCode, left.body).toBe(204);
    expect((await readMe(t, dev)).organizations.map((o) => o.id)).not.toContain(org.id);
    const [entry] = await readAuditLog(t, org.id);
    expect(entry).toMatchObject({
      action: 'member.left',
      actor: { type: 'user', id: dev.id },
      target: { id: dev.id },
      changes: { role: { before: 'developer', after: null } },
    });
    // Re-added afterwards, for the next test.
    await addMember(t, org.id, dev, 'developer');
  });

  it('transfers ownership: the target becomes owner, the caller admin', async () => {
    const res = await as(t, owner.token, {
      method: 'POST',
      url: `/api/organizations/${org.id}/transfer-ownership`,
      payload: { user_id: dev.id },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ user_id: dev.id, role: 'owner' });
    expect(await rolesIn(t, org.id)).toEqual({
      [owner.id]: 'admin',
      [admin.id]: 'admin',
      [dev.id]: 'owner',
    });
    expect((await readMe(t, owner)).organizations.find((o) => o.id === org.id)?.role).toBe('admin');
    const changes = (await readAuditLog(t, org.id))
      .filter((e) => e.action === 'member.role_changed')
      .slice(0, 2)
      .map((e) => [e.target.id, e.actor, e.changes.role]);
    expect(changes).toEqual(
      expect.arrayContaining([
        [
          dev.id,
          { type: 'user', id: owner.id, role: 'owner', via: 'member' },
          { before: 'developer', after: 'owner' },
        ],
        [
          owner.id,
          { type: 'user', id: owner.id, role: 'owner', via: 'member' },
          { before: 'owner', after: 'admin' },
        ],
      ]),
    );
    // The former owner, now an admin, can no longer hand ownership around.
    expectProblem(
      await as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${org.id}/transfer-ownership`,
        payload: { user_id: owner.id },
      }),
      403,
      'forbidden',
    );
    // Transferring to a non-member is a 400 naming user_id, and writes nothing.
    const before = await tableCounts(t.db);
    expectProblem(
      await as(t, dev.token, {
        method: 'POST',
        url: `/api/organizations/${org.id}/transfer-ownership`,
        payload: { user_id: extra.id },
      }),
      400,
      'validation_failed',
      'user_id',
    );
    expect(await tableCounts(t.db)).toEqual(before);
  });

  it('lets an owner promote another owner, after which the first can step down', async () => {
    const base = `/api/organizations/${org.id}/members`;
    const promoted = await as(t, dev.token, {
      method: 'PATCH',
      url: `${base}/${admin.id}`,
      payload: { role: 'owner' },
    });
    expect(promoted.statusCode, promoted.body).toBe(200);
    const stepDown = await as(t, dev.token, {
      method: 'PATCH',
      url: `${base}/me`,
      payload: { role: 'manager' },
    });
    expect(stepDown.statusCode, stepDown.body).toBe(200);
    expect(await rolesIn(t, org.id)).toEqual({
      [owner.id]: 'admin',
      [admin.id]: 'owner',
      [dev.id]: 'manager',
    });
    expectProblem(await as(t, admin.token, { method: 'DELETE', url: `${base}/me` }), 409, 'last_owner');
    const [entry] = await readAuditLog(t, org.id);
    expect(entry).toMatchObject({
      action: 'member.role_changed',
      actor: { type: 'user', id: dev.id },
      target: { id: dev.id },
      changes: { role: { before: 'owner', after: 'manager' } },
    });
  });
});

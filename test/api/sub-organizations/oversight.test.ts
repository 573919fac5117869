import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  addMember,
  as,
  createApiKey,
  createOrg,
  createSubOrg,
  type Organization,
  readAuditLog,
  readMe,
  signUp,
  type User,
} from '../../factories.js';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../../harness.js';
import { createSub, subsUrl } from './support.js';

/**
 * Who may do what below a parent: its owners and admins oversee every organization below as
 * admin (and no more), its other roles and outsiders see nothing there, and joining a
 * sub-organization as a role (join-as) for as long as that oversight lasts.
 */

let t: TestContext;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

const run = randomBytes(3).toString('hex');

describe('oversight', () => {
  let owner: User;
  let admin: User;
  let manager: User;
  let developer: User;
  let stranger: User;
  let top: Organization;
  let child: Organization;
  let grandchild: Organization;

  beforeAll(async () => {
    [owner, admin, manager, developer, stranger] = await Promise.all([
      signUp(t, { name: 'owner' }),
      signUp(t, { name: 'admin' }),
      signUp(t, { name: 'manager' }),
      signUp(t, { name: 'developer' }),
      signUp(t, { name: 'stranger' }),
    ]);
    top = await createOrg(t, { by: owner, plan: 'business' });
    await addMember(t, top.id, admin, 'admin');
    await addMember(t, top.id, manager, 'manager');
    await addMember(t, top.id, developer, 'developer');
    // Created by the operator: nobody is a member of them.
    child = await createSubOrg(t, top.id);
    grandchild = await createSubOrg(t, child.id);
  });

  it('makes the parent’s owners and admins admins of everything below, shown in GET /api/me', async () => {
    for (const u of [owner, admin]) {
      const view = await readMe(t, u);
      const byId = Object.fromEntries(view.organizations.map((o) => [o.id, o]));
      expect(byId[top.id]).toMatchObject({ role: u === owner ? 'owner' : 'admin', via: 'member' });
      expect(byId[child.id]).toMatchObject({ role: 'admin', via: 'oversight', parent_id: top.id });
      expect(byId[grandchild.id]).toMatchObject({ role: 'admin', via: 'oversight', parent_id: child.id });
    }
    for (const u of [manager, developer, stranger]) {
      const ids = (await readMe(t, u)).organizations.map((o) => o.id);
      expect(ids).not.toContain(child.id);
      expect(ids).not.toContain(grandchild.id);
    }
    const listed = (await as(t, owner, { method: 'GET', url: '/api/organizations?limit=100' })).json().data;
    expect(listed.map((o: { id: string }) => o.id)).toEqual(
      expect.arrayContaining([child.id, grandchild.id]),
    );
  });

  it('lets the parent’s owner read and manage the child without a membership, as admin', async () => {
    const detail = await as(t, owner, { method: 'GET', url: `/api/organizations/${child.id}` });
    expect(detail.statusCode, detail.body).toBe(200);
    expect(detail.json()).toMatchObject({ id: child.id, parent_id: top.id, member_count: 0 });
    const members = await as(t, owner, { method: 'GET', url: `/api/organizations/${child.id}/members` });
    expect(members.statusCode, members.body).toBe(200);
    expect(members.json().data).toEqual([]);

    // Added directly: someone of the same tree (a member of the parent) the owner can see.
    const newbie = await signUp(t, { name: 'newbie' });
    await addMember(t, top.id, newbie, 'agent');
    const added = await as(t, owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/members`,
      payload: { user_id: newbie.id, role: 'developer' },
    });
    expect(added.statusCode, added.body).toBe(201);
    const invited = await as(t, owner, {
      method: 'POST',
      url: `/api/organizations/${child.id}/invitations`,
      payload: { email: `invitee.${run}@subs.test`, role: 'manager' },
    });
    expect(invited.statusCode, invited.body).toBe(201);
    const balance = await as(t, owner, { method: 'GET', url: `/api/organizations/${child.id}/balance` });
    expect(balance.statusCode, balance.body).toBe(200);
    expect(balance.json().available).toBe('0');
    const renamed = await as(t, admin, {
      method: 'PATCH',
      url: `/api/organizations/${grandchild.id}`,
      payload: { description: 'Managed from above' },
    });
    expect(renamed.statusCode, renamed.body).toBe(200);

    const audit = await readAuditLog(t, child.id);
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
    expect(
      (await readAuditLog(t, grandchild.id)).find((e) => e.action === 'organization.updated')?.actor,
    ).toEqual({
      type: 'user',
      id: admin.id,
      role: 'admin',
      via: 'oversight',
    });
  });

  it('stops oversight at admin: no deleting the child, no making owners', async () => {
    const someone = await signUp(t, { name: 'would-be-owner' });
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, owner, { method: 'DELETE', url: `/api/organizations/${child.id}` }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, owner, {
          method: 'POST',
          url: `/api/organizations/${child.id}/members`,
          payload: { user_id: someone.id, role: 'owner' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, admin, {
          method: 'POST',
          url: `/api/organizations/${child.id}/invitations`,
          payload: { email: `owner-invite.${run}@subs.test`, role: 'owner' },
        }),
        403,
        'forbidden',
      );
    });
    // Nor over an owner the child has.
    const childOwner = await signUp(t, { name: 'real-owner' });
    await addMember(t, child.id, childOwner, 'owner');
    await writesNothing(t.db, async () => {
      for (const res of [
        await as(t, owner, {
          method: 'DELETE',
          url: `/api/organizations/${child.id}/members/${childOwner.id}`,
        }),
        await as(t, owner, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}/members/${childOwner.id}`,
          payload: { role: 'developer' },
        }),
        await as(t, owner, {
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
        expectProblem(await as(t, developer, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(t, manager, { method: 'GET', url }), 404, 'not_found');
      }
      expectProblem(
        await as(t, developer, {
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
        expectProblem(await as(t, developer, { method: 'GET', url }), 403, 'forbidden');
    });

    // The manager lists, reads usage and billing (sub_organizations:read) ...
    const list = await as(t, manager, { method: 'GET', url: subsUrl(top.id) });
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
    expect((await as(t, manager, { method: 'GET', url: `${subsUrl(top.id)}/usage` })).statusCode).toBe(200);
    const billing = await as(t, manager, {
      method: 'GET',
      url: `${subsUrl(top.id)}/${grandchild.id}/billing`,
    });
    expect(billing.statusCode, billing.body).toBe(200);
    expect(billing.json().organization_id).toBe(grandchild.id);

    // ... but changes nothing.
    await writesNothing(t.db, async () => {
      expectProblem(await createSub(t, top.id, {}, manager), 403, 'forbidden');
      expectProblem(
        await as(t, manager, {
          method: 'PUT',
          url: `${subsUrl(top.id)}/${child.id}/spending-limit`,
          payload: { monthly_spending_limit: '1' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, manager, { method: 'POST', url: `${subsUrl(top.id)}/${child.id}/detach`, payload: {} }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, manager, {
          method: 'POST',
          url: `${subsUrl(top.id)}/${child.id}/join-as`,
          payload: { role: 'agent' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, manager, {
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
    const { key } = await createApiKey(t, top.id, { name: 'reader', scopes: ['read', 'write'] });
    const childMember = await signUp(t, { name: 'childmember' });
    await addMember(t, child.id, childMember, 'owner');
    await writesNothing(t.db, async () => {
      for (const url of [
        subsUrl(top.id),
        `${subsUrl(top.id)}/usage`,
        `${subsUrl(top.id)}/${child.id}/billing`,
      ]) {
        expectProblem(await as(t, stranger, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(t, childMember, { method: 'GET', url }), 404, 'not_found');
        expectProblem(await as(t, key, { method: 'GET', url }), 403, 'forbidden');
      }
      // The child's own owner reaches the grandchild through oversight, but not the parent.
      expect(
        (await as(t, childMember, { method: 'GET', url: `/api/organizations/${grandchild.id}` })).statusCode,
      ).toBe(200);
      expectProblem(
        await as(t, childMember, { method: 'GET', url: `/api/organizations/${top.id}` }),
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
  let top: Organization;
  let child: Organization;
  let grandchild: Organization;

  beforeAll(async () => {
    [owner, admin, manager] = await Promise.all([
      signUp(t, { name: 'jowner' }),
      signUp(t, { name: 'jadmin' }),
      signUp(t, { name: 'jmanager' }),
    ]);
    top = await createOrg(t, { by: owner, plan: 'business' });
    await addMember(t, top.id, admin, 'admin');
    await addMember(t, top.id, manager, 'manager');
    child = await createSubOrg(t, top.id);
    grandchild = await createSubOrg(t, child.id);
  });

  it('switches the session into the child as developer, audited as the real user, and back', async () => {
    const switched = await as(t, admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: top.id },
    });
    expect(switched.statusCode, switched.body).toBe(200);

    const joined = await as(t, admin, {
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

    const inside = await readMe(t, admin);
    expect(inside.joined_as).toEqual({
      organization_id: child.id,
      role: 'developer',
      return_organization_id: top.id,
    });
    expect(inside.active_organization).toMatchObject({ id: child.id, role: 'developer', via: 'join_as' });
    const byId = Object.fromEntries(inside.organizations.map((o) => [o.id, o]));
    expect(byId[child.id]).toMatchObject({ role: 'developer', via: 'join_as' });
    expect(byId[top.id]).toMatchObject({ role: 'admin', via: 'member' });
    expect((await as(t, admin, { method: 'GET', url: '/api/organization' })).json().id).toBe(child.id);

    // As developer: no changing the organization, no admin powers over what is below it ...
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, admin, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}`,
          payload: { description: 'nope' },
        }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, admin, {
          method: 'POST',
          url: `${subsUrl(child.id)}/${grandchild.id}/join-as`,
          payload: { role: 'admin' },
        }),
        403,
        'forbidden',
      );
    });
    // ... but agents, yes.
    const agent = await as(t, admin, {
      method: 'POST',
      url: '/api/agents',
      payload: { name: 'Joined agent', organization_id: child.id },
    });
    expect(agent.statusCode, agent.body).toBe(201);

    const childAudit = await readAuditLog(t, child.id);
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
    expect((await readAuditLog(t, top.id)).find((e) => e.action === 'session.joined_as')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'admin',
      via: 'member',
    });

    const left = await as(t, admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.statusCode, left.body).toBe(200);
    expect(left.json()).toEqual({
      organization_id: child.id,
      role: 'developer',
      return_organization_id: top.id,
    });
    const back = await readMe(t, admin);
    expect(back.joined_as).toBeNull();
    expect(back.active_organization).toMatchObject({ id: top.id, role: 'admin', via: 'member' });
    expect(back.organizations.find((o) => o.id === child.id)).toMatchObject({
      role: 'admin',
      via: 'oversight',
    });
    expect(
      (
        await as(t, admin, {
          method: 'PATCH',
          url: `/api/organizations/${child.id}`,
          payload: { description: 'admin again' },
        })
      ).statusCode,
    ).toBe(200);
    expect((await readAuditLog(t, child.id)).find((e) => e.action === 'session.left')?.actor).toEqual({
      type: 'user',
      id: admin.id,
      role: 'developer',
      via: 'join_as',
    });

    // Leaving again: not joined.
    await writesNothing(t.db, async () =>
      expectProblem(await as(t, admin, { method: 'DELETE', url: '/api/me/join-as' }), 409, 'not_joined'),
    );
  });

  it('joins a grandchild through the top and returns to where the session was', async () => {
    const before = await readMe(t, owner);
    const personal = before.active_organization?.id as string;
    expect(personal).not.toBe(top.id);
    const joined = await as(t, owner, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${grandchild.id}/join-as`,
      payload: { role: 'agent' },
    });
    expect(joined.statusCode, joined.body).toBe(200);
    expect(joined.json().return_organization_id).toBe(personal);
    const inside = await readMe(t, owner);
    expect(inside.active_organization).toMatchObject({ id: grandchild.id, role: 'agent', via: 'join_as' });
    // An agent reads but does not manage members.
    expectProblem(
      await as(t, owner, {
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
    const left = await as(t, owner, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.json().return_organization_id).toBe(personal);
    const after = await readMe(t, owner);
    expect(after.joined_as).toBeNull();
    expect(after.active_organization?.id).toBe(personal);
  });

  it('keeps the first way back when joining again from inside, and returns to the parent when started in the child', async () => {
    const switched = await as(t, admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: top.id },
    });
    expect(switched.statusCode, switched.body).toBe(200);
    const first = await as(t, admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/join-as`,
      payload: { role: 'manager' },
    });
    expect(first.json().return_organization_id).toBe(top.id);
    const second = await as(t, admin, {
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
    const inside = await readMe(t, admin);
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
    const left = await as(t, admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect(left.json()).toEqual({
      organization_id: grandchild.id,
      role: 'agent',
      return_organization_id: top.id,
    });
    expect((await readMe(t, admin)).active_organization?.id).toBe(top.id);

    // Started from inside the child (active there through oversight): the way back is the parent.
    await as(t, admin, {
      method: 'POST',
      url: '/api/me/active-organization',
      payload: { organization_id: child.id },
    });
    expect((await readMe(t, admin)).active_organization).toMatchObject({ id: child.id, via: 'oversight' });
    const fromInside = await as(t, admin, {
      method: 'POST',
      url: `${subsUrl(top.id)}/${child.id}/join-as`,
      payload: { role: 'developer' },
    });
    expect(fromInside.json().return_organization_id).toBe(top.id);
    await as(t, admin, { method: 'DELETE', url: '/api/me/join-as' });
    expect((await readMe(t, admin)).active_organization?.id).toBe(top.id);
  });

  it('ends the joined role as soon as the oversight behind it ends', async () => {
    const [boss, deputy] = await Promise.all([signUp(t, { name: 'jboss' }), signUp(t, { name: 'jdeputy' })]);
    const org = await createOrg(t, { by: boss, plan: 'business' });
    await addMember(t, org.id, deputy, 'admin');
    const kid = await createSubOrg(t, org.id);
    const joined = await as(t, deputy, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${kid.id}/join-as`,
      payload: { role: 'developer' },
    });
    expect(joined.statusCode, joined.body).toBe(200);
    expect((await as(t, deputy, { method: 'GET', url: `/api/organizations/${kid.id}` })).statusCode).toBe(
      200,
    );

    // Demoted in the parent: no oversight, so no joined role either.
    const demoted = await t.call({
      method: 'PATCH',
      url: `/api/organizations/${org.id}/members/${deputy.id}`,
      payload: { role: 'developer' },
    });
    expect(demoted.statusCode, demoted.body).toBe(200);
    const view = await readMe(t, deputy);
    expect(view.joined_as).toBeNull();
    expect(view.organizations.map((o) => o.id)).not.toContain(kid.id);
    expectProblem(
      await as(t, deputy, { method: 'GET', url: `/api/organizations/${kid.id}` }),
      404,
      'not_found',
    );
    expectProblem(
      await as(t, deputy, {
        method: 'POST',
        url: '/api/agents',
        payload: { name: 'Sneaky', organization_id: kid.id },
      }),
      404,
      'not_found',
    );
    // Leaving still tidies the session up.
    expect((await as(t, deputy, { method: 'DELETE', url: '/api/me/join-as' })).statusCode).toBe(200);
    expectProblem(await as(t, deputy, { method: 'DELETE', url: '/api/me/join-as' }), 409, 'not_joined');

    // Detached while joined: the joined role goes with the oversight.
    const other = await createSubOrg(t, org.id);
    const again = await as(t, boss, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${other.id}/join-as`,
      payload: { role: 'admin' },
    });
    expect(again.statusCode, again.body).toBe(200);
    const detached = await as(t, boss, {
      method: 'POST',
      url: `${subsUrl(org.id)}/${other.id}/detach`,
      payload: {},
    });
    expect(detached.statusCode, detached.body).toBe(200);
    const after = await readMe(t, boss);
    expect(after.joined_as).toBeNull();
    expect(after.organizations.map((o) => o.id)).not.toContain(other.id);
    expectProblem(
      await as(t, boss, { method: 'GET', url: `/api/organizations/${other.id}` }),
      404,
      'not_found',
    );
  });

  it('is refused to API keys, the operator, managers, and for organizations not below the parent', async () => {
    const { key } = await createApiKey(t, top.id, { name: 'joiner', scopes: ['read', 'write'] });
    const other = await createOrg(t, { plan: 'business' });
    const elsewhere = await createSubOrg(t, other.id);
    const url = `${subsUrl(top.id)}/${child.id}/join-as`;
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, key, { method: 'POST', url, payload: { role: 'developer' } }),
        403,
        'forbidden',
      );
      expectProblem(await t.call({ method: 'POST', url, payload: { role: 'developer' } }), 403, 'forbidden');
      expectProblem(
        await as(t, manager, { method: 'POST', url, payload: { role: 'agent' } }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, admin, { method: 'POST', url, payload: { role: 'owner' } }),
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
          await as(t, owner, {
            method: 'POST',
            url: `${subsUrl(parent)}/${target}/join-as`,
            payload: { role: 'developer' },
          }),
          404,
          'not_found',
        );
      expectProblem(await t.call({ method: 'DELETE', url: '/api/me/join-as' }), 403, 'forbidden');
      expectProblem(await as(t, key, { method: 'DELETE', url: '/api/me/join-as' }), 403, 'forbidden');
    });
  });
});

import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { type KyselyPlugin, PostgresQueryCompiler } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROLE_PERMISSIONS, ROLES } from '../../src/lib/authz.js';
import type { PlanKey } from '../../src/modules/plans/plans.catalog.js';
import { addMember, as, createOrg, createSubOrg, signUp, type User } from '../factories.js';
import { createTestApp, expectProblem, type TestContext, writesNothing } from '../harness.js';

/**
 * The edges of access (issue 12): who may be added without an invitation, who may resend or
 * revoke an owner's invitation, what an agent's own key may read, who creates organizations,
 * that nobody is left without an organization, members' status, what detaching does to people
 * and who may detach, and what the database is asked (the same work whether an account exists).
 */
let t: TestContext;
const run = randomBytes(3).toString('hex');

const op = (opts: InjectOptions) => t.call(opts);

async function ok(res: Promise<LightMyRequestResponse>, status = 200) {
  const r = await res;
  expect(r.statusCode, r.body).toBe(status);
  return r.json();
}

/** A top-level organization's id: created by `owner` (or the operator), on `plan`. */
const topOrg = async (owner: User | undefined, plan: PlanKey = 'business') =>
  (await createOrg(t, { by: owner, plan })).id;

/** A sub-organization's id, created by `by` (or the operator). */
const subOf = async (parentId: string, by?: User) => (await createSubOrg(t, parentId, { by })).id;

async function membersOf(orgId: string): Promise<Record<string, string>> {
  const data = (await ok(op({ method: 'GET', url: `/api/organizations/${orgId}/members?limit=100` })))
    .data as Array<{ user_id: string; role: string }>;
  return Object.fromEntries(data.map((m) => [m.user_id, m.role]));
}

async function personalOf(user: User): Promise<string> {
  const me = await ok(as(t, user.token, { method: 'GET', url: '/api/me' }));
  return me.organizations[0].id;
}

/**
 * The SQL a request sent with `statementsOf` runs, in order. Only its own: the request enters its
 * recording when it arrives, and the recording follows its async context, so background work
 * (workers, ledger lanes) is not in it.
 */
const recording = new AsyncLocalStorage<string[]>();
const recordings = new Map<string, string[]>();
const compiler = new PostgresQueryCompiler();
const recorder: KyselyPlugin = {
  transformQuery(args) {
    recording.getStore()?.push(compiler.compileQuery(args.node, args.queryId).sql);
    return args.node;
  },
  transformResult: async (args) => args.result,
};

async function statementsOf(send: (headers: Record<string, string>) => Promise<LightMyRequestResponse>) {
  const id = randomBytes(6).toString('hex');
  const sqls: string[] = [];
  recordings.set(id, sqls);
  try {
    return { res: await send({ 'x-test-recording': id }), sqls };
  } finally {
    recordings.delete(id);
  }
}

/** createTestApp's app, on a database handle whose queries can be recorded. */
function recordingApp(): Promise<TestContext> {
  return createTestApp(
    {
      instrument: (a) =>
        a.addHook('onRequest', (req, _reply, done) => {
          const sqls = recordings.get(String(req.headers['x-test-recording']));
          if (sqls) recording.enterWith(sqls);
          done();
        }),
    },
    (handle) => ({ ...handle, db: handle.db.withPlugin(recorder) }),
  );
}

beforeAll(async () => {
  t = await recordingApp();
});
afterAll(async () => {
  await t.close();
});

describe('adding a member directly', () => {
  let owner: User;
  let top: string;
  let staff: string;
  let colleague: User;

  beforeAll(async () => {
    owner = await signUp(t, { name: 'owner' });
    colleague = await signUp(t, { name: 'colleague' });
    top = await topOrg(owner);
    staff = await subOf(top);
    await addMember(t, staff, colleague, 'developer');
  });

  it('adds someone of the same tree whose membership the actor can read', async () => {
    const added = await ok(
      as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${top}/members`,
        payload: { email: colleague.email, role: 'manager' },
      }),
      201,
    );
    expect(added).toMatchObject({ user_id: colleague.id, role: 'manager', status: 'active' });
    // Down the tree too: from the parent into another sub-organization.
    const other = await subOf(top);
    await ok(
      as(t, owner.token, {
        method: 'POST',
        url: `/api/organizations/${other}/members`,
        payload: { user_id: colleague.id, role: 'agent' },
      }),
      201,
    );
    expect((await membersOf(other))[colleague.id]).toBe('agent');
  });

  it('answers strangers and unknown accounts alike, 403 invitation_required, writing nothing', async () => {
    const stranger = await signUp(t, { name: 'stranger' });
    const url = `/api/organizations/${top}/members`;
    const answers: Array<Record<string, unknown>> = [];
    await writesNothing(t.db, async () => {
      for (const [payload, field] of [
        [{ email: stranger.email, role: 'agent' }, 'email'],
        [{ email: `nobody.${run}@edges.test`, role: 'agent' }, 'email'],
        [{ user_id: stranger.id, role: 'agent' }, 'user_id'],
        [{ user_id: 'usr_00000000000000000000000000', role: 'agent' }, 'user_id'],
      ] as const) {
        const res = await as(t, owner.token, { method: 'POST', url, payload });
        expectProblem(res, 403, 'invitation_required', field);
        const { request_id: _r, errors: _e, ...rest } = res.json();
        answers.push(rest);
        expect(res.body).not.toContain('stranger');
      }
    });
    // Nothing in the answer tells an account that exists from one that does not.
    for (const a of answers) expect(a).toEqual(answers[0]);
    // The operator adds anyone.
    await addMember(t, top, stranger, 'agent');
  });

  it('does the same work for an account that exists and one that does not', async () => {
    // Response time must not tell them apart either: the database is asked the same statements.
    const stranger = await signUp(t, { name: 'timed-stranger' });
    const url = `/api/organizations/${top}/members`;
    const attempt = (payload: Record<string, string>) =>
      statementsOf((headers) =>
        as(t, owner.token, { method: 'POST', url, headers, payload: { ...payload, role: 'agent' } }),
      );
    await attempt({ email: `warm.${run}@edges.test` });
    const pairs: Array<[Record<string, string>, Record<string, string>]> = [
      [{ email: stranger.email }, { email: `ghost.${run}@edges.test` }],
      [{ user_id: stranger.id }, { user_id: 'usr_00000000000000000000000000' }],
      // By id or by email, one statement of one shape.
      [{ email: stranger.email }, { user_id: stranger.id }],
    ];
    for (const [existing, unknown] of pairs) {
      const a = await attempt(existing);
      const b = await attempt(unknown);
      expectProblem(a.res, 403, 'invitation_required');
      expectProblem(b.res, 403, 'invitation_required');
      expect(a.sqls.length).toBeGreaterThan(0);
      expect(b.sqls).toEqual(a.sqls);
      // The refusal's last question is the one that answers "exists" and "shares the tree" at once.
      expect(a.sqls.at(-1)).toMatch(
        /from "members" as "m" inner join "users" as "u" .* "m"\."organization_id" in/,
      );
    }
  });

  it('refuses a sibling sub-organization’s member the actor cannot see', async () => {
    const siblingAdmin = await signUp(t, { name: 'sibling-admin' });
    const mine = await subOf(top);
    const theirs = await subOf(top);
    await addMember(t, mine, siblingAdmin, 'admin');
    const hidden = await signUp(t, { name: 'hidden' });
    await addMember(t, theirs, hidden, 'developer');
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(t, siblingAdmin.token, {
          method: 'POST',
          url: `/api/organizations/${mine}/members`,
          payload: { user_id: hidden.id, role: 'agent' },
        }),
        403,
        'invitation_required',
        'user_id',
      ),
    );
  });

  it('lists members with status active', async () => {
    const data = (await ok(as(t, owner.token, { method: 'GET', url: `/api/organizations/${top}/members` })))
      .data as Array<{ status: string }>;
    expect(data.length).toBeGreaterThan(0);
    for (const m of data) expect(m.status).toBe('active');
  });
});

describe('owner invitations', () => {
  it('are resent and revoked only by owners (members:manage_owners)', async () => {
    const owner = await signUp(t, { name: 'inv-owner' });
    const admin = await signUp(t, { name: 'inv-admin' });
    const org = await topOrg(owner, 'growth');
    await addMember(t, org, admin, 'admin');
    const url = `/api/organizations/${org}/invitations`;
    const ownerInvite = await ok(
      as(t, owner.token, {
        method: 'POST',
        url,
        payload: { email: `heir.${run}@edges.test`, role: 'owner' },
      }),
      201,
    );
    const devInvite = await ok(
      as(t, owner.token, {
        method: 'POST',
        url,
        payload: { email: `dev.${run}@edges.test`, role: 'developer' },
      }),
      201,
    );
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, admin.token, { method: 'POST', url: `${url}/${ownerInvite.id}/resend` }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, admin.token, { method: 'DELETE', url: `${url}/${ownerInvite.id}` }),
        403,
        'forbidden',
      );
      // Unknown invitations stay 404.
      expectProblem(
        await as(t, admin.token, { method: 'POST', url: `${url}/inv_nope/resend` }),
        404,
        'not_found',
      );
    });
    // The admin still manages the others; the owner manages both.
    expect(
      (await ok(as(t, admin.token, { method: 'POST', url: `${url}/${devInvite.id}/resend` }))).sent_count,
    ).toBe(2);
    expect(
      (await ok(as(t, owner.token, { method: 'POST', url: `${url}/${ownerInvite.id}/resend` }))).sent_count,
    ).toBe(2);
    expect((await as(t, owner.token, { method: 'DELETE', url: `${url}/${ownerInvite.id}` })).statusCode).toBe(
      204,
    );
    expect((await as(t, admin.token, { method: 'DELETE', url: `${url}/${devInvite.id}` })).statusCode).toBe(
      204,
    );
  });
});

describe('invitations ask each thing once', () => {
  async function invite(org: string, email: string): Promise<{ id: string; token: string }> {
    const created = await ok(
      op({
        method: 'POST',
        url: `/api/organizations/${org}/invitations`,
        payload: { email, role: 'developer' },
      }),
      201,
    );
    const mail = (
      (await ok(op({ method: 'GET', url: '/api/dev/mailbox?limit=100' }))).data as Array<{
        to: string;
        text: string;
      }>
    ).find((m) => m.to === email);
    const token = /\/invitations\/([A-Za-z0-9_-]+)/.exec(mail?.text ?? '')?.[1];
    expect(token, mail?.text).toBeTruthy();
    return { id: created.id, token: token as string };
  }

  it('verifies the address of an account made through the link once, in the sign-up', async () => {
    const org = await topOrg(undefined, 'growth');
    const email = `linked.${run}@edges.test`;
    const { token } = await invite(org, email);
    const { res, sqls } = await statementsOf((headers) =>
      t.app.inject({
        method: 'POST',
        url: `/api/invitations/${token}/accept`,
        headers,
        payload: { name: 'Linked', password: 'edges-password-1' },
      }),
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(sqls.filter((q) => /^update "users" set .*"email_verified"/.test(q))).toHaveLength(1);
    const user = await t.db.db
      .selectFrom('users')
      .select('email_verified')
      .where('email', '=', email)
      .executeTakeFirstOrThrow();
    expect(user.email_verified).toBe(true);
  });

  it('reads a resent or revoked invitation once, under its lock', async () => {
    const org = await topOrg(undefined, 'growth');
    const { id } = await invite(org, `twice.${run}@edges.test`);
    const url = `/api/organizations/${org}/invitations/${id}`;
    expect((await op({ method: 'DELETE', url })).statusCode).toBe(204);
    const reads = (sqls: string[]) => sqls.filter((q) => /^select .* from "invitations"/.test(q));
    const writes = (sqls: string[]) => sqls.filter((q) => /^update "invitations"/.test(q));
    await writesNothing(t.db, async () => {
      const resent = await statementsOf((headers) => op({ method: 'POST', url: `${url}/resend`, headers }));
      expectProblem(resent.res, 410, 'invitation_gone');
      expect(resent.res.json().detail).toContain('revoked');
      expect(reads(resent.sqls)).toHaveLength(1);
      expect(writes(resent.sqls)).toHaveLength(0);
      // Revoking again changes nothing and says so as before (204).
      const revoked = await statementsOf((headers) => op({ method: 'DELETE', url, headers }));
      expect(revoked.res.statusCode, revoked.res.body).toBe(204);
      expect(reads(revoked.sqls)).toHaveLength(1);
      expect(writes(revoked.sqls)).toHaveLength(0);
      expectProblem(
        await op({ method: 'POST', url: `/api/organizations/${org}/invitations/inv_nope/resend` }),
        404,
        'not_found',
      );
      expectProblem(
        await op({ method: 'DELETE', url: `/api/organizations/${org}/invitations/inv_nope` }),
        404,
        'not_found',
      );
    });
    // A pending one is still resent and revoked, each read once too.
    const pending = await invite(org, `once.${run}@edges.test`);
    const pendingUrl = `/api/organizations/${org}/invitations/${pending.id}`;
    const resent = await statementsOf((headers) =>
      op({ method: 'POST', url: `${pendingUrl}/resend`, headers }),
    );
    expect(resent.res.statusCode, resent.res.body).toBe(200);
    expect(resent.res.json()).toMatchObject({ status: 'pending', sent_count: 2 });
    expect(reads(resent.sqls)).toHaveLength(1);
    const revoked = await statementsOf((headers) => op({ method: 'DELETE', url: pendingUrl, headers }));
    expect(revoked.res.statusCode).toBe(204);
    expect(reads(revoked.sqls)).toHaveLength(1);
    const listed = (await ok(op({ method: 'GET', url: `/api/organizations/${org}/invitations` })))
      .data as Array<{
      id: string;
      status: string;
    }>;
    expect(listed.find((i) => i.id === pending.id)?.status).toBe('revoked');
  });
});

describe('an agent’s own key', () => {
  it('has no more than the agent role: no members, audit log, billing, usage reports or keys', async () => {
    const org = await topOrg(undefined, 'growth');
    const agent = await ok(
      op({ method: 'POST', url: '/api/agents', payload: { name: 'Edgy', organization_id: org } }),
      201,
    );
    const { key } = await ok(
      op({ method: 'POST', url: `/api/agents/${agent.id}/api-keys`, payload: { name: 'edgy key' } }),
      201,
    );
    const orgKey = (
      await ok(
        op({
          method: 'POST',
          url: `/api/organizations/${org}/api-keys`,
          payload: { name: 'w', scopes: ['write'] },
        }),
        201,
      )
    ).key as string;
    const base = `/api/organizations/${org}`;
    const refused = [
      `${base}/members`,
      `${base}/audit-log`,
      `${base}/billing`,
      `${base}/billing-summary`,
      `${base}/api-keys`,
      `${base}/analytics`,
      `${base}/subscription`,
    ];
    for (const url of refused) {
      expectProblem(await as(t, key, { method: 'GET', url }), 403, 'forbidden');
      // An organization's write key still reads them.
      expect((await as(t, orgKey, { method: 'GET', url })).statusCode, url).toBe(200);
    }
    for (const url of [base, `${base}/balance`, `${base}/features`, `/api/agents/${agent.id}`])
      expect((await as(t, key, { method: 'GET', url })).statusCode, url).toBe(200);
    await ok(op({ method: 'POST', url: `${base}/credits/add`, payload: { amount: '5' } }), 201);
    const usage = await ok(
      as(t, key, {
        method: 'POST',
        url: '/api/usage',
        payload: { events: [{ organization_id: org, credits: '1', idempotency_key: `edges-${run}` }] },
      }),
    );
    expect(usage.results[0]).toMatchObject({ status: 'applied' });
  });
});

describe('creating organizations', () => {
  it('needs a signed-in user and no role; a sub-organization needs sub_organizations:manage', async () => {
    // No role carries it: it is asked outside any organization.
    for (const role of ROLES) expect(ROLE_PERMISSIONS[role]).not.toContain('organization:create');
    const someone = await signUp(t, { name: 'creator' });
    const created = await ok(
      as(t, someone.token, { method: 'POST', url: '/api/organizations', payload: { name: `Mine ${run}` } }),
      201,
    );
    expect((await membersOf(created.id))[someone.id]).toBe('owner');
    const top = await topOrg(undefined);
    const { key } = await ok(
      op({
        method: 'POST',
        url: `/api/organizations/${top}/api-keys`,
        payload: { name: 'r', scopes: ['write'] },
      }),
      201,
    );
    const manager = await signUp(t, { name: 'manager' });
    await addMember(t, top, manager, 'manager');
    await writesNothing(t.db, async () => {
      expectProblem(
        await as(t, key, { method: 'POST', url: '/api/organizations', payload: { name: 'By key' } }),
        403,
        'forbidden',
      );
      expectProblem(
        await as(t, manager.token, {
          method: 'POST',
          url: `/api/organizations/${top}/sub-organizations`,
          payload: { name: 'By manager' },
        }),
        403,
        'forbidden',
      );
    });
  });
});

describe('keeping an organization', () => {
  it('refuses deleting an owner’s only organization (409 last_organization), writing nothing', async () => {
    const solo = await signUp(t, { name: 'solo' });
    const personal = await personalOf(solo);
    await writesNothing(t.db, async () => {
      const res = await as(t, solo.token, { method: 'DELETE', url: `/api/organizations/${personal}` });
      expectProblem(res, 409, 'last_organization');
      expect(res.json().user_ids).toEqual([solo.id]);
      // Not even the operator strands them.
      expectProblem(
        await op({ method: 'DELETE', url: `/api/organizations/${personal}` }),
        409,
        'last_organization',
      );
    });
    // With another organization, the personal one can go; then the other is the last.
    const other = await ok(
      as(t, solo.token, { method: 'POST', url: '/api/organizations', payload: { name: `Solo Co ${run}` } }),
      201,
    );
    expect(
      (await as(t, solo.token, { method: 'DELETE', url: `/api/organizations/${personal}` })).statusCode,
    ).toBe(204);
    expectProblem(
      await as(t, solo.token, { method: 'DELETE', url: `/api/organizations/${other.id}` }),
      409,
      'last_organization',
    );
  });

  it('refuses when it is a co-owner’s only one, and lets nobody leave their only organization', async () => {
    const a = await signUp(t, { name: 'co-a' });
    const b = await signUp(t, { name: 'co-b' });
    const shared = await topOrg(a, 'growth');
    await addMember(t, shared, b, 'owner');
    await addMember(t, shared, await signUp(t, { name: 'bystander' }), 'developer');
    // b gives up their personal organization: `shared` is all they have.
    expect(
      (await as(t, b.token, { method: 'DELETE', url: `/api/organizations/${await personalOf(b)}` }))
        .statusCode,
    ).toBe(204);
    await writesNothing(t.db, async () => {
      const res = await as(t, a.token, { method: 'DELETE', url: `/api/organizations/${shared}` });
      expectProblem(res, 409, 'last_organization');
      expect(res.json().user_ids).toEqual([b.id]);
      expectProblem(
        await as(t, b.token, { method: 'DELETE', url: `/api/organizations/${shared}/members/me` }),
        409,
        'last_organization',
      );
    });
    // a has their personal organization: they may leave.
    expect(
      (await as(t, a.token, { method: 'DELETE', url: `/api/organizations/${shared}/members/me` })).statusCode,
    ).toBe(204);
  });
});

describe('detaching and people', () => {
  let owner: User;
  let admin: User;
  let developer: User;
  let top: string;

  beforeAll(async () => {
    [owner, admin, developer] = [
      await signUp(t, { name: 'd-owner' }),
      await signUp(t, { name: 'd-admin' }),
      await signUp(t, { name: 'd-dev' }),
    ];
    top = await topOrg(owner);
    await addMember(t, top, admin, 'admin');
    await addMember(t, top, developer, 'developer');
  });

  const detach = (by: User, child: string, payload: Record<string, unknown> = {}) =>
    as(t, by.token, {
      method: 'POST',
      url: `/api/organizations/${top}/sub-organizations/${child}/detach`,
      payload,
    });

  it('removes the parent side’s owners and admins, keeps its own members, and keeps an owner', async () => {
    const child = await subOf(top, owner);
    const client = await signUp(t, { name: 'client' });
    await addMember(t, child, client, 'owner');
    await addMember(t, child, admin, 'developer');
    await addMember(t, child, developer, 'developer');
    expect(await membersOf(child)).toEqual({
      [owner.id]: 'owner',
      [client.id]: 'owner',
      [admin.id]: 'developer',
      [developer.id]: 'developer',
    });
    const res = await ok(detach(owner, child));
    expect(res).toMatchObject({ id: child, parent_id: null });
    // Its own people stay; the parent's owner (its creator) and admin go.
    expect(await membersOf(child)).toEqual({ [client.id]: 'owner', [developer.id]: 'developer' });
    for (const u of [owner, admin])
      expectProblem(
        await as(t, u.token, { method: 'GET', url: `/api/organizations/${child}` }),
        404,
        'not_found',
      );
    expect(
      (await ok(as(t, client.token, { method: 'GET', url: `/api/organizations/${child}` }))).parent_id,
    ).toBeNull();
    const audit = (await ok(op({ method: 'GET', url: `/api/organizations/${child}/audit-log?limit=100` })))
      .data as Array<{ action: string; target: { id: string }; changes: Record<string, unknown> }>;
    expect(
      audit
        .filter((e) => e.action === 'member.removed')
        .map((e) => e.target.id)
        .sort(),
    ).toEqual([owner.id, admin.id].sort());
    const detached = audit.find((e) => e.action === 'organization.detached');
    expect((detached?.changes.removed_members as { before: string[] } | undefined)?.before.sort()).toEqual(
      [owner.id, admin.id].sort(),
    );
  });

  it('refuses (409 last_owner) when only the parent side owns it, unless kept; keep_members is checked', async () => {
    const child = await subOf(top, owner);
    await addMember(t, child, developer, 'developer');
    await writesNothing(t.db, async () => {
      const res = await detach(owner, child);
      expectProblem(res, 409, 'last_owner');
      expect(res.json().user_ids).toEqual([owner.id]);
      // Only the parent side's members of it can be kept.
      expectProblem(
        await detach(owner, child, { keep_members: [developer.id] }),
        400,
        'validation_failed',
        'keep_members',
      );
      expectProblem(
        await detach(owner, child, { keep_members: ['usr_nobody'] }),
        400,
        'validation_failed',
        'keep_members',
      );
      expectProblem(
        await detach(owner, child, { keep_members: 'everyone' }),
        400,
        'validation_failed',
        'keep_members',
      );
    });
    await ok(detach(owner, child, { keep_members: [owner.id] }));
    expect(await membersOf(child)).toEqual({ [owner.id]: 'owner', [developer.id]: 'developer' });
    // Kept as a member: the owner reaches it as its owner, the parent's admin no more.
    expect(
      (await ok(as(t, owner.token, { method: 'GET', url: `/api/organizations/${child}` }))).parent_id,
    ).toBeNull();
    expectProblem(
      await as(t, admin.token, { method: 'GET', url: `/api/organizations/${child}` }),
      404,
      'not_found',
    );
  });
});

describe('who detaches', () => {
  let owner: User;
  let admin: User;
  let top: string;

  beforeAll(async () => {
    [owner, admin] = [await signUp(t, { name: 'w-owner' }), await signUp(t, { name: 'w-admin' })];
    top = await topOrg(owner);
    await addMember(t, top, admin, 'admin');
  });

  const detachUrl = (child: string) => `/api/organizations/${top}/sub-organizations/${child}/detach`;
  const balanceOf = async (org: string) =>
    (await ok(op({ method: 'GET', url: `/api/organizations/${org}/balance` }))).available as string;

  it('refuses an admin walking away with the parent’s credits in an organization of their own (403)', async () => {
    await ok(
      op({ method: 'POST', url: `/api/organizations/${top}/credits/add`, payload: { amount: '100' } }),
      201,
    );
    // (a) The admin creates a sub-organization, which makes them its owner; (b) moves all the
    // parent's credits into it, within the tree (allowed); (c) may not take it out of the tree.
    const mine = await subOf(top, admin);
    expect((await membersOf(mine))[admin.id]).toBe('owner');
    await ok(
      as(t, admin.token, {
        method: 'POST',
        url: `/api/organizations/${top}/credits/transfer`,
        payload: { to_organization_id: mine, amount: '100' },
      }),
      201,
    );
    await writesNothing(t.db, async () => {
      for (const payload of [{ keep_members: [admin.id] }, { keep_members: [admin.id], plan: 'free' }, {}])
        expectProblem(
          await as(t, admin.token, { method: 'POST', url: detachUrl(mine), payload }),
          403,
          'forbidden',
        );
    });
    // Still below the parent, under its oversight, with the credits.
    expect((await ok(op({ method: 'GET', url: `/api/organizations/${mine}` }))).parent_id).toBe(top);
    expect(await balanceOf(mine)).toBe('100');
    expect(
      (await ok(as(t, owner.token, { method: 'GET', url: `/api/organizations/${mine}` }))).parent_id,
    ).toBe(top);
    // Handing it out of the tree, admin and balance with it, is the parent's owner's decision.
    const detached = await ok(
      as(t, owner.token, { method: 'POST', url: detachUrl(mine), payload: { keep_members: [admin.id] } }),
    );
    expect(detached).toMatchObject({ id: mine, parent_id: null });
    expect(await membersOf(mine)).toEqual({ [admin.id]: 'owner' });
    expect(await balanceOf(mine)).toBe('100');
  });

  it('refuses an admin whatever the balance and whoever is kept; the operator detaches', async () => {
    // Made by the operator (no owner), empty, the admin no member of it: still the owners' call.
    const child = await subOf(top);
    expect(await balanceOf(child)).toBe('0');
    await writesNothing(t.db, async () =>
      expectProblem(
        await as(t, admin.token, { method: 'POST', url: detachUrl(child), payload: {} }),
        403,
        'forbidden',
      ),
    );
    expect((await ok(op({ method: 'POST', url: detachUrl(child), payload: {} }))).parent_id).toBeNull();
  });
});

/**
 * The members module owns `members`: user × organization × role. Rules: an organization that has
 * members always keeps at least one owner (removing or demoting the last one answers 409
 * last_owner); owners are made and unmade only by owners (`members:manage_owners`); nobody is left
 * without an organization by leaving or by a deletion (409 last_organization). Accounts themselves
 * (`users`) are the auth module's.
 */
import type { Static } from 'typebox';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, can, type RequestContext, type Role } from '../../lib/authz.js';
import type { EventBus } from '../../lib/events.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import { accountByEmail, accountById } from '../auth/auth.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { CapacityCheck } from '../plans/plans.catalog.js';
import * as repo from './members.repo.js';
import type { AddMemberBody, MemberResponse } from './members.schema.js';

type MemberView = Static<typeof MemberResponse>;

function view(m: repo.MemberRow): MemberView {
  return {
    user_id: m.user_id,
    name: m.name,
    email: m.email,
    role: m.role,
    // A membership exists once the person joined; someone invited but not yet joined is a pending
    // invitation (GET …/invitations), not a member.
    status: 'active',
    created_at: m.created_at.toISOString(),
    updated_at: m.updated_at.toISOString(),
  };
}

function selfId(ctx: RequestContext): string | undefined {
  return ctx.actor.type === 'user' ? ctx.actor.id : undefined;
}

/** Memberships: who belongs to an organization, with which role. */
export function createMembersService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  /** The plan's member limit, checked when someone joins. */
  capacity?: CapacityCheck;
  events: EventBus;
}) {
  const { db, audit, organizations } = deps;

  /** The organization, locked until `tx` ends (serializes membership changes). */
  function lockOrganization(tx: Tx, idOrSlug: string) {
    return organizations.load(tx, idOrSlug, { forUpdate: true });
  }

  function targetId(ctx: RequestContext, userId: string): string {
    if (userId !== 'me') return userId;
    const me = selfId(ctx);
    if (!me) throw invalidField('userId', '"me" needs a signed-in user');
    return me;
  }

  /** Audits a membership change and publishes its event (member.added, removed or role_changed). */
  async function record(
    tx: Tx,
    ctx: RequestContext,
    orgId: string,
    action: string | undefined,
    userId: string,
    role: { before: Role | null; after: Role | null },
  ) {
    if (action)
      await audit.record(tx, ctx, {
        organizationId: orgId,
        action,
        targetType: 'member',
        targetId: userId,
        changes: { role },
      });
    const who = { organization_id: orgId, user_id: userId };
    await deps.events.publish(
      tx,
      role.before === null
        ? { type: 'member.added', ...who, role: role.after as Role }
        : role.after === null
          ? { type: 'member.removed', ...who }
          : { type: 'member.role_changed', ...who, from: role.before, to: role.after },
      ctx,
    );
  }

  /** Refuses to leave the organization without an owner after `userId` stops being one. */
  async function keepAnOwner(tx: Tx, orgId: string, userId: string) {
    const owners = await repo.lockOwners(tx, orgId);
    if (owners.length === 1 && owners[0] === userId)
      throw new AppError('last_owner', 'Make someone else an owner first (or transfer ownership)');
  }

  /**
   * The account (by id or email) that may be added to `organizationId` without an invitation, or
   * undefined: the operator may add anyone; anyone else only a member of an organization of the
   * same tree (its top-level organization and everything below it) whose members the actor can
   * already read there. So a direct add never reaches a stranger. Nor does it tell whether an
   * account exists, not even by its timing: the tree is resolved first whoever is asked for, and
   * one query answers both "is there such an account" and "does it share the tree".
   */
  async function addableDirectly(
    tx: Tx,
    ctx: RequestContext,
    organizationId: string,
    who: { userId?: string | undefined; email?: string | undefined },
  ): Promise<string | undefined> {
    if (ctx.actor.type === 'operator') {
      const user = who.userId
        ? await accountById(tx, who.userId)
        : await accountByEmail(tx, who.email as string);
      return user?.id;
    }
    const root = await organizations.rootOf(tx, organizationId);
    const tree = [root, ...(await organizations.descendantsOf(tx, [root])).map((n) => n.id)];
    const shared = await repo.findAccountMembershipsAmong(tx, who, tree);
    return shared.find((m) => can(ctx.actor, ['members:read'], m.organization_id))?.user_id;
  }

  /** Refuses (409 last_organization) when one of `userIds` belongs to no organization but this one. */
  async function keepAnOrganization(tx: Tx, userIds: string[], what: string) {
    const counts = await repo.lockMembershipCounts(tx, userIds);
    const stranded = userIds.filter((id) => (counts.get(id) ?? 0) <= 1);
    if (stranded.length) throw new AppError('last_organization', what, { extra: { user_ids: stranded } });
  }

  return {
    /** Role of the user in each organization they belong to. */
    /** The organizations where `userId` is an owner (a membership, not oversight). */
    async ownedBy(ex: Executor, userId: string): Promise<string[]> {
      return (await repo.findRolesOfUser(ex, userId))
        .filter((r) => r.role === 'owner')
        .map((r) => r.organization_id);
    },

    async rolesOf(userId: string): Promise<Map<string, Role>> {
      return new Map((await repo.findRolesOfUser(db, userId)).map((r) => [r.organization_id, r.role]));
    },

    /** Makes the creating user the owner of a new organization (run in its creating transaction). */
    async onOrganizationCreated(tx: Tx, organizationId: string, ctx: RequestContext) {
      if (ctx.actor.type !== 'user') return;
      await repo.insertMember(tx, { organization_id: organizationId, user_id: ctx.actor.id, role: 'owner' });
      // Audited as the organization's creation.
      await record(tx, ctx, organizationId, undefined, ctx.actor.id, { before: null, after: 'owner' });
    },

    onOrganizationDeleted: (tx: Tx, organizationId: string) => repo.deleteMembersOf(tx, organizationId),

    /**
     * Everyone keeps at least one organization (their personal one, unless they made another):
     * deleting the only organization of one of its owners is refused. Members who are not owners
     * do not block it, as removing them would not either.
     */
    async refuseDeletingLastOrganization(tx: Tx, organizationId: string) {
      await keepAnOrganization(
        tx,
        await repo.findOwners(tx, organizationId),
        'It is the only organization of one of its owners: they would be left with none (create or join another first)',
      );
    },

    /** member_count of each organization on a list page. */
    async listCounts(ex: Executor, organizationIds: string[]) {
      const counts = await repo.countMembersByOrganization(ex, organizationIds);
      return new Map([...counts].map(([id, n]) => [id, { member_count: n }]));
    },

    countMembers: (ex: Executor, organizationId: string) => repo.countMembers(ex, organizationId),

    /** The organization the user joined first (a new session's active one), if any. */
    firstOrganizationOf: (ex: Executor, userId: string) => repo.findFirstOrganizationOf(ex, userId),

    /** Whether the account with this address (any case) is a member of the organization. */
    hasMemberWithEmail: (ex: Executor, organizationId: string, email: string) =>
      repo.isMemberByEmail(ex, organizationId, email.toLowerCase()),

    async exportSection(ex: Executor, organizationId: string) {
      const rows = await repo.findMembers(ex, organizationId, { afterUserId: undefined, limit: 1_000_000 });
      return { members: rows.map(view) };
    },

    /**
     * Detaching: ends the memberships in `organizationId` of the people who run any of `overseers`
     * (owners and admins there: the parent side), except `keep`. What stays is the organization's
     * own people; 409 last_owner when none of them is an owner. Returns who was removed.
     */
    async dropOverseers(
      tx: Tx,
      ctx: RequestContext,
      organizationId: string,
      overseers: string[],
      keep: readonly string[],
    ): Promise<string[]> {
      const parentSide = await repo.findMembersManagingAny(tx, organizationId, overseers);
      for (const id of keep)
        if (!parentSide.includes(id))
          throw invalidField(
            'keep_members',
            `${id} is not an owner or admin of the parent side who is a member of this organization`,
          );
      const leaving = parentSide.filter((id) => !keep.includes(id));
      if (leaving.length === 0) return [];
      const owners = await repo.lockOwners(tx, organizationId);
      if (!owners.some((id) => !leaving.includes(id)))
        throw new AppError(
          'last_owner',
          'Detaching removes the parent side’s owners and admins from it, which would leave it without an owner: make one of its own members an owner first, or keep someone (keep_members)',
          { extra: { user_ids: leaving } },
        );
      for (const id of leaving) {
        const member = (await repo.findMember(tx, organizationId, id, true)) as repo.MemberRow;
        await repo.deleteMember(tx, organizationId, id);
        await record(tx, ctx, organizationId, 'member.removed', id, { before: member.role, after: null });
      }
      return leaving;
    },

    /** Refuses (402) when the plan has no room for another member. */
    checkCapacity: async (tx: Tx, organizationId: string) => deps.capacity?.(tx, organizationId, 'members'),

    async addExisting(tx: Tx, ctx: RequestContext, organizationId: string, userId: string, role: Role) {
      if (await repo.findMember(tx, organizationId, userId))
        throw new AppError('already_member', 'The user is already a member');
      await deps.capacity?.(tx, organizationId, 'members');
      if (!(await repo.insertMember(tx, { organization_id: organizationId, user_id: userId, role })))
        throw new AppError('already_member', 'The user is already a member');
      await record(tx, ctx, organizationId, 'member.added', userId, { before: null, after: role });
    },

    async list(
      ctx: RequestContext,
      idOrSlug: string,
      query: { limit?: number; cursor?: string },
    ): Promise<Page<MemberView>> {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['members:read'], org.id);
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findMembers(db, org.id, {
        afterUserId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      return toPage(rows, limit, (r) => r.user_id, view);
    },

    /**
     * Adds an existing user (by id or email) who already belongs to an organization of the same
     * tree that the actor can see the members of; anyone else is invited (403 invitation_required).
     */
    async add(
      ctx: RequestContext,
      idOrSlug: string,
      body: Static<typeof AddMemberBody>,
    ): Promise<MemberView> {
      if ((body.user_id === undefined) === (body.email === undefined))
        throw invalidField(
          body.user_id === undefined ? 'user_id' : 'email',
          'give exactly one of user_id and email',
        );
      return db.transaction().execute(async (tx) => {
        const org = await lockOrganization(tx, idOrSlug);
        authorize(
          ctx,
          body.role === 'owner' ? ['members:manage', 'members:manage_owners'] : ['members:manage'],
          org.id,
        );
        const userId = await addableDirectly(tx, ctx, org.id, { userId: body.user_id, email: body.email });
        // The same answer, after the same work, whether the account exists or not: nobody learns
        // who has one.
        if (!userId)
          throw new AppError(
            'invitation_required',
            'Only a member of another organization of this tree can be added directly; send an invitation (POST /api/organizations/{id}/invitations)',
            {
              errors: [
                {
                  field: body.user_id ? 'user_id' : 'email',
                  message: 'is not someone you can add directly; invite them',
                },
              ],
            },
          );
        await this.addExisting(tx, ctx, org.id, userId, body.role);
        return view((await repo.findMember(tx, org.id, userId)) as repo.MemberRow);
      });
    },

    async changeRole(ctx: RequestContext, idOrSlug: string, userId: string, role: Role): Promise<MemberView> {
      return db.transaction().execute(async (tx) => {
        const org = await lockOrganization(tx, idOrSlug);
        authorize(ctx, ['members:manage'], org.id);
        const id = targetId(ctx, userId);
        const member = await repo.findMember(tx, org.id, id, true);
        if (!member) throw new AppError('not_found', 'No such member');
        if (member.role === role) return view(member);
        if (member.role === 'owner' || role === 'owner') authorize(ctx, ['members:manage_owners'], org.id);
        if (member.role === 'owner') await keepAnOwner(tx, org.id, id);
        await repo.updateMemberRole(tx, org.id, id, role);
        await record(tx, ctx, org.id, 'member.role_changed', id, { before: member.role, after: role });
        return view((await repo.findMember(tx, org.id, id)) as repo.MemberRow);
      });
    },

    /** Removes a member; any member may remove themselves (leave). */
    async remove(ctx: RequestContext, idOrSlug: string, userId: string): Promise<void> {
      await db.transaction().execute(async (tx) => {
        const org = await lockOrganization(tx, idOrSlug);
        const id = targetId(ctx, userId);
        const leaving = id === selfId(ctx);
        authorize(ctx, leaving ? ['organization:read'] : ['members:manage'], org.id);
        const member = await repo.findMember(tx, org.id, id, true);
        if (!member) throw new AppError('not_found', 'No such member');
        if (member.role === 'owner') {
          if (!leaving) authorize(ctx, ['members:manage_owners'], org.id);
          await keepAnOwner(tx, org.id, id);
        }
        if (leaving)
          await keepAnOrganization(
            tx,
            [id],
            'This is your only organization: create or join another before leaving it',
          );
        await repo.deleteMember(tx, org.id, id);
        await record(tx, ctx, org.id, leaving ? 'member.left' : 'member.removed', id, {
          before: member.role,
          after: null,
        });
      });
    },

    /** Makes another member the owner; a user handing it over becomes an admin. */
    async transferOwnership(ctx: RequestContext, idOrSlug: string, userId: string): Promise<MemberView> {
      return db.transaction().execute(async (tx) => {
        const org = await lockOrganization(tx, idOrSlug);
        authorize(ctx, ['members:manage_owners'], org.id);
        const target = await repo.findMember(tx, org.id, userId, true);
        if (!target) throw invalidField('user_id', 'is not a member of this organization');
        if (target.role !== 'owner') {
          await repo.updateMemberRole(tx, org.id, userId, 'owner');
          await record(tx, ctx, org.id, 'member.role_changed', userId, {
            before: target.role,
            after: 'owner',
          });
        }
        const me = selfId(ctx);
        if (me && me !== userId && can(ctx.actor, ['members:manage_owners'], org.id)) {
          await repo.updateMemberRole(tx, org.id, me, 'admin');
          await record(tx, ctx, org.id, 'member.role_changed', me, { before: 'owner', after: 'admin' });
        }
        return view((await repo.findMember(tx, org.id, userId)) as repo.MemberRow);
      });
    },
  };
}

export type MembersService = ReturnType<typeof createMembersService>;

import type { Db, Tx } from '../../db/client.js';
import type { RequestContext, Role } from '../../lib/authz.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';

/**
 * The caller and their organizations, and the session's active organization: the one that
 * org-implicit routes (`/api/organization…`) act on. A session always has exactly one while the
 * user belongs to any; switching changes nothing else.
 */
export function createMeService(deps: { db: Db; organizations: OrganizationsService }) {
  const { db, organizations } = deps;

  async function storedActive(sessionId: string): Promise<string | undefined> {
    const row = await db
      .selectFrom('session_contexts')
      .select('active_organization_id')
      .where('session_id', '=', sessionId)
      .executeTakeFirst();
    return row?.active_organization_id;
  }

  /** The active organization's id: the session's choice while it is still a membership, else the oldest one. */
  async function activeOrganizationId(ctx: RequestContext): Promise<string> {
    const actor = ctx.actor;
    if (actor.type === 'api_key') return actor.organizationId;
    if (actor.type === 'operator')
      throw new AppError('not_found', 'The operator has no active organization; use /api/organizations/{id}');
    const chosen = actor.sessionId ? await storedActive(actor.sessionId) : undefined;
    if (chosen && actor.roles.has(chosen)) return chosen;
    const first = [...actor.roles.keys()].sort()[0];
    if (!first) throw new AppError('not_found', 'You do not belong to any organization');
    return first;
  }

  async function setActive(sessionId: string, organizationId: string) {
    await db
      .insertInto('session_contexts')
      .values({ session_id: sessionId, active_organization_id: organizationId })
      .onConflict((oc) =>
        oc
          .column('session_id')
          .doUpdateSet({ active_organization_id: organizationId, updated_at: new Date() }),
      )
      .execute();
  }

  return {
    activeOrganizationId,
    setActive,

    /** The sub-organization this session joined as a role, as stored (the caller checks it still may). */
    async joinedOf(sessionId: string) {
      const row = await db
        .selectFrom('session_contexts')
        .select(['joined_organization_id', 'joined_role', 'return_organization_id'])
        .where('session_id', '=', sessionId)
        .executeTakeFirst();
      if (!row?.joined_organization_id || !row.joined_role) return undefined;
      return {
        organizationId: row.joined_organization_id,
        role: row.joined_role as Role,
        returnTo: row.return_organization_id,
      };
    },

    /** Switches the session into `organizationId` as `role`; leaving returns to `returnTo`. */
    async join(tx: Tx, sessionId: string, organizationId: string, role: Role, returnTo: string | null) {
      const joined = {
        active_organization_id: organizationId,
        joined_organization_id: organizationId,
        joined_role: role,
        return_organization_id: returnTo,
      };
      await tx
        .insertInto('session_contexts')
        .values({ session_id: sessionId, ...joined })
        .onConflict((oc) => oc.column('session_id').doUpdateSet({ ...joined, updated_at: new Date() }))
        .execute();
    },

    /** Ends "join as": the session is back where it was before it joined. */
    async leave(tx: Tx, sessionId: string, returnTo: string) {
      await tx
        .updateTable('session_contexts')
        .set({
          active_organization_id: returnTo,
          joined_organization_id: null,
          joined_role: null,
          return_organization_id: null,
          updated_at: new Date(),
        })
        .where('session_id', '=', sessionId)
        .execute();
    },

    async me(ctx: RequestContext) {
      const actor = ctx.actor;
      if (actor.type !== 'user') throw new AppError('forbidden', '/api/me describes a signed-in user');
      const user = await db
        .selectFrom('users')
        .select(['id', 'name', 'email', 'created_at'])
        .where('id', '=', actor.id)
        .executeTakeFirstOrThrow();
      const ids = [...actor.roles.keys()];
      const orgs = ids.length
        ? await db
            .selectFrom('organizations')
            .select(['id', 'name', 'slug', 'active', 'parent_id'])
            .where('id', 'in', ids)
            .where('deleted_at', 'is', null)
            .orderBy('id')
            .execute()
        : [];
      const active = orgs.length ? await activeOrganizationId(ctx) : null;
      const list = orgs.map((o) => ({
        ...o,
        role: actor.roles.get(o.id) as string,
        via:
          actor.joined?.organizationId === o.id
            ? ('join_as' as const)
            : actor.oversight?.has(o.id)
              ? ('oversight' as const)
              : ('member' as const),
      }));
      return {
        user: { id: user.id, name: user.name, email: user.email, created_at: user.created_at.toISOString() },
        organizations: list,
        active_organization: list.find((o) => o.id === active) ?? null,
        joined_as: actor.joined
          ? {
              organization_id: actor.joined.organizationId,
              role: actor.joined.role,
              return_organization_id: actor.joined.returnTo,
            }
          : null,
      };
    },

    async switchActive(ctx: RequestContext, idOrSlug: string) {
      const actor = ctx.actor;
      if (actor.type !== 'user' || !actor.sessionId)
        throw new AppError('forbidden', 'Only a signed-in session has an active organization');
      const org = await organizations.load(db, idOrSlug).catch(() => undefined);
      if (!org || !actor.roles.has(org.id))
        throw invalidField('organization_id', 'is not an organization you belong to');
      await db
        .insertInto('session_contexts')
        .values({ session_id: actor.sessionId, active_organization_id: org.id })
        .onConflict((oc) =>
          oc.column('session_id').doUpdateSet({ active_organization_id: org.id, updated_at: new Date() }),
        )
        .execute();
      return this.me(ctx);
    },
  };
}

export type MeService = ReturnType<typeof createMeService>;

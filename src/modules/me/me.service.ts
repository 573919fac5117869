/**
 * The me module owns `session_contexts`: per session, the active organization (the one that
 * org-implicit routes, `/api/organization…`, act on) and the "join as" state that the
 * sub-organizations module sets. Rules: a session always has exactly one active organization while
 * the user belongs to any, and it is always one of their organizations (else the oldest one
 * stands in); switching changes nothing else.
 */
import type { Db, Executor, Tx } from '../../db/client.js';
import type { RequestContext, Role } from '../../lib/authz.js';
import { AppError, invalidField } from '../../lib/problem.js';
import { accountById } from '../auth/auth.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import * as repo from './me.repo.js';

/** The caller, their organizations, and the session's active organization. */
export function createMeService(deps: { db: Db; organizations: OrganizationsService }) {
  const { db, organizations } = deps;

  /** The active organization's id: the session's choice while it is still a membership, else the oldest one. */
  async function activeOrganizationId(ctx: RequestContext): Promise<string> {
    const actor = ctx.actor;
    if (actor.type === 'api_key') return actor.organizationId;
    if (actor.type === 'operator')
      throw new AppError('not_found', 'The operator has no active organization; use /api/organizations/{id}');
    const chosen = actor.sessionId ? await repo.findActiveOrganization(db, actor.sessionId) : undefined;
    if (chosen && actor.roles.has(chosen)) return chosen;
    const first = [...actor.roles.keys()].sort()[0];
    if (!first) throw new AppError('not_found', 'You do not belong to any organization');
    return first;
  }

  async function setActive(sessionId: string, organizationId: string) {
    await repo.upsertActiveOrganization(db, sessionId, organizationId);
  }

  return {
    activeOrganizationId,
    setActive,

    /** A new session's active organization (auth calls this); a session that has one keeps it. */
    openSession: (ex: Executor, sessionId: string, organizationId: string) =>
      repo.insertSessionContext(ex, sessionId, organizationId),

    /** The sub-organization this session joined as a role, as stored (the caller checks it still may). */
    async joinedOf(sessionId: string) {
      const row = await repo.findJoined(db, sessionId);
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
      await repo.upsertJoined(tx, sessionId, joined);
    },

    /** Ends "join as": the session is back where it was before it joined. */
    async leave(tx: Tx, sessionId: string, returnTo: string) {
      await repo.updateLeft(tx, sessionId, returnTo);
    },

    async me(ctx: RequestContext) {
      const actor = ctx.actor;
      if (actor.type !== 'user') throw new AppError('forbidden', '/api/me describes a signed-in user');
      const user = await accountById(db, actor.id);
      if (!user) throw new Error(`the signed-in account ${actor.id} does not exist`);
      const orgs = await organizations.liveSummaries(db, [...actor.roles.keys()]);
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
      await setActive(actor.sessionId, org.id);
      return this.me(ctx);
    },
  };
}

export type MeService = ReturnType<typeof createMeService>;

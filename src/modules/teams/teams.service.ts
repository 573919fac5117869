/**
 * The teams module owns `teams`: groups within at most one organization, spending from its
 * credits within an optional monthly budget (the ledger enforces it and keeps the team's
 * month_spend). Rules: a team without an organization is the operator's to manage; removing a
 * team from its organization, or deleting the organization, keeps the team; every change is
 * audited in the organization(s) it concerns.
 */
import { type Static, Type } from 'typebox';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, can, type RequestContext } from '../../lib/authz.js';
import { newId } from '../../lib/ids.js';
import { formatAmount, nonNegativeAmount } from '../../lib/money.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, PageQuery, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import { DecimalInput, DisplayName, FreeText, Nullable } from '../../lib/schema.js';
import { type AuditService, diff } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import * as repo from './teams.repo.js';

type TeamRow = repo.TeamRow;
const Name = DisplayName();
const Budget = Nullable(DecimalInput('Credits per calendar month (UTC); null: no budget'));

export const CreateTeamBody = Type.Object(
  {
    name: Name,
    description: Type.Optional(Nullable(FreeText())),
    organization_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    monthly_budget: Type.Optional(Budget),
  },
  { additionalProperties: false },
);
export const UpdateTeamBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: CreateTeamBody.properties.description,
    monthly_budget: Type.Optional(Budget),
  },
  { additionalProperties: false },
);
export const ListTeamsQuery = Type.Object(
  { ...PageQuery, organization_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) },
  { additionalProperties: false },
);
export const TeamResponse = Type.Object({
  id: Type.String(),
  organization_id: Nullable(Type.String()),
  name: Type.String(),
  description: Nullable(Type.String()),
  monthly_budget: Nullable(Type.String()),
  month: Type.String(),
  month_spend: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

function view(t: TeamRow): Static<typeof TeamResponse> {
  const month = new Date().toISOString().slice(0, 7);
  return {
    id: t.id,
    organization_id: t.organization_id,
    name: t.name,
    description: t.description,
    monthly_budget: t.monthly_budget === null ? null : formatAmount(t.monthly_budget),
    month,
    month_spend: formatAmount(t.spend_month === month ? t.month_spend : 0n),
    created_at: t.created_at.toISOString(),
    updated_at: t.updated_at.toISOString(),
  };
}

function parseBudget(input: string | number | null | undefined): bigint | null | undefined {
  return input === undefined || input === null ? input : nonNegativeAmount('monthly_budget', input);
}

/** Teams: created, listed, changed, assigned to an organization and deleted. */
export function createTeamsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
}) {
  const { db, audit, organizations } = deps;

  async function loadTeam(
    ex: Executor,
    ctx: RequestContext,
    id: string,
    permission: 'teams:read' | 'teams:manage',
    forUpdate = false,
  ) {
    const team = await repo.findTeam(ex, id, forUpdate);
    if (!team) throw new AppError('not_found', 'No such team');
    if (team.organization_id === null) {
      if (ctx.actor.type !== 'operator') throw new AppError('not_found', 'No such team');
    } else authorize(ctx, [permission], team.organization_id);
    return team;
  }

  async function record(
    tx: Tx,
    ctx: RequestContext,
    organizationId: string | null,
    action: string,
    teamId: string,
    changes = {},
  ) {
    if (organizationId)
      await audit.record(tx, ctx, { organizationId, action, targetType: 'team', targetId: teamId, changes });
  }

  async function setOrganization(ctx: RequestContext, id: string, organizationId: string | null) {
    return db.transaction().execute(async (tx) => {
      const team = await loadTeam(tx, ctx, id, 'teams:manage', true);
      let to: string | null = null;
      if (organizationId !== null) {
        const org = await organizations.load(tx, organizationId).catch(() => undefined);
        if (!org || !can(ctx.actor, ['organization:read'], org.id))
          throw invalidField('organization_id', 'is not an organization you can see');
        authorize(ctx, ['teams:manage'], org.id);
        to = org.id;
      }
      if (team.organization_id === to) return view(team);
      const updated = await repo.updateTeam(tx, id, { organization_id: to });
      const change = { organization_id: { before: team.organization_id, after: to } };
      await record(tx, ctx, team.organization_id, 'team.removed', id, change);
      await record(tx, ctx, to, 'team.assigned', id, change);
      return view(updated);
    });
  }

  return {
    async create(ctx: RequestContext, body: Static<typeof CreateTeamBody>) {
      let orgId: string | null = null;
      if (body.organization_id) {
        const org = await organizations.load(db, body.organization_id);
        authorize(ctx, ['teams:manage'], org.id);
        orgId = org.id;
      } else if (ctx.actor.type !== 'operator')
        throw invalidField(
          'organization_id',
          'is required (teams without an organization are the operator’s)',
        );
      const budget = parseBudget(body.monthly_budget) ?? null;
      return db.transaction().execute(async (tx) => {
        const team = await repo.insertTeam(tx, {
          id: newId('tem'),
          organization_id: orgId,
          name: body.name,
          description: body.description ?? null,
          monthly_budget: budget,
        });
        await record(
          tx,
          ctx,
          orgId,
          'team.created',
          team.id,
          diff({} as Record<string, unknown>, view(team)),
        );
        return view(team);
      });
    },

    async list(
      ctx: RequestContext,
      query: Static<typeof ListTeamsQuery>,
    ): Promise<Page<Static<typeof TeamResponse>>> {
      let organizationIds: string[] | undefined;
      if (query.organization_id) {
        const org = await organizations.load(db, query.organization_id);
        authorize(ctx, ['teams:read'], org.id);
        organizationIds = [org.id];
      } else if (ctx.actor.type !== 'operator') {
        const visible = ctx.actor.type === 'user' ? [...ctx.actor.roles.keys()] : [ctx.actor.organizationId];
        organizationIds = visible.filter((id) => can(ctx.actor, ['teams:read'], id));
        if (organizationIds.length === 0) return { data: [], next_cursor: null };
      }
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findTeamsPage(db, {
        organizationIds,
        afterId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      return toPage(rows, limit, (r) => r.id, view);
    },

    async get(ctx: RequestContext, id: string) {
      return view(await loadTeam(db, ctx, id, 'teams:read'));
    },

    async update(ctx: RequestContext, id: string, body: Static<typeof UpdateTeamBody>) {
      const budget = parseBudget(body.monthly_budget);
      return db.transaction().execute(async (tx) => {
        const team = await loadTeam(tx, ctx, id, 'teams:manage', true);
        const patch: repo.TeamPatch = {};
        if (body.name !== undefined) patch.name = body.name;
        if (body.description !== undefined) patch.description = body.description;
        if (budget !== undefined) patch.monthly_budget = budget;
        if (!Object.entries(patch).some(([k, v]) => team[k as keyof TeamRow] !== v)) return view(team);
        const updated = await repo.updateTeam(tx, id, patch);
        const changes = diff(view(team), view(updated));
        delete changes.updated_at;
        await record(tx, ctx, team.organization_id, 'team.updated', id, changes);
        return view(updated);
      });
    },

    async remove(ctx: RequestContext, id: string) {
      await db.transaction().execute(async (tx) => {
        const team = await loadTeam(tx, ctx, id, 'teams:manage', true);
        await repo.softDeleteTeam(tx, id);
        await record(tx, ctx, team.organization_id, 'team.deleted', id);
      });
    },

    assign: (ctx: RequestContext, id: string, organizationId: string) =>
      setOrganization(ctx, id, organizationId),
    unassign: (ctx: RequestContext, id: string) => setOrganization(ctx, id, null),

    /** team_count of each organization on a list page. */
    async listCounts(ex: Executor, organizationIds: string[]) {
      const counts = await repo.countTeamsByOrganization(ex, organizationIds);
      return new Map([...counts].map(([id, n]) => [id, { team_count: n }]));
    },

    /** Deleting an organization removes its teams' association; the teams remain. */
    async onOrganizationDeleted(tx: Tx, organizationId: string) {
      await repo.detachTeamsOf(tx, organizationId);
    },

    async details(ex: Executor, organizationId: string) {
      return { team_count: await repo.countTeams(ex, organizationId) };
    },
  };
}

export type TeamsService = ReturnType<typeof createTeamsService>;

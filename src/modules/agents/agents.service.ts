/**
 * The agents module owns `agents` and `agent_assignments` (which organization each agent worked
 * for, and when: what billing charges by). It publishes agent.created, agent.assigned and
 * agent.deleted in the changing transaction; API keys follow their agent through those events.
 */
import type { Static } from 'typebox';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, can, type RequestContext } from '../../lib/authz.js';
import type { EventBus } from '../../lib/events.js';
import { newId } from '../../lib/ids.js';
import { formatMoney, nonNegativeAmount } from '../../lib/money.js';
import { DEFAULT_LIMIT, decodeCursor, type Page, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import { type AuditService, diff } from '../audit/audit.service.js';
import {
  DEFAULT_ORGANIZATION_SLUG,
  type OrganizationsService,
} from '../organizations/organizations.service.js';
import type { CapacityCheck } from '../plans/plans.catalog.js';
import * as repo from './agents.repo.js';
import type { AgentResponse, CreateAgentBody, ListAgentsQuery, UpdateAgentBody } from './agents.schema.js';

type AgentView = Static<typeof AgentResponse>;
type Org = Awaited<ReturnType<OrganizationsService['load']>>;

function parseRate(field: string, input: string | number | null | undefined): bigint | null | undefined {
  return input === undefined || input === null ? input : nonNegativeAmount(field, input);
}

/** billing_rate or the seed's billingRate (one of them, or both the same), parsed. */
function rateOf(body: { billing_rate?: string | number | null; billingRate?: string | number | null }) {
  if (
    body.billing_rate !== undefined &&
    body.billingRate !== undefined &&
    body.billing_rate !== body.billingRate
  )
    throw invalidField('billingRate', 'conflicts with billing_rate; send one of them');
  return body.billing_rate !== undefined
    ? parseRate('billing_rate', body.billing_rate)
    : parseRate('billingRate', body.billingRate);
}

/** Refuses (403 organization_inactive) an agent joining an inactive organization. */
function assertActive(org: Org) {
  if (!org.active)
    throw new AppError(
      'organization_inactive',
      'The organization is inactive: activate it before adding agents',
      {
        errors: [{ field: 'organization_id', message: 'is an inactive organization' }],
      },
    );
}

function view(a: repo.AgentRow, org: Org): AgentView {
  return {
    id: a.id,
    organization_id: a.organization_id,
    name: a.name,
    description: a.description,
    // Deactivating an organization suspends its agents; reactivating it gives back their own status.
    status: org.active ? a.status : 'suspended',
    billing_rate: a.billing_rate === null ? null : formatMoney(a.billing_rate),
    effective_billing_rate: formatMoney(a.billing_rate ?? org.billing_rate_per_agent),
    currency: org.currency,
    created_at: a.created_at.toISOString(),
    updated_at: a.updated_at.toISOString(),
  };
}

/**
 * Agents. Invariants: an agent belongs to exactly one live organization at a time; assigning
 * moves it (audited in both organizations) and unassigning returns it to the internal one; its
 * assignment history has exactly one open interval while it exists. Effective rate = its own
 * billing_rate, else its organization's billing_rate_per_agent.
 */
export function createAgentsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  events: EventBus;
  /** The plan's agent limit, checked when an agent joins an organization. */
  capacity?: CapacityCheck;
}) {
  const { db, audit, organizations } = deps;
  const { events } = deps;

  async function loadAgent(
    ex: Executor,
    ctx: RequestContext,
    id: string,
    permission: 'agents:read' | 'agents:manage',
    forUpdate = false,
  ) {
    const agent = await repo.findAgent(ex, id, forUpdate);
    if (!agent) throw new AppError('not_found', 'No such agent');
    authorize(ctx, [permission], agent.organization_id);
    return agent;
  }

  async function withOrgs(ex: Executor, rows: repo.AgentRow[]): Promise<AgentView[]> {
    const orgs = new Map<string, Org>();
    for (const id of new Set(rows.map((r) => r.organization_id)))
      orgs.set(id, await organizations.load(ex, id, { includeDeleted: true }));
    return rows.map((r) => view(r, orgs.get(r.organization_id) as Org));
  }

  async function record(
    tx: Tx,
    ctx: RequestContext,
    organizationId: string,
    action: string,
    agentId: string,
    changes = {},
  ) {
    await audit.record(tx, ctx, { organizationId, action, targetType: 'agent', targetId: agentId, changes });
  }

  /** Moves the agent to `to` (already authorized), auditing in both organizations. */
  async function move(tx: Tx, ctx: RequestContext, agent: repo.AgentRow, to: Org): Promise<AgentView> {
    if (agent.organization_id === to.id) return view(agent, to);
    await deps.capacity?.(tx, to.id, 'agents');
    const moved = await repo.updateAgent(tx, agent.id, { organization_id: to.id });
    await repo.moveAssignment(tx, agent.id, moved.updated_at, to.id);
    await events.publish(
      tx,
      {
        type: 'agent.assigned',
        organization_id: to.id,
        agent_id: agent.id,
        from_organization_id: agent.organization_id,
      },
      ctx,
    );
    const change = { organization_id: { before: agent.organization_id, after: to.id } };
    await record(tx, ctx, agent.organization_id, 'agent.moved_out', agent.id, change);
    await record(tx, ctx, to.id, 'agent.assigned', agent.id, change);
    return view(moved, to);
  }

  return {
    async create(ctx: RequestContext, body: Static<typeof CreateAgentBody>): Promise<AgentView> {
      const org = await organizations.load(db, body.organization_id ?? DEFAULT_ORGANIZATION_SLUG);
      authorize(ctx, ['agents:manage'], org.id);
      assertActive(org);
      const rate = rateOf(body) ?? null;
      return db.transaction().execute(async (tx) => {
        await deps.capacity?.(tx, org.id, 'agents');
        const agent = await repo.insertAgent(tx, {
          organization_id: org.id,
          id: newId('agt'),
          name: body.name,
          description: body.description ?? null,
          status: body.status ?? 'active',
          billing_rate: rate,
        });
        await repo.moveAssignment(tx, agent.id, agent.created_at, org.id);
        const v = view(agent, org);
        await record(tx, ctx, org.id, 'agent.created', agent.id, diff({} as Record<string, unknown>, v));
        await events.publish(tx, { type: 'agent.created', organization_id: org.id, agent_id: agent.id }, ctx);
        return v;
      });
    },

    async list(ctx: RequestContext, query: Static<typeof ListAgentsQuery>): Promise<Page<AgentView>> {
      let organizationIds: string[] | undefined;
      if (query.organization_id) {
        const org = await organizations.load(db, query.organization_id);
        authorize(ctx, ['agents:read'], org.id);
        organizationIds = [org.id];
      } else if (ctx.actor.type === 'user') {
        organizationIds = [...ctx.actor.roles.keys()].filter((id) => can(ctx.actor, ['agents:read'], id));
      } else if (ctx.actor.type === 'api_key') {
        organizationIds = can(ctx.actor, ['agents:read'], ctx.actor.organizationId)
          ? [ctx.actor.organizationId]
          : [];
      }
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await repo.findAgents(db, {
        organizationIds,
        afterId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const page = toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => r,
      );
      return { data: await withOrgs(db, page.data), next_cursor: page.next_cursor };
    },

    /** The agent, once the caller holds agents:manage in its organization. */
    authorizeManage: (ctx: RequestContext, id: string) => loadAgent(db, ctx, id, 'agents:manage'),

    async get(ctx: RequestContext, id: string): Promise<AgentView> {
      const agent = await loadAgent(db, ctx, id, 'agents:read');
      return view(agent, await organizations.load(db, agent.organization_id));
    },

    /** `billing_rate: null` clears the custom rate (the organization's applies again). */
    async update(ctx: RequestContext, id: string, body: Static<typeof UpdateAgentBody>): Promise<AgentView> {
      const rate = rateOf(body);
      return db.transaction().execute(async (tx) => {
        const agent = await loadAgent(tx, ctx, id, 'agents:manage', true);
        const org = await organizations.load(tx, agent.organization_id);
        const patch: Parameters<typeof repo.updateAgent>[2] = {};
        if (body.name !== undefined) patch.name = body.name;
        if (body.description !== undefined) patch.description = body.description;
        if (body.status !== undefined) patch.status = body.status;
        if (rate !== undefined) patch.billing_rate = rate;
        if (!Object.entries(patch).some(([k, v]) => agent[k as keyof repo.AgentRow] !== v))
          return view(agent, org);
        const updated = await repo.updateAgent(tx, id, patch);
        const changes = diff(view(agent, org), view(updated, org));
        delete changes.updated_at;
        await record(tx, ctx, org.id, 'agent.updated', id, changes);
        return view(updated, org);
      });
    },

    /** Deletes the agent; its assignment history and usage stay for billing. */
    async remove(ctx: RequestContext, id: string): Promise<void> {
      await db.transaction().execute(async (tx) => {
        const agent = await loadAgent(tx, ctx, id, 'agents:manage', true);
        const at = new Date();
        await repo.updateAgent(tx, id, { deleted_at: at });
        await repo.moveAssignment(tx, id, at, null);
        await events.publish(
          tx,
          { type: 'agent.deleted', organization_id: agent.organization_id, agent_id: id },
          ctx,
        );
        await record(tx, ctx, agent.organization_id, 'agent.deleted', id);
      });
    },

    /** Moves the agent into another organization: allowed to those who manage agents in both. */
    async assign(ctx: RequestContext, id: string, organizationId: string): Promise<AgentView> {
      return db.transaction().execute(async (tx) => {
        const agent = await loadAgent(tx, ctx, id, 'agents:manage', true);
        const to = await organizations.load(tx, organizationId).catch(() => undefined);
        if (!to || !can(ctx.actor, ['organization:read'], to.id))
          throw invalidField('organization_id', 'is not an organization you can see');
        authorize(ctx, ['agents:manage'], to.id);
        if (agent.organization_id !== to.id) assertActive(to);
        return move(tx, ctx, agent, to);
      });
    },

    /** Returns the agent to the internal organization. */
    async unassign(ctx: RequestContext, id: string): Promise<AgentView> {
      return db.transaction().execute(async (tx) => {
        const agent = await loadAgent(tx, ctx, id, 'agents:manage', true);
        return move(tx, ctx, agent, await organizations.load(tx, DEFAULT_ORGANIZATION_SLUG));
      });
    },

    /** An organization with agents cannot be deleted: unassign them first. */
    async refuseDeletionWithAgents(tx: Tx, organizationId: string) {
      const n = await repo.countAgents(tx, organizationId);
      if (n > 0)
        throw new AppError('organization_has_agents', `Unassign its ${n} agent(s) first`, {
          extra: { agent_count: n },
        });
    },

    async details(ex: Executor, organizationId: string) {
      const rows = await repo.findAgents(ex, {
        organizationIds: [organizationId],
        afterId: undefined,
        limit: 100,
      });
      const org = await organizations.load(ex, organizationId, { includeDeleted: true });
      return {
        agent_count: await repo.countAgents(ex, organizationId),
        agents: rows.map((r) => {
          const v = view(r, org);
          return {
            id: v.id,
            name: v.name,
            status: v.status,
            billing_rate: v.billing_rate,
            effective_billing_rate: v.effective_billing_rate,
          };
        }),
      };
    },

    /** Assignment intervals in the organization overlapping [start, end), for pro-rated billing. */
    assignmentsDuring: (ex: Executor, organizationId: string | null, start: Date, end: Date) =>
      repo.findAssignmentsDuring(ex, organizationId, start, end),

    /** agent_count of each organization on a list page. */
    /** agent_count of each organization on a list page. */
    async listCounts(ex: Executor, organizationIds: string[]) {
      const counts = await repo.countAgentsByOrganization(ex, organizationIds);
      return new Map([...counts].map(([id, n]) => [id, { agent_count: n }]));
    },

    countAgents: (ex: Executor, organizationId: string) => repo.countAgents(ex, organizationId),

    /** Agents' own rates over time , for billing past months at their rates. */
    rateHistories: (ex: Executor, ids: string[]) => repo.findRateHistories(ex, ids),

    /** The rate histories of every agent assigned during [start, end): in one organization, or anywhere (null). */
    rateHistoriesDuring: (ex: Executor, organizationId: string | null, start: Date, end: Date) =>
      repo.findRateHistoriesDuring(ex, organizationId, start, end),

    /** The agents assigned to an organization during [start, end), deleted ones included. */
    assignedDuring: (ex: Executor, organizationId: string, start: Date, end: Date) =>
      repo.findAgentsAssignedDuring(ex, organizationId, start, end),

    /** Where each live agent among `ids` works: for attributing usage. */
    organizationsOf: (ids: string[]) => repo.findAgentOrganizations(db, ids),

    /** Agents by id, deleted ones included. */
    byIds: (ex: Executor, ids: string[]) => repo.findAgentsByIds(ex, ids),

    async exportSection(ex: Executor, organizationId: string) {
      const rows = await repo.findAgents(ex, {
        organizationIds: [organizationId],
        afterId: undefined,
        limit: 1_000_000,
      });
      return { agents: await withOrgs(ex, rows) };
    },
  };
}

export type AgentsService = ReturnType<typeof createAgentsService>;

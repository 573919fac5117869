/**
 * The sub-organizations module owns no table: the tree is organizations' `parent_id`, and what it
 * changes goes through the modules that own it (organizations, members, plans, features, ledger,
 * me for "join as"). Rules: the parent's owners and admins act as `admin` in every organization
 * below it (computed per request from the tree, so detaching removes it at once); a tree is at most
 * MAX_DEPTH levels below its top-level organization; a sub-organization needs its parent to have
 * `sub_organizations` and gets no plan or feature above the parent's; its monthly spending limit is
 * the parent's to set; only the parent's owners (or the operator) detach it.
 */
import type { Static } from 'typebox';
import type { Db } from '../../db/client.js';
import {
  authorize,
  authorizeParentDecision,
  type Permission,
  type RequestContext,
  type Role,
} from '../../lib/authz.js';
import { formatAmount } from '../../lib/money.js';
import { DEFAULT_LIMIT, decodeCursor, toPage } from '../../lib/pagination.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { LedgerService } from '../ledger/ledger.service.js';
import type { MeService } from '../me/me.service.js';
import type { MembersService } from '../members/members.service.js';
import { type OrganizationsService, toView } from '../organizations/organizations.service.js';
import { assertGrantable, type FeaturesService } from '../plans/features.service.js';
import { MAX_DEPTH, PLAN_KEYS, planOf } from '../plans/plans.catalog.js';
import type { PlansService } from '../plans/plans.service.js';
import type {
  CreateSubOrganizationBody,
  SubOrganizationBillingResponse,
  TreeUsageResponse,
} from './sub-organizations.schema.js';

const DAY_MS = 86_400_000;
const MAX_RANGE_DAYS = 366;

function today(): string {
  return new Date().toISOString().slice(0, 10);
}

/** Sub-organizations: separate workspaces under a parent, which oversees them. */
export function createSubOrganizationsService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  members: MembersService;
  ledger: LedgerService;
  plans: PlansService;
  features: FeaturesService;
  me: MeService;
}) {
  const { db, audit, organizations, members, ledger, plans, features, me } = deps;

  /** The parent (checked for all of `permissions`) and one organization below it; 404 if not below. */
  async function loadPair(
    ctx: RequestContext,
    parentIdOrSlug: string,
    subIdOrSlug: string,
    permissions: Permission[],
  ) {
    const parent = await organizations.load(db, parentIdOrSlug);
    authorize(ctx, permissions, parent.id);
    const sub = await organizations.load(db, subIdOrSlug).catch(() => undefined);
    const chain = sub ? await organizations.ancestryOf(db, sub.id) : [];
    if (!sub || !chain.slice(1).some((n) => n.id === parent.id))
      throw new AppError('not_found', 'No such sub-organization under this organization');
    return { parent, sub, direct: sub.parent_id === parent.id };
  }

  /** A sub-organization's billing at a glance, for its parent's owners, admins and managers. */
  async function billing(
    ctx: RequestContext,
    parentIdOrSlug: string,
    subIdOrSlug: string,
  ): Promise<Static<typeof SubOrganizationBillingResponse>> {
    const { sub } = await loadPair(ctx, parentIdOrSlug, subIdOrSlug, ['sub_organizations:read']);
    const [subscription, balance, history] = await Promise.all([
      plans.viewOf(db, sub.id),
      ledger.balanceOf(sub),
      ledger.paymentHistory(db, sub.id, 50),
    ]);
    return {
      organization_id: sub.id,
      subscription: {
        plan: subscription.plan,
        plan_name: subscription.plan_name,
        status: subscription.status,
        billing_cycle: subscription.billing_cycle,
        cancel_at_period_end: subscription.cancel_at_period_end,
        current_period_end: subscription.current_period_end,
      },
      currency: sub.currency,
      available_balance: balance.available,
      payment_method: balance.auto_recharge.payment_method,
      auto_recharge: balance.auto_recharge,
      monthly_spending_limit: balance.monthly_spending_limit,
      month_spend: balance.month_spend,
      payment_history: history,
    };
  }

  return {
    async create(
      ctx: RequestContext,
      parentIdOrSlug: string,
      body: Static<typeof CreateSubOrganizationBody>,
    ) {
      const parent = await organizations.load(db, parentIdOrSlug);
      authorize(ctx, ['sub_organizations:manage'], parent.id);
      await features.require(db, parent.id, 'sub_organizations');
      const depth = (await organizations.ancestryOf(db, parent.id)).length;
      if (depth > MAX_DEPTH)
        throw new AppError(
          'nesting_too_deep',
          `Sub-organizations nest at most ${MAX_DEPTH} levels below their top-level organization`,
          { extra: { max_depth: MAX_DEPTH } },
        );
      const parentHas = await features.effective(db, parent.id);
      const granted = body.features ?? [...parentHas];
      assertGrantable(parentHas, granted);
      const { features: _f, plan, ...input } = body;
      // A parent cannot hand out more than it pays for.
      if (plan !== undefined && PLAN_KEYS.indexOf(plan) > PLAN_KEYS.indexOf(planOf(parent.plan).key))
        throw invalidField('plan', `cannot be above the parent organization's plan (${parent.plan})`);
      return organizations.create(ctx, input, {
        parentId: parent.id,
        plan: plan ?? parent.plan,
        // Under the parent's subscription lock, so concurrent creations take turns.
        beforeInsert: (tx) => plans.assertCapacity(tx, parent.id, 'sub_organizations'),
        inTransaction: async (tx, child) => {
          await features.grant(tx, child.id, granted);
          await audit.record(tx, ctx, {
            organizationId: parent.id,
            action: 'sub_organization.created',
            targetType: 'organization',
            targetId: child.id,
            changes: {
              name: { before: null, after: child.name },
              features: { before: null, after: granted },
            },
          });
        },
      });
    },

    /** Direct sub-organizations with plan, balance and member count (the seed's table). */
    async list(ctx: RequestContext, parentIdOrSlug: string, query: { limit?: number; cursor?: string }) {
      const parent = await organizations.load(db, parentIdOrSlug);
      authorize(ctx, ['sub_organizations:read'], parent.id);
      const limit = query.limit ?? DEFAULT_LIMIT;
      const rows = await organizations.childrenPage(db, parent.id, {
        beforeId: decodeCursor(query.cursor),
        limit: limit + 1,
      });
      const page = toPage(
        rows,
        limit,
        (r) => r.id,
        (r) => r,
      );
      const ids = page.data.map((r) => r.id);
      const [balances, memberCounts, grandchildren] = await Promise.all([
        ledger.balancesOf(db, ids),
        members.listCounts(db, ids),
        organizations.descendantsOf(db, ids),
      ]);
      return {
        next_cursor: page.next_cursor,
        data: page.data.map((r) => ({
          id: r.id,
          name: r.name,
          slug: r.slug,
          plan: r.plan,
          active: r.active,
          currency: r.currency,
          balance: formatAmount(balances.get(r.id) ?? 0n),
          member_count: memberCounts.get(r.id)?.member_count ?? 0,
          sub_organization_count: grandchildren.filter((g) => g.parent_id === r.id).length,
          created_at: r.created_at.toISOString(),
        })),
      };
    },

    /** Usage of the organization and everything below it over a date range, per organization. */
    async treeUsage(
      ctx: RequestContext,
      idOrSlug: string,
      query: { from?: string; to?: string },
    ): Promise<Static<typeof TreeUsageResponse>> {
      const root = await organizations.load(db, idOrSlug);
      authorize(ctx, ['sub_organizations:read'], root.id);
      const to = query.to ?? today();
      const from = query.from ?? new Date(Date.parse(to) - 29 * DAY_MS).toISOString().slice(0, 10);
      const days = (Date.parse(to) - Date.parse(from)) / DAY_MS;
      if (days < 0) throw invalidField('from', 'must not be after `to`');
      if (days >= MAX_RANGE_DAYS)
        throw invalidField('from', `the range may span at most ${MAX_RANGE_DAYS} days`);
      const tree = [
        { id: root.id, parent_id: root.parent_id, depth: 0 },
        ...(await organizations.descendantsOf(db, [root.id])),
      ];
      const ids = tree.map((n) => n.id);
      const [usage, names] = await Promise.all([
        ledger.usageByOrganization(db, ids, from, to),
        organizations.summaries(db, ids),
      ]);
      const byId = new Map(names.map((n) => [n.id, n]));
      const total = { events: 0n, credits: 0n, tokens_in: 0n, tokens_out: 0n };
      const spend = new Map<string, bigint>();
      const rows = tree.map((n) => {
        const u = usage.get(n.id) ?? { events: 0n, credits: 0n, tokens_in: 0n, tokens_out: 0n, cost: 0n };
        const org = byId.get(n.id);
        const currency = org?.currency ?? 'USD';
        total.events += u.events;
        total.credits += u.credits;
        total.tokens_in += u.tokens_in;
        total.tokens_out += u.tokens_out;
        spend.set(currency, (spend.get(currency) ?? 0n) + u.cost);
        return {
          organization_id: n.id,
          name: org?.name ?? '',
          parent_id: n.parent_id,
          depth: n.depth,
          currency,
          events: Number(u.events),
          credits: formatAmount(u.credits),
          tokens_in: Number(u.tokens_in),
          tokens_out: Number(u.tokens_out),
          spend: formatAmount(u.cost),
        };
      });
      return {
        organization_id: root.id,
        from,
        to,
        organization_count: tree.length,
        total: {
          events: Number(total.events),
          credits: formatAmount(total.credits),
          tokens_in: Number(total.tokens_in),
          tokens_out: Number(total.tokens_out),
          spend: Object.fromEntries([...spend].map(([c, v]) => [c, formatAmount(v)])),
        },
        organizations: rows,
      };
    },

    billing,

    /** The parent caps a sub-organization's monthly spend (null lifts the cap). */
    async setSpendingLimit(
      ctx: RequestContext,
      parentIdOrSlug: string,
      subIdOrSlug: string,
      limit: string | number | null,
    ) {
      const { sub } = await loadPair(ctx, parentIdOrSlug, subIdOrSlug, ['sub_organizations:manage']);
      await ledger.updateSettings(ctx, sub.id, { monthly_spending_limit: limit });
      return billing(ctx, parentIdOrSlug, sub.id);
    },

    /**
     * A sub-organization's monthly spending limit is its parent's to set: a settings change that
     * touches it needs `sub_organizations:manage` on the parent.
     */
    async guardSpendingLimit(
      ctx: RequestContext,
      organizationId: string,
      policy: { monthly_spending_limit?: unknown },
    ) {
      if (policy.monthly_spending_limit === undefined) return;
      const org = await organizations.load(db, organizationId);
      authorizeParentDecision(ctx, org, 'monthly spending limit is', [
        { field: 'monthly_spending_limit', message: 'is set by the parent organization' },
      ]);
    },

    /**
     * Makes a direct sub-organization fully independent: no parent, no inherited oversight, no
     * granted features (its plan decides them), its own plan (free unless given), and none of the
     * parent side's owners and admins among its members (the creator was made its owner), unless
     * kept. Its own members, data and balance stay. It always keeps an owner (409 last_owner).
     *
     * Only the parent's owners (`members:manage_owners` there) or the operator detach: it hands an
     * organization and its balance out of the tree, so an admin could otherwise fund a
     * sub-organization they created (and own) with the parent's credits, detach it keeping
     * themselves, and walk away with both.
     */
    async detach(
      ctx: RequestContext,
      parentIdOrSlug: string,
      subIdOrSlug: string,
      body: { plan?: string | undefined; keep_members?: string[] | undefined },
    ) {
      const { plan } = body;
      const { parent, sub, direct } = await loadPair(ctx, parentIdOrSlug, subIdOrSlug, [
        'sub_organizations:manage',
        'members:manage_owners',
      ]);
      if (!direct)
        throw new AppError(
          'not_a_sub_organization',
          'Only a direct sub-organization can be detached; detach it from its own parent',
        );
      await db.transaction().execute(async (tx) => {
        await organizations.load(tx, sub.id, { forUpdate: true });
        const overseers = (await organizations.ancestryOf(tx, parent.id)).map((n) => n.id);
        const removed = await members.dropOverseers(tx, ctx, sub.id, overseers, body.keep_members ?? []);
        await organizations.setFields(tx, sub.id, { parent_id: null });
        await features.dropGrants(tx, sub.id);
        await plans.restart(tx, ctx, sub.id, (plan ?? 'free') as Parameters<PlansService['restart']>[3]);
        const changes = {
          parent_id: { before: parent.id, after: null },
          ...(removed.length ? { removed_members: { before: removed, after: [] } } : {}),
        };
        await audit.record(tx, ctx, {
          organizationId: sub.id,
          action: 'organization.detached',
          targetType: 'organization',
          targetId: sub.id,
          changes,
        });
        await audit.record(tx, ctx, {
          organizationId: parent.id,
          action: 'sub_organization.detached',
          targetType: 'organization',
          targetId: sub.id,
          changes,
        });
      });
      // The caller's oversight ended with the detach: answer with what it just did, not a read it may no longer make.
      return toView(await organizations.load(db, sub.id));
    },

    /** Switches the session into a sub-organization with `role`, audited in both organizations. */
    async joinAs(ctx: RequestContext, parentIdOrSlug: string, subIdOrSlug: string, role: Role) {
      const { parent, sub } = await loadPair(ctx, parentIdOrSlug, subIdOrSlug, ['sub_organizations:manage']);
      const actor = ctx.actor;
      if (actor.type !== 'user' || !actor.sessionId)
        throw new AppError('forbidden', 'Only a signed-in session can join an organization as a role');
      const sessionId = actor.sessionId;
      const current = await me.activeOrganizationId(ctx).catch(() => parent.id);
      // Joining again from inside keeps the way back to where the first join started.
      const returnTo = actor.joined?.returnTo ?? (current === sub.id ? parent.id : current);
      await db.transaction().execute(async (tx) => {
        await me.join(tx, sessionId, sub.id, role, returnTo);
        for (const organizationId of [sub.id, parent.id])
          await audit.record(tx, ctx, {
            organizationId,
            action: 'session.joined_as',
            targetType: 'organization',
            targetId: sub.id,
            changes: { role: { before: null, after: role } },
          });
      });
      return { organization_id: sub.id, role, return_organization_id: returnTo };
    },

    /** Ends "join as": back to the organization the session was in. */
    async leaveJoin(ctx: RequestContext) {
      const actor = ctx.actor;
      if (actor.type !== 'user' || !actor.sessionId)
        throw new AppError('forbidden', 'Only a signed-in session can join an organization as a role');
      const sessionId = actor.sessionId;
      const joined = await me.joinedOf(sessionId);
      if (!joined) throw new AppError('not_joined', 'This session has not joined an organization as a role');
      const back = joined.returnTo ?? (await organizations.load(db, joined.organizationId)).parent_id;
      await db.transaction().execute(async (tx) => {
        await me.leave(tx, sessionId, back ?? joined.organizationId);
        await audit.record(tx, ctx, {
          organizationId: joined.organizationId,
          action: 'session.left',
          targetType: 'organization',
          targetId: joined.organizationId,
          changes: { role: { before: joined.role, after: null } },
        });
      });
      return { organization_id: joined.organizationId, role: joined.role, return_organization_id: back };
    },
  };
}

export type SubOrganizationsService = ReturnType<typeof createSubOrganizationsService>;

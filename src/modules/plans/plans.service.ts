import type { PlanChanges } from '../../config.js';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, authorizeParentDecision, type RequestContext } from '../../lib/authz.js';
import { formatAmount } from '../../lib/money.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { FeaturesService } from './features.service.js';
import {
  FEATURE_KEYS,
  FEATURES,
  hasFee,
  LIMITS,
  type Limit,
  maxOverdraftOf,
  PLAN_KEYS,
  PLANS,
  type Plan,
  type PlanKey,
  planLifting,
  planLiftingOverdraft,
  planOf,
} from './plans.catalog.js';
import * as repo from './plans.repo.js';

export type BillingCycle = 'monthly' | 'annual';

/** The same day of the month `months` later, clamped to the month's last day (Jan 31 -> Feb 28). */
export function addMonths(date: Date, months: number): Date {
  const d = new Date(date);
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + months);
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, last));
  return d;
}

export function periodEnd(start: Date, cycle: string): Date {
  return addMonths(start, cycle === 'annual' ? 12 : 1);
}

/** How many of a limited thing an organization has now. */
export type Counter = (ex: Executor, organizationId: string) => Promise<number>;
/**
 * Run in the transaction that changed an organization's plan (the ledger sets its usage allowance
 * and lowers an overdraft limit above the plan's cap); `ctx` is who changed it (absent at creation).
 */
export type PlanChanged = (tx: Tx, organizationId: string, plan: Plan, ctx?: RequestContext) => Promise<void>;

const SYSTEM_CTX: RequestContext = {
  actor: { type: 'operator', id: 'system' },
  requestId: 'subscription-renewal',
};

/**
 * Plans and subscriptions. Invariants: every organization has one subscription; a plan change
 * that would leave usage above the new plan's limits is refused; a limited resource is added
 * only while the count, read under the subscription's row lock, is below the plan's limit.
 */
export function createPlansService(deps: {
  db: Db;
  audit: AuditService;
  organizations: OrganizationsService;
  features: FeaturesService;
  counters: Partial<Record<Limit, Counter>>;
  planChanged: PlanChanged[];
  /** PLAN_CHANGES: `operator` keeps plans with a fee the operator's to give; `owners` lets subscription:manage change any. */
  planChanges?: PlanChanges;
}) {
  const { db, audit, organizations, features } = deps;

  /**
   * Without a payment provider nothing is charged, so under PLAN_CHANGES=operator (the default) a
   * plan with a fee is the operator's to give: others may only move to a plan without one (Free,
   * Pay As You Go) or cancel. 403 plan_change_requires_operator, naming `plan`.
   */
  function assertMayChoose(ctx: RequestContext, to: PlanKey) {
    if (deps.planChanges === 'owners' || ctx.actor.type === 'operator' || !hasFee(PLANS[to])) return;
    throw new AppError(
      'plan_change_requires_operator',
      `The ${PLANS[to].name} plan has a fee: the platform operator puts organizations on it (once paid)`,
      { errors: [{ field: 'plan', message: 'is a plan with a fee, given by the platform operator' }] },
    );
  }

  async function usage(ex: Executor, organizationId: string): Promise<Record<Limit, number>> {
    const counts = await Promise.all(LIMITS.map((l) => deps.counters[l]?.(ex, organizationId) ?? 0));
    return Object.fromEntries(LIMITS.map((l, i) => [l, counts[i] ?? 0])) as Record<Limit, number>;
  }

  async function view(ex: Executor, organizationId: string) {
    const [org, sub] = await Promise.all([
      organizations.load(ex, organizationId),
      repo.findSubscription(ex, organizationId),
    ]);
    if (!sub) throw new Error(`organization ${organizationId} has no subscription`);
    const plan = planOf(org.plan);
    const used = await usage(ex, organizationId);
    return {
      organization_id: organizationId,
      plan: plan.key,
      plan_name: plan.name,
      billing_cycle: sub.billing_cycle as BillingCycle,
      price: plan.price[sub.billing_cycle as BillingCycle] ?? plan.price.monthly,
      currency: 'USD',
      status: sub.status as 'active' | 'canceled',
      cancel_at_period_end: sub.cancel_at_period_end,
      current_period_start: sub.current_period_start.toISOString(),
      current_period_end: sub.current_period_end.toISOString(),
      canceled_at: sub.canceled_at?.toISOString() ?? null,
      limits: Object.fromEntries(LIMITS.map((l) => [l, { used: used[l], max: plan.limits[l] }])) as Record<
        Limit,
        { used: number; max: number | null }
      >,
      features: [...plan.features],
    };
  }

  /** Moves the organization to `plan` in `tx`: the plan column, its limits in the ledger, features below. */
  async function applyPlan(tx: Tx, ctx: RequestContext, organizationId: string, from: PlanKey, to: PlanKey) {
    await organizations.setFields(tx, organizationId, { plan: to });
    for (const hook of deps.planChanged) await hook(tx, organizationId, PLANS[to], ctx);
    const lost = PLANS[from].features.filter((f) => !PLANS[to].features.includes(f));
    await features.cascade(tx, ctx, organizationId, lost);
  }

  /**
   * Puts the organization on `to` from now, for a new period: refused (409
   * plan_downgrade_blocked, listing each limit) while usage exceeds the plan's limits.
   */
  async function switchPlan(
    tx: Tx,
    ctx: RequestContext,
    organizationId: string,
    to: PlanKey,
    cycle: BillingCycle,
  ): Promise<PlanKey> {
    const org = await organizations.load(tx, organizationId);
    const used = await usage(tx, organizationId);
    const over = LIMITS.flatMap((limit) => {
      const max = PLANS[to].limits[limit];
      return max !== null && used[limit] > max ? [{ limit, used: used[limit], max }] : [];
    });
    if (over.length)
      throw new AppError(
        'plan_downgrade_blocked',
        `The ${PLANS[to].name} plan allows less than the organization uses: ${over
          .map((o) => `${o.limit.replace(/_/g, ' ')} ${o.used} > ${o.max}`)
          .join(', ')}`,
        { extra: { plan: to, exceeded: over } },
      );
    const now = new Date();
    await repo.updateSubscription(tx, organizationId, {
      billing_cycle: cycle,
      status: 'active',
      cancel_at_period_end: false,
      canceled_at: null,
      current_period_start: now,
      current_period_end: periodEnd(now, cycle),
    });
    const from = planOf(org.plan).key;
    if (from !== to) await applyPlan(tx, ctx, organizationId, from, to);
    return from;
  }

  /**
   * Who may change a subscription: `subscription:manage` on a top-level organization; on a
   * sub-organization its parent decides (`sub_organizations:manage` there), as it decides its
   * features and spending limit. The internal organization stays on Enterprise.
   */
  async function loadForChange(ctx: RequestContext, idOrSlug: string) {
    const org = await organizations.load(db, idOrSlug);
    authorize(ctx, ['subscription:manage'], org.id);
    if (org.is_default)
      throw new AppError(
        'default_organization_protected',
        'The default internal organization stays on the Enterprise plan',
      );
    authorizeParentDecision(ctx, org, 'plan is');
    return org;
  }

  return {
    /** Gives a new organization its subscription (run in the creating transaction). */
    async onOrganizationCreated(tx: Tx, organizationId: string) {
      const org = await organizations.load(tx, organizationId);
      const now = new Date();
      await repo.insertSubscription(tx, {
        organization_id: organizationId,
        billing_cycle: 'monthly',
        current_period_start: now,
        current_period_end: periodEnd(now, 'monthly'),
      });
      for (const hook of deps.planChanged) await hook(tx, organizationId, planOf(org.plan));
    },

    /**
     * Refuses (402 plan_limit_exceeded, naming the limit and the plan that lifts it) unless
     * `adding` more of `limit` fit the organization's plan. Call it in the adding transaction:
     * it locks the subscription row, so concurrent adds to one organization take turns.
     */
    async assertCapacity(tx: Tx, organizationId: string, limit: Limit, adding = 1): Promise<void> {
      await repo.findSubscription(tx, organizationId, { forUpdate: true });
      const org = await organizations.load(tx, organizationId);
      const plan = planOf(org.plan);
      const max = plan.limits[limit];
      if (max === null) return;
      const used = (await deps.counters[limit]?.(tx, organizationId)) ?? 0;
      if (used + adding <= max) return;
      const upgrade = planLifting(plan.key, limit, used + adding);
      throw new AppError(
        'plan_limit_exceeded',
        `The ${plan.name} plan allows ${max} ${limit.replace(/_/g, ' ')}; ${used} in use` +
          (upgrade ? `. The ${PLANS[upgrade].name} plan lifts it` : ''),
        { extra: { limit, plan: plan.key, max, used, upgrade_to: upgrade } },
      );
    },

    /**
     * Refuses (402 plan_limit_exceeded, `limit: "overdraft_limit"`, naming the field) an overdraft
     * limit above the organization's plan's cap. `max` and `requested` are decimal strings.
     */
    async assertOverdraftLimit(ex: Executor, organizationId: string, requested: bigint): Promise<void> {
      const plan = planOf((await organizations.load(ex, organizationId)).plan);
      const max = maxOverdraftOf(plan);
      if (max === null || requested <= max) return;
      const upgrade = planLiftingOverdraft(plan.key, requested);
      throw new AppError(
        'plan_limit_exceeded',
        `The ${plan.name} plan allows an overdraft limit of at most ${formatAmount(max)}` +
          (upgrade ? `. The ${PLANS[upgrade].name} plan lifts it` : ''),
        {
          errors: [
            {
              field: 'overdraft_limit',
              message: `must be at most ${formatAmount(max)} on the ${plan.name} plan`,
            },
          ],
          extra: {
            limit: 'overdraft_limit',
            plan: plan.key,
            max: formatAmount(max),
            requested: formatAmount(requested),
            upgrade_to: upgrade,
          },
        },
      );
    },

    /**
     * Refuses (402 plan_limit_exceeded, `limit: "organizations"`) a user one more top-level
     * organization than the largest allowance among the plans of those they own (Free's when
     * they own none). Sub-organizations and the operator are not counted; run before the insert.
     */
    async assertOrganizationCapacity(tx: Tx, ctx: RequestContext): Promise<void> {
      if (ctx.actor.type !== 'user') return;
      const { roles, oversight } = ctx.actor;
      const ownedIds = [...roles].filter(([id, r]) => r === 'owner' && !oversight?.has(id)).map(([id]) => id);
      const owned = await organizations.topLevelAmong(tx, ownedIds);
      let best: Plan = PLANS.free;
      for (const o of owned) {
        const p = planOf(o.plan);
        if (p.limits.organizations === null) return;
        if (best.limits.organizations !== null && p.limits.organizations > best.limits.organizations)
          best = p;
      }
      const max = best.limits.organizations;
      if (max === null || owned.length < max) return;
      const upgrade = planLifting(best.key, 'organizations', owned.length + 1);
      throw new AppError(
        'plan_limit_exceeded',
        `The ${best.name} plan allows an account ${max} organizations of its own; you own ${owned.length}` +
          (upgrade ? `. The ${PLANS[upgrade].name} plan lifts it` : ''),
        { extra: { limit: 'organizations', plan: best.key, max, used: owned.length, upgrade_to: upgrade } },
      );
    },

    /** The subscription view without a permission check (the caller made its own). */
    viewOf: view,

    /** The catalogue: every plan with its price, limits and features, and the feature registry. */
    plans() {
      return {
        data: PLAN_KEYS.map((k) => ({ ...PLANS[k], features: [...PLANS[k].features] })),
        features: FEATURE_KEYS.map((key) => ({ key, ...FEATURES[key] })),
      };
    },

    async get(ctx: RequestContext, idOrSlug: string) {
      const org = await organizations.load(db, idOrSlug);
      authorize(ctx, ['subscription:read'], org.id);
      return view(db, org.id);
    },

    /**
     * Upgrades or downgrades at once; a new period starts now. A downgrade is refused (409
     * plan_downgrade_blocked) while usage exceeds the lower plan's limits, listing each.
     */
    async change(
      ctx: RequestContext,
      idOrSlug: string,
      input: { plan: PlanKey; billing_cycle?: BillingCycle },
    ) {
      const found = await loadForChange(ctx, idOrSlug);
      // A sub-organization's plan is within its parent's (checked below), which the parent has.
      if (found.parent_id === null) assertMayChoose(ctx, input.plan);
      await db.transaction().execute(async (tx) => {
        const sub = await repo.findSubscription(tx, found.id, { forUpdate: true });
        const org = await organizations.load(tx, found.id);
        if (!sub) throw new Error(`organization ${found.id} has no subscription`);
        const from = planOf(org.plan).key;
        if (org.parent_id !== null) {
          const parent = await organizations.load(tx, org.parent_id);
          if (PLAN_KEYS.indexOf(input.plan) > PLAN_KEYS.indexOf(planOf(parent.plan).key))
            throw invalidField('plan', `cannot be above the parent organization's plan (${parent.plan})`);
        }
        const cycle = input.billing_cycle ?? (sub.billing_cycle as BillingCycle);
        if (from === input.plan && cycle === sub.billing_cycle && sub.status === 'active') return;
        await switchPlan(tx, ctx, org.id, input.plan, cycle);
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action:
            PLAN_KEYS.indexOf(input.plan) >= PLAN_KEYS.indexOf(from)
              ? 'subscription.upgraded'
              : 'subscription.downgraded',
          targetType: 'subscription',
          targetId: org.id,
          changes: {
            plan: { before: from, after: input.plan },
            ...(cycle !== sub.billing_cycle
              ? { billing_cycle: { before: sub.billing_cycle, after: cycle } }
              : {}),
          },
        });
      });
      return view(db, found.id);
    },

    /** Cancels at the end of the current period: the plan stays until then, then Free. */
    async cancel(ctx: RequestContext, idOrSlug: string) {
      const found = await loadForChange(ctx, idOrSlug);
      await db.transaction().execute(async (tx) => {
        const sub = await repo.findSubscription(tx, found.id, { forUpdate: true });
        const org = await organizations.load(tx, found.id);
        if (!sub) throw new Error(`organization ${found.id} has no subscription`);
        if (org.plan === 'free')
          throw new AppError('subscription_not_cancelable', 'The Free plan has nothing to cancel');
        if (sub.cancel_at_period_end)
          throw new AppError('subscription_not_cancelable', 'The subscription is already set to cancel');
        await repo.updateSubscription(tx, org.id, { cancel_at_period_end: true, canceled_at: new Date() });
        await audit.record(tx, ctx, {
          organizationId: org.id,
          action: 'subscription.canceled',
          targetType: 'subscription',
          targetId: org.id,
          changes: { cancel_at_period_end: { before: false, after: true } },
        });
      });
      return view(db, found.id);
    },

    /** Undoes a cancellation before the period ends. */
    async reactivate(ctx: RequestContext, idOrSlug: string) {
      const found = await loadForChange(ctx, idOrSlug);
      await db.transaction().execute(async (tx) => {
        const sub = await repo.findSubscription(tx, found.id, { forUpdate: true });
        if (!sub?.cancel_at_period_end)
          throw new AppError('subscription_not_canceled', 'The subscription is not set to cancel');
        await repo.updateSubscription(tx, found.id, { cancel_at_period_end: false, canceled_at: null });
        await audit.record(tx, ctx, {
          organizationId: found.id,
          action: 'subscription.reactivated',
          targetType: 'subscription',
          targetId: found.id,
          changes: { cancel_at_period_end: { before: true, after: false } },
        });
      });
      return view(db, found.id);
    },

    /**
     * Ends the periods that are over: a subscription set to cancel falls to Free (status
     * `canceled`), any other renews for another cycle. Safe to run from every process.
     */
    async renewDue(now = new Date()): Promise<number> {
      let done = 0;
      for (;;) {
        const n = await db.transaction().execute(async (tx) => {
          const due = await repo.findDueSubscriptions(tx, now, 100);
          for (const sub of due) {
            const org = await organizations.load(tx, sub.organization_id, { includeDeleted: true });
            let start = sub.current_period_end;
            if (sub.cancel_at_period_end) {
              const from = planOf(org.plan).key;
              await repo.updateSubscription(tx, org.id, {
                status: 'canceled',
                cancel_at_period_end: false,
                billing_cycle: 'monthly',
                current_period_start: start,
                current_period_end: periodEnd(start, 'monthly'),
              });
              if (from !== 'free') await applyPlan(tx, SYSTEM_CTX, org.id, from, 'free');
              await audit.record(tx, SYSTEM_CTX, {
                organizationId: org.id,
                action: 'subscription.ended',
                targetType: 'subscription',
                targetId: org.id,
                changes: { plan: { before: from, after: 'free' } },
              });
              continue;
            }
            let end = periodEnd(start, sub.billing_cycle);
            // A period long past (the service was down): catch up to the one that contains now.
            while (end <= now) {
              start = end;
              end = periodEnd(start, sub.billing_cycle);
            }
            await repo.updateSubscription(tx, org.id, {
              current_period_start: start,
              current_period_end: end,
            });
          }
          return due.length;
        });
        done += n;
        if (n < 100) return done;
      }
    },

    /** A detached organization's own subscription starts over on `to`, refused if usage exceeds it. */
    async restart(tx: Tx, ctx: RequestContext, organizationId: string, to: PlanKey) {
      assertMayChoose(ctx, to);
      await repo.findSubscription(tx, organizationId, { forUpdate: true });
      await switchPlan(tx, ctx, organizationId, to, 'monthly');
    },
  };
}

export type PlansService = ReturnType<typeof createPlansService>;

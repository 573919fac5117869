/**
 * The plans module owns `subscriptions` and applies the plan catalogue (plans.catalog.ts): plan
 * changes, cancellation and renewal, and the plan's limits (plans.limits.ts). The plan column is
 * the organizations module's, set through its service. It publishes subscription.changed in the
 * transaction that moves an organization to a plan.
 */
import type { PlanChanges } from '../../config.js';
import type { Db, Executor, Tx } from '../../db/client.js';
import { authorize, authorizeParentDecision, type RequestContext } from '../../lib/authz.js';
import type { EventBus } from '../../lib/events.js';
import { AppError, invalidField } from '../../lib/problem.js';
import type { AuditService } from '../audit/audit.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import type { FeaturesService } from './features.service.js';
import {
  FEATURE_KEYS,
  FEATURES,
  LIMITS,
  type Limit,
  PLAN_KEYS,
  PLANS,
  type PlanKey,
  planOf,
} from './plans.catalog.js';
import { type Counter, createPlanLimits } from './plans.limits.js';
import * as repo from './plans.repo.js';

export type { Counter } from './plans.limits.js';

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
  /** How much of each limit an organization uses, from the modules that own the things (`hub.limits`). */
  counters: Partial<Record<Limit, Counter>>;
  events: EventBus;
  /** The organizations where the user is an owner (from the members module). */
  ownedBy: (ex: Executor, userId: string) => Promise<string[]>;
  /** PLAN_CHANGES: `operator` keeps plans with a fee the operator's to give; `owners` lets subscription:manage change any. */
  planChanges?: PlanChanges;
}) {
  const { db, audit, organizations, features } = deps;

  const limits = createPlanLimits(deps);
  const { assertMayChoose } = limits;

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
    await deps.events.publish(
      tx,
      { type: 'subscription.changed', organization_id: organizationId, from, to },
      ctx,
    );
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
      await deps.events.publish(tx, {
        type: 'subscription.changed',
        organization_id: organizationId,
        from: null,
        to: planOf(org.plan).key,
      });
    },

    /** The plan's refusals (plans.limits.ts), checked by the modules that add limited things. */
    assertCapacity: limits.assertCapacity,
    assertOverdraftLimit: limits.assertOverdraftLimit,
    assertOrganizationCapacity: limits.assertOrganizationCapacity,

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

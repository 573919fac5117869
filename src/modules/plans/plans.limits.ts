/**
 * The plan's refusals: a plan with a fee chosen without the operator, one more of a limited thing
 * than the plan allows, an overdraft limit above the plan's cap, one more organization than the
 * account's plans allow. Each check that counts reads its count under a lock that every adder
 * of the same thing takes, so concurrent adds take turns instead of all passing.
 */
import type { PlanChanges } from '../../config.js';
import type { Executor, Tx } from '../../db/client.js';
import type { RequestContext } from '../../lib/authz.js';
import { formatAmount } from '../../lib/money.js';
import { AppError } from '../../lib/problem.js';
import { lockAccount } from '../auth/auth.service.js';
import type { OrganizationsService } from '../organizations/organizations.service.js';
import {
  hasFee,
  type Limit,
  maxOverdraftOf,
  PLANS,
  type Plan,
  type PlanKey,
  planLifting,
  planLiftingOverdraft,
  planOf,
} from './plans.catalog.js';
import * as repo from './plans.repo.js';

/** How many of a limited thing an organization has now. */
export type Counter = (ex: Executor, organizationId: string) => Promise<number>;

/**
 * Refuses (402 plan_limit_exceeded, `limit: "overdraft_limit"`, naming the field) an overdraft
 * limit above `plan`'s cap. The ledger calls it again under the organization's `credits` row
 * lock, which a plan change takes too, so a downgrade cannot slip between check and write.
 */
export function assertOverdraftWithin(plan: Plan, requested: bigint): void {
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
}

export function createPlanLimits(deps: {
  organizations: OrganizationsService;
  counters: Partial<Record<Limit, Counter>>;
  /** The organizations where the user is an owner (from the members module). */
  ownedBy: (ex: Executor, userId: string) => Promise<string[]>;
  planChanges?: PlanChanges | undefined;
}) {
  const { organizations } = deps;
  return {
    /**
     * Without a payment provider nothing is charged, so under PLAN_CHANGES=operator (the default) a
     * plan with a fee is the operator's to give: others may only move to a plan without one (Free,
     * Pay As You Go) or cancel. 403 plan_change_requires_operator, naming `plan`.
     */
    assertMayChoose(ctx: RequestContext, to: PlanKey): void {
      if (deps.planChanges === 'owners' || ctx.actor.type === 'operator' || !hasFee(PLANS[to])) return;
      throw new AppError(
        'plan_change_requires_operator',
        `The ${PLANS[to].name} plan has a fee: the platform operator puts organizations on it (once paid)`,
        { errors: [{ field: 'plan', message: 'is a plan with a fee, given by the platform operator' }] },
      );
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
     * limit above the organization's plan's cap, as it reads now: a quick refusal before the
     * ledger's transaction, which checks again under its lock (assertOverdraftWithin).
     */
    async assertOverdraftLimit(ex: Executor, organizationId: string, requested: bigint): Promise<void> {
      assertOverdraftWithin(planOf((await organizations.load(ex, organizationId)).plan), requested);
    },

    /**
     * Refuses (402 plan_limit_exceeded, `limit: "organizations"`) a user one more top-level
     * organization than the largest allowance among the plans of those they own (Free's when
     * they own none). Sub-organizations and the operator are not counted. Run in the creating
     * transaction before the insert: it locks the user's row, so one account's creates take
     * turns, and counts what they own from the database, not from the request's roles (read
     * before the others committed).
     */
    async assertOrganizationCapacity(tx: Tx, ctx: RequestContext): Promise<void> {
      if (ctx.actor.type !== 'user') return;
      await lockAccount(tx, ctx.actor.id);
      const owned = await organizations.topLevelAmong(tx, await deps.ownedBy(tx, ctx.actor.id));
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
  };
}

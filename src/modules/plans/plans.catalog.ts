import { nonNegativeAmount } from '../../lib/money.js';

/**
 * Plans and features, as data. A plan's limits are `null` when unlimited; a feature is on for an
 * organization when its plan includes it and, for a sub-organization, its parent granted it.
 */
export const FEATURES = {
  api_access: { name: 'API access', description: 'Create API keys and call the API' },
  allow_overdraft: {
    name: 'Allow overdraft',
    description: 'Spend beyond the balance, down to the overdraft limit',
  },
  workflows: { name: 'Workflows', description: 'Create and run workflows' },
  broadcasts: { name: 'Broadcasts', description: 'Send broadcasts' },
  analytics: { name: 'Analytics', description: 'Usage analytics per day and per agent' },
  custom_branding: { name: 'Customization', description: 'Own name, logo and colour in mail and dashboard' },
  custom_domains: { name: 'Custom domains', description: 'Verified domains of your own' },
  sub_organizations: {
    name: 'Sub-organizations',
    description: 'Separate workspaces under this organization',
  },
} as const;

export type Feature = keyof typeof FEATURES;
export const FEATURE_KEYS = Object.keys(FEATURES) as Feature[];

/** What an organization's plan counts in the organization itself. */
export const LIMITS = ['agents', 'members', 'sub_organizations', 'monthly_usage_events'] as const;
export type Limit = (typeof LIMITS)[number];
/**
 * What a plan allows a user account: `organizations`, the top-level organizations one user may
 * own, is the largest allowance among the plans of the top-level organizations they own.
 */
export const ACCOUNT_LIMITS = ['organizations'] as const;
export type AccountLimit = (typeof ACCOUNT_LIMITS)[number];
export type PlanLimit = Limit | AccountLimit;

/** In order, lowest first: "above" (a sub-organization's plan, upgrade_to) reads this order. */
export const PLAN_KEYS = ['free', 'pay_as_you_go', 'starter', 'growth', 'business', 'enterprise'] as const;
export type PlanKey = (typeof PLAN_KEYS)[number];

export interface Plan {
  key: PlanKey;
  name: string;
  /** Price per billing cycle, decimal strings in USD. */
  price: { monthly: string; annual: string };
  limits: Record<PlanLimit, number | null>;
  /** The largest overdraft limit an organization on the plan may set, in credits (null: no cap). */
  max_overdraft_limit: string | null;
  features: readonly Feature[];
}

const base: Feature[] = ['api_access', 'allow_overdraft'];

export const PLANS: Record<PlanKey, Plan> = {
  free: {
    key: 'free',
    name: 'Free',
    price: { monthly: '0.00', annual: '0.00' },
    limits: { agents: 5, members: 5, sub_organizations: 0, monthly_usage_events: 10_000, organizations: 3 },
    max_overdraft_limit: '100.00',
    features: base,
  },
  // Credits only: no fee, no monthly allowance of events (every event is paid for in credits),
  // and an overdraft capped at zero (what is spent was bought first). Otherwise Free's limits.
  pay_as_you_go: {
    key: 'pay_as_you_go',
    name: 'Pay As You Go',
    price: { monthly: '0.00', annual: '0.00' },
    limits: { agents: 5, members: 5, sub_organizations: 0, monthly_usage_events: null, organizations: 3 },
    max_overdraft_limit: '0.00',
    features: base,
  },
  starter: {
    key: 'starter',
    name: 'Starter',
    price: { monthly: '29.00', annual: '290.00' },
    limits: {
      agents: 20,
      members: 10,
      sub_organizations: 0,
      monthly_usage_events: 100_000,
      organizations: 5,
    },
    max_overdraft_limit: '1000.00',
    features: [...base, 'workflows', 'analytics'],
  },
  growth: {
    key: 'growth',
    name: 'Growth',
    price: { monthly: '99.00', annual: '990.00' },
    limits: {
      agents: 100,
      members: 50,
      sub_organizations: 0,
      monthly_usage_events: 1_000_000,
      organizations: 10,
    },
    max_overdraft_limit: '10000.00',
    features: [...base, 'workflows', 'analytics', 'broadcasts', 'custom_branding'],
  },
  business: {
    key: 'business',
    name: 'Business',
    price: { monthly: '499.00', annual: '4990.00' },
    limits: {
      agents: 500,
      members: 250,
      sub_organizations: 50,
      monthly_usage_events: 10_000_000,
      organizations: 25,
    },
    max_overdraft_limit: '100000.00',
    features: [
      ...base,
      'workflows',
      'analytics',
      'broadcasts',
      'custom_branding',
      'custom_domains',
      'sub_organizations',
    ],
  },
  enterprise: {
    key: 'enterprise',
    name: 'Enterprise',
    price: { monthly: '1999.00', annual: '19990.00' },
    limits: {
      agents: null,
      members: null,
      sub_organizations: null,
      monthly_usage_events: null,
      organizations: null,
    },
    max_overdraft_limit: null,
    features: FEATURE_KEYS,
  },
};

export function planOf(key: string): Plan {
  return PLANS[key as PlanKey] ?? PLANS.free;
}

/** The first plan above `current` whose limit fits `needed` (null: none does). */
export function planLifting(current: PlanKey, limit: PlanLimit, needed: number): PlanKey | null {
  for (const key of PLAN_KEYS.slice(PLAN_KEYS.indexOf(current) + 1)) {
    const max = PLANS[key].limits[limit];
    if (max === null || max >= needed) return key;
  }
  return null;
}

/** The first plan, from the one that has exactly `max` (else from the bottom), whose `limit` is above `max` (null: none is). */
export function planAbove(limit: Limit, max: bigint | number): PlanKey | null {
  // Searched from the plan that has this very limit (the organization's, as far as the limit
  // tells), so that a Starter organization is not pointed down to Pay As You Go.
  const from = PLAN_KEYS.findIndex((k) => {
    const m = PLANS[k].limits[limit];
    return m !== null && BigInt(m) === BigInt(max);
  });
  const key = PLAN_KEYS.slice(Math.max(0, from)).find((k) => {
    const m = PLANS[k].limits[limit];
    return m === null || BigInt(m) > BigInt(max);
  });
  return key ?? null;
}

/** The first plan above `current` whose overdraft cap is at least `needed` micro-credits (null: none). */
export function planLiftingOverdraft(current: PlanKey, needed: bigint): PlanKey | null {
  for (const key of PLAN_KEYS.slice(PLAN_KEYS.indexOf(current) + 1)) {
    const max = maxOverdraftOf(PLANS[key]);
    if (max === null || max >= needed) return key;
  }
  return null;
}

/** The plan's overdraft cap in micro-credits (null: none). */
export function maxOverdraftOf(plan: Plan): bigint | null {
  return plan.max_overdraft_limit === null
    ? null
    : nonNegativeAmount('max_overdraft_limit', plan.max_overdraft_limit);
}

/** Whether a plan carries a subscription fee (so that, without a payment provider, the operator gives it). */
export function hasFee(plan: Plan): boolean {
  return !/^0+(\.0+)?$/.test(plan.price.monthly) || !/^0+(\.0+)?$/.test(plan.price.annual);
}

/** The first plan, from the bottom, that includes `feature`. */
export function planIncluding(feature: Feature): PlanKey {
  return PLAN_KEYS.find((k) => PLANS[k].features.includes(feature)) ?? 'enterprise';
}

/** Refuses (402 plan_limit_exceeded) unless one more of `limit` fits the organization's plan; run in the adding transaction. */
export type CapacityCheck = (
  tx: import('../../db/client.js').Tx,
  organizationId: string,
  limit: Limit,
) => Promise<void>;

/** Sub-organizations nest at most this many levels below their top-level organization. */
export const MAX_DEPTH = 5;

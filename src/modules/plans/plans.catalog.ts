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

export const LIMITS = ['agents', 'members', 'sub_organizations', 'monthly_usage_events'] as const;
export type Limit = (typeof LIMITS)[number];

export const PLAN_KEYS = ['free', 'starter', 'growth', 'business', 'enterprise'] as const;
export type PlanKey = (typeof PLAN_KEYS)[number];

export interface Plan {
  key: PlanKey;
  name: string;
  /** Price per billing cycle, decimal strings in USD. */
  price: { monthly: string; annual: string };
  limits: Record<Limit, number | null>;
  features: readonly Feature[];
}

const base: Feature[] = ['api_access', 'allow_overdraft'];

export const PLANS: Record<PlanKey, Plan> = {
  free: {
    key: 'free',
    name: 'Free',
    price: { monthly: '0.00', annual: '0.00' },
    limits: { agents: 5, members: 5, sub_organizations: 0, monthly_usage_events: 10_000 },
    features: base,
  },
  starter: {
    key: 'starter',
    name: 'Starter',
    price: { monthly: '29.00', annual: '290.00' },
    limits: { agents: 20, members: 10, sub_organizations: 0, monthly_usage_events: 100_000 },
    features: [...base, 'workflows', 'analytics'],
  },
  growth: {
    key: 'growth',
    name: 'Growth',
    price: { monthly: '99.00', annual: '990.00' },
    limits: { agents: 100, members: 50, sub_organizations: 0, monthly_usage_events: 1_000_000 },
    features: [...base, 'workflows', 'analytics', 'broadcasts', 'custom_branding'],
  },
  business: {
    key: 'business',
    name: 'Business',
    price: { monthly: '499.00', annual: '4990.00' },
    limits: { agents: 500, members: 250, sub_organizations: 50, monthly_usage_events: 10_000_000 },
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
    limits: { agents: null, members: null, sub_organizations: null, monthly_usage_events: null },
    features: FEATURE_KEYS,
  },
};

export function planOf(key: string): Plan {
  return PLANS[key as PlanKey] ?? PLANS.free;
}

/** The first plan above `current` whose limit fits `needed` (null: none does). */
export function planLifting(current: PlanKey, limit: Limit, needed: number): PlanKey | null {
  for (const key of PLAN_KEYS.slice(PLAN_KEYS.indexOf(current) + 1)) {
    const max = PLANS[key].limits[limit];
    if (max === null || max >= needed) return key;
  }
  return null;
}

/** The smallest plan whose `limit` is above `max` (null: none is). */
export function planAbove(limit: Limit, max: bigint | number): PlanKey | null {
  const key = PLAN_KEYS.find((k) => {
    const m = PLANS[k].limits[limit];
    return m === null || BigInt(m) > BigInt(max);
  });
  return key ?? null;
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

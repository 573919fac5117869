import { Type } from 'typebox';
import { Nullable } from '../../lib/schema.js';
import { ACCOUNT_LIMITS, FEATURE_KEYS, LIMITS, PLAN_KEYS } from './plans.catalog.js';

export const FeatureKey = Type.Union(
  FEATURE_KEYS.map((f) => Type.Literal(f)),
  { description: 'A feature of the registry (GET /api/plans lists them)' },
);
export const PlanKey = Type.Union(
  PLAN_KEYS.map((p) => Type.Literal(p)),
  { description: 'free, pay_as_you_go, starter, growth, business or enterprise' },
);
const Cycle = Type.Union([Type.Literal('monthly'), Type.Literal('annual')]);

const Limits = Type.Object(
  Object.fromEntries([...LIMITS, ...ACCOUNT_LIMITS].map((l) => [l, Nullable(Type.Integer())])) as Record<
    (typeof LIMITS)[number] | (typeof ACCOUNT_LIMITS)[number],
    ReturnType<typeof Nullable<ReturnType<typeof Type.Integer>>>
  >,
  {
    description:
      'null: unlimited. organizations: the top-level organizations one account may own (the largest allowance among the plans of those it owns)',
  },
);

export const PlansResponse = Type.Object({
  data: Type.Array(
    Type.Object({
      key: Type.String(),
      name: Type.String(),
      price: Type.Object({ monthly: Type.String(), annual: Type.String() }, { description: 'USD' }),
      limits: Limits,
      max_overdraft_limit: Nullable(
        Type.String({
          description: 'The largest overdraft_limit an organization on it may set; null: no cap',
        }),
      ),
      features: Type.Array(Type.String()),
    }),
  ),
  features: Type.Array(Type.Object({ key: Type.String(), name: Type.String(), description: Type.String() })),
});

const Usage = Type.Object({ used: Type.Integer(), max: Nullable(Type.Integer()) });
export const SubscriptionResponse = Type.Object({
  organization_id: Type.String(),
  plan: Type.String(),
  plan_name: Type.String(),
  billing_cycle: Cycle,
  price: Type.String({ description: 'Per billing cycle' }),
  currency: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('canceled')], {
    description: 'canceled: a paid plan ended by cancellation; the organization is on Free',
  }),
  cancel_at_period_end: Type.Boolean(),
  current_period_start: Type.String({ format: 'date-time' }),
  current_period_end: Type.String({ format: 'date-time' }),
  canceled_at: Nullable(Type.String({ format: 'date-time' })),
  limits: Type.Object(
    Object.fromEntries(LIMITS.map((l) => [l, Usage])) as Record<(typeof LIMITS)[number], typeof Usage>,
  ),
  features: Type.Array(Type.String(), { description: "The plan's features" }),
});

export const ChangePlanBody = Type.Object(
  { plan: PlanKey, billing_cycle: Type.Optional(Cycle) },
  { additionalProperties: false },
);

export const FeaturesResponse = Type.Object({
  organization_id: Type.String(),
  plan: Type.String(),
  enabled: Type.Array(Type.String(), { description: 'The effective features' }),
  features: Type.Array(
    Type.Object({
      key: Type.String(),
      name: Type.String(),
      description: Type.String(),
      enabled: Type.Boolean({ description: 'in the plan, granted by the parent, and the parent has it' }),
      in_plan: Type.Boolean(),
      granted: Nullable(Type.Boolean({ description: 'null for a top-level organization' })),
      parent_has: Nullable(Type.Boolean({ description: 'null for a top-level organization' })),
    }),
  ),
});

export const SetFeaturesBody = Type.Object(
  {
    features: Type.Array(FeatureKey, {
      maxItems: FEATURE_KEYS.length,
      description:
        'Everything the sub-organization is granted; what is left out is revoked, all the way down',
    }),
  },
  { additionalProperties: false },
);

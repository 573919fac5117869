import { Type } from 'typebox';
import { PageQuery, PageResponse } from '../../lib/pagination.js';
import { DayString, DecimalInput, DisplayName, FreeText, Nullable } from '../../lib/schema.js';
import { SLUG_MAX, SLUG_PATTERN } from '../../lib/slug.js';
import { TransactionResponse } from '../ledger/ledger.schema.js';
import { CURRENCIES } from '../organizations/organizations.schema.js';
import { FEATURE_KEYS } from '../plans/plans.catalog.js';
import { FeatureKey, PlanKey } from '../plans/plans.schema.js';

export const SubOrganizationParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100, description: 'The parent organization (id or slug)' }),
  subId: Type.String({ minLength: 1, maxLength: 100, description: 'The sub-organization (id or slug)' }),
});

export const CreateSubOrganizationBody = Type.Object(
  {
    name: DisplayName(),
    slug: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: SLUG_MAX,
        pattern: SLUG_PATTERN,
        'x-message': 'must be lower-case letters, digits and single hyphens, e.g. "acme-labs"',
      }),
    ),
    description: Type.Optional(Nullable(FreeText())),
    contact_name: Type.Optional(Nullable(DisplayName())),
    contact_email: Type.Optional(Nullable(Type.String({ maxLength: 254, format: 'email' }))),
    currency: Type.Optional(Type.Union(CURRENCIES.map((c) => Type.Literal(c)))),
    billing_rate_per_agent: Type.Optional(DecimalInput('Monthly rate per agent, e.g. "99.00"')),
    features: Type.Optional(
      Type.Array(FeatureKey, {
        maxItems: FEATURE_KEYS.length,
        description: "Features to grant; each must be one the parent has. Default: all of the parent's",
      }),
    ),
    plan: Type.Optional(PlanKey),
  },
  { additionalProperties: false },
);

export const SubOrganizationListItem = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String(),
  plan: Type.String(),
  active: Type.Boolean(),
  currency: Type.String(),
  balance: Type.String({ description: 'Available credits' }),
  member_count: Type.Integer(),
  sub_organization_count: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
});
export const SubOrganizationList = PageResponse(SubOrganizationListItem);
export const SubOrganizationsQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });

const Day = DayString();
export const TreeUsageQuery = Type.Object(
  {
    from: Type.Optional({ ...Day, description: 'First day (inclusive); default: 29 days before `to`' }),
    to: Type.Optional({ ...Day, description: 'Last day (inclusive); default: today' }),
  },
  { additionalProperties: false },
);

const UsageFigures = {
  events: Type.Integer(),
  credits: Type.String(),
  tokens_in: Type.Integer(),
  tokens_out: Type.Integer(),
};
export const TreeUsageResponse = Type.Object({
  organization_id: Type.String(),
  from: Type.String(),
  to: Type.String(),
  organization_count: Type.Integer(),
  total: Type.Object({
    ...UsageFigures,
    spend: Type.Record(Type.String(), Type.String(), {
      description: 'Spend (usage cost) per currency: organizations may bill in different ones',
    }),
  }),
  organizations: Type.Array(
    Type.Object({
      organization_id: Type.String(),
      name: Type.String(),
      parent_id: Nullable(Type.String()),
      depth: Type.Integer({ description: '0 for the organization asked about, 1 for its children, ...' }),
      currency: Type.String(),
      ...UsageFigures,
      spend: Type.String(),
    }),
  ),
});

export const SubOrganizationBillingResponse = Type.Object({
  organization_id: Type.String(),
  subscription: Type.Object({
    plan: Type.String(),
    plan_name: Type.String(),
    status: Type.String(),
    billing_cycle: Type.String(),
    cancel_at_period_end: Type.Boolean(),
    current_period_end: Type.String({ format: 'date-time' }),
  }),
  currency: Type.String(),
  available_balance: Type.String(),
  payment_method: Nullable(Type.String()),
  auto_recharge: Type.Object({
    enabled: Type.Boolean(),
    threshold: Type.String(),
    amount: Type.String(),
    payment_method: Nullable(Type.String()),
  }),
  monthly_spending_limit: Nullable(Type.String()),
  month_spend: Type.String(),
  payment_history: Type.Array(TransactionResponse, {
    description: 'Credits that came in, newest first (up to 50)',
  }),
});

export const SpendingLimitBody = Type.Object(
  {
    monthly_spending_limit: Nullable(DecimalInput('Monthly spending cap, a decimal ≥ 0; null removes it')),
  },
  { additionalProperties: false },
);

export const DetachBody = Type.Object(
  {
    plan: Type.Optional({ ...PlanKey, description: 'The plan it continues on; default free' }),
    keep_members: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
        maxItems: 100,
        uniqueItems: true,
        description:
          'User ids of owners and admins of the parent side who stay members of it (default: none stays)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const JoinRole = Type.Union(
  (['admin', 'developer', 'manager', 'agent'] as const).map((r) => Type.Literal(r)),
  { description: 'The role to act as: admin, developer, manager or agent' },
);
export const JoinAsBody = Type.Object({ role: JoinRole }, { additionalProperties: false });
export const JoinAsResponse = Type.Object({
  organization_id: Type.String(),
  role: Type.String(),
  return_organization_id: Nullable(Type.String()),
});

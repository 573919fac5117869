import { Type } from 'typebox';
import { PageQuery, PageResponse } from '../../lib/pagination.js';
import { DecimalInput, DisplayName, FreeText, Nullable } from '../../lib/schema.js';
import { SLUG_MAX, SLUG_PATTERN } from '../../lib/slug.js';

export const CURRENCIES = ['USD', 'EUR', 'GBP', 'NGN', 'CAD', 'AUD'] as const;
export type Currency = (typeof CURRENCIES)[number];

const Name = DisplayName();
const Slug = Type.String({
  minLength: 1,
  maxLength: SLUG_MAX,
  pattern: SLUG_PATTERN,
  'x-message': 'must be lower-case letters, digits and single hyphens, e.g. "acme-labs"',
});
const Description = FreeText();
const ContactName = DisplayName();
const ContactEmail = Type.String({ maxLength: 254, format: 'email' });
/** A decimal string ("99.00"); a JSON number is accepted too, as the seed's own example sends one. */
const Rate = DecimalInput(
  'Monthly rate per agent, a decimal ≥ 0 with at most 6 fractional digits, e.g. "99.00"',
);
const CurrencySchema = Type.Union(
  CURRENCIES.map((c) => Type.Literal(c)),
  { description: 'ISO 4217 code' },
);

export const CreateOrganizationBody = Type.Object(
  {
    name: Name,
    slug: Type.Optional(Slug),
    description: Type.Optional(Nullable(Description)),
    contact_name: Type.Optional(Nullable(ContactName)),
    contact_email: Type.Optional(Nullable(ContactEmail)),
    billing_rate_per_agent: Type.Optional(Rate),
    currency: Type.Optional(CurrencySchema),
  },
  { additionalProperties: false },
);

/** The creation fields, each optional. */
export const UpdateOrganizationBody = Type.Partial(CreateOrganizationBody, { additionalProperties: false });

export const OrganizationParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100, description: 'Organization id (org_…) or slug' }),
});

export const ListOrganizationsQuery = Type.Object(
  {
    ...PageQuery,
    q: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Search in name and slug' })),
    active: Type.Optional(
      Type.Boolean({ description: 'Only active (true) or inactive (false) organizations' }),
    ),
  },
  { additionalProperties: false },
);

export const AuditLogQuery = Type.Object({ ...PageQuery }, { additionalProperties: false });

export const OrganizationResponse = Type.Object({
  id: Type.String(),
  name: Type.String(),
  slug: Type.String(),
  description: Nullable(Type.String()),
  contact_name: Nullable(Type.String()),
  contact_email: Nullable(Type.String()),
  billing_rate_per_agent: Type.String({ description: 'Decimal string, e.g. "99.00"' }),
  currency: Type.String(),
  active: Type.Boolean(),
  plan: Type.String(),
  parent_id: Nullable(Type.String()),
  branding: Type.Record(Type.String(), Type.Unknown()),
  is_default: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const OrganizationDetailResponse = Type.Object({
  ...OrganizationResponse.properties,
  sub_organization_count: Type.Integer(),
  member_count: Type.Integer(),
  agent_count: Type.Integer(),
  team_count: Type.Integer(),
  agents: Type.Array(
    Type.Object({
      id: Type.String(),
      name: Type.String(),
      status: Type.String(),
      billing_rate: Type.Union([Type.String(), Type.Null()]),
      effective_billing_rate: Type.String(),
    }),
    { description: 'Linked agents (the first 100 by id)' },
  ),
});

export const OrganizationListItemResponse = Type.Object({
  ...OrganizationResponse.properties,
  member_count: Type.Integer(),
  agent_count: Type.Integer(),
  team_count: Type.Integer(),
});

export const OrganizationListResponse = PageResponse(OrganizationListItemResponse);

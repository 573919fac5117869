import { Type } from 'typebox';
import { PageQuery } from '../../lib/pagination.js';
import { DecimalInput, DisplayName, FreeText, Nullable } from '../../lib/schema.js';

const Name = DisplayName();
const Description = FreeText();
const Rate = DecimalInput('Monthly rate for this agent in its organization’s currency, e.g. "120.50"');
const Status = Type.Union([Type.Literal('active'), Type.Literal('paused')]);

export const CreateAgentBody = Type.Object(
  {
    name: Name,
    description: Type.Optional(Nullable(Description)),
    organization_id: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description: 'id or slug; default: the internal organization',
      }),
    ),
    billing_rate: Type.Optional(Nullable(Rate)),
    /** The seed's own spelling; the same field. */
    billingRate: Type.Optional(Nullable(Rate)),
    status: Type.Optional(Status),
  },
  { additionalProperties: false },
);

export const UpdateAgentBody = Type.Object(
  {
    name: Type.Optional(Name),
    description: Type.Optional(Nullable(Description)),
    status: Type.Optional(Status),
    billing_rate: Type.Optional(Nullable(Rate)),
    /** The seed's own spelling; the same field. */
    billingRate: Type.Optional(Nullable(Rate)),
  },
  { additionalProperties: false },
);

export const AssignBody = Type.Object(
  { organization_id: Type.String({ minLength: 1, maxLength: 100, description: 'id or slug' }) },
  { additionalProperties: false },
);

export const AgentParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 100 }) });

export const ListAgentsQuery = Type.Object(
  { ...PageQuery, organization_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })) },
  { additionalProperties: false },
);

export const AgentResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  status: Type.String({
    description:
      'active or paused as set; suspended while its organization is inactive (the set status returns with it)',
  }),
  billing_rate: Nullable(Type.String({ description: 'The custom rate, or null' })),
  effective_billing_rate: Type.String({
    description: 'The custom rate, else the organization’s billing_rate_per_agent',
  }),
  currency: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

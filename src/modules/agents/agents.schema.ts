import { Type } from 'typebox';
import { PageQuery } from '../../lib/pagination.js';

const Nullable = <T extends import('typebox').TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Name = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^(?=[\\s\\S]*\\S)[^\\u0000-\\u001F\\u007F]*$',
  'x-message': 'must not be blank or contain control characters',
});
const Description = Type.String({
  maxLength: 2000,
  pattern: '^[^\\u0000]*$',
  'x-message': 'must not contain NUL characters',
});
/** Monthly rate for this agent in its organization's currency; a decimal string (a JSON number is accepted). */
const Rate = Type.Union([Type.String({ maxLength: 40 }), Type.Number()]);
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
  status: Type.String(),
  billing_rate: Nullable(Type.String({ description: 'The custom rate, or null' })),
  effective_billing_rate: Type.String({
    description: 'The custom rate, else the organization’s billing_rate_per_agent',
  }),
  currency: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

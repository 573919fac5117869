/** The billing endpoints' query and response schemas. */
import { Type } from 'typebox';
import { DayString, MonthString } from '../../lib/schema.js';

export const BillingQuery = Type.Object(
  { month: Type.Optional(MonthString) },
  { additionalProperties: false },
);
export const SummaryQuery = Type.Object(
  { from: Type.Optional(MonthString), to: Type.Optional(MonthString) },
  { additionalProperties: false },
);
export const AnalyticsQuery = Type.Object(
  {
    from: Type.Optional(DayString()),
    to: Type.Optional(DayString()),
    top: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 10 })),
  },
  { additionalProperties: false },
);

const Totals = {
  events: Type.Integer(),
  credits: Type.String(),
  tokens_in: Type.Integer(),
  tokens_out: Type.Integer(),
  cost: Type.String({ description: 'In the organization’s currency' }),
};

const Projected = Type.Boolean({
  description:
    'true when revenue counts days still to come: an assignment open in a month not yet over is billed to the month’s end',
});

export const BillingResponse = Type.Object({
  organization_id: Type.String(),
  month: Type.String(),
  currency: Type.String(),
  days_in_month: Type.Integer(),
  projected: Projected,
  data: Type.Array(
    Type.Object({
      agent_id: Type.Union([Type.String(), Type.Null()], {
        description: 'null: usage recorded without an agent',
      }),
      agent_name: Type.Union([Type.String(), Type.Null()]),
      days_assigned: Type.Integer(),
      rate: Type.String({ description: 'The agent’s effective monthly rate' }),
      revenue: Type.String({ description: 'rate × days_assigned / days_in_month' }),
      projected: Projected,
      ...Totals,
    }),
  ),
});

export const SummaryResponse = Type.Object({
  organization_id: Type.String(),
  currency: Type.String(),
  data: Type.Array(
    Type.Object({
      month: Type.String(),
      revenue: Type.String(),
      projected: Projected,
      agents: Type.Integer(),
      ...Totals,
    }),
  ),
});

export const PlatformSummaryQuery = Type.Object(
  { month: Type.Optional(MonthString) },
  { additionalProperties: false },
);

export const PlatformSummaryResponse = Type.Object({
  month: Type.String(),
  organizations: Type.Integer({ description: 'Organizations with usage or billed agents in the month' }),
  projected: Projected,
  events: Type.Integer(),
  credits: Type.String(),
  tokens_in: Type.Integer(),
  tokens_out: Type.Integer(),
  by_currency: Type.Array(
    Type.Object({ currency: Type.String(), revenue: Type.String(), cost: Type.String() }),
    { description: 'Money is summed per currency, never across currencies' },
  ),
});

export const AnalyticsResponse = Type.Object({
  organization_id: Type.String(),
  from: Type.String(),
  to: Type.String(),
  currency: Type.String(),
  days: Type.Array(
    Type.Object({ day: Type.String(), events: Type.Integer(), credits: Type.String(), cost: Type.String() }),
  ),
  top_agents: Type.Array(
    Type.Object({
      agent_id: Type.String(),
      agent_name: Type.Union([Type.String(), Type.Null()]),
      events: Type.Integer(),
      credits: Type.String(),
    }),
  ),
});

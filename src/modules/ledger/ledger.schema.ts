import { Type } from 'typebox';
import { PageQuery } from '../../lib/pagination.js';
import { DecimalInput, FreeText, Nullable } from '../../lib/schema.js';
import { TRANSACTION_TYPES } from './ledger.core.js';

/** A decimal amount: a string such as "12.5" (exact); a JSON number is accepted and converted. */
export const Amount = DecimalInput(
  'Decimal credits with up to 6 fractional digits, e.g. "12.5" or "0.000125"',
);
const Text = FreeText;
/** Free-form JSON: at most 50 keys, each of at most 64 characters at any level, 5 levels, 16 KiB. */
const Metadata = Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), {
  description:
    'Free-form JSON kept with the transaction: at most 50 keys, keys of at most 64 characters at any level, nested at most 5 levels, at most 16 KiB as JSON',
  maxProperties: 50,
  'x-json': { maxDepth: 5, maxBytes: 16_384, maxKeyLength: 64 },
});

export const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7E]+$',
      'x-message': 'must be 1-255 visible ASCII characters',
      description: 'Makes the request safe to retry: a replay returns the first response',
    }),
  ),
});

export const AddCreditsBody = Type.Object(
  { amount: Amount, description: Type.Optional(Text(500)), metadata: Type.Optional(Metadata) },
  { additionalProperties: false },
);

const TeamId = Type.String({
  minLength: 1,
  maxLength: 100,
  description: 'The team spending (its monthly budget applies)',
});

export const DeductCreditsBody = Type.Object(
  {
    amount: Amount,
    reason: Type.Optional(Text(500)),
    metadata: Type.Optional(Metadata),
    team_id: Type.Optional(TeamId),
  },
  { additionalProperties: false },
);

export const TransferBody = Type.Object(
  {
    to_organization_id: Type.String({
      minLength: 1,
      maxLength: 100,
      description: 'Receiving organization (id or slug)',
    }),
    amount: Amount,
    description: Type.Optional(Text(500)),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const CreateHoldBody = Type.Object(
  {
    amount: Amount,
    expires_in_seconds: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 30 * 24 * 3600,
        default: 3600,
        description: 'Deadline, default one hour',
      }),
    ),
    description: Type.Optional(Text(500)),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const CaptureHoldBody = Type.Object(
  { amount: Type.Optional(Amount) },
  { additionalProperties: false, description: 'Omit amount to capture the whole hold' },
);

export const HoldParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  holdId: Type.String({ minLength: 1, maxLength: 100 }),
});

export const TopUpParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  topUpId: Type.String({ minLength: 1, maxLength: 100 }),
});

export const CreditSettingsBody = Type.Object(
  {
    overdraft_enabled: Type.Optional(Type.Boolean()),
    overdraft_limit: Type.Optional(Amount),
    monthly_spending_limit: Type.Optional(Nullable(Amount)),
    auto_recharge: Type.Optional(
      Type.Object(
        {
          enabled: Type.Boolean(),
          threshold: Type.Optional(Amount),
          amount: Type.Optional(Amount),
          payment_method: Type.Optional(Nullable(Text(200))),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);

export const TransactionsQuery = Type.Object(
  {
    ...PageQuery,
    type: Type.Optional(
      Type.Union([
        Type.Array(Type.Union(TRANSACTION_TYPES.map((t) => Type.Literal(t)))),
        Type.Union(TRANSACTION_TYPES.map((t) => Type.Literal(t))),
      ]),
    ),
    from: Type.Optional(
      Type.String({ format: 'date-time', description: 'Inclusive lower bound on created_at' }),
    ),
    to: Type.Optional(
      Type.String({ format: 'date-time', description: 'Exclusive upper bound on created_at' }),
    ),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])),
  },
  { additionalProperties: false },
);

export const UsageEvent = Type.Object(
  {
    organization_id: Type.String({ minLength: 1, maxLength: 100 }),
    agent_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    team_id: Type.Optional(TeamId),
    credits: Amount,
    tokens_in: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e15 })),
    tokens_out: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e15 })),
    cost: Type.Optional(Amount),
    idempotency_key: Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: '^[\\x21-\\x7E]+$',
      'x-message': 'must be 1-255 visible ASCII characters',
    }),
    description: Type.Optional(Text(500)),
    metadata: Type.Optional(Metadata),
  },
  { additionalProperties: false },
);

export const UsageBody = Type.Object(
  { events: Type.Array(UsageEvent, { minItems: 1, maxItems: 1000 }) },
  { additionalProperties: false },
);

export const TransactionResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  type: Type.String(),
  amount: Type.String(),
  balance_change: Type.String({ description: 'Signed change of the organization’s credits' }),
  balance_after: Type.String(),
  description: Nullable(Type.String()),
  actor: Type.Object({ type: Type.String(), id: Nullable(Type.String()) }),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  related_id: Nullable(Type.String()),
  entries: Type.Array(Type.Object({ account: Type.String(), amount: Type.String() })),
  created_at: Type.String({ format: 'date-time' }),
});

export const BalanceResponse = Type.Object({
  organization_id: Type.String(),
  available: Type.String({ description: 'Credits that can be spent now (holds already taken out)' }),
  held: Type.String({ description: 'Reserved by active holds' }),
  overdraft_enabled: Type.Boolean(),
  overdraft_limit: Type.String(),
  spendable: Type.String({ description: 'available plus the overdraft allowance' }),
  month: Type.String({ description: 'The calendar month (UTC) that month_spend covers' }),
  month_spend: Type.String(),
  monthly_spending_limit: Nullable(Type.String()),
  month_usage_events: Type.Integer({ description: 'Usage events recorded this month' }),
  usage_events_limit: Nullable(
    Type.Integer({ description: "The plan's monthly allowance; null: unlimited" }),
  ),
  auto_recharge: Type.Object({
    enabled: Type.Boolean(),
    threshold: Type.String(),
    amount: Type.String(),
    payment_method: Nullable(Type.String()),
  }),
});

export const HoldResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  amount: Type.String(),
  captured_amount: Type.String(),
  status: Type.String(),
  description: Nullable(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  expires_at: Type.String({ format: 'date-time' }),
  created_at: Type.String({ format: 'date-time' }),
  closed_at: Nullable(Type.String({ format: 'date-time' })),
});

export const TopUpResponse = Type.Object({
  id: Type.String(),
  organization_id: Type.String(),
  amount: Type.String(),
  status: Type.String(),
  reason: Type.String(),
  provider: Type.String(),
  payment_method: Nullable(Type.String()),
  transaction_id: Nullable(Type.String()),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

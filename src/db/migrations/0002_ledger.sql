-- The credits ledger: double-entry, amounts in integer micro-credits (10^-6).
--
-- Accounts are per organization: `credits` (what it can spend), `held` (reserved by holds),
-- and the system counterparts `sys:top_ups`, `sys:usage`, `sys:adjustments`, `sys:transfers`.
-- Keeping the system accounts per organization means no global hot row: one organization's
-- debits touch only its own rows, and the schema distributes by tenant.
CREATE TABLE ledger_accounts (
  organization_id         text NOT NULL REFERENCES organizations (id),
  code                    text NOT NULL,
  balance                 bigint NOT NULL DEFAULT 0,
  -- policy, meaningful on the `credits` account only
  overdraft_enabled       boolean NOT NULL DEFAULT false,
  overdraft_limit         bigint NOT NULL DEFAULT 0 CHECK (overdraft_limit >= 0),
  monthly_spending_limit  bigint CHECK (monthly_spending_limit >= 0),
  spend_month             text NOT NULL DEFAULT '',
  month_spend             bigint NOT NULL DEFAULT 0,
  auto_recharge_enabled   boolean NOT NULL DEFAULT false,
  auto_recharge_threshold bigint NOT NULL DEFAULT 0 CHECK (auto_recharge_threshold >= 0),
  auto_recharge_amount    bigint NOT NULL DEFAULT 0 CHECK (auto_recharge_amount >= 0),
  auto_recharge_payment_method text,
  updated_at              timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, code)
);

-- Immutable. `entry_accounts[i]` moves by `entry_amounts[i]` (credit positive), and the
-- amounts of one transaction sum to zero. Entries live inside their transaction row: one
-- write per transaction on the hot path instead of three.
CREATE TABLE ledger_transactions (
  organization_id  text NOT NULL REFERENCES organizations (id),
  id               text NOT NULL,
  type             text NOT NULL,
  amount           bigint NOT NULL CHECK (amount > 0),
  entry_accounts   text[] NOT NULL,
  entry_amounts    bigint[] NOT NULL,
  -- the `credits` balance right after this transaction
  balance_after    bigint NOT NULL,
  description      text,
  actor_type       text NOT NULL,
  actor_id         text,
  metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
  related_id       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id),
  CHECK (cardinality(entry_accounts) = cardinality(entry_amounts))
);
CREATE INDEX ledger_transactions_type ON ledger_transactions (organization_id, type, id);

-- A replay of a credit-moving request returns the first response. `fingerprint` is a hash of
-- what was asked, so the same key with a different request is told apart (422).
CREATE TABLE idempotency_records (
  organization_id  text NOT NULL REFERENCES organizations (id),
  key              text NOT NULL,
  fingerprint      text NOT NULL,
  status_code      integer NOT NULL,
  response         jsonb NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, key)
);

CREATE TABLE ledger_holds (
  organization_id  text NOT NULL REFERENCES organizations (id),
  id               text NOT NULL,
  amount           bigint NOT NULL CHECK (amount > 0),
  captured_amount  bigint NOT NULL DEFAULT 0,
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'captured', 'released', 'expired')),
  description      text,
  metadata         jsonb NOT NULL DEFAULT '{}'::jsonb,
  expires_at       timestamptz NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  closed_at        timestamptz,
  PRIMARY KEY (organization_id, id)
);
CREATE INDEX ledger_holds_due ON ledger_holds (expires_at) WHERE status = 'active';

CREATE TABLE top_ups (
  organization_id  text NOT NULL REFERENCES organizations (id),
  id               text NOT NULL,
  amount           bigint NOT NULL CHECK (amount > 0),
  status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'paid', 'failed', 'canceled')),
  reason           text NOT NULL,
  provider         text NOT NULL,
  payment_method   text,
  external_id      text,
  transaction_id   text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id)
);
-- Never two automatic top-ups in flight for one organization.
CREATE UNIQUE INDEX top_ups_one_pending_auto ON top_ups (organization_id) WHERE status = 'pending' AND reason = 'auto_recharge';

-- Every organization has its credits account from creation on; these are the ones that exist already.
INSERT INTO ledger_accounts (organization_id, code) SELECT id, 'credits' FROM organizations ON CONFLICT DO NOTHING;

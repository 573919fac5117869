-- Plans and subscriptions, features granted down the organization tree, custom domains,
-- "join as" for sessions, and the monthly usage-event allowance the ledger enforces.

-- One subscription per organization. `organizations.plan` stays the plan's home (every
-- organization view shows it); this row holds the rest of the subscription.
CREATE TABLE subscriptions (
  organization_id       text PRIMARY KEY REFERENCES organizations (id),
  billing_cycle         text NOT NULL DEFAULT 'monthly' CHECK (billing_cycle IN ('monthly', 'annual')),
  status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'canceled')),
  cancel_at_period_end  boolean NOT NULL DEFAULT false,
  current_period_start  timestamptz NOT NULL DEFAULT now(),
  current_period_end    timestamptz NOT NULL,
  canceled_at           timestamptz,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subscriptions_due ON subscriptions (current_period_end);

-- The default organization carries every unassigned agent: it is never limited by a plan.
UPDATE organizations SET plan = 'enterprise' WHERE is_default;
INSERT INTO subscriptions (organization_id, current_period_start, current_period_end)
SELECT id, now(), now() + interval '1 month' FROM organizations
ON CONFLICT DO NOTHING;

-- What an organization's parent granted it (sub-organizations only; a top-level organization
-- has every feature of its plan). Effective = plan ∩ grants ∩ the parent's effective features.
CREATE TABLE organization_features (
  organization_id  text NOT NULL REFERENCES organizations (id),
  feature          text NOT NULL,
  granted_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, feature)
);

CREATE TABLE organization_domains (
  organization_id     text NOT NULL REFERENCES organizations (id),
  id                  text NOT NULL,
  domain              text NOT NULL,
  verification_token  text NOT NULL,
  status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'verified')),
  verified_at         timestamptz,
  last_checked_at     timestamptz,
  created_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id)
);
-- An organization lists a domain once; only one organization can own it verified.
CREATE UNIQUE INDEX organization_domains_once ON organization_domains (organization_id, domain);
CREATE UNIQUE INDEX organization_domains_verified ON organization_domains (domain) WHERE status = 'verified';

-- "Join as": the session acts in a sub-organization with a chosen role until it leaves,
-- then returns to where it was.
ALTER TABLE session_contexts
  ADD COLUMN joined_organization_id text REFERENCES organizations (id),
  ADD COLUMN joined_role text,
  ADD COLUMN return_organization_id text REFERENCES organizations (id);

-- How the actor held its rights when it acted: as a member, through a parent's oversight,
-- or having joined as a role.
ALTER TABLE audit_events
  ADD COLUMN actor_role text,
  ADD COLUMN actor_via text;

-- The plan's monthly usage-event allowance (NULL: unlimited), counted on the credits row in the
-- same write as the debits, like the monthly spend.
ALTER TABLE ledger_accounts
  ADD COLUMN usage_events_limit bigint CHECK (usage_events_limit >= 0),
  ADD COLUMN month_events bigint NOT NULL DEFAULT 0;
UPDATE ledger_accounts SET usage_events_limit = 10000
WHERE code = 'credits'
  AND organization_id IN (SELECT id FROM organizations WHERE plan = 'free' AND NOT is_default);

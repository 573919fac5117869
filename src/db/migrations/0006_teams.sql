-- Teams belong to at most one organization and spend from its credits, within an optional
-- monthly budget (calendar month, UTC) enforced by the ledger like a spending limit. A team
-- exists on its own: removing it from an organization (or deleting the organization) keeps it.
CREATE TABLE teams (
  id               text PRIMARY KEY,
  organization_id  text REFERENCES organizations (id),
  name             text NOT NULL,
  description      text,
  monthly_budget   bigint CHECK (monthly_budget >= 0),
  spend_month      text NOT NULL DEFAULT '',
  month_spend      bigint NOT NULL DEFAULT 0,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz
);
CREATE INDEX teams_organization ON teams (organization_id) WHERE deleted_at IS NULL;

-- Organizations, their audit trail, and the operator's credential.
-- Every tenant-owned table carries organization_id in its primary key so the schema can be
-- distributed by tenant (Citus) without a redesign.

CREATE TABLE organizations (
  id                      text PRIMARY KEY,
  name                    text NOT NULL,
  slug                    text NOT NULL,
  description             text,
  contact_name            text,
  contact_email           text,
  -- micro-units (10^-6) of `currency`; money never lives in a float
  billing_rate_per_agent  bigint NOT NULL DEFAULT 0 CHECK (billing_rate_per_agent >= 0),
  currency                text NOT NULL DEFAULT 'USD' CHECK (currency IN ('USD', 'EUR', 'GBP', 'NGN', 'CAD', 'AUD')),
  active                  boolean NOT NULL DEFAULT true,
  plan                    text NOT NULL DEFAULT 'free',
  parent_id               text REFERENCES organizations (id),
  branding                jsonb NOT NULL DEFAULT '{}'::jsonb,
  is_default              boolean NOT NULL DEFAULT false,
  created_at              timestamptz NOT NULL DEFAULT now(),
  updated_at              timestamptz NOT NULL DEFAULT now(),
  -- deletion keeps the row so ledger and audit records keep their owner
  deleted_at              timestamptz
);

CREATE UNIQUE INDEX organizations_slug_live ON organizations (slug) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX organizations_single_default ON organizations (is_default) WHERE is_default;
CREATE INDEX organizations_parent ON organizations (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE audit_events (
  organization_id  text NOT NULL REFERENCES organizations (id),
  id               text NOT NULL,
  actor_type       text NOT NULL,
  actor_id         text,
  action           text NOT NULL,
  target_type      text NOT NULL,
  target_id        text NOT NULL,
  changes          jsonb NOT NULL DEFAULT '{}'::jsonb,
  request_id       text,
  created_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (organization_id, id)
);

-- Platform-level, not tenant-owned: the operator's bearer token, kept only as a hash.
CREATE TABLE operator_credentials (
  id          text PRIMARY KEY,
  token_hash  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);

INSERT INTO organizations (id, name, slug, description, is_default)
VALUES ('org_00000000000000000000000000', 'Internal', 'internal',
        'The default organization: agents without an organization belong here.', true);

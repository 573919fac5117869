-- Agents: each works for exactly one organization at a time. Its assignment history is kept
-- so billing can be pro-rated by the days an agent belonged to an organization in a month.
CREATE TABLE agents (
  organization_id  text NOT NULL REFERENCES organizations (id),
  id               text NOT NULL,
  name             text NOT NULL,
  description      text,
  status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
  -- micro-units of the organization's currency; NULL: the organization's billing_rate_per_agent
  billing_rate     bigint CHECK (billing_rate >= 0),
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  deleted_at       timestamptz,
  PRIMARY KEY (organization_id, id)
);
CREATE UNIQUE INDEX agents_id ON agents (id);
CREATE INDEX agents_live ON agents (organization_id, id) WHERE deleted_at IS NULL;

CREATE TABLE agent_assignments (
  organization_id  text NOT NULL REFERENCES organizations (id),
  agent_id         text NOT NULL,
  assigned_at      timestamptz NOT NULL,
  unassigned_at    timestamptz,
  PRIMARY KEY (organization_id, agent_id, assigned_at)
);
CREATE INDEX agent_assignments_agent ON agent_assignments (agent_id, assigned_at);

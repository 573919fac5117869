-- Usage rolled up per organization, agent and UTC day, in the same transaction as the debits
-- it counts: billing and analytics read at most ~31 rows per agent per month, however many
-- events there were. agent_id '' stands for events without an agent.
CREATE TABLE usage_daily (
  organization_id  text NOT NULL REFERENCES organizations (id),
  day              date NOT NULL,
  agent_id         text NOT NULL DEFAULT '',
  events           bigint NOT NULL DEFAULT 0,
  credits          bigint NOT NULL DEFAULT 0,
  tokens_in        bigint NOT NULL DEFAULT 0,
  tokens_out       bigint NOT NULL DEFAULT 0,
  -- micro-units of the organization's currency
  cost             bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (organization_id, day, agent_id)
);

-- Usage rolled up per organization and UTC day (all agents together), beside the per-agent
-- daily roll-up and in the same statement as the debits. Reports across organizations — the
-- platform's month, a tree of sub-organizations over a date range — read one row per
-- organization and day instead of one per organization, agent and day.
CREATE TABLE usage_org_daily (
  organization_id  text NOT NULL REFERENCES organizations (id),
  day              date NOT NULL,
  events           bigint NOT NULL DEFAULT 0,
  credits          bigint NOT NULL DEFAULT 0,
  tokens_in        bigint NOT NULL DEFAULT 0,
  tokens_out       bigint NOT NULL DEFAULT 0,
  cost             bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (organization_id, day)
);
CREATE INDEX usage_org_daily_day ON usage_org_daily (day);

INSERT INTO usage_org_daily (organization_id, day, events, credits, tokens_in, tokens_out, cost)
SELECT organization_id, day, sum(events), sum(credits), sum(tokens_in), sum(tokens_out), sum(cost)
FROM usage_daily
GROUP BY 1, 2;

-- Usage rolled up per organization and calendar month (UTC), beside the daily roll-up and in
-- the same statement: the platform's monthly summary reads one row per organization instead of
-- one per organization, agent and day.
CREATE TABLE usage_monthly (
  organization_id  text NOT NULL REFERENCES organizations (id),
  month            date NOT NULL,  -- the month's first day
  events           bigint NOT NULL DEFAULT 0,
  credits          bigint NOT NULL DEFAULT 0,
  tokens_in        bigint NOT NULL DEFAULT 0,
  tokens_out       bigint NOT NULL DEFAULT 0,
  cost             bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (organization_id, month)
);
CREATE INDEX usage_monthly_month ON usage_monthly (month);

INSERT INTO usage_monthly (organization_id, month, events, credits, tokens_in, tokens_out, cost)
SELECT organization_id, date_trunc('month', day)::date, sum(events), sum(credits), sum(tokens_in),
       sum(tokens_out), sum(cost)
FROM usage_daily
GROUP BY 1, 2;

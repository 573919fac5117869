-- Overdraft limits are capped by the plan (issue 12): a limit set above its plan's cap before the
-- cap existed comes down to it, as a later change of plan would bring it. The caps, in
-- micro-credits, are those of src/modules/plans/plans.catalog.ts when this was written
-- (Free 100, Starter 1,000, Growth 10,000, Business 100,000; Enterprise has none). The row's
-- version advances through its trigger, so no process decides from the old limit.
UPDATE ledger_accounts a
SET overdraft_limit = c.cap
FROM organizations o
JOIN (VALUES
  ('free', 100000000::bigint),
  ('pay_as_you_go', 0::bigint),
  ('starter', 1000000000::bigint),
  ('growth', 10000000000::bigint),
  ('business', 100000000000::bigint)
) AS c (plan, cap) ON c.plan = o.plan
WHERE a.organization_id = o.id AND a.code = 'credits' AND a.overdraft_limit > c.cap;

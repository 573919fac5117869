-- Billing rates over time, so that a past month is billed at the rates it had, not today's.
-- Written by triggers, so no writer (the API, a script, a bulk load) can change a rate without
-- leaving its history. Rates already set are taken to have held since their row was created.

CREATE TABLE organization_rate_history (
  organization_id  text NOT NULL REFERENCES organizations (id),
  changed_at       timestamptz NOT NULL,
  rate             bigint NOT NULL,
  PRIMARY KEY (organization_id, changed_at)
);

-- An agent's own rate follows it across organizations: keyed by the agent. NULL: none of its
-- own (its organization's applies).
CREATE TABLE agent_rate_history (
  agent_id      text NOT NULL,
  changed_at    timestamptz NOT NULL,
  billing_rate  bigint,
  PRIMARY KEY (agent_id, changed_at)
);

INSERT INTO organization_rate_history (organization_id, changed_at, rate)
SELECT id, created_at, billing_rate_per_agent FROM organizations;
INSERT INTO agent_rate_history (agent_id, changed_at, billing_rate)
SELECT id, created_at, billing_rate FROM agents;

CREATE FUNCTION record_organization_rate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.billing_rate_per_agent = OLD.billing_rate_per_agent THEN
    RETURN NEW;
  END IF;
  INSERT INTO organization_rate_history (organization_id, changed_at, rate)
  VALUES (NEW.id, now(), NEW.billing_rate_per_agent)
  ON CONFLICT (organization_id, changed_at) DO UPDATE SET rate = EXCLUDED.rate;
  RETURN NEW;
END $$;

CREATE TRIGGER organizations_rate_history
AFTER INSERT OR UPDATE OF billing_rate_per_agent ON organizations
FOR EACH ROW
EXECUTE FUNCTION record_organization_rate();

CREATE FUNCTION record_agent_rate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.billing_rate IS NOT DISTINCT FROM OLD.billing_rate THEN
    RETURN NEW;
  END IF;
  INSERT INTO agent_rate_history (agent_id, changed_at, billing_rate)
  VALUES (NEW.id, now(), NEW.billing_rate)
  ON CONFLICT (agent_id, changed_at) DO UPDATE SET billing_rate = EXCLUDED.billing_rate;
  RETURN NEW;
END $$;

CREATE TRIGGER agents_rate_history
AFTER INSERT OR UPDATE OF billing_rate ON agents
FOR EACH ROW
EXECUTE FUNCTION record_agent_rate();

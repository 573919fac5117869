-- An API key may belong to an agent: the agent then authenticates as itself, and the key follows
-- the agent from organization to organization (its organization_id moves with it).
ALTER TABLE api_keys ADD COLUMN agent_id text;
CREATE INDEX api_keys_agent ON api_keys (agent_id) WHERE agent_id IS NOT NULL;

-- The ledger's hot path in one statement.
--
-- Every account row carries a version that every update advances: the engine's own writes set
-- it, and a trigger advances it for any other writer that does not (so none can forget it). The engine keeps the `credits` states it last wrote in memory and commits a batch
-- decided from them in ONE statement that locks the rows, asserts their versions are still the
-- ones it decided from (else the statement raises OB001 and writes nothing), and writes the
-- outcome. One round trip per batch instead of four (BEGIN, lock and read, write, COMMIT); when
-- another writer got there first, the engine falls back to the locking path and re-decides.
ALTER TABLE ledger_accounts ADD COLUMN version bigint NOT NULL DEFAULT 0;

CREATE FUNCTION ledger_accounts_next_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.version := OLD.version + 1;
  RETURN NEW;
END $$;

CREATE TRIGGER ledger_accounts_version BEFORE UPDATE ON ledger_accounts
  FOR EACH ROW WHEN (NEW.version = OLD.version) EXECUTE FUNCTION ledger_accounts_next_version();

-- Raises OB001 (a stale decision) unless `ok`: aborts the statement, and with it every write in it.
CREATE FUNCTION ledger_assert_current(ok boolean) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  IF NOT ok THEN
    RAISE EXCEPTION 'ledger state changed since it was read' USING ERRCODE = 'OB001';
  END IF;
  RETURN true;
END $$;

-- The append-only tables written per debit lose their foreign key to organizations: each
-- inserted row fired a trigger that looked up and share-locked the organization's row, which
-- was a fifth of a batch's cost and made every batch of one organization contend on that row.
-- Integrity holds without it: these rows are written only by the ledger engine, under the lock
-- of the organization's `credits` account (whose foreign key stays), and organizations are
-- never deleted (deletion is soft).
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_organization_id_fkey;
ALTER TABLE idempotency_records DROP CONSTRAINT idempotency_records_organization_id_fkey;
ALTER TABLE usage_daily DROP CONSTRAINT usage_daily_organization_id_fkey;
ALTER TABLE usage_org_daily DROP CONSTRAINT usage_org_daily_organization_id_fkey;

-- Listing by type looks for the rare types (top-ups, transfers, holds): usage, the bulk of the
-- ledger, is read through the primary key. Indexing only the other types spares every usage
-- debit one index entry.
DROP INDEX ledger_transactions_type;
CREATE INDEX ledger_transactions_type ON ledger_transactions (organization_id, type, id) WHERE type <> 'usage';

-- An idempotency record keeps the ledger's outcome (src/modules/ledger/ledger.outcome.ts) as JSON
-- text, so that a replay answers the bytes of the first answer. The jsonb `response` reordered the
-- keys of the answer and of the metadata inside it, so a replay had the same members in another
-- order; text is also cheaper to write than jsonb, which is parsed on the way in.
--
-- Records written before keep their HTTP status and jsonb body and still replay from them (the
-- ledger reads both forms): nothing is rewritten here, so this migration is instant on a table of
-- any size. New records leave those two columns null. Every record has one form or the other:
-- NOT VALID skips checking the rows that exist, which have a body.
ALTER TABLE idempotency_records ADD COLUMN outcome text;
ALTER TABLE idempotency_records ALTER COLUMN status_code DROP NOT NULL;
ALTER TABLE idempotency_records ALTER COLUMN response DROP NOT NULL;
ALTER TABLE idempotency_records ADD CONSTRAINT idempotency_records_answer
  CHECK (outcome IS NOT NULL OR (status_code IS NOT NULL AND response IS NOT NULL)) NOT VALID;

-- Housekeeping deletes chatbot idempotency keys older than
-- `worker.idempotency_retention_secs`; this index keeps that a range scan
-- instead of reading the whole table every round.
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

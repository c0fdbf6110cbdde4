-- People around the dispatcher: API tokens, idempotent chatbot requests,
-- extra notices (support resends, chatbot re-registrations), flag notes.

-- API tokens. Only the SHA-256 of a token is kept; the token itself is
-- printed once by `pedulicovid token create`.
CREATE TABLE api_tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    role         TEXT    NOT NULL,              -- operator, support, chatbot, carrier
    token_hash   TEXT    NOT NULL UNIQUE,       -- hex SHA-256 of the whole token
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_used_at BIGINT
);

-- A request done once per (token, Idempotency-Key); a retry gets the stored
-- response back.
CREATE TABLE idempotency_keys (
    token_id     BIGINT NOT NULL REFERENCES api_tokens (id),
    idem_key     TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,              -- hex SHA-256 of the canonical request
    status       INTEGER NOT NULL,              -- HTTP status of the stored response
    response     TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (token_id, idem_key)
);

-- Every notice queued outside a campaign's own enqueue: who asked, why, to
-- which number (the per-number daily limit counts these).
CREATE TABLE resends (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id  BIGINT NOT NULL REFERENCES health_workers (id),
    message_id BIGINT NOT NULL REFERENCES messages (id),
    phone      TEXT    NOT NULL,                -- E.164, the number the notice goes to
    kind       TEXT    NOT NULL,                -- resend (support staff), reregister (chatbot)
    actor      TEXT    NOT NULL,
    reason     TEXT    NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL
);
CREATE INDEX resends_phone ON resends (phone, created_at);
CREATE INDEX resends_worker ON resends (worker_id);

-- Campaigns the program keeps for itself (the chatbot re-registration one),
-- one row per purpose so concurrent requests agree on which.
CREATE TABLE standing_campaigns (
    purpose     TEXT PRIMARY KEY,
    campaign_id BIGINT REFERENCES campaigns (id)
);

-- Who resolved a flag by hand, and why.
ALTER TABLE non_recipients ADD COLUMN note TEXT;
ALTER TABLE non_recipients ADD COLUMN resolved_by TEXT;
CREATE INDEX non_recipients_open ON non_recipients (reason) WHERE resolved_at IS NULL;

-- A worker's timeline reads the audit trail by subject.
CREATE INDEX audit_log_subject ON audit_log (subject, id);

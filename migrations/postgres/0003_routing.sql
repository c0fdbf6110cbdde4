-- Receipt matching by the gateway's own id (normalised: lower case, no
-- leading zeros), and gateway health as the workers see it.
ALTER TABLE messages ADD COLUMN gateway_ref TEXT;
CREATE INDEX messages_gateway_ref ON messages (gateway, gateway_ref);
ALTER TABLE receipts ADD COLUMN gateway_ref TEXT;
CREATE INDEX receipts_pending ON receipts (gateway, gateway_ref) WHERE effect = 'pending';

CREATE TABLE gateway_health (
    gateway    TEXT PRIMARY KEY,
    state      TEXT    NOT NULL,                -- closed, open, half_open
    detail     TEXT    NOT NULL DEFAULT '',
    worker     TEXT    NOT NULL,
    changed_at BIGINT  NOT NULL
);

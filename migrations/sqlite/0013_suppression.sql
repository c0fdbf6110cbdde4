-- Suppression list (issue 14): numbers and NIKs that must not be messaged.
-- One active row per (kind, value); removing one keeps the row (who, when)
-- and a later add creates a new row. `value` is the E.164 number or the
-- NIK as the registry stores it; erasure replaces it with a tombstone.
CREATE TABLE suppressions (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('phone', 'nik')),
    value      TEXT    NOT NULL,
    reason     TEXT    NOT NULL CHECK (reason IN ('declined', 'vaccinated', 'deceased', 'wrong_number', 'other')),
    note       TEXT    NOT NULL DEFAULT '',
    added_by   TEXT    NOT NULL,
    added_at   INTEGER  NOT NULL,
    expires_at INTEGER,                            -- NULL: until removed
    removed_by TEXT,
    removed_at INTEGER
);
CREATE UNIQUE INDEX suppressions_active ON suppressions (kind, value) WHERE removed_at IS NULL;
-- Housekeeping re-checks suppressions added in the last minutes (a
-- campaign enqueue racing an add).
CREATE INDEX suppressions_added ON suppressions (added_at);

-- Workers a campaign's enqueue skipped because they were suppressed.
ALTER TABLE campaigns ADD COLUMN suppressed INTEGER NOT NULL DEFAULT 0;

-- A number's suppression cancels queued notices of every worker that had
-- the number.
CREATE INDEX phone_history_new_phone ON phone_history (new_phone);

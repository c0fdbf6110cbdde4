-- Retention (issue 14): housekeeping purges personal data and old records
-- in bounded batches, walking each table by primary key from where it
-- stopped, so no index is added to the hot path and no batch re-reads what
-- an earlier one purged.

-- How far each kind's walk has come: every row with an id at or below
-- `last_id` has been purged (or was younger than its cutoff when the walk
-- passed it: the walk stops at the first row younger than the cutoff).
CREATE TABLE retention_marks (
    kind       TEXT PRIMARY KEY,
    last_id    BIGINT NOT NULL,
    purged     BIGINT NOT NULL DEFAULT 0,          -- rows purged so far
    updated_at BIGINT NOT NULL
);

-- Message bodies and numbers of a finished campaign are purged by walking
-- the campaign's id range [purge_next, purge_last] (set once, when the
-- purge starts); `data_purged_at` when done. A campaign reopened after
-- (a resend) is purged again once it finishes again.
ALTER TABLE campaigns ADD COLUMN purge_next BIGINT;
ALTER TABLE campaigns ADD COLUMN purge_last BIGINT;
ALTER TABLE campaigns ADD COLUMN data_purged_at BIGINT;

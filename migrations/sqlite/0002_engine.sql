-- Campaign control and worker registry.
ALTER TABLE campaigns ADD COLUMN deadline_at INTEGER;         -- unsent by then: expired, flagged deadline
ALTER TABLE campaigns ADD COLUMN pause_reason TEXT;           -- why it is paused (operator or auto-pause)

-- Live dispatch workers, so each takes its share of every rate limit.
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    started_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
);

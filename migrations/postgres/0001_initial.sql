-- pedulicovid schema, PostgreSQL flavour. Times are Unix milliseconds (UTC).

-- Validated health workers from the One Data export, one row per NIK.
CREATE TABLE health_workers (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    nik           TEXT    NOT NULL UNIQUE,
    full_name     TEXT    NOT NULL,
    phone         TEXT    NOT NULL,              -- E.164 +628…
    operator      TEXT    NOT NULL,              -- from the prefix, a routing hint
    profession    TEXT    NOT NULL,
    facility_code TEXT    NOT NULL,
    regency_code  TEXT    NOT NULL,
    province_code TEXT    NOT NULL,
    validated     BOOLEAN NOT NULL,              -- validated by One Data
    eligible      BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX health_workers_phone ON health_workers (phone);
CREATE INDEX health_workers_audience ON health_workers (province_code, profession) WHERE validated AND eligible;

-- Every phone number a worker had; a change never loses the old one.
CREATE TABLE phone_history (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id  BIGINT NOT NULL REFERENCES health_workers (id),
    old_phone  TEXT,
    new_phone  TEXT    NOT NULL,
    source     TEXT    NOT NULL,                 -- import, chatbot, support
    changed_at BIGINT NOT NULL
);
CREATE INDEX phone_history_worker ON phone_history (worker_id);

CREATE TABLE campaigns (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT    NOT NULL,
    template     TEXT    NOT NULL,
    status       TEXT    NOT NULL,               -- scheduled, running, paused, completed, cancelled
    scheduled_at BIGINT NOT NULL,
    window_start INTEGER NOT NULL,               -- minutes after local midnight
    window_end   INTEGER NOT NULL,               -- exclusive; 1440 = midnight
    provinces    TEXT    NOT NULL DEFAULT '',    -- comma-separated filter, '' = all
    professions  TEXT    NOT NULL DEFAULT '',
    created_by   TEXT    NOT NULL,
    enqueued     BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- The queue. One row per (campaign, worker, generation); resends add a generation.
CREATE TABLE messages (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id        BIGINT NOT NULL REFERENCES campaigns (id),
    worker_id          BIGINT NOT NULL REFERENCES health_workers (id),
    generation         INTEGER NOT NULL DEFAULT 1,
    phone              TEXT    NOT NULL,         -- snapshot at enqueue
    utc_offset         INTEGER NOT NULL,         -- recipient's zone, hours (7 WIB, 8 WITA, 9 WIT)
    status             TEXT    NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    next_attempt_at    BIGINT NOT NULL,
    lease_owner        TEXT,
    lease_until        BIGINT,
    gateway            TEXT,
    gateway_message_id TEXT,
    body               TEXT,
    encoding           TEXT,
    segments           INTEGER,
    last_error         TEXT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL,
    sent_at            BIGINT,
    final_at           BIGINT,
    UNIQUE (campaign_id, worker_id, generation)
);
CREATE INDEX messages_due ON messages (next_attempt_at, id) WHERE status = 'queued';
CREATE INDEX messages_leased ON messages (lease_until) WHERE status = 'sending';
CREATE INDEX messages_awaiting ON messages (sent_at) WHERE status = 'sent';
CREATE INDEX messages_campaign_status ON messages (campaign_id, status);
CREATE INDEX messages_worker ON messages (worker_id);
CREATE INDEX messages_gateway_id ON messages (gateway, gateway_message_id);

-- Every send attempt and its outcome (support timeline).
CREATE TABLE attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  BIGINT NOT NULL REFERENCES messages (id),
    attempt     INTEGER NOT NULL,
    gateway     TEXT,
    outcome     TEXT    NOT NULL,                -- sent, retry, throttled, failed, deferred
    detail      TEXT,
    at          BIGINT NOT NULL
);
CREATE INDEX attempts_message ON attempts (message_id);

-- Every receipt exactly as it arrived, then what it did.
CREATE TABLE receipts (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gateway            TEXT    NOT NULL,
    message_id         BIGINT,
    gateway_message_id TEXT,
    raw_status         TEXT,
    outcome            TEXT,                     -- delivered, undelivered, …, unknown; NULL if malformed
    error_code         TEXT,
    payload            TEXT    NOT NULL,
    received_at        BIGINT NOT NULL,
    effect             TEXT                      -- applied, ignored, intermediate, unknown_message, malformed
);
CREATE INDEX receipts_message ON receipts (message_id);

-- Health workers whose notice did not arrive; the chatbot asks about these.
CREATE TABLE non_recipients (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker_id   BIGINT NOT NULL REFERENCES health_workers (id),
    campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
    message_id  BIGINT NOT NULL UNIQUE REFERENCES messages (id),
    reason      TEXT    NOT NULL,                -- undelivered, rejected, expired, invalid_number, retries_exhausted, no_receipt, lease_lost
    flagged_at  BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution  TEXT                             -- delivered_late, resent, reregistered, support
);
CREATE INDEX non_recipients_worker ON non_recipients (worker_id);
CREATE INDEX non_recipients_campaign ON non_recipients (campaign_id, reason);

CREATE TABLE audit_log (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    detail  TEXT    NOT NULL DEFAULT '',
    at      BIGINT NOT NULL
);

-- Callback tokens generated when none is configured, shared by every process.
CREATE TABLE gateway_secrets (
    gateway    TEXT PRIMARY KEY,
    secret     TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

-- The queue churns: vacuum it early so dead index entries do not slow claims.
ALTER TABLE messages SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

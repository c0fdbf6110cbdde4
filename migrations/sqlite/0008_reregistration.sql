-- Re-registration by the chatbot that only the worker can make (issue 10):
-- failed attempts and locks per worker (keyed by a hash of the NIK asked
-- about, so an unknown NIK locks exactly like a known one) and per new
-- number, and re-registrations waiting for One Data validation.

-- One failed attempt against one key. `key_kind` is `nik` (key_hash: hex
-- SHA-256 of the NIK the caller gave), `number` (of the E.164 number the
-- chatbot talks to) or `lookup` (of the phone a `nik_last6` look-up gave).
-- No NIK or number in clear.
CREATE TABLE reregistration_failures (
    id        INTEGER PRIMARY KEY,
    key_kind  TEXT    NOT NULL CHECK (key_kind IN ('nik', 'number', 'lookup')),
    key_hash  TEXT    NOT NULL,
    at        INTEGER NOT NULL
);
CREATE INDEX reregistration_failures_key ON reregistration_failures (key_kind, key_hash, at);
-- Housekeeping forgets failures past the 24-hour window.
CREATE INDEX reregistration_failures_at ON reregistration_failures (at);

-- A key locked after too many failures. Active while `locked_until` is in
-- the future and nobody lifted it. `worker_id`: the worker the NIK (or the
-- NIK tried with this number) names, when it exists, so support staff see
-- the lock on the worker's page.
CREATE TABLE reregistration_locks (
    id            INTEGER PRIMARY KEY,
    key_kind      TEXT    NOT NULL CHECK (key_kind IN ('nik', 'number', 'lookup')),
    key_hash      TEXT    NOT NULL,
    worker_id     INTEGER REFERENCES health_workers (id),
    number_masked TEXT,
    failures      INTEGER NOT NULL,
    locked_at     INTEGER NOT NULL,
    locked_until  INTEGER NOT NULL,
    lifted_at     INTEGER,
    lifted_by     TEXT
);
CREATE INDEX reregistration_locks_key ON reregistration_locks (key_kind, key_hash, locked_until);
CREATE INDEX reregistration_locks_worker ON reregistration_locks (worker_id);

-- Every re-registration the chatbot proved: `pending` until One Data (an
-- import carrying the new number for the NIK: `confirmed`) or support staff
-- (`approved`) validate it; `superseded` by a later one for the same worker;
-- `applied` at once in the `immediate` mode.
CREATE TABLE reregistrations (
    id           INTEGER PRIMARY KEY,
    worker_id    INTEGER NOT NULL REFERENCES health_workers (id),
    old_phone    TEXT    NOT NULL,
    new_phone    TEXT    NOT NULL,              -- E.164, the chatbot's WhatsApp number
    status       TEXT    NOT NULL CHECK (status IN ('pending', 'confirmed', 'approved', 'superseded', 'applied')),
    requested_by TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    decided_by   TEXT,
    decided_at   INTEGER,
    message_id   INTEGER REFERENCES messages (id)
);
CREATE UNIQUE INDEX reregistrations_one_pending ON reregistrations (worker_id) WHERE status = 'pending';
CREATE INDEX reregistrations_status ON reregistrations (status, id);

-- The worker's number came from an `immediate` chatbot re-registration and
-- no One Data import has carried it yet: notices to it are rendered without
-- NIK digits. Cleared by the next import that carries the worker, or a
-- support approval.
ALTER TABLE health_workers ADD COLUMN phone_unvalidated INTEGER NOT NULL DEFAULT 0;

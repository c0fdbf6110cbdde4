-- Outreach outcomes (issue 14): what became of a non-recipient after the
-- outreach team called or visited (the flag ids of `flags export` come
-- back with an outcome). One current outcome per flag; a later one
-- replaces it, and every change is in the audit trail (`flag.outcome`),
-- which is the history. Recording `reregistered`, `reached_by_phone` or
-- `declined` resolves an open flag (resolution `outreach`); `unreachable`
-- leaves it open, so the chatbot keeps offering re-registration.
ALTER TABLE non_recipients ADD COLUMN outcome TEXT
    CHECK (outcome IN ('reregistered', 'reached_by_phone', 'unreachable', 'declined'));
ALTER TABLE non_recipients ADD COLUMN outcome_at   INTEGER;   -- set with outcome
ALTER TABLE non_recipients ADD COLUMN outcome_by   TEXT;     -- the actor (token name, staff, CLI user)
ALTER TABLE non_recipients ADD COLUMN outcome_note TEXT;     -- optional, as typed

-- A campaign's outreach report looks at every flag of a worker in the
-- campaign (the first one's reason, any one reached).
CREATE INDEX non_recipients_campaign_worker ON non_recipients (campaign_id, worker_id, id);

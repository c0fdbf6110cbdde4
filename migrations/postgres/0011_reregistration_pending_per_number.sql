-- Audit F3.2: a proved re-registration no longer supersedes the worker's
-- other pending ones (a number holding a leaked list of NIKs and names
-- could otherwise cancel a worker's own request). A worker may have one
-- pending request per new number; the One Data import that carries a
-- number confirms the request with that number and supersedes the rest.
DROP INDEX reregistrations_one_pending;
CREATE UNIQUE INDEX reregistrations_one_pending_per_number
    ON reregistrations (worker_id, new_phone) WHERE status = 'pending';
-- Requests per WhatsApp number within 24 hours (the daily cap).
CREATE INDEX reregistrations_new_phone ON reregistrations (new_phone, requested_at);

-- Cost per message (issue 13): fewer index entries written per status
-- change, and housekeeping that reads only what it needs. Every status
-- change of a message is a non-HOT update (`status` is in indexes and
-- their predicates), which writes a new entry into every index of the
-- table: each index fewer saves three entries per message (claim, sent,
-- receipt) and one per enqueued row. Measured in BENCHMARKS.md ("Cost per
-- message").

-- Once per worker and a worker's messages, in one index: the unique key
-- now leads with the worker (`ON CONFLICT (campaign_id, worker_id,
-- generation)` infers it: column order does not matter to inference), and
-- the worker-only index goes. Campaign-wide reads use
-- `messages_campaign_status`.
CREATE UNIQUE INDEX messages_worker_campaign ON messages (worker_id, campaign_id, generation);
ALTER TABLE messages DROP CONSTRAINT messages_campaign_id_worker_id_generation_key;
DROP INDEX messages_worker;

-- Leases by holder, not by status: housekeeping's sweep of stale leases on
-- settled rows (a final receipt overtook the record of the send) scanned
-- the whole table twice a second (37 ms at 100 k rows, growing with the
-- table); a lease is held by a few hundred rows at most, so this index is
-- as small as the one it replaces and serves expiry, renewal, the sweep
-- and the completion check.
DROP INDEX messages_leased;
CREATE INDEX messages_leased ON messages (lease_until) WHERE lease_owner IS NOT NULL;

-- Attempts by message: one index for the timeline and the receipts'
-- hand-over evidence (`handed_over` is read from the row, a message has a
-- handful of attempts), instead of two.
DROP INDEX attempts_handed_over;
DROP INDEX attempts_message;
CREATE INDEX attempts_message ON attempts (message_id, gateway);

-- Attempts are only ever inserted from rows of `messages` just read in the
-- same statement (`INSERT … SELECT … FROM messages`), and messages are
-- never deleted: the per-row foreign-key probe (a trigger per attempt)
-- guarded nothing the statement does not. As in 0005, deletes are refused
-- outright instead.
ALTER TABLE attempts DROP CONSTRAINT attempts_message_id_fkey;
CREATE TRIGGER messages_keep BEFORE DELETE OR TRUNCATE ON messages
    FOR EACH STATEMENT EXECUTE FUNCTION pedulicovid_refuse_delete();

-- National scale: a cheaper enqueue and housekeeping that does not grow with
-- the campaign. Measured in BENCHMARKS.md ("Where the time goes").

-- Nothing looks a message up by the gateway's raw id: receipts match on the
-- normalised `gateway_ref`. One index fewer to write per message.
DROP INDEX messages_gateway_id;

-- `gateway_ref` is NULL until the send is recorded: the enqueue of a whole
-- campaign need not index a million NULLs.
DROP INDEX messages_gateway_ref;
CREATE INDEX messages_gateway_ref ON messages (gateway, gateway_ref) WHERE gateway_ref IS NOT NULL;

-- Per-row foreign-key checks were 43 % of the enqueue (an index probe into
-- `health_workers` and `campaigns` for each of 1.5 million rows that were
-- just selected from those very tables). Messages are only ever created from
-- rows of those tables (enqueue, resend, re-registration), and rows of those
-- tables are never deleted: the guarantee the constraints gave is kept by
-- refusing deletes outright, which costs nothing on the hot path.
ALTER TABLE messages DROP CONSTRAINT messages_worker_id_fkey;
ALTER TABLE messages DROP CONSTRAINT messages_campaign_id_fkey;

CREATE FUNCTION pedulicovid_refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted: messages refer to them', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END
$$;
CREATE TRIGGER health_workers_keep BEFORE DELETE OR TRUNCATE ON health_workers
    FOR EACH STATEMENT EXECUTE FUNCTION pedulicovid_refuse_delete();
CREATE TRIGGER campaigns_keep BEFORE DELETE OR TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION pedulicovid_refuse_delete();

-- Auto-pause looks at a campaign's last N attempts. Joining attempts to
-- messages to find the campaign hashed the whole campaign every round (81 ms
-- at 100 k); with the campaign on the attempt it is a backward index scan of
-- N entries.
ALTER TABLE attempts ADD COLUMN campaign_id BIGINT;
UPDATE attempts a SET campaign_id = m.campaign_id FROM messages m WHERE m.id = a.message_id;
CREATE INDEX attempts_campaign ON attempts (campaign_id, id);

-- National scale: see migrations/postgres/0005_scale.sql. SQLite keeps its
-- foreign keys (dropping one means rebuilding the table, and the enqueue
-- target is PostgreSQL's).

DROP INDEX messages_gateway_id;

DROP INDEX messages_gateway_ref;
CREATE INDEX messages_gateway_ref ON messages (gateway, gateway_ref) WHERE gateway_ref IS NOT NULL;

ALTER TABLE attempts ADD COLUMN campaign_id INTEGER;
UPDATE attempts SET campaign_id = (SELECT m.campaign_id FROM messages m WHERE m.id = attempts.message_id);
CREATE INDEX attempts_campaign ON attempts (campaign_id, id);

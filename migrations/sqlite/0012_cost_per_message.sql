-- Cost per message (issue 13; the PostgreSQL migration of the same number
-- says why). SQLite keeps its inline constraints (changing them means
-- rebuilding the tables); the index changes apply here too.

-- Leases by holder: the stale-lease sweep no longer scans the table.
DROP INDEX messages_leased;
CREATE INDEX messages_leased ON messages (lease_until) WHERE lease_owner IS NOT NULL;

-- Attempts by message: one index instead of two.
DROP INDEX attempts_handed_over;
DROP INDEX attempts_message;
CREATE INDEX attempts_message ON attempts (message_id, gateway);

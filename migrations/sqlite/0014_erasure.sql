-- Erasure of one worker's personal data (issue 14, point 3; UU PDP
-- No. 27/2022). `pedulicovid erase NIK` replaces the worker's NIK, name
-- and phone by tombstones everywhere they are stored (src/store/erasure.rs,
-- SECURITY.md "Personal data: what is kept where, and for how long") and
-- keeps the row, its id and its codes (province, profession, facility,
-- regency) so campaign figures stay right.
--
-- `erased_at`: when (Unix ms); NULL for a live worker. An erased worker is
-- found by no look-up, search or campaign.
-- `nik_salt`, `nik_verifier`: what remains of the NIK, hex SHA-256 of the
-- salt (16 random bytes, hex, one per row) followed by the NIK; lets
-- `pedulicovid import FILE --revive-erased` reconnect the same NIK to this
-- row instead of creating a new worker. NULL once revived.
ALTER TABLE health_workers ADD COLUMN erased_at INTEGER;
ALTER TABLE health_workers ADD COLUMN nik_salt TEXT;
ALTER TABLE health_workers ADD COLUMN nik_verifier TEXT;

-- The revival check reads the erased rows only.
CREATE INDEX health_workers_erased ON health_workers (erased_at) WHERE erased_at IS NOT NULL;

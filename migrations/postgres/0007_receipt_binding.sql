-- Callback secret rotation (`pedulicovid gateways rotate-secret NAME`): the
-- secret before the last rotation keeps verifying callback tokens and
-- per-message MACs until rotated_at + the gateway's
-- callback_secret_grace_secs, so receipts for messages sent before the
-- rotation still land.
ALTER TABLE gateway_secrets ADD COLUMN previous_secret TEXT;
ALTER TABLE gateway_secrets ADD COLUMN rotated_at BIGINT;

-- Hand-over evidence for receipts: an attempt whose outcome may have
-- reached the carrier (accepted, timeout, 5xx, an unreadable answer, a
-- permanent refusal). A throttle, a gateway fault (TLS, configuration) or a
-- refused connection never did; a receipt through the gateway-wide token is
-- applied only to a message with a handed-over attempt through its gateway.
ALTER TABLE attempts ADD COLUMN handed_over BOOLEAN NOT NULL DEFAULT FALSE;
-- Attempts recorded before this column: judged from what they kept.
UPDATE attempts SET handed_over = TRUE
 WHERE gateway IS NOT NULL
   AND outcome IN ('sent', 'retry', 'failed')
   AND COALESCE(detail, '') NOT LIKE 'retryable: connect%'
   AND COALESCE(detail, '') NOT LIKE 'throttled%'
   AND COALESCE(detail, '') NOT LIKE 'gateway fault%';
CREATE INDEX attempts_handed_over ON attempts (message_id, gateway) WHERE handed_over = TRUE;

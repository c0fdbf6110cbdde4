//! Gauges for `/metrics`, read from the database: messages, open flags
//! and receipts, each by gateway; campaigns by status.

use super::{with_pool, Result, Store};

/// Gauges for `/metrics`, read from the database.
#[derive(Debug, Clone, Default)]
pub struct Gauges {
    /// Messages by gateway (`""` before the first send) and status.
    pub messages: Vec<GatewayCount>,
    /// Open flags by the gateway of the flagged message (or `""`) and
    /// reason.
    pub open_flags: Vec<GatewayCount>,
    /// Receipts by gateway and outcome (`malformed` when unreadable).
    pub receipts: Vec<GatewayCount>,
    /// Campaigns by status (`gateway` empty).
    pub campaigns: Vec<GatewayCount>,
    /// Paused campaigns that the failure-rate guard paused (not an
    /// operator).
    pub auto_paused: i64,
}

/// One gauge value: a count per gateway and one more label (a status, a
/// flag reason or a receipt outcome, as the [`Gauges`] field says).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayCount {
    pub gateway: String,
    pub label: String,
    pub count: i64,
}

impl Store {
    /// Gauges for `/metrics`: messages by gateway and status, open flags by
    /// gateway and reason, receipts by gateway and outcome.
    pub async fn gauges(&self) -> Result<Gauges> {
        Ok(with_pool!(self, p => {
            let messages = sqlx::query_as(
                "SELECT COALESCE(gateway, '') AS gateway, status AS label, COUNT(*) AS count \
                 FROM messages GROUP BY 1, 2 ORDER BY 1, 2")
                .fetch_all(p).await?;
            let open_flags = sqlx::query_as(
                "SELECT COALESCE(m.gateway, '') AS gateway, f.reason AS label, COUNT(*) AS count FROM non_recipients f \
                 JOIN messages m ON m.id = f.message_id WHERE f.resolved_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2")
                .fetch_all(p).await?;
            let receipts = sqlx::query_as(
                "SELECT gateway, COALESCE(outcome, 'malformed') AS label, COUNT(*) AS count \
                 FROM receipts GROUP BY 1, 2 ORDER BY 1, 2")
                .fetch_all(p).await?;
            let campaigns = sqlx::query_as(
                "SELECT '' AS gateway, status AS label, COUNT(*) AS count \
                 FROM campaigns GROUP BY 2 ORDER BY 2")
                .fetch_all(p).await?;
            let auto_paused: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM campaigns WHERE status = 'paused' \
                 AND pause_reason LIKE 'auto-paused:%'")
                .fetch_one(p).await?;
            Gauges { messages, open_flags, receipts, campaigns, auto_paused }
        }))
    }
}

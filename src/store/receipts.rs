//! Receipts: stored raw first, then applied through the status machine.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{now_ms, with_pool, BeginWrite, Result, Store};
use crate::gateway::{ParsedReceipt, ReceiptOutcome};
use crate::status::{FlagReason, Status};

/// What applying a receipt did; stored in `receipts.effect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptEffect {
    /// Moved the message to a new status.
    Applied,
    /// A duplicate, or older news than what the message already says.
    Ignored,
    /// An intermediate report (accepted, buffered): kept, no status change.
    Intermediate,
    /// A code the dialect does not define: kept and counted, never guessed.
    UnknownCode,
    /// No message with that id.
    UnknownMessage,
    /// Could not be read at all.
    Malformed,
}

impl ReceiptEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptEffect::Applied => "applied",
            ReceiptEffect::Ignored => "ignored",
            ReceiptEffect::Intermediate => "intermediate",
            ReceiptEffect::UnknownCode => "unknown_code",
            ReceiptEffect::UnknownMessage => "unknown_message",
            ReceiptEffect::Malformed => "malformed",
        }
    }
}

/// A receipt row, for timelines and tests.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct StoredReceipt {
    pub id: i64,
    pub gateway: String,
    pub message_id: Option<i64>,
    pub gateway_message_id: Option<String>,
    pub raw_status: Option<String>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub payload: String,
    pub received_at: i64,
    pub effect: Option<String>,
}

/// The message status and flag a final outcome leads to.
fn target(outcome: ReceiptOutcome) -> Option<(Status, Option<FlagReason>)> {
    match outcome {
        ReceiptOutcome::Delivered => Some((Status::Delivered, None)),
        ReceiptOutcome::Undelivered => Some((Status::Undelivered, Some(FlagReason::Undelivered))),
        ReceiptOutcome::Expired => Some((Status::Expired, Some(FlagReason::Expired))),
        ReceiptOutcome::Rejected => Some((Status::Rejected, Some(FlagReason::Rejected))),
        ReceiptOutcome::InvalidNumber => Some((Status::Rejected, Some(FlagReason::InvalidNumber))),
        ReceiptOutcome::Accepted | ReceiptOutcome::Unknown => None,
    }
}

fn outcome_name(o: ReceiptOutcome) -> &'static str {
    match o {
        ReceiptOutcome::Delivered => "delivered",
        ReceiptOutcome::Undelivered => "undelivered",
        ReceiptOutcome::Expired => "expired",
        ReceiptOutcome::Rejected => "rejected",
        ReceiptOutcome::InvalidNumber => "invalid_number",
        ReceiptOutcome::Accepted => "accepted",
        ReceiptOutcome::Unknown => "unknown",
    }
}

impl Store {
    /// Keeps a receipt that could not be parsed, for the audit trail.
    pub async fn store_malformed_receipt(&self, gateway: &str, payload: &str) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO receipts (gateway, payload, received_at, effect) VALUES ($1, $2, $3, 'malformed') RETURNING id")
            .bind(gateway).bind(payload).bind(now_ms())
            .fetch_one(p).await?))
    }

    /// Stores and applies one receipt (see [`Store::apply_receipts`]): the
    /// status moves only where the status machine allows (duplicates and
    /// stale reports change nothing), failures flag the worker, and a late
    /// `delivered` resolves the flag.
    pub async fn apply_receipt(
        &self,
        gateway: &str,
        payload: &str,
        r: &ParsedReceipt,
    ) -> Result<ReceiptEffect> {
        let one = IncomingReceipt {
            gateway: gateway.to_string(),
            payload: payload.to_string(),
            parsed: r.clone(),
        };
        Ok(self.apply_receipts(&[one]).await?[0])
    }

    /// Receipts for one message, oldest first.
    pub async fn receipts_for(&self, message_id: i64) -> Result<Vec<StoredReceipt>> {
        Ok(with_pool!(self, p => sqlx::query_as::<_, StoredReceipt>(
            "SELECT id, gateway, message_id, gateway_message_id, raw_status, outcome, error_code, payload, \
             received_at, effect FROM receipts WHERE message_id = $1 ORDER BY id")
            .bind(message_id).fetch_all(p).await?))
    }

    /// Receipt counts by effect (metrics, reports).
    pub async fn receipt_effects(&self) -> Result<Vec<(Option<String>, i64)>> {
        Ok(with_pool!(self, p => sqlx::query_as(
            "SELECT effect, COUNT(*) FROM receipts GROUP BY effect ORDER BY effect")
            .fetch_all(p).await?))
    }
}

/// A parsed receipt waiting to be stored and applied in a batch.
#[derive(Debug, Clone)]
pub struct IncomingReceipt {
    pub gateway: String,
    /// The callback exactly as it came (query string or form body).
    pub payload: String,
    pub parsed: ParsedReceipt,
}

/// Rows per multi-row INSERT (9 parameters each, well under both engines'
/// parameter limits).
const INSERT_CHUNK: usize = 300;

impl Store {
    /// Stores and applies many receipts in one transaction, with set-based
    /// statements: the receipts and their effects commit together or not at
    /// all (the caller answers the carrier only after the commit, so a
    /// failure means the carrier retries, never a lost report). Same rules
    /// as [`Store::apply_receipt`]; receipts for the same message are
    /// applied in arrival order (one per round), so a final followed by a
    /// duplicate in one batch behaves as it would one by one.
    pub async fn apply_receipts(&self, batch: &[IncomingReceipt]) -> Result<Vec<ReceiptEffect>> {
        let now = now_ms();
        let lock = self.row_lock();
        let mut effects: Vec<Option<ReceiptEffect>> = vec![None; batch.len()];
        // Rounds in which every message id appears at most once.
        let mut rounds: Vec<Vec<usize>> = vec![];
        {
            let mut seen_in: std::collections::HashMap<i64, usize> =
                std::collections::HashMap::new();
            for (i, r) in batch.iter().enumerate() {
                let round = match r.parsed.message_id {
                    Some(id) => {
                        let k = seen_in.entry(id).or_insert(0);
                        *k += 1;
                        *k - 1
                    }
                    None => 0,
                };
                if rounds.len() <= round {
                    rounds.push(vec![]);
                }
                rounds[round].push(i);
            }
        }
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for round in &rounds {
                let mut ids: Vec<i64> = round.iter().filter_map(|&i| batch[i].parsed.message_id).collect();
                ids.sort_unstable();
                let existing: std::collections::HashSet<i64> = if ids.is_empty() {
                    Default::default()
                } else {
                    // Lock the rows up front in id order (PostgreSQL); every
                    // writer of `messages` does the same, so concurrent
                    // batches queue behind each other instead of deadlocking.
                    let mut q = QueryBuilder::new("SELECT id FROM messages WHERE id IN (");
                    let mut sep = q.separated(", ");
                    for id in &ids {
                        sep.push_bind(*id);
                    }
                    q.push(") ORDER BY id");
                    q.push(lock);
                    q.build_query_scalar::<i64>().fetch_all(&mut *tx).await?.into_iter().collect()
                };
                // Group the applicable receipts by the status they lead to.
                // (target status, flag, [(receipt index, message id)])
                type Group = (Status, Option<FlagReason>, Vec<(usize, i64)>);
                let mut groups: Vec<Group> = vec![];
                for &i in round {
                    let r = &batch[i].parsed;
                    let effect = match (r.message_id.filter(|id| existing.contains(id)), target(r.outcome)) {
                        (None, _) => Some(ReceiptEffect::UnknownMessage),
                        (Some(_), None) if r.outcome == ReceiptOutcome::Accepted => Some(ReceiptEffect::Intermediate),
                        (Some(_), None) => Some(ReceiptEffect::UnknownCode),
                        (Some(id), Some((status, reason))) => {
                            match groups.iter_mut().find(|g| g.0 == status && g.1 == reason) {
                                Some(g) => g.2.push((i, id)),
                                None => groups.push((status, reason, vec![(i, id)])),
                            }
                            None
                        }
                    };
                    effects[i] = effect;
                }
                for (status, reason, members) in &groups {
                    let from = Status::sql_list(&Status::sources_of(*status));
                    let mut q = QueryBuilder::new("UPDATE messages SET status = ");
                    q.push_bind(status.as_str());
                    q.push(", final_at = ");
                    q.push_bind(now);
                    q.push(", updated_at = ");
                    q.push_bind(now);
                    q.push(", last_error = ");
                    q.push_bind(reason.map(|r| format!("receipt: {r}")));
                    q.push(" WHERE id IN (");
                    let mut sorted: Vec<i64> = members.iter().map(|m| m.1).collect();
                    sorted.sort_unstable();
                    let mut sep = q.separated(", ");
                    for id in &sorted {
                        sep.push_bind(*id);
                    }
                    q.push(format!(") AND status IN ({from}) RETURNING id"));
                    let applied: std::collections::HashSet<i64> =
                        q.build_query_scalar::<i64>().fetch_all(&mut *tx).await?.into_iter().collect();
                    for (i, id) in members {
                        effects[*i] = Some(if applied.contains(id) { ReceiptEffect::Applied } else { ReceiptEffect::Ignored });
                    }
                    if applied.is_empty() {
                        continue;
                    }
                    let mut applied: Vec<i64> = applied.into_iter().collect();
                    applied.sort_unstable();
                    match reason {
                        Some(reason) => {
                            let mut q = QueryBuilder::new(
                                "INSERT INTO non_recipients (worker_id, campaign_id, message_id, reason, flagged_at) \
                                 SELECT worker_id, campaign_id, id, ");
                            q.push_bind(reason.as_str());
                            q.push(", ");
                            q.push_bind(now);
                            q.push(" FROM messages WHERE id IN (");
                            let mut sep = q.separated(", ");
                            for id in &applied {
                                sep.push_bind(*id);
                            }
                            q.push(") ON CONFLICT (message_id) DO UPDATE SET reason = excluded.reason, \
                                    flagged_at = excluded.flagged_at, resolved_at = NULL, resolution = NULL");
                            q.build().execute(&mut *tx).await?;
                        }
                        None => {
                            let mut q = QueryBuilder::new("UPDATE non_recipients SET resolved_at = ");
                            q.push_bind(now);
                            q.push(", resolution = 'delivered_late' WHERE resolved_at IS NULL AND message_id IN (");
                            let mut sep = q.separated(", ");
                            for id in &applied {
                                sep.push_bind(*id);
                            }
                            q.push(")");
                            q.build().execute(&mut *tx).await?;
                        }
                    }
                }
            }
            for chunk in (0..batch.len()).collect::<Vec<_>>().chunks(INSERT_CHUNK) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO receipts (gateway, message_id, gateway_message_id, raw_status, outcome, \
                     error_code, payload, received_at, effect) ");
                q.push_values(chunk, |mut b, &i| {
                    let r = &batch[i];
                    b.push_bind(&r.gateway)
                        .push_bind(r.parsed.message_id)
                        .push_bind(&r.parsed.gateway_message_id)
                        .push_bind(&r.parsed.raw_status)
                        .push_bind(outcome_name(r.parsed.outcome))
                        .push_bind(&r.parsed.error_code)
                        .push_bind(&r.payload)
                        .push_bind(now)
                        .push_bind(effects[i].unwrap_or(ReceiptEffect::Ignored).as_str());
                });
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(effects
            .into_iter()
            .map(|e| e.unwrap_or(ReceiptEffect::Ignored))
            .collect())
    }
}

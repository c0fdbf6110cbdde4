//! Retention: what housekeeping purges, and how without slowing sending.
//!
//! Each kind of record has a period ([`RetentionPolicy`]); rows older than
//! it are purged in bounded batches. Append-only tables (receipts,
//! attempts, the audit trail, extra notices) are walked by primary key from
//! a mark (`retention_marks`): a batch reads at most `batch` rows past the
//! mark, purges the leading ones older than the cutoff, and moves the mark,
//! so no index is added to the hot path and no batch reads what an earlier
//! one purged. Message bodies and numbers go per finished campaign, walking
//! the campaign's id range. Rows that counts are made of (messages,
//! receipts, flags) are kept with their personal fields emptied, so
//! campaign reports, delivery rates and receipt effects stay right after a
//! purge; attempts and audit entries are deleted.

use serde::Serialize;

use super::{now_ms, with_pool, BeginWrite, Result, Store};
use crate::status::CampaignStatus;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Periods, in milliseconds (`None`: kept for ever), and the batch size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub receipt_payloads_ms: Option<i64>,
    pub message_data_ms: Option<i64>,
    pub attempts_ms: Option<i64>,
    pub audit_ms: Option<i64>,
    pub idempotency_keys_ms: Option<i64>,
    pub batch: i64,
}

impl RetentionPolicy {
    /// From days (`0`: for ever), as `[retention]` gives them.
    pub fn from_days(
        receipt_payloads: u32,
        message_data: u32,
        attempts: u32,
        audit: u32,
        idempotency_keys_secs: u64,
        batch: u32,
    ) -> RetentionPolicy {
        let days = |d: u32| (d > 0).then(|| i64::from(d) * DAY_MS);
        RetentionPolicy {
            receipt_payloads_ms: days(receipt_payloads),
            message_data_ms: days(message_data),
            attempts_ms: days(attempts),
            audit_ms: days(audit),
            idempotency_keys_ms: i64::try_from(idempotency_keys_secs.saturating_mul(1000)).ok(),
            batch: i64::from(batch.max(1)),
        }
    }
}

/// An append-only table purged by a walk from its mark.
struct Walk {
    /// The kind's name (`retention_marks.kind`, `retention status`).
    kind: &'static str,
    table: &'static str,
    /// The column that says how old a row is.
    time: &'static str,
    /// The statement head that purges; `WHERE` follows.
    purge: &'static str,
}

const RECEIPT_PAYLOADS: Walk = Walk {
    kind: "receipt_payloads",
    table: "receipts",
    time: "received_at",
    purge: "UPDATE receipts SET payload = ''",
};

const ATTEMPTS: Walk = Walk {
    kind: "attempts",
    table: "attempts",
    time: "at",
    purge: "DELETE FROM attempts",
};

const AUDIT: Walk = Walk {
    kind: "audit",
    table: "audit_log",
    time: "at",
    purge: "DELETE FROM audit_log",
};

/// Part of `message_data`: the numbers extra notices went to.
const RESEND_NUMBERS: Walk = Walk {
    kind: "resend_numbers",
    table: "resends",
    time: "created_at",
    purge: "UPDATE resends SET phone = ''",
};

/// One kind as `retention status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KindStatus {
    pub kind: &'static str,
    /// Days kept; `None`: for ever.
    pub keep_days: Option<f64>,
    /// Rows older than that and not yet purged (for `message_data`:
    /// messages of finished campaigns plus extra-notice numbers).
    pub due: i64,
    /// Rows purged so far (by the walks; message data counts messages).
    pub purged: i64,
}

/// What one step purged, per kind, and whether a kind came back full.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RetentionStep {
    pub receipt_payloads: u64,
    pub message_data: u64,
    pub attempts: u64,
    pub audit: u64,
    pub idempotency_keys: u64,
    /// A batch came back full: run again soon.
    #[serde(skip)]
    pub more: bool,
}

impl RetentionStep {
    pub fn total(&self) -> u64 {
        self.receipt_payloads
            + self.message_data
            + self.attempts
            + self.audit
            + self.idempotency_keys
    }

    pub fn add(&mut self, o: &RetentionStep) {
        self.receipt_payloads += o.receipt_payloads;
        self.message_data += o.message_data;
        self.attempts += o.attempts;
        self.audit += o.audit;
        self.idempotency_keys += o.idempotency_keys;
    }
}

/// A finished campaign whose message data is due.
#[derive(Debug, sqlx::FromRow)]
struct DueCampaign {
    id: i64,
    purge_next: Option<i64>,
    purge_last: Option<i64>,
    data_purged_at: Option<i64>,
}

fn finished_sql() -> String {
    format!(
        "status IN ('{}', '{}')",
        CampaignStatus::Completed,
        CampaignStatus::Cancelled
    )
}

impl Store {
    /// One batch of one walk: `(purged, came back full)`.
    async fn walk_step(&self, w: &Walk, cutoff: i64, batch: i64) -> Result<(u64, bool)> {
        let read = format!(
            "SELECT id, {time} FROM {table} WHERE id > $1 ORDER BY id LIMIT $2",
            time = w.time,
            table = w.table
        );
        let purge = format!("{} WHERE id > $1 AND id <= $2 AND {} < $3", w.purge, w.time);
        let now = now_ms();
        with_pool!(self, pool => {
            let mark: Option<i64> = sqlx::query_scalar("SELECT last_id FROM retention_marks WHERE kind = $1")
                .bind(w.kind).fetch_optional(pool).await?;
            let mark = mark.unwrap_or(0);
            let rows: Vec<(i64, i64)> = sqlx::query_as(&read)
                .bind(mark).bind(batch).fetch_all(pool).await?;
            let old = rows.iter().take_while(|(_, t)| *t < cutoff).count();
            let Some(&(last, _)) = rows[..old].last() else {
                return Ok((0, false));
            };
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(&purge).bind(mark).bind(last).bind(cutoff)
                .execute(&mut *tx).await?.rows_affected();
            sqlx::query(
                "INSERT INTO retention_marks (kind, last_id, purged, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (kind) DO UPDATE SET last_id = excluded.last_id, \
                 purged = retention_marks.purged + excluded.purged, updated_at = excluded.updated_at")
                .bind(w.kind).bind(last).bind(n as i64).bind(now)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok((n, old as i64 == batch))
        })
    }

    /// One batch of message bodies and numbers of the oldest finished
    /// campaign that is due: `(messages purged, more to do)`.
    async fn message_data_step(&self, cutoff: i64, batch: i64) -> Result<(u64, bool)> {
        let due_sql = format!(
            "SELECT id, purge_next, purge_last, data_purged_at FROM campaigns \
             WHERE {} AND updated_at < $1 AND (data_purged_at IS NULL OR data_purged_at < updated_at) \
             ORDER BY id LIMIT 1",
            finished_sql()
        );
        let now = now_ms();
        with_pool!(self, pool => {
            let c: Option<DueCampaign> = sqlx::query_as(&due_sql)
                .bind(cutoff).fetch_optional(pool).await?;
            let Some(c) = c else { return Ok((0, false)) };
            let (next, last) = match (c.purge_next, c.purge_last, c.data_purged_at) {
                (Some(n), Some(l), None) => (n, l),
                // First time, or again after the campaign reopened.
                _ => {
                    let (lo, hi): (Option<i64>, Option<i64>) = sqlx::query_as(
                        "SELECT MIN(id), MAX(id) FROM messages WHERE campaign_id = $1")
                        .bind(c.id).fetch_one(pool).await?;
                    let (Some(lo), Some(hi)) = (lo, hi) else {
                        sqlx::query("UPDATE campaigns SET data_purged_at = $1 WHERE id = $2")
                            .bind(now).bind(c.id).execute(pool).await?;
                        return Ok((0, true));
                    };
                    (lo, hi)
                }
            };
            let end = next.saturating_add(batch);
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(
                "UPDATE messages SET body = NULL, phone = '' \
                 WHERE id >= $1 AND id < $2 AND id <= $3 AND campaign_id = $4")
                .bind(next).bind(end).bind(last).bind(c.id)
                .execute(&mut *tx).await?.rows_affected();
            // At the end of the range, notices added after it was taken (a
            // resend reopened the campaign mid-purge, and it finished
            // again) extend it instead of being left behind.
            let mut last = last;
            if end > last {
                let hi: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM messages WHERE campaign_id = $1")
                    .bind(c.id).fetch_one(&mut *tx).await?;
                last = last.max(hi.unwrap_or(last));
            }
            let done = end > last;
            sqlx::query(
                "UPDATE campaigns SET purge_next = $1, purge_last = $2, \
                 data_purged_at = CASE WHEN $3 THEN $4 ELSE NULL END WHERE id = $5")
                .bind(end).bind(last).bind(done).bind(now).bind(c.id)
                .execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO retention_marks (kind, last_id, purged, updated_at) VALUES ('message_data', 0, $1, $2) \
                 ON CONFLICT (kind) DO UPDATE SET purged = retention_marks.purged + excluded.purged, \
                 updated_at = excluded.updated_at")
                .bind(n as i64).bind(now)
                .execute(&mut *tx).await?;
            tx.commit().await?;
            Ok((n, true))
        })
    }

    /// One bounded batch of every kind that has a period: at most
    /// `policy.batch` rows each (idempotency keys: every expired one, as
    /// housekeeping always did).
    pub async fn retention_step(&self, policy: &RetentionPolicy) -> Result<RetentionStep> {
        let now = now_ms();
        let mut step = RetentionStep::default();
        for (w, keep, out) in [
            (
                &RECEIPT_PAYLOADS,
                policy.receipt_payloads_ms,
                &mut step.receipt_payloads,
            ),
            (&ATTEMPTS, policy.attempts_ms, &mut step.attempts),
            (&AUDIT, policy.audit_ms, &mut step.audit),
        ] {
            if let Some(keep) = keep {
                let (n, full) = self.walk_step(w, now - keep, policy.batch).await?;
                *out = n;
                step.more |= full;
            }
        }
        if let Some(keep) = policy.message_data_ms {
            let (n, more) = self.message_data_step(now - keep, policy.batch).await?;
            let (r, full) = self
                .walk_step(&RESEND_NUMBERS, now - keep, policy.batch)
                .await?;
            step.message_data = n + r;
            step.more |= more || full;
        }
        if let Some(keep) = policy.idempotency_keys_ms {
            step.idempotency_keys = self.purge_idempotency_keys(now - keep).await?;
        }
        Ok(step)
    }

    /// What is due per kind, and what was purged so far. Counts read past
    /// each walk's mark: an operator's command, not a housekeeping one.
    pub async fn retention_status(&self, policy: &RetentionPolicy) -> Result<Vec<KindStatus>> {
        let now = now_ms();
        let days = |ms: Option<i64>| ms.map(|ms| ms as f64 / DAY_MS as f64);
        let mut out = vec![];
        for (w, keep) in [
            (&RECEIPT_PAYLOADS, policy.receipt_payloads_ms),
            (&ATTEMPTS, policy.attempts_ms),
            (&AUDIT, policy.audit_ms),
        ] {
            let (due, purged) = self.walk_due(w, keep.map(|k| now - k)).await?;
            out.push(KindStatus {
                kind: w.kind,
                keep_days: days(keep),
                due,
                purged,
            });
        }
        let cutoff = policy.message_data_ms.map(|k| now - k);
        let (resends_due, resends_purged) = self.walk_due(&RESEND_NUMBERS, cutoff).await?;
        let messages_sql = format!(
            "SELECT COUNT(*) FROM messages m JOIN campaigns c ON c.id = m.campaign_id \
             WHERE c.{} AND c.updated_at < $1 AND (c.data_purged_at IS NULL OR c.data_purged_at < c.updated_at) \
             AND m.phone <> ''",
            finished_sql()
        );
        let (messages_due, messages_purged, idem_due) = with_pool!(self, p => {
            let due: i64 = match cutoff {
                Some(cutoff) => sqlx::query_scalar(&messages_sql).bind(cutoff).fetch_one(p).await?,
                None => 0,
            };
            let purged: Option<i64> = sqlx::query_scalar(
                "SELECT purged FROM retention_marks WHERE kind = 'message_data'")
                .fetch_optional(p).await?;
            let idem: i64 = match policy.idempotency_keys_ms {
                Some(keep) => sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys WHERE created_at < $1")
                    .bind(now - keep).fetch_one(p).await?,
                None => 0,
            };
            (due, purged.unwrap_or(0), idem)
        });
        out.push(KindStatus {
            kind: "message_data",
            keep_days: days(policy.message_data_ms),
            due: messages_due + resends_due,
            purged: messages_purged + resends_purged,
        });
        out.push(KindStatus {
            kind: "idempotency_keys",
            keep_days: days(policy.idempotency_keys_ms),
            due: idem_due,
            purged: 0,
        });
        Ok(out)
    }

    /// `(rows past the mark older than cutoff, purged so far)`.
    async fn walk_due(&self, w: &Walk, cutoff: Option<i64>) -> Result<(i64, i64)> {
        let sql = format!(
            "SELECT COUNT(*) FROM {} WHERE id > COALESCE((SELECT last_id FROM retention_marks \
             WHERE kind = $1), 0) AND {} < $2",
            w.table, w.time
        );
        with_pool!(self, p => {
            let due: i64 = match cutoff {
                Some(cutoff) => sqlx::query_scalar(&sql).bind(w.kind).bind(cutoff).fetch_one(p).await?,
                None => 0,
            };
            let purged: Option<i64> = sqlx::query_scalar("SELECT purged FROM retention_marks WHERE kind = $1")
                .bind(w.kind).fetch_optional(p).await?;
            Ok((due, purged.unwrap_or(0)))
        })
    }
}

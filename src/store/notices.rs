//! Extra notices (`resends`): a support resend, and the queueing a chatbot
//! re-registration shares with it. Limits, eligibility and due times are
//! decided by [`crate::domain::notice`]; this module reads what they need
//! and writes what they decided, in the caller's transaction.
//!
//! A support resend and a chatbot re-registration both queue a *new message
//! generation* (`max(generation) + 1`) for the worker in the most recent
//! non-cancelled campaign that includes the worker and whose deadline has
//! not passed, with that campaign's template, due when the recipient's
//! window next opens. A re-registration of a worker in no such campaign uses
//! the standing campaign "Registrasi ulang (chatbot)" (template
//! `registrasi_ulang`, 08:00–20:00), created on demand. A `completed`
//! campaign goes back to `running` so a worker claims the new message; a
//! `paused` one keeps it until resumed. Each extra notice is a row in
//! `resends`: at most [`RESENDS_PER_NUMBER_PER_DAY`] per phone number in any
//! 24 hours, because carriers block senders that repeat themselves to one
//! number.

use serde::{Deserialize, Serialize};

use super::{
    audit_tx, now_ms, with_pool, BeginWrite, Store, StoreError, SupportError, WorkerRow,
    WORKER_COLUMNS,
};
use crate::domain::notice::{self, FreeText};
use crate::domain::{fmt_wib, mask_phone, Window};
use crate::status::{CampaignStatus, Status};

type Result<T, E = SupportError> = std::result::Result<T, E>;

pub use crate::domain::notice::RESENDS_PER_NUMBER_PER_DAY;

/// Name and template of the standing campaign for re-registered workers who
/// are in no campaign.
pub const REREGISTRATION_CAMPAIGN: &str = "Registrasi ulang (chatbot)";

pub const REREGISTRATION_TEMPLATE: &str = "registrasi_ulang";

pub(super) const STANDING_REREGISTRATION: &str = "reregistration";

/// A notice queued by a resend or a re-registration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct QueuedNotice {
    pub message_id: i64,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub generation: i32,
    /// When it may first be sent: now, or when the recipient's window
    /// opens (Unix ms).
    pub next_attempt_at: i64,
    /// `next_attempt_at` in WIB, for people.
    pub next_attempt_wib: String,
    pub phone_masked: String,
}

/// Target of a new generation.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(super) struct TargetCampaign {
    pub(super) id: i64,
    pub(super) name: String,
    pub(super) window_start: i32,
    pub(super) window_end: i32,
}

impl TargetCampaign {
    pub(super) fn window(&self) -> Window {
        Window {
            start_min: self.window_start,
            end_min: self.window_end,
        }
    }
}

/// Refuses when `$phone` had its extra notices for the last 24 hours
/// ([`notice::extra_notice_allowed`] decides; this reads the times). A
/// macro, as the other statements run inside a caller's transaction on
/// either database (`$tx` is a SQLite or a PostgreSQL transaction).
macro_rules! check_number_limit {
    ($tx:expr, $phone:expr, $now:expr, $max:expr) => {{
        let phone: &str = $phone;
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at FROM resends WHERE phone = $1 AND created_at > $2 ORDER BY created_at",
        )
        .bind(phone)
        .bind($now - notice::DAY_MS)
        .fetch_all(&mut *$tx)
        .await?;
        if let Err((message, retry_at)) = notice::extra_notice_allowed(phone, &recent, $max) {
            return Err(SupportError::Limit { message, retry_at });
        }
    }};
}

/// The most recent non-cancelled campaign that includes the worker and
/// whose deadline has not passed.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! latest_campaign_tx {
    ($tx:expr, $store:expr, $worker_id:expr, $now:expr) => {{
        let lock = $store.row_lock();
        let c: Option<TargetCampaign> = sqlx::query_as(&format!(
            "SELECT c.id, c.name, c.window_start, c.window_end FROM campaigns c \
             WHERE c.status <> '{}' AND (c.deadline_at IS NULL OR c.deadline_at > $2) \
             AND EXISTS (SELECT 1 FROM messages m WHERE m.campaign_id = c.id AND m.worker_id = $1) \
             ORDER BY c.id DESC LIMIT 1{lock}",
            CampaignStatus::Cancelled
        ))
        .bind($worker_id)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        c
    }};
}

/// What [`queue_generation_tx!`] queues: everything already decided.
pub(super) struct NewNotice<'a> {
    pub(super) worker_id: i64,
    /// E.164, the number the notice goes to.
    pub(super) phone: &'a str,
    /// When it is due, in the recipient's zone ([`notice::Due`]).
    pub(super) due: notice::Due,
    /// `resend` (support staff) or `reregister` (chatbot).
    pub(super) kind: &'static str,
    pub(super) actor: &'a str,
    pub(super) reason: &'a str,
}

/// Queues generation `max + 1` of `$notice` ([`NewNotice`]) in campaign
/// `$campaign`, wakes a completed campaign, and records the extra notice in
/// `resends`. A macro for the reason [`check_number_limit`] is.
macro_rules! queue_generation_tx {
    ($tx:expr, $campaign:expr, $notice:expr, $now:expr) => {{
        let c: &TargetCampaign = $campaign;
        let n: &NewNotice = $notice;
        let max: Option<i32> = sqlx::query_scalar(
            "SELECT MAX(generation) FROM messages WHERE campaign_id = $1 AND worker_id = $2",
        )
        .bind(c.id)
        .bind(n.worker_id)
        .fetch_one(&mut *$tx)
        .await?;
        let generation = max.unwrap_or(0) + 1;
        let message_id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (campaign_id, worker_id, generation, phone, utc_offset, status, attempts, \
             next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $8, 0, $6, $7, $7) \
             RETURNING id",
        )
        .bind(c.id)
        .bind(n.worker_id)
        .bind(generation)
        .bind(n.phone)
        .bind(n.due.utc_offset)
        .bind(n.due.at)
        .bind($now)
        .bind(Status::Queued.as_str())
        .fetch_one(&mut *$tx)
        .await?;
        sqlx::query(&format!(
            "UPDATE campaigns SET enqueued = enqueued + 1, updated_at = $1, \
             status = CASE WHEN status IN ({}) THEN '{}' ELSE status END WHERE id = $2",
            CampaignStatus::sql_moves(&[CampaignStatus::Completed], CampaignStatus::Running),
            CampaignStatus::Running
        ))
        .bind($now)
        .bind(c.id)
        .execute(&mut *$tx)
        .await?;
        sqlx::query(
            "INSERT INTO resends (worker_id, message_id, phone, kind, actor, reason, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(n.worker_id)
        .bind(message_id)
        .bind(n.phone)
        .bind(n.kind)
        .bind(n.actor)
        .bind(n.reason)
        .bind($now)
        .execute(&mut *$tx)
        .await?;
        QueuedNotice {
            message_id,
            campaign_id: c.id,
            campaign_name: c.name.clone(),
            generation,
            next_attempt_at: n.due.at,
            next_attempt_wib: fmt_wib(n.due.at),
            phone_masked: mask_phone(n.phone),
        }
    }};
}

// The re-registration module queues notices the same way.
pub(super) use {check_number_limit, latest_campaign_tx, queue_generation_tx};

impl Store {
    /// Queues the worker's notice again, as a new generation in the
    /// worker's latest campaign, audited with `staff` and `reason`.
    ///
    /// Refused while one of the worker's messages is queued, being sent or
    /// sent and awaiting its receipt (409); for a worker not validated or
    /// not eligible, or in no campaign (422); and past
    /// [`RESENDS_PER_NUMBER_PER_DAY`] for the number (429). Open flags are
    /// resolved `resent`: a new flag follows if this one fails too.
    pub async fn resend(
        &self,
        worker_id: i64,
        staff: &FreeText,
        reason: &FreeText,
    ) -> Result<QueuedNotice> {
        let now = now_ms();
        let lock = self.row_lock();
        // An erased worker (store/erasure.rs) is not found.
        let worker_sql = format!(
            "SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1 AND erased_at IS NULL{lock}"
        );
        let busy_sql = format!(
            "SELECT id, status FROM messages WHERE worker_id = $1 AND status{} \
             ORDER BY id DESC LIMIT 1",
            Status::sql_is(&Status::IN_FLIGHT)
        );
        let notice = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let w: Option<WorkerRow> = sqlx::query_as(&worker_sql)
                .bind(worker_id).fetch_optional(&mut *tx).await?;
            let Some(w) = w else {
                return Err(SupportError::NotFound(format!("worker {worker_id}")));
            };
            if let Err(why) = notice::may_get_notice(w.validated, w.eligible) {
                return Err(SupportError::NotEligible(format!(
                    "worker {worker_id} is not {why} and gets no notice")));
            }
            let busy: Option<(i64, String)> = sqlx::query_as(&busy_sql)
                .bind(worker_id).fetch_optional(&mut *tx).await?;
            if let Some((id, status)) = busy {
                let status: Status = status.parse().map_err(|e: String| StoreError::Conflict(e))?;
                let what = notice::blocks_resend(status).unwrap_or("is in flight");
                return Err(SupportError::InFlight(format!(
                    "message {id} for worker {worker_id} {what}; resend once it has an outcome")));
            }
            if let Some((kind, why)) = super::suppression::suppressed_tx!(tx, worker_id, w.phone.as_e164(), now) {
                return Err(SupportError::NotEligible(format!(
                    "worker {worker_id} is suppressed (their {}, reason {why}): no notice is sent \
                     until the suppression is removed or expires",
                    if kind == "nik" { "NIK" } else { "number" })));
            }
            check_number_limit!(tx, w.phone.as_e164(), now, self.limits.resends_per_number_per_day);
            let Some(c) = latest_campaign_tx!(tx, self, worker_id, now) else {
                return Err(SupportError::NotEligible(format!(
                    "worker {worker_id} is in no open campaign: there is no notice to resend")));
            };
            let new = NewNotice {
                worker_id,
                phone: w.phone.as_e164(),
                due: notice::Due::in_window(c.window(), w.province_code, now),
                kind: "resend",
                actor: staff.as_str(),
                reason: reason.as_str(),
            };
            let notice = queue_generation_tx!(tx, &c, &new, now);
            let resolved = sqlx::query(
                "UPDATE non_recipients SET resolved_at = $1, resolution = 'resent', resolved_by = $2 \
                 WHERE worker_id = $3 AND resolved_at IS NULL")
                .bind(now).bind(staff.as_str()).bind(worker_id)
                .execute(&mut *tx).await?.rows_affected();
            audit_tx!(tx, staff.as_str(), "worker.resend", format!("worker:{worker_id}"),
                format!("reason: {reason}; message {} (generation {}) in campaign {} to {}; {resolved} flag(s) resolved",
                    notice.message_id, notice.generation, notice.campaign_id, notice.phone_masked), now);
            tx.commit().await?;
            notice
        });
        self.wake_dispatchers().await;
        Ok(notice)
    }
}

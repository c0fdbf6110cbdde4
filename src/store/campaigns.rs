//! Campaigns (`campaigns`): create and enqueue, move along their status
//! machine, control, reschedule, auto-pause; reports and delivery rates
//! per province.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::flags::flag;
use super::{audit_tx, now_ms, with_pool, BeginWrite, Db, Result, Store, StoreError};
use crate::domain::{fmt_wib, ProvinceCode, TimeZone};
use crate::status::{CampaignStatus, FlagReason, Status};

/// What an operator can do to a running campaign (rescheduling, which
/// takes a time, is [`Store::reschedule_campaign`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CampaignAction {
    Pause,
    Resume,
    Cancel,
}

impl CampaignAction {
    pub fn as_str(self) -> &'static str {
        match self {
            CampaignAction::Pause => "pause",
            CampaignAction::Resume => "resume",
            CampaignAction::Cancel => "cancel",
        }
    }
}

/// Who a campaign is for. Empty lists mean "everyone".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CampaignFilter {
    pub provinces: Vec<ProvinceCode>,
    /// Compared case-insensitively with `health_workers.profession`.
    pub professions: Vec<String>,
}

/// A campaign to create.
#[derive(Debug, Clone)]
pub struct NewCampaign {
    pub name: String,
    pub template: String,
    pub scheduled_at: i64,
    /// Minutes after local midnight; end exclusive (1440 = midnight).
    pub window_start: i32,
    pub window_end: i32,
    pub filter: CampaignFilter,
    /// Who asked; the actor of the `campaign.create` audit entry written in
    /// the same transaction.
    pub created_by: String,
    /// Messages not sent by then end `expired`, flagged `deadline`.
    pub deadline_at: Option<i64>,
    /// First moment each zone may be sent to (scheduled time moved into the
    /// zone's window), as computed by the caller
    /// ([`crate::campaign::first_send`]).
    pub first_send: [(TimeZone, i64); 3],
}

/// A campaign as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub template: String,
    #[sqlx(try_from = "String")]
    pub status: CampaignStatus,
    pub scheduled_at: i64,
    pub window_start: i32,
    pub window_end: i32,
    pub provinces: String,
    pub professions: String,
    pub created_by: String,
    pub enqueued: i64,
    /// Workers of the audience left out because they were suppressed
    /// when the campaign was created.
    pub suppressed: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deadline_at: Option<i64>,
    pub pause_reason: Option<String>,
}

/// A campaign just created, with its audience ([`Store::create_campaign`]).
#[derive(Debug, Clone)]
pub struct CreatedCampaign {
    pub campaign: Campaign,
    /// Messages enqueued: one per eligible, validated worker the filter
    /// matched who is not suppressed.
    pub enqueued: u64,
    /// Workers the filter matched who are suppressed (not enqueued).
    pub suppressed: u64,
}

/// A campaign just rescheduled ([`Store::reschedule_campaign`]).
#[derive(Debug, Clone)]
pub struct RescheduledCampaign {
    pub campaign: Campaign,
    /// Queued messages whose due time was moved.
    pub retimed: u64,
}

/// A campaign [`Store::auto_pause`] paused, and why (the audit entry's
/// detail).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoPaused {
    pub campaign_id: i64,
    pub reason: String,
}

/// Counts for one campaign.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CampaignReport {
    pub enqueued: i64,
    /// Messages a gateway accepted at least once.
    pub sent: i64,
    /// Every status with its count (zeros included).
    pub by_status: Vec<(String, i64)>,
    /// Open (unresolved) flags by reason.
    pub flagged_by_reason: Vec<(String, i64)>,
    /// Workers the campaign did not message because they were suppressed:
    /// left out when it was created, or their queued notice cancelled by a
    /// suppression added later.
    pub suppressed: i64,
    /// Messages already final (a fast receipt) whose worker has not yet
    /// recorded the send: still in flight for our bookkeeping.
    pub unrecorded: i64,
    /// SMS segments per message handed to a gateway, on average over the
    /// sent messages whose segments are recorded, to 2 decimals: what a
    /// notice costs, as carriers bill segments. 1.0 when every notice fit
    /// one SMS; `None` (JSON `null`) before the first send.
    pub segments_per_message: Option<f64>,
}

impl CampaignReport {
    pub fn status(&self, s: Status) -> i64 {
        self.by_status
            .iter()
            .find(|(k, _)| k == s.as_str())
            .map(|(_, v)| *v)
            .unwrap_or(0)
    }

    pub fn flagged(&self) -> i64 {
        self.flagged_by_reason.iter().map(|(_, v)| v).sum()
    }

    /// Messages not yet in a state that needs nothing more from us.
    pub fn in_flight(&self) -> i64 {
        self.status(Status::Queued)
            + self.status(Status::Sending)
            + self.status(Status::Sent)
            + self.unrecorded
    }
}

/// `total / count` rounded to 2 decimals, or `None` when `count` is 0.
fn average_2dp(total: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| (total as f64 / count as f64 * 100.0).round() / 100.0)
}

/// PostgreSQL: a transaction whose statements read tables through their
/// indexes only (sequential and bitmap scans off, `SET LOCAL`), for
/// housekeeping statements that look at a few rows of a large table twice a
/// second and whose best plan is never in doubt, but whose chosen plan was
/// wrong without fresh statistics (a table grown during a campaign,
/// autovacuum late or off): a scan of the whole table, every round. The
/// settings go with the `BEGIN`, in one round trip instead of three.
async fn index_only(
    pool: &sqlx::PgPool,
) -> std::result::Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off")
        .await
}

/// Pushes the campaign audience onto `$q` (after `WHERE`, worker aliased
/// `w`): eligible and validated, in the provinces and professions asked.
/// A macro: `$q` is a SQLite or a PostgreSQL query builder.
macro_rules! push_audience {
    ($q:expr, $provinces:expr, $professions:expr) => {{
        $q.push("w.validated = ");
        $q.push_bind(true);
        $q.push(" AND w.eligible = ");
        $q.push_bind(true);
        if !$provinces.is_empty() {
            $q.push(" AND w.province_code IN (");
            let mut sep = $q.separated(", ");
            for p in $provinces.iter() {
                sep.push_bind(p.clone());
            }
            $q.push(")");
        }
        if !$professions.is_empty() {
            $q.push(" AND LOWER(w.profession) IN (");
            let mut sep = $q.separated(", ");
            for p in $professions.iter() {
                sep.push_bind(p.clone());
            }
            $q.push(")");
        }
    }};
}

/// Pushes "suppression `s` in force at `$now`" onto `$q`.
macro_rules! push_active {
    ($q:expr, $now:expr) => {{
        $q.push("s.removed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > ");
        $q.push_bind($now);
        $q.push(")");
    }};
}

/// The actor of the audit entry an automatic pause writes.
pub const AUTO_PAUSE_ACTOR: &str = "auto-pause";

const CAMPAIGN_COLUMNS: &str =
    "id, name, template, status, scheduled_at, window_start, window_end, \
     provinces, professions, created_by, enqueued, suppressed, created_at, updated_at, deadline_at, pause_reason";

/// `CASE province_code WHEN … THEN 8 … ELSE NULL END`, built from the
/// domain table so SQL and Rust agree on every province's zone. The
/// registry stores parsed codes only; a code outside the table is a damaged
/// row, and its NULL offset fails the enqueue (`utc_offset` is NOT NULL)
/// instead of sending on a guessed zone's clock.
fn utc_offset_case() -> String {
    let mut s = String::from("CASE w.province_code");
    for p in ProvinceCode::all() {
        s.push_str(&format!(
            " WHEN '{}' THEN {}",
            p,
            p.time_zone().utc_offset_hours()
        ));
    }
    s.push_str(" ELSE NULL END");
    s
}

/// `CASE <offset> WHEN 7 THEN … WHEN 8 THEN … WHEN 9 THEN … ELSE <fallback>
/// END`: each zone's first send time, picked by a row's UTC offset. Creation
/// and rescheduling share it, so both move a start into each recipient's
/// window the same way. The values are our own integers, never input.
fn first_send_case(offset: &str, first_send: &[(TimeZone, i64); 3], fallback: i64) -> String {
    let mut s = format!("CASE {offset}");
    for (tz, at) in first_send {
        s.push_str(&format!(" WHEN {} THEN {}", tz.utc_offset_hours(), at));
    }
    s.push_str(&format!(" ELSE {fallback} END"));
    s
}

/// One province's share of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProvinceDelivery {
    /// Two-digit code as stored on the worker (`31`).
    pub province_code: String,
    /// Indonesian name, or the code itself for a code the table lacks.
    pub province_name: String,
    /// Messages of the campaign to workers of the province, all generations.
    pub messages: i64,
    /// Messages with a delivery outcome: delivered, undelivered, expired,
    /// rejected or failed. `cancelled` messages were never sent and
    /// `unknown` ones have no answer yet, so neither counts.
    pub finished: i64,
    pub delivered: i64,
}

impl ProvinceDelivery {
    /// `delivered / finished`, none before anything finished.
    pub fn rate(&self) -> Option<f64> {
        (self.finished > 0).then(|| self.delivered as f64 / self.finished as f64)
    }
}

/// The statuses counted in [`ProvinceDelivery::finished`].
fn outcome_statuses() -> Vec<Status> {
    Status::ALL
        .into_iter()
        .filter(|s| s.is_final() && *s != Status::Cancelled)
        .collect()
}

impl Store {
    /// Creates the campaign and enqueues every eligible and validated worker
    /// matching the filter, once each, in one transaction, with its
    /// `campaign.create` audit entry (actor `created_by`).
    pub async fn create_campaign(&self, c: &NewCampaign) -> Result<CreatedCampaign> {
        let now = now_ms();
        let provinces = c
            .filter
            .provinces
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>();
        let professions = c
            .filter
            .professions
            .iter()
            .map(|p| p.to_lowercase())
            .collect::<Vec<_>>();
        let offsets = utc_offset_case();
        let first = first_send_case(&offsets, &c.first_send, c.scheduled_at);

        let (campaign, enqueued) = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO campaigns (name, template, status, scheduled_at, window_start, window_end, \
                 provinces, professions, created_by, created_at, updated_at, deadline_at) \
                 VALUES ($1, $2, $11, $3, $4, $5, $6, $7, $8, $9, $9, $10) RETURNING id",
            )
            .bind(&c.name).bind(&c.template).bind(c.scheduled_at)
            .bind(c.window_start).bind(c.window_end)
            .bind(provinces.join(",")).bind(professions.join(","))
            .bind(&c.created_by).bind(now).bind(c.deadline_at)
            .bind(CampaignStatus::Scheduled.as_str())
            .fetch_one(&mut *tx).await?;

            // Suppressed workers (their NIK or their number, in force now)
            // are counted, then left out of the insert.
            // With no entry in force (the usual case) the audience is not
            // read twice.
            let any: Option<i64> = sqlx::query_scalar(
                "SELECT s.id FROM suppressions s WHERE s.removed_at IS NULL \
                 AND (s.expires_at IS NULL OR s.expires_at > $1) LIMIT 1")
                .bind(now).fetch_optional(&mut *tx).await?;
            let suppressed: i64 = if any.is_some() {
                let mut q = QueryBuilder::new("SELECT COUNT(*) FROM health_workers w WHERE ");
                push_audience!(q, provinces, professions);
                q.push(" AND (w.nik IN (SELECT s.value FROM suppressions s WHERE s.kind = 'nik' AND ");
                push_active!(q, now);
                q.push(") OR w.phone IN (SELECT s.value FROM suppressions s WHERE s.kind = 'phone' AND ");
                push_active!(q, now);
                q.push("))");
                q.build_query_scalar().fetch_one(&mut *tx).await?
            } else {
                0
            };

            let mut q = QueryBuilder::new(
                "INSERT INTO messages (campaign_id, worker_id, generation, phone, utc_offset, status, \
                 attempts, next_attempt_at, created_at, updated_at) SELECT ",
            );
            q.push_bind(id);
            q.push(format!(", w.id, 1, w.phone, {offsets}, '{}', 0, {first}, ", Status::Queued));
            q.push_bind(now);
            q.push(", ");
            q.push_bind(now);
            q.push(" FROM health_workers w WHERE ");
            push_audience!(q, provinces, professions);
            if suppressed > 0 {
                q.push(" AND w.nik NOT IN (SELECT s.value FROM suppressions s WHERE s.kind = 'nik' AND ");
                push_active!(q, now);
                q.push(") AND w.phone NOT IN (SELECT s.value FROM suppressions s WHERE s.kind = 'phone' AND ");
                push_active!(q, now);
                q.push(")");
            }
            q.push(" ORDER BY w.id ON CONFLICT (campaign_id, worker_id, generation) DO NOTHING");
            let enqueued = q.build().execute(&mut *tx).await?.rows_affected();
            sqlx::query("UPDATE campaigns SET enqueued = $1, suppressed = $2 WHERE id = $3")
                .bind(enqueued as i64).bind(suppressed).bind(id)
                .execute(&mut *tx).await?;
            audit_tx!(tx, &c.created_by, "campaign.create", format!("campaign:{id}"),
                format!("enqueued {enqueued}, suppressed {suppressed}"), now);
            let campaign = sqlx::query_as::<_, Campaign>(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (campaign, enqueued)
        });
        // A large enqueue changes the queue's shape completely: give the
        // planner fresh statistics before the first claim (autovacuum may be
        // off or late; BENCHMARKS.md measured claims sorting the whole queue).
        self.refresh_statistics(&["messages", "campaigns"]).await;
        if enqueued > 0 {
            self.wake_dispatchers().await;
        }
        Ok(CreatedCampaign {
            suppressed: campaign.suppressed as u64,
            campaign,
            enqueued,
        })
    }

    pub async fn campaign(&self, id: i64) -> Result<Campaign> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
        with_pool!(self, p => sqlx::query_as::<_, Campaign>(&sql).bind(id).fetch_optional(p).await?)
            .ok_or_else(|| StoreError::NotFound(format!("campaign {id}")))
    }

    pub async fn campaigns(&self) -> Result<Vec<Campaign>> {
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY id");
        Ok(with_pool!(self, p => sqlx::query_as::<_, Campaign>(&sql).fetch_all(p).await?))
    }

    /// Moves campaigns along: `scheduled` → `running` once their time came,
    /// → `completed` once nothing is queued or being sent, and back to
    /// `running` when something was queued into a completed one.
    pub async fn advance_campaigns(&self) -> Result<()> {
        use CampaignStatus::{Cancelled, Completed, Running, Scheduled};
        let now = now_ms();
        let start = format!(
            "UPDATE campaigns SET status = '{Running}', updated_at = $1 \
             WHERE status IN ({}) AND scheduled_at <= $1",
            CampaignStatus::sql_moves(&[Scheduled], Running)
        );
        let cancelled = format!("SELECT id FROM campaigns WHERE status = '{Cancelled}'");
        let unsent = Status::sql_is(&Status::UNSENT);
        // Both tests below are one index probe per campaign: run through
        // indexes only ([`index_only`]; expecting an early match, the
        // planner read every finished campaign's rows by a scan of the
        // table, twice a second for ever), and each `EXISTS` fenced with
        // `LIMIT 1 OFFSET 0`, which keeps it a sub-plan run per campaign
        // with the campaign's id as the index key: pulled up into a join,
        // at 1.5 M messages the planner walked all of
        // `messages_campaign_status` (reopen, 72 ms) or the whole table
        // (completion, 28 ms) twice a second (BENCHMARKS.md).
        let reopen = format!(
            "UPDATE campaigns SET status = '{Running}', updated_at = $1 \
             WHERE status IN ({}) AND EXISTS (SELECT 1 FROM messages m \
             WHERE m.campaign_id = campaigns.id AND m.status{unsent} LIMIT 1 OFFSET 0)",
            CampaignStatus::sql_moves(&[Completed], Running)
        );
        // Two tests, each an index's: unsent rows by campaign and status
        // (`messages_campaign_status`), leases among the few leased rows
        // (`messages_leased`). As one `OR` they read the campaign's every
        // row twice a second.
        let complete = format!(
            "UPDATE campaigns SET status = '{Completed}', updated_at = $1 \
             WHERE status IN ({}) AND NOT EXISTS (SELECT 1 FROM messages m \
             WHERE m.campaign_id = campaigns.id AND m.status{unsent} LIMIT 1 OFFSET 0) \
             AND NOT EXISTS (SELECT 1 FROM messages m \
             WHERE m.lease_owner IS NOT NULL AND m.campaign_id = campaigns.id LIMIT 1 OFFSET 0)",
            CampaignStatus::sql_moves(&[Running], Completed)
        );
        let cancel = format!(
            "UPDATE messages SET status = '{}', final_at = $1, updated_at = $1 \
             WHERE status{} AND campaign_id IN ({cancelled})",
            Status::Cancelled,
            Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled)
        );
        with_pool!(self, p => {
            sqlx::query(&start).bind(now).execute(p).await?;
            // A retry recorded after a cancel put the row back in the queue:
            // finish the cancel.
            sqlx::query(&cancel).bind(now).execute(p).await?;
        });
        // A notice queued into a finished campaign (a resend, a
        // re-registration) reopens it. That transaction sets `running`
        // itself, but on PostgreSQL the completion below can race it: its
        // NOT EXISTS reads a snapshot from before the insert committed, and
        // a campaign marked `completed` is never claimed.
        // Reopen first, then complete: each in a transaction of its own.
        for sql in [&reopen, &complete] {
            match &self.db {
                Db::Postgres(pool) => {
                    let mut tx = index_only(pool).await?;
                    sqlx::query(sql).bind(now).execute(&mut *tx).await?;
                    tx.commit().await?;
                }
                Db::Sqlite(pool) => {
                    sqlx::query(sql).bind(now).execute(pool).await?;
                }
            }
        }
        Ok(())
    }

    /// Messages of campaigns whose deadline passed, still unsent, end
    /// `expired` and are flagged `deadline`. Returns how many.
    pub async fn expire_past_deadline(&self) -> Result<u64> {
        let now = now_ms();
        let from = Status::guard(&[Status::Queued], Status::Expired);
        let n = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(&format!(
                "UPDATE messages SET status = '{}', last_error = 'campaign deadline passed', \
                 final_at = $1, updated_at = $1 WHERE status{from} AND campaign_id IN \
                 (SELECT id FROM campaigns WHERE deadline_at IS NOT NULL AND deadline_at <= $1) RETURNING id",
                Status::Expired))
                .bind(now).fetch_all(&mut *tx).await?;
            for id in &ids {
                flag!(tx, *id, FlagReason::Deadline, now);
            }
            tx.commit().await?;
            ids.len() as u64
        });
        Ok(n)
    }

    /// Pause, resume or cancel, audited as `campaign.<action>` by `actor` in
    /// the same transaction. Pause and cancel take effect at the next claim
    /// (within `worker.poll_ms`); the batch already in flight finishes.
    /// Cancel ends every unsent message `cancelled` in the same transaction.
    /// Resume never re-sends (sent messages are not `queued`), and returns a
    /// campaign whose start is still ahead to `scheduled`, not `running`.
    pub async fn control_campaign(
        &self,
        id: i64,
        action: CampaignAction,
        reason: &str,
        actor: &str,
    ) -> Result<Campaign> {
        let now = now_ms();
        use CampaignStatus::{Cancelled, Paused, Running, Scheduled};
        // `$2` binds now in the statement below.
        let (from_sql, to) = match action {
            CampaignAction::Pause => (
                CampaignStatus::sql_moves(&CampaignStatus::sources_of(Paused), Paused),
                format!("'{Paused}'"),
            ),
            CampaignAction::Resume => {
                // Resume leads to either; the guard allows both.
                let from = CampaignStatus::sql_moves(&[Paused], Scheduled);
                debug_assert_eq!(from, CampaignStatus::sql_moves(&[Paused], Running));
                (
                    from,
                    format!("CASE WHEN scheduled_at > $2 THEN '{Scheduled}' ELSE '{Running}' END"),
                )
            }
            CampaignAction::Cancel => (
                CampaignStatus::sql_moves(&CampaignStatus::sources_of(Cancelled), Cancelled),
                format!("'{Cancelled}'"),
            ),
        };
        let cancel_messages = format!(
            "UPDATE messages SET status = '{Cancelled}', final_at = $1, updated_at = $1 \
             WHERE campaign_id = $2 AND status{}",
            Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled)
        );
        let pause_reason = match action {
            CampaignAction::Pause => Some(reason.to_string()),
            _ => None,
        };
        let changed = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(&format!(
                "UPDATE campaigns SET status = {to}, pause_reason = $1, updated_at = $2 \
                 WHERE id = $3 AND status IN ({from_sql})"))
                .bind(&pause_reason).bind(now).bind(id)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                if action == CampaignAction::Cancel {
                    sqlx::query(&cancel_messages)
                        .bind(now).bind(id).execute(&mut *tx).await?;
                }
                audit_tx!(tx, actor, format!("campaign.{}", action.as_str()),
                    format!("campaign:{id}"), reason, now);
            }
            tx.commit().await?;
            n
        });
        let c = self.campaign(id).await?;
        if changed == 0 {
            return Err(StoreError::Conflict(format!(
                "campaign {id} is {}; cannot {}",
                c.status,
                action.as_str()
            )));
        }
        if action == CampaignAction::Resume {
            self.wake_dispatchers().await;
        }
        Ok(c)
    }

    /// Moves the start of a campaign that has not finished to `at`, in one
    /// transaction audited as `campaign.schedule` by `actor`: every queued
    /// message not yet tried is due at `first_send` for its zone (`at` moved
    /// into the recipient's window, as at creation); a retry waiting for its
    /// backoff keeps its time unless that is before the new start. A paused
    /// campaign stays paused; otherwise it is `scheduled` while `at` is
    /// ahead and `running` once it has come. Completed and cancelled
    /// campaigns are refused ([`StoreError::Conflict`]). Returns the
    /// campaign and how many queued messages were re-timed.
    pub async fn reschedule_campaign(
        &self,
        id: i64,
        at: i64,
        first_send: &[(TimeZone, i64); 3],
        actor: &str,
    ) -> Result<RescheduledCampaign> {
        let now = now_ms();
        let first = first_send_case("utc_offset", first_send, at);
        let lock = self.row_lock();
        let sql = format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1");
        let rescheduled = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // The campaign row is locked before any message row, the order
            // `control_campaign` and the extra-notice paths use.
            let old: Option<(String, i64)> = sqlx::query_as(&format!(
                "SELECT status, scheduled_at FROM campaigns WHERE id = $1{lock}"))
                .bind(id).fetch_optional(&mut *tx).await?;
            let Some((status, old_at)) = old else {
                return Err(StoreError::NotFound(format!("campaign {id}")));
            };
            let status = CampaignStatus::try_from(status)
                .map_err(|e| StoreError::Conflict(format!("campaign {id}: {e}")))?;
            if status.is_finished() {
                return Err(StoreError::Conflict(format!(
                    "campaign {id} is {status}; only a campaign that has not finished can be rescheduled")));
            }
            let new_status = match status {
                CampaignStatus::Paused => CampaignStatus::Paused,
                _ if at > now => CampaignStatus::Scheduled,
                _ => CampaignStatus::Running,
            };
            debug_assert!(new_status == status || status.can_become(new_status));
            sqlx::query("UPDATE campaigns SET scheduled_at = $1, status = $2, updated_at = $3 WHERE id = $4")
                .bind(at).bind(new_status.as_str()).bind(now).bind(id)
                .execute(&mut *tx).await?;
            let moved = sqlx::query(&format!(
                "UPDATE messages SET next_attempt_at = CASE WHEN attempts = 0 THEN {first} \
                 WHEN next_attempt_at > {first} THEN next_attempt_at ELSE {first} END, updated_at = $1 \
                 WHERE campaign_id = $2 AND status{}", Status::sql_is(&[Status::Queued])))
                .bind(now).bind(id)
                .execute(&mut *tx).await?.rows_affected();
            audit_tx!(tx, actor, "campaign.schedule", format!("campaign:{id}"),
                format!("start {} -> {}; {moved} queued message(s) re-timed",
                    fmt_wib(old_at), fmt_wib(at)), now);
            let campaign = sqlx::query_as::<_, Campaign>(&sql)
                .bind(id).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(RescheduledCampaign { campaign, retimed: moved })
        })?;
        if rescheduled.retimed > 0 {
            self.wake_dispatchers().await;
        }
        Ok(rescheduled)
    }

    /// Pauses running campaigns whose last `window` send attempts failed in
    /// a share above `threshold` (a broken gateway or template must not burn
    /// through the whole audience). Returns the campaigns paused.
    pub async fn auto_pause(&self, window: u32, threshold: f64) -> Result<Vec<AutoPaused>> {
        let sql = format!(
            "SELECT id FROM campaigns WHERE status = '{}'",
            CampaignStatus::Running
        );
        let running: Vec<i64> = with_pool!(self, p => sqlx::query_scalar(&sql).fetch_all(p).await?);
        let mut paused = vec![];
        for id in running {
            let outcomes = self.last_attempts(id, window).await?;
            if outcomes.len() < window as usize {
                continue;
            }
            let bad = outcomes.iter().filter(|o| o.as_str() != "sent").count();
            let share = bad as f64 / outcomes.len() as f64;
            if share > threshold {
                let reason = format!(
                    "auto-paused: {bad} of the last {} send attempts failed ({:.0} % > {:.0} %)",
                    outcomes.len(),
                    share * 100.0,
                    threshold * 100.0
                );
                if self
                    .control_campaign(id, CampaignAction::Pause, &reason, AUTO_PAUSE_ACTOR)
                    .await
                    .is_ok()
                {
                    paused.push(AutoPaused {
                        campaign_id: id,
                        reason,
                    });
                }
            }
        }
        Ok(paused)
    }

    /// The outcomes of a campaign's last `window` attempts, newest first:
    /// the newest `window` entries of `attempts_campaign`, a backward index
    /// scan that stops after them ([`index_only`]: without statistics on
    /// `attempts` the planner took a bitmap of the campaign's every attempt
    /// and sorted it, 26 ms at 50 k attempts and twice a second, growing
    /// with the campaign).
    async fn last_attempts(&self, campaign_id: i64, window: u32) -> Result<Vec<String>> {
        const SQL: &str =
            "SELECT outcome FROM attempts WHERE campaign_id = $1 ORDER BY id DESC LIMIT $2";
        Ok(match &self.db {
            Db::Postgres(pool) => {
                let mut tx = index_only(pool).await?;
                let rows = sqlx::query_scalar(SQL)
                    .bind(campaign_id)
                    .bind(window as i64)
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                rows
            }
            Db::Sqlite(pool) => {
                sqlx::query_scalar(SQL)
                    .bind(campaign_id)
                    .bind(window as i64)
                    .fetch_all(pool)
                    .await?
            }
        })
    }

    /// Per-status counts and open flags for one campaign.
    pub async fn campaign_report(&self, id: i64) -> Result<CampaignReport> {
        // One statement, so one snapshot: counted separately, a message
        // could be seen final-but-unrecorded by one count and recorded by
        // none (its send landing between them), and the report would look
        // finished with `sent` short.
        // Segments are summed and counted over sent messages that have them
        // (a send noted from its receipt alone has `sent_at` but none).
        let sql = format!(
            "SELECT 'status', status, COUNT(*), COUNT(sent_at), \
                    COALESCE(SUM(CASE WHEN lease_owner IS NOT NULL AND NOT status{} THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN sent_at IS NOT NULL THEN segments END), 0), \
                    COUNT(CASE WHEN sent_at IS NOT NULL THEN segments END) \
             FROM messages WHERE campaign_id = $1 GROUP BY status \
             UNION ALL \
             SELECT 'flag', reason, COUNT(*), 0, 0, 0, 0 FROM non_recipients \
             WHERE campaign_id = $1 AND resolved_at IS NULL GROUP BY reason \
             UNION ALL \
             SELECT 'suppressed', 'enqueue', suppressed, 0, 0, 0, 0 FROM campaigns WHERE id = $1 \
             UNION ALL \
             SELECT 'suppressed', 'cancelled', COUNT(*), 0, 0, 0, 0 FROM messages \
             WHERE campaign_id = $1 AND status{} AND last_error = 'suppressed' \
             ORDER BY 1, 2",
            Status::sql_is(&[Status::Sending]),
            Status::sql_is(&[Status::Cancelled])
        );
        type Row = (String, String, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(id).fetch_all(p).await?);
        let mut report = CampaignReport::default();
        let mut by_status = Vec::new();
        let (mut segments, mut with_segments) = (0, 0);
        for (kind, key, n, sent, unrecorded, seg, seg_n) in rows {
            if kind == "flag" {
                report.flagged_by_reason.push((key, n));
            } else if kind == "suppressed" {
                report.suppressed += n;
            } else {
                report.sent += sent;
                report.unrecorded += unrecorded;
                segments += seg;
                with_segments += seg_n;
                by_status.push((key, n));
            }
        }
        report.segments_per_message = average_2dp(segments, with_segments);
        for s in Status::ALL {
            let n = by_status
                .iter()
                .find(|(k, _)| k == s.as_str())
                .map(|(_, v)| *v)
                .unwrap_or(0);
            report.enqueued += n;
            report.by_status.push((s.as_str().to_string(), n));
        }
        Ok(report)
    }

    /// Messages of the campaign a gateway accepted since `since` (Unix ms):
    /// the throughput behind a campaign's ETA.
    pub async fn sends_since(&self, campaign_id: i64, since: i64) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND sent_at >= $2")
            .bind(campaign_id).bind(since).fetch_one(p).await?))
    }

    /// When a campaign's messages reached a final status: the first and
    /// the last `final_at` (Unix ms), or `None` before the first.
    pub async fn finals_span(&self, campaign_id: i64) -> Result<Option<(i64, i64)>> {
        let sql = "SELECT MIN(final_at), MAX(final_at) FROM messages \
                   WHERE campaign_id = $1 AND final_at IS NOT NULL";
        let row: (Option<i64>, Option<i64>) =
            with_pool!(self, p => sqlx::query_as(sql).bind(campaign_id).fetch_one(p).await?);
        Ok(row.0.zip(row.1))
    }

    /// A campaign's final statuses counted per time bucket: (bucket, status,
    /// count), where bucket `b` holds `final_at` in
    /// `[from_ms + b·width_ms, from_ms + (b+1)·width_ms)`; one aggregate
    /// statement, however many messages.
    pub async fn finals_by_bucket(
        &self,
        campaign_id: i64,
        from_ms: i64,
        width_ms: i64,
    ) -> Result<Vec<(i64, String, i64)>> {
        let sql = "SELECT (final_at - $2) / $3 AS bucket, status, COUNT(*) FROM messages \
                   WHERE campaign_id = $1 AND final_at IS NOT NULL \
                   GROUP BY 1, 2 ORDER BY 1, 2";
        Ok(with_pool!(self, p => sqlx::query_as(sql)
            .bind(campaign_id).bind(from_ms).bind(width_ms.max(1)).fetch_all(p).await?))
    }

    /// Delivered and finished messages of a campaign per province of the
    /// recipient, by province code.
    pub async fn province_delivery(&self, campaign_id: i64) -> Result<Vec<ProvinceDelivery>> {
        let finished = Status::sql_list(&outcome_statuses());
        let delivered = Status::sql_is(&[Status::Delivered]);
        let sql = format!(
            "SELECT w.province_code, COUNT(*), \
             COALESCE(SUM(CASE WHEN m.status IN ({finished}) THEN 1 ELSE 0 END), 0), \
             COALESCE(SUM(CASE WHEN m.status{delivered} THEN 1 ELSE 0 END), 0) \
             FROM messages m JOIN health_workers w ON w.id = m.worker_id \
             WHERE m.campaign_id = $1 GROUP BY w.province_code ORDER BY w.province_code"
        );
        let rows: Vec<(String, i64, i64, i64)> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(campaign_id).fetch_all(p).await?);
        Ok(rows
            .into_iter()
            .map(|(code, messages, finished, delivered)| ProvinceDelivery {
                province_name: ProvinceCode::parse(&code)
                    .map(|p| p.name().to_string())
                    .unwrap_or_else(|_| code.clone()),
                province_code: code,
                messages,
                finished,
                delivered,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An [`index_only`] transaction reads with scans off, and leaves the
    /// connection as it found it (the settings are `LOCAL`).
    #[tokio::test]
    async fn index_only_turns_scans_off_for_its_transaction_only() {
        let url = std::env::var("PEDULICOVID_TEST_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("the tests' PostgreSQL");
        let settings =
            "SELECT current_setting('enable_seqscan') || current_setting('enable_bitmapscan')";
        let mut tx = index_only(&pool).await.unwrap();
        let inside: String = sqlx::query_scalar(settings)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(inside, "offoff");
        tx.commit().await.unwrap();
        let after: String = sqlx::query_scalar(settings).fetch_one(&pool).await.unwrap();
        assert_eq!(after, "onon");
    }

    #[test]
    fn outcomes_exclude_cancelled_and_open_states() {
        let s = outcome_statuses();
        assert!(s.contains(&Status::Delivered));
        assert!(s.contains(&Status::Failed));
        for open in [
            Status::Queued,
            Status::Sending,
            Status::Sent,
            Status::Unknown,
            Status::Cancelled,
        ] {
            assert!(!s.contains(&open), "{open:?}");
        }
    }

    #[test]
    fn segments_per_message_is_rounded_and_none_before_a_send() {
        assert_eq!(average_2dp(0, 0), None);
        assert_eq!(average_2dp(3, 3), Some(1.0));
        assert_eq!(average_2dp(4, 3), Some(1.33));
        assert_eq!(average_2dp(5, 3), Some(1.67));
        assert_eq!(average_2dp(600_000, 200_000), Some(3.0));
    }

    #[test]
    fn rate_is_none_before_anything_finished() {
        let mut p = ProvinceDelivery {
            province_code: "31".into(),
            province_name: "DKI Jakarta".into(),
            messages: 4,
            finished: 0,
            delivered: 0,
        };
        assert_eq!(p.rate(), None);
        p.finished = 4;
        p.delivered = 3;
        assert_eq!(p.rate(), Some(0.75));
    }
}

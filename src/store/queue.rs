//! The queue (`messages`, `attempts`, and `workers`, the dispatcher
//! processes that claim from it): claiming with leases, recording outcomes,
//! lease expiry, the sweep for missing receipts.

use sqlx::QueryBuilder;

use super::flags::flag;
use super::{now_ms, with_pool, BeginWrite, Column, Db, Result, Store};
use crate::config::DeliveryPolicy;
use crate::domain::{Msisdn, MsisdnError, ProvinceCode};
use crate::status::{CampaignStatus, FlagReason, Status};

/// A claimed message with what rendering and sending need, parsed where
/// the store reads it: the dispatcher never parses a stored value again.
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: i64,
    pub campaign_id: i64,
    pub worker_id: i64,
    /// Attempt number of this claim (1 for the first send).
    pub attempts: i32,
    /// The number the message goes to. The import stores parsed numbers
    /// only; one that no longer parses (a damaged row, a numbering plan
    /// that changed) is kept as the error, which the dispatcher records as
    /// a permanent `invalid_number` failure instead of refusing the claim.
    pub phone: Result<Msisdn, MsisdnError>,
    pub utc_offset: i32,
    pub created_at: i64,
    pub template: String,
    pub window_start: i32,
    pub window_end: i32,
    /// The campaign's deadline, checked again right before sending.
    pub deadline_at: Option<i64>,
    pub full_name: String,
    /// The last four characters of the worker's NIK: all a message shows.
    pub nik_last4: String,
    pub profession: String,
    pub facility_code: String,
    /// The worker's province; `None` for a code the domain table lacks
    /// (rendered without a province name).
    pub province: Option<ProvinceCode>,
    /// The message goes to a number nobody has validated (a chatbot
    /// re-registration in the `immediate` mode, not yet confirmed by One
    /// Data): rendered without NIK digits, whatever the campaign's template
    /// ([`crate::store::UNVALIDATED_TEMPLATE`]).
    pub to_unvalidated: bool,
    /// Where the row stood in the queue when it was claimed.
    pub position: QueuePosition,
}

/// A place in the queue's order, `(next_attempt_at, id)`: the order claims
/// take due rows in. A dispatcher claims on from where its last claim
/// ended ([`Store::claim_from`]) instead of from the head: on PostgreSQL
/// every claimed row leaves a dead entry at the head of `messages_due`
/// until a vacuum, and a claim from the head walked all of them (at 1.5 M
/// messages, half of a claim's cost by the end of the campaign).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct QueuePosition {
    pub due_at: i64,
    pub id: i64,
}

/// The names of [`CLAIMED_COLUMNS`], in its order (the test
/// `claimed_columns_are_the_rows_fields_in_order` holds the two together).
const CLAIMED_NAMES: [&str; 18] = [
    "id",
    "campaign_id",
    "worker_id",
    "attempts",
    "phone",
    "utc_offset",
    "created_at",
    "template",
    "window_start",
    "window_end",
    "deadline_at",
    "full_name",
    "nik",
    "profession",
    "facility_code",
    "province_code",
    "to_unvalidated",
    "next_attempt_at",
];

/// The position of `name` in [`CLAIMED_NAMES`]; a name not there does not
/// compile (evaluated in `const` blocks).
const fn claimed(name: &str) -> usize {
    let mut i = 0;
    while i < CLAIMED_NAMES.len() {
        if str_eq(CLAIMED_NAMES[i], name) {
            return i;
        }
        i += 1;
    }
    panic!("not a claimed column");
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The claim statement's row ([`CLAIMED_COLUMNS`]) as a message. By
/// position, each found by its name when compiling: by name at run time,
/// sqlx hashes every column's name for every row, and a claim decodes 18
/// columns a message. The number and the province are read where they lie
/// in the row, not copied into strings first.
impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for ClaimedMessage
where
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<i64>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    &'r str: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    fn from_row(row: &'r R) -> std::result::Result<Self, sqlx::Error> {
        let id = row.try_get(const { claimed("id") })?;
        Ok(ClaimedMessage {
            id,
            campaign_id: row.try_get(const { claimed("campaign_id") })?,
            worker_id: row.try_get(const { claimed("worker_id") })?,
            attempts: row.try_get(const { claimed("attempts") })?,
            phone: Msisdn::parse(row.try_get(const { claimed("phone") })?),
            utc_offset: row.try_get(const { claimed("utc_offset") })?,
            created_at: row.try_get(const { claimed("created_at") })?,
            template: row.try_get(const { claimed("template") })?,
            window_start: row.try_get(const { claimed("window_start") })?,
            window_end: row.try_get(const { claimed("window_end") })?,
            deadline_at: row.try_get(const { claimed("deadline_at") })?,
            full_name: row.try_get(const { claimed("full_name") })?,
            nik_last4: last4(row.try_get(const { claimed("nik") })?),
            profession: row.try_get(const { claimed("profession") })?,
            facility_code: row.try_get(const { claimed("facility_code") })?,
            province: ProvinceCode::parse(row.try_get(const { claimed("province_code") })?).ok(),
            to_unvalidated: row.try_get(const { claimed("to_unvalidated") })?,
            position: QueuePosition {
                due_at: row.try_get(const { claimed("next_attempt_at") })?,
                id,
            },
        })
    }
}

/// The last four characters of `s` (all of a shorter one).
fn last4(s: &str) -> String {
    let start = s.char_indices().rev().nth(3).map_or(0, |(at, _)| at);
    s[start..].to_owned()
}

/// What happened to one claimed message; recorded in one transaction per batch.
#[derive(Debug, Clone)]
pub enum SendOutcome {
    /// The gateway took it.
    Sent {
        id: i64,
        gateway: String,
        gateway_message_id: Option<String>,
        body: String,
        encoding: &'static str,
        segments: i32,
    },
    /// Transient failure: back to the queue at `next_attempt_at`. A throttle
    /// or a gateway fault does not use up an attempt (see [`RetryCause`]).
    Retry {
        id: i64,
        gateway: Option<String>,
        next_attempt_at: i64,
        error: String,
        cause: RetryCause,
        /// The request may have reached the carrier (see
        /// [`SendOutcome::handed_over`]); decided by the dispatcher from the
        /// send error ([`crate::gateway::SendError::may_have_reached_carrier`]).
        handed_over: bool,
    },
    /// Outside the recipient's send window: wait, without using an attempt.
    Defer { id: i64, until: i64 },
    /// Given up: `failed` and flagged.
    Failed {
        id: i64,
        gateway: Option<String>,
        error: String,
        reason: FlagReason,
        /// The last try may have reached the carrier (a permanent refusal,
        /// retries exhausted after a timeout); `false` for a failure before
        /// any gateway was tried, or after a refused connection.
        handed_over: bool,
    },
}

/// Why a [`SendOutcome::Retry`] goes back to the queue; decides whether it
/// uses one of the message's attempts and names the `attempts.outcome` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// A transient failure (transport, 5xx, an unreadable answer): uses an
    /// attempt. `attempts.outcome = 'retry'`.
    Transient,
    /// The gateway asked us to slow down: no attempt used. `'throttled'`.
    Throttled,
    /// The gateway is unusable (TLS, URL): not the message's fault, no
    /// attempt used. `'gateway_fault'`, which still counts as a failed send
    /// for the campaign's auto-pause.
    GatewayFault,
}

impl RetryCause {
    /// Whether the try counts against `worker.max_attempts`.
    pub fn uses_attempt(self) -> bool {
        self == RetryCause::Transient
    }

    /// The `attempts.outcome` value.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Transient => "retry",
            RetryCause::Throttled => "throttled",
            RetryCause::GatewayFault => "gateway_fault",
        }
    }
}

impl SendOutcome {
    /// Whether this outcome may have put the message in the carrier's hands,
    /// the only evidence a receipt through the gateway-wide token moves a
    /// message on (`attempts.handed_over`, read by the receipt code): taken
    /// (`Sent`), a timeout, a 5xx, an unreadable answer or a permanent
    /// refusal, yes; a throttle, a gateway fault (TLS, configuration), a
    /// refused connection, a deferral or a failure before any gateway was
    /// tried, no.
    pub fn handed_over(&self) -> bool {
        match self {
            SendOutcome::Sent { .. } => true,
            SendOutcome::Retry { handed_over, .. } | SendOutcome::Failed { handed_over, .. } => {
                *handed_over
            }
            SendOutcome::Defer { .. } => false,
        }
    }

    pub fn id(&self) -> i64 {
        match self {
            SendOutcome::Sent { id, .. }
            | SendOutcome::Retry { id, .. }
            | SendOutcome::Defer { id, .. }
            | SendOutcome::Failed { id, .. } => *id,
        }
    }
}

/// How many messages are in one status.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StatusCount {
    pub status: String,
    pub count: i64,
}

/// Rows per set-based statement when recording a batch.
const RECORD_CHUNK: usize = 200;

const CLAIMED_COLUMNS: &str =
    "m.id, m.campaign_id, m.worker_id, m.attempts, m.phone, m.utc_offset, \
     m.created_at, c.template, c.window_start, c.window_end, c.deadline_at, w.full_name, w.nik, w.profession, \
     w.facility_code, w.province_code, (w.phone_unvalidated AND w.phone = m.phone) AS to_unvalidated, \
     m.next_attempt_at";

impl Store {
    /// Leases up to `limit` due messages of running campaigns to `owner`
    /// until `lease_until`, counting the attempt. PostgreSQL skips rows other
    /// workers hold (`FOR UPDATE SKIP LOCKED`); SQLite has one writer at a
    /// time, so the plain `UPDATE … WHERE id IN (SELECT … LIMIT n)` is the
    /// same guarantee there.
    pub async fn claim(
        &self,
        owner: &str,
        limit: u32,
        lease_until: i64,
    ) -> Result<Vec<ClaimedMessage>> {
        self.claim_from(owner, limit, lease_until, None).await
    }

    /// [`Store::claim`], taking only rows after `after` in the queue's
    /// order (none: from the head). Rows before it are not looked at: the
    /// caller decides when to start from the head again.
    pub async fn claim_from(
        &self,
        owner: &str,
        limit: u32,
        lease_until: i64,
        after: Option<QueuePosition>,
    ) -> Result<Vec<ClaimedMessage>> {
        let now = now_ms();
        let queued = Status::guard(&Status::sources_of(Status::Sending), Status::Sending);
        // `messages_due` is ordered so: the row comparison is its range.
        let from = if after.is_some() {
            " AND (next_attempt_at, id) > ($5, $6)"
        } else {
            ""
        };
        // The due rows of campaigns that may send, oldest first.
        let due = format!(
            "SELECT id FROM messages WHERE status{queued} AND next_attempt_at <= $3{from} \
               AND campaign_id IN (SELECT id FROM campaigns WHERE status IN ({}) \
                 AND (deadline_at IS NULL OR deadline_at > $3)) \
               ORDER BY next_attempt_at, id LIMIT $4",
            CampaignStatus::sql_sending()
        );
        let lease = format!(
            "UPDATE messages SET status = '{}', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3",
            Status::Sending
        );
        match &self.db {
            Db::Postgres(pool) => {
                // One statement, so one round trip and no transaction to
                // hold open. The selection runs once, in a materialised CTE
                // (as `id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)` the
                // planner may re-run it per row and lease far more than
                // `n`), and the update finds its rows through `= ANY(ARRAY
                // (…))`: primary-key look-ups whatever the statistics say,
                // where `IN (SELECT id FROM due)` could become a semi-join
                // of the whole queue with the batch.
                let sql = format!(
                    "WITH due AS MATERIALIZED ({due} FOR UPDATE SKIP LOCKED), \
                     leased AS ({lease} WHERE id = ANY(ARRAY(SELECT id FROM due)) AND status{queued} \
                       RETURNING id, campaign_id, worker_id, attempts, phone, utc_offset, created_at, next_attempt_at) \
                     SELECT {CLAIMED_COLUMNS} FROM leased m JOIN campaigns c ON c.id = m.campaign_id \
                     JOIN health_workers w ON w.id = m.worker_id ORDER BY m.id"
                );
                let mut q = sqlx::query_as::<_, ClaimedMessage>(&sql)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit as i64);
                if let Some(after) = after {
                    q = q.bind(after.due_at).bind(after.id);
                }
                Ok(q.fetch_all(pool).await?)
            }
            Db::Sqlite(pool) => {
                let sql = format!("{lease} WHERE id IN ({due}) AND status{queued} RETURNING id");
                let mut tx = pool.begin_write().await?;
                let mut q = sqlx::query_scalar(&sql)
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit as i64);
                if let Some(after) = after {
                    q = q.bind(after.due_at).bind(after.id);
                }
                let ids: Vec<i64> = q.fetch_all(&mut *tx).await?;
                if ids.is_empty() {
                    tx.commit().await?;
                    return Ok(vec![]);
                }
                let mut q = QueryBuilder::new(format!(
                    "SELECT {CLAIMED_COLUMNS} FROM messages m JOIN campaigns c ON c.id = m.campaign_id \
                     JOIN health_workers w ON w.id = m.worker_id WHERE m.id"
                ));
                super::push_in_ids(&mut q, &ids);
                q.push(" ORDER BY m.id");
                let claimed = q
                    .build_query_as::<ClaimedMessage>()
                    .fetch_all(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(claimed)
            }
        }
    }

    /// Records a batch of outcomes in one transaction. Each update is guarded
    /// by the lease (`lease_owner`), so a worker whose lease expired and was
    /// taken over cannot overwrite the new holder's work; and by the status
    /// machine, so a receipt that already made the message final stays.
    /// Returns how many outcomes found their lease gone (taken over after
    /// expiry); a row a receipt settled meanwhile is released, not lost.
    pub async fn record_outcomes(&self, owner: &str, outcomes: &[SendOutcome]) -> Result<u64> {
        if outcomes.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut sorted: Vec<&SendOutcome> = outcomes.iter().collect();
        // Sorted by id: concurrent batches take row locks in the same order
        // and cannot deadlock.
        sorted.sort_by_key(|o| o.id());
        let ids: Vec<i64> = sorted.iter().map(|o| o.id()).collect();
        use Status::{Failed, Queued, Sending, Sent};
        let failed_from = Status::guard(&Status::sources_of(Failed), Failed);
        // Back to the queue: only from our own lease, so `sending`.
        let requeue_from = Status::guard(&[Sending], Queued);
        let sent_from = Status::guard(&[Sending], Sent);
        let retry_sql = format!("UPDATE messages SET status = '{Queued}', next_attempt_at = $1, last_error = $2, \
             attempts = attempts - $3, gateway = COALESCE($4, gateway), lease_owner = NULL, lease_until = NULL, updated_at = $5 \
             WHERE id = $6 AND lease_owner = $7 AND status{requeue_from}");
        let failed_sql = format!(
            "UPDATE messages SET status = '{Failed}', last_error = $1, gateway = COALESCE($2, gateway), \
             final_at = $3, lease_owner = NULL, lease_until = NULL, updated_at = $3 \
             WHERE id = $4 AND lease_owner = $5 AND status{failed_from}");
        let defer_sql = format!("UPDATE messages SET status = '{Queued}', next_attempt_at = $1, attempts = attempts - 1, \
             lease_owner = NULL, lease_until = NULL, updated_at = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status{requeue_from}");
        let unleased = Status::sql_is(&[Sending, Queued]);
        // (message id, gateway, kind, detail, handed over) of every attempt to record.
        let mut attempts: Vec<(i64, Option<&str>, &str, String, bool)> =
            Vec::with_capacity(sorted.len());
        let sent: Vec<&SendOutcome> = sorted
            .iter()
            .copied()
            .filter(|o| matches!(o, SendOutcome::Sent { .. }))
            .collect();
        let mut lost = 0u64;
        let lock = self.row_lock();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            // Lock every row of the batch first, in id order, like every
            // other writer of `messages`: no deadlocks between batches.
            if !lock.is_empty() {
                let mut q = QueryBuilder::new("SELECT id FROM messages WHERE id");
                super::push_in_ids(&mut q, &ids);
                q.push(" ORDER BY id");
                q.push(lock);
                q.build().execute(&mut *tx).await?;
            }
            // The common case, set-based: one UPDATE … FROM (VALUES …) per
            // chunk. A final receipt that overtook us keeps its status.
            // A message whose worker was erased while it was in flight
            // (store/erasure.rs: number `erased:<id>`) keeps no body.
            for chunk in sent.chunks(RECORD_CHUNK) {
                let sent: Vec<_> = chunk.iter().filter_map(|o| match o {
                    SendOutcome::Sent { id, gateway, gateway_message_id, body, encoding, segments } =>
                        Some((*id, gateway.as_str(), gateway_message_id.as_deref(), body.as_str(), *encoding, *segments)),
                    _ => None,
                }).collect();
                // Bound below by reference: made before the statement that borrows them.
                let refs: Vec<Option<String>> =
                    sent.iter().map(|s| s.2.map(super::receipts::normalize_ref)).collect();
                let mut q = QueryBuilder::new(
                    &format!("UPDATE messages SET status = CASE WHEN messages.status{sent_from} THEN '{Sent}' ELSE messages.status END, \
                     gateway = v.column2, gateway_message_id = v.column3, \
                     body = CASE WHEN messages.phone LIKE 'erased:%' THEN messages.body ELSE v.column4 END, encoding = v.column5, \
                     segments = v.column6, gateway_ref = v.column7, sent_at = COALESCE(messages.sent_at, "));
                q.push_bind(now);
                q.push("), last_error = NULL, lease_owner = NULL, lease_until = NULL, updated_at = ");
                q.push_bind(now);
                q.push(" FROM ");
                super::push_rows(&mut q, vec![
                    Column::Int8(sent.iter().map(|s| s.0).collect()),
                    Column::Text(sent.iter().map(|s| s.1).collect()),
                    Column::OptText(sent.iter().map(|s| s.2).collect()),
                    Column::Text(sent.iter().map(|s| s.3).collect()),
                    Column::Text(sent.iter().map(|s| s.4).collect()),
                    Column::Int4(sent.iter().map(|s| s.5).collect()),
                    Column::OptText(refs.iter().map(Option::as_deref).collect()),
                ]);
                q.push(" WHERE messages.id = v.column1 AND messages.lease_owner = ");
                q.push_bind(owner);
                let n = q.build().execute(&mut *tx).await?.rows_affected();
                lost += chunk.len() as u64 - n;
            }
            // Non-sent outcomes that found their row no longer `sending`.
            let mut missed: Vec<i64> = vec![];
            for o in &sorted {
                match o {
                    SendOutcome::Sent { id, gateway, gateway_message_id, .. } => {
                        attempts.push((*id, Some(gateway.as_str()), "sent", gateway_message_id.clone().unwrap_or_default(), true));
                    }
                    SendOutcome::Retry { id, gateway, next_attempt_at, error, cause, .. } => {
                        let n = sqlx::query(&retry_sql)
                            .bind(next_attempt_at).bind(error).bind(i32::from(!cause.uses_attempt())).bind(gateway)
                            .bind(now).bind(id).bind(owner)
                            .execute(&mut *tx).await?.rows_affected();
                        if n == 0 {
                            missed.push(*id);
                        }
                        attempts.push((*id, gateway.as_deref(), cause.as_str(), error.clone(), o.handed_over()));
                    }
                    SendOutcome::Defer { id, until } => {
                        let n = sqlx::query(&defer_sql)
                            .bind(until).bind(now).bind(id).bind(owner)
                            .execute(&mut *tx).await?.rows_affected();
                        if n == 0 {
                            missed.push(*id);
                        }
                    }
                    SendOutcome::Failed { id, gateway, error, reason, .. } => {
                        let n = sqlx::query(&failed_sql)
                            .bind(error).bind(gateway).bind(now).bind(id).bind(owner)
                            .execute(&mut *tx).await?.rows_affected();
                        if n == 1 {
                            flag!(tx, *id, *reason, now);
                        } else {
                            missed.push(*id);
                        }
                        attempts.push((*id, gateway.as_deref(), "failed", error.clone(), o.handed_over()));
                    }
                }
            }
            // A miss is either a lease taken over after expiry (lost), or a
            // final receipt that overtook the retry, defer or failure and
            // left the row settled but still leased to us: release that
            // one, and note the send the receipt proves. Without this the
            // lease lingers until it expires and the campaign cannot
            // complete. (A recorded send clears its lease whatever the
            // status, above.)
            lost += missed.len() as u64;
            for chunk in missed.chunks(RECORD_CHUNK) {
                let mut q = QueryBuilder::new("UPDATE messages SET lease_owner = NULL, lease_until = NULL, sent_at = COALESCE(sent_at, ");
                q.push_bind(now);
                q.push(") WHERE lease_owner = ");
                q.push_bind(owner);
                q.push(format!(" AND NOT status{unleased} AND id"));
                super::push_in_ids(&mut q, chunk);
                let released = q.build().execute(&mut *tx).await?.rows_affected();
                lost = lost.saturating_sub(released);
            }
            for chunk in attempts.chunks(RECORD_CHUNK) {
                let mut q = QueryBuilder::new(
                    "INSERT INTO attempts (message_id, campaign_id, attempt, gateway, outcome, detail, handed_over, at) \
                     SELECT m.id, m.campaign_id, m.attempts, v.column2, v.column3, v.column4, v.column5, ");
                q.push_bind(now);
                q.push(" FROM ");
                super::push_rows(&mut q, vec![
                    Column::Int8(chunk.iter().map(|a| a.0).collect()),
                    Column::OptText(chunk.iter().map(|a| a.1).collect()),
                    Column::Text(chunk.iter().map(|a| a.2).collect()),
                    Column::Text(chunk.iter().map(|a| a.3.as_str()).collect()),
                    Column::Bool(chunk.iter().map(|a| a.4).collect()),
                ]);
                q.push(" JOIN messages m ON m.id = v.column1");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(lost)
    }

    /// Rows currently leased to some worker (0 after a clean shutdown).
    pub async fn leased_count(&self) -> Result<i64> {
        Ok(with_pool!(self, p => sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages WHERE lease_owner IS NOT NULL").fetch_one(p).await?))
    }

    /// Extends every lease `owner` holds (a long batch on a slow gateway).
    pub async fn renew_leases(&self, owner: &str, lease_until: i64) -> Result<u64> {
        let sql = format!(
            "UPDATE messages SET lease_until = $1 WHERE lease_owner = $2 AND status{}",
            Status::sql_is(&[Status::Sending])
        );
        Ok(with_pool!(self, p => sqlx::query(&sql)
            .bind(lease_until).bind(owner).execute(p).await?.rows_affected()))
    }

    /// Handles leases that ran out (a worker crashed or hung). Under
    /// at-least-once the message goes back to the queue (or fails when its
    /// attempts are used up); under at-most-once it becomes `unknown` and is
    /// flagged, because it may already have reached the carrier.
    pub async fn expire_leases(&self, policy: DeliveryPolicy, max_attempts: u32) -> Result<u64> {
        use Status::{Failed, Queued, Sending, Unknown};
        let now = now_ms();
        let mut touched = 0;
        // A lease that ran out is held by a `sending` row. Every statement
        // says `lease_owner IS NOT NULL` (true of every `sending` row): the
        // predicate of `messages_leased`, so each reads the few leased rows,
        // never the table.
        let exhaust = format!(
            "UPDATE messages SET status = '{Failed}', last_error = 'lease expired; attempts used up', \
             final_at = $1, lease_owner = NULL, lease_until = NULL, updated_at = $1 \
             WHERE lease_owner IS NOT NULL AND status{} AND lease_until < $1 AND attempts >= $2 RETURNING id",
            Status::guard(&[Sending], Failed)
        );
        let requeue = format!(
            "UPDATE messages SET status = '{Queued}', next_attempt_at = $1, last_error = 'lease expired', \
             lease_owner = NULL, lease_until = NULL, updated_at = $1 \
             WHERE lease_owner IS NOT NULL AND status{} AND lease_until < $1",
            Status::guard(&[Sending], Queued)
        );
        let lose = format!(
            "UPDATE messages SET status = '{Unknown}', last_error = 'lease expired (at most once)', \
             final_at = $1, lease_owner = NULL, lease_until = NULL, updated_at = $1 \
             WHERE lease_owner IS NOT NULL AND status{} AND lease_until < $1 RETURNING id",
            Status::guard(&[Sending], Unknown)
        );
        let settled = format!(
            "UPDATE messages SET lease_owner = NULL, lease_until = NULL \
             WHERE lease_owner IS NOT NULL AND NOT status{} AND lease_until < $1",
            Status::sql_is(&[Sending])
        );
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let (exhausted, reason): (Vec<i64>, FlagReason) = match policy {
                DeliveryPolicy::AtLeastOnce => {
                    let ids = sqlx::query_scalar(&exhaust)
                        .bind(now).bind(max_attempts as i32)
                        .fetch_all(&mut *tx).await?;
                    touched += sqlx::query(&requeue)
                        .bind(now).execute(&mut *tx).await?.rows_affected();
                    (ids, FlagReason::RetriesExhausted)
                }
                DeliveryPolicy::AtMostOnce => {
                    let ids = sqlx::query_scalar(&lose)
                        .bind(now).fetch_all(&mut *tx).await?;
                    (ids, FlagReason::LeaseLost)
                }
            };
            // A final receipt overtook the dead worker's record of the send:
            // the message is settled, only the stale lease is left to clear.
            sqlx::query(&settled)
                .bind(now).execute(&mut *tx).await?;
            for id in &exhausted {
                flag!(tx, *id, reason, now);
            }
            touched += exhausted.len() as u64;
            tx.commit().await?;
        });
        Ok(touched)
    }

    /// Messages still `sent` with no final receipt since `cutoff` become
    /// `unknown`, flagged `no_receipt`. A late receipt still applies.
    pub async fn sweep_no_receipt(&self, cutoff: i64) -> Result<u64> {
        let now = now_ms();
        let sql = format!(
            "UPDATE messages SET status = '{}', last_error = 'no receipt', updated_at = $1 \
             WHERE status{} AND sent_at < $2 RETURNING id",
            Status::Unknown,
            Status::guard(&[Status::Sent], Status::Unknown)
        );
        let n = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(&sql)
                .bind(now).bind(cutoff).fetch_all(&mut *tx).await?;
            for id in &ids {
                flag!(tx, *id, FlagReason::NoReceipt, now);
            }
            tx.commit().await?;
            ids.len() as u64
        });
        Ok(n)
    }

    /// Status counts over the whole queue (metrics, progress), by status.
    pub async fn queue_depth(&self) -> Result<Vec<StatusCount>> {
        Ok(
            with_pool!(self, p => sqlx::query_as("SELECT status, COUNT(*) AS count FROM messages GROUP BY status ORDER BY status")
            .fetch_all(p).await?),
        )
    }

    /// Earliest `next_attempt_at` among queued messages of live campaigns,
    /// so an idle worker can sleep until then instead of polling.
    pub async fn next_due(&self) -> Result<Option<i64>> {
        let sql = format!(
            "SELECT MIN(next_attempt_at) FROM messages WHERE status{} \
             AND campaign_id IN (SELECT id FROM campaigns WHERE status IN ({}))",
            Status::sql_is(&[Status::Queued]),
            CampaignStatus::sql_sending()
        );
        Ok(with_pool!(self, p => sqlx::query_scalar(&sql).fetch_one(p).await?))
    }

    /// Records this worker as alive and returns how many workers are alive
    /// (heartbeat within `live_ms`), itself included; forgets dead ones.
    pub async fn heartbeat(&self, worker: &str, live_ms: i64) -> Result<i64> {
        let now = now_ms();
        Ok(with_pool!(self, p => {
            sqlx::query("INSERT INTO workers (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
                         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at")
                .bind(worker).bind(now).execute(p).await?;
            sqlx::query("DELETE FROM workers WHERE heartbeat_at < $1")
                .bind(now - 10 * live_ms).execute(p).await?;
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM workers WHERE heartbeat_at >= $1")
                .bind(now - live_ms).fetch_one(p).await?;
            n.max(1)
        }))
    }

    /// A worker that stops says so, so the others take its share at once.
    pub async fn deregister(&self, worker: &str) -> Result<()> {
        with_pool!(self, p => sqlx::query("DELETE FROM workers WHERE id = $1")
            .bind(worker).execute(p).await.map(|_| ())?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{last4, CLAIMED_COLUMNS, CLAIMED_NAMES};

    #[test]
    fn a_message_keeps_the_niks_last_four_characters() {
        assert_eq!(last4("3174012345670012"), "0012");
        assert_eq!(last4("12"), "12");
        assert_eq!(last4(""), "");
        assert_eq!(last4("ab\u{20ac}cd"), "b\u{20ac}cd");
    }

    /// `ClaimedMessage::from_row` reads each column at its name's position in
    /// `CLAIMED_NAMES`: those must be what the statement selects, in order.
    #[test]
    fn claimed_columns_are_the_rows_fields_in_order() {
        let selected: Vec<&str> = CLAIMED_COLUMNS
            .split(',')
            .map(|c| {
                let c = c.trim();
                match c.rsplit_once(" AS ") {
                    Some((_, alias)) => alias,
                    None => c.rsplit_once('.').map_or(c, |(_, name)| name),
                }
            })
            .collect();
        assert_eq!(selected, CLAIMED_NAMES);
    }
}

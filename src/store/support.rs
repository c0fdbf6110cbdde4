//! What the people around the dispatcher ask of the store: the chatbot
//! (look-up, re-registration), support staff (search, timeline, resend,
//! flag resolution), idempotency-key retention and `/metrics` (gauges).
//!
//! Written to be called from any front end (HTTP API, CLI, the support web
//! UI): every function takes plain parsed values and returns plain data;
//! masking for display happens here, where the rows are read, so no caller
//! can forget it. Every change is one transaction, audited inside it.
//!
//! # Extra notices
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

use super::{audit_tx, now_ms, with_pool, BeginWrite, Store, StoreError, WorkerRow};
use crate::domain::notice::{self, FreeText, InvalidText};
use crate::domain::search::SearchQuery;
use crate::domain::{fmt_wib, mask_name, mask_nik, mask_phone, Msisdn, Nik, Window};
use crate::status::{CampaignStatus, Status};

pub use crate::domain::notice::RESENDS_PER_NUMBER_PER_DAY;

/// Most rows a search returns.
pub const SEARCH_LIMIT: i64 = 50;

/// Most database time a name search may take; past it the query is
/// refused as too broad (a help desk needs an answer, and a search must not
/// hold a connection the dispatcher needs).
pub const SEARCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Name and template of the standing campaign for re-registered workers who
/// are in no campaign.
pub const REREGISTRATION_CAMPAIGN: &str = "Registrasi ulang (chatbot)";
pub const REREGISTRATION_TEMPLATE: &str = "registrasi_ulang";
pub(super) const STANDING_REREGISTRATION: &str = "reregistration";

/// Why a support or chatbot operation was refused. The HTTP layer maps each
/// to one status code.
#[derive(Debug, thiserror::Error)]
pub enum SupportError {
    /// Bad input, naming the field (400).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No such worker/flag (404). For the chatbot, also "the digits do not
    /// match that phone", so existence does not leak.
    #[error("{0} not found")]
    NotFound(String),
    /// A notice is still queued, being sent, or awaiting its receipt (409).
    #[error("{0}")]
    InFlight(String),
    /// The state does not allow it (409), e.g. a flag already resolved.
    #[error("{0}")]
    Conflict(String),
    /// The worker is not someone a notice may go to (422).
    #[error("{0}")]
    NotEligible(String),
    /// The per-number daily limit (429). `retry_at` is when one more is
    /// allowed (Unix ms).
    #[error("{message}")]
    Limit { message: String, retry_at: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<InvalidText> for SupportError {
    fn from(e: InvalidText) -> Self {
        SupportError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<sqlx::Error> for SupportError {
    fn from(e: sqlx::Error) -> Self {
        SupportError::Store(StoreError::Sqlx(e))
    }
}

type Result<T, E = SupportError> = std::result::Result<T, E>;

/// How a caller identifies a worker.
#[derive(Debug, Clone)]
pub enum WorkerKey {
    /// The full NIK.
    Nik(Nik),
    /// The current phone number. Several workers may share one.
    Phone(Msisdn),
    /// The last 6 digits of the NIK with the current phone number, as the
    /// Kominfo chatbot asks. Old numbers in `phone_history` never match: a
    /// recycled number must not reveal its previous owner.
    Last6AndPhone { last6: String, phone: Msisdn },
}

impl WorkerKey {
    /// Checks `last6` (exactly 6 ASCII digits) and builds the key.
    pub fn last6_and_phone(last6: &str, phone: Msisdn) -> Result<WorkerKey> {
        let last6 = last6.trim();
        if last6.len() != 6 || !last6.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SupportError::Invalid {
                field: "nik_last6",
                reason: "must be exactly the last 6 digits of the NIK".into(),
            });
        }
        Ok(WorkerKey::Last6AndPhone {
            last6: last6.to_string(),
            phone,
        })
    }
}

/// What a look-up found.
#[derive(Debug, Clone)]
pub enum Lookup {
    NotFound,
    /// More than one worker matches (a shared phone): the caller must say
    /// which, e.g. with the last 6 digits of the NIK.
    Ambiguous,
    Found(Box<WorkerStatus>),
}

/// A worker's state, for the chatbot and the support summary.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub worker: WorkerRow,
    /// Reasons of the open (unresolved) flags, oldest first.
    pub open_flags: Vec<String>,
    /// The newest message for the worker, any campaign.
    pub last_notice: Option<NoticeState>,
}

/// Where the newest notice is.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct NoticeState {
    pub message_id: i64,
    pub campaign_id: i64,
    pub status: String,
    /// The moment that status was reached, best known: final, else sent,
    /// else the last change (Unix ms).
    pub at: i64,
    /// When a queued notice is due (Unix ms).
    pub next_attempt_at: i64,
}

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

/// One search hit, masked: safe to show on a help-desk screen.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkerSummary {
    /// Internal id, for the timeline and resend calls.
    pub id: i64,
    pub nik_masked: String,
    pub name_masked: String,
    pub phone_masked: String,
    pub province_code: String,
    pub profession: String,
    pub validated: bool,
    pub eligible: bool,
    pub open_flags: i64,
    /// Status of the newest message, if any.
    pub last_status: Option<String>,
}

/// What a search query was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchKind {
    Nik,
    Phone,
    Name,
}

/// Everything that happened to one worker, masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Timeline {
    pub worker: WorkerSummary,
    /// Oldest first, each with its attempts and receipts.
    pub messages: Vec<TimelineMessage>,
    pub flags: Vec<TimelineFlag>,
    pub phone_changes: Vec<PhoneChange>,
    /// Support resends and chatbot re-registrations: who, why, when.
    pub resends: Vec<ResendEntry>,
    /// Audit entries whose subject is this worker.
    pub audit: Vec<AuditEntry>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineMessage {
    pub id: i64,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub generation: i32,
    pub status: String,
    pub attempts: i32,
    pub gateway: Option<String>,
    pub phone_masked: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
    pub final_at: Option<i64>,
    /// Phone-like digit runs masked.
    pub last_error: Option<String>,
    pub attempt_log: Vec<AttemptEntry>,
    pub receipts: Vec<ReceiptEntry>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptEntry {
    pub attempt: i32,
    pub gateway: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub at: i64,
}

/// A receipt without its raw payload (which holds the phone number).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReceiptEntry {
    pub id: i64,
    pub gateway: String,
    pub raw_status: Option<String>,
    pub outcome: Option<String>,
    pub error_code: Option<String>,
    pub effect: Option<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct TimelineFlag {
    pub id: i64,
    pub campaign_id: i64,
    pub message_id: i64,
    pub reason: String,
    pub flagged_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PhoneChange {
    pub old_phone_masked: Option<String>,
    pub new_phone_masked: String,
    /// import, chatbot, support.
    pub source: String,
    pub changed_at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResendEntry {
    pub message_id: i64,
    /// `resend` (support staff) or `reregister` (chatbot).
    pub kind: String,
    pub actor: String,
    pub reason: String,
    pub phone_masked: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub at: i64,
}

/// One request done at most once per (token, key).
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyKey<'a> {
    pub token_id: i64,
    pub key: &'a str,
    /// Hex SHA-256 of the canonical request: the same key with another
    /// request is refused.
    pub request_hash: &'a str,
}

/// The outcome of an idempotent operation.
#[derive(Debug, Clone)]
pub enum Idempotent<T> {
    /// Done now; `body` is the response stored for retries.
    Done { outcome: T, body: String },
    /// Done before: the stored status and response, nothing more was done.
    Replayed { status: u16, body: String },
}

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
}

/// One gauge value: a count per gateway and one more label (a status, a
/// flag reason or a receipt outcome, as the [`Gauges`] field says).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct GatewayCount {
    pub gateway: String,
    pub label: String,
    pub count: i64,
}

/// What a support search found ([`Store::search_workers`]).
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// What the query was read as.
    pub kind: SearchKind,
    /// At most [`SEARCH_LIMIT`] masked summaries.
    pub workers: Vec<WorkerSummary>,
}

pub(super) const WORKER_COLUMNS: &str =
    "id, nik, full_name, phone, operator, profession, facility_code, \
     regency_code, province_code, validated, eligible, created_at, updated_at, \
     phone_unvalidated";

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

#[derive(sqlx::FromRow)]
struct SummaryRow {
    id: i64,
    nik: String,
    full_name: String,
    phone: String,
    province_code: String,
    profession: String,
    validated: bool,
    eligible: bool,
    open_flags: i64,
    last_status: Option<String>,
}

impl From<SummaryRow> for WorkerSummary {
    fn from(r: SummaryRow) -> Self {
        WorkerSummary {
            id: r.id,
            nik_masked: mask_nik(&r.nik),
            name_masked: mask_name(&r.full_name),
            phone_masked: mask_phone(&r.phone),
            province_code: r.province_code,
            profession: r.profession,
            validated: r.validated,
            eligible: r.eligible,
            open_flags: r.open_flags,
            last_status: r.last_status,
        }
    }
}

const SUMMARY_SELECT: &str = "SELECT w.id, w.nik, w.full_name, w.phone, w.province_code, w.profession, \
     w.validated, w.eligible, \
     (SELECT COUNT(*) FROM non_recipients f WHERE f.worker_id = w.id AND f.resolved_at IS NULL) AS open_flags, \
     (SELECT m.status FROM messages m WHERE m.worker_id = w.id ORDER BY m.id DESC LIMIT 1) AS last_status \
     FROM health_workers w";

/// Masks every run of 7 or more digits (with an optional leading `+`) in
/// free text from gateways, which may quote the number it refused.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let start = i;
        let plus = chars[i] == '+';
        let mut j = if plus { i + 1 } else { i };
        while j < chars.len() && chars[j].is_ascii_digit() {
            j += 1;
        }
        let digits = j - if plus { i + 1 } else { i };
        if digits >= 7 {
            let run: String = chars[start..j].iter().collect();
            out.push_str(&mask_phone(&run));
            i = j;
        } else if digits > 0 {
            out.extend(&chars[start..j]);
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The database's error code (SQLSTATE on PostgreSQL, the primary result
/// code on SQLite), if `e` is a database error.
fn db_code(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

/// `q` as one FTS5 phrase (`"…"`, inner quotes doubled): with the trigram
/// tokenizer a phrase matches wherever the text contains it, so this is
/// substring search with no FTS5 query syntax (`AND`, `*`, `NEAR`, …) read
/// from the input.
fn fts_phrase(q: &str) -> String {
    format!("\"{}\"", q.replace('"', "\"\""))
}

/// `%…%` for `LIKE … ESCAPE '\'`, lower-cased, wildcards escaped.
fn like_pattern(q: &str) -> String {
    let mut p = String::from("%");
    for c in q.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Refuses when `$phone` had its extra notices for the last 24 hours
/// ([`notice::extra_notice_allowed`] decides; this reads the times). A
/// macro, as the other statements run inside a caller's transaction on
/// either database (`$tx` is a SQLite or a PostgreSQL transaction).
macro_rules! check_number_limit {
    ($tx:expr, $phone:expr, $now:expr) => {{
        let phone: &str = $phone;
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT created_at FROM resends WHERE phone = $1 AND created_at > $2 ORDER BY created_at",
        )
        .bind(phone)
        .bind($now - notice::DAY_MS)
        .fetch_all(&mut *$tx)
        .await?;
        if let Err((message, retry_at)) = notice::extra_notice_allowed(phone, &recent) {
            return Err(SupportError::Limit { message, retry_at });
        }
    }};
}

/// The most recent non-cancelled campaign that includes the worker and
/// whose deadline has not passed.
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

/// Checks a free-text field people type (reason, note, staff name)
/// ([`FreeText`]).
pub(super) fn required_text(field: &'static str, value: &str, max: usize) -> Result<String> {
    Ok(FreeText::parse(field, value, max)?.into_string())
}

impl Store {
    /// The worker with this id.
    pub async fn worker(&self, id: i64) -> Result<WorkerRow> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1");
        let w: Option<WorkerRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        w.ok_or_else(|| SupportError::NotFound(format!("worker {id}")))
    }

    /// Finds one worker by key, with open flags and the newest notice.
    pub async fn lookup_worker(&self, key: &WorkerKey) -> Result<Lookup> {
        let rows: Vec<WorkerRow> = match key {
            WorkerKey::Nik(nik) => self
                .worker_by_nik(nik.as_str())
                .await?
                .into_iter()
                .collect(),
            WorkerKey::Phone(phone) => self.workers_by_phone(phone.as_e164()).await?,
            WorkerKey::Last6AndPhone { last6, phone } => self
                .workers_by_phone(phone.as_e164())
                .await?
                .into_iter()
                .filter(|w| w.nik.ends_with(last6.as_str()))
                .collect(),
        };
        let worker = match rows.len() {
            0 => return Ok(Lookup::NotFound),
            1 => rows.into_iter().next().expect("one row"),
            _ => return Ok(Lookup::Ambiguous),
        };
        Ok(Lookup::Found(Box::new(self.worker_status(worker).await?)))
    }

    /// Open flags and the newest notice of `worker`.
    pub async fn worker_status(&self, worker: WorkerRow) -> Result<WorkerStatus> {
        let (open_flags, last_notice): (Vec<String>, Option<NoticeState>) = with_pool!(self, p => {
            let flags = sqlx::query_scalar(
                "SELECT reason FROM non_recipients WHERE worker_id = $1 AND resolved_at IS NULL ORDER BY id")
                .bind(worker.id).fetch_all(p).await?;
            let last = sqlx::query_as(
                "SELECT id AS message_id, campaign_id, status, \
                 COALESCE(final_at, sent_at, updated_at) AS at, next_attempt_at \
                 FROM messages WHERE worker_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(worker.id).fetch_optional(p).await?;
            (flags, last)
        });
        Ok(WorkerStatus {
            worker,
            open_flags,
            last_notice,
        })
    }

    /// Searches by full NIK, phone number (any format people type) or name
    /// (a substring of at least 3 characters, ignoring case and accents).
    /// At most [`SEARCH_LIMIT`] masked summaries, by name (for a name
    /// search with more matches, which ones is unspecified:
    /// [`Store::search_names`]).
    ///
    /// A name search is served by an index (PostgreSQL: a `pg_trgm` GIN
    /// index on `pedulicovid_name_key(full_name)`; SQLite: the FTS5 trigram
    /// table `health_workers_name`, migration 0009) and is bounded: at most
    /// [`SEARCH_LIMIT`] rows and [`SEARCH_TIMEOUT`] of database time (a
    /// `SET LOCAL statement_timeout` on PostgreSQL, a progress handler on
    /// SQLite). A query that runs out of time (a very common fragment in a
    /// very large registry) is refused as too broad, naming the field.
    /// Fewer than 3 characters are refused: no trigram index can serve them,
    /// and two letters match a large share of any registry.
    pub async fn search_workers(&self, query: &str) -> Result<SearchResults> {
        let query = SearchQuery::parse(query).map_err(|e| SupportError::Invalid {
            field: "query",
            reason: e.0,
        })?;
        self.search(&query).await
    }

    /// Runs an already-read search ([`Store::search_workers`]).
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResults> {
        let (kind, cond, value) = match query {
            SearchQuery::Nik(nik) => (SearchKind::Nik, "w.nik = $1", nik.as_str()),
            SearchQuery::Phone(phone) => (SearchKind::Phone, "w.phone = $1", phone.as_e164()),
            SearchQuery::Name(q) => {
                return self.search_names(q).await.map(|workers| SearchResults {
                    kind: SearchKind::Name,
                    workers,
                });
            }
        };
        let sql = format!("{SUMMARY_SELECT} WHERE {cond} ORDER BY w.full_name, w.id LIMIT $2");
        let rows: Vec<SummaryRow> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(value).bind(SEARCH_LIMIT).fetch_all(p).await?);
        Ok(SearchResults {
            kind,
            workers: rows.into_iter().map(WorkerSummary::from).collect(),
        })
    }

    /// The name search of [`Store::search_workers`]: `q` is trimmed, 3 to
    /// 100 characters. The index yields matching ids and the database stops
    /// at [`SEARCH_LIMIT`] of them; only those rows are read, summarised
    /// (open flags, last status) and sorted by name. So the work is bounded
    /// by the limit, not by how many names match: picking the
    /// alphabetically first 50 of the matches read and sorted all of them
    /// (0.5–1.8 s for `siti`, 38,000 matches among 1.5 M workers, on
    /// PostgreSQL; BENCHMARKS.md, "Support search"). Which 50
    /// come back when more match is therefore unspecified; the caller is
    /// told the limit was reached and asked for more of the name.
    async fn search_names(&self, q: &str) -> Result<Vec<WorkerSummary>> {
        let too_broad = || SupportError::Invalid {
            field: "query",
            reason: format!(
                "could not be answered within {} s: give more of the name, or the NIK \
                 or phone number",
                self.search_timeout.as_secs_f64()
            ),
        };
        let rows: Vec<SummaryRow> = match &self.db {
            super::Db::Postgres(p) => {
                let sql = format!(
                    "{SUMMARY_SELECT} WHERE w.id IN ( \
                       SELECT h.id FROM health_workers h \
                       WHERE pedulicovid_name_key(h.full_name) LIKE pedulicovid_name_key($1) ESCAPE '\\' \
                       LIMIT $2) \
                     ORDER BY w.full_name, w.id"
                );
                let mut tx = p.begin().await?;
                // A constant of ours, not input (SET takes no parameters).
                sqlx::query(&format!(
                    "SET LOCAL statement_timeout = {}",
                    self.search_timeout.as_millis().max(1)
                ))
                .execute(&mut *tx)
                .await?;
                let rows = sqlx::query_as(&sql)
                    .bind(like_pattern(q))
                    .bind(SEARCH_LIMIT)
                    .fetch_all(&mut *tx)
                    .await;
                match rows {
                    Ok(rows) => {
                        tx.commit().await?;
                        rows
                    }
                    // query_canceled: the statement timeout.
                    Err(e) if db_code(&e).as_deref() == Some("57014") => return Err(too_broad()),
                    Err(e) => return Err(e.into()),
                }
            }
            super::Db::Sqlite(p) => {
                let sql = format!(
                    "{SUMMARY_SELECT} WHERE w.id IN ( \
                       SELECT rowid FROM health_workers_name \
                       WHERE health_workers_name MATCH $1 LIMIT $2) \
                     ORDER BY w.full_name, w.id"
                );
                let mut conn = p.acquire().await?;
                let deadline = std::time::Instant::now() + self.search_timeout;
                // Cleared when this search ends, however it ends (a dropped
                // request too), so the handler left on the pooled
                // connection never interrupts another statement.
                let live = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
                struct Ends(std::sync::Arc<std::sync::atomic::AtomicBool>);
                impl Drop for Ends {
                    fn drop(&mut self) {
                        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                let ends = Ends(live.clone());
                // Every 500 virtual-machine steps: a check is an atomic load
                // and a clock read, a few nanoseconds.
                conn.lock_handle()
                    .await?
                    .set_progress_handler(500, move || {
                        !live.load(std::sync::atomic::Ordering::Relaxed)
                            || std::time::Instant::now() < deadline
                    });
                let rows = sqlx::query_as(&sql)
                    .bind(fts_phrase(q))
                    .bind(SEARCH_LIMIT)
                    .fetch_all(&mut *conn)
                    .await;
                drop(ends);
                conn.lock_handle().await?.remove_progress_handler();
                match rows {
                    Ok(rows) => rows,
                    // SQLITE_INTERRUPT: the progress handler said stop.
                    Err(e) if db_code(&e).as_deref() == Some("9") => return Err(too_broad()),
                    Err(e) => return Err(e.into()),
                }
            }
        };
        Ok(rows.into_iter().map(WorkerSummary::from).collect())
    }

    /// Masked summary of one worker.
    pub async fn worker_summary(&self, worker_id: i64) -> Result<WorkerSummary> {
        let sql = format!("{SUMMARY_SELECT} WHERE w.id = $1");
        let row: Option<SummaryRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(worker_id).fetch_optional(p).await?);
        row.map(WorkerSummary::from)
            .ok_or_else(|| SupportError::NotFound(format!("worker {worker_id}")))
    }

    /// Everything that happened to one worker: messages with attempts and
    /// receipts, flags, phone changes, resends and audit entries.
    pub async fn timeline(&self, worker_id: i64) -> Result<Timeline> {
        type MsgRow = (
            i64,
            i64,
            String,
            i32,
            String,
            i32,
            Option<String>,
            String,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
        );
        type AttemptRow = (i64, i32, Option<String>, String, Option<String>, i64);
        type ReceiptRow = (
            i64,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
        );
        type PhoneRow = (Option<String>, String, String, i64);
        type ResendRow = (i64, String, String, String, String, i64);
        let worker = self.worker_summary(worker_id).await?;
        let subject = format!("worker:{worker_id}");
        struct Rows {
            msgs: Vec<MsgRow>,
            attempts: Vec<AttemptRow>,
            receipts: Vec<ReceiptRow>,
            flags: Vec<TimelineFlag>,
            phones: Vec<PhoneRow>,
            resends: Vec<ResendRow>,
            audit: Vec<AuditEntry>,
        }
        let rows: Rows = with_pool!(self, p => {
            let msgs = sqlx::query_as(
                "SELECT m.id, m.campaign_id, c.name, m.generation, m.status, m.attempts, m.gateway, m.phone, \
                 m.created_at, m.sent_at, m.final_at, m.last_error FROM messages m \
                 JOIN campaigns c ON c.id = m.campaign_id WHERE m.worker_id = $1 ORDER BY m.id")
                .bind(worker_id).fetch_all(p).await?;
            let attempts = sqlx::query_as(
                "SELECT a.message_id, a.attempt, a.gateway, a.outcome, a.detail, a.at FROM attempts a \
                 JOIN messages m ON m.id = a.message_id WHERE m.worker_id = $1 ORDER BY a.id")
                .bind(worker_id).fetch_all(p).await?;
            let receipts = sqlx::query_as(
                "SELECT r.id, r.message_id, r.gateway, r.raw_status, r.outcome, r.error_code, r.effect, r.received_at \
                 FROM receipts r JOIN messages m ON m.id = r.message_id WHERE m.worker_id = $1 ORDER BY r.id")
                .bind(worker_id).fetch_all(p).await?;
            let flags = sqlx::query_as(
                "SELECT id, campaign_id, message_id, reason, flagged_at, resolved_at, resolution, resolved_by, note \
                 FROM non_recipients WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let phones = sqlx::query_as(
                "SELECT old_phone, new_phone, source, changed_at FROM phone_history WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let resends = sqlx::query_as(
                "SELECT message_id, kind, actor, reason, phone, created_at FROM resends WHERE worker_id = $1 ORDER BY id")
                .bind(worker_id).fetch_all(p).await?;
            let audit = sqlx::query_as(
                "SELECT id, actor, action, detail, at FROM audit_log WHERE subject = $1 ORDER BY id")
                .bind(&subject).fetch_all(p).await?;
            Rows { msgs, attempts, receipts, flags, phones, resends, audit }
        });
        let Rows {
            msgs,
            attempts,
            receipts,
            flags,
            phones,
            resends,
            audit,
        } = rows;
        let messages = msgs
            .into_iter()
            .map(|m| TimelineMessage {
                id: m.0,
                campaign_id: m.1,
                campaign_name: m.2,
                generation: m.3,
                status: m.4,
                attempts: m.5,
                gateway: m.6,
                phone_masked: mask_phone(&m.7),
                created_at: m.8,
                sent_at: m.9,
                final_at: m.10,
                last_error: m.11.as_deref().map(scrub),
                attempt_log: attempts
                    .iter()
                    .filter(|a| a.0 == m.0)
                    .map(|a| AttemptEntry {
                        attempt: a.1,
                        gateway: a.2.clone(),
                        outcome: a.3.clone(),
                        detail: a.4.as_deref().map(scrub),
                        at: a.5,
                    })
                    .collect(),
                receipts: receipts
                    .iter()
                    .filter(|r| r.1 == Some(m.0))
                    .map(|r| ReceiptEntry {
                        id: r.0,
                        gateway: r.2.clone(),
                        raw_status: r.3.clone(),
                        outcome: r.4.clone(),
                        error_code: r.5.clone(),
                        effect: r.6.clone(),
                        received_at: r.7,
                    })
                    .collect(),
            })
            .collect();
        Ok(Timeline {
            worker,
            messages,
            flags,
            phone_changes: phones
                .into_iter()
                .map(|p| PhoneChange {
                    old_phone_masked: p.0.as_deref().map(mask_phone),
                    new_phone_masked: mask_phone(&p.1),
                    source: p.2,
                    changed_at: p.3,
                })
                .collect(),
            resends: resends
                .into_iter()
                .map(|r| ResendEntry {
                    message_id: r.0,
                    kind: r.1,
                    actor: r.2,
                    reason: r.3,
                    phone_masked: mask_phone(&r.4),
                    created_at: r.5,
                })
                .collect(),
            audit,
        })
    }

    /// Queues the worker's notice again, as a new generation in the
    /// worker's latest campaign, audited with `staff` and `reason`.
    ///
    /// Refused while one of the worker's messages is queued, being sent or
    /// sent and awaiting its receipt (409); for a worker not validated or
    /// not eligible, or in no campaign (422); and past
    /// [`RESENDS_PER_NUMBER_PER_DAY`] for the number (429). Open flags are
    /// resolved `resent`: a new flag follows if this one fails too.
    pub async fn resend(&self, worker_id: i64, staff: &str, reason: &str) -> Result<QueuedNotice> {
        let staff = required_text("staff", staff, 100)?;
        let reason = required_text("reason", reason, 500)?;
        let now = now_ms();
        let lock = self.row_lock();
        let worker_sql = format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1{lock}");
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
            check_number_limit!(tx, w.phone.as_str(), now);
            let Some(c) = latest_campaign_tx!(tx, self, worker_id, now) else {
                return Err(SupportError::NotEligible(format!(
                    "worker {worker_id} is in no open campaign: there is no notice to resend")));
            };
            let new = NewNotice {
                worker_id,
                phone: w.phone.as_str(),
                due: notice::Due::in_window(c.window(), w.province_code, now),
                kind: "resend",
                actor: staff.as_str(),
                reason: reason.as_str(),
            };
            let notice = queue_generation_tx!(tx, &c, &new, now);
            let resolved = sqlx::query(
                "UPDATE non_recipients SET resolved_at = $1, resolution = 'resent', resolved_by = $2 \
                 WHERE worker_id = $3 AND resolved_at IS NULL")
                .bind(now).bind(&staff).bind(worker_id)
                .execute(&mut *tx).await?.rows_affected();
            audit_tx!(tx, staff.as_str(), "worker.resend", format!("worker:{worker_id}"),
                format!("reason: {reason}; message {} (generation {}) in campaign {} to {}; {resolved} flag(s) resolved",
                    notice.message_id, notice.generation, notice.campaign_id, notice.phone_masked), now);
            tx.commit().await?;
            notice
        });
        Ok(notice)
    }

    /// Marks an open flag resolved (`support`) with `note`, audited.
    pub async fn resolve_flag(
        &self,
        flag_id: i64,
        staff: &str,
        note: &str,
    ) -> Result<TimelineFlag> {
        let staff = required_text("staff", staff, 100)?;
        let note = required_text("note", note, 1000)?;
        let now = now_ms();
        let lock = self.row_lock();
        let select = format!(
            "SELECT id, campaign_id, message_id, reason, flagged_at, resolved_at, resolution, resolved_by, note \
             FROM non_recipients WHERE id = $1{lock}"
        );
        let flag = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let f: Option<TimelineFlag> = sqlx::query_as(&select)
                .bind(flag_id).fetch_optional(&mut *tx).await?;
            let Some(f) = f else {
                return Err(SupportError::NotFound(format!("flag {flag_id}")));
            };
            if f.resolved_at.is_some() {
                return Err(SupportError::Conflict(format!(
                    "flag {flag_id} is already resolved ({})", f.resolution.as_deref().unwrap_or("?"))));
            }
            let worker_id: i64 = sqlx::query_scalar(
                "UPDATE non_recipients SET resolved_at = $1, resolution = 'support', resolved_by = $2, note = $3 \
                 WHERE id = $4 RETURNING worker_id")
                .bind(now).bind(&staff).bind(&note).bind(flag_id)
                .fetch_one(&mut *tx).await?;
            audit_tx!(tx, staff.as_str(), "flag.resolve", format!("worker:{worker_id}"),
                format!("flag {flag_id} ({}) resolved: {note}", f.reason), now);
            tx.commit().await?;
            f
        });
        Ok(TimelineFlag {
            resolved_at: Some(now),
            resolution: Some("support".into()),
            resolved_by: Some(staff),
            note: Some(note),
            ..flag
        })
    }

    /// Forgets chatbot idempotency keys stored before `before` (Unix ms):
    /// a retry that late is a new request. Returns how many were deleted.
    pub async fn purge_idempotency_keys(&self, before: i64) -> super::Result<u64> {
        let deleted = with_pool!(self, p => sqlx::query(
            "DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before).execute(p).await?.rows_affected());
        Ok(deleted)
    }

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
            Gauges { messages, open_flags, receipts }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_masks_numbers_only() {
        assert_eq!(
            scrub("invalid number +6281234567890 (code 12)"),
            "invalid number +62812****890 (code 12)"
        );
        assert_eq!(scrub("to 081234567890."), "to 08123****890.");
        assert_eq!(scrub("HTTP 503 after 2 tries"), "HTTP 503 after 2 tries");
        assert_eq!(scrub("+"), "+");
        assert_eq!(scrub(""), "");
    }

    #[test]
    fn fts_phrases_quote_the_whole_query() {
        assert_eq!(fts_phrase("siti"), "\"siti\"");
        assert_eq!(fts_phrase("a\"b OR c*"), "\"a\"\"b OR c*\"");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("Siti"), "%siti%");
        assert_eq!(like_pattern("50%_a\\"), "%50\\%\\_a\\\\%");
    }

    #[test]
    fn last6_must_be_six_digits() {
        let p = Msisdn::parse("081234567890").unwrap();
        assert!(WorkerKey::last6_and_phone("123456", p.clone()).is_ok());
        assert!(WorkerKey::last6_and_phone("12345", p.clone()).is_err());
        assert!(WorkerKey::last6_and_phone("12345a", p).is_err());
    }
}

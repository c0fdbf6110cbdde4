//! Chatbot re-registration that only the worker can make.
//!
//! The chatbot moves a worker's notice to a new number. Whoever can do that
//! can read the notice (name, NIK digits) and keep the worker from being
//! flagged, so the store, not the HTTP handler, decides:
//!
//! - **Proof.** The caller gives the full NIK and the full name as
//!   registered, compared after [`normalize_name`]. An unknown NIK and a
//!   wrong name are the same failure ([`SupportError::NotFound`]), so the
//!   answer does not tell whether a NIK exists.
//! - **Failures are counted** per NIK (a hash of the NIK given, whether or
//!   not it exists, so a lock does not reveal existence either) and per new
//!   number (a hash of the E.164). [`MAX_FAILURES`] failures within
//!   [`FAILURE_WINDOW_MS`] lock that key for [`LOCK_MS`]: every attempt on a
//!   locked key, right or wrong, is refused ([`SupportError::Limit`], 429
//!   with `Retry-After`) and records nothing. Locks are audited and support
//!   staff can lift them ([`Store::lift_reregistration_lock`], audited).
//! - **Validated before use** ([`ReregistrationMode::Validated`], the
//!   default): a proved re-registration to a number not on file is stored
//!   `pending`; nothing changes and nothing is sent until a One Data import
//!   carries the new number for that NIK (`confirmed`, see
//!   [`confirm_pending`]) or support staff approve it (`approved`,
//!   audited). Only then is the notice queued to the new number. A
//!   request never cancels the worker's other pending ones (one of them
//!   may be the worker's own): a worker may have one pending request per
//!   number, the import (or approval) that settles one supersedes the
//!   rest, and the same request again is the stored one.
//! - **Requests per number are capped**: one WhatsApp number may create
//!   [`REQUESTS_PER_NUMBER_PER_DAY`] requests (pending, or immediate moves
//!   to a number not on file) within 24 hours; the next is refused
//!   ([`SupportError::Limit`], 429 with `Retry-After`), so a leaked list of
//!   NIKs and names cannot be worked through from one number.
//! - **Immediate** ([`ReregistrationMode::Immediate`], for operators who
//!   accept the risk): applied at once, and the notice to the number nobody
//!   validated goes through the standing campaign [`UNVALIDATED_CAMPAIGN`]
//!   with the template [`UNVALIDATED_TEMPLATE`], which renders without NIK
//!   digits ([`crate::render::NO_NIK_SUFFIX`]). The worker's number is
//!   marked `phone_unvalidated` until a One Data import carries it (or
//!   support staff approve): every notice to it, in any campaign, is
//!   rendered with that template too (the dispatcher checks at claim).
//! - **Look-ups by the last 6 NIK digits with a phone** are a guess at part
//!   of a NIK: their mismatches are counted and locked per phone (key
//!   `lookup`) the same way ([`Store::lookup_by_last6`]). **Look-ups by the
//!   full NIK** name the conversation's WhatsApp number, and a NIK not on
//!   file counts against that number under the same key
//!   ([`Store::lookup_by_nik`]).
//!
//! Each attempt runs in one write transaction; on PostgreSQL a transaction
//! advisory lock per key (NIK first, then number: one order, no deadlock)
//! makes concurrent attempts on one key count one after the other, as
//! SQLite's single writer does.

use serde::{Deserialize, Serialize};

use super::notices::{
    check_number_limit, latest_campaign_tx, queue_generation_tx, NewNotice, TargetCampaign,
    STANDING_REREGISTRATION,
};
use super::{
    audit_tx, lock_key, now_ms, sha256_hex, with_pool, BeginWrite, IdempotencyKey, Idempotent,
    QueuedNotice, Store, StoreError, SupportError, WorkerRow, REREGISTRATION_CAMPAIGN,
    REREGISTRATION_TEMPLATE, WORKER_COLUMNS,
};
use crate::domain::notice::{self, FreeText, DAY_MS};
use crate::domain::{fmt_wib, mask_name, mask_nik, mask_phone, Msisdn, Nik, Window};
use crate::status::{CampaignStatus, Status};

/// Failed attempts on one key (NIK or number) within
/// [`FAILURE_WINDOW_MS`] that lock it. Five lets a person mistype twice
/// and try the name three ways; a guesser needs far more.
pub const MAX_FAILURES: i64 = 5;
/// The period failures are counted over.
pub const FAILURE_WINDOW_MS: i64 = DAY_MS;
/// How long a lock lasts.
pub const LOCK_MS: i64 = DAY_MS;

/// Re-registration requests one WhatsApp number may create within 24
/// hours (pending ones, and immediate-mode moves to a number not on file).
/// A person re-registers themself, perhaps a relative or two; a number
/// working through a leaked list of NIKs and names is stopped here.
pub const REQUESTS_PER_NUMBER_PER_DAY: i64 = 3;

/// The standing campaign for notices to numbers nobody has validated.
pub const UNVALIDATED_CAMPAIGN: &str = "Registrasi ulang (nomor belum divalidasi)";
/// Its template: no NIK digits.
pub const UNVALIDATED_TEMPLATE: &str = "registrasi_ulang_tanpa_nik";
const STANDING_UNVALIDATED: &str = "reregistration_unvalidated";

/// Longest name the chatbot may send, in characters.
const NAME_MAX_CHARS: usize = 200;

/// `chatbot.reregistration`: whether a re-registration waits for One Data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReregistrationMode {
    /// Stored pending until a One Data import or support staff validate the
    /// new number (the 2021 campaign's practice).
    #[default]
    Validated,
    /// Applied at once; the notice carries no NIK digits.
    Immediate,
}

/// A name as compared for re-registration: Unicode NFKD, combining marks
/// (accents) dropped, lower case, and only letters and digits kept, so
/// `"Siti Nur'aini"`, `"SITI NURAINI"` and `"Sití  Nur-aini"` are equal.
pub fn normalize_name(s: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    s.nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() && !is_combining_mark(*c))
        .collect()
}

/// What the chatbot proves and asks for, parsed.
#[derive(Debug, Clone)]
pub struct ChatbotReregistration {
    pub nik: Nik,
    /// The full name as the person typed it.
    pub full_name: String,
    /// The WhatsApp number the chatbot is talking to (WhatsApp verified it):
    /// the new number.
    pub whatsapp_phone: Msisdn,
}

/// Where a re-registration stands after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReregisterState {
    /// Stored; waits for One Data validation or a support approval. Nothing
    /// was changed or sent.
    PendingValidation,
    /// Applied: the number is on file and a notice (if any) is queued.
    Reregistered,
}

/// What a re-registration did: also the body of the chatbot's answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReregisterOutcome {
    pub state: ReregisterState,
    /// The `reregistrations` row.
    pub reregistration_id: i64,
    /// The new number, masked.
    pub phone_masked: String,
    /// False when nothing changed on file (pending, or the same number).
    pub phone_changed: bool,
    /// Open flags resolved `reregistered`.
    pub flags_resolved: u64,
    /// Notices still queued for the old number, cancelled.
    pub superseded: u64,
    /// The new notice; none while pending, or for a worker not validated or
    /// not eligible.
    pub notice: Option<QueuedNotice>,
}

/// A re-registration, masked: for the operator and support APIs, the CLI
/// list and the UI.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReregistrationView {
    pub id: i64,
    pub worker_id: i64,
    pub nik_masked: String,
    pub name_masked: String,
    pub old_phone_masked: String,
    pub new_phone_masked: String,
    /// pending, confirmed, approved, superseded, applied.
    pub status: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub message_id: Option<i64>,
}

/// A pending re-registration in full, for the One Data validation export
/// (the validators need the NIK, the name and both numbers).
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct ReregistrationExportRow {
    pub id: i64,
    pub nik: String,
    pub full_name: String,
    pub old_phone: String,
    pub new_phone: String,
    pub facility_code: String,
    pub regency_code: String,
    pub province_code: String,
    pub requested_at: i64,
}

#[derive(sqlx::FromRow)]
struct ViewRow {
    id: i64,
    worker_id: i64,
    nik: String,
    full_name: String,
    old_phone: String,
    new_phone: String,
    status: String,
    requested_by: String,
    requested_at: i64,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    message_id: Option<i64>,
}

impl From<ViewRow> for ReregistrationView {
    fn from(r: ViewRow) -> Self {
        ReregistrationView {
            id: r.id,
            worker_id: r.worker_id,
            nik_masked: mask_nik(&r.nik),
            name_masked: mask_name(&r.full_name),
            old_phone_masked: mask_phone(&r.old_phone),
            new_phone_masked: mask_phone(&r.new_phone),
            status: r.status,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            message_id: r.message_id,
        }
    }
}

const VIEW_SELECT: &str =
    "SELECT r.id, r.worker_id, w.nik, w.full_name, r.old_phone, r.new_phone, r.status, \
     r.requested_by, r.requested_at, r.decided_by, r.decided_at, r.message_id \
     FROM reregistrations r JOIN health_workers w ON w.id = r.worker_id";

/// A failed-attempt lock, for support staff.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ReregistrationLock {
    pub id: i64,
    /// `nik` (the worker's re-registration), `number` (a new number's
    /// attempts) or `lookup` (`nik_last6` look-ups for a phone).
    pub key_kind: String,
    /// The worker the NIK names, when it exists.
    pub worker_id: Option<i64>,
    /// For a `number` or `lookup` lock, the number, masked.
    pub number_masked: Option<String>,
    pub failures: i64,
    pub locked_at: i64,
    pub locked_until: i64,
    pub lifted_at: Option<i64>,
    pub lifted_by: Option<String>,
    /// Not lifted and not yet expired.
    #[sqlx(default)]
    pub active: bool,
}

const LOCK_COLUMNS: &str = "id, key_kind, worker_id, number_masked, failures, locked_at, \
     locked_until, lifted_at, lifted_by";

/// The stored key of a NIK or a number: never the value in clear.
pub(super) fn key_hash(kind: &str, value: &str) -> String {
    sha256_hex(format!("pedulicovid-reregistration:{kind}:{value}").as_bytes())
}

/// The standing campaign for `purpose`, created (or re-created after a
/// cancel) on demand. The `standing_campaigns` row serialises concurrent
/// callers: the first inserts it, the others wait on it.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! standing_campaign_tx {
    ($tx:expr, $store:expr, $now:expr, $purpose:expr, $name:expr, $template:expr) => {{
        let lock = $store.row_lock();
        sqlx::query(
            "INSERT INTO standing_campaigns (purpose, campaign_id) VALUES ($1, NULL) \
             ON CONFLICT (purpose) DO NOTHING",
        )
        .bind($purpose)
        .execute(&mut *$tx)
        .await?;
        let current: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT campaign_id FROM standing_campaigns WHERE purpose = $1{lock}"
        ))
        .bind($purpose)
        .fetch_one(&mut *$tx)
        .await?;
        let existing: Option<TargetCampaign> = match current {
            Some(id) => {
                sqlx::query_as(&format!(
                    "SELECT id, name, window_start, window_end FROM campaigns \
                     WHERE id = $1 AND status <> '{}'",
                    CampaignStatus::Cancelled
                ))
                .bind(id)
                .fetch_optional(&mut *$tx)
                .await?
            }
            None => None,
        };
        match existing {
            Some(c) => c,
            None => {
                let w = Window::default();
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO campaigns (name, template, status, scheduled_at, window_start, window_end, \
                     provinces, professions, created_by, created_at, updated_at) \
                     VALUES ($1, $2, $6, $3, $4, $5, '', '', 'chatbot', $3, $3) RETURNING id",
                )
                .bind($name)
                .bind($template)
                .bind($now)
                .bind(w.start_min)
                .bind(w.end_min)
                .bind(CampaignStatus::Running.as_str())
                .fetch_one(&mut *$tx)
                .await?;
                sqlx::query("UPDATE standing_campaigns SET campaign_id = $1 WHERE purpose = $2")
                    .bind(id)
                    .bind($purpose)
                    .execute(&mut *$tx)
                    .await?;
                TargetCampaign {
                    id,
                    name: $name.to_string(),
                    window_start: w.start_min,
                    window_end: w.end_min,
                }
            }
        }
    }};
}

/// Moves worker `$w` to `$new_phone` inside `$tx`: phone history (source
/// `$source`) and the worker's phone and operator when they differ, notices
/// still queued cancelled, open flags resolved `reregistered`, and — for a
/// validated, eligible worker — a new notice: through the no-NIK standing
/// campaign when `$unvalidated`, else in the worker's latest campaign (or
/// the standing re-registration one). Evaluates to
/// `(phone_changed, superseded, flags_resolved, notice)`.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! apply_tx {
    ($tx:expr, $store:expr, $w:expr, $new_phone:expr, $operator:expr, $actor:expr, $source:expr, $unvalidated:expr, $now:expr) => {{
        let w: &WorkerRow = $w;
        let new_phone: &str = $new_phone;
        let actor: &str = $actor;
        let now: i64 = $now;
        // The campaign row is locked before any message row, the order
        // `control_campaign` uses, so the two cannot deadlock.
        // A suppressed worker or number gets no notice; the move itself
        // (the number the worker gave) is still recorded.
        let target = if notice::may_get_notice(w.validated, w.eligible).is_err()
            || super::suppression::suppressed_tx!($tx, w.id, new_phone, now).is_some()
        {
            None
        } else if $unvalidated {
            Some(standing_campaign_tx!(
                $tx,
                $store,
                now,
                STANDING_UNVALIDATED,
                UNVALIDATED_CAMPAIGN,
                UNVALIDATED_TEMPLATE
            ))
        } else {
            Some(match latest_campaign_tx!($tx, $store, w.id, now) {
                Some(c) => c,
                None => standing_campaign_tx!(
                    $tx,
                    $store,
                    now,
                    STANDING_REREGISTRATION,
                    REREGISTRATION_CAMPAIGN,
                    REREGISTRATION_TEMPLATE
                ),
            })
        };
        let phone_changed = w.phone.as_e164() != new_phone;
        if phone_changed {
            sqlx::query(
                "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(w.id)
            .bind(w.phone.as_e164())
            .bind(new_phone)
            .bind($source)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
            let operator: &str = $operator;
            sqlx::query(
                "UPDATE health_workers SET phone = $1, operator = $2, phone_unvalidated = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(new_phone)
            .bind(operator)
            .bind($unvalidated)
            .bind(now)
            .bind(w.id)
            .execute(&mut *$tx)
            .await?;
        } else if !$unvalidated {
            // Validated now (an import or support staff): later notices to
            // it may carry NIK digits again.
            sqlx::query("UPDATE health_workers SET phone_unvalidated = $1 WHERE id = $2")
                .bind(false)
                .bind(w.id)
                .execute(&mut *$tx)
                .await?;
        }
        let superseded = sqlx::query(&format!(
            "UPDATE messages SET status = '{}', last_error = 'superseded by re-registration', \
             final_at = $1, updated_at = $1 WHERE worker_id = $2 AND status{}",
            Status::Cancelled,
            Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled)
        ))
        .bind(now)
        .bind(w.id)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        let flags_resolved = sqlx::query(
            "UPDATE non_recipients SET resolved_at = $1, resolution = 'reregistered', resolved_by = $2 \
             WHERE worker_id = $3 AND resolved_at IS NULL",
        )
        .bind(now)
        .bind(actor)
        .bind(w.id)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        let notice = match target {
            Some(c) => {
                let new = NewNotice {
                    worker_id: w.id,
                    phone: new_phone,
                    due: notice::Due::in_window(c.window(), w.province_code, now),
                    kind: "reregister",
                    actor,
                    reason: "chatbot re-registration",
                };
                Some(queue_generation_tx!($tx, &c, &new, now))
            }
            None => None,
        };
        (phone_changed, superseded, flags_resolved, notice)
    }};
}

/// Refuses when `$phone` already made [`REQUESTS_PER_NUMBER_PER_DAY`]
/// re-registration requests within 24 hours: 429 with `Retry-After` at
/// the moment the oldest of them leaves the window. Counted are the
/// requests that would move a worker to the number: every row stored
/// pending (whatever became of it) and every immediate move to it.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! check_request_limit {
    ($tx:expr, $phone:expr, $now:expr) => {{
        let phone: &str = $phone;
        let recent: Vec<i64> = sqlx::query_scalar(
            "SELECT requested_at FROM reregistrations WHERE new_phone = $1 AND requested_at > $2 \
             AND (status <> 'applied' OR old_phone <> new_phone) ORDER BY requested_at",
        )
        .bind(phone)
        .bind($now - DAY_MS)
        .fetch_all(&mut *$tx)
        .await?;
        if let Err(l) = notice::within_daily_limit(&recent, REQUESTS_PER_NUMBER_PER_DAY) {
            return Err(SupportError::Limit {
                message: format!(
                    "number {} already made {} re-registration requests in the last 24 hours \
                     (at most {REQUESTS_PER_NUMBER_PER_DAY}); the next one is possible after {}",
                    mask_phone(phone),
                    l.count,
                    fmt_wib(l.retry_at)
                ),
                retry_at: l.retry_at,
            });
        }
    }};
}

/// Once one request of a worker is applied (`$rid`), the worker's other
/// pending requests (other numbers) are `superseded` by `$actor`.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! supersede_others_tx {
    ($tx:expr, $worker_id:expr, $rid:expr, $actor:expr, $now:expr) => {{
        sqlx::query(
            "UPDATE reregistrations SET status = 'superseded', decided_by = $1, decided_at = $2 \
             WHERE worker_id = $3 AND status = 'pending' AND id <> $4",
        )
        .bind($actor)
        .bind($now)
        .bind($worker_id)
        .bind($rid)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
    }};
}

/// Audit detail of an applied re-registration.
fn applied_detail(
    id: i64,
    how: &str,
    old: &str,
    new: &str,
    superseded: u64,
    flags: u64,
    notice: &Option<QueuedNotice>,
) -> String {
    format!(
        "re-registration {id} {how}: phone {} -> {}; {superseded} queued notice(s) superseded; \
         {flags} flag(s) resolved; {}",
        mask_phone(old),
        mask_phone(new),
        notice
            .as_ref()
            .map(|n| format!(
                "message {} in campaign {} ({})",
                n.message_id, n.campaign_id, n.campaign_name
            ))
            .unwrap_or_else(|| "no notice (not validated or not eligible)".into())
    )
}

/// Confirms, inside an import's transaction `tx`, every pending
/// re-registration whose new number the import now carries for that
/// worker: `rows` are `(worker_id, phone on file after the import)`.
/// The import has already changed the phone (source `import`); this
/// resolves the flags, supersedes queued notices and queues the notice to
/// the validated number, audited as `one-data-import`. Returns how many
/// were confirmed. (One body for both databases, through a macro, as the
/// store's other statements: the trait picks the one for the transaction.)
pub(crate) trait ConfirmPending: sqlx::Database {
    fn confirm_pending<'a>(
        store: &'a Store,
        tx: &'a mut sqlx::Transaction<'static, Self>,
        rows: &'a [(i64, String)],
        now: i64,
    ) -> impl std::future::Future<Output = Result<u64, StoreError>> + Send + 'a;
}

/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! confirm_pending_body {
    ($store:expr, $tx:expr, $rows:expr, $now:expr) => {{
        let rows: &[(i64, String)] = $rows;
        let now: i64 = $now;
        let mut confirmed: u64 = 0;
        if !rows.is_empty() {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT id, worker_id, old_phone, new_phone FROM reregistrations \
                 WHERE status = 'pending' AND worker_id IN (",
            );
            let mut sep = q.separated(", ");
            for (id, _) in rows {
                sep.push_bind(*id);
            }
            q.push(") ORDER BY worker_id");
            let pending: Vec<(i64, i64, String, String)> =
                q.build_query_as().fetch_all(&mut *$tx).await?;
            let lock = $store.row_lock();
            let mut done: Vec<i64> = Vec::new();
            for (rid, worker_id, old_phone, new_phone) in pending {
                if done.contains(&worker_id)
                    || !rows
                        .iter()
                        .any(|(id, phone)| *id == worker_id && *phone == new_phone)
                {
                    continue;
                }
                done.push(worker_id);
                let w: WorkerRow = sqlx::query_as(&format!(
                    "SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1{lock}"
                ))
                .bind(worker_id)
                .fetch_one(&mut *$tx)
                .await?;
                let actor = "one-data-import";
                let (_, superseded, flags, notice) = apply_tx!(
                    $tx,
                    $store,
                    &w,
                    new_phone.as_str(),
                    w.operator.as_str(),
                    actor,
                    "import",
                    false,
                    now
                );
                sqlx::query(
                    "UPDATE reregistrations SET status = 'confirmed', decided_by = $1, decided_at = $2, \
                     message_id = $3 WHERE id = $4",
                )
                .bind(actor)
                .bind(now)
                .bind(notice.as_ref().map(|n| n.message_id))
                .bind(rid)
                .execute(&mut *$tx)
                .await?;
                supersede_others_tx!($tx, worker_id, rid, actor, now);
                audit_tx!(
                    $tx,
                    actor,
                    "reregistration.confirm",
                    format!("worker:{worker_id}"),
                    applied_detail(
                        rid,
                        "confirmed by a One Data import",
                        &old_phone,
                        &new_phone,
                        superseded,
                        flags,
                        &notice
                    ),
                    now
                );
                confirmed += 1;
            }
        }
        Ok(confirmed)
    }};
}

impl ConfirmPending for sqlx::Sqlite {
    async fn confirm_pending<'a>(
        store: &'a Store,
        tx: &'a mut sqlx::Transaction<'static, Self>,
        rows: &'a [(i64, String)],
        now: i64,
    ) -> Result<u64, StoreError> {
        confirm_pending_body!(store, (*tx), rows, now)
    }
}

impl ConfirmPending for sqlx::Postgres {
    async fn confirm_pending<'a>(
        store: &'a Store,
        tx: &'a mut sqlx::Transaction<'static, Self>,
        rows: &'a [(i64, String)],
        now: i64,
    ) -> Result<u64, StoreError> {
        confirm_pending_body!(store, (*tx), rows, now)
    }
}

/// [`ConfirmPending::confirm_pending`] as a free function, so the database
/// type is inferred from the transaction.
pub(crate) async fn confirm_pending<DB: ConfirmPending>(
    store: &Store,
    tx: &mut sqlx::Transaction<'static, DB>,
    rows: &[(i64, String)],
    now: i64,
) -> Result<u64, StoreError> {
    DB::confirm_pending(store, tx, rows, now).await
}

/// Records one failed attempt against (`$kind`, `$hash`) and, at the
/// [`MAX_FAILURES`]th within [`FAILURE_WINDOW_MS`], locks that key for
/// [`LOCK_MS`], audited (`$what` says what is locked, masked).
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! record_failure_tx {
    ($tx:expr, $actor:expr, $kind:expr, $hash:expr, $worker_id:expr, $number_masked:expr, $what:expr, $subject:expr, $now:expr) => {{
        let kind: &str = $kind;
        let hash: &str = $hash;
        let now: i64 = $now;
        sqlx::query("INSERT INTO reregistration_failures (key_kind, key_hash, at) VALUES ($1, $2, $3)")
            .bind(kind)
            .bind(hash)
            .bind(now)
            .execute(&mut *$tx)
            .await?;
        let failures: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM reregistration_failures WHERE key_kind = $1 AND key_hash = $2 AND at > $3",
        )
        .bind(kind)
        .bind(hash)
        .bind(now - FAILURE_WINDOW_MS)
        .fetch_one(&mut *$tx)
        .await?;
        if failures >= MAX_FAILURES {
            let number_masked: Option<String> = $number_masked;
            let worker_id: Option<i64> = $worker_id;
            let lock_id: i64 = sqlx::query_scalar(
                "INSERT INTO reregistration_locks (key_kind, key_hash, worker_id, number_masked, failures, \
                 locked_at, locked_until) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(kind)
            .bind(hash)
            .bind(worker_id)
            .bind(&number_masked)
            .bind(failures)
            .bind(now)
            .bind(now + LOCK_MS)
            .fetch_one(&mut *$tx)
            .await?;
            audit_tx!(
                $tx,
                $actor,
                "reregistration.lock",
                $subject,
                format!(
                    "lock {lock_id}: {} locked until {} after {failures} failed attempts within 24 hours",
                    $what,
                    fmt_wib(now + LOCK_MS)
                ),
                now
            );
            tracing::warn!(lock.id = lock_id, key = kind, "locked after repeated failures");
        }
    }};
}

/// Refuses when either key is locked now.
/// A macro, not a function: `$tx` is a SQLite or a PostgreSQL
/// transaction, and the body is compiled once for each (module docs,
/// "Why macros").
macro_rules! check_locks_tx {
    ($tx:expr, $keys:expr, $now:expr) => {{
        let mut until: Option<i64> = None;
        for (kind, hash) in $keys {
            let u: Option<i64> = sqlx::query_scalar(
                "SELECT MAX(locked_until) FROM reregistration_locks \
                 WHERE key_kind = $1 AND key_hash = $2 AND lifted_at IS NULL AND locked_until > $3",
            )
            .bind(kind)
            .bind(hash.as_str())
            .bind($now)
            .fetch_one(&mut *$tx)
            .await?;
            until = until.max(u);
        }
        if let Some(until) = until {
            return Err(SupportError::Limit {
                message: format!(
                    "locked until {} after {MAX_FAILURES} failed attempts within 24 hours; \
                     the person can ask support staff (dinas kesehatan) to lift it",
                    fmt_wib(until)
                ),
                retry_at: until,
            });
        }
    }};
}

impl Store {
    /// A chatbot re-registration: proves the worker (full NIK and name),
    /// counts and locks failures, then stores it pending (`Validated`) or
    /// applies it (`Immediate`); see the module docs. One transaction,
    /// audited as `actor`.
    ///
    /// With an [`IdempotencyKey`], the (token, key) pair and `render`'s
    /// response are stored with a success; a retry with the same request
    /// gets that response back and nothing more happens, a retry with
    /// another request is refused (409). A refused request stores no key
    /// (a failed attempt stores only its failure count).
    pub async fn chatbot_reregister<F>(
        &self,
        req: &ChatbotReregistration,
        mode: ReregistrationMode,
        actor: &str,
        idem: Option<IdempotencyKey<'_>>,
        render: F,
    ) -> Result<Idempotent<ReregisterOutcome>, SupportError>
    where
        F: FnOnce(&ReregisterOutcome) -> String,
    {
        if req.full_name.chars().count() > NAME_MAX_CHARS {
            return Err(SupportError::Invalid {
                field: "full_name",
                reason: format!("must be at most {NAME_MAX_CHARS} characters"),
            });
        }
        let name = normalize_name(&req.full_name);
        if name.is_empty() {
            return Err(SupportError::Invalid {
                field: "full_name",
                reason: "is required: the full name as registered".into(),
            });
        }
        let now = now_ms();
        let new_phone = req.whatsapp_phone.as_e164();
        let keys = [
            ("nik", key_hash("nik", req.nik.as_str())),
            ("number", key_hash("number", new_phone)),
        ];
        let lock = self.row_lock();
        let worker_sql =
            format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE nik = $1{lock}");
        let outcome = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            if let Some(k) = idem {
                // Claim the key first: a concurrent request with the same key
                // waits here until this transaction ends.
                let claimed = sqlx::query(
                    "INSERT INTO idempotency_keys (token_id, idem_key, request_hash, status, response, created_at) \
                     VALUES ($1, $2, $3, 0, '', $4) ON CONFLICT (token_id, idem_key) DO NOTHING")
                    .bind(k.token_id).bind(k.key).bind(k.request_hash).bind(now)
                    .execute(&mut *tx).await?.rows_affected();
                if claimed == 0 {
                    let (hash, status, body): (String, i32, String) = sqlx::query_as(
                        "SELECT request_hash, status, response FROM idempotency_keys \
                         WHERE token_id = $1 AND idem_key = $2")
                        .bind(k.token_id).bind(k.key)
                        .fetch_one(&mut *tx).await?;
                    tx.commit().await?;
                    if hash != k.request_hash {
                        return Err(SupportError::Conflict(
                            "this Idempotency-Key was used with a different request".into()));
                    }
                    return Ok(Idempotent::Replayed { status: status as u16, body });
                }
            }
            for (_, hash) in &keys {
                lock_key(&mut tx, hash).await?;
            }
            check_locks_tx!(tx, &keys, now);
            let found: Option<WorkerRow> = sqlx::query_as(&worker_sql)
                .bind(req.nik.as_str()).fetch_optional(&mut *tx).await?;
            let proved = found.as_ref().filter(|w| normalize_name(&w.full_name) == name).cloned();
            let Some(w) = proved else {
                let worker_id = found.as_ref().map(|w| w.id);
                let subject = worker_id.map_or_else(|| "reregistration".to_string(), |id| format!("worker:{id}"));
                audit_tx!(tx, actor, "reregistration.failed", subject.as_str(),
                    format!("failed attempt from {}: NIK and name do not match a registered worker", mask_phone(new_phone)), now);
                for (kind, hash) in &keys {
                    let (number_masked, what) = match *kind {
                        "nik" => (None, "re-registration for this NIK".to_string()),
                        _ => (Some(mask_phone(new_phone)), format!("re-registration from number {}", mask_phone(new_phone))),
                    };
                    record_failure_tx!(tx, actor, *kind, hash.as_str(), worker_id, number_masked, what, subject.as_str(), now);
                }
                if let Some(k) = idem {
                    sqlx::query("DELETE FROM idempotency_keys WHERE token_id = $1 AND idem_key = $2")
                        .bind(k.token_id).bind(k.key).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                return Err(SupportError::NotFound("worker".into()));
            };
            // The number on file was validated (by One Data or support
            // staff): nothing to wait for. A number on file only because an
            // earlier immediate-mode call put it there is not: a repeat
            // call must not clear that mark or bring back the NIK digits.
            let validated_number = w.phone.as_e164() == new_phone && !w.phone_unvalidated;
            let outcome = if mode == ReregistrationMode::Validated && !validated_number {
                // Other pending requests of this worker stay: one of them
                // may be the worker's own, and the import that carries a
                // number confirms the request with that number. The same
                // request again is the stored one, not a new row.
                let existing: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM reregistrations WHERE worker_id = $1 AND new_phone = $2 \
                     AND status = 'pending' ORDER BY id LIMIT 1")
                    .bind(w.id).bind(new_phone).fetch_optional(&mut *tx).await?;
                let id = match existing {
                    Some(id) => id,
                    None => {
                        check_request_limit!(tx, new_phone, now);
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO reregistrations (worker_id, old_phone, new_phone, status, requested_by, \
                             requested_at) VALUES ($1, $2, $3, 'pending', $4, $5) RETURNING id")
                            .bind(w.id).bind(w.phone.as_e164()).bind(new_phone).bind(actor).bind(now)
                            .fetch_one(&mut *tx).await?;
                        audit_tx!(tx, actor, "reregistration.request", format!("worker:{}", w.id),
                            format!("re-registration {id}: phone {} -> {} pending One Data validation",
                                mask_phone(w.phone.as_e164()), mask_phone(new_phone)), now);
                        id
                    }
                };
                ReregisterOutcome {
                    state: ReregisterState::PendingValidation,
                    reregistration_id: id,
                    phone_masked: mask_phone(new_phone),
                    phone_changed: false,
                    flags_resolved: 0,
                    superseded: 0,
                    notice: None,
                }
            } else {
                if w.phone.as_e164() != new_phone {
                    check_request_limit!(tx, new_phone, now);
                }
                check_number_limit!(tx, new_phone, now, self.limits.resends_per_number_per_day);
                let (phone_changed, superseded, flags_resolved, notice) = apply_tx!(
                    tx, self, &w, new_phone, req.whatsapp_phone.operator().as_str(), actor, "chatbot",
                    !validated_number, now);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO reregistrations (worker_id, old_phone, new_phone, status, requested_by, requested_at, \
                     decided_by, decided_at, message_id) VALUES ($1, $2, $3, 'applied', $4, $5, $4, $5, $6) RETURNING id")
                    .bind(w.id).bind(w.phone.as_e164()).bind(new_phone).bind(actor).bind(now)
                    .bind(notice.as_ref().map(|n| n.message_id))
                    .fetch_one(&mut *tx).await?;
                supersede_others_tx!(tx, w.id, id, actor, now);
                let how = if validated_number { "to the number on file" } else { "applied at once (immediate mode)" };
                audit_tx!(tx, actor, "worker.reregister", format!("worker:{}", w.id),
                    applied_detail(id, how, w.phone.as_e164(), new_phone, superseded, flags_resolved, &notice), now);
                ReregisterOutcome {
                    state: ReregisterState::Reregistered,
                    reregistration_id: id,
                    phone_masked: mask_phone(new_phone),
                    phone_changed,
                    flags_resolved,
                    superseded,
                    notice,
                }
            };
            let body = render(&outcome);
            if let Some(k) = idem {
                sqlx::query("UPDATE idempotency_keys SET status = 200, response = $1 WHERE token_id = $2 AND idem_key = $3")
                    .bind(&body).bind(k.token_id).bind(k.key)
                    .execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Idempotent::Done { outcome, body }
        });
        if matches!(&outcome, Idempotent::Done { outcome, .. } if outcome.notice.is_some()) {
            self.wake_dispatchers().await;
        }
        Ok(outcome)
    }

    /// Forgets failed attempts made before `before` (Unix ms): outside the
    /// counting window they count for nothing. Returns how many.
    pub async fn purge_reregistration_failures(&self, before: i64) -> Result<u64, StoreError> {
        Ok(with_pool!(self, p => sqlx::query(
            "DELETE FROM reregistration_failures WHERE at < $1")
            .bind(before).execute(p).await?.rows_affected()))
    }

    /// A chatbot look-up by the last 6 NIK digits with the phone on file.
    /// The digits and the phone together are a guess at part of a NIK (the
    /// last 6 are often a birth year and a sequence), so failures are
    /// counted per phone (key `lookup`) like re-registration attempts:
    /// [`MAX_FAILURES`] mismatches within 24 hours lock that phone's
    /// `nik_last6` look-ups for [`LOCK_MS`] ([`SupportError::Limit`]),
    /// whether or not the phone is on file. Look-ups by the full NIK or
    /// the phone alone are not affected.
    pub async fn lookup_by_last6(
        &self,
        last6: &str,
        phone: &Msisdn,
        actor: &str,
    ) -> Result<super::Lookup, SupportError> {
        let now = now_ms();
        let e164 = phone.as_e164();
        let keys = [("lookup", key_hash("lookup", e164))];
        let sql =
            format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE phone = $1 ORDER BY id");
        let matching: Vec<WorkerRow> = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            lock_key(&mut tx, &keys[0].1).await?;
            check_locks_tx!(tx, &keys, now);
            let on_phone: Vec<WorkerRow> = sqlx::query_as(&sql).bind(e164).fetch_all(&mut *tx).await?;
            let worker_id = (on_phone.len() == 1).then(|| on_phone[0].id);
            let matching: Vec<WorkerRow> = on_phone.into_iter().filter(|w| w.nik.as_str().ends_with(last6)).collect();
            if matching.is_empty() {
                let subject = worker_id.map_or_else(|| "reregistration".to_string(), |id| format!("worker:{id}"));
                record_failure_tx!(tx, actor, "lookup", keys[0].1.as_str(), worker_id, Some(mask_phone(e164)),
                    format!("look-ups by the last NIK digits for number {}", mask_phone(e164)), subject.as_str(), now);
            }
            tx.commit().await?;
            matching
        });
        self.lookup_of(matching).await
    }

    /// A chatbot look-up by the full NIK, from the WhatsApp number of the
    /// conversation. With an area code and a birth date known, about 10^4
    /// guesses cover a NIK's sequence, so a NIK not on file counts as a
    /// failure against that number, under the same key (`lookup`) as the
    /// `nik_last6` mismatches: [`MAX_FAILURES`] within 24 hours lock the
    /// number's NIK look-ups (full or last 6) for [`LOCK_MS`]
    /// ([`SupportError::Limit`]). Look-ups by the phone alone are not
    /// affected.
    pub async fn lookup_by_nik(
        &self,
        nik: &Nik,
        whatsapp_phone: &Msisdn,
        actor: &str,
    ) -> Result<super::Lookup, SupportError> {
        let now = now_ms();
        let e164 = whatsapp_phone.as_e164();
        let keys = [("lookup", key_hash("lookup", e164))];
        let sql = format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE nik = $1");
        let found: Option<WorkerRow> = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            lock_key(&mut tx, &keys[0].1).await?;
            check_locks_tx!(tx, &keys, now);
            let found: Option<WorkerRow> =
                sqlx::query_as(&sql).bind(nik.as_str()).fetch_optional(&mut *tx).await?;
            if found.is_none() {
                record_failure_tx!(tx, actor, "lookup", keys[0].1.as_str(), None, Some(mask_phone(e164)),
                    format!("NIK look-ups from number {}", mask_phone(e164)), "reregistration", now);
            }
            tx.commit().await?;
            found
        });
        self.lookup_of(found.into_iter().collect()).await
    }

    /// Support staff approve a pending re-registration (they validated the
    /// number another way): applied as an import confirmation would be,
    /// audited with `staff` and `note`. 404 for no such row, 409 when it is
    /// no longer pending, 429 past the number's daily notice limit.
    pub async fn approve_reregistration(
        &self,
        id: i64,
        staff: &FreeText,
        note: &FreeText,
    ) -> Result<ReregisterOutcome, SupportError> {
        let now = now_ms();
        let lock = self.row_lock();
        let rr_sql = format!(
            "SELECT worker_id, old_phone, new_phone, status FROM reregistrations WHERE id = $1{lock}"
        );
        let worker_sql = format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1{lock}");
        let outcome = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let rr: Option<(i64, String, String, String)> = sqlx::query_as(&rr_sql)
                .bind(id).fetch_optional(&mut *tx).await?;
            let Some((worker_id, old_phone, new_phone, status)) = rr else {
                return Err(SupportError::NotFound(format!("re-registration {id}")));
            };
            if status != "pending" {
                return Err(SupportError::Conflict(format!("re-registration {id} is {status}, not pending")));
            }
            let w: WorkerRow = sqlx::query_as(&worker_sql).bind(worker_id).fetch_one(&mut *tx).await?;
            check_number_limit!(
                tx, new_phone.as_str(), now, self.limits.resends_per_number_per_day);
            let operator = Msisdn::parse(&new_phone)
                .map(|m| m.operator().as_str().to_string())
                .map_err(|e| SupportError::Conflict(format!("re-registration {id}: stored number unusable: {e}")))?;
            let (phone_changed, superseded, flags_resolved, notice) = apply_tx!(
                tx, self, &w, new_phone.as_str(), operator.as_str(), staff.as_str(), "support", false, now);
            sqlx::query(
                "UPDATE reregistrations SET status = 'approved', decided_by = $1, decided_at = $2, message_id = $3 \
                 WHERE id = $4")
                .bind(staff.as_str()).bind(now).bind(notice.as_ref().map(|n| n.message_id)).bind(id)
                .execute(&mut *tx).await?;
            supersede_others_tx!(tx, worker_id, id, staff.as_str(), now);
            audit_tx!(tx, staff.as_str(), "reregistration.approve", format!("worker:{worker_id}"),
                format!("{}; note: {note}", applied_detail(id, "approved by support staff", &old_phone, &new_phone,
                    superseded, flags_resolved, &notice)), now);
            tx.commit().await?;
            ReregisterOutcome {
                state: ReregisterState::Reregistered,
                reregistration_id: id,
                phone_masked: mask_phone(&new_phone),
                phone_changed,
                flags_resolved,
                superseded,
                notice,
            }
        });
        if outcome.notice.is_some() {
            self.wake_dispatchers().await;
        }
        Ok(outcome)
    }

    /// Re-registrations, newest first, masked: all of them, or those with
    /// `status`, or one worker's.
    pub async fn reregistrations(
        &self,
        status: Option<&str>,
        worker_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<ReregistrationView>, SupportError> {
        if let Some(s) = status {
            if !matches!(
                s,
                "pending" | "confirmed" | "approved" | "superseded" | "applied"
            ) {
                return Err(SupportError::Invalid {
                    field: "status",
                    reason: "must be pending, confirmed, approved, superseded or applied".into(),
                });
            }
        }
        let sql = format!(
            "{VIEW_SELECT} WHERE ($1 IS NULL OR r.status = $1) AND ($2 IS NULL OR r.worker_id = $2) \
             ORDER BY r.id DESC LIMIT $3"
        );
        let rows: Vec<ViewRow> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(status).bind(worker_id).bind(limit).fetch_all(p).await?);
        Ok(rows.into_iter().map(ReregistrationView::from).collect())
    }

    /// Every pending re-registration in full, oldest first: what the One
    /// Data validation export holds. Read in the transaction that audits
    /// the export as `actor`.
    pub async fn export_pending_reregistrations(
        &self,
        actor: &str,
    ) -> Result<Vec<ReregistrationExportRow>, SupportError> {
        let now = now_ms();
        Ok(with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let rows: Vec<ReregistrationExportRow> = sqlx::query_as(
                "SELECT r.id, w.nik, w.full_name, r.old_phone, r.new_phone, w.facility_code, w.regency_code, \
                 w.province_code, r.requested_at FROM reregistrations r JOIN health_workers w ON w.id = r.worker_id \
                 WHERE r.status = 'pending' ORDER BY r.id")
                .fetch_all(&mut *tx).await?;
            audit_tx!(tx, actor, "reregistration.export", "reregistration",
                format!("{} pending re-registration(s) exported for One Data validation", rows.len()), now);
            tx.commit().await?;
            rows
        }))
    }

    /// Failed-attempt locks, newest first: active ones only, or all; of one
    /// worker (locks on its NIK and on numbers tried with its NIK), or all.
    pub async fn reregistration_locks(
        &self,
        worker_id: Option<i64>,
        active_only: bool,
    ) -> Result<Vec<ReregistrationLock>, SupportError> {
        let now = now_ms();
        let sql = format!(
            "SELECT {LOCK_COLUMNS} FROM reregistration_locks WHERE ($1 IS NULL OR worker_id = $1) \
             AND ($2 = 0 OR (lifted_at IS NULL AND locked_until > $3)) ORDER BY id DESC LIMIT 200"
        );
        let mut rows: Vec<ReregistrationLock> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(worker_id).bind(i64::from(active_only)).bind(now).fetch_all(p).await?);
        for l in &mut rows {
            l.active = l.lifted_at.is_none() && l.locked_until > now;
        }
        Ok(rows)
    }

    /// Lifts a lock (support staff), audited with `reason`, and forgets the
    /// failures that led to it, so the person gets [`MAX_FAILURES`] fresh
    /// attempts. 404 for no such lock, 409 when it is no longer active.
    pub async fn lift_reregistration_lock(
        &self,
        lock_id: i64,
        staff: &FreeText,
        reason: &FreeText,
    ) -> Result<ReregistrationLock, SupportError> {
        let now = now_ms();
        let lock = self.row_lock();
        let select = format!("SELECT {LOCK_COLUMNS} FROM reregistration_locks WHERE id = $1{lock}");
        let lifted = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let row: Option<(i64, String, String)> = sqlx::query_as(
                "SELECT id, key_kind, key_hash FROM reregistration_locks WHERE id = $1")
                .bind(lock_id).fetch_optional(&mut *tx).await?;
            let Some((_, kind, hash)) = row else {
                return Err(SupportError::NotFound(format!("lock {lock_id}")));
            };
            // The same serialisation as the attempts on this key.
            lock_key(&mut tx, &hash).await?;
            let mut l: ReregistrationLock = sqlx::query_as(&select)
                .bind(lock_id).fetch_one(&mut *tx).await?;
            if l.lifted_at.is_some() || l.locked_until <= now {
                return Err(SupportError::Conflict(format!("lock {lock_id} is no longer active")));
            }
            sqlx::query("UPDATE reregistration_locks SET lifted_at = $1, lifted_by = $2 WHERE id = $3")
                .bind(now).bind(staff.as_str()).bind(lock_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM reregistration_failures WHERE key_kind = $1 AND key_hash = $2")
                .bind(&kind).bind(&hash).execute(&mut *tx).await?;
            let subject = l.worker_id.map_or_else(|| "reregistration".to_string(), |id| format!("worker:{id}"));
            audit_tx!(tx, staff.as_str(), "reregistration.unlock", subject,
                format!("lock {lock_id} ({}{}) lifted: {reason}", kind,
                    l.number_masked.as_deref().map(|n| format!(" {n}")).unwrap_or_default()), now);
            tx.commit().await?;
            l.lifted_at = Some(now);
            l.lifted_by = Some(staff.to_string());
            l.active = false;
            l
        });
        Ok(lifted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_compare_without_case_accents_punctuation_or_spaces() {
        assert_eq!(
            normalize_name("Siti Nur'aini"),
            normalize_name("SITI NURAINI")
        );
        assert_eq!(normalize_name("Sití  Nur-aini"), "sitinuraini");
        assert_eq!(normalize_name("dr. Ñoño Ṡ., S.Kep"), "drnonosskep");
        assert_eq!(normalize_name("İbrahim"), "ibrahim");
        assert_ne!(
            normalize_name("Siti Nuraini"),
            normalize_name("Siti Nuraeni")
        );
        assert_eq!(normalize_name(" .'- "), "");
    }

    #[test]
    fn keys_are_hashes_per_kind() {
        let n = key_hash("nik", "3174051203870001");
        assert_eq!(n.len(), 64);
        assert!(!n.contains("3174051203870001"));
        assert_ne!(n, key_hash("number", "3174051203870001"));
    }
}

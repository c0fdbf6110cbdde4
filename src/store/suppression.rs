//! The suppression list (`suppressions`): add, remove, list, import, and
//! what an entry does to the queue when it lands (its worker's queued
//! notices cancelled, open flags resolved `suppressed`). Campaign creation,
//! notice queueing and flagging read the list in their own statements
//! ([`suppressed_tx!`], [`super::flags::FLAG_TAIL_SQL`]).

use serde::Serialize;

use super::{audit_tx, now_ms, with_pool, BeginWrite, Result, Store, StoreError};
use crate::status::Status;
use crate::suppression::{mask_value, NewSuppression, SuppressionReason, SuppressionTarget};

/// An entry in force at `$now` (alias `s`). The bind for now is named by
/// the caller: `ACTIVE_SQL.replace("$now", "$3")`.
pub(crate) const ACTIVE_SQL: &str =
    "s.removed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > $now)";

/// The entry in force at `$now` that covers worker `$worker_id` (by NIK or
/// current number) or the number `$phone` a notice would go to, as
/// `Option<(kind, reason)>`. A macro: `$tx` is a SQLite or a PostgreSQL
/// transaction (the store's "Why macros").
macro_rules! suppressed_tx {
    ($tx:expr, $worker_id:expr, $phone:expr, $now:expr) => {{
        let hit: Option<(String, String)> = sqlx::query_as(
            "SELECT s.kind, s.reason FROM suppressions s, health_workers w WHERE w.id = $1 \
             AND s.removed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > $3) \
             AND ((s.kind = 'nik' AND s.value = w.nik) OR (s.kind = 'phone' AND s.value IN (w.phone, $2))) \
             ORDER BY s.id LIMIT 1",
        )
        .bind($worker_id)
        .bind($phone)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?;
        hit
    }};
}

pub(crate) use suppressed_tx;

/// How long after an entry was added housekeeping checks again for queued
/// notices it must cancel: a campaign enqueue that ran concurrently with
/// the add (each statement saw the other's world before the other
/// committed) is caught on the next round.
pub const RECHECK_MS: i64 = 10 * 60 * 1000;

/// A suppression as stored. `value` is masked when it leaves the store
/// through [`Suppression::masked`].
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Suppression {
    pub id: i64,
    pub kind: String,
    #[serde(skip)]
    pub value: String,
    #[sqlx(try_from = "String")]
    pub reason: SuppressionReason,
    pub note: String,
    pub added_by: String,
    pub added_at: i64,
    pub expires_at: Option<i64>,
    pub removed_by: Option<String>,
    pub removed_at: Option<i64>,
}

impl Suppression {
    /// The number or NIK, masked.
    pub fn masked(&self) -> String {
        mask_value(&self.kind, &self.value)
    }

    /// In force at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.removed_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What [`Store::suppress`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Suppressed {
    #[serde(flatten)]
    pub entry: SuppressionView,
    /// False: the number or NIK was already suppressed, and that entry is
    /// kept as it was (reason, expiry, who).
    pub created: bool,
    /// Queued notices cancelled by this entry.
    pub cancelled: u64,
    /// Open non-recipient flags resolved `suppressed`.
    pub flags_resolved: u64,
}

/// An entry as shown to people and in JSON: the value masked.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SuppressionView {
    pub id: i64,
    /// `phone` or `nik`.
    pub kind: String,
    /// The number or NIK, masked.
    pub value_masked: String,
    pub reason: SuppressionReason,
    pub note: String,
    pub added_by: String,
    pub added_at: i64,
    pub expires_at: Option<i64>,
    pub removed_by: Option<String>,
    pub removed_at: Option<i64>,
    /// In force now (not removed, not expired).
    pub active: bool,
}

impl From<&Suppression> for SuppressionView {
    fn from(s: &Suppression) -> Self {
        SuppressionView {
            id: s.id,
            kind: s.kind.clone(),
            value_masked: s.masked(),
            reason: s.reason,
            note: s.note.clone(),
            added_by: s.added_by.clone(),
            added_at: s.added_at,
            expires_at: s.expires_at,
            removed_by: s.removed_by.clone(),
            removed_at: s.removed_at,
            active: s.active(now_ms()),
        }
    }
}

/// What [`Store::suppress_many`] did with a file's entries.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SuppressMany {
    pub added: u64,
    /// Entries whose number or NIK was already suppressed (kept as it was).
    pub already: u64,
    pub cancelled: u64,
    pub flags_resolved: u64,
}

pub(super) const COLUMNS: &str = "id, kind, value, reason, note, added_by, added_at, expires_at, \
     removed_by, removed_at";

/// Ends entries of `$1`/`$2` (kind, value) whose expiry has passed, so the
/// one-active-entry index admits a new one. `$3` is now.
pub(super) const CLOSE_EXPIRED_SQL: &str = "UPDATE suppressions SET removed_at = expires_at, removed_by = 'expired' \
     WHERE kind = $1 AND value = $2 AND removed_at IS NULL AND expires_at IS NOT NULL AND expires_at <= $3";

/// The workers an entry covers: by NIK, the worker with it; by number,
/// every worker who has it now or had it given to them (phone history).
/// `$1` kind, `$2` value.
const COVERED_WORKERS_SQL: &str = "SELECT id FROM health_workers WHERE $1 = 'nik' AND nik = $2 \
     UNION SELECT id FROM health_workers WHERE $1 = 'phone' AND phone = $2 \
     UNION SELECT worker_id FROM phone_history WHERE $1 = 'phone' AND new_phone = $2";

/// Cancels the queued notices an entry covers: every queued notice of a
/// NIK's worker; the notices queued to a number. `$1` kind, `$2` value,
/// `$3` now.
pub(super) fn cancel_sql() -> String {
    format!(
        "UPDATE messages SET status = '{cancelled}', final_at = $3, updated_at = $3, \
         last_error = 'suppressed' \
         WHERE worker_id IN ({COVERED_WORKERS_SQL}) AND ($1 = 'nik' OR phone = $2) AND status{guard}",
        cancelled = Status::Cancelled,
        guard = Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled)
    )
}

/// Resolves the open flags of the workers an entry covers (`$1` kind, `$2`
/// value, `$3` now, `$4` actor).
pub(super) fn resolve_flags_sql() -> String {
    format!(
        "UPDATE non_recipients SET resolved_at = $3, resolution = 'suppressed', resolved_by = $4 \
         WHERE resolved_at IS NULL AND worker_id IN ({COVERED_WORKERS_SQL})"
    )
}

/// Adds one entry inside `$tx` (a SQLite or PostgreSQL transaction; see
/// the store's "Why macros"): closes expired entries of the same value,
/// keeps an active one as it is, otherwise inserts, cancels and resolves,
/// with the `suppression.add` audit entry. Evaluates to [`Suppressed`].
macro_rules! suppress_tx {
    ($tx:expr, $new:expr, $now:expr) => {{
        let n: &$crate::suppression::NewSuppression = $new;
        let (kind, value) = (n.target.kind(), n.target.value());
        sqlx::query($crate::store::suppression::CLOSE_EXPIRED_SQL)
            .bind(kind).bind(value).bind($now)
            .execute(&mut *$tx).await?;
        let existing: Option<$crate::store::suppression::Suppression> = sqlx::query_as(&format!(
            "SELECT {} FROM suppressions WHERE kind = $1 AND value = $2 AND removed_at IS NULL",
            $crate::store::suppression::COLUMNS))
            .bind(kind).bind(value)
            .fetch_optional(&mut *$tx).await?;
        match existing {
            Some(e) => $crate::store::suppression::Suppressed { entry: (&e).into(), created: false, cancelled: 0, flags_resolved: 0 },
            None => {
                let e: $crate::store::suppression::Suppression = sqlx::query_as(&format!(
                    "INSERT INTO suppressions (kind, value, reason, note, added_by, added_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {}",
                    $crate::store::suppression::COLUMNS))
                    .bind(kind).bind(value).bind(n.reason.as_str()).bind(&n.note)
                    .bind(&n.added_by).bind($now).bind(n.expires_at)
                    .fetch_one(&mut *$tx).await?;
                let cancelled = sqlx::query(&$crate::store::suppression::cancel_sql())
                    .bind(kind).bind(value).bind($now)
                    .execute(&mut *$tx).await?.rows_affected();
                let flags_resolved = sqlx::query(&$crate::store::suppression::resolve_flags_sql())
                    .bind(kind).bind(value).bind($now).bind(&n.added_by)
                    .execute(&mut *$tx).await?.rows_affected();
                $crate::store::audit_tx!($tx, &n.added_by, "suppression.add", format!("suppression:{}", e.id),
                    format!("{} {} reason {}{}{}; {cancelled} queued notice(s) cancelled, {flags_resolved} flag(s) resolved",
                        kind, n.target.masked(), n.reason,
                        n.expires_at.map(|t| format!(" until {}", crate::domain::fmt_wib(t))).unwrap_or_default(),
                        if n.note.is_empty() { String::new() } else { format!(" ({})", n.note) }),
                    $now);
                $crate::store::suppression::Suppressed { entry: (&e).into(), created: true, cancelled, flags_resolved }
            }
        }
    }};
}

pub(crate) use suppress_tx;

impl Store {
    /// Adds `new` to the suppression list in one transaction: the worker's
    /// (or the number's) queued notices are cancelled and open flags
    /// resolved `suppressed` in the same transaction, audited
    /// `suppression.add`. A number or NIK already suppressed keeps its
    /// entry unchanged (`created: false`): an opt-out never shortens or
    /// softens what an operator set.
    pub async fn suppress(&self, new: &NewSuppression) -> Result<Suppressed> {
        let now = now_ms();
        let done = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let done = suppress_tx!(tx, new, now);
            tx.commit().await?;
            done
        });
        if done.cancelled > 0 {
            tracing::info!(suppression.id = done.entry.id, kind = %done.entry.kind,
                value = %done.entry.value_masked, cancelled = done.cancelled,
                "suppression cancelled queued notices");
        }
        Ok(done)
    }

    /// Adds every entry of a file in one transaction (all or none land).
    pub async fn suppress_many(&self, entries: &[NewSuppression]) -> Result<SuppressMany> {
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut out = SuppressMany::default();
            for new in entries {
                let done = suppress_tx!(tx, new, now);
                if done.created { out.added += 1 } else { out.already += 1 }
                out.cancelled += done.cancelled;
                out.flags_resolved += done.flags_resolved;
            }
            tx.commit().await?;
            Ok(out)
        })
    }

    /// Ends the active entry for `target` (audited `suppression.remove`);
    /// [`StoreError::NotFound`] when there is none. Notices cancelled while
    /// it was in force stay cancelled; the worker is in the next campaign
    /// and may be resent to.
    pub async fn unsuppress(
        &self,
        target: &SuppressionTarget,
        actor: &str,
        note: &str,
    ) -> Result<SuppressionView> {
        let now = now_ms();
        let (kind, value) = (target.kind(), target.value());
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            sqlx::query(CLOSE_EXPIRED_SQL)
                .bind(kind).bind(value).bind(now)
                .execute(&mut *tx).await?;
            let e: Option<Suppression> = sqlx::query_as(&format!(
                "UPDATE suppressions SET removed_at = $3, removed_by = $4 \
                 WHERE kind = $1 AND value = $2 AND removed_at IS NULL RETURNING {COLUMNS}"))
                .bind(kind).bind(value).bind(now).bind(actor)
                .fetch_optional(&mut *tx).await?;
            let Some(e) = e else {
                return Err(StoreError::NotFound(format!(
                    "suppression of {} {}", kind, target.masked())));
            };
            audit_tx!(tx, actor, "suppression.remove", format!("suppression:{}", e.id),
                format!("{} {}{}", kind, target.masked(),
                    if note.is_empty() { String::new() } else { format!(": {note}") }), now);
            tx.commit().await?;
            Ok(SuppressionView::from(&e))
        })
    }

    /// The list, newest first: entries in force, or every entry ever added
    /// with `all` (removed and expired ones too).
    pub async fn suppressions(&self, all: bool) -> Result<Vec<SuppressionView>> {
        let now = now_ms();
        let filter = if all {
            String::new()
        } else {
            format!(" WHERE {}", ACTIVE_SQL.replace("$now", "$1"))
        };
        let sql = format!("SELECT {COLUMNS} FROM suppressions s{filter} ORDER BY id DESC");
        let rows: Vec<Suppression> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(now).fetch_all(p).await?);
        Ok(rows.iter().map(SuppressionView::from).collect())
    }

    /// The entry in force for `target`, if any.
    pub async fn suppression_of(
        &self,
        target: &SuppressionTarget,
    ) -> Result<Option<SuppressionView>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM suppressions s WHERE kind = $1 AND value = $2 AND {}",
            ACTIVE_SQL.replace("$now", "$3")
        );
        let row: Option<Suppression> = with_pool!(self, p => sqlx::query_as(&sql)
            .bind(target.kind()).bind(target.value()).bind(now_ms())
            .fetch_optional(p).await?);
        Ok(row.as_ref().map(SuppressionView::from))
    }

    /// Housekeeping: cancels queued notices covered by entries added in the
    /// last [`RECHECK_MS`] and still in force (an enqueue that raced the
    /// add). Reads only those entries (`suppressions_added`), and only when
    /// there are any writes: one statement for all of them, so a large
    /// import does not become one statement per entry every round.
    pub async fn cancel_recently_suppressed(&self) -> Result<u64> {
        let now = now_ms();
        let active = ACTIVE_SQL.replace("$now", "$1");
        let recent_sql =
            format!("SELECT s.id FROM suppressions s WHERE s.added_at > $2 AND {active} LIMIT 1");
        // The queued notices each recent entry covers, as `cancel_sql`
        // finds them for one entry: a NIK's worker; a number's notices to
        // every worker who has or had it.
        let queued = Status::sql_is(&Status::sources_of(Status::Cancelled));
        let recent = format!("s.added_at > $2 AND {active} AND m.status{queued}");
        let cancel = format!(
            "UPDATE messages SET status = '{cancelled}', final_at = $1, updated_at = $1, \
             last_error = 'suppressed' WHERE status{guard} AND id IN (\
             SELECT m.id FROM suppressions s JOIN health_workers w ON w.nik = s.value \
             JOIN messages m ON m.worker_id = w.id WHERE s.kind = 'nik' AND {recent} \
             UNION SELECT m.id FROM suppressions s JOIN health_workers w ON w.phone = s.value \
             JOIN messages m ON m.worker_id = w.id AND m.phone = s.value WHERE s.kind = 'phone' AND {recent} \
             UNION SELECT m.id FROM suppressions s JOIN phone_history h ON h.new_phone = s.value \
             JOIN messages m ON m.worker_id = h.worker_id AND m.phone = s.value \
             WHERE s.kind = 'phone' AND {recent})",
            cancelled = Status::Cancelled,
            guard = Status::guard(&Status::sources_of(Status::Cancelled), Status::Cancelled)
        );
        let n = with_pool!(self, pool => {
            let any: Option<i64> = sqlx::query_scalar(&recent_sql)
                .bind(now).bind(now - RECHECK_MS)
                .fetch_optional(pool).await?;
            if any.is_none() {
                return Ok(0);
            }
            let mut tx = pool.begin_write().await?;
            let n = sqlx::query(&cancel)
                .bind(now).bind(now - RECHECK_MS)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            n
        });
        if n > 0 {
            tracing::info!(
                cancelled = n,
                "queued notices of suppressed workers cancelled"
            );
        }
        Ok(n)
    }
}

//! Health workers (`health_workers`, `phone_history`): the One Data
//! import's upsert by NIK with phone history, and every way a worker is
//! found: by id, NIK or phone, a chatbot look-up, a help-desk search.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{now_ms, with_pool, BeginWrite, Result, Store, SupportError};
use crate::domain::search::SearchQuery;
use crate::domain::ProvinceCode;
use crate::domain::{mask_name, mask_nik, mask_phone, Msisdn, Nik};

/// One validated row of the One Data export, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorker {
    pub nik: Nik,
    pub full_name: String,
    pub phone: Msisdn,
    pub operator: String,
    pub profession: String,
    pub facility_code: String,
    pub regency_code: String,
    pub province_code: ProvinceCode,
    pub validated: bool,
    pub eligible: bool,
}

/// A health worker as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct WorkerRow {
    pub id: i64,
    /// Parsed where the row is read (the registry stores parsed NIKs and
    /// numbers only; a row with another is refused when read).
    #[sqlx(try_from = "String")]
    pub nik: Nik,
    pub full_name: String,
    #[sqlx(try_from = "String")]
    pub phone: Msisdn,
    pub operator: String,
    pub profession: String,
    pub facility_code: String,
    pub regency_code: String,
    /// Known to the domain table: the registry stores parsed codes only,
    /// and a row with another is refused when read.
    #[sqlx(try_from = "String")]
    pub province_code: ProvinceCode,
    pub validated: bool,
    pub eligible: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// The number on file came from an immediate-mode chatbot
    /// re-registration nobody validated: notices to it carry no NIK digits.
    /// Read where it matters (the support store's worker columns); false
    /// where a query does not select it.
    #[sqlx(default)]
    pub phone_unvalidated: bool,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UpsertCounts {
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub phone_changes: u64,
    /// Pending chatbot re-registrations this import confirmed (it carries
    /// the new number for the worker's NIK).
    pub reregistrations_confirmed: u64,
    /// Erased workers reconnected to their NIK (`import --revive-erased`),
    /// counted here and not in `inserted`.
    pub revived: u64,
}

impl UpsertCounts {
    pub fn add(&mut self, o: UpsertCounts) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.phone_changes += o.phone_changes;
        self.reregistrations_confirmed += o.reregistrations_confirmed;
        self.revived += o.revived;
    }
}

impl WorkerRow {
    fn same_as(&self, w: &NewWorker) -> bool {
        self.full_name == w.full_name
            && self.phone == w.phone
            && self.operator == w.operator
            && self.profession == w.profession
            && self.facility_code == w.facility_code
            && self.regency_code == w.regency_code
            && self.province_code == w.province_code
            && self.validated == w.validated
            && self.eligible == w.eligible
    }
}

/// Rows per `phone_history` insert of an import (5 parameters each, within
/// SQLite's 32,766 and PostgreSQL's 65,535).
const PHONE_HISTORY_CHUNK: usize = 2_000;

impl Store {
    /// Inserts new workers and updates changed ones, all in one transaction:
    /// the chunk lands whole or not at all. Unchanged rows are not written,
    /// so re-importing the same file changes nothing. A phone change is kept
    /// in `phone_history`. NIKs within one call must be distinct.
    pub async fn upsert_workers(&self, rows: &[NewWorker], source: &str) -> Result<UpsertCounts> {
        let mut counts = UpsertCounts::default();
        if rows.is_empty() {
            return Ok(counts);
        }
        let now = now_ms();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut q = QueryBuilder::new(format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE nik IN ("));
            let mut sep = q.separated(", ");
            for r in rows {
                sep.push_bind(r.nik.as_str());
            }
            q.push(")");
            let existing: HashMap<String, WorkerRow> = q
                .build_query_as::<WorkerRow>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|w| (w.nik.as_str().to_string(), w))
                .collect();

            let mut fresh: Vec<&NewWorker> = rows.iter().filter(|r| !existing.contains_key(r.nik.as_str())).collect();
            // An erased worker's NIK is in no row: new, unless the operator
            // asked to revive erased workers (store/erasure.rs).
            if let Some(actor) = &self.revive_erased {
                let revived = super::erasure::revive_tx!(tx, &fresh, actor.as_str(), source, now);
                fresh.retain(|r| !revived.iter().any(|n| n == r.nik.as_str()));
                counts.revived = revived.len() as u64;
            }
            if !fresh.is_empty() {
                let mut q = QueryBuilder::new(
                    "INSERT INTO health_workers (nik, full_name, phone, operator, profession, facility_code, \
                     regency_code, province_code, validated, eligible, created_at, updated_at) ",
                );
                q.push_values(&fresh, |mut b, r| {
                    b.push_bind(r.nik.as_str())
                        .push_bind(&r.full_name)
                        .push_bind(r.phone.as_e164())
                        .push_bind(&r.operator)
                        .push_bind(&r.profession)
                        .push_bind(&r.facility_code)
                        .push_bind(&r.regency_code)
                        .push_bind(r.province_code.code_str())
                        .push_bind(r.validated)
                        .push_bind(r.eligible)
                        .push_bind(now)
                        .push_bind(now);
                });
                q.push(" RETURNING id, phone");
                let ids: Vec<(i64, String)> = q.build_query_as().fetch_all(&mut *tx).await?;
                // Each new worker's first number, one statement per chunk
                // of rows (one per worker made a 1.5 M import 1.5 M round
                // trips; reading them back by id, a scan of the table each).
                for chunk in ids.chunks(PHONE_HISTORY_CHUNK) {
                    let mut q = QueryBuilder::new(
                        "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) ",
                    );
                    q.push_values(chunk, |mut b, (id, phone)| {
                        b.push_bind(*id)
                            .push_bind(None::<String>)
                            .push_bind(phone.as_str())
                            .push_bind(source)
                            .push_bind(now);
                    });
                    q.build().execute(&mut *tx).await?;
                }
                counts.inserted = fresh.len() as u64;
            }

            for r in rows {
                let Some(old) = existing.get(r.nik.as_str()) else { continue };
                if old.same_as(r) {
                    counts.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "UPDATE health_workers SET full_name = $1, phone = $2, operator = $3, profession = $4, \
                     facility_code = $5, regency_code = $6, province_code = $7, validated = $8, eligible = $9, \
                     updated_at = $10 WHERE id = $11",
                )
                .bind(&r.full_name).bind(r.phone.as_e164()).bind(&r.operator).bind(&r.profession)
                .bind(&r.facility_code).bind(&r.regency_code).bind(r.province_code.code_str())
                .bind(r.validated).bind(r.eligible).bind(now).bind(old.id)
                .execute(&mut *tx).await?;
                counts.updated += 1;
                if old.phone != r.phone {
                    sqlx::query(
                        "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(old.id).bind(old.phone.as_e164()).bind(r.phone.as_e164()).bind(source).bind(now)
                    .execute(&mut *tx).await?;
                    counts.phone_changes += 1;
                }
            }
            // One Data now carries these numbers: a pending chatbot
            // re-registration to one of them is validated (same transaction).
            let on_file: Vec<(i64, String)> = rows
                .iter()
                .filter_map(|r| existing.get(r.nik.as_str()).map(|old| (old.id, r.phone.as_e164().to_string())))
                .collect();
            counts.reregistrations_confirmed =
                super::reregistration::confirm_pending(self, &mut tx, &on_file, now).await?;
            // Every number this import carries is One Data's: validated
            // (one chatbot could have set it unvalidated, immediate mode).
            if !on_file.is_empty() {
                let mut q = QueryBuilder::new("UPDATE health_workers SET phone_unvalidated = ");
                q.push_bind(false);
                q.push(" WHERE phone_unvalidated AND id IN (");
                let mut sep = q.separated(", ");
                for (id, _) in &on_file {
                    sep.push_bind(*id);
                }
                q.push(")");
                q.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        if counts.reregistrations_confirmed > 0 {
            self.wake_dispatchers().await;
        }
        Ok(counts)
    }

    pub async fn worker_by_nik(&self, nik: &str) -> Result<Option<WorkerRow>> {
        let sql = format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE nik = $1");
        Ok(
            with_pool!(self, p => sqlx::query_as::<_, WorkerRow>(&sql).bind(nik).fetch_optional(p).await?),
        )
    }

    pub async fn workers_by_phone(&self, phone: &str) -> Result<Vec<WorkerRow>> {
        let sql =
            format!("SELECT {WORKER_COLUMNS} FROM health_workers WHERE phone = $1 ORDER BY id");
        Ok(
            with_pool!(self, p => sqlx::query_as::<_, WorkerRow>(&sql).bind(phone).fetch_all(p).await?),
        )
    }

    pub async fn count_workers(&self) -> Result<i64> {
        Ok(
            with_pool!(self, p => sqlx::query_scalar("SELECT COUNT(*) FROM health_workers").fetch_one(p).await?),
        )
    }
}

/// Most rows a search returns.
pub const SEARCH_LIMIT: i64 = 50;

/// Most database time a name search may take; past it the query is
/// refused as too broad (a help desk needs an answer, and a search must not
/// hold a connection the dispatcher needs).
pub const SEARCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

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
    pub fn last6_and_phone(last6: &str, phone: Msisdn) -> Result<WorkerKey, SupportError> {
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
    /// The worker's NIK or current number is on the suppression list (in
    /// force): no notice goes to them.
    pub suppressed: bool,
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

/// What a support search found ([`Store::search_workers`]).
#[derive(Debug, Clone)]
pub struct SearchResults {
    /// What the query was read as.
    pub kind: SearchKind,
    /// At most [`SEARCH_LIMIT`] masked summaries.
    pub workers: Vec<WorkerSummary>,
}

pub(crate) const WORKER_COLUMNS: &str =
    "id, nik, full_name, phone, operator, profession, facility_code, \
     regency_code, province_code, validated, eligible, created_at, updated_at, \
     phone_unvalidated";

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

impl Store {
    /// The worker with this id (an erased one is not found).
    pub async fn worker(&self, id: i64) -> Result<WorkerRow, SupportError> {
        let sql = format!(
            "SELECT {WORKER_COLUMNS} FROM health_workers WHERE id = $1 AND erased_at IS NULL"
        );
        let w: Option<WorkerRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(id).fetch_optional(p).await?);
        w.ok_or_else(|| SupportError::NotFound(format!("worker {id}")))
    }

    /// Finds one worker by key, with open flags and the newest notice.
    pub async fn lookup_worker(&self, key: &WorkerKey) -> Result<Lookup, SupportError> {
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
                .filter(|w| w.nik.as_str().ends_with(last6.as_str()))
                .collect(),
        };
        self.lookup_of(rows).await
    }

    /// What a look-up that matched `rows` found: nothing, one worker (with
    /// open flags and the newest notice), or more than one.
    pub(crate) async fn lookup_of(&self, rows: Vec<WorkerRow>) -> Result<Lookup, SupportError> {
        let mut rows = rows.into_iter();
        match (rows.next(), rows.next()) {
            (None, _) => Ok(Lookup::NotFound),
            (Some(w), None) => Ok(Lookup::Found(Box::new(self.worker_status(w).await?))),
            (Some(_), Some(_)) => Ok(Lookup::Ambiguous),
        }
    }

    /// Open flags and the newest notice of `worker`.
    pub async fn worker_status(&self, worker: WorkerRow) -> Result<WorkerStatus, SupportError> {
        let now = super::now_ms();
        let (open_flags, last_notice, suppressed): (Vec<String>, Option<NoticeState>, bool) = with_pool!(self, p => {
            let flags = sqlx::query_scalar(
                "SELECT reason FROM non_recipients WHERE worker_id = $1 AND resolved_at IS NULL ORDER BY id")
                .bind(worker.id).fetch_all(p).await?;
            let last = sqlx::query_as(
                "SELECT id AS message_id, campaign_id, status, \
                 COALESCE(final_at, sent_at, updated_at) AS at, next_attempt_at \
                 FROM messages WHERE worker_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(worker.id).fetch_optional(p).await?;
            let mut c = p.acquire().await?;
            let suppressed = super::suppression::suppressed_tx!(c, worker.id, worker.phone.as_e164(), now).is_some();
            (flags, last, suppressed)
        });
        Ok(WorkerStatus {
            worker,
            open_flags,
            last_notice,
            suppressed,
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
    pub async fn search_workers(&self, query: &str) -> Result<SearchResults, SupportError> {
        let query = SearchQuery::parse(query).map_err(|e| SupportError::Invalid {
            field: "query",
            reason: e.0,
        })?;
        self.search(&query).await
    }

    /// Runs an already-read search ([`Store::search_workers`]).
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchResults, SupportError> {
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
            .bind(value).bind(self.limits.search_rows).fetch_all(p).await?);
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
    async fn search_names(&self, q: &str) -> Result<Vec<WorkerSummary>, SupportError> {
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
                    .bind(self.limits.search_rows)
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
                    .bind(self.limits.search_rows)
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

    /// Masked summary of one worker (an erased one is not found: nor is
    /// its timeline).
    pub async fn worker_summary(&self, worker_id: i64) -> Result<WorkerSummary, SupportError> {
        let sql = format!("{SUMMARY_SELECT} WHERE w.id = $1 AND w.erased_at IS NULL");
        let row: Option<SummaryRow> =
            with_pool!(self, p => sqlx::query_as(&sql).bind(worker_id).fetch_optional(p).await?);
        row.map(WorkerSummary::from)
            .ok_or_else(|| SupportError::NotFound(format!("worker {worker_id}")))
    }

    /// Full names of the workers with these ids (ids that exist only).
    pub async fn worker_names(&self, ids: &[i64]) -> Result<HashMap<i64, String>> {
        let mut names = HashMap::with_capacity(ids.len());
        // Well under either engine's limit on bound parameters.
        for chunk in ids.chunks(500) {
            let marks = (1..=chunk.len())
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!("SELECT id, full_name FROM health_workers WHERE id IN ({marks})");
            let rows: Vec<(i64, String)> = with_pool!(self, p => {
                let mut q = sqlx::query_as(&sql);
                for id in chunk {
                    q = q.bind(*id);
                }
                q.fetch_all(p).await?
            });
            names.extend(rows);
        }
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

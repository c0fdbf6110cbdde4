//! Erasure of one worker's personal data (issue 14, point 3; Indonesia's
//! personal data protection law, UU PDP No. 27/2022): [`Store::erase_worker`]
//! replaces the worker's NIK, name and phone numbers by tombstones in every
//! table that holds them, in one transaction, audited under the worker's
//! numeric id; [`revive_tx!`] lets a One Data import the operator marked
//! `--revive-erased` reconnect the same NIK to the erased row.
//!
//! What is replaced where (SECURITY.md, "Personal data: what is kept where,
//! and for how long", is the list to keep in step with the migrations):
//!
//! | table | column(s) | becomes |
//! |---|---|---|
//! | `health_workers` | `nik`, `phone` | `erased:<id>` (unique, parses as neither) |
//! | | `full_name` | empty (no search matches it) |
//! | | `eligible` | false: no campaign enqueues the worker |
//! | `messages` (the worker's) | `phone` / `body` | `erased:<id>` / `[erased]`; queued ones `cancelled` |
//! | | `last_error` | occurrences replaced |
//! | `attempts` (the worker's messages) | `detail` | occurrences replaced |
//! | `receipts` of the worker's messages | `payload` | `[erased]` |
//! | `receipts` matched to no message | `payload` | occurrences of the NIK and numbers replaced |
//! | `phone_history`, `resends`, `reregistrations` | numbers | `erased:<id>`; pending re-registrations `superseded` |
//! | `resends.reason`, `non_recipients.note`, `non_recipients.outcome_note`, `suppressions.note` | free text | occurrences replaced |
//! | `reregistration_locks` | `number_masked`, `key_hash` | `[erased]`, `erased:<id>` |
//! | `reregistration_failures` | `key_hash` of the NIK and numbers | `erased:<id>` |
//! | `suppressions` | `value` (the NIK, the numbers) | `erased:s<suppression id>` |
//! | `idempotency_keys` | `response` of requests about the worker | an HTTP 410 answer |
//! | `audit_log` | `subject`, `detail` | occurrences replaced |
//!
//! "Occurrences" are the NIK, each number in its forms (`+62812…`,
//! `62812…`, `0812…`, `812…`, `0812-3456-7890`) everywhere, and, in rows
//! known to be about this worker, the name (as stored, upper and lower
//! case) and the masked forms the program writes (`+62812****890`,
//! `************0001`, `S*** A*****`).
//!
//! A number another live worker holds now (a shared family phone) is that
//! worker's data too: rows of other workers keep it, suppressions of it
//! stay, and it is not replaced in rows that are not about the erased
//! worker.

use rand::RngCore;
use serde::Serialize;

use super::{audit_tx, now_ms, sha256_hex, with_pool, Backend, BeginWrite, Store, SupportError};
use crate::domain::notice::FreeText;
use crate::domain::{mask_name, mask_nik, mask_phone, Msisdn, Nik};
use crate::status::Status;

type Result<T, E = SupportError> = std::result::Result<T, E>;

/// What replaces a NIK or a phone number in a column that holds only that
/// value: `erased:<worker id>`. Unique per worker (the registry's NIK
/// column is unique), and neither a NIK nor a number parses from it.
pub fn tombstone(worker_id: i64) -> String {
    format!("erased:{worker_id}")
}

/// What replaces a NIK, number or name inside a text, and a whole message
/// body or receipt payload.
pub const ERASED_TEXT: &str = "[erased]";

/// The stored answer of an idempotent chatbot request about an erased
/// worker, replayed to a retry with [`ERASED_STATUS`].
pub const ERASED_RESPONSE: &str =
    r#"{"error":"the worker this request concerned was erased (personal data removed)"}"#;

/// HTTP 410 Gone.
pub const ERASED_STATUS: i32 = 410;

/// Shortest text replaced as an occurrence: a shorter one (a two-letter
/// name, a one-word masked name) would also match unrelated text.
const MIN_NEEDLE: usize = 3;

/// What one erasure did, per table (rows changed).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Erasure {
    /// The worker's numeric id: the audit trail's subject `worker:<id>`.
    pub worker_id: i64,
    /// When (Unix ms).
    pub erased_at: i64,
    /// Queued notices cancelled (never sent).
    pub notices_cancelled: u64,
    /// The worker's messages whose number and body were replaced; those in
    /// flight keep their status.
    pub messages: u64,
    pub attempts: u64,
    pub receipts: u64,
    pub phone_history: u64,
    pub resends: u64,
    pub reregistrations: u64,
    pub reregistration_locks: u64,
    pub reregistration_failures: u64,
    pub flags: u64,
    pub suppressions: u64,
    pub idempotency_keys: u64,
    pub audit_entries: u64,
}

/// The texts to replace, longest first (a number's `+62…` form before the
/// bare digits it contains).
#[derive(Debug, Default)]
struct Needles {
    /// Identify the worker wherever they appear: the NIK and the forms of
    /// each number no other live worker holds.
    unique: Vec<String>,
    /// `unique`, every form of every number the worker had, the name and
    /// the masked forms: for rows known to be about this worker.
    scoped: Vec<String>,
    /// `%…%` patterns that find rows naming the worker: the NIK and the
    /// national significant number of each number in `unique` (every form
    /// of a number contains it).
    patterns: Vec<String>,
    /// E.164 numbers no other live worker holds.
    own_numbers: Vec<String>,
}

fn push_needle(v: &mut Vec<String>, s: &str) {
    let s = s.trim();
    if s.chars().count() >= MIN_NEEDLE && !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn longest_first(v: &mut [String]) {
    v.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
}

impl Needles {
    fn new(nik: &Nik, name: &str, numbers: &[Msisdn], shared: &[String]) -> Needles {
        let mut n = Needles::default();
        push_needle(&mut n.unique, nik.as_str());
        n.patterns.push(format!("%{}%", nik.as_str()));
        for p in numbers {
            let forms = [
                p.as_e164().to_string(),
                p.digits().to_string(),
                p.national(),
                p.national_significant_number().to_string(),
                p.display(),
            ];
            let own = !shared.iter().any(|s| s == p.as_e164());
            for f in &forms {
                push_needle(&mut n.scoped, f);
                if own {
                    push_needle(&mut n.unique, f);
                }
            }
            push_needle(&mut n.scoped, &mask_phone(p.as_e164()));
            push_needle(&mut n.scoped, &mask_phone(&p.national()));
            if own {
                n.patterns
                    .push(format!("%{}%", p.national_significant_number()));
                n.own_numbers.push(p.as_e164().to_string());
            }
        }
        push_needle(&mut n.scoped, nik.as_str());
        push_needle(&mut n.scoped, &mask_nik(nik.as_str()));
        for form in [
            name.to_string(),
            name.to_uppercase(),
            name.to_lowercase(),
            mask_name(name),
        ] {
            push_needle(&mut n.scoped, &form);
        }
        longest_first(&mut n.unique);
        longest_first(&mut n.scoped);
        n.patterns.sort();
        n.patterns.dedup();
        n
    }

    /// `text` with every scoped needle replaced by [`ERASED_TEXT`].
    fn scrub(&self, text: &str) -> String {
        self.scoped
            .iter()
            .fold(text.to_string(), |t, n| t.replace(n.as_str(), ERASED_TEXT))
    }
}

/// `REPLACE(REPLACE(col, $first, $with), $first+1, $with)…` for `n`
/// needles bound from `$first`.
fn replace_chain(col: &str, first: usize, n: usize, with: usize) -> String {
    let mut s = "REPLACE(".repeat(n);
    s.push_str(col);
    for i in 0..n {
        s.push_str(&format!(", ${}, ${with})", first + i));
    }
    s
}

/// `(col LIKE $first OR col LIKE $first+1 …)`, or a false condition when
/// `n` is 0.
fn like_any(col: &str, first: usize, n: usize) -> String {
    if n == 0 {
        return "(1 = 0)".into();
    }
    let parts: Vec<String> = (0..n)
        .map(|i| format!("{col} LIKE ${}", first + i))
        .collect();
    format!("({})", parts.join(" OR "))
}

/// A fresh per-row salt: 16 random bytes as hex.
fn new_salt() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The verifier kept for an erased NIK: hex SHA-256 of the salt (hex)
/// followed by the NIK.
pub(crate) fn nik_verifier(salt: &str, nik: &str) -> String {
    sha256_hex(format!("{salt}{nik}").as_bytes())
}

/// Reconnects fresh NIKs of an import to the erased workers they were
/// (`pedulicovid import --revive-erased`), inside the import's transaction
/// `$tx`: each `$fresh` row ([`super::NewWorker`]) whose NIK matches an
/// erased row's verifier restores that row from the import (NIK, name,
/// number, codes, flags), clears `erased_at` and the verifier, starts its
/// phone history again, and is audited `worker.revive` by `$actor`.
/// Evaluates to the revived NIKs. A NIK erased more than once (imported
/// again as a new worker, erased again) revives its latest row. The cost is one SHA-256 per (fresh NIK,
/// erased worker) pair: fresh NIKs are the few an import adds, and erased
/// workers are few. A macro for the reason the store's others are (module
/// docs of [`super`], "Why macros").
macro_rules! revive_tx {
    ($tx:expr, $fresh:expr, $actor:expr, $source:expr, $now:expr) => {{
        let fresh: &[&$crate::store::NewWorker] = $fresh;
        let mut revived: Vec<String> = Vec::new();
        if !fresh.is_empty() {
            let erased: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT id, nik_salt, nik_verifier FROM health_workers \
                 WHERE erased_at IS NOT NULL AND nik_verifier IS NOT NULL \
                 ORDER BY erased_at DESC, id DESC",
            )
            .fetch_all(&mut *$tx)
            .await?;
            let mut taken: Vec<i64> = Vec::new();
            for r in fresh {
                let nik = r.nik.as_str();
                let Some((id, _, _)) = erased.iter().find(|(id, salt, verifier)| {
                    !taken.contains(id)
                        && $crate::store::erasure::nik_verifier(salt, nik) == *verifier
                }) else {
                    continue;
                };
                taken.push(*id);
                sqlx::query(
                    "UPDATE health_workers SET nik = $1, full_name = $2, phone = $3, operator = $4, \
                     profession = $5, facility_code = $6, regency_code = $7, province_code = $8, \
                     validated = $9, eligible = $10, phone_unvalidated = $11, erased_at = NULL, \
                     nik_salt = NULL, nik_verifier = NULL, updated_at = $12 WHERE id = $13",
                )
                .bind(nik)
                .bind(&r.full_name)
                .bind(r.phone.as_e164())
                .bind(&r.operator)
                .bind(&r.profession)
                .bind(&r.facility_code)
                .bind(&r.regency_code)
                .bind(r.province_code.code_str())
                .bind(r.validated)
                .bind(r.eligible)
                .bind(false)
                .bind($now)
                .bind(*id)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) \
                     VALUES ($1, NULL, $2, $3, $4)",
                )
                .bind(*id)
                .bind(r.phone.as_e164())
                .bind($source)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
                $crate::store::audit_tx!(
                    $tx,
                    $actor,
                    "worker.revive",
                    format!("worker:{id}"),
                    "erased worker revived by a One Data import (--revive-erased)",
                    $now
                );
                revived.push(nik.to_string());
            }
        }
        revived
    }};
}

pub(crate) use revive_tx;

impl Store {
    /// Erases the personal data of the live worker with this NIK (module
    /// docs: what is replaced where), in one transaction, audited
    /// `worker.erase` by `actor` with `reason` under `worker:<id>`. Queued
    /// notices are cancelled; notices in flight keep their status and lose
    /// their number and body. An unknown NIK, or one already erased, is
    /// [`SupportError::NotFound`].
    pub async fn erase_worker(
        &self,
        nik: &Nik,
        actor: &FreeText,
        reason: &FreeText,
    ) -> Result<Erasure> {
        let now = now_ms();
        let lock = self.row_lock();
        let sqlite = self.backend() == Backend::Sqlite;
        let worker_sql = format!(
            "SELECT id, full_name, phone FROM health_workers WHERE nik = $1 AND erased_at IS NULL{lock}"
        );
        let messages_sql =
            format!("SELECT id FROM messages WHERE worker_id = $1 ORDER BY id{lock}");
        let not_found = || {
            SupportError::NotFound(format!(
                "worker with NIK {} (unknown, or already erased)",
                mask_nik(nik.as_str())
            ))
        };
        let erasure = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let found: Option<(i64, String, String)> = sqlx::query_as(&worker_sql)
                .bind(nik.as_str()).fetch_optional(&mut *tx).await?;
            let Some((id, name, phone)) = found else {
                return Err(not_found());
            };
            if !sqlite {
                // A campaign being created may have read the worker, still
                // eligible with its number, and not committed its messages
                // yet: wait for it, and keep new ones out until this
                // commits, so every message of the worker is seen below.
                // (Resends and re-registrations lock the worker's row
                // first, as this did; SQLite's single writer serialises
                // all of them.) Taken after the row lock: those take the
                // row before they write `campaigns`, so no cycle.
                sqlx::query("LOCK TABLE campaigns IN SHARE MODE").execute(&mut *tx).await?;
            }
            let tomb = tombstone(id);
            let subject = format!("worker:{id}");
            // Row locks on the worker's messages, in id order like every
            // other writer of `messages`.
            let message_ids: Vec<i64> = sqlx::query_scalar(&messages_sql)
                .bind(id).fetch_all(&mut *tx).await?;

            // Every number the worker had, wherever it was kept.
            let mut raw: Vec<String> = sqlx::query_scalar(
                "SELECT phone FROM messages WHERE worker_id = $1 \
                 UNION SELECT old_phone FROM phone_history WHERE worker_id = $1 AND old_phone IS NOT NULL \
                 UNION SELECT new_phone FROM phone_history WHERE worker_id = $1 \
                 UNION SELECT phone FROM resends WHERE worker_id = $1 \
                 UNION SELECT old_phone FROM reregistrations WHERE worker_id = $1 \
                 UNION SELECT new_phone FROM reregistrations WHERE worker_id = $1")
                .bind(id).fetch_all(&mut *tx).await?;
            raw.push(phone);
            let mut numbers: Vec<Msisdn> = raw.iter().filter_map(|p| Msisdn::parse(p).ok()).collect();
            numbers.sort_by(|a, b| a.as_e164().cmp(b.as_e164()));
            numbers.dedup();
            // Numbers another live worker holds now: theirs too.
            let mut shared: Vec<String> = Vec::new();
            for p in &numbers {
                let other: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM health_workers WHERE phone = $1 AND id <> $2 AND erased_at IS NULL LIMIT 1")
                    .bind(p.as_e164()).bind(id).fetch_optional(&mut *tx).await?;
                if other.is_some() {
                    shared.push(p.as_e164().to_string());
                }
            }
            let needles = Needles::new(nik, &name, &numbers, &shared);
            let (nu, ns, np) = (needles.unique.len(), needles.scoped.len(), needles.patterns.len());

            // Queued notices: cancelled, never sent.
            let cancel_sql = format!(
                "UPDATE messages SET status = '{}', final_at = $1, updated_at = $1, \
                 next_attempt_at = $1 WHERE worker_id = $2 AND status{}",
                Status::Cancelled,
                Status::guard(&[Status::Queued], Status::Cancelled));
            let notices_cancelled = sqlx::query(&cancel_sql)
                .bind(now).bind(id).execute(&mut *tx).await?.rows_affected();

            // Every message of the worker: no number, no body. A send in
            // flight keeps its status; recording it keeps the body out
            // (the queue's record of a send to an `erased:` number).
            let sql = format!(
                "UPDATE messages SET phone = $1, body = CASE WHEN body IS NULL THEN NULL ELSE $2 END, \
                 last_error = {}, updated_at = $3 WHERE worker_id = $4",
                replace_chain("last_error", 5, ns, 2));
            let mut q = sqlx::query(&sql).bind(&tomb).bind(ERASED_TEXT).bind(now).bind(id);
            for n in &needles.scoped { q = q.bind(n); }
            let messages = q.execute(&mut *tx).await?.rows_affected();

            let sql = format!(
                "UPDATE attempts SET detail = {} WHERE detail IS NOT NULL \
                 AND message_id IN (SELECT id FROM messages WHERE worker_id = $2)",
                replace_chain("detail", 3, ns, 1));
            let mut q = sqlx::query(&sql).bind(ERASED_TEXT).bind(id);
            for n in &needles.scoped { q = q.bind(n); }
            let attempts = q.execute(&mut *tx).await?.rows_affected();

            // Receipts: the carrier's payload of the worker's messages
            // whole; of receipts matched to no message, the occurrences.
            let mut receipts = sqlx::query(
                "UPDATE receipts SET payload = $1 \
                 WHERE message_id IN (SELECT id FROM messages WHERE worker_id = $2)")
                .bind(ERASED_TEXT).bind(id).execute(&mut *tx).await?.rows_affected();
            let sql = format!(
                "UPDATE receipts SET payload = {} WHERE message_id IS NULL AND {}",
                replace_chain("payload", 2, nu, 1), like_any("payload", 2 + nu, np));
            let mut q = sqlx::query(&sql).bind(ERASED_TEXT);
            for n in &needles.unique { q = q.bind(n); }
            for p in &needles.patterns { q = q.bind(p); }
            receipts += q.execute(&mut *tx).await?.rows_affected();

            let phone_history = sqlx::query(
                "UPDATE phone_history SET old_phone = CASE WHEN old_phone IS NULL THEN NULL ELSE $1 END, \
                 new_phone = $1 WHERE worker_id = $2")
                .bind(&tomb).bind(id).execute(&mut *tx).await?.rows_affected();

            let sql = format!(
                "UPDATE resends SET phone = $1, reason = {} WHERE worker_id = $3",
                replace_chain("reason", 4, ns, 2));
            let mut q = sqlx::query(&sql).bind(&tomb).bind(ERASED_TEXT).bind(id);
            for n in &needles.scoped { q = q.bind(n); }
            let resends = q.execute(&mut *tx).await?.rows_affected();

            // Pending re-registrations end (superseded) before their
            // numbers go: one pending row per (worker, number) is unique.
            sqlx::query(
                "UPDATE reregistrations SET status = 'superseded', decided_by = $1, decided_at = $2 \
                 WHERE worker_id = $3 AND status = 'pending'")
                .bind(actor.as_str()).bind(now).bind(id).execute(&mut *tx).await?;
            let reregistrations = sqlx::query(
                "UPDATE reregistrations SET old_phone = $1, new_phone = $1 WHERE worker_id = $2")
                .bind(&tomb).bind(id).execute(&mut *tx).await?.rows_affected();

            // Locks and failures are keyed by hashes of the NIK and of
            // numbers (unsalted, so as good as the value): those of this
            // NIK and of the worker's own numbers are replaced.
            let mut keys: Vec<(&str, String)> =
                vec![("nik", super::reregistration::key_hash("nik", nik.as_str()))];
            for p in &needles.own_numbers {
                keys.push(("number", super::reregistration::key_hash("number", p)));
                keys.push(("lookup", super::reregistration::key_hash("lookup", p)));
            }
            let mut reregistration_locks = sqlx::query(
                "UPDATE reregistration_locks SET number_masked = CASE WHEN number_masked IS NULL THEN NULL ELSE $1 END \
                 WHERE worker_id = $2")
                .bind(ERASED_TEXT).bind(id).execute(&mut *tx).await?.rows_affected();
            let mut reregistration_failures = 0;
            for (kind, hash) in &keys {
                reregistration_locks += sqlx::query(
                    "UPDATE reregistration_locks SET key_hash = $1, \
                     number_masked = CASE WHEN number_masked IS NULL THEN NULL ELSE $2 END \
                     WHERE key_kind = $3 AND key_hash = $4")
                    .bind(&tomb).bind(ERASED_TEXT).bind(*kind).bind(hash)
                    .execute(&mut *tx).await?.rows_affected();
                reregistration_failures += sqlx::query(
                    "UPDATE reregistration_failures SET key_hash = $1 WHERE key_kind = $2 AND key_hash = $3")
                    .bind(&tomb).bind(*kind).bind(hash)
                    .execute(&mut *tx).await?.rows_affected();
            }

            let sql = format!(
                "UPDATE non_recipients SET note = {}, outcome_note = {} WHERE worker_id = $2 \
                 AND (note IS NOT NULL OR outcome_note IS NOT NULL)",
                replace_chain("note", 3, ns, 1), replace_chain("outcome_note", 3, ns, 1));
            let mut q = sqlx::query(&sql).bind(ERASED_TEXT).bind(id);
            for n in &needles.scoped { q = q.bind(n); }
            let flags = q.execute(&mut *tx).await?.rows_affected();

            // Suppressions of the NIK and of the worker's own numbers: the
            // value becomes unique per row (one active row per value).
            let sql = format!(
                "UPDATE suppressions SET value = 'erased:s' || CAST(id AS TEXT), note = {} \
                 WHERE (kind = 'nik' AND value = $2) OR (kind = 'phone' AND value IN ({}))",
                replace_chain("note", 3, ns, 1),
                if needles.own_numbers.is_empty() {
                    "NULL".to_string()
                } else {
                    (0..needles.own_numbers.len()).map(|i| format!("${}", 3 + ns + i)).collect::<Vec<_>>().join(", ")
                });
            let mut q = sqlx::query(&sql).bind(ERASED_TEXT).bind(nik.as_str());
            for n in &needles.scoped { q = q.bind(n); }
            for p in &needles.own_numbers { q = q.bind(p); }
            let suppressions = q.execute(&mut *tx).await?.rows_affected();

            // Stored chatbot answers about the worker (kept for retries,
            // purged after `worker.idempotency_retention_secs`): one that
            // names a message of the worker, the NIK, a number or its
            // masked form answers a retry with 410 instead.
            let stored: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT token_id, idem_key, response FROM idempotency_keys WHERE status <> $1")
                .bind(ERASED_STATUS).fetch_all(&mut *tx).await?;
            let mut idempotency_keys = 0;
            let message_refs: Vec<String> =
                message_ids.iter().map(|m| format!("\"message_id\":{m},")).collect();
            for (token_id, key, response) in stored {
                let about = message_refs.iter().any(|m| response.contains(m.as_str()))
                    || needles.scoped.iter().any(|n| response.contains(n.as_str()));
                if !about {
                    continue;
                }
                idempotency_keys += sqlx::query(
                    "UPDATE idempotency_keys SET status = $1, response = $2, request_hash = $3 \
                     WHERE token_id = $4 AND idem_key = $5")
                    .bind(ERASED_STATUS).bind(ERASED_RESPONSE).bind(&tomb).bind(token_id).bind(&key)
                    .execute(&mut *tx).await?.rows_affected();
            }

            // The audit trail: entries about the worker (its subject, or a
            // NIK or number of the worker in the text) keep what was done,
            // without the NIK, numbers or name.
            let sql = format!(
                "UPDATE audit_log SET detail = {}, subject = {} WHERE subject = $2 OR {} OR {}",
                replace_chain("detail", 3, ns, 1),
                replace_chain("subject", 3, ns, 1),
                like_any("detail", 3 + ns, np),
                like_any("subject", 3 + ns, np));
            let mut q = sqlx::query(&sql).bind(ERASED_TEXT).bind(&subject);
            for n in &needles.scoped { q = q.bind(n); }
            for p in &needles.patterns { q = q.bind(p); }
            let audit_entries = q.execute(&mut *tx).await?.rows_affected();

            // The registry row last: kept (id, codes) for the figures,
            // with a verifier of the NIK for `import --revive-erased`.
            let salt = new_salt();
            sqlx::query(
                "UPDATE health_workers SET nik = $1, full_name = $2, phone = $1, eligible = $3, \
                 phone_unvalidated = $3, erased_at = $4, nik_salt = $5, nik_verifier = $6, updated_at = $4 \
                 WHERE id = $7")
                .bind(&tomb).bind("").bind(false).bind(now).bind(&salt)
                .bind(nik_verifier(&salt, nik.as_str())).bind(id)
                .execute(&mut *tx).await?;
            if sqlite {
                // The FTS5 name index (migration 0009) deletes by adding a
                // delete marker; the old name's trigrams stay in older
                // segments until they are merged. Merge now.
                sqlx::query("INSERT INTO health_workers_name (health_workers_name) VALUES ('optimize')")
                    .execute(&mut *tx).await?;
            }

            let erasure = Erasure {
                worker_id: id,
                erased_at: now,
                notices_cancelled,
                messages,
                attempts,
                receipts,
                phone_history,
                resends,
                reregistrations,
                reregistration_locks,
                reregistration_failures,
                flags,
                suppressions,
                idempotency_keys,
                audit_entries,
            };
            audit_tx!(tx, actor.as_str(), "worker.erase", &subject,
                format!("reason: {}; {notices_cancelled} queued notice(s) cancelled, {messages} message(s), \
                         {receipts} receipt(s), {audit_entries} audit entries scrubbed",
                    needles.scrub(reason.as_str())),
                now);
            tx.commit().await?;
            erasure
        });
        Ok(erasure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_chains_nest_in_order() {
        assert_eq!(replace_chain("c", 3, 0, 1), "c");
        assert_eq!(
            replace_chain("c", 3, 2, 1),
            "REPLACE(REPLACE(c, $3, $1), $4, $1)"
        );
        assert_eq!(like_any("c", 2, 0), "(1 = 0)");
        assert_eq!(like_any("c", 2, 2), "(c LIKE $2 OR c LIKE $3)");
    }

    #[test]
    fn needles_cover_every_form_longest_first() {
        let nik = Nik::parse("3174051203870001").unwrap();
        let p = Msisdn::parse("081234567890").unwrap();
        let n = Needles::new(&nik, "Siti Aminah", std::slice::from_ref(&p), &[]);
        for form in [
            "+6281234567890",
            "6281234567890",
            "081234567890",
            "81234567890",
            "0812-3456-7890",
        ] {
            assert!(n.unique.iter().any(|x| x == form), "{form}");
        }
        assert!(n.scoped.iter().any(|x| x == "Siti Aminah"));
        assert!(n.scoped.iter().any(|x| x == "SITI AMINAH"));
        assert!(
            !n.unique.iter().any(|x| x == "Siti Aminah"),
            "names are not unique"
        );
        let pos = |s: &str| n.unique.iter().position(|x| x == s).unwrap();
        assert!(pos("+6281234567890") < pos("81234567890"));
        assert_eq!(
            n.scrub("Siti Aminah at +6281234567890 (NIK 3174051203870001)"),
            "[erased] at [erased] (NIK [erased])"
        );
        // A number another live worker holds stays out of the global needles.
        let shared = Needles::new(&nik, "Siti", &[p], &["+6281234567890".to_string()]);
        assert!(!shared.unique.iter().any(|x| x.contains("81234567890")));
        assert!(shared.scoped.iter().any(|x| x == "81234567890"));
        assert!(shared.own_numbers.is_empty());
    }

    #[test]
    fn verifiers_depend_on_the_salt() {
        let a = nik_verifier(&new_salt(), "3174051203870001");
        let b = nik_verifier(&new_salt(), "3174051203870001");
        assert_ne!(a, b);
        assert_eq!(
            nik_verifier("00", "3174051203870001"),
            nik_verifier("00", "3174051203870001")
        );
    }
}

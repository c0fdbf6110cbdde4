//! Health workers: upsert by NIK with phone history.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{now_ms, with_pool, BeginWrite, Result, Store};
use crate::domain::ProvinceCode;

/// One validated row of the One Data export, already parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWorker {
    pub nik: String,
    pub full_name: String,
    /// E.164.
    pub phone: String,
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
    pub nik: String,
    pub full_name: String,
    pub phone: String,
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
}

impl UpsertCounts {
    pub fn add(&mut self, o: UpsertCounts) {
        self.inserted += o.inserted;
        self.updated += o.updated;
        self.unchanged += o.unchanged;
        self.phone_changes += o.phone_changes;
        self.reregistrations_confirmed += o.reregistrations_confirmed;
    }
}

const WORKER_COLUMNS: &str = "id, nik, full_name, phone, operator, profession, facility_code, \
     regency_code, province_code, validated, eligible, created_at, updated_at";

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
                sep.push_bind(&r.nik);
            }
            q.push(")");
            let existing: HashMap<String, WorkerRow> = q
                .build_query_as::<WorkerRow>()
                .fetch_all(&mut *tx)
                .await?
                .into_iter()
                .map(|w| (w.nik.clone(), w))
                .collect();

            let fresh: Vec<&NewWorker> = rows.iter().filter(|r| !existing.contains_key(&r.nik)).collect();
            if !fresh.is_empty() {
                let mut q = QueryBuilder::new(
                    "INSERT INTO health_workers (nik, full_name, phone, operator, profession, facility_code, \
                     regency_code, province_code, validated, eligible, created_at, updated_at) ",
                );
                q.push_values(&fresh, |mut b, r| {
                    b.push_bind(&r.nik)
                        .push_bind(&r.full_name)
                        .push_bind(&r.phone)
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
                for (id, phone) in ids {
                    sqlx::query(
                        "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) \
                         VALUES ($1, NULL, $2, $3, $4)",
                    )
                    .bind(id).bind(phone).bind(source).bind(now)
                    .execute(&mut *tx).await?;
                }
                counts.inserted = fresh.len() as u64;
            }

            for r in rows {
                let Some(old) = existing.get(&r.nik) else { continue };
                if old.same_as(r) {
                    counts.unchanged += 1;
                    continue;
                }
                sqlx::query(
                    "UPDATE health_workers SET full_name = $1, phone = $2, operator = $3, profession = $4, \
                     facility_code = $5, regency_code = $6, province_code = $7, validated = $8, eligible = $9, \
                     updated_at = $10 WHERE id = $11",
                )
                .bind(&r.full_name).bind(&r.phone).bind(&r.operator).bind(&r.profession)
                .bind(&r.facility_code).bind(&r.regency_code).bind(r.province_code.code_str())
                .bind(r.validated).bind(r.eligible).bind(now).bind(old.id)
                .execute(&mut *tx).await?;
                counts.updated += 1;
                if old.phone != r.phone {
                    sqlx::query(
                        "INSERT INTO phone_history (worker_id, old_phone, new_phone, source, changed_at) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(old.id).bind(&old.phone).bind(&r.phone).bind(source).bind(now)
                    .execute(&mut *tx).await?;
                    counts.phone_changes += 1;
                }
            }
            // One Data now carries these numbers: a pending chatbot
            // re-registration to one of them is validated (same transaction).
            let on_file: Vec<(i64, String)> = rows
                .iter()
                .filter_map(|r| existing.get(&r.nik).map(|old| (old.id, r.phone.clone())))
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

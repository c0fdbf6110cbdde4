//! Non-recipient flags (`non_recipients`): a worker a notice did not reach,
//! by reason; raised by the queue and receipt statements ([`flag!`],
//! [`FLAG_SQL`], [`FLAG_HEAD_SQL`]), listed and exported for operators, resolved by support
//! staff.

use serde::Serialize;

use crate::domain::notice::FreeText;

use super::{audit_tx, now_ms, with_pool, BeginWrite, Result, Store, StoreError, SupportError};

/// The flag statement up to the flag's reason and time, which follow as
/// `<reason> AS reason, <time> AS at FROM messages m WHERE m.id <ids>`, then
/// [`FLAG_TAIL_SQL`]. A message a newer notice to the same worker in the
/// same campaign has replaced (a resend or a re-registration while it was
/// still in flight, so its failure no longer says anything about the
/// worker's standing) is flagged already resolved `superseded`.
pub(crate) const FLAG_HEAD_SQL: &str = "INSERT INTO non_recipients \
     (worker_id, campaign_id, message_id, reason, flagged_at, resolved_at, resolution) \
     SELECT worker_id, campaign_id, id, reason, at, \
     CASE WHEN superseded THEN at END, CASE WHEN superseded THEN 'superseded' END \
     FROM (SELECT m.worker_id, m.campaign_id, m.id, m.phone, \
     (SELECT w.nik FROM health_workers w WHERE w.id = m.worker_id) AS nik, \
     EXISTS (SELECT 1 FROM messages n WHERE n.campaign_id = m.campaign_id \
     AND n.worker_id = m.worker_id AND n.id > m.id) AS superseded, ";

/// The end of the flag statement. A worker suppressed when the flag would
/// be raised (their number or NIK: [`crate::suppression`]) is never a
/// non-recipient: we chose not to reach them. A message flagged before (a
/// retry that failed again, a receipt after our own failure) gets the
/// newer reason.
pub(crate) const FLAG_TAIL_SQL: &str = ") f WHERE NOT EXISTS (SELECT 1 FROM suppressions s \
     WHERE s.removed_at IS NULL AND (s.expires_at IS NULL OR s.expires_at > f.at) \
     AND ((s.kind = 'phone' AND s.value = f.phone) OR (s.kind = 'nik' AND s.value = f.nik))) \
     ON CONFLICT (message_id) DO UPDATE SET reason = excluded.reason, flagged_at = excluded.flagged_at, \
     resolved_at = excluded.resolved_at, resolution = excluded.resolution, resolved_by = NULL";

/// Flags the worker of message `$3` as a non-recipient for reason `$1` at
/// `$2`, or moves the flag of the same message to the newer reason.
pub(crate) static FLAG_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!("{FLAG_HEAD_SQL}$1 AS reason, $2 AS at FROM messages m WHERE m.id = $3{FLAG_TAIL_SQL}")
});

/// Runs [`FLAG_SQL`] inside the transaction `$tx`. A macro because `$tx`
/// is a SQLite or a PostgreSQL transaction, and the statement is the same
/// text for both ([`super::with_pool`]).
macro_rules! flag {
    ($tx:expr, $id:expr, $reason:expr, $now:expr) => {
        sqlx::query(&$crate::store::flags::FLAG_SQL)
            .bind($reason.as_str())
            .bind($now)
            .bind($id)
            .execute(&mut *$tx)
            .await?
    };
}

pub(crate) use flag;

/// A non-recipient flag, joined with its worker.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct FlagRow {
    pub id: i64,
    pub campaign_id: i64,
    pub message_id: i64,
    pub worker_id: i64,
    pub nik: String,
    pub full_name: String,
    pub phone: String,
    pub province_code: String,
    pub reason: String,
    pub flagged_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
}

/// The non-recipient flags query, joined with the worker.
fn flags_sql(by_campaign: bool, include_resolved: bool) -> String {
    let mut sql = String::from(
        "SELECT f.id, f.campaign_id, f.message_id, f.worker_id, w.nik, w.full_name, w.phone, \
         w.province_code, f.reason, f.flagged_at, f.resolved_at, f.resolution \
         FROM non_recipients f JOIN health_workers w ON w.id = f.worker_id WHERE w.erased_at IS NULL",
    );
    if by_campaign {
        sql.push_str(" AND f.campaign_id = $1");
    }
    if !include_resolved {
        sql.push_str(" AND f.resolved_at IS NULL");
    }
    sql.push_str(" ORDER BY f.id");
    sql
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

impl Store {
    /// The full-contact export of non-recipient flags (a campaign's, or all
    /// when `campaign` is `None`; open ones only unless `include_resolved`),
    /// read in the transaction that writes its `campaign.export_nonrecipients`
    /// audit entry: no export leaves without its entry. An unknown campaign
    /// is [`StoreError::NotFound`].
    pub async fn export_flags(
        &self,
        campaign: Option<i64>,
        include_resolved: bool,
        actor: &str,
    ) -> Result<Vec<FlagRow>> {
        let now = now_ms();
        let sql = flags_sql(campaign.is_some(), include_resolved);
        let subject = campaign
            .map(|c| format!("campaign:{c}"))
            .unwrap_or_else(|| "campaign:*".into());
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let mut q = sqlx::query_as::<_, FlagRow>(&sql);
            if let Some(c) = campaign {
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1")
                    .bind(c).fetch_optional(&mut *tx).await?;
                if found.is_none() {
                    return Err(StoreError::NotFound(format!("campaign {c}")));
                }
                q = q.bind(c);
            }
            let rows = q.fetch_all(&mut *tx).await?;
            audit_tx!(tx, actor, "campaign.export_nonrecipients", &subject,
                format!("{} row(s){}", rows.len(), if include_resolved { ", resolved included" } else { "" }),
                now);
            tx.commit().await?;
            Ok(rows)
        })
    }

    /// Non-recipient flags, open ones only unless `include_resolved`.
    pub async fn flags(
        &self,
        campaign: Option<i64>,
        include_resolved: bool,
    ) -> Result<Vec<FlagRow>> {
        let sql = flags_sql(campaign.is_some(), include_resolved);
        Ok(with_pool!(self, p => {
            let mut q = sqlx::query_as::<_, FlagRow>(&sql);
            if let Some(c) = campaign {
                q = q.bind(c);
            }
            q.fetch_all(p).await?
        }))
    }

    /// Marks an open flag resolved (`support`) with `note`, audited.
    pub async fn resolve_flag(
        &self,
        flag_id: i64,
        staff: &FreeText,
        note: &FreeText,
    ) -> Result<TimelineFlag, SupportError> {
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
                .bind(now).bind(staff.as_str()).bind(note.as_str()).bind(flag_id)
                .fetch_one(&mut *tx).await?;
            audit_tx!(tx, staff.as_str(), "flag.resolve", format!("worker:{worker_id}"),
                format!("flag {flag_id} ({}) resolved: {note}", f.reason), now);
            tx.commit().await?;
            f
        });
        Ok(TimelineFlag {
            resolved_at: Some(now),
            resolution: Some("support".into()),
            resolved_by: Some(staff.to_string()),
            note: Some(note.to_string()),
            ..flag
        })
    }
}

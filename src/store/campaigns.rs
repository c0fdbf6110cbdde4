//! Campaigns, enqueueing, progress and non-recipient flags.

use serde::Serialize;
use sqlx::QueryBuilder;

use super::{now_ms, with_pool, BeginWrite, Result, Store, StoreError};
use crate::domain::{ProvinceCode, TimeZone};
use crate::status::Status;

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
    pub created_by: String,
    /// First moment each zone may be sent to (scheduled time moved into the
    /// zone's window), as computed by the caller.
    pub first_send: [(TimeZone, i64); 3],
}

/// A campaign as stored.
#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct Campaign {
    pub id: i64,
    pub name: String,
    pub template: String,
    pub status: String,
    pub scheduled_at: i64,
    pub window_start: i32,
    pub window_end: i32,
    pub provinces: String,
    pub professions: String,
    pub created_by: String,
    pub enqueued: i64,
    pub created_at: i64,
    pub updated_at: i64,
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
        self.status(Status::Queued) + self.status(Status::Sending) + self.status(Status::Sent)
    }
}

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

const CAMPAIGN_COLUMNS: &str =
    "id, name, template, status, scheduled_at, window_start, window_end, \
     provinces, professions, created_by, enqueued, created_at, updated_at";

/// `CASE province_code WHEN … THEN 8 … ELSE 7 END`, built from the domain
/// table so SQL and Rust agree on every province's zone.
fn utc_offset_case() -> String {
    let mut s = String::from("CASE w.province_code");
    for p in ProvinceCode::all() {
        s.push_str(&format!(
            " WHEN '{}' THEN {}",
            p,
            p.time_zone().utc_offset_hours()
        ));
    }
    s.push_str(" ELSE 7 END");
    s
}

impl Store {
    /// Creates the campaign and enqueues every eligible and validated worker
    /// matching the filter, once each, in one transaction.
    pub async fn create_campaign(&self, c: &NewCampaign) -> Result<(Campaign, u64)> {
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
        let mut first = String::from("CASE ");
        first.push_str(&offsets);
        for (tz, at) in &c.first_send {
            first.push_str(&format!(" WHEN {} THEN {}", tz.utc_offset_hours(), at));
        }
        first.push_str(&format!(" ELSE {} END", c.scheduled_at));

        let (campaign, enqueued) = with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO campaigns (name, template, status, scheduled_at, window_start, window_end, \
                 provinces, professions, created_by, created_at, updated_at) \
                 VALUES ($1, $2, 'scheduled', $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
            )
            .bind(&c.name).bind(&c.template).bind(c.scheduled_at)
            .bind(c.window_start).bind(c.window_end)
            .bind(provinces.join(",")).bind(professions.join(","))
            .bind(&c.created_by).bind(now)
            .fetch_one(&mut *tx).await?;

            let mut q = QueryBuilder::new(
                "INSERT INTO messages (campaign_id, worker_id, generation, phone, utc_offset, status, \
                 attempts, next_attempt_at, created_at, updated_at) SELECT ",
            );
            q.push_bind(id);
            q.push(format!(", w.id, 1, w.phone, {offsets}, 'queued', 0, {first}, "));
            q.push_bind(now);
            q.push(", ");
            q.push_bind(now);
            q.push(" FROM health_workers w WHERE w.validated = ");
            q.push_bind(true);
            q.push(" AND w.eligible = ");
            q.push_bind(true);
            if !provinces.is_empty() {
                q.push(" AND w.province_code IN (");
                let mut sep = q.separated(", ");
                for p in &provinces {
                    sep.push_bind(p.clone());
                }
                q.push(")");
            }
            if !professions.is_empty() {
                q.push(" AND LOWER(w.profession) IN (");
                let mut sep = q.separated(", ");
                for p in &professions {
                    sep.push_bind(p.clone());
                }
                q.push(")");
            }
            q.push(" ORDER BY w.id ON CONFLICT (campaign_id, worker_id, generation) DO NOTHING");
            let enqueued = q.build().execute(&mut *tx).await?.rows_affected();
            sqlx::query("UPDATE campaigns SET enqueued = $1 WHERE id = $2")
                .bind(enqueued as i64).bind(id)
                .execute(&mut *tx).await?;
            let campaign = sqlx::query_as::<_, Campaign>(&format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx).await?;
            tx.commit().await?;
            (campaign, enqueued)
        });
        Ok((campaign, enqueued))
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
    /// and → `completed` once nothing is queued or being sent.
    pub async fn advance_campaigns(&self) -> Result<()> {
        let now = now_ms();
        with_pool!(self, p => {
            sqlx::query("UPDATE campaigns SET status = 'running', updated_at = $1 \
                         WHERE status = 'scheduled' AND scheduled_at <= $1")
                .bind(now).execute(p).await?;
            sqlx::query("UPDATE campaigns SET status = 'completed', updated_at = $1 \
                         WHERE status = 'running' AND NOT EXISTS (SELECT 1 FROM messages m \
                         WHERE m.campaign_id = campaigns.id AND m.status IN ('queued', 'sending'))")
                .bind(now).execute(p).await?;
        });
        Ok(())
    }

    /// Per-status counts and open flags for one campaign.
    pub async fn campaign_report(&self, id: i64) -> Result<CampaignReport> {
        type Counts = Vec<(String, i64)>;
        let (by_status, sent, flags): (Counts, i64, Counts) = with_pool!(self, p => {
            let by_status = sqlx::query_as("SELECT status, COUNT(*) FROM messages WHERE campaign_id = $1 GROUP BY status")
                .bind(id).fetch_all(p).await?;
            let sent = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE campaign_id = $1 AND sent_at IS NOT NULL")
                .bind(id).fetch_one(p).await?;
            let flags = sqlx::query_as("SELECT reason, COUNT(*) FROM non_recipients \
                                        WHERE campaign_id = $1 AND resolved_at IS NULL GROUP BY reason ORDER BY reason")
                .bind(id).fetch_all(p).await?;
            (by_status, sent, flags)
        });
        let mut report = CampaignReport {
            sent,
            flagged_by_reason: flags,
            ..Default::default()
        };
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

    /// Non-recipient flags, open ones only unless `include_resolved`.
    pub async fn flags(
        &self,
        campaign: Option<i64>,
        include_resolved: bool,
    ) -> Result<Vec<FlagRow>> {
        let mut sql = String::from(
            "SELECT f.id, f.campaign_id, f.message_id, f.worker_id, w.nik, w.full_name, w.phone, \
             w.province_code, f.reason, f.flagged_at, f.resolved_at, f.resolution \
             FROM non_recipients f JOIN health_workers w ON w.id = f.worker_id WHERE 1 = 1",
        );
        if campaign.is_some() {
            sql.push_str(" AND f.campaign_id = $1");
        }
        if !include_resolved {
            sql.push_str(" AND f.resolved_at IS NULL");
        }
        sql.push_str(" ORDER BY f.id");
        Ok(with_pool!(self, p => {
            let mut q = sqlx::query_as::<_, FlagRow>(&sql);
            if let Some(c) = campaign {
                q = q.bind(c);
            }
            q.fetch_all(p).await?
        }))
    }
}

//! What the support web UI (`/ui`, see `crate::http::ui`) asks of the store
//! beyond the support functions it shares with the API: a token by id (so
//! a revoked token ends its browser sessions at once), the names that go
//! with search results (support staff may see names; the API's summaries
//! mask them), and a campaign's delivery rates per province.

use std::collections::HashMap;

use serde::Serialize;

use super::{with_pool, ApiToken, Result, Store, StoreError};
use crate::domain::ProvinceCode;
use crate::status::Status;

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

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    role: String,
    created_at: i64,
    revoked_at: Option<i64>,
    last_used_at: Option<i64>,
}

impl Store {
    /// The token with this id, revoked or not; `None` when there is none.
    pub async fn token_by_id(&self, id: i64) -> Result<Option<ApiToken>> {
        let row: Option<TokenRow> = with_pool!(self, p => sqlx::query_as(
            "SELECT id, name, role, created_at, revoked_at, last_used_at FROM api_tokens WHERE id = $1")
            .bind(id).fetch_optional(p).await?);
        row.map(|r| {
            Ok(ApiToken {
                id: r.id,
                role: r.role.parse().map_err(StoreError::Conflict)?,
                name: r.name,
                created_at: r.created_at,
                revoked_at: r.revoked_at,
                last_used_at: r.last_used_at,
            })
        })
        .transpose()
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

//! Outreach outcomes on non-recipient flags (`non_recipients.outcome`,
//! migration 0015), recorded one by one or from the outreach team's CSV in
//! one transaction, each with its `flag.outcome` audit entry; and a
//! campaign's outreach report: its non-recipients, how many were finally
//! reached ([`reached_sql`]), by the reason of the first failure and by
//! province.
//!
//! What an outcome does to its flag is decided by
//! [`crate::domain::outcome`]; this module writes it.

use serde::Serialize;

use super::{audit_tx, now_ms, with_pool, BeginWrite, Result, Store, StoreError, SupportError};
use crate::domain::notice::FreeText;
use crate::domain::outcome::{Outcome, OUTREACH_RESOLUTION};
use crate::domain::ProvinceCode;
use crate::status::Status;

/// "Finally reached", the one definition: the flag `f` (an alias of
/// `non_recipients`) is reached when
/// - its own message was delivered after all (resolution `delivered_late`,
///   or the message `delivered` when the flag had been resolved otherwise
///   before the late receipt came),
/// - or a later message to the same worker was delivered: a later
///   generation in the same campaign (a resend, a re-registration's
///   notice), or an extra notice (`resends`: support resend, chatbot or
///   imported re-registration) queued in another campaign, such as the
///   standing re-registration campaign,
/// - or its outreach outcome reaches ([`Outcome::reaches`]:
///   `reregistered`, `reached_by_phone`).
///
/// A worker is reached in a campaign when any of their flags in it is.
pub(crate) fn reached_sql(f: &str) -> String {
    let reaching: Vec<String> = Outcome::ALL
        .into_iter()
        .filter(|o| o.reaches())
        .map(|o| format!("'{o}'"))
        .collect();
    format!(
        "({f}.resolution = 'delivered_late' OR {f}.outcome IN ({reaching}) \
         OR EXISTS (SELECT 1 FROM messages n WHERE n.worker_id = {f}.worker_id \
         AND n.id >= {f}.message_id AND n.status{delivered} \
         AND (n.campaign_id = {f}.campaign_id OR EXISTS (SELECT 1 FROM resends r \
         WHERE r.worker_id = {f}.worker_id AND r.message_id = n.id))))",
        reaching = reaching.join(", "),
        delivered = Status::sql_is(&[Status::Delivered]),
    )
}

/// One outcome to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutcome {
    pub flag_id: i64,
    pub outcome: Outcome,
    /// What the outreach team noted, if anything.
    pub note: Option<FreeText>,
}

/// What recording an outcome did to the flag's resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FlagChange {
    /// The flag was open and is now resolved `outreach`.
    Resolved,
    /// The flag had been resolved `outreach` by an earlier outcome and is
    /// open again (the new outcome is `unreachable`).
    Reopened,
    /// The resolution stays as it was.
    Unchanged,
}

/// A flag with the outcome just recorded.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordedOutcome {
    pub flag_id: i64,
    pub campaign_id: i64,
    pub worker_id: i64,
    /// The flag's reason (the failure).
    pub reason: String,
    pub outcome: Outcome,
    /// The outcome this one replaced, if any.
    pub previous_outcome: Option<String>,
    /// Unix ms.
    pub outcome_at: i64,
    pub outcome_by: String,
    pub note: Option<String>,
    pub flag_change: FlagChange,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
    pub resolved_by: Option<String>,
}

/// Why an outcome was not recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutcomeRefusal {
    /// No flag has this id.
    NotFound,
    /// The flag belongs to another campaign than the one the caller is
    /// bound to (its id).
    OtherCampaign(i64),
}

impl OutcomeRefusal {
    /// What a person reads, about flag `flag_id` and campaign `bound`.
    pub fn describe(&self, flag_id: i64, bound: Option<i64>) -> String {
        match self {
            OutcomeRefusal::NotFound => format!("flag {flag_id} does not exist"),
            OutcomeRefusal::OtherCampaign(c) => format!(
                "flag {flag_id} belongs to campaign {c}, not campaign {}",
                bound.unwrap_or_default()
            ),
        }
    }
}

/// The flag as an outcome reads it.
#[derive(sqlx::FromRow)]
struct FlagState {
    campaign_id: i64,
    worker_id: i64,
    reason: String,
    resolved_at: Option<i64>,
    resolution: Option<String>,
    resolved_by: Option<String>,
    outcome: Option<String>,
}

/// Records `$new` ([`NewOutcome`]) by `$actor` at `$now` inside `$tx`,
/// refusing a flag that does not exist or is not in campaign `$bound`
/// (`Option<i64>`); writes its `flag.outcome` audit entry. Evaluates to
/// `std::result::Result<RecordedOutcome, OutcomeRefusal>`. A macro, not a
/// function: `$tx` is a SQLite or a PostgreSQL transaction (the store's
/// module docs, "Why macros").
macro_rules! record_outcome_tx {
    ($tx:expr, $lock:expr, $new:expr, $bound:expr, $actor:expr, $now:expr) => {{
        let new: &NewOutcome = $new;
        let bound: Option<i64> = $bound;
        let actor: &str = $actor;
        let now: i64 = $now;
        let f: Option<FlagState> = sqlx::query_as(&format!(
            "SELECT campaign_id, worker_id, reason, resolved_at, resolution, resolved_by, outcome \
             FROM non_recipients WHERE id = $1{}",
            $lock
        ))
        .bind(new.flag_id)
        .fetch_optional(&mut *$tx)
        .await?;
        match f {
            None => Err(OutcomeRefusal::NotFound),
            Some(f) if bound.is_some_and(|c| c != f.campaign_id) => {
                Err(OutcomeRefusal::OtherCampaign(f.campaign_id))
            }
            Some(f) => {
                let outreach = f.resolution.as_deref() == Some(OUTREACH_RESOLUTION);
                let (change, resolved_at, resolution, resolved_by) =
                    if new.outcome.resolves_flag() && f.resolved_at.is_none() {
                        (
                            FlagChange::Resolved,
                            Some(now),
                            Some(OUTREACH_RESOLUTION.to_string()),
                            Some(actor.to_string()),
                        )
                    } else if !new.outcome.resolves_flag() && outreach {
                        (FlagChange::Reopened, None, None, None)
                    } else {
                        (FlagChange::Unchanged, f.resolved_at, f.resolution, f.resolved_by)
                    };
                // A worker who declined is not messaged again: their NIK
                // goes on the suppression list (`declined`) in this
                // transaction, unless it is there already (kept as it is).
                if new.outcome == crate::domain::outcome::Outcome::Declined {
                    let nik: Option<String> = sqlx::query_scalar(
                        "SELECT nik FROM health_workers WHERE id = $1 AND erased_at IS NULL",
                    )
                    .bind(f.worker_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
                    if let Some(nik) = nik.and_then(|n| crate::domain::Nik::parse(&n).ok()) {
                        let entry = crate::suppression::NewSuppression {
                            target: crate::suppression::SuppressionTarget::Nik(nik),
                            reason: crate::suppression::SuppressionReason::Declined,
                            note: format!("outreach outcome on flag {}", new.flag_id),
                            expires_at: None,
                            added_by: actor.to_string(),
                        };
                        let _ = super::suppression::suppress_tx!($tx, &entry, now);
                    }
                }
                let note = new.note.as_ref().map(|n| n.as_str().to_string());
                sqlx::query(
                    "UPDATE non_recipients SET outcome = $1, outcome_at = $2, outcome_by = $3, \
                     outcome_note = $4, resolved_at = $5, resolution = $6, resolved_by = $7 \
                     WHERE id = $8",
                )
                .bind(new.outcome.as_str())
                .bind(now)
                .bind(actor)
                .bind(note.as_deref())
                .bind(resolved_at)
                .bind(resolution.as_deref())
                .bind(resolved_by.as_deref())
                .bind(new.flag_id)
                .execute(&mut *$tx)
                .await?;
                let flag_said = match change {
                    FlagChange::Resolved => format!("flag resolved {OUTREACH_RESOLUTION}"),
                    FlagChange::Reopened => "flag open again".to_string(),
                    FlagChange::Unchanged => format!(
                        "flag {}",
                        resolution
                            .as_deref()
                            .map_or("open".to_string(), |r| format!("resolved {r}"))
                    ),
                };
                audit_tx!(
                    $tx,
                    actor,
                    "flag.outcome",
                    format!("worker:{}", f.worker_id),
                    format!(
                        "flag {} ({}, campaign {}): outcome {}{}; {flag_said}{}",
                        new.flag_id,
                        f.reason,
                        f.campaign_id,
                        new.outcome,
                        f.outcome
                            .as_deref()
                            .map(|o| format!(" (was {o})"))
                            .unwrap_or_default(),
                        note.as_deref()
                            .map(|n| format!("; note: {n}"))
                            .unwrap_or_default()
                    ),
                    now
                );
                Ok(RecordedOutcome {
                    flag_id: new.flag_id,
                    campaign_id: f.campaign_id,
                    worker_id: f.worker_id,
                    reason: f.reason,
                    outcome: new.outcome,
                    previous_outcome: f.outcome,
                    outcome_at: now,
                    outcome_by: actor.to_string(),
                    note,
                    flag_change: change,
                    resolved_at,
                    resolution,
                    resolved_by,
                })
            }
        }
    }};
}

/// What [`Store::record_flag_outcomes`] did.
#[derive(Debug, Clone, Default)]
pub struct RecordedOutcomes {
    /// Applied, in the order given.
    pub recorded: Vec<RecordedOutcome>,
    /// Refused: (index in the input, why).
    pub refused: Vec<(usize, OutcomeRefusal)>,
}

/// A campaign's outreach figures ([`Store::outreach_report`]).
///
/// The unit is the non-recipient: a worker with at least one flag in the
/// campaign, counted once however many flags they have (a resend that
/// failed again adds a flag, not a worker).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OutreachReport {
    /// Non-recipients of the campaign.
    pub flagged: i64,
    /// Of them, finally reached: a later delivery, or an outcome
    /// `reregistered` / `reached_by_phone` (README, "Outreach outcomes").
    pub reached: i64,
    /// Non-recipients by their latest recorded outcome (`none`: no outcome
    /// yet), every outcome listed.
    pub by_outcome: Vec<OutcomeCount>,
    /// By the reason of the worker's first flag in the campaign.
    pub by_reason: Vec<ReasonOutreach>,
    /// By the worker's province.
    pub by_province: Vec<ProvinceOutreach>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutcomeCount {
    /// An outcome, or `none`.
    pub outcome: String,
    pub count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReasonOutreach {
    pub reason: String,
    pub flagged: i64,
    pub reached: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ProvinceOutreach {
    pub province_code: String,
    /// Indonesian name, or the code for a code the table lacks.
    pub province_name: String,
    pub flagged: i64,
    pub reached: i64,
}

impl OutreachReport {
    /// `reached / flagged`, none without non-recipients.
    pub fn reached_share(&self) -> Option<f64> {
        (self.flagged > 0).then(|| self.reached as f64 / self.flagged as f64)
    }

    /// Non-recipients whose latest outcome is `outcome`.
    pub fn with_outcome(&self, outcome: Outcome) -> i64 {
        self.by_outcome
            .iter()
            .find(|c| c.outcome == outcome.as_str())
            .map_or(0, |c| c.count)
    }
}

impl Store {
    /// Records one outcome against flag `new.flag_id` by `actor`, audited
    /// in the same transaction. Refused: no such flag (404), a flag of
    /// another campaign than `bound` when given (409).
    pub async fn record_flag_outcome(
        &self,
        new: &NewOutcome,
        bound: Option<i64>,
        actor: &FreeText,
    ) -> Result<RecordedOutcome, SupportError> {
        let now = now_ms();
        let lock = self.row_lock();
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            match record_outcome_tx!(tx, lock, new, bound, actor.as_str(), now) {
                Ok(r) => {
                    tx.commit().await?;
                    Ok(r)
                }
                Err(OutcomeRefusal::NotFound) => {
                    Err(SupportError::NotFound(format!("flag {}", new.flag_id)))
                }
                Err(refusal) => Err(SupportError::Conflict(refusal.describe(new.flag_id, bound))),
            }
        })
    }

    /// Records `rows` by `actor` in one transaction: each one that names a
    /// flag that exists (and is in campaign `bound`, when given) is
    /// applied with its audit entry; the others are returned refused, and
    /// do not stop the rest. Flags are locked in id order, so two imports
    /// with overlapping flags cannot deadlock; the result keeps the input's
    /// order. A flag given twice is applied twice (callers reject
    /// duplicates first).
    pub async fn record_flag_outcomes(
        &self,
        rows: &[NewOutcome],
        bound: Option<i64>,
        actor: &FreeText,
    ) -> Result<RecordedOutcomes> {
        let now = now_ms();
        let lock = self.row_lock();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].flag_id);
        let mut done: Vec<(usize, std::result::Result<RecordedOutcome, OutcomeRefusal>)> =
            Vec::with_capacity(rows.len());
        with_pool!(self, pool => {
            let mut tx = pool.begin_write().await?;
            for &i in &order {
                let r = record_outcome_tx!(tx, lock, &rows[i], bound, actor.as_str(), now);
                done.push((i, r));
            }
            let applied = done.iter().filter(|(_, r)| r.is_ok()).count();
            audit_tx!(tx, actor.as_str(), "flags.outcome_import",
                bound.map_or("campaign:*".to_string(), |c| format!("campaign:{c}")),
                format!("{applied} outcome(s) recorded, {} refused", done.len() - applied), now);
            tx.commit().await?;
        });
        done.sort_by_key(|(i, _)| *i);
        let mut out = RecordedOutcomes::default();
        for (i, r) in done {
            match r {
                Ok(rec) => out.recorded.push(rec),
                Err(why) => out.refused.push((i, why)),
            }
        }
        Ok(out)
    }

    /// The outreach figures of campaign `id` ([`OutreachReport`]), in one
    /// statement (one snapshot). An unknown campaign is
    /// [`StoreError::NotFound`].
    pub async fn outreach_report(&self, id: i64) -> Result<OutreachReport> {
        let reached = reached_sql("g");
        let sql = format!(
            "SELECT t.reason, t.province_code, COALESCE(t.outcome, 'none'), COUNT(*), \
             COALESCE(SUM(t.reached), 0) \
             FROM (SELECT f.reason, w.province_code, \
                   CASE WHEN EXISTS (SELECT 1 FROM non_recipients g WHERE g.campaign_id = f.campaign_id \
                        AND g.worker_id = f.worker_id AND {reached}) THEN 1 ELSE 0 END AS reached, \
                   (SELECT g.outcome FROM non_recipients g WHERE g.campaign_id = f.campaign_id \
                        AND g.worker_id = f.worker_id AND g.outcome IS NOT NULL \
                        ORDER BY g.outcome_at DESC, g.id DESC LIMIT 1) AS outcome \
                   FROM non_recipients f JOIN health_workers w ON w.id = f.worker_id \
                   WHERE f.campaign_id = $1 AND NOT EXISTS (SELECT 1 FROM non_recipients e \
                        WHERE e.campaign_id = f.campaign_id AND e.worker_id = f.worker_id AND e.id < f.id)) t \
             GROUP BY t.reason, t.province_code, COALESCE(t.outcome, 'none') ORDER BY 1, 2, 3"
        );
        type Row = (String, String, String, i64, i64);
        let rows: Vec<Row> = with_pool!(self, p => {
            let found: Option<i64> = sqlx::query_scalar("SELECT id FROM campaigns WHERE id = $1")
                .bind(id).fetch_optional(p).await?;
            if found.is_none() {
                return Err(StoreError::NotFound(format!("campaign {id}")));
            }
            sqlx::query_as(&sql).bind(id).fetch_all(p).await?
        });
        Ok(fold_report(rows))
    }
}

/// The report from (reason, province, outcome, non-recipients, reached)
/// groups, ordered by reason and province.
fn fold_report(rows: Vec<(String, String, String, i64, i64)>) -> OutreachReport {
    let mut r = OutreachReport {
        by_outcome: Outcome::ALL
            .iter()
            .map(|o| o.as_str())
            .chain(["none"])
            .map(|o| OutcomeCount {
                outcome: o.to_string(),
                count: 0,
            })
            .collect(),
        ..Default::default()
    };
    for (reason, province, outcome, n, reached) in rows {
        r.flagged += n;
        r.reached += reached;
        if let Some(c) = r.by_outcome.iter_mut().find(|c| c.outcome == outcome) {
            c.count += n;
        }
        match r.by_reason.iter_mut().find(|x| x.reason == reason) {
            Some(x) => {
                x.flagged += n;
                x.reached += reached;
            }
            None => r.by_reason.push(ReasonOutreach {
                reason,
                flagged: n,
                reached,
            }),
        }
        match r
            .by_province
            .iter_mut()
            .find(|x| x.province_code == province)
        {
            Some(x) => {
                x.flagged += n;
                x.reached += reached;
            }
            None => r.by_province.push(ProvinceOutreach {
                province_name: ProvinceCode::parse(&province)
                    .map(|p| p.name().to_string())
                    .unwrap_or_else(|_| province.clone()),
                province_code: province,
                flagged: n,
                reached,
            }),
        }
    }
    r.by_province
        .sort_by(|a, b| a.province_code.cmp(&b.province_code));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_folds_groups_by_reason_province_and_outcome() {
        let s = |x: &str| x.to_string();
        let r = fold_report(vec![
            (s("expired"), s("94"), s("none"), 1, 0),
            (s("undelivered"), s("31"), s("reached_by_phone"), 2, 2),
            (s("undelivered"), s("31"), s("unreachable"), 1, 0),
            (s("undelivered"), s("94"), s("declined"), 1, 0),
            (s("undelivered"), s("94"), s("none"), 1, 1),
        ]);
        assert_eq!((r.flagged, r.reached), (6, 3));
        assert_eq!(
            r.by_reason,
            [
                ReasonOutreach {
                    reason: s("expired"),
                    flagged: 1,
                    reached: 0
                },
                ReasonOutreach {
                    reason: s("undelivered"),
                    flagged: 5,
                    reached: 3
                }
            ]
        );
        let p: Vec<_> = r
            .by_province
            .iter()
            .map(|p| (p.province_name.as_str(), p.flagged, p.reached))
            .collect();
        assert_eq!(p, [("DKI Jakarta", 3, 2), ("Papua Tengah", 3, 1)]);
        assert_eq!(r.with_outcome(Outcome::ReachedByPhone), 2);
        assert_eq!(r.with_outcome(Outcome::Reregistered), 0);
        assert_eq!(r.by_outcome.last().unwrap().count, 2, "none");
        assert_eq!(r.reached_share(), Some(0.5));
        assert_eq!(fold_report(vec![]).reached_share(), None);
    }

    #[test]
    fn reached_names_the_delivered_status_and_the_two_reaching_outcomes() {
        let sql = reached_sql("g");
        assert!(
            sql.contains("g.outcome IN ('reregistered', 'reached_by_phone')"),
            "{sql}"
        );
        assert!(sql.contains("'delivered_late'"), "{sql}");
        assert!(sql.contains("'delivered'"), "{sql}");
    }
}

//! Campaigns: validate, schedule and enqueue, reschedule; local-time send
//! windows; progress pace (throughput and ETA) shared by the API, the CLI
//! and the web UI.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone as _};
use serde::Serialize;

pub use crate::domain::{fmt_wib, Window};
use crate::domain::{ProvinceCode, TimeZone};
use crate::render::{Renderer, TemplateError};
use crate::status::{CampaignStatus, Status};
use crate::store::{
    Campaign, CampaignFilter, CampaignReport, CreatedCampaign, NewCampaign, RescheduledCampaign,
    Store, StoreError,
};

/// Parses `--at`: RFC 3339 with an offset, or `YYYY-MM-DD HH:MM` read as WIB
/// (Jakarta), where campaign operators work.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let wib = FixedOffset::east_opt(7 * 3600).expect("UTC+7 is a valid offset");
    for fmt in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt) {
            if let Some(t) = wib.from_local_datetime(&n).single() {
                return Ok(t.timestamp_millis());
            }
        }
    }
    Err(format!(
        "{s:?} is not a time: use 2021-01-13T00:00:00+07:00 or \"2021-01-13 00:00\" (WIB)"
    ))
}

/// First moment each zone may be sent to when a campaign with `window`
/// starts at `at`: `at` moved into the window in WIB, WITA and WIT. Creation
/// and rescheduling both use it.
pub fn first_send(window: Window, at: i64) -> [(TimeZone, i64); 3] {
    [TimeZone::Wib, TimeZone::Wita, TimeZone::Wit]
        .map(|tz| (tz, window.next_open(at, tz.utc_offset_hours())))
}

/// What an operator asks for.
#[derive(Debug, Clone)]
pub struct CampaignRequest {
    pub name: String,
    pub template: String,
    pub at: Option<i64>,
    pub window: Window,
    pub provinces: Vec<String>,
    pub professions: Vec<String>,
    pub created_by: String,
    /// Unsent messages expire at this time (Unix ms), flagged `deadline`.
    pub deadline: Option<i64>,
}

/// Why a campaign could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates the request and template, then creates the campaign and
/// enqueues its audience in one transaction.
pub async fn create(
    store: &Store,
    renderer: &Renderer,
    max_segments: u32,
    req: CampaignRequest,
) -> Result<CreatedCampaign, CampaignError> {
    let name = req.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(CampaignError::Invalid {
            field: "name",
            reason: "must be 1 to 200 characters".into(),
        });
    }
    renderer.validate(&req.template, max_segments)?;
    let provinces = req
        .provinces
        .iter()
        .map(|p| ProvinceCode::parse(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CampaignError::Invalid {
            field: "province",
            reason: e.to_string(),
        })?;
    let professions: Vec<String> = req
        .professions
        .iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let scheduled_at = req.at.unwrap_or_else(crate::store::now_ms);
    if let Some(d) = req.deadline {
        if d <= scheduled_at {
            return Err(CampaignError::Invalid {
                field: "deadline",
                reason: "must be after the start time".into(),
            });
        }
    }
    let first_send = first_send(req.window, scheduled_at);
    let new = NewCampaign {
        name,
        template: req.template,
        scheduled_at,
        window_start: req.window.start_min,
        window_end: req.window.end_min,
        filter: CampaignFilter {
            provinces,
            professions,
        },
        created_by: req.created_by,
        deadline_at: req.deadline,
        first_send,
    };
    Ok(store.create_campaign(&new).await?)
}

/// How far in the past a new start may lie and still be taken as "now"
/// (the operator's clock, the time it took to type).
pub const RESCHEDULE_PAST_TOLERANCE_MS: i64 = 5 * 60_000;

/// Moves the start of campaign `id` to `at` (Unix ms, from [`parse_time`]):
/// its queued messages become due when each recipient's window opens after
/// `at`, exactly as at creation ([`first_send`]), in one transaction audited
/// as `campaign.schedule` by `actor`. Refused: a time more than
/// [`RESCHEDULE_PAST_TOLERANCE_MS`] ago (to send now, resume or give the
/// current time), a time not before the campaign's deadline (field `at`),
/// and a completed or cancelled campaign ([`StoreError::Conflict`]).
pub async fn reschedule(
    store: &Store,
    id: i64,
    at: i64,
    actor: &str,
) -> Result<RescheduledCampaign, CampaignError> {
    let c = store.campaign(id).await?;
    if at < crate::store::now_ms() - RESCHEDULE_PAST_TOLERANCE_MS {
        return Err(CampaignError::Invalid {
            field: "at",
            reason: format!("{} is in the past; give a time from now on", fmt_wib(at)),
        });
    }
    // The deadline is fixed at creation, so reading it here is safe.
    if let Some(d) = c.deadline_at {
        if at >= d {
            return Err(CampaignError::Invalid {
                field: "at",
                reason: format!("must be before the campaign's deadline, {}", fmt_wib(d)),
            });
        }
    }
    let window = Window {
        start_min: c.window_start,
        end_min: c.window_end,
    };
    Ok(store
        .reschedule_campaign(id, at, &first_send(window, at), actor)
        .await?)
}

/// Throughput is measured over this many seconds.
pub const THROUGHPUT_WINDOW_SECS: i64 = 60;

/// How fast a campaign goes and when it should be done: what
/// `GET /api/v1/campaigns/{id}`, `campaign show` and the web dashboard
/// print, computed once here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Pace {
    /// Messages accepted per second over the last [`THROUGHPUT_WINDOW_SECS`].
    pub throughput_per_sec: f64,
    /// Queued messages / throughput, in seconds. None when there is nothing
    /// to wait for (completed, cancelled, nothing queued), while paused, or
    /// while nothing moves.
    pub eta_seconds: Option<f64>,
    /// Now + ETA (Unix ms), and the same in WIB.
    pub eta_at: Option<i64>,
    pub eta_wib: Option<String>,
}

impl Pace {
    /// The pace from the sends in the last window, the campaign's status
    /// and its report, at `now` (Unix ms).
    pub fn compute(
        recent_sends: i64,
        status: CampaignStatus,
        report: &CampaignReport,
        now: i64,
    ) -> Pace {
        let throughput = recent_sends as f64 / THROUGHPUT_WINDOW_SECS as f64;
        let queued = report.status(Status::Queued);
        let moving = status.may_send();
        let eta = (moving && queued > 0 && throughput > 0.0).then(|| queued as f64 / throughput);
        let eta_at = eta.map(|s| now + (s * 1000.0) as i64);
        Pace {
            throughput_per_sec: throughput,
            eta_seconds: eta,
            eta_at,
            eta_wib: eta_at.map(fmt_wib),
        }
    }

    /// Reads the recent sends of `campaign` and computes its pace now.
    pub async fn of(
        store: &Store,
        campaign: &Campaign,
        report: &CampaignReport,
    ) -> Result<Pace, StoreError> {
        let now = crate::store::now_ms();
        let recent = store
            .sends_since(campaign.id, now - THROUGHPUT_WINDOW_SECS * 1000)
            .await?;
        Ok(Pace::compute(recent, campaign.status, report, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_in_each_zone() {
        let w = Window::default();
        // 2021-01-12 00:30 UTC = 07:30 WIB, 08:30 WITA, 09:30 WIT.
        let t = parse_time("2021-01-12T00:30:00Z").unwrap();
        assert!(!w.is_open(t, 7));
        assert!(w.is_open(t, 8));
        assert!(w.is_open(t, 9));
        // WIB opens 30 minutes later, at 08:00 WIB.
        assert_eq!(
            w.next_open(t, 7),
            parse_time("2021-01-12T08:00:00+07:00").unwrap()
        );
        assert_eq!(w.next_open(t, 9), t);
        // 21:00 WIB waits for tomorrow 08:00 WIB.
        let late = parse_time("2021-01-12 21:00").unwrap();
        assert_eq!(
            w.next_open(late, 7),
            parse_time("2021-01-13 08:00").unwrap()
        );
    }

    fn report(queued: i64, delivered: i64) -> CampaignReport {
        CampaignReport {
            enqueued: queued + delivered,
            by_status: vec![("queued".into(), queued), ("delivered".into(), delivered)],
            ..Default::default()
        }
    }

    #[test]
    fn pace_gives_an_eta_only_while_something_is_left_and_moving() {
        let now = parse_time("2021-01-13 08:00").unwrap();
        // 120 sends in 60 s = 2/s; 600 queued = 300 s.
        let p = Pace::compute(120, CampaignStatus::Running, &report(600, 10), now);
        assert_eq!(p.throughput_per_sec, 2.0);
        assert_eq!(p.eta_seconds, Some(300.0));
        assert_eq!(p.eta_at, Some(now + 300_000));
        assert_eq!(p.eta_wib.as_deref(), Some("2021-01-13 08:05:00 WIB"));
        // Finished, or nothing left: throughput still shows, no ETA.
        for (status, r) in [
            (CampaignStatus::Completed, report(0, 610)),
            (CampaignStatus::Cancelled, report(5, 10)),
            (CampaignStatus::Running, report(0, 610)),
            (CampaignStatus::Paused, report(600, 10)),
        ] {
            let p = Pace::compute(120, status, &r, now);
            assert_eq!(p.throughput_per_sec, 2.0);
            assert_eq!(
                (p.eta_seconds, p.eta_at, p.eta_wib),
                (None, None, None),
                "{status}"
            );
        }
        // Nothing moving: no ETA either.
        assert_eq!(
            Pace::compute(0, CampaignStatus::Running, &report(5, 0), now).eta_seconds,
            None
        );
    }

    #[test]
    fn first_send_moves_the_start_into_each_zone() {
        // 2021-01-12 00:30 UTC: 07:30 WIB (closed), 08:30 WITA, 09:30 WIT.
        let t = parse_time("2021-01-12T00:30:00Z").unwrap();
        let f = first_send(Window::default(), t);
        assert_eq!(
            f[0],
            (TimeZone::Wib, parse_time("2021-01-12 08:00").unwrap())
        );
        assert_eq!(f[1], (TimeZone::Wita, t));
        assert_eq!(f[2], (TimeZone::Wit, t));
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("2021-01-13 00:00").unwrap(),
            parse_time("2021-01-12T17:00:00Z").unwrap()
        );
        assert!(parse_time("tomorrow").is_err());
        assert_eq!(
            fmt_wib(parse_time("2021-01-13 00:00").unwrap()),
            "2021-01-13 00:00:00 WIB"
        );
    }
}

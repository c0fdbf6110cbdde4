//! The operators' API (role `operator`): the same campaign operations as the
//! CLI (`campaign create|list|show|schedule|pause|resume|cancel`, `flags
//! export`), with the same validation (`campaign::create`,
//! `campaign::reschedule`) and the same audit entries, each written by the
//! store in the transaction that makes the change.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::campaign::{self, fmt_wib, CampaignRequest, Pace, Window};
use crate::http::AppState;
use crate::store::{Campaign, CampaignAction};

/// A campaign as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub name: String,
    pub template: String,
    /// scheduled, running, paused, completed or cancelled.
    pub status: String,
    /// Start (Unix ms) and the same in WIB.
    pub scheduled_at: i64,
    pub scheduled_wib: String,
    /// Local send window, applied in each recipient's zone (`08:00-20:00`).
    pub window: String,
    /// Province codes; empty = all.
    pub provinces: Vec<String>,
    /// Professions; empty = all.
    pub professions: Vec<String>,
    pub created_by: String,
    pub enqueued: i64,
    /// Workers of the audience left out at creation because they were
    /// suppressed.
    pub suppressed_at_creation: i64,
    pub deadline_at: Option<i64>,
    pub pause_reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

impl From<Campaign> for CampaignView {
    fn from(c: Campaign) -> Self {
        CampaignView {
            window: Window {
                start_min: c.window_start,
                end_min: c.window_end,
            }
            .to_string(),
            scheduled_wib: fmt_wib(c.scheduled_at),
            provinces: list(&c.provinces),
            professions: list(&c.professions),
            id: c.id,
            name: c.name,
            template: c.template,
            status: c.status.to_string(),
            scheduled_at: c.scheduled_at,
            created_by: c.created_by,
            enqueued: c.enqueued,
            suppressed_at_creation: c.suppressed,
            deadline_at: c.deadline_at,
            pause_reason: c.pause_reason,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Every campaign, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns",
    tag = "operator",
    responses(
        (status = 200, description = "All campaigns", body = [CampaignView]),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn list_campaigns(
    State(state): State<AppState>,
) -> Result<axum::Json<Vec<CampaignView>>, ApiError> {
    Ok(axum::Json(
        state
            .store
            .campaigns()
            .await?
            .into_iter()
            .map(CampaignView::from)
            .collect(),
    ))
}

/// A campaign to create (or schedule, with `at`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCampaignRequest {
    #[schema(example = "Undangan nakes Jakarta")]
    pub name: String,
    /// Template name (`templates/sms/NAME.tera`), checked to render within
    /// `sms.max_segments`.
    #[schema(example = "undangan_registrasi")]
    pub template: String,
    /// Start: RFC 3339, or `YYYY-MM-DD HH:MM` in WIB. Default: now.
    pub at: Option<String>,
    /// Local send window, `HH:MM-HH:MM`. Default `08:00-20:00`.
    pub window: Option<String>,
    /// Province codes; empty = all.
    #[serde(default)]
    pub provinces: Vec<String>,
    /// Professions (case-insensitive); empty = all.
    #[serde(default)]
    pub professions: Vec<String>,
    /// Unsent by then: expired and flagged `deadline` (formats as `at`).
    pub deadline: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedCampaign {
    pub campaign: CampaignView,
    /// Messages enqueued (eligible, validated workers matching the filter
    /// who are not suppressed).
    pub enqueued: u64,
    /// Workers matching the filter who are suppressed (not enqueued).
    pub suppressed: u64,
}

/// Validates the template and filter, creates the campaign and enqueues
/// its audience.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns",
    tag = "operator",
    request_body = CreateCampaignRequest,
    responses(
        (status = 201, description = "Created and enqueued", body = CreatedCampaign),
        (status = 400, description = "Invalid field (name, template, at, window, province, deadline)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn create_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateCampaignRequest>,
) -> Result<(StatusCode, axum::Json<CreatedCampaign>), ApiError> {
    let time = |field: &str, v: &Option<String>| {
        v.as_deref()
            .map(campaign::parse_time)
            .transpose()
            .map_err(|e| ApiError::bad(field, e))
    };
    let window = match &req.window {
        Some(w) => w
            .parse::<Window>()
            .map_err(|e| ApiError::bad("window", e))?,
        None => Window::default(),
    };
    let request = CampaignRequest {
        name: req.name,
        template: req.template,
        at: time("at", &req.at)?,
        window,
        provinces: req.provinces,
        professions: req.professions,
        created_by: caller.name.clone(),
        deadline: time("deadline", &req.deadline)?,
    };
    // Audited (`campaign.create`, the caller) in the creating transaction.
    let crate::store::CreatedCampaign {
        campaign: c,
        enqueued: n,
        suppressed,
    } = campaign::create(
        &state.store,
        &state.api.renderer,
        state.api.max_segments,
        request,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedCampaign {
            campaign: c.into(),
            enqueued: n,
            suppressed,
        }),
    ))
}

/// A campaign with its progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignProgress {
    pub campaign: CampaignView,
    /// Messages of the campaign, all generations.
    pub enqueued: i64,
    /// Messages a gateway accepted at least once.
    pub sent: i64,
    /// Average SMS segments per sent message, to 2 decimals (1.0: every
    /// notice fit one SMS); null before the first send.
    pub segments_per_message: Option<f64>,
    /// Queued, being sent, or sent and awaiting a receipt.
    pub in_flight: i64,
    /// Every status with its count (zeros included).
    pub by_status: BTreeMap<String, i64>,
    /// Open flags by reason.
    pub flagged_by_reason: BTreeMap<String, i64>,
    pub flagged: i64,
    /// Workers not messaged because they were suppressed: left out at
    /// creation, or their queued notice cancelled by a later suppression.
    pub suppressed: i64,
    /// Messages accepted per second over the last 60 s.
    pub throughput_per_sec: f64,
    /// Queued messages / throughput, in seconds. Null when the campaign is
    /// completed or cancelled, nothing is queued, it is paused, or nothing
    /// moves.
    pub eta_seconds: Option<f64>,
    /// Now + ETA, in WIB; null with `eta_seconds`.
    pub eta_wib: Option<String>,
    /// Non-recipients and how many were finally reached, by the reason of
    /// the first failure and by province (README, "Outreach outcomes").
    pub outreach: crate::store::OutreachReport,
}

/// One campaign with counts per status and flag reason, throughput and ETA.
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Campaign and progress", body = CampaignProgress),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn show_campaign(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<CampaignProgress>, ApiError> {
    let c = state.store.campaign(id).await?;
    let r = state.store.campaign_report(id).await?;
    let pace = Pace::of(&state.store, &c, &r).await?;
    Ok(axum::Json(CampaignProgress {
        campaign: c.into(),
        enqueued: r.enqueued,
        sent: r.sent,
        segments_per_message: r.segments_per_message,
        in_flight: r.in_flight(),
        flagged: r.flagged(),
        suppressed: r.suppressed,
        by_status: r.by_status.iter().cloned().collect(),
        flagged_by_reason: r.flagged_by_reason.iter().cloned().collect(),
        throughput_per_sec: pace.throughput_per_sec,
        eta_seconds: pace.eta_seconds,
        eta_wib: pace.eta_wib,
        outreach: state.store.outreach_report(id).await?,
    }))
}

/// A new start for a campaign.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRequest {
    /// New start: RFC 3339, or `YYYY-MM-DD HH:MM` in WIB (as `at` at
    /// creation). Not in the past, and before the campaign's deadline.
    #[schema(example = "2021-01-14 08:00")]
    pub at: String,
}

/// The campaign with its new start.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduledCampaign {
    pub campaign: CampaignView,
    /// Queued messages whose first send moved (each into its recipient's
    /// window after the new start).
    pub rescheduled: u64,
}

/// Moves the start of a campaign that has not finished: its queued
/// messages become due when each recipient's window opens after `at`.
/// Audited. A paused campaign stays paused.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/schedule",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body = ScheduleRequest,
    responses(
        (status = 200, description = "Rescheduled", body = ScheduledCampaign),
        (status = 400, description = "Invalid `at` (not a time, in the past, not before the deadline)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Already completed or cancelled", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn schedule_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ScheduleRequest>,
) -> Result<axum::Json<ScheduledCampaign>, ApiError> {
    let at = campaign::parse_time(req.at.trim()).map_err(|e| ApiError::bad("at", e))?;
    let crate::store::RescheduledCampaign {
        campaign: c,
        retimed: n,
    } = campaign::reschedule(&state.store, id, at, &caller.name).await?;
    Ok(axum::Json(ScheduledCampaign {
        campaign: c.into(),
        rescheduled: n,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Why; shown with the campaign. Default "paused by operator".
    pub reason: Option<String>,
}

async fn control(
    state: &AppState,
    caller: &Caller,
    id: i64,
    action: CampaignAction,
    reason: &str,
) -> Result<axum::Json<CampaignView>, ApiError> {
    let c = state
        .store
        .control_campaign(id, action, reason, &caller.name)
        .await?;
    Ok(axum::Json(c.into()))
}

/// Stops sending (effective within a poll interval; the batch in flight
/// finishes). The body is optional.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/pause",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body(content = Option<PauseRequest>, description = "Optional reason"),
    responses(
        (status = 200, description = "Paused", body = CampaignView),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Not scheduled or running", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn pause_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> Result<axum::Json<CampaignView>, ApiError> {
    let req: PauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest { reason: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad("body", e.to_string()))?
    };
    let reason = req
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "paused by operator".into());
    if reason.chars().count() > 500 {
        return Err(ApiError::bad("reason", "must be at most 500 characters"));
    }
    control(&state, &caller, id, CampaignAction::Pause, &reason).await
}

/// Continues a paused campaign (nothing already sent is sent again): back
/// to `scheduled` while its start is still ahead, else `running`.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/resume",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Running again, or scheduled while its start is ahead", body = CampaignView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Not paused", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn resume_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    control(&state, &caller, id, CampaignAction::Resume, "").await
}

/// Ends every unsent message `cancelled`.
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/cancel",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    responses(
        (status = 200, description = "Cancelled", body = CampaignView),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 409, description = "Already completed or cancelled", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn cancel_campaign(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<CampaignView>, ApiError> {
    control(&state, &caller, id, CampaignAction::Cancel, "").await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Include resolved flags too.
    #[serde(default)]
    pub all: bool,
}

/// Non-recipients of a campaign as CSV, for re-registration outreach.
/// Contains full NIKs, names and numbers by design: it is the outreach
/// list. Every export is audited in the transaction that reads it; names
/// are guarded against spreadsheet formulas ([`crate::export`]).
#[utoipa::path(
    get,
    path = "/api/v1/campaigns/{id}/nonrecipients.csv",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id"), ExportQuery),
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn nonrecipients_csv(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let rows = state
        .store
        .export_flags(Some(id), q.all, &caller.name)
        .await?;
    let body = crate::export::write_nonrecipients(Vec::with_capacity(64 + rows.len() * 96), &rows)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("writing the CSV")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"nonrecipients-campaign-{id}.csv\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

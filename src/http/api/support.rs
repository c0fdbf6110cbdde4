//! The help desk's API (role `support`): search, a worker's timeline,
//! resend, and resolving a flag. Thin wrappers over the store functions
//! (`Store::search_workers`, `timeline`, `resend`, `resolve_flag`), which the
//! support web UI calls too. Search terms travel in the body, never the URL.

use crate::domain::notice::FreeText;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use crate::http::AppState;
use crate::store::{
    QueuedNotice, SearchKind, SearchResults, Timeline, TimelineFlag, WorkerSummary,
};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// A full NIK, a phone number in any usual form, or at least 3
    /// characters of a name (case-insensitive substring).
    #[schema(example = "Siti")]
    pub query: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchAnswer {
    /// How the query was read.
    pub kind: SearchKind,
    /// Masked summaries, by name; at most `limit`.
    pub results: Vec<WorkerSummary>,
    pub limit: i64,
}

/// Searches health workers by NIK, phone or name.
#[utoipa::path(
    post,
    path = "/api/v1/support/search",
    tag = "support",
    request_body = SearchRequest,
    responses(
        (status = 200, description = "Masked matches (possibly none)", body = SearchAnswer),
        (status = 400, description = "Query too short (under 3 characters), too long, or too broad to answer within the search time limit", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn search(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<axum::Json<SearchAnswer>, ApiError> {
    let SearchResults {
        kind,
        workers: results,
    } = state.store.search_workers(&req.query).await?;
    Ok(axum::Json(SearchAnswer {
        kind,
        results,
        limit: state.store.limits().search_rows,
    }))
}

/// Everything that happened to one worker: messages with attempts and
/// receipts, flags, phone changes, resends and audit entries, with who did
/// what. Personal data masked.
#[utoipa::path(
    get,
    path = "/api/v1/support/workers/{id}/timeline",
    tag = "support",
    params(("id" = i64, Path, description = "Worker id from a search result")),
    responses(
        (status = 200, description = "The worker's timeline", body = Timeline),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such worker", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn timeline(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<Timeline>, ApiError> {
    Ok(axum::Json(state.store.timeline(id).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    /// Who asks (the staff member's name); defaults to the token's name.
    pub staff: Option<String>,
    /// Why, for the audit trail.
    #[schema(example = "caller says the phone was off on 13 Jan")]
    pub reason: String,
}

/// The actor recorded for a support action: the staff member, and the token
/// when it is not the staff member's own.
pub(super) fn actor(caller: &Caller, staff: Option<&str>) -> String {
    match staff.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s != caller.name => format!("{s} (via {})", caller.name),
        _ => caller.name.clone(),
    }
}

/// Queues the worker's notice again (a new message generation in the
/// worker's latest campaign), audited with the staff member and reason.
/// Refused while a notice is queued, being sent or awaiting its receipt
/// (409), and past 3 extra notices per phone number in 24 hours (429).
#[utoipa::path(
    post,
    path = "/api/v1/support/workers/{id}/resend",
    tag = "support",
    params(("id" = i64, Path, description = "Worker id")),
    request_body = ResendRequest,
    responses(
        (status = 201, description = "Queued", body = QueuedNotice),
        (status = 400, description = "Missing reason", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such worker", body = ErrorBody),
        (status = 409, description = "A notice is still in flight", body = ErrorBody),
        (status = 422, description = "Not validated, not eligible, or in no open campaign", body = ErrorBody),
        (status = 429, description = "The number's daily limit; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn resend(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ResendRequest>,
) -> Result<(StatusCode, axum::Json<QueuedNotice>), ApiError> {
    let staff = actor(&caller, req.staff.as_deref());
    let notice = state
        .store
        .resend(
            id,
            &FreeText::staff(&staff)?,
            &FreeText::reason(&req.reason)?,
        )
        .await?;
    tracing::info!(token = %caller.name, worker.id = id, message.id = notice.message_id, "support resend");
    Ok((StatusCode::CREATED, axum::Json(notice)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// Who resolves it; defaults to the token's name.
    pub staff: Option<String>,
    /// What was done, for the audit trail.
    #[schema(example = "registered by phone with the help desk")]
    pub note: String,
}

/// Marks a non-recipient flag resolved (`support`) with a note, audited.
#[utoipa::path(
    post,
    path = "/api/v1/support/flags/{id}/resolve",
    tag = "support",
    params(("id" = i64, Path, description = "Flag id (from the timeline)")),
    request_body = ResolveRequest,
    responses(
        (status = 200, description = "Resolved", body = TimelineFlag),
        (status = 400, description = "Missing note", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such flag", body = ErrorBody),
        (status = 409, description = "Already resolved", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn resolve_flag(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ResolveRequest>,
) -> Result<axum::Json<TimelineFlag>, ApiError> {
    let staff = actor(&caller, req.staff.as_deref());
    Ok(axum::Json(
        state
            .store
            .resolve_flag(id, &FreeText::staff(&staff)?, &FreeText::note(&req.note)?)
            .await?,
    ))
}

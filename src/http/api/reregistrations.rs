//! Chatbot re-registrations after the chatbot: operators list and export
//! the pending ones for One Data validation (role `operator`); support
//! staff see a worker's re-registrations and failed-attempt locks, lift a
//! lock and approve a pending re-registration (role `support`). Thin
//! wrappers over the store (`Store::reregistrations`,
//! `export_pending_reregistrations`, `reregistration_locks`,
//! `lift_reregistration_lock`, `approve_reregistration`), which the CLI and
//! the support web UI call too; every change is audited there.

use crate::domain::notice::FreeText;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
use crate::http::AppState;
use crate::store::{
    QueuedNotice, ReregisterOutcome, ReregisterState, ReregistrationLock, ReregistrationView,
};

/// Most rows a list returns.
const LIST_LIMIT: i64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// pending (default), confirmed, approved, superseded, applied, or all.
    pub status: Option<String>,
}

/// Re-registrations (masked), newest first; pending ones by default.
#[utoipa::path(
    get,
    path = "/api/v1/reregistrations",
    tag = "operator",
    params(ListQuery),
    responses(
        (status = 200, description = "Masked re-registrations, at most 500", body = Vec<ReregistrationView>),
        (status = 400, description = "Unknown status", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<axum::Json<Vec<ReregistrationView>>, ApiError> {
    let status = match q.status.as_deref() {
        None => Some("pending"),
        Some("all") => None,
        Some(s) => Some(s),
    };
    Ok(axum::Json(
        state
            .store
            .reregistrations(status, None, LIST_LIMIT)
            .await?,
    ))
}

/// Pending re-registrations in full (NIK, name, old and new number) as
/// CSV, for One Data validation: the validators need the data. Audited;
/// names guarded against spreadsheet formulas ([`crate::export`]).
#[utoipa::path(
    get,
    path = "/api/v1/reregistrations/pending.csv",
    tag = "operator",
    responses(
        (status = 200, description = "CSV with a header row", content_type = "text/csv", body = String),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn pending_csv(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let rows = state
        .store
        .export_pending_reregistrations(&caller.name)
        .await?;
    let body =
        crate::export::write_reregistrations(Vec::with_capacity(64 + rows.len() * 96), &rows)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("writing the CSV")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"reregistrations-pending.csv\"".to_string(),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response())
}

/// A worker's re-registrations and the locks on them, for support staff.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerReregistrations {
    /// Newest first, masked.
    pub reregistrations: Vec<ReregistrationView>,
    /// Failed-attempt locks on the worker's NIK, and on numbers that failed
    /// with it; newest first (`active` tells which still hold).
    pub locks: Vec<ReregistrationLock>,
}

/// A worker's re-registrations (pending, confirmed, …) and failed-attempt
/// locks.
#[utoipa::path(
    get,
    path = "/api/v1/support/workers/{id}/reregistrations",
    tag = "support",
    params(("id" = i64, Path, description = "Worker id")),
    responses(
        (status = 200, description = "Re-registrations and locks", body = WorkerReregistrations),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such worker", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn worker(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<axum::Json<WorkerReregistrations>, ApiError> {
    state.store.worker(id).await?;
    Ok(axum::Json(WorkerReregistrations {
        reregistrations: state.store.reregistrations(None, Some(id), 50).await?,
        locks: state.store.reregistration_locks(Some(id), false).await?,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LocksQuery {
    /// Include lifted and expired locks.
    #[serde(default)]
    pub all: bool,
}

/// Failed-attempt locks, newest first (active ones unless `all`),
/// including those on NIKs and numbers that match no worker.
#[utoipa::path(
    get,
    path = "/api/v1/support/reregistration-locks",
    tag = "support",
    params(LocksQuery),
    responses(
        (status = 200, description = "Locks, at most 200", body = Vec<ReregistrationLock>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn locks(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LocksQuery>,
) -> Result<axum::Json<Vec<ReregistrationLock>>, ApiError> {
    Ok(axum::Json(
        state.store.reregistration_locks(None, !q.all).await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiftRequest {
    /// Who lifts it; defaults to the token's name.
    pub staff: Option<String>,
    /// Why, for the audit trail.
    #[schema(example = "worker called the help desk and showed her KTP")]
    pub reason: String,
}

/// Lifts a failed-attempt lock (audited) and forgets its failures: the
/// person gets 5 fresh attempts.
#[utoipa::path(
    post,
    path = "/api/v1/support/reregistration-locks/{id}/lift",
    tag = "support",
    params(("id" = i64, Path, description = "Lock id")),
    request_body = LiftRequest,
    responses(
        (status = 200, description = "Lifted", body = ReregistrationLock),
        (status = 400, description = "Missing reason", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such lock", body = ErrorBody),
        (status = 409, description = "Already lifted or expired", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn lift(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<LiftRequest>,
) -> Result<axum::Json<ReregistrationLock>, ApiError> {
    let staff = super::support::actor(&caller, req.staff.as_deref());
    let l = state
        .store
        .lift_reregistration_lock(
            id,
            &FreeText::staff(&staff)?,
            &FreeText::reason(&req.reason)?,
        )
        .await?;
    tracing::info!(token = %caller.name, lock.id = id, "re-registration lock lifted");
    Ok(axum::Json(l))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    /// Who approves it; defaults to the token's name.
    pub staff: Option<String>,
    /// How the new number was validated, for the audit trail.
    #[schema(example = "called the facility; the number is hers")]
    pub note: String,
}

/// What an approval did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApproveAnswer {
    pub status: ReregisterState,
    pub reregistration_id: i64,
    pub phone_masked: String,
    pub phone_changed: bool,
    pub flags_resolved: u64,
    pub superseded: u64,
    pub notice: Option<QueuedNotice>,
}

impl From<ReregisterOutcome> for ApproveAnswer {
    fn from(o: ReregisterOutcome) -> Self {
        ApproveAnswer {
            status: o.state,
            reregistration_id: o.reregistration_id,
            phone_masked: o.phone_masked,
            phone_changed: o.phone_changed,
            flags_resolved: o.flags_resolved,
            superseded: o.superseded,
            notice: o.notice,
        }
    }
}

/// Approves a pending re-registration (support staff validated the new
/// number themselves): the number goes on file and the notice is queued to
/// it, audited with the staff member and note.
#[utoipa::path(
    post,
    path = "/api/v1/support/reregistrations/{id}/approve",
    tag = "support",
    params(("id" = i64, Path, description = "Re-registration id")),
    request_body = ApproveRequest,
    responses(
        (status = 200, description = "Applied", body = ApproveAnswer),
        (status = 400, description = "Missing note", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a support token", body = ErrorBody),
        (status = 404, description = "No such re-registration", body = ErrorBody),
        (status = 409, description = "Not pending", body = ErrorBody),
        (status = 429, description = "The number's daily notice limit; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = ["support"]))
)]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<ApproveRequest>,
) -> Result<axum::Json<ApproveAnswer>, ApiError> {
    let staff = super::support::actor(&caller, req.staff.as_deref());
    let o = state
        .store
        .approve_reregistration(id, &FreeText::staff(&staff)?, &FreeText::note(&req.note)?)
        .await?;
    tracing::info!(token = %caller.name, reregistration.id = id, "re-registration approved");
    Ok(axum::Json(o.into()))
}

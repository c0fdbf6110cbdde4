//! Erasure of one worker's personal data through the API (role
//! `operator`): the same store call as `pedulicovid erase`
//! ([`crate::store::Store::erase_worker`]). The NIK travels in the body,
//! never in the URL, and is never logged.

use axum::extract::State;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::domain::notice::FreeText;
use crate::domain::Nik;
use crate::http::AppState;
use crate::store::Erasure;

/// Whose data to erase, and why.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The worker's NIK (16 digits).
    #[schema(example = "3174051203870001")]
    pub nik: String,
    /// Why (required; kept in the audit trail without the NIK, numbers or
    /// name).
    #[schema(example = "erasure request under UU PDP, ticket 2021-118")]
    pub reason: String,
    /// Who asks, when not the token's own name (audited as `NAME (via
    /// TOKEN)`).
    pub operator: Option<String>,
}

/// Erases the personal data of the worker with this NIK: NIK, name and
/// phone numbers are replaced by tombstones in every table (README,
/// "Erasure"), queued notices are cancelled, and the erasure is audited
/// `worker.erase` under `worker:<id>`. Answers what was changed, with the
/// worker's numeric id.
#[utoipa::path(
    post,
    path = "/api/v1/workers/erase",
    tag = "operator",
    request_body = EraseRequest,
    responses(
        (status = 200, description = "Erased", body = Erasure),
        (status = 400, description = "Malformed NIK, missing reason", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No live worker with this NIK (unknown, or already erased)", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn erase(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<EraseRequest>,
) -> Result<axum::Json<Erasure>, ApiError> {
    let nik = Nik::parse(&req.nik).map_err(|e| ApiError::bad("nik", format!("NIK {e}")))?;
    let reason = FreeText::reason(&req.reason)?;
    let actor = super::support::actor(&caller, req.operator.as_deref());
    let erasure = state
        .store
        .erase_worker(&nik, &FreeText::staff(&actor)?, &reason)
        .await?;
    tracing::info!(token = %caller.name, worker.id = erasure.worker_id, "worker erased");
    Ok(axum::Json(erasure))
}

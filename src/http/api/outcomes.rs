//! Outreach outcomes over the API: one flag's outcome (operator or
//! support), and the outreach team's CSV for one campaign (operator). The
//! store applies them with their audit entries ([`crate::store`]'s
//! `outcomes`), the CSV as `flags import-outcomes` does
//! ([`crate::outreach`]).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Method;
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ApiPath, ErrorBody};
use super::support::actor;
use super::{route, Line, OPERATOR};
use crate::domain::notice::FreeText;
use crate::domain::outcome::Outcome;
use crate::http::AppState;
use crate::outreach::{OutcomeImportError, OutcomeImportReport};
use crate::store::{NewOutcome, RecordedOutcome, Role};

/// Operators and help-desk staff (who take the calls).
const OPERATOR_SUPPORT: &[Role] = &[Role::Operator, Role::Support];

/// The routes of this module, for [`super::api_routes`].
pub(super) fn routes() -> Vec<Line> {
    vec![
        route(
            Method::POST,
            "/api/v1/flags/{id}/outcome",
            OPERATOR_SUPPORT,
            record_outcome,
        ),
        route(
            Method::POST,
            "/api/v1/campaigns/{id}/outcomes",
            OPERATOR,
            import_outcomes,
        ),
    ]
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutcomeRequest {
    /// `reregistered`, `reached_by_phone`, `unreachable` or `declined`.
    #[schema(example = "reached_by_phone")]
    pub outcome: String,
    /// What the outreach team noted.
    pub note: Option<String>,
    /// Who recorded it; defaults to the token's name.
    pub staff: Option<String>,
}

/// Records what outreach found for a non-recipient flag, audited. A later
/// outcome replaces an earlier one. `reregistered`, `reached_by_phone`
/// and `declined` resolve an open flag (`outreach`), so the chatbot stops
/// offering re-registration; `unreachable` leaves it open (and opens again
/// a flag an earlier outcome resolved).
#[utoipa::path(
    post,
    path = "/api/v1/flags/{id}/outcome",
    tag = "operator",
    params(("id" = i64, Path, description = "Flag id (the export's flag_id)")),
    request_body = OutcomeRequest,
    responses(
        (status = 200, description = "Recorded", body = RecordedOutcome),
        (status = 400, description = "Unknown outcome, note or staff too long", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator or support token", body = ErrorBody),
        (status = 404, description = "No such flag", body = ErrorBody),
    ),
    security(("bearer" = ["operator", "support"]))
)]
pub async fn record_outcome(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(req): ApiJson<OutcomeRequest>,
) -> Result<axum::Json<RecordedOutcome>, ApiError> {
    let outcome = Outcome::parse(&req.outcome).map_err(|e| ApiError::bad("outcome", e.0))?;
    let note = match req.note.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(n) => Some(FreeText::note(n)?),
    };
    let staff = FreeText::staff(&actor(&caller, req.staff.as_deref()))?;
    let new = NewOutcome {
        flag_id: id,
        outcome,
        note,
    };
    let r = state.store.record_flag_outcome(&new, None, &staff).await?;
    tracing::info!(token = %caller.name, flag.id = id, outcome = %outcome, "outreach outcome");
    Ok(axum::Json(r))
}

/// The outreach team's CSV for campaign `id` (`flag_id,outcome[,note]`,
/// header required, other columns ignored): every row whose flag exists
/// and belongs to this campaign is recorded, all in one transaction; the
/// others are rejected with their line, field and reason (a flag of
/// another campaign included). 200 with the report either way; the whole
/// file is refused (400) only when it cannot be read (no header, a
/// missing column). At most `http.body_limit_bytes` (413).
#[utoipa::path(
    post,
    path = "/api/v1/campaigns/{id}/outcomes",
    tag = "operator",
    params(("id" = i64, Path, description = "Campaign id")),
    request_body(content = String, content_type = "text/csv", description = "flag_id,outcome[,note] with a header line"),
    responses(
        (status = 200, description = "Good rows recorded; rejected rows listed", body = OutcomeImportReport),
        (status = 400, description = "No header, or a required column missing (field `body`)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "No such campaign", body = ErrorBody),
        (status = 413, description = "Body over `http.body_limit_bytes`", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn import_outcomes(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<i64>,
    body: Bytes,
) -> Result<axum::Json<OutcomeImportReport>, ApiError> {
    // The campaign first: rows of an unknown campaign would all be
    // "another campaign".
    state.store.campaign(id).await?;
    let staff = FreeText::staff(&caller.name)?;
    let (report, _) = crate::outreach::import_outcomes(&state.store, &body[..], Some(id), &staff)
        .await
        .map_err(|e| match e {
            OutcomeImportError::Store(s) => s.into(),
            other => ApiError::bad("body", other.to_string()),
        })?;
    tracing::info!(token = %caller.name, campaign.id = id, recorded = report.recorded,
        rejected = report.rejected_rows, "outreach outcomes imported");
    Ok(axum::Json(report))
}

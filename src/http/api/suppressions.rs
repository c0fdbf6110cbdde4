//! The suppression list over HTTP: operators add, remove, list and import
//! entries; the chatbot records a worker's own opt-out ("BERHENTI").
//!
//! Numbers and NIKs travel in JSON or CSV bodies only, never in a URL, and
//! leave masked. The chatbot may change exactly one thing: add a `declined`
//! suppression for the WhatsApp number of the conversation. It cannot name
//! a NIK, another reason, an expiry, or remove anything, and its answer is
//! the same whether or not the number belongs to a registered worker.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::{ApiError, ApiJson, ErrorBody};
use crate::http::AppState;
use crate::registry::Rejection;
use crate::store::{now_ms, SuppressionView};
use crate::suppression::{self, NewSuppression, SuppressionReason, SuppressionTarget};

/// A suppression to add: exactly one of `phone` and `nik`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    /// A phone number in any usual form (`0812…`, `62812…`, `+62812…`).
    #[schema(example = "081234567890")]
    pub phone: Option<String>,
    /// A NIK (16 digits).
    pub nik: Option<String>,
    pub reason: SuppressionReason,
    /// Last day it applies (`YYYY-MM-DD`, through the end of that day in
    /// WIB) or an RFC 3339 time; absent: until removed.
    pub until: Option<String>,
    /// For people; no personal data.
    #[serde(default)]
    pub note: String,
}

/// What adding did.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressAnswer {
    pub suppression: SuppressionView,
    /// False: already suppressed; that entry was kept as it was.
    pub created: bool,
    /// Queued notices cancelled.
    pub cancelled: u64,
    /// Open non-recipient flags resolved `suppressed`.
    pub flags_resolved: u64,
}

fn target(phone: Option<&str>, nik: Option<&str>) -> Result<SuppressionTarget, ApiError> {
    SuppressionTarget::from_parts(phone, nik).map_err(|(field, why)| ApiError::bad(field, why))
}

/// Adds a number or a NIK to the suppression list (audited with the
/// token's name): queued notices it covers are cancelled and open flags
/// resolved, in the same transaction.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions",
    tag = "operator",
    request_body = SuppressRequest,
    responses(
        (status = 201, description = "Added", body = SuppressAnswer),
        (status = 200, description = "Already suppressed: the entry in force, unchanged", body = SuppressAnswer),
        (status = 400, description = "Invalid field (phone, nik, reason, until, note)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn add_suppression(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SuppressRequest>,
) -> Result<(StatusCode, axum::Json<SuppressAnswer>), ApiError> {
    let new = NewSuppression {
        target: target(req.phone.as_deref(), req.nik.as_deref())?,
        reason: req.reason,
        note: suppression::check_note(&req.note).map_err(|e| ApiError::bad("note", e))?,
        expires_at: req
            .until
            .as_deref()
            .map(|u| suppression::parse_until(u, now_ms()))
            .transpose()
            .map_err(|e| ApiError::bad("until", e))?,
        added_by: format!("{}:{}", caller.role, caller.name),
    };
    let done = state.store.suppress(&new).await?;
    tracing::info!(token = %caller.name, suppression.id = done.entry.id, created = done.created,
        kind = %done.entry.kind, value = %done.entry.value_masked, "suppression added");
    Ok((
        if done.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        axum::Json(SuppressAnswer {
            suppression: done.entry,
            created: done.created,
            cancelled: done.cancelled,
            flags_resolved: done.flags_resolved,
        }),
    ))
}

/// Which suppression to end: exactly one of `phone` and `nik`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsuppressRequest {
    pub phone: Option<String>,
    pub nik: Option<String>,
    /// Why (kept in the audit trail).
    #[serde(default)]
    pub note: String,
}

/// Ends the suppression in force for a number or a NIK (audited).
#[utoipa::path(
    post,
    path = "/api/v1/suppressions/remove",
    tag = "operator",
    request_body = UnsuppressRequest,
    responses(
        (status = 200, description = "Removed", body = SuppressionView),
        (status = 400, description = "Invalid field (phone, nik, note)", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
        (status = 404, description = "Not suppressed", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn remove_suppression(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<UnsuppressRequest>,
) -> Result<axum::Json<SuppressionView>, ApiError> {
    let t = target(req.phone.as_deref(), req.nik.as_deref())?;
    let note = suppression::check_note(&req.note).map_err(|e| ApiError::bad("note", e))?;
    let actor = format!("{}:{}", caller.role, caller.name);
    Ok(axum::Json(state.store.unsuppress(&t, &actor, &note).await?))
}

/// `?all=true`: removed and expired entries too.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    pub all: bool,
}

/// Suppressions in force (or all with `?all=true`), newest first, masked.
#[utoipa::path(
    get,
    path = "/api/v1/suppressions",
    tag = "operator",
    params(ListQuery),
    responses(
        (status = 200, description = "Entries, numbers and NIKs masked", body = Vec<SuppressionView>),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn list_suppressions(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<SuppressionView>>, ApiError> {
    Ok(axum::Json(state.store.suppressions(q.all).await?))
}

/// What a CSV import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportAnswer {
    pub rows: u64,
    pub added: u64,
    /// Already suppressed (kept as they were).
    pub already: u64,
    pub cancelled: u64,
    pub flags_resolved: u64,
    pub rejected_rows: usize,
    /// Each refused row: line, field, reason.
    #[schema(value_type = Vec<Object>)]
    pub rejections: Vec<Rejection>,
}

/// Adds suppressions from a CSV body (`text/csv`; header with `phone`
/// and/or `nik`, `reason`, optional `until`, `note`). Bad rows are
/// answered with line, field and reason; the good ones land in one
/// transaction.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions/import",
    tag = "operator",
    request_body(content = String, content_type = "text/csv"),
    responses(
        (status = 200, description = "Good rows added; bad rows listed", body = ImportAnswer),
        (status = 400, description = "No usable header", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an operator token", body = ErrorBody),
    ),
    security(("bearer" = ["operator"]))
)]
pub async fn import_suppressions(
    State(state): State<AppState>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<axum::Json<ImportAnswer>, ApiError> {
    let actor = format!("{}:{}", caller.role, caller.name);
    let parsed = suppression::parse_import(&body[..], &actor, now_ms())
        .map_err(|e| ApiError::bad("body", e))?;
    let entries: Vec<_> = parsed.entries.into_iter().map(|(_, e)| e).collect();
    let done = state.store.suppress_many(&entries).await?;
    Ok(axum::Json(ImportAnswer {
        rows: parsed.rows,
        added: done.added,
        already: done.already,
        cancelled: done.cancelled,
        flags_resolved: done.flags_resolved,
        rejected_rows: parsed.rejections.len(),
        rejections: parsed.rejections,
    }))
}

/// A worker's own opt-out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OptOutRequest {
    /// The WhatsApp number of this conversation, as WhatsApp gave it to the
    /// chatbot: the only number an opt-out can stop.
    #[schema(example = "+6281234567890")]
    pub whatsapp_phone: String,
}

/// The chatbot's answer to an opt-out.
#[derive(Debug, Serialize, ToSchema)]
pub struct OptOutAnswer {
    /// Always true: the number is suppressed now (or already was).
    pub suppressed: bool,
    /// The number, masked.
    pub phone_masked: String,
    /// What to tell the person, in Indonesian.
    pub advice: String,
}

/// Shown after an opt-out.
pub const ADVICE_OPTED_OUT: &str = "Nomor Anda tidak akan menerima SMS PEDULICOVID lagi. Jika berubah pikiran, hubungi dinas kesehatan atau fasyankes tempat Anda bekerja, atau daftar langsung di pedulilindungi.id.";

/// "BERHENTI": the person writing to the chatbot asks not to be messaged.
/// Adds a `declined` suppression for the conversation's WhatsApp number
/// (audited with the chatbot token), cancelling notices queued to it. An
/// existing suppression of the number is kept unchanged. The answer is the
/// same whether or not a worker has the number.
#[utoipa::path(
    post,
    path = "/api/v1/chatbot/opt-out",
    tag = "chatbot",
    request_body = OptOutRequest,
    responses(
        (status = 200, description = "The number is suppressed", body = OptOutAnswer),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not a chatbot token", body = ErrorBody),
        (status = 429, description = "Over the per-token rate; see Retry-After", body = ErrorBody),
    ),
    security(("bearer" = ["chatbot"]))
)]
pub async fn opt_out(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<OptOutRequest>,
) -> Result<axum::Json<OptOutAnswer>, ApiError> {
    let t = target(Some(&req.whatsapp_phone), None)
        .map_err(|_| ApiError::bad("whatsapp_phone", "not an Indonesian mobile number"))?;
    let new = NewSuppression {
        target: t,
        reason: SuppressionReason::Declined,
        note: "BERHENTI (chatbot)".into(),
        expires_at: None,
        added_by: format!("{}:{}", caller.role, caller.name),
    };
    let done = state.store.suppress(&new).await?;
    tracing::info!(token = %caller.name, phone = %done.entry.value_masked, created = done.created,
        cancelled = done.cancelled, "opt-out recorded");
    Ok(axum::Json(OptOutAnswer {
        suppressed: true,
        phone_masked: done.entry.value_masked,
        advice: ADVICE_OPTED_OUT.into(),
    }))
}

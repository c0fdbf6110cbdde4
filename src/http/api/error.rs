//! One error type for the whole API, and extractors whose rejections use it.
//!
//! Every error answers JSON `{"error": "…"}` (400 adds `field` and
//! `reason`). A 500 says nothing about its cause; the cause travels in the
//! response extensions to [`log_internal_error`], which logs it once.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::campaign::CampaignError;
use crate::store::{scrub, StoreError, SupportError};

/// What every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for the developer reading the response.
    pub error: String,
    /// For 400: the request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For 400: why that field is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Every way an API request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400, naming the field.
    #[error("{field}: {reason}")]
    BadRequest { field: String, reason: String },
    /// 401: no token, an unknown one, or a revoked one.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token whose role this route does not accept.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than `http.body_limit_bytes`.
    #[error("request body too large")]
    TooLarge,
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 500; the cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn bad(field: &str, reason: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The cause of a 500, handed from [`ApiError::into_response`] to
/// [`log_internal_error`] in the response extensions.
#[derive(Clone)]
struct InternalCause(String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::BadRequest { field, reason } => ErrorBody {
                error: format!("{field}: {reason}"),
                field: Some(field.clone()),
                reason: Some(reason.clone()),
            },
            other => ErrorBody {
                error: other.to_string(),
                field: None,
                reason: None,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        match self {
            ApiError::TooManyRequests {
                retry_after_secs, ..
            } => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            ApiError::Unauthorized(_) => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Internal(e) => {
                // Masked: a database error may quote a value.
                resp.extensions_mut()
                    .insert(InternalCause(scrub(&format!("{e:#}"))));
            }
            _ => {}
        }
        resp
    }
}

/// Logs the cause of a 500 once (called by [`crate::http::access::edge`]
/// inside the request's span), with the method, the route template (never
/// the path, which may carry a callback token) and the request id as its
/// own fields: the span is INFO, and a log filtered to WARN drops it.
pub(crate) fn log_internal_error(
    resp: &Response,
    method: &axum::http::Method,
    route: &str,
    request_id: &str,
) {
    if let Some(InternalCause(cause)) = resp.extensions().get::<InternalCause>() {
        tracing::error!(%method, route, request_id, error = %cause, "request failed");
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(why) => ApiError::Conflict(why),
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A free-text field refused before the store was asked: the same 400,
/// naming the field, as [`SupportError::Invalid`].
impl From<crate::domain::notice::InvalidText> for ApiError {
    fn from(e: crate::domain::notice::InvalidText) -> Self {
        SupportError::from(e).into()
    }
}

impl From<SupportError> for ApiError {
    fn from(e: SupportError) -> Self {
        match e {
            SupportError::Invalid { field, reason } => ApiError::bad(field, reason),
            SupportError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            SupportError::InFlight(m) | SupportError::Conflict(m) => ApiError::Conflict(m),
            SupportError::NotEligible(m) => ApiError::Unprocessable(m),
            SupportError::Limit { message, retry_at } => {
                let wait_ms = (retry_at - crate::store::now_ms()).max(0);
                ApiError::TooManyRequests {
                    message,
                    retry_after_secs: (wait_ms as u64).div_ceil(1000),
                }
            }
            SupportError::Store(s) => s.into(),
        }
    }
}

impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Invalid { field, reason } => ApiError::bad(field, reason),
            CampaignError::Template(t) => ApiError::bad("template", t.to_string()),
            CampaignError::Store(s) => s.into(),
        }
    }
}

/// `axum::Json` whose rejection is an [`ApiError`] (field `body`).
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) if rej.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::TooLarge),
            Err(rej) => Err(ApiError::bad("body", rej.body_text())),
        }
    }
}

/// `axum::extract::Path` whose rejection is an [`ApiError`] (field `path`).
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(ApiPath(v)),
            Err(rej) => Err(ApiError::bad("path", rej.body_text())),
        }
    }
}

/// `axum::extract::Query` whose rejection is an [`ApiError`] (field `query`).
pub struct ApiQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(rej) => Err(ApiError::bad("query", rej.body_text())),
        }
    }
}

/// The JSON answer for a path no route serves.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}

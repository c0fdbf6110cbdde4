//! The HTTP surface: receipt callbacks, the JSON API ([`api`]: chatbot,
//! support, operators, OpenAPI document), `/metrics`, health and readiness.
//! Every route, old and new, is behind the same body-size and time limits.

pub mod api;
mod batcher;
mod callbacks;
mod serve;
pub mod ui;

pub use batcher::ReceiptBatcher;
pub use serve::serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::gateway::ReceiptParser;
use crate::secret::Secret;
use crate::store::Store;

/// How receipts for one gateway are checked and read.
#[derive(Clone)]
pub struct CallbackGateway {
    /// Token carriers present in the callback path or `X-Callback-Token`.
    pub secret: Secret,
    /// Reads this gateway's callbacks (its dialect, its field mapping).
    pub parser: Arc<dyn ReceiptParser>,
    /// This gateway's `/metrics` counters, looked up once.
    pub metrics: Arc<crate::metrics::GatewayMetrics>,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub callbacks: Arc<HashMap<String, CallbackGateway>>,
    /// Group-commits receipts.
    pub receipts: ReceiptBatcher,
    /// Tokens, rate limits, renderer and caches of the API.
    pub api: api::ApiState,
}

/// Builds the router with body-size and time limits on every route.
pub fn router(state: AppState, body_limit: usize, timeout: Duration) -> Router {
    api::routes(&state)
        .merge(ui::routes())
        .route(
            "/callbacks/{gateway}/{token}",
            get(callbacks::receipt).post(callbacks::receipt),
        )
        .route(
            "/callbacks/{gateway}",
            get(callbacks::receipt_header_token).post(callbacks::receipt_header_token),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(api::error::not_found)
        .layer(axum::middleware::from_fn(api::error::log_internal_errors))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ready().await {
        Ok(true) => (StatusCode::OK, "ready"),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

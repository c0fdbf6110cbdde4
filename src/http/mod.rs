//! The HTTP surface: receipt callbacks, health and readiness.

mod batcher;
mod callbacks;

pub use batcher::ReceiptBatcher;

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

use crate::secret::Secret;
use crate::store::Store;

/// How receipts for one gateway are checked and read.
#[derive(Debug, Clone)]
pub struct CallbackGateway {
    /// Token carriers present in the callback path or `X-Callback-Token`.
    pub secret: Secret,
    /// The dialect whose parser reads this gateway's callbacks.
    pub dialect: String,
}

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub callbacks: Arc<HashMap<String, CallbackGateway>>,
    /// Group-commits receipts.
    pub receipts: ReceiptBatcher,
}

/// Builds the router with body-size and time limits on every route.
pub fn router(state: AppState, body_limit: usize, timeout: Duration) -> Router {
    Router::new()
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

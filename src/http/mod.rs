//! The HTTP surface: receipt callbacks, the JSON API ([`api`]: chatbot,
//! support, operators, OpenAPI document), the support UI ([`ui`]),
//! `/metrics`, health and readiness. Every route is a line of a table
//! ([`routes`]) and behind the same body-size and time limits.

mod access;
pub mod api;
mod batcher;
mod callbacks;
pub mod routes;
mod serve;
pub mod ui;

pub use access::REQUEST_ID;
pub use batcher::ReceiptBatcher;
pub use routes::{route_table, Auth, RouteSpec};
pub use serve::{serve, serve_with, ServerTls};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::gateway::callback::CallbackKeys;
use crate::gateway::ReceiptParser;
use crate::store::Store;

/// How receipts for one gateway are checked and read.
#[derive(Clone)]
pub struct CallbackGateway {
    /// The gateway's callback secrets: the gateway-wide token carriers
    /// present in the callback path or `X-Callback-Token`, and the key of
    /// the per-message MAC in the URLs we hand out.
    pub keys: Arc<CallbackKeys>,
    /// Reads this gateway's callbacks (its dialect, its field mapping).
    pub parser: Arc<dyn ReceiptParser>,
    /// This gateway's `/metrics` counters, looked up once.
    pub metrics: Arc<crate::metrics::GatewayMetrics>,
}

/// Shared state of the HTTP handlers: one reference count to clone (axum
/// clones the state for every request; cloning each field was a few
/// per cent of a receipt's CPU).
#[derive(Clone)]
pub struct AppState(Arc<AppStateParts>);

impl AppState {
    pub fn new(parts: AppStateParts) -> AppState {
        AppState(Arc::new(parts))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppStateParts;

    fn deref(&self) -> &AppStateParts {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct AppStateParts {
    pub store: Store,
    pub callbacks: Arc<HashMap<String, CallbackGateway>>,
    /// Group-commits receipts.
    pub receipts: ReceiptBatcher,
    /// Tokens, rate limits, renderer and caches of the API.
    pub api: api::ApiState,
    /// The UI marks every cookie `Secure` ([`ui::session::secure_cookies`]).
    pub ui_secure_cookies: bool,
}

/// Health, readiness, metrics and the carrier callbacks, with handlers.
fn service_routes() -> Vec<routes::Line> {
    use routes::{line, Auth::*};
    use Method as M;
    vec![
        line(M::GET, "/healthz", Public, healthz),
        line(M::GET, "/readyz", Public, readyz),
        line(M::GET, "/metrics", Public, api::metrics::metrics),
        line(
            M::GET,
            "/callbacks/{gateway}/{token}",
            CallbackToken,
            callbacks::receipt_get,
        ),
        line(
            M::POST,
            "/callbacks/{gateway}/{token}",
            CallbackToken,
            callbacks::receipt_post,
        ),
        line(
            M::GET,
            "/callbacks/{gateway}",
            CallbackToken,
            callbacks::receipt_header_token_get,
        ),
        line(
            M::POST,
            "/callbacks/{gateway}",
            CallbackToken,
            callbacks::receipt_header_token_post,
        ),
    ]
}

/// Builds the router from the route tables, with body-size and time limits,
/// request ids and the access log ([`access`]) on every route.
pub fn router(state: AppState, body_limit: usize, timeout: Duration) -> Router {
    api::routes(&state)
        .merge(ui::routes(state.ui_secure_cookies))
        .merge(routes::build(service_routes()))
        .fallback(not_found)
        // One `layer` call for the three: axum boxes every route once per
        // call, and clones and boxes each level again for every request
        // (three calls cost a receipt callback ~15 allocations more).
        // Listed outermost first: the access log sees every answer,
        // timeouts and refused bodies included, under the request's id.
        .layer(
            ServiceBuilder::new()
                .layer(axum::middleware::from_fn(access::edge))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    timeout,
                ))
                // The limit wraps the answer's body in its own type; the
                // layers above it take axum's.
                .map_response(IntoResponse::into_response)
                .layer(RequestBodyLimitLayer::new(body_limit)),
        )
        .with_state(state)
}

/// The router of a process without the HTTP server (`pedulicovid
/// worker`, on `[metrics] listen`): `/metrics` with this process's
/// counters ([`api::metrics::render_process_only`]) and `/healthz`.
pub fn metrics_router() -> Router {
    async fn metrics() -> impl IntoResponse {
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            api::metrics::render_process_only(),
        )
    }
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(axum::middleware::from_fn(access::edge))
}

/// A path no route serves: the UI's Indonesian page under `/ui`, JSON
/// elsewhere.
async fn not_found(uri: Uri) -> Response {
    if uri.path() == "/ui" || uri.path().starts_with("/ui/") {
        ui::not_found().await
    } else {
        api::error::not_found().await.into_response()
    }
}

/// Liveness: the process answers. No token.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "service",
    responses((status = 200, description = "The process is up", content_type = "text/plain", body = String, example = "ok"))
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database is reachable and every migration is applied.
/// No token.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "service",
    responses(
        (status = 200, description = "Ready", content_type = "text/plain", body = String, example = "ready"),
        (status = 503, description = "`migrations pending` or `database unreachable`", content_type = "text/plain", body = String),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ready().await {
        Ok(true) => (StatusCode::OK, "ready"),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

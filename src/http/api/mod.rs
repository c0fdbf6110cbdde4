//! The JSON API under `/api`, and `/metrics`' renderer.
//!
//! # Layout
//! - [`auth`]: bearer tokens → [`auth::Caller`], roles, the chatbot's rate limit.
//! - [`error`]: the one [`error::ApiError`] and extractors that use it.
//! - [`chatbot`]: look-up and re-registration (role `chatbot`).
//! - [`support`]: search, timeline, resend, flag resolution (role `support`).
//! - [`operator`]: campaigns (role `operator`).
//! - [`suppressions`]: the suppression list (operator) and the chatbot's
//!   opt-out.
//! - [`outcomes`]: outreach outcomes on flags (operator, support) and the
//!   outreach team's CSV (operator).
//! - [`erasure`]: erasing one worker's personal data (role `operator`).
//! - [`reregistrations`]: chatbot re-registrations after the chatbot:
//!   validation list/export (operator), locks and approval (support).
//! - [`openapi`]: the generated document at `/api/openapi.json`.
//! - [`metrics`]: `/metrics` (Prometheus).
//!
//! Every route is one line of [`api_routes`]: method, path, the roles it
//! accepts, and the handler. The router is built from that table alone,
//! each route behind a guard for its roles, and `tests/it/api.rs` runs the
//! role matrix on it and checks it (with the other tables, see
//! [`super::routes`]) against the OpenAPI document.

pub mod auth;
pub mod chatbot;
pub mod erasure;
pub mod error;
pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod outcomes;
pub mod reregistrations;
pub mod support;
pub mod suppressions;

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::middleware::from_fn_with_state;
use axum::Router;

use super::routes::{line, Line};
use super::AppState;
use crate::render::Renderer;
use crate::store::Role;

pub use super::routes::{Auth, RouteSpec};
pub use auth::{Caller, CHATBOT_RATE_PER_SEC};
pub use error::ApiError;

/// API state inside [`AppState`].
#[derive(Clone)]
pub struct ApiState {
    /// Campaign creation validates templates with it.
    pub renderer: Arc<Renderer>,
    /// `sms.max_segments`: a campaign template must fit in this many.
    pub max_segments: u32,
    pub access: auth::Access,
    /// `chatbot.reregistration`: validated before use (default) or at once.
    pub reregistration: crate::store::ReregistrationMode,
    gauges: metrics::GaugeCache,
}

impl ApiState {
    pub fn new(renderer: Arc<Renderer>, max_segments: u32) -> ApiState {
        ApiState {
            renderer,
            max_segments,
            access: auth::Access::new(CHATBOT_RATE_PER_SEC),
            reregistration: crate::store::ReregistrationMode::default(),
            gauges: metrics::GaugeCache::default(),
        }
    }

    /// With `limits.chatbot_rate_per_sec` requests a second per chatbot
    /// token.
    pub fn with_chatbot_rate(mut self, per_sec: u32) -> ApiState {
        self.access = auth::Access::new(per_sec);
        self
    }

    /// With the `chatbot.reregistration` mode.
    pub fn with_reregistration(mut self, mode: crate::store::ReregistrationMode) -> ApiState {
        self.reregistration = mode;
        self
    }
}

const PUBLIC: &[Role] = &[];
const CHATBOT: &[Role] = &[Role::Chatbot];
const SUPPORT: &[Role] = &[Role::Support];
const OPERATOR: &[Role] = &[Role::Operator];

/// An API line: public when `roles` is empty, else a bearer token of one
/// of `roles`; the chatbot's routes are rate-limited per token.
fn route<H, T>(method: Method, path: &'static str, roles: &'static [Role], handler: H) -> Line
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let auth = if roles.is_empty() {
        Auth::Public
    } else {
        Auth::Bearer
    };
    let (mut spec, handler) = line(method, path, auth, handler);
    spec.roles = roles;
    spec.rate_limited = roles == CHATBOT;
    (spec, handler)
}

/// Every `/api` route with its handler.
fn api_routes() -> Vec<Line> {
    use Method as M;
    let mut all = vec![
        route(M::GET, "/api/openapi.json", PUBLIC, openapi::document),
        route(M::POST, "/api/v1/chatbot/lookup", CHATBOT, chatbot::lookup),
        route(
            M::POST,
            "/api/v1/chatbot/reregister",
            CHATBOT,
            chatbot::reregister,
        ),
        route(
            M::POST,
            "/api/v1/chatbot/opt-out",
            CHATBOT,
            suppressions::opt_out,
        ),
        route(
            M::GET,
            "/api/v1/suppressions",
            OPERATOR,
            suppressions::list_suppressions,
        ),
        route(
            M::POST,
            "/api/v1/suppressions",
            OPERATOR,
            suppressions::add_suppression,
        ),
        route(
            M::POST,
            "/api/v1/suppressions/remove",
            OPERATOR,
            suppressions::remove_suppression,
        ),
        route(
            M::POST,
            "/api/v1/suppressions/import",
            OPERATOR,
            suppressions::import_suppressions,
        ),
        route(M::POST, "/api/v1/support/search", SUPPORT, support::search),
        route(
            M::GET,
            "/api/v1/support/workers/{id}/timeline",
            SUPPORT,
            support::timeline,
        ),
        route(
            M::POST,
            "/api/v1/support/workers/{id}/resend",
            SUPPORT,
            support::resend,
        ),
        route(
            M::POST,
            "/api/v1/support/flags/{id}/resolve",
            SUPPORT,
            support::resolve_flag,
        ),
        route(
            M::GET,
            "/api/v1/campaigns",
            OPERATOR,
            operator::list_campaigns,
        ),
        route(
            M::POST,
            "/api/v1/campaigns",
            OPERATOR,
            operator::create_campaign,
        ),
        route(
            M::GET,
            "/api/v1/campaigns/{id}",
            OPERATOR,
            operator::show_campaign,
        ),
        route(
            M::POST,
            "/api/v1/campaigns/{id}/schedule",
            OPERATOR,
            operator::schedule_campaign,
        ),
        route(
            M::POST,
            "/api/v1/campaigns/{id}/pause",
            OPERATOR,
            operator::pause_campaign,
        ),
        route(
            M::POST,
            "/api/v1/campaigns/{id}/resume",
            OPERATOR,
            operator::resume_campaign,
        ),
        route(
            M::POST,
            "/api/v1/campaigns/{id}/cancel",
            OPERATOR,
            operator::cancel_campaign,
        ),
        route(
            M::GET,
            "/api/v1/campaigns/{id}/nonrecipients.csv",
            OPERATOR,
            operator::nonrecipients_csv,
        ),
        route(M::POST, "/api/v1/workers/erase", OPERATOR, erasure::erase),
        route(
            M::GET,
            "/api/v1/reregistrations",
            OPERATOR,
            reregistrations::list,
        ),
        route(
            M::GET,
            "/api/v1/reregistrations/pending.csv",
            OPERATOR,
            reregistrations::pending_csv,
        ),
        route(
            M::GET,
            "/api/v1/support/workers/{id}/reregistrations",
            SUPPORT,
            reregistrations::worker,
        ),
        route(
            M::GET,
            "/api/v1/support/reregistration-locks",
            SUPPORT,
            reregistrations::locks,
        ),
        route(
            M::POST,
            "/api/v1/support/reregistration-locks/{id}/lift",
            SUPPORT,
            reregistrations::lift,
        ),
        route(
            M::POST,
            "/api/v1/support/reregistrations/{id}/approve",
            SUPPORT,
            reregistrations::approve,
        ),
    ];
    all.extend(outcomes::routes());
    all
}

/// The `/api` routes (the whole server's: [`super::routes::route_table`]).
pub fn route_table() -> Vec<RouteSpec> {
    api_routes().into_iter().map(|(spec, _)| spec).collect()
}

/// The `/api` routes, each behind a guard for its roles.
pub fn routes(state: &AppState) -> Router<AppState> {
    let mut router = Router::new();
    for (spec, method_router) in api_routes() {
        let method_router = if spec.roles.is_empty() {
            method_router
        } else {
            method_router.route_layer(from_fn_with_state(
                auth::Guard {
                    state: state.clone(),
                    roles: spec.roles,
                    rate_limited: spec.rate_limited,
                },
                auth::guard,
            ))
        };
        router = router.route(spec.path, method_router);
    }
    router
}

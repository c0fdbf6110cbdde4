//! The route tables the router is built from.
//!
//! Every route the server answers is one line of a table: the JSON API's
//! ([`super::api`]), the support UI's ([`super::ui`]), and the service
//! routes (health, readiness, metrics, carrier callbacks) in
//! [`super::router`]. The router is built from those tables alone, and
//! [`route_table`] lists the same lines, so `tests/it/api.rs` can check the
//! OpenAPI document against exactly what is served, both ways: a route
//! added without documentation fails that test.

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;

use super::AppState;
use crate::store::Role;

/// How a route tells who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Anyone: health, metrics, this document, the UI's sign-in page and
    /// stylesheet.
    Public,
    /// `Authorization: Bearer` API token of one of [`RouteSpec::roles`].
    Bearer,
    /// The support UI's session cookie (roles `support` or `operator`; the
    /// page says which), and a CSRF token in every form.
    Session,
    /// A carrier's callback token, in the path or in `X-Callback-Token`.
    CallbackToken,
}

/// One route: what the OpenAPI document and the role matrix are checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub method: Method,
    /// axum/OpenAPI path template (`/api/v1/campaigns/{id}`).
    pub path: &'static str,
    pub auth: Auth,
    /// Bearer roles accepted ([`Auth::Bearer`] only; empty otherwise).
    pub roles: &'static [Role],
    /// Per-token rate limit ([`super::api::CHATBOT_RATE_PER_SEC`]).
    pub rate_limited: bool,
}

/// One line of a table: the route and its handler.
pub type Line = (RouteSpec, MethodRouter<AppState>);

/// A line for `method path`, answered by `handler`.
pub fn line<H, T>(method: Method, path: &'static str, auth: Auth, handler: H) -> Line
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    (
        RouteSpec {
            method,
            path,
            auth,
            roles: &[],
            rate_limited: false,
        },
        on(filter, handler),
    )
}

/// A router with every line of `table` (lines for the same path merge).
pub fn build(table: Vec<Line>) -> Router<AppState> {
    table.into_iter().fold(Router::new(), |r, (spec, handler)| {
        r.route(spec.path, handler)
    })
}

/// Every route the server answers: the API's, the service routes, the
/// UI's.
pub fn route_table() -> Vec<RouteSpec> {
    let mut all = super::api::route_table();
    all.extend(super::service_routes().into_iter().map(|(spec, _)| spec));
    all.extend(super::ui::route_table());
    all
}

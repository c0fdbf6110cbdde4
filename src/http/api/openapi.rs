//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `/api/openapi.json`: the JSON API, health,
//! readiness, metrics, the carrier callbacks and the support UI's pages
//! ([`crate::http::ui::UiDoc`]). `tests/it/api.rs` checks it against the route
//! tables the router is built from ([`crate::http::route_table`]), both
//! ways, and that every route's accepted roles appear as its security
//! scopes.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    chatbot, erasure, metrics, operator, outcomes, reregistrations, support, suppressions,
};
use crate::http::ui::session::SESSION_COOKIE;
use crate::http::{callbacks, ui};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pedulicovid API",
        description = "SMS PEDULICOVID dispatcher: the chatbot, support-staff and operator APIs, \
health, readiness and metrics, the carriers' receipt callbacks, and the support web UI. \
`/api/v1` routes need `Authorization: Bearer pcv_<role>_…`; the roles a route accepts are its \
security scopes. Their errors are JSON `{\"error\": \"…\"}` (400 adds `field` and `reason`). \
Callbacks carry the gateway's callback token in the path or in `X-Callback-Token`. The `/ui` \
pages are HTML for people: a session cookie after signing in with a support or operator token, \
and a `csrf` field in every form (checked with the request's Origin). Health, readiness, metrics \
and this document need nothing. Times are Unix milliseconds unless a field says WIB."
    ),
    paths(
        document,
        chatbot::lookup,
        chatbot::reregister,
        suppressions::opt_out,
        suppressions::list_suppressions,
        suppressions::add_suppression,
        suppressions::remove_suppression,
        suppressions::import_suppressions,
        support::search,
        support::timeline,
        support::resend,
        support::resolve_flag,
        operator::list_campaigns,
        operator::create_campaign,
        operator::show_campaign,
        operator::schedule_campaign,
        operator::pause_campaign,
        operator::resume_campaign,
        operator::cancel_campaign,
        operator::nonrecipients_csv,
        outcomes::record_outcome,
        outcomes::import_outcomes,
        erasure::erase,
        reregistrations::list,
        reregistrations::pending_csv,
        reregistrations::worker,
        reregistrations::locks,
        reregistrations::lift,
        reregistrations::approve,
        crate::http::healthz,
        crate::http::readyz,
        metrics::metrics,
        callbacks::receipt_get,
        callbacks::receipt_post,
        callbacks::receipt_header_token_get,
        callbacks::receipt_header_token_post,
    ),
    modifiers(&Schemes),
    tags(
        (name = "chatbot", description = "The WhatsApp chatbot: look-up and re-registration (role chatbot)"),
        (name = "support", description = "Help-desk staff: search, timeline, resend, flags (role support)"),
        (name = "operator", description = "Campaign operators (role operator)"),
        (name = "meta", description = "This document"),
        (name = "service", description = "Health, readiness, Prometheus metrics (no token)"),
        (name = "callbacks", description = "Delivery reports from carrier gateways (callback token)"),
        (name = "ui", description = "The support web UI: HTML pages in Indonesian (session cookie, CSRF field in forms)"),
    )
)]
pub struct ApiDoc;

/// Declares the security schemes the paths refer to.
struct Schemes;

impl Modify for Schemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                SESSION_COOKIE,
                "The support UI's session (HttpOnly, SameSite=Strict), set by `POST /ui/login`; \
                 forms also need the session's `csrf` field",
            ))),
        );
        components.add_security_scheme(
            "callback_token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Callback-Token",
                "The gateway's callback token (`callback_secret`, or generated and kept in \
                 `gateway_secrets`)",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pcv_<role>_<64 hex>")
                    .description(Some(
                        "An API token from `pedulicovid token create`; scopes name the roles accepted",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document: the API's paths and the UI's.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(ui::UiDoc::openapi());
    doc
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"openapi: {e}\"}}"))
});

/// This OpenAPI 3.1 document. No token.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}

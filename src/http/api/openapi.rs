//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and served at `/api/openapi.json`. `tests/api.rs` checks it
//! against the route table the router is built from, both ways, and that
//! every route's accepted roles appear as its security scopes.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{chatbot, operator, support};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "pedulicovid API",
        description = "SMS PEDULICOVID dispatcher: the chatbot, support-staff and operator APIs. \
Every route except this document needs `Authorization: Bearer pcv_<role>_…`; the roles a route \
accepts are its security scopes. Errors are JSON `{\"error\": \"…\"}` (400 adds `field` and \
`reason`). Times are Unix milliseconds unless a field says WIB."
    ),
    paths(
        document,
        chatbot::lookup,
        chatbot::reregister,
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
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "chatbot", description = "The WhatsApp chatbot: look-up and re-registration (role chatbot)"),
        (name = "support", description = "Help-desk staff: search, timeline, resend, flags (role support)"),
        (name = "operator", description = "Campaign operators (role operator)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
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

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
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

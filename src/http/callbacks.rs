//! Receipt callbacks from carriers.
//!
//! Answer fast and with 200 whenever the report was taken: Kannel retries
//! anything but 200/202, so an error code here means "send it again". A
//! wrong token, per-message MAC or aggregator signature is 401 (and nothing
//! is stored: anyone can knock); a report we cannot read is 400, kept raw; a
//! report for a message we do not have is 404, kept raw. A report for a
//! message this gateway was never given (`not_ours`, `not_sent`) is kept
//! raw, changes nothing, and is answered 200 with the dialect's ack, so the
//! carrier stops retrying it: what it may change is the status machine's
//! decision ([`crate::status::HandOver`]), not this handler's.

use axum::body::Bytes;
use axum::extract::{RawPathParams, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use super::AppState;
use crate::gateway::callback::TokenCheck;
use crate::gateway::{QueryPair, ReceiptOutcome};
use crate::metrics::{ReceiptLabel, METRICS};
use crate::store::{now_ms, IncomingReceipt, ReceiptEffect};

/// The `/metrics` outcome of a stored receipt: what it did, and for one
/// that moved its message, what it said.
fn label(effect: ReceiptEffect, outcome: ReceiptOutcome) -> ReceiptLabel {
    match effect {
        ReceiptEffect::Applied => match outcome {
            ReceiptOutcome::Delivered => ReceiptLabel::Delivered,
            ReceiptOutcome::Undelivered => ReceiptLabel::Undelivered,
            ReceiptOutcome::Expired => ReceiptLabel::Expired,
            ReceiptOutcome::Rejected => ReceiptLabel::Rejected,
            ReceiptOutcome::InvalidNumber => ReceiptLabel::InvalidNumber,
            ReceiptOutcome::Accepted => ReceiptLabel::Accepted,
            ReceiptOutcome::Unknown => ReceiptLabel::Unknown,
        },
        ReceiptEffect::Intermediate => ReceiptLabel::Accepted,
        ReceiptEffect::UnknownCode => ReceiptLabel::Unknown,
        ReceiptEffect::Ignored => ReceiptLabel::Duplicate,
        ReceiptEffect::UnknownMessage => ReceiptLabel::UnknownMessage,
        ReceiptEffect::Pending => ReceiptLabel::Pending,
        ReceiptEffect::Malformed => ReceiptLabel::Malformed,
        ReceiptEffect::NotOurs => ReceiptLabel::NotOurs,
        ReceiptEffect::NotSent => ReceiptLabel::NotSent,
    }
}

// The four routes below read the same callback (the query, and a POST's
// body) and differ only in where the token is and in what their
// documentation shows: Kannel and Jasmin call back with GET and a query
// string (a GET's body, if any, is not read), Jasmin may POST a form, JSON
// aggregators POST JSON. One handler per (method, path), as the route
// table has one line each.

/// A delivery report as a GET query (Kannel, Jasmin), token in the path.
#[utoipa::path(
    get,
    path = "/callbacks/{gateway}/{token}",
    tag = "callbacks",
    params(
        ("gateway" = String, Path, description = "The gateway's configured name"),
        ("token" = String, Path, description = "A per-message token `{message id}.{mac}` (the URL we handed the carrier: HMAC-SHA256 of gateway and message id, keyed by the gateway's callback secret), or the gateway-wide token (`callback_secret`, or generated and kept in `gateway_secrets`) for aggregators with one fixed URL"),
        CallbackQuery
    ),
    responses(
        (status = 200, description = "Taken (duplicates, and reports for messages this gateway was never given, kept raw without effect, included). Body `OK`, or `ACK/Jasmin` for a Jasmin gateway", content_type = "text/plain", body = String),
        (status = 400, description = "Unreadable report, kept raw", content_type = "text/plain", body = String),
        (status = 401, description = "Wrong callback token or per-message MAC, a MAC for another message, or a bad aggregator signature; nothing stored", content_type = "text/plain", body = String),
        (status = 404, description = "Unknown gateway, or a report for a message we do not have (kept raw)", content_type = "text/plain", body = String),
        (status = 503, description = "Database unavailable: send it again later", content_type = "text/plain", body = String),
    )
)]
pub async fn receipt_get(
    State(state): State<AppState>,
    path: RawPathParams,
    req: Request,
) -> Response {
    // The request itself rather than `HeaderMap` and `RawQuery`, and the
    // path's values as axum decoded them rather than `Path`: each of those
    // copies what is only read here.
    let query = req.uri().query();
    let (gateway, token) = (param(&path, "gateway"), param(&path, "token"));
    handle(state, gateway, token, req.headers(), query, &[]).await
}

/// A delivery report as a POST form (Jasmin) or JSON (aggregators), token
/// in the path. Our message id may also be in the query (`pcid`).
#[utoipa::path(
    post,
    path = "/callbacks/{gateway}/{token}",
    tag = "callbacks",
    params(
        ("gateway" = String, Path, description = "The gateway's configured name"),
        ("token" = String, Path, description = "A per-message token `{message id}.{mac}` (the URL we handed the carrier: HMAC-SHA256 of gateway and message id, keyed by the gateway's callback secret), or the gateway-wide token (`callback_secret`, or generated and kept in `gateway_secrets`) for aggregators with one fixed URL"),
        CallbackQuery
    ),
    request_body(
        description = "Jasmin: a form with `id`, `message_status`, `level`, `err`; a JSON gateway: its configured receipt mapping (`gateways.json.receipt`)",
        content((Object = "application/x-www-form-urlencoded"), (Object = "application/json"))
    ),
    responses(
        (status = 200, description = "Taken (duplicates, and reports for messages this gateway was never given, kept raw without effect, included). Body `OK`, or `ACK/Jasmin` for a Jasmin gateway", content_type = "text/plain", body = String),
        (status = 400, description = "Unreadable report, kept raw", content_type = "text/plain", body = String),
        (status = 401, description = "Wrong callback token or per-message MAC, a MAC for another message, or a bad aggregator signature; nothing stored", content_type = "text/plain", body = String),
        (status = 404, description = "Unknown gateway, or a report for a message we do not have (kept raw)", content_type = "text/plain", body = String),
        (status = 413, description = "Body over `http.body_limit_bytes`"),
        (status = 503, description = "Database unavailable: send it again later", content_type = "text/plain", body = String),
    )
)]
pub async fn receipt_post(
    State(state): State<AppState>,
    path: RawPathParams,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let (gateway, token) = (param(&path, "gateway"), param(&path, "token"));
    handle(state, gateway, token, &headers, query.as_deref(), &body).await
}

/// As `GET /callbacks/{gateway}/{token}`, the token in `X-Callback-Token`.
#[utoipa::path(
    get,
    path = "/callbacks/{gateway}",
    tag = "callbacks",
    params(
        ("gateway" = String, Path, description = "The gateway's configured name"),
        CallbackQuery
    ),
    responses(
        (status = 200, description = "Taken (duplicates included)", content_type = "text/plain", body = String),
        (status = 400, description = "Unreadable report, kept raw", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong `X-Callback-Token`; nothing stored", content_type = "text/plain", body = String),
        (status = 404, description = "Unknown gateway, or a report for a message we do not have (kept raw)", content_type = "text/plain", body = String),
        (status = 503, description = "Database unavailable: send it again later", content_type = "text/plain", body = String),
    ),
    security(("callback_token" = []))
)]
pub async fn receipt_header_token_get(
    State(state): State<AppState>,
    path: RawPathParams,
    req: Request,
) -> Response {
    let headers = req.headers();
    let query = req.uri().query();
    let gateway = param(&path, "gateway");
    handle(state, gateway, header_token(headers), headers, query, &[]).await
}

/// As `POST /callbacks/{gateway}/{token}`, the token in `X-Callback-Token`.
#[utoipa::path(
    post,
    path = "/callbacks/{gateway}",
    tag = "callbacks",
    params(
        ("gateway" = String, Path, description = "The gateway's configured name"),
        CallbackQuery
    ),
    request_body(
        description = "Jasmin: a form; a JSON gateway: its configured receipt mapping",
        content((Object = "application/x-www-form-urlencoded"), (Object = "application/json"))
    ),
    responses(
        (status = 200, description = "Taken (duplicates included)", content_type = "text/plain", body = String),
        (status = 400, description = "Unreadable report, kept raw", content_type = "text/plain", body = String),
        (status = 401, description = "Missing or wrong `X-Callback-Token`; nothing stored", content_type = "text/plain", body = String),
        (status = 404, description = "Unknown gateway, or a report for a message we do not have (kept raw)", content_type = "text/plain", body = String),
        (status = 413, description = "Body over `http.body_limit_bytes`"),
        (status = 503, description = "Database unavailable: send it again later", content_type = "text/plain", body = String),
    ),
    security(("callback_token" = []))
)]
pub async fn receipt_header_token_post(
    State(state): State<AppState>,
    path: RawPathParams,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let gateway = param(&path, "gateway");
    handle(
        state,
        gateway,
        header_token(&headers),
        &headers,
        query.as_deref(),
        &body,
    )
    .await
}

/// The path parameter `name` of the route, percent-decoded by axum (each
/// route above has the ones it asks for).
fn param<'p>(path: &'p RawPathParams, name: &str) -> &'p str {
    path.iter()
        .find_map(|(key, value)| (key == name).then_some(value))
        .unwrap_or_default()
}

/// The request's id (set by [`super::access::edge`] before any handler
/// runs), for the warnings below: at INFO a callback is handled outside
/// the access span, so they name their request themselves.
fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(&super::access::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn header_token(headers: &HeaderMap) -> &str {
    headers
        .get("x-callback-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The report's query parameters, by dialect: documentation only (each
/// gateway's parser reads the raw pairs).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // The parsers read the raw query pairs.
struct CallbackQuery {
    /// Kannel: our message id. Jasmin: Jasmin's message id.
    id: Option<String>,
    /// Kannel: the DLR type (`%d`: 1 delivered, 2 undelivered, 4
    /// buffered, 8 SMSC accepted, 16 SMSC rejected).
    status: Option<u32>,
    /// Kannel: the SMSC's message id (`%F`).
    fid: Option<String>,
    /// Kannel: the SMSC's answer or DLR text (`%A`).
    answer: Option<String>,
    /// Kannel: the report's time (`%T`, Unix seconds).
    ts: Option<i64>,
    /// Jasmin and JSON gateways: our message id, put in the callback URL.
    pcid: Option<i64>,
    /// Jasmin: `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, `ESME_R…`.
    message_status: Option<String>,
    /// Jasmin: 1 SMSC level, 2 handset level, 3 both.
    level: Option<u8>,
    /// Jasmin: the error code.
    err: Option<String>,
}

async fn handle(
    state: AppState,
    gateway: &str,
    token: &str,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Response {
    let Some(gw) = state.callbacks.get(gateway) else {
        return (StatusCode::NOT_FOUND, "unknown gateway").into_response();
    };
    // The gateway-wide token, or a per-message `{id}.{mac}`; a generated
    // secret may have been rotated by another process: reload once (at
    // most once a second) before refusing.
    let now = now_ms();
    let mut check = gw.keys.check(token, now);
    if check == TokenCheck::Refused && gw.keys.reload_due() {
        if let Err(e) = gw.keys.reload(&state.store).await {
            warn!(gateway = %gateway, request_id = request_id(headers), error = %e, "reloading the callback secret failed");
        }
        check = gw.keys.check(token, now);
    }
    if check == TokenCheck::Refused {
        gw.metrics.receipt(ReceiptLabel::BadToken);
        warn!(gateway = %gateway, request_id = request_id(headers), "receipt callback with a wrong token or message MAC");
        return (StatusCode::UNAUTHORIZED, "bad callback token").into_response();
    }
    // The aggregator's own signature, where its settings ask for one.
    if let Err(why) = gw.parser.authenticate(headers, body, now / 1000) {
        gw.metrics.receipt(ReceiptLabel::BadSignature);
        warn!(gateway = %gateway, request_id = request_id(headers), reason = %why, "receipt callback with a bad signature");
        return (StatusCode::UNAUTHORIZED, format!("bad signature: {why}")).into_response();
    }
    // Kannel calls back with GET and a query string; Jasmin with GET or a
    // POST form (our id in the query); JSON aggregators POST a JSON body.
    // The payload kept is the query, then the body.
    let query = query.unwrap_or_default();
    // Behind the gateway-wide token (a fixed URL), `pcid` in the query is
    // nobody's word: no MAC covers it, and an aggregator's signature covers
    // the body only. The receipt is matched by what the body says.
    let pairs: Vec<QueryPair> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !(check == TokenCheck::Gateway && k == crate::gateway::json::OUR_ID_PARAM))
        .collect();
    let payload = match (query.is_empty(), body.is_empty()) {
        (false, true) => query.to_owned(),
        (true, _) => String::from_utf8_lossy(body).into_owned(),
        (false, false) => format!("{query}\n{}", String::from_utf8_lossy(body)),
    };
    let parsed = gw.parser.parse(&pairs, body);
    let mut receipt = match parsed {
        Ok(r) => r,
        Err(e) => {
            gw.metrics.receipt(ReceiptLabel::Malformed);
            if let Err(se) = state.store.store_malformed_receipt(gateway, &payload).await {
                warn!(gateway = %gateway, request_id = request_id(headers), error = %se, "could not store a malformed receipt");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    // A per-message URL speaks for its own message only.
    if let TokenCheck::Message(id) = check {
        match receipt.message_id {
            Some(named) if named != id => {
                gw.metrics.receipt(ReceiptLabel::BadToken);
                warn!(gateway = %gateway, request_id = request_id(headers), "receipt names another message than its callback URL");
                return (
                    StatusCode::UNAUTHORIZED,
                    "the receipt names another message than its callback URL",
                )
                    .into_response();
            }
            Some(_) => {}
            None => receipt.message_id = Some(id),
        }
    }
    let message_id = receipt.message_id;
    let outcome = receipt.outcome;
    let incoming = IncomingReceipt {
        gateway: gateway.to_owned(),
        payload,
        parsed: receipt,
        signed: matches!(check, TokenCheck::Message(_)),
    };
    let taken = state.receipts.submit(incoming).await;
    if let Ok(effect) = &taken {
        METRICS
            .receipts
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        gw.metrics.receipt(label(*effect, outcome));
    }
    match taken {
        Ok(ReceiptEffect::UnknownMessage) => {
            debug!(gateway = %gateway, "receipt for an unknown message kept");
            (StatusCode::NOT_FOUND, "unknown message").into_response()
        }
        Ok(effect) => {
            debug!(gateway = %gateway, message.id = message_id, effect = effect.as_str(), "receipt");
            (StatusCode::OK, gw.parser.ack_body()).into_response()
        }
        Err(e) => {
            // 503 makes the carrier retry later: nothing is lost.
            gw.metrics.receipt(ReceiptLabel::Unavailable);
            warn!(gateway = %gateway, request_id = request_id(headers), error = %e, "storing a receipt failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

//! Receipt callbacks from carriers.
//!
//! Answer fast and with 200 whenever the report was taken: Kannel retries
//! anything but 200/202, so an error code here means "send it again". A
//! wrong token is 401 (and nothing is stored: anyone can knock); a report we
//! cannot read is 400, kept raw; a report for a message we do not have is
//! 404, kept raw.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use super::AppState;
use crate::gateway::ReceiptOutcome;
use crate::metrics::{ReceiptLabel, METRICS};
use crate::store::{IncomingReceipt, ReceiptEffect};

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
    }
}

pub async fn receipt(
    State(state): State<AppState>,
    Path((gateway, token)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    handle(state, gateway, token, query, body).await
}

/// Same, with the token in the `X-Callback-Token` header instead of the path.
pub async fn receipt_header_token(
    State(state): State<AppState>,
    Path(gateway): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let token = headers
        .get("x-callback-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    handle(state, gateway, token, query, body).await
}

async fn handle(
    state: AppState,
    gateway: String,
    token: String,
    query: Option<String>,
    body: Bytes,
) -> Response {
    let Some(gw) = state.callbacks.get(&gateway) else {
        return (StatusCode::NOT_FOUND, "unknown gateway").into_response();
    };
    if !gw.secret.matches(&token) {
        warn!(gateway = %gateway, "receipt callback with a wrong token");
        return (StatusCode::UNAUTHORIZED, "bad callback token").into_response();
    }
    // Kannel calls back with GET and a query string; Jasmin with GET or a
    // POST form (our id in the query); JSON aggregators POST a JSON body.
    // The payload kept is the query, then the body.
    let query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let payload = match (query.is_empty(), body.is_empty()) {
        (false, true) => query.clone(),
        (true, _) => String::from_utf8_lossy(&body).into_owned(),
        (false, false) => format!("{query}\n{}", String::from_utf8_lossy(&body)),
    };
    let parsed = gw.parser.parse(&pairs, &body);
    let receipt = match parsed {
        Ok(r) => r,
        Err(e) => {
            gw.metrics.receipt(ReceiptLabel::Malformed);
            if let Err(se) = state
                .store
                .store_malformed_receipt(&gateway, &payload)
                .await
            {
                warn!(error = %se, "could not store a malformed receipt");
                return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
            }
            return (StatusCode::BAD_REQUEST, e.to_string()).into_response();
        }
    };
    let message_id = receipt.message_id;
    let outcome = receipt.outcome;
    let incoming = IncomingReceipt {
        gateway: gateway.clone(),
        payload,
        parsed: receipt,
    };
    let taken = state.receipts.submit(incoming).await;
    match &taken {
        Ok(effect) => {
            METRICS
                .receipts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gw.metrics.receipt(label(*effect, outcome));
        }
        Err(_) => gw.metrics.receipt(ReceiptLabel::Unavailable),
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
            warn!(error = %e, "storing a receipt failed");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

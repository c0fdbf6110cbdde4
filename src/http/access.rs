//! The access log and request ids.
//!
//! Every request gets an id: the caller's `x-request-id` when it is a sane
//! one (1 to 64 characters of letters, digits and `-_.:@`), otherwise a new
//! UUID. It goes back in the answer's `x-request-id` and into the request's
//! span, so every line logged while the request is handled carries it.
//!
//! The access log is tower-http's trace layer: one `http` span a request
//! (method, route template, request id) and one event when the answer
//! leaves (status, latency). The route is the template the router matched
//! (`/callbacks/{gateway}/{token}`, `/api/v1/support/workers/{id}`), never
//! the path: callback tokens, MACs and message ids stay out of the logs.
//! Receipt callbacks answered with success are logged at DEBUG (a campaign
//! brings thousands a second; `/metrics` counts them), every other answer
//! at INFO.

use std::time::Duration;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

/// The request id's header, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route of a request no route matched (answered 404 by the fallback).
const UNMATCHED: &str = "unmatched";

/// Longest caller-chosen request id kept.
const REQUEST_ID_MAX: usize = 64;

/// Middleware: the request's id, taken or made, set on the request (for
/// the access span) and on the answer.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| acceptable(v))
        .cloned()
        .unwrap_or_else(new_id);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let mut res = next.run(req).await;
    res.headers_mut().insert(REQUEST_ID, id);
    res
}

/// A caller's id is kept only if it cannot garble a log line or carry
/// data: short, and of a small alphabet.
fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= REQUEST_ID_MAX
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:@".contains(c))
}

fn new_id() -> HeaderValue {
    HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
        .expect("a UUID is a valid header value")
}

/// The access log's layer: [`AccessSpan`] and [`AccessLog`]; failures are
/// not logged again here (5xx answers are logged with their cause by
/// `api::error::log_internal_errors`, and as an access line).
pub fn layer(
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, AccessSpan, (), AccessLog, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(AccessSpan)
        .on_request(())
        .on_response(AccessLog)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// Opens the `http` span of a request.
#[derive(Clone, Copy, Debug)]
pub struct AccessSpan;

impl<B> MakeSpan<B> for AccessSpan {
    fn make_span(&mut self, req: &axum::http::Request<B>) -> Span {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED, |m| m.as_str());
        let id = req
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!(
            target: "pedulicovid::access",
            "http",
            method = %req.method(),
            route,
            request_id = id,
        )
    }
}

/// Logs the answer: status and latency, in the request's span.
#[derive(Clone, Copy, Debug)]
pub struct AccessLog;

impl<B> OnResponse<B> for AccessLog {
    fn on_response(self, res: &axum::http::Response<B>, latency: Duration, span: &Span) {
        let _ = span; // the event is emitted inside it
        let status = res.status().as_u16();
        let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
        let routine_receipt =
            res.status().is_success() && res.extensions().get::<ReceiptCallback>().is_some();
        if routine_receipt {
            tracing::debug!(target: "pedulicovid::access", status, latency_ms, "answered");
        } else {
            tracing::info!(target: "pedulicovid::access", status, latency_ms, "answered");
        }
    }
}

/// Marks the answer to a receipt callback, for [`AccessLog`] (which sees
/// only the answer).
#[derive(Clone, Copy, Debug)]
struct ReceiptCallback;

/// Middleware inside the trace layer: marks answers to receipt callbacks.
pub async fn mark_callbacks(req: Request, next: Next) -> Response {
    let callback = req
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|m| m.as_str().starts_with("/callbacks/"));
    let mut res = next.run(req).await;
    if callback {
        res.extensions_mut().insert(ReceiptCallback);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_ids_are_kept_only_when_short_and_plain() {
        for ok in ["abc", "req-42", "a1b2c3d4-e5f6.7:8@x", &"x".repeat(64)] {
            assert!(acceptable(&HeaderValue::from_str(ok).unwrap()), "{ok}");
        }
        for bad in ["", "has space", "quote\"", "a=b", "{json}", &"x".repeat(65)] {
            assert!(!acceptable(&HeaderValue::from_str(bad).unwrap()), "{bad}");
        }
        let made = new_id();
        assert!(acceptable(&made), "{made:?}");
        assert_eq!(made.len(), 36);
    }
}

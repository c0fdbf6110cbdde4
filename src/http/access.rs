//! The access log and request ids.
//!
//! Every request gets an id: the caller's `x-request-id` when it is a sane
//! one (1 to 64 characters of letters, digits and `-_.:@`), otherwise a new
//! UUID. It goes back in the answer's `x-request-id` and into the request's
//! span, so every line logged while the request is handled carries it.
//!
//! The access log is one middleware ([`edge`]): one `http` span a request
//! (method, route template, request id) and one event when the answer
//! leaves (status, latency). The route is the template the router matched
//! (`/callbacks/{gateway}/{token}`, `/api/v1/support/workers/{id}`), never
//! the path: callback tokens, MACs and message ids stay out of the logs.
//! Receipt callbacks answered with success are logged at DEBUG (a campaign
//! brings thousands a second; `/metrics` counts them), every other answer
//! at INFO. Below DEBUG, a callback is handled outside the span (its own
//! warnings carry `request_id` as a field), and the span is made only for
//! the access line of an answer that is not a success.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::{Instrument, Level, Span};

/// The request id's header, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Route of a request no route matched (answered 404 by the fallback).
const UNMATCHED: &str = "unmatched";

/// Longest caller-chosen request id kept.
const REQUEST_ID_MAX: usize = 64;

/// Middleware around every route (outermost): the request's id, taken or
/// made, on the request and on the answer; the access span ([`access_span`]:
/// method, route template, request id), in which the request is
/// handled; one access line when the answer leaves ([`log_answer`]); the
/// cause of a 500 ([`crate::http::api::error::log_internal_error`]); and
/// `Connection: close` after a body refused for its size
/// ([`close_after_refused_body`]). One layer instead of five: each layer
/// costs a boxed future and a clone of the service under it per request
/// (merging them saved 15 % of the server's CPU per receipt callback).
pub async fn edge(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| acceptable(v))
        .cloned()
        .unwrap_or_else(new_id);
    req.headers_mut().insert(REQUEST_ID, id.clone());
    let method = req.method().clone();
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let route = matched.as_ref().map_or(UNMATCHED, |m| m.as_str());
    // Of the small alphabet `acceptable` allows, or a UUID.
    let request_id = id.to_str().unwrap_or("");
    let callback = route.starts_with("/callbacks/");
    // A receipt callback answered with success logs nothing above DEBUG,
    // and a campaign brings thousands a second: below DEBUG its span is
    // made only for an answer that will be logged (made for every one, it
    // cost 15 % of the server's CPU a receipt at INFO, BENCHMARKS.md,
    // ninth pass).
    let lazy = callback && !tracing::enabled!(target: "pedulicovid::access", Level::DEBUG);
    let span = if lazy {
        Span::none()
    } else {
        access_span(&method, route, request_id)
    };
    let mut res = next.run(req).instrument(span.clone()).await;
    close_after_refused_body(&mut res);
    let span = if lazy && !res.status().is_success() {
        access_span(&method, route, request_id)
    } else {
        span
    };
    let _in = span.enter();
    // The span is INFO: the 500's line names its request itself, so it
    // does at WARN and ERROR too.
    crate::http::api::error::log_internal_error(&res, &method, route, request_id);
    log_answer(&res, started.elapsed(), callback);
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

/// A random (v4) UUID from a thread-local generator (uuid's `fast-rng`):
/// a request id is no secret, and drawing each from the kernel was a
/// `getrandom` system call per request.
fn new_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    HeaderValue::from_str(uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf))
        .expect("a UUID is a valid header value")
}

/// The `http` span of a request.
fn access_span(method: &axum::http::Method, route: &str, request_id: &str) -> Span {
    tracing::info_span!(
        target: "pedulicovid::access",
        "http",
        %method,
        route,
        request_id,
    )
}

/// The access line: status and latency, in the request's span. Receipt
/// callbacks answered with success at DEBUG, every other answer at INFO.
fn log_answer(res: &Response, latency: Duration, callback: bool) {
    let status = res.status().as_u16();
    let latency_ms = (latency.as_secs_f64() * 1e6).round() / 1e3;
    if callback && res.status().is_success() {
        tracing::debug!(target: "pedulicovid::access", status, latency_ms, "answered");
    } else {
        tracing::info!(target: "pedulicovid::access", status, latency_ms, "answered");
    }
}

/// A body refused for its size was not read: the rest of it is still on
/// the connection, so the connection cannot carry another request. Say so
/// (`Connection: close`): hyper closes it after the answer, and the client
/// (a carrier's HTTP stack, a chatbot) opens a new one instead of writing
/// its next request into a socket we are closing.
fn close_after_refused_body(r: &mut Response) {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        r.headers_mut().insert(
            axum::http::header::CONNECTION,
            HeaderValue::from_static("close"),
        );
    }
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

//! HTTP plumbing shared by every carrier dialect.
//!
//! Each dialect builds its own request and reads its own answer, but they all
//! need the same things underneath: one pooled keep-alive client, one mapping
//! from HTTP outcomes to a retry decision ([`classify_status`]), and one way to
//! describe a transport failure without leaking the request URL
//! ([`transport_error`]). Kannel-style gateways put the password and the
//! recipient's number in the query string, so nothing in this module ever
//! prints a URL.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::StatusCode;

use super::{SendError, Transient};
use crate::domain::mask_phone;

/// `User-Agent` sent to carriers, so their access logs can tell our traffic
/// (and our version) from anyone else's.
pub const USER_AGENT: &str = concat!("pedulicovid/", env!("CARGO_PKG_VERSION"));

/// Longest gateway answer we read. Carrier answers are a line or two; a
/// misconfigured URL that lands on a web page must not fill our memory or our
/// `last_error` column.
pub const MAX_ANSWER_BYTES: usize = 4 * 1024;

/// Longest piece of an answer body quoted in a [`SendError`] reason.
const MAX_REASON_CHARS: usize = 120;

/// Builds the pooled keep-alive client a gateway (or the simulator's callback
/// sender) uses for its whole life.
///
/// Loopback measurements (DESIGN.md) show ~4x more requests per second with
/// keep-alive, so connections are pooled per host (`max_idle_per_host`) and
/// Nagle is off: every request is one small write waiting for an answer.
///
/// Two deliberate restrictions, both because the URL carries a password and a
/// phone number:
/// * **no proxy** (environment proxies are ignored): a carrier is reached
///   directly or through a VPN, and an extra hop would see every credential;
/// * **no redirects**: a sendsms endpoint never redirects, so a redirect means
///   a wrong URL, and following it could hand the query to another host.
///   [`classify_status`] reports a 3xx as a permanent (configuration) error.
pub fn client(timeout: Duration, max_idle_per_host: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        // A carrier that does not even accept the connection within a few
        // seconds is down; fail fast and let the retry policy wait instead.
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(max_idle_per_host)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        // `build` only fails when a TLS backend or the system resolver cannot
        // be initialised. This crate has no TLS feature and uses the default
        // resolver, so a failure here is a broken installation, not input.
        .expect("building a plain-HTTP reqwest client cannot fail without TLS")
}

/// Maps an HTTP status to the engine's retry decision: the one place where
/// every dialect's "what does this status mean" lives (STYLE.md, practice 6).
///
/// | status        | decision                                             |
/// |---------------|------------------------------------------------------|
/// | 2xx           | `Ok(())`: the dialect then reads its body            |
/// | 429           | `Throttled`, with `Retry-After` (seconds or a date)  |
/// | 408, 5xx      | `Retryable`: the carrier may succeed later           |
/// | other 4xx     | `Permanent`: the same request will fail again        |
/// | 3xx           | `Permanent`: a wrong URL (we never follow redirects) |
/// | 1xx, other    | `Retryable`: not an answer at all                    |
///
/// `invalid_number` is always `false` here: only a dialect can tell that a
/// refusal is about the number; it checks the body before calling this.
pub fn classify_status(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &str,
) -> Result<(), SendError> {
    let code = status.as_u16();
    if status.is_success() {
        return Ok(());
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Err(SendError::Throttled {
            retry_after: retry_after.and_then(parse_retry_after),
        });
    }
    let reason = with_body(format!("HTTP {code}"), body);
    if status == StatusCode::REQUEST_TIMEOUT {
        return Err(SendError::retry(Transient::Timeout, reason));
    }
    if status.is_server_error() {
        return Err(SendError::retry(Transient::Http5xx, reason));
    }
    if status.is_client_error() {
        return Err(SendError::Permanent {
            reason,
            invalid_number: false,
        });
    }
    if status.is_redirection() {
        return Err(SendError::Permanent {
            reason: format!("HTTP {code}: unexpected redirect (check the gateway URL)"),
            invalid_number: false,
        });
    }
    Err(SendError::retry(Transient::Other, reason))
}

/// Turns a failed request into a retryable error with a short reason.
///
/// The reason names the kind of failure and the innermost cause (e.g.
/// `connect: Connection refused (os error 111)`), never the URL: reqwest's own
/// `Display` includes it, and ours holds a password and a phone number. The
/// causes below reqwest (hyper, io) do not carry the URL.
pub fn transport_error(e: &reqwest::Error) -> SendError {
    let (transient, kind) = if e.is_timeout() {
        (Transient::Timeout, "timeout")
    } else if e.is_connect() {
        (Transient::Connect, "connect")
    } else if e.is_body() || e.is_decode() {
        (Transient::BadAnswer, "reading answer")
    } else if e.is_redirect() {
        (Transient::Other, "redirect")
    } else {
        (Transient::Other, "request")
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost = None;
    while let Some(c) = cause {
        innermost = Some(c);
        cause = c.source();
    }
    let reason = match innermost {
        Some(c) => format!("{kind}: {}", snippet(&c.to_string())),
        None => kind.to_string(),
    };
    SendError::retry(transient, reason)
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer body, lossily decoded.
///
/// Reading stops at the limit (the rest is dropped with the connection), so a
/// wrong URL that serves a large page costs nothing.
pub async fn read_answer(mut resp: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BYTES - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Reads `Retry-After` as delta-seconds or as an HTTP date (RFC 9110 §10.2.3).
/// A date in the past means "now"; anything unreadable is ignored so the
/// engine's own backoff applies.
pub fn parse_retry_after(value: &HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// `prefix: body-snippet`, or just `prefix` for an empty body.
fn with_body(prefix: String, body: &str) -> String {
    let s = snippet(body);
    if s.is_empty() {
        prefix
    } else {
        format!("{prefix}: {s}")
    }
}

/// A short, single-line, personal-data-free quote of a carrier answer for
/// `messages.last_error`: control characters become spaces, the text is cut to
/// [`MAX_REASON_CHARS`], and any run of 7+ digits (a phone number some
/// carriers echo back) is masked.
pub fn snippet(body: &str) -> String {
    let cut: String = body
        .trim()
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out = String::with_capacity(cut.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 7 {
            out.push_str(&mask_phone(digits));
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in cut.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("test header value is ASCII")
    }

    #[test]
    fn status_table() {
        let cases: &[(u16, &str)] = &[
            (200, "ok"),
            (202, "ok"),
            (204, "ok"),
            (408, "retry"),
            (500, "retry"),
            (502, "retry"),
            (503, "retry"),
            (400, "perm"),
            (401, "perm"),
            (403, "perm"),
            (404, "perm"),
            (422, "perm"),
            (301, "perm"),
            (302, "perm"),
            (429, "throttle"),
        ];
        for &(code, want) in cases {
            let status = StatusCode::from_u16(code).expect("valid status");
            let got = classify_status(status, None, "body");
            let kind = match &got {
                Ok(()) => "ok",
                Err(SendError::Retryable { .. }) => "retry",
                Err(SendError::Permanent { invalid_number, .. }) => {
                    assert!(!invalid_number, "{code}");
                    "perm"
                }
                Err(SendError::Throttled { .. }) => "throttle",
            };
            assert_eq!(kind, want, "status {code}: {got:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let got = classify_status(StatusCode::TOO_MANY_REQUESTS, Some(&hv("3")), "");
        assert_eq!(
            got,
            Err(SendError::Throttled {
                retry_after: Some(Duration::from_secs(3))
            })
        );
        let got = classify_status(StatusCode::TOO_MANY_REQUESTS, None, "");
        assert_eq!(got, Err(SendError::Throttled { retry_after: None }));
        assert_eq!(parse_retry_after(&hv("soon")), None);
        assert_eq!(
            parse_retry_after(&hv("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        let future = (chrono::Utc::now() + chrono::Duration::seconds(120))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = parse_retry_after(&hv(&future)).expect("HTTP date parses");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
    }

    #[test]
    fn reasons_quote_the_body_without_numbers() {
        let got = classify_status(
            StatusCode::BAD_REQUEST,
            None,
            "bad number 6281234567890\nrejected",
        );
        let Err(SendError::Permanent { reason, .. }) = got else {
            panic!("expected permanent, got {got:?}");
        };
        assert!(reason.starts_with("HTTP 400: bad number "), "{reason}");
        assert!(!reason.contains("6281234567890"), "{reason}");
        assert!(!reason.contains('\n'), "{reason}");
        let long = "x".repeat(1000);
        assert!(snippet(&long).len() <= MAX_REASON_CHARS);
        assert_eq!(snippet("HTTP 503 1234"), "HTTP 503 1234");
    }

    #[tokio::test]
    async fn transport_errors_never_show_the_url() {
        // Bind then drop a listener to get a port that refuses connections.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url =
            format!("http://127.0.0.1:{port}/cgi-bin/sendsms?password=hunter2&to=6281234567890");
        let err = client(Duration::from_secs(2), 1)
            .get(url)
            .send()
            .await
            .expect_err("nothing listens there");
        let got = transport_error(&err);
        let SendError::Retryable { reason, .. } = &got else {
            panic!("expected retryable, got {got:?}");
        };
        assert!(reason.starts_with("connect"), "{reason}");
        assert!(
            !reason.contains("hunter2") && !reason.contains("62812"),
            "{reason}"
        );
    }
}

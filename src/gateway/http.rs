//! HTTP plumbing shared by every carrier dialect: sending is written once.
//!
//! A dialect supplies two things, as a [`Wire`]: the request for one message
//! and how to read its answer. Everything else is here, the same for every
//! dialect: [`HttpGateway`] (the one [`Gateway`] over HTTP) sends the request,
//! reads the answer within [`MAX_ANSWER_BYTES`] and hands status, body and
//! `Retry-After` to the dialect; one pooled keep-alive client speaking HTTP
//! and HTTPS with the gateway's timeout ([`gateway_client`], with the
//! gateway's [`GatewayTls`]); one mapping from HTTP outcomes to a retry
//! decision ([`refusal`], [`classify_status`]); and one way to classify and
//! describe a transport failure without leaking the request URL
//! ([`transport_error`]: a TLS or URL failure is the gateway's fault,
//! anything else on the wire a transient one). Kannel-style gateways put the
//! password and the recipient's number in the query string, so nothing in
//! this module ever prints a URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use reqwest::header::{HeaderValue, RETRY_AFTER};
use reqwest::StatusCode;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::RootCertStore;

use super::{Accepted, Fault, Gateway, OutboundSms, SendError, Transient};
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

/// TLS settings of one gateway (`[gateways.tls]`), for any dialect.
///
/// Certificate verification is always on: there is deliberately no setting
/// that turns it off. Every file is read once, at start
/// ([`gateway_client`]); a missing, unreadable or malformed file stops the
/// start with an error naming the gateway and the field.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayTls {
    /// PEM bundle of the CA certificate(s) that sign the gateway's server
    /// certificate, for a gateway behind a private CA. It **replaces** the
    /// public roots for this gateway: only these CAs are trusted for it, so
    /// no public CA can vouch for a host name of a private carrier link.
    /// Unset: Mozilla's public roots (webpki-roots, compiled in).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the gateway (mutual TLS), leaf
    /// first. Needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `client_cert_file`.
    pub client_key_file: Option<PathBuf>,
}

impl GatewayTls {
    /// Checks what can be checked without reading files: a client
    /// certificate and its key come together. (`Settings::check`.)
    pub fn check(&self) -> Result<(), String> {
        match (&self.client_cert_file, &self.client_key_file) {
            (Some(_), None) => {
                Err("tls.client_cert_file is set without tls.client_key_file".into())
            }
            (None, Some(_)) => {
                Err("tls.client_key_file is set without tls.client_cert_file".into())
            }
            _ => Ok(()),
        }
    }
}

/// The rustls crypto provider of every TLS connection, client or server:
/// `ring` (aws-lc-rs, rustls' default, needs cmake and a C toolchain).
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file; `field` names the setting in
/// errors. An empty bundle is an error, not "trust nothing".
pub fn read_certs(path: &Path, field: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path).with_context(|| format!("{field} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow::anyhow!(
                "{field} {}: not a PEM certificate file: {e}",
                path.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "{field} {}: no certificate in the file (expected PEM \"BEGIN CERTIFICATE\")",
            path.display()
        );
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file; `field` names the setting.
pub fn read_key(path: &Path, field: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path).with_context(|| format!("{field} {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{field} {}: no usable PEM private key: {e}", path.display()))
}

/// The rustls client configuration of one gateway: its roots (public, or its
/// own `ca_file`) and its client certificate, if any. Verification is
/// rustls' own (webpki): chain, validity dates and host name, always.
pub fn tls_config(tls: &GatewayTls) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = RootCertStore::empty();
    match &tls.ca_file {
        Some(path) => {
            for cert in read_certs(path, "tls.ca_file")? {
                roots.add(cert).with_context(|| {
                    format!("tls.ca_file {}: unusable CA certificate", path.display())
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "tls.client_cert_file")?;
            let key_der = read_key(key, "tls.client_key_file")?;
            builder
                .with_client_auth_cert(chain, key_der)
                .with_context(|| {
                    format!(
                        "tls.client_key_file {}: does not fit tls.client_cert_file {}",
                        key.display(),
                        cert.display()
                    )
                })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => anyhow::bail!(tls.check().err().unwrap_or_default()),
    };
    Ok(config)
}

/// The client of one configured gateway: [`client_with_tls`] with the
/// gateway's `[gateways.tls]` settings. Errors name the gateway and field.
pub fn gateway_client(
    gateway: &str,
    tls: &GatewayTls,
    timeout: Duration,
    max_idle_per_host: usize,
) -> anyhow::Result<reqwest::Client> {
    let config = tls_config(tls).with_context(|| format!("gateway {gateway}"))?;
    client_with_tls(timeout, max_idle_per_host, config)
        .with_context(|| format!("gateway {gateway}: building its HTTP client"))
}

/// [`client_with_tls`] with the public roots and no client certificate
/// (the simulator's callback sender, tests).
pub fn client(timeout: Duration, max_idle_per_host: usize) -> reqwest::Client {
    // Neither step reads input: the roots are compiled in, and the builder
    // fails only for an unknown TLS backend type, which this is not.
    let config = tls_config(&GatewayTls::default()).expect("the public roots load");
    client_with_tls(timeout, max_idle_per_host, config)
        .expect("a reqwest client with a rustls config builds")
}

/// Builds the pooled keep-alive client a gateway (or the simulator's callback
/// sender) uses for its whole life, speaking `http` and `https` (rustls with
/// `tls`; certificates are always verified).
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
///   [`refusal`] reports a 3xx as a gateway (configuration) fault.
///
/// And the client retries nothing itself ([`no_retries`]).
pub fn client_with_tls(
    timeout: Duration,
    max_idle_per_host: usize,
    tls: rustls::ClientConfig,
) -> Result<reqwest::Client, reqwest::Error> {
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
        .retry(no_retries())
        .use_preconfigured_tls(tls)
        .build()
}

/// The client's own retry policy: none. The dispatcher owns every retry
/// (its back-off, its attempts counted and logged, the breaker), so the
/// HTTP client must never send a message a second time on its own.
///
/// reqwest's default retries only HTTP/2 and HTTP/3 refusals, which this
/// build does not speak, yet it still copied every request (headers,
/// URI, extensions) in case of one, and kept a retry budget's clock.
/// `never()` alone keeps the copy (its scope is asked only before a second
/// try); at most zero retries a request is what makes it copy nothing.
fn no_retries() -> reqwest::retry::Builder {
    reqwest::retry::never().max_retries_per_request(0)
}

/// What one carrier dialect puts on the wire: its request for one message
/// and how it reads the answer. [`HttpGateway`] does the rest, the same for
/// every dialect (see the module documentation).
///
/// Implemented once per dialect file (`kannel.rs`, `jasmin.rs`, `json.rs`),
/// by a value holding that dialect's settings and our callback URL.
pub trait Wire: Send + Sync + 'static {
    /// The dialect's name, for logs (`kannel`).
    const DIALECT: &'static str;

    /// The request for one message, made on `client` (which carries the
    /// timeout, TLS, no proxy and no redirects). It holds credentials and
    /// the phone number, so it is never logged. `Err` when no request can
    /// be made for this message; nothing is sent then.
    fn request(
        &self,
        client: &reqwest::Client,
        sms: &OutboundSms,
    ) -> Result<reqwest::RequestBuilder, SendError>;

    /// The engine's decision for one answer: the dialect's own table, ending
    /// in [`refusal`] for the statuses it has no word of its own for. `body`
    /// is at most [`MAX_ANSWER_BYTES`], lossily decoded.
    fn read_answer(
        &self,
        status: StatusCode,
        retry_after: Option<&HeaderValue>,
        body: &str,
    ) -> Result<Accepted, SendError>;
}

/// A gateway reached over HTTP, speaking the dialect `W`: the one
/// [`Gateway::send`] of every carrier dialect.
pub struct HttpGateway<W> {
    /// Configured gateway name (`messages.gateway`, callback path segment).
    name: String,
    /// Shared keep-alive client, built once per gateway with its timeout and
    /// TLS settings ([`gateway_client`]).
    client: reqwest::Client,
    /// The dialect: its settings and our callback URL.
    wire: W,
}

impl<W: Wire> HttpGateway<W> {
    /// A gateway named `name` speaking `wire` through `client`. Each dialect
    /// also has a `new` taking its settings (`KannelGateway::new`, …).
    pub fn with_wire(name: impl Into<String>, client: reqwest::Client, wire: W) -> Self {
        HttpGateway {
            name: name.into(),
            client,
            wire,
        }
    }

    /// The dialect's half (its request builder, for tests and tools).
    pub fn wire(&self) -> &W {
        &self.wire
    }
}

#[async_trait]
impl<W: Wire> Gateway for HttpGateway<W> {
    fn name(&self) -> &str {
        &self.name
    }

    /// A span per send at DEBUG only: at INFO it cost 4 % of the
    /// dispatcher's CPU (a span's fields formatted for every message). The
    /// warning carries the same fields itself, so it has them at any level.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(gateway = %self.name, message.id = sms.message_id, to = %sms.to.masked())
    )]
    async fn send(&self, sms: &OutboundSms) -> Result<Accepted, SendError> {
        let result = send(&self.client, &self.wire, sms).await;
        match &result {
            Ok(_) => tracing::debug!("{} accepted the message", W::DIALECT),
            Err(e) => tracing::warn!(
                gateway = %self.name,
                message.id = sms.message_id,
                to = %sms.to.masked(),
                error = %e.short(),
                "{} did not take the message",
                W::DIALECT
            ),
        }
        result
    }
}

/// Sends one message: the dialect's request, the answer read within
/// [`MAX_ANSWER_BYTES`], a transport failure classified by
/// [`transport_error`], and the answer read by the dialect.
async fn send<W: Wire>(
    client: &reqwest::Client,
    wire: &W,
    sms: &OutboundSms,
) -> Result<Accepted, SendError> {
    let resp = wire
        .request(client, sms)?
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = resp.status();
    let retry_after = resp.headers().get(RETRY_AFTER).cloned();
    let body = read_limited(resp).await.map_err(|e| transport_error(&e))?;
    wire.read_answer(status, retry_after.as_ref(), &body)
}

/// Maps an HTTP status to the engine's retry decision: the one place where
/// every dialect's "what does this status mean" lives (STYLE.md, practice 6).
/// `Ok(())` for a 2xx (the dialect then reads its body), else [`refusal`].
pub fn classify_status(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &str,
) -> Result<(), SendError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(refusal(status, retry_after, body))
    }
}

/// What an answer that is not a 2xx means, when the dialect has no word of
/// its own for it; `body` is quoted (a [`snippet`]) in the reason.
///
/// | status        | decision                                             |
/// |---------------|------------------------------------------------------|
/// | 429           | `Throttled`, with `Retry-After` (seconds or a date)  |
/// | 408, 5xx      | `Retryable`: the carrier may succeed later           |
/// | 401, 403, 407 | `GatewayFault` `Config`: our credentials are refused |
/// | 404, 405      | `GatewayFault` `Config`: a wrong URL or method       |
/// | 3xx           | `GatewayFault` `Config`: a wrong URL (e.g. http where the gateway wants https; we never follow redirects) |
/// | other 4xx     | `Permanent`: the same message will fail again        |
/// | 1xx, other    | `Retryable`: not an answer at all                    |
///
/// A refused login or a wrong URL fails every message the same way: it is
/// the gateway settings' fault, not the message's, so it must open the
/// breaker and flag no worker (see [`SendError::GatewayFault`]). Only the
/// refusals left (400, 422, …) are about the message itself.
///
/// `invalid_number` is always `false` here: only a dialect can tell that a
/// refusal is about the number; it checks the body before calling this.
pub fn refusal(status: StatusCode, retry_after: Option<&HeaderValue>, body: &str) -> SendError {
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return SendError::Throttled {
            retry_after: retry_after.and_then(parse_retry_after),
        };
    }
    let reason = with_body(format!("HTTP {code}"), body);
    if status == StatusCode::REQUEST_TIMEOUT {
        return SendError::retry(Transient::Timeout, reason);
    }
    if status.is_server_error() {
        return SendError::retry(Transient::Http5xx, reason);
    }
    if matches!(code, 401 | 403 | 407) {
        return SendError::GatewayFault {
            reason: with_body(
                format!("HTTP {code}: credentials refused (check the gateway username, password or token)"),
                body,
            ),
            kind: Fault::Config,
        };
    }
    if matches!(code, 404 | 405) {
        return SendError::GatewayFault {
            reason: with_body(
                format!("HTTP {code}: no such endpoint (check the gateway URL and method)"),
                body,
            ),
            kind: Fault::Config,
        };
    }
    if status.is_client_error() {
        return SendError::Permanent {
            reason,
            invalid_number: false,
        };
    }
    if status.is_redirection() {
        return SendError::GatewayFault {
            reason: format!("HTTP {code}: unexpected redirect (check the gateway URL)"),
            kind: Fault::Config,
        };
    }
    SendError::retry(Transient::Other, reason)
}

/// A 2xx whose body is not the dialect's answer (a proxy page, a wrong URL
/// served by some web server): retried rather than trusted, since nothing
/// says the carrier has the message.
pub fn unrecognised_answer(status: StatusCode) -> SendError {
    SendError::retry(
        Transient::BadAnswer,
        format!("unrecognised gateway answer: HTTP {}", status.as_u16()),
    )
}

/// Turns a failed request into a [`SendError`] with a short reason: the one
/// place a transport failure is classified.
///
/// | failure                                         | decision                       |
/// |-------------------------------------------------|--------------------------------|
/// | request cannot be built (bad URL, scheme)       | `GatewayFault` `Config`        |
/// | a TLS error anywhere in the cause chain         | `GatewayFault` `Tls`           |
/// | timeout                                         | `Retryable` `Timeout`          |
/// | connection refused / reset / DNS                | `Retryable` `Connect`          |
/// | body cut off or undecodable                     | `Retryable` `BadAnswer`        |
/// | anything else                                   | `Retryable` `Other`            |
///
/// A TLS error (rustls' own: unknown issuer, wrong name, expired, a fatal
/// alert such as "certificate required") is checked before the timeout and
/// connect kinds because reqwest reports a failed handshake as a connect
/// error: retrying it would fail identically, and charging it to the message
/// would end with a worker flagged for our certificate problem.
///
/// The reason names the kind of failure and the innermost cause (e.g.
/// `connect: Connection refused (os error 111)`), never the URL: reqwest's own
/// `Display` includes it, and ours holds a password and a phone number. The
/// causes below reqwest (hyper, io, rustls) do not carry the URL.
pub fn transport_error(e: &reqwest::Error) -> SendError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut innermost = None;
    let mut tls = None;
    while let Some(c) = cause {
        innermost = Some(c);
        tls = tls.or_else(|| tls_cause(c));
        cause = c.source();
    }
    let describe = |kind: &str| match innermost {
        Some(c) => format!("{kind}: {}", snippet(&c.to_string())),
        None => kind.to_string(),
    };
    if e.is_builder() {
        return SendError::GatewayFault {
            reason: describe("invalid request (check the gateway URL)"),
            kind: Fault::Config,
        };
    }
    if let Some(t) = tls {
        return SendError::GatewayFault {
            reason: format!("tls: {}", snippet(&t.to_string())),
            kind: Fault::Tls,
        };
    }
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
    SendError::retry(transient, describe(kind))
}

/// The rustls error behind one link of a cause chain, if it is one. rustls
/// errors travel inside `std::io::Error`s (sometimes an io error inside
/// another), whose `source()` skips the error they wrap, hence the look
/// down through `get_ref`.
fn tls_cause<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut link = Some(c);
    while let Some(e) = link {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        link = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
    }
    None
}

/// Reads at most [`MAX_ANSWER_BYTES`] of an answer body, lossily decoded.
///
/// Reading stops at the limit (the rest is dropped with the connection), so a
/// wrong URL that serves a large page costs nothing.
async fn read_limited(mut resp: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut buf: Vec<u8> = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = MAX_ANSWER_BYTES - buf.len();
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ANSWER_BYTES {
            break;
        }
    }
    // UTF-8 (nearly always) is kept as read, not copied.
    Ok(String::from_utf8(buf)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
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
            (409, "perm"),
            (413, "perm"),
            (422, "perm"),
            (401, "config"),
            (403, "config"),
            (407, "config"),
            (404, "config"),
            (405, "config"),
            (301, "config"),
            (302, "config"),
            (307, "config"),
            (308, "config"),
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
                Err(SendError::GatewayFault {
                    kind: Fault::Config,
                    ..
                }) => "config",
                Err(SendError::GatewayFault { .. }) => "fault",
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

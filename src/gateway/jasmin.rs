//! The Jasmin SMS gateway HTTP API (`ja-http`, `POST /send`) and its DLR
//! callback.
//!
//! Sending is one form `POST` per message; Jasmin answers `Success "<uuid>"`
//! and that uuid comes back as `id` in every delivery report. Our own
//! `messages.id` also travels in the `dlr-url` (`?pcid=…`), so a report can
//! be matched either way. Jasmin re-sends a report until the answer is a 2xx
//! whose body is exactly `ACK/Jasmin` ([`JasminReceipts::ack_body`]).
//!
//! Behaviour coded here follows the Jasmin documentation ("HTTP API",
//! docs.jasminsms.com) and, where the documentation is silent, Jasmin's own
//! source (`jasmin/protocols/http/endpoints/send.py`, `errors.py`,
//! `jasmin/routing/throwers.py`). The built-in simulator
//! ([`carrier_sim`], `dialect = "jasmin"`) speaks the same dialect.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::StatusCode;

use super::callback::CallbackUrl;
use super::http::{refusal, snippet, unrecognised_answer, HttpGateway, Wire};
use super::{
    Accepted, Fault, OutboundSms, ParsedReceipt, QueryPair, ReceiptError, ReceiptOutcome,
    ReceiptParser, SendError, Transient,
};
use crate::domain::Encoding;
use crate::secret::Secret;

/// Query parameter carrying our `messages.id` in the `dlr-url`. Jasmin's own
/// report fields include `id` (its uuid), so ours needs a name of its own.
pub use super::callback::OUR_ID_PARAM;

/// The body Jasmin requires, exactly, before it stops re-sending a report.
pub const ACK_BODY: &str = "ACK/Jasmin";

/// Which delivery reports Jasmin should send (`dlr-level`).
///
/// Read from settings as the number Jasmin uses (`dlr_level = 3`); anything
/// else is refused when the settings load instead of by Jasmin on every send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum DlrLevel {
    /// `1`: the SMSC's answer to the submit only (`ESME_ROK`, `ESME_R…`).
    Smsc,
    /// `2`: the handset receipt only (`DELIVRD`, `UNDELIV`, …). An SMSC that
    /// refuses the submit then produces no report at all: the message only
    /// ends at the receipt timeout.
    Terminal,
    /// `3`: both. The default: a refused submit (e.g. an invalid number) is
    /// reported at once, at the price of one intermediate `ESME_ROK` report
    /// per message (stored as `accepted`).
    #[default]
    Both,
}

impl DlrLevel {
    /// The value sent as `dlr-level`.
    pub fn as_u8(self) -> u8 {
        match self {
            DlrLevel::Smsc => 1,
            DlrLevel::Terminal => 2,
            DlrLevel::Both => 3,
        }
    }
}

impl TryFrom<u8> for DlrLevel {
    type Error = String;

    fn try_from(v: u8) -> Result<Self, Self::Error> {
        match v {
            1 => Ok(DlrLevel::Smsc),
            2 => Ok(DlrLevel::Terminal),
            3 => Ok(DlrLevel::Both),
            other => Err(format!(
                "dlr_level {other}: use 1 (SMSC), 2 (terminal) or 3 (both)"
            )),
        }
    }
}

impl From<DlrLevel> for u8 {
    fn from(l: DlrLevel) -> u8 {
        l.as_u8()
    }
}

/// How Jasmin calls our `dlr-url` (`dlr-method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
pub enum DlrMethod {
    /// Report fields in the query string.
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// Report fields in a form body. The default, for two reasons: the
    /// fields stay out of access logs, and Jasmin releases up to 0.9 build a
    /// GET report URL as `dlr-url + "?" + fields` even when `dlr-url` already
    /// has a query, which garbles our `pcid` ([`parse_receipt`] copes, but
    /// POST never needs to).
    #[default]
    #[serde(rename = "POST", alias = "post")]
    Post,
}

impl DlrMethod {
    /// The value sent as `dlr-method`.
    pub fn as_str(self) -> &'static str {
        match self {
            DlrMethod::Get => "GET",
            DlrMethod::Post => "POST",
        }
    }
}

/// How to reach one Jasmin HTTP API (or the simulator in Jasmin mode), read
/// from settings.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JasminConfig {
    /// Full send endpoint. Jasmin listens on `http://127.0.0.1:1401/send` by
    /// default; ours points at the built-in simulator's address so a fresh
    /// checkout sends somewhere harmless.
    pub send_url: String,
    /// Jasmin user (`username`, at most 16 characters for Jasmin).
    pub username: String,
    /// Jasmin password (at most 16 characters). Sent in the form body, never
    /// in a URL, and never printed.
    pub password: Secret,
    /// Alphanumeric sender id (`from`); empty leaves it to Jasmin's user
    /// defaults.
    pub sender: String,
    /// Which reports to ask for; see [`DlrLevel`] (default 3).
    pub dlr_level: DlrLevel,
    /// How Jasmin should call us back; see [`DlrMethod`] (default POST).
    pub dlr_method: DlrMethod,
    /// Whole-request timeout. Jasmin answers after queueing to its broker,
    /// in milliseconds; a slow answer means trouble and the message is
    /// retried.
    pub timeout_ms: u64,
}

/// By hand rather than derived: `send_url` may carry credentials (see
/// [`crate::secret::redact_url`]).
impl std::fmt::Debug for JasminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be added here too.
        let JasminConfig {
            send_url,
            username,
            password,
            sender,
            dlr_level,
            dlr_method,
            timeout_ms,
        } = self;
        f.debug_struct("JasminConfig")
            .field("send_url", &crate::secret::DebugUrl(send_url))
            .field("username", username)
            .field("password", password)
            .field("sender", sender)
            .field("dlr_level", dlr_level)
            .field("dlr_method", dlr_method)
            .field("timeout_ms", timeout_ms)
            .finish()
    }
}

impl Default for JasminConfig {
    fn default() -> Self {
        JasminConfig {
            send_url: "http://127.0.0.1:13013/send".to_string(),
            username: "pedulicovid".to_string(),
            password: Secret::new("secret"),
            sender: "PEDULICOVID".to_string(),
            dlr_level: DlrLevel::default(),
            dlr_method: DlrMethod::default(),
            timeout_ms: 10_000,
        }
    }
}

impl JasminConfig {
    /// The request timeout as a `Duration`, for [`super::http::client`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Sends through one Jasmin HTTP API: the shared [`HttpGateway`] speaking
/// [`JasminWire`].
pub type JasminGateway = HttpGateway<JasminWire>;

impl JasminGateway {
    /// `callback_url` is the full base of our receipt endpoint, e.g.
    /// `http://127.0.0.1:8080/callbacks/jasmin/TOKEN`. `client` carries the
    /// timeout ([`JasminConfig::timeout`]) and TLS settings.
    pub fn new(
        name: impl Into<String>,
        config: JasminConfig,
        callback_url: CallbackUrl,
        client: reqwest::Client,
    ) -> Self {
        HttpGateway::with_wire(
            name,
            client,
            JasminWire {
                config,
                callback_url,
            },
        )
    }
}

/// Jasmin's half of sending: one form `POST` of [`Self::form`] to
/// `send_url`, its answer read by [`interpret_answer`].
pub struct JasminWire {
    config: JasminConfig,
    /// Our receipt endpoint, signed per message (see [`super::callback`]);
    /// the per-message `dlr-url` is built from it.
    callback_url: CallbackUrl,
}

impl JasminWire {
    /// The `dlr-url` for one message: `{base}/{id}.{mac}?pcid={id}` (see
    /// [`super::callback`]).
    /// Jasmin adds its report fields itself; no destination number is ever
    /// part of a report.
    pub fn dlr_url(&self, message_id: i64) -> String {
        self.callback_url.for_message_with_our_id(message_id)
    }

    /// The form fields of one send, in order. Public so tests can check the
    /// encoding; it holds the password and the number, so it is never logged.
    ///
    /// | field         | value                                              |
    /// |---------------|----------------------------------------------------|
    /// | `username`, `password` | from the settings                         |
    /// | `to`          | E.164 digits without `+` (Jasmin: `^\+?\d+$`)      |
    /// | `from`        | the sender id, left out when empty                 |
    /// | `coding`      | `0` (GSM-7) or `8` (UCS-2)                         |
    /// | `content`     | GSM-7 only: the text as UTF-8                      |
    /// | `hex-content` | UCS-2 only: the text as UTF-16BE, in hex           |
    /// | `dlr`         | `yes`                                              |
    /// | `dlr-url`     | [`Self::dlr_url`]                                  |
    /// | `dlr-level`, `dlr-method` | from the settings                      |
    ///
    /// Why two content fields: for `coding=0` Jasmin converts the UTF-8
    /// `content` to the GSM 03.38 alphabet itself (escapes included); for
    /// any other coding it passes `content` through byte for byte, so UTF-8
    /// labelled as UCS-2 would reach the handset as garbage. `hex-content` is
    /// Jasmin's documented way to give exact bytes, and UTF-16BE is what
    /// `data_coding=8` means (surrogate pairs included, as
    /// [`crate::domain::SmsText`] counted them). Long messages are split by
    /// Jasmin (`long_content_max_parts`, 5 by default).
    pub fn form(&self, sms: &OutboundSms) -> Vec<(&'static str, String)> {
        let mut form: Vec<(&'static str, String)> = vec![
            ("username", self.config.username.clone()),
            ("password", self.config.password.expose().to_string()),
            ("to", sms.to.digits().to_string()),
        ];
        if !self.config.sender.is_empty() {
            form.push(("from", self.config.sender.clone()));
        }
        match sms.text.encoding() {
            Encoding::Gsm7 => {
                form.push(("coding", "0".to_string()));
                form.push(("content", sms.text.as_str().to_string()));
            }
            Encoding::Ucs2 => {
                form.push(("coding", "8".to_string()));
                form.push(("hex-content", utf16be_hex(sms.text.as_str())));
            }
        }
        form.push(("dlr", "yes".to_string()));
        form.push(("dlr-url", self.dlr_url(sms.message_id)));
        form.push(("dlr-level", self.config.dlr_level.as_u8().to_string()));
        form.push(("dlr-method", self.config.dlr_method.as_str().to_string()));
        form
    }
}

impl Wire for JasminWire {
    const DIALECT: &'static str = "jasmin";

    fn request(
        &self,
        client: &reqwest::Client,
        sms: &OutboundSms,
    ) -> Result<reqwest::RequestBuilder, SendError> {
        Ok(client.post(&self.config.send_url).form(&self.form(sms)))
    }

    fn read_answer(
        &self,
        status: StatusCode,
        retry_after: Option<&HeaderValue>,
        body: &str,
    ) -> Result<Accepted, SendError> {
        interpret_answer(status, retry_after, body)
    }
}

/// Maps one `/send` answer (status + `text/plain` body) to the engine's
/// decision. Codes and bodies are those of Jasmin's `errors.py`/`send.py`.
///
/// | HTTP | body                                             | result                           |
/// |------|--------------------------------------------------|----------------------------------|
/// | 2xx  | `Success "<uuid>"`                               | `Accepted`, gateway id = uuid    |
/// | 2xx  | anything else                                    | `Retryable`, "unrecognised …"    |
/// | 400  | `Error "Argument to has an invalid value…"`      | `Permanent`, `invalid_number`    |
/// | 400  | other argument or credential validation errors   | `Permanent`: our request or the user's rights |
/// | 403  | `Error "User throughput exceeded"`               | `Throttled` (no `Retry-After`)   |
/// | 403  | `Error "Cannot charge submit_sm…"`               | `Retryable`: balance or quota    |
/// | 403  | `Authentication failure…`, `Authorization failed…` | `GatewayFault` `Config`: our settings |
/// | 412  | `No route found`, `…no bound connectors`         | `Retryable`: routing / SMPP links |
/// | 429  | (a proxy in front of Jasmin)                     | `Throttled`, `Retry-After`       |
/// | 500, 503 | `Cannot send submit_sm…`, interceptor down   | `Retryable`                      |
/// | other |                                                 | [`refusal`]                      |
///
/// Two deliberate departures from "4xx is permanent": a charging refusal and
/// a missing route are fixed by an operator (topping up, `jcli` routes, a
/// re-bound connector), not by changing the message. Failing them for good
/// would fail a whole campaign in seconds; as retryable failures they trip
/// the gateway's circuit breaker instead, and traffic waits or moves to
/// another gateway.
pub fn interpret_answer(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &str,
) -> Result<Accepted, SendError> {
    let text = body.trim();
    if status.is_success() {
        return match quoted(text, "Success") {
            Some(id) if !id.trim().is_empty() => Ok(Accepted {
                gateway_message_id: Some(id.trim().to_string()),
            }),
            _ => Err(unrecognised_answer(status)),
        };
    }
    let reason = quoted(text, "Error").unwrap_or(text);
    let code = status.as_u16();
    match code {
        400 if is_about_destination(reason) => Err(SendError::Permanent {
            reason: format!("jasmin refused the number: {}", snippet(reason)),
            invalid_number: true,
        }),
        403 if reason.contains("throughput exceeded") => {
            Err(SendError::Throttled { retry_after: None })
        }
        403 if reason.contains("Cannot charge") => Err(SendError::retry(
            Transient::Other,
            "jasmin cannot charge the user (balance or submit_sm quota)",
        )),
        403 if reason.contains("Authentication failure")
            || reason.contains("Authorization failed") =>
        {
            Err(SendError::GatewayFault {
                reason: "jasmin authentication failed (check the gateway username and password)"
                    .to_string(),
                kind: Fault::Config,
            })
        }
        412 => Err(SendError::retry(
            Transient::Other,
            format!("jasmin has no route: {}", snippet(reason)),
        )),
        _ => Err(refusal(status, retry_after, &format!("jasmin: {reason}"))),
    }
}

/// `Word "inner"` → `inner`: Jasmin wraps every answer this way.
fn quoted<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    text.strip_prefix(word)?
        .trim_start()
        .strip_prefix('"')?
        .strip_suffix('"')
}

/// Jasmin's argument validator names the argument, on Python 3 as bytes:
/// `Argument to has an invalid value: …` or `Argument b'to' has …`.
fn is_about_destination(reason: &str) -> bool {
    (reason.contains("Argument to ") || reason.contains("Argument b'to'"))
        && reason.contains("invalid value")
}

/// Reads one Jasmin delivery report: the query pairs of our `dlr-url`
/// followed by the form body pairs (POST), in that order; for a repeated
/// name the first value counts.
///
/// Fields: `id` Jasmin's uuid (required), `message_status` (required),
/// `pcid` our message id (optional, an integer when present: Jasmin's `id`
/// alone still matches the send), `err` the SMSC error code (levels 2/3).
/// `level`, `id_smsc`, `connector`, dates, `sub`, `dlvrd` and `text` are not
/// needed and are ignored, as are unknown fields.
///
/// Mapping of `message_status` (case-insensitive):
///
/// | `message_status`        | from          | outcome                   |
/// |-------------------------|---------------|---------------------------|
/// | `DELIVRD`               | handset, 2/3  | `Delivered`               |
/// | `UNDELIV`, `DELETED`    | handset, 2/3  | `Undelivered`             |
/// | `EXPIRED`               | handset, 2/3  | `Expired`                 |
/// | `REJECTD`               | handset, 2/3  | `Rejected`                |
/// | `ACCEPTD`, `ENROUTE`    | handset, 2/3  | `Accepted` (intermediate) |
/// | `ESME_ROK`              | SMSC, 1       | `Accepted` (intermediate) |
/// | `ESME_RINVDSTADR`       | SMSC, 1       | `InvalidNumber`           |
/// | any other `ESME_R…`     | SMSC, 1       | `Rejected`                |
/// | `UNKNOWN`, anything else | —            | `Unknown` (stored raw)    |
///
/// As for Kannel, only `ESME_RINVDSTADR` blames the destination;
/// `ESME_RINVSRCADR` (our sender id) or `ESME_RTHROTTLED` are refusals of
/// the submit, not of the health worker's number.
///
/// `error_code` is `err` when present, else the `ESME_R…` name of a refused
/// submit. Jasmin releases up to 0.9 append GET report fields with a second
/// `?` (`…?pcid=5?id=…&level=1`); such a `pcid` is split back into our id
/// and the fields it swallowed.
pub fn parse_receipt(params: &[(String, String)]) -> Result<ParsedReceipt, ReceiptError> {
    let mut all: Vec<(String, String)> = params.to_vec();
    let mut pcid: Option<String> = None;
    if let Some((_, v)) = params.iter().find(|(k, _)| k == OUR_ID_PARAM) {
        match v.split_once('?') {
            Some((ours, swallowed)) => {
                pcid = Some(ours.to_string());
                all.extend(url::form_urlencoded::parse(swallowed.as_bytes()).into_owned());
            }
            None => pcid = Some(v.clone()),
        }
    }
    let get = |key: &str| {
        all.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    };
    let message_id = match pcid {
        None => None,
        Some(p) => Some(p.trim().parse::<i64>().map_err(|_| ReceiptError {
            field: OUR_ID_PARAM,
            reason: "not an integer message id".to_string(),
        })?),
    };
    let jasmin_id = get("id")
        .ok_or_else(|| ReceiptError::missing("id"))?
        .to_string();
    let raw_status = get("message_status")
        .ok_or_else(|| ReceiptError::missing("message_status"))?
        .to_string();
    let status = raw_status.to_ascii_uppercase();
    let outcome = match status.as_str() {
        "DELIVRD" => ReceiptOutcome::Delivered,
        "UNDELIV" | "DELETED" => ReceiptOutcome::Undelivered,
        "EXPIRED" => ReceiptOutcome::Expired,
        "REJECTD" => ReceiptOutcome::Rejected,
        "ACCEPTD" | "ENROUTE" | "ESME_ROK" => ReceiptOutcome::Accepted,
        "ESME_RINVDSTADR" => ReceiptOutcome::InvalidNumber,
        s if s.starts_with("ESME_R") => ReceiptOutcome::Rejected,
        _ => ReceiptOutcome::Unknown,
    };
    let error_code = get("err").map(str::to_string).or_else(|| {
        (status.starts_with("ESME_R") && status != "ESME_ROK").then(|| raw_status.clone())
    });
    Ok(ParsedReceipt {
        message_id,
        gateway_message_id: Some(jasmin_id),
        raw_status,
        error_code,
        outcome,
    })
}

/// The receipt parser to register for a Jasmin gateway's callback path.
#[derive(Debug, Clone, Copy, Default)]
pub struct JasminReceipts;

impl ReceiptParser for JasminReceipts {
    /// Query pairs first (our `pcid`, or every field for `dlr-method=GET`),
    /// then the form body (`dlr-method=POST`).
    fn parse(&self, query: &[QueryPair<'_>], body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        pairs.extend(url::form_urlencoded::parse(body).into_owned());
        parse_receipt(&pairs)
    }

    fn ack_body(&self) -> &'static str {
        ACK_BODY
    }
}

/// The text as UTF-16 big-endian bytes, in upper-case hex.
fn utf16be_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 4);
    for unit in text.encode_utf16() {
        out.push_str(&format!("{unit:04X}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::http::Method;
    use axum::response::IntoResponse;
    use tokio::sync::mpsc;

    use super::*;
    use crate::domain::{Msisdn, SmsText};
    use crate::gateway::Gateway;
    use carrier_sim::{parse_rules, SimDialect, SimHandle, Simulator, SimulatorConfig};

    const CALLBACK: &str = "http://127.0.0.1:8080/callbacks/jasmin/TOKEN";

    fn gateway(send_url: &str, callback: &str, config: JasminConfig) -> JasminGateway {
        JasminGateway::new(
            "jasmin",
            JasminConfig {
                send_url: send_url.to_string(),
                ..config
            },
            callback.into(),
            super::super::http::client(Duration::from_secs(5), 8),
        )
    }

    fn sms(id: i64, number: &str, text: &str) -> OutboundSms {
        OutboundSms {
            message_id: id,
            to: Msisdn::parse(number).expect("valid test number"),
            text: SmsText::new(text),
        }
    }

    fn decode_utf16be_hex(hex: &str) -> String {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex pair"))
            .collect();
        let units: Vec<u16> = bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).expect("valid UTF-16")
    }

    /// What a capturing `/send` saw.
    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        query: Option<String>,
        content_type: Option<String>,
        form: HashMap<String, String>,
        count: usize,
    }

    /// A `/send` on port 0 that records each request and answers `answer`.
    async fn capturing_send(answer: (StatusCode, &'static str)) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/send",
                axum::routing::any(
                    move |State(seen): State<Arc<Mutex<Vec<Seen>>>>,
                          method: Method,
                          headers: axum::http::HeaderMap,
                          RawQuery(query): RawQuery,
                          body: Bytes| async move {
                        let pairs: Vec<(String, String)> =
                            url::form_urlencoded::parse(&body).into_owned().collect();
                        let count = pairs.len();
                        seen.lock().expect("test mutex").push(Seen {
                            method,
                            query,
                            content_type: headers
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            form: pairs.into_iter().collect(),
                            count,
                        });
                        (answer.0, answer.1).into_response()
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr: SocketAddr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            // The test's runtime ends the server; an error only means the
            // test is over.
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/send"), seen)
    }

    #[tokio::test]
    async fn request_for_gsm7_text() {
        let (url, seen) = capturing_send((
            StatusCode::OK,
            "Success \"07033084-5cfd-4812-90a4-e4d24ffb6e3d\"",
        ))
        .await;
        let config = JasminConfig {
            password: Secret::new("p&ss w?rd%"),
            ..JasminConfig::default()
        };
        let gw = gateway(&url, CALLBACK, config);
        let text = "Jadwal vaksinasi dosis 2: 12/03 09.00 WIB & *119# 100% {Rp}";
        let m = sms(42, "+6281234567001", text);
        assert_eq!(m.text.encoding(), Encoding::Gsm7, "test text must be GSM-7");
        let got = gw.send(&m).await;
        assert_eq!(
            got,
            Ok(Accepted {
                gateway_message_id: Some("07033084-5cfd-4812-90a4-e4d24ffb6e3d".to_string())
            })
        );
        let seen = seen.lock().expect("test mutex")[0].clone();
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.query, None, "nothing in the URL");
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/x-www-form-urlencoded")
        );
        let want: &[(&str, &str)] = &[
            ("username", "pedulicovid"),
            ("password", "p&ss w?rd%"),
            ("to", "6281234567001"),
            ("from", "PEDULICOVID"),
            ("coding", "0"),
            ("content", text),
            ("dlr", "yes"),
            (
                "dlr-url",
                "http://127.0.0.1:8080/callbacks/jasmin/TOKEN?pcid=42",
            ),
            ("dlr-level", "3"),
            ("dlr-method", "POST"),
        ];
        for (k, v) in want {
            assert_eq!(seen.form.get(*k).map(String::as_str), Some(*v), "field {k}");
        }
        assert_eq!(seen.count, want.len(), "no other fields: {:?}", seen.form);
    }

    #[tokio::test]
    async fn request_for_ucs2_text() {
        let (url, seen) = capturing_send((StatusCode::OK, "Success \"abc\"")).await;
        let config = JasminConfig {
            sender: String::new(),
            dlr_level: DlrLevel::Terminal,
            dlr_method: DlrMethod::Get,
            ..JasminConfig::default()
        };
        let gw = gateway(&url, "http://us/cb?token=T", config);
        let text = "Vaksinasi 疫苗 untuk Anda 💉";
        let m = sms(7, "081234567002", text);
        assert_eq!(m.text.encoding(), Encoding::Ucs2, "test text must be UCS-2");
        gw.send(&m).await.expect("accepted");
        let seen = seen.lock().expect("test mutex")[0].clone();
        let f = &seen.form;
        assert_eq!(f["coding"], "8");
        assert!(
            !f.contains_key("content"),
            "content and hex-content exclude each other"
        );
        assert!(!f.contains_key("from"), "empty sender left to Jasmin");
        let hex = &f["hex-content"];
        assert!(hex.starts_with("00560061006B"), "{hex}");
        assert!(
            hex.ends_with("D83DDC89"),
            "surrogate pair, big-endian: {hex}"
        );
        assert_eq!(decode_utf16be_hex(hex), text, "UTF-16BE round trip");
        assert_eq!(f["to"], "6281234567002");
        assert_eq!(f["dlr-url"], "http://us/cb?token=T&pcid=7");
        assert_eq!(f["dlr-level"], "2");
        assert_eq!(f["dlr-method"], "GET");
        assert_eq!(seen.count, 9, "no `from`: {:?}", seen.form);
    }

    #[test]
    fn debug_of_the_config_hides_the_password() {
        let config = JasminConfig {
            password: Secret::new("hunter2"),
            ..JasminConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn settings_deserialise() {
        let c: JasminConfig = toml::from_str(
            "send_url = \"http://j:1401/send\"\ndlr_level = 1\ndlr_method = \"get\"",
        )
        .expect("parses");
        assert_eq!(c.dlr_level, DlrLevel::Smsc);
        assert_eq!(c.dlr_method, DlrMethod::Get);
        assert_eq!(c.username, "pedulicovid", "unset fields keep their default");
        let d = JasminConfig::default();
        assert_eq!((d.dlr_level.as_u8(), d.dlr_method.as_str()), (3, "POST"));
        for bad in [
            "dlr_level = 4",
            "dlr_level = 0",
            "dlr_method = \"PUT\"",
            "dlr-level = 3",
        ] {
            assert!(toml::from_str::<JasminConfig>(bad).is_err(), "{bad}");
        }
    }

    fn kind(r: &Result<Accepted, SendError>) -> String {
        match r {
            Ok(a) => format!(
                "accepted {}",
                a.gateway_message_id.as_deref().unwrap_or("-")
            ),
            Err(SendError::Retryable { .. }) => "retry".to_string(),
            Err(SendError::Permanent {
                invalid_number: true,
                ..
            }) => "perm-invalid".to_string(),
            Err(SendError::Permanent { .. }) => "perm".to_string(),
            Err(SendError::Throttled { retry_after }) => format!("throttled {retry_after:?}"),
            Err(SendError::GatewayFault { kind, .. }) => format!("fault {}", kind.as_str()),
        }
    }

    #[test]
    fn every_documented_answer() {
        let cases: &[(u16, &str, &str)] = &[
            (
                200,
                "Success \"07033084-5cfd-4812-90a4-e4d24ffb6e3d\"",
                "accepted 07033084-5cfd-4812-90a4-e4d24ffb6e3d",
            ),
            (200, "Success \"abc\"\n", "accepted abc"),
            (200, "Success \"\"", "retry"),
            (200, "Success", "retry"),
            (200, "<html>proxy</html>", "retry"),
            (200, "", "retry"),
            (
                400,
                "Error \"Mandatory arguments not found, please refer to the HTTPAPI specifications.\"",
                "perm",
            ),
            (400, "Error \"Argument dlr-level has an invalid value: 7.\"", "perm"),
            (400, "Error \"Argument to has an invalid value: 62x.\"", "perm-invalid"),
            (
                400,
                "Error \"Argument b'to' has an invalid value: b'62x'.\"",
                "perm-invalid",
            ),
            (400, "Error \"content or hex-content not present.\"", "perm"),
            (
                400,
                "Error \"Value filter failed for username [u] (destination_address filter mismatch).\"",
                "perm",
            ),
            (
                403,
                "Error \"Authentication failure for username:pedulicovid\"",
                "fault gateway_config",
            ),
            (
                403,
                "Error \"Authorization failed for username:pedulicovid\"",
                "fault gateway_config",
            ),
            (
                403,
                "Error \"Cannot charge submit_sm, check RouterPB log file for details\"",
                "retry",
            ),
            (403, "Error \"User throughput exceeded\"", "throttled None"),
            (412, "Error \"No route found\"", "retry"),
            (412, "Error \"Failover route has no bound connectors\"", "retry"),
            (
                500,
                "Error \"Cannot send submit_sm, check SMPPClientManagerPB log file for details\"",
                "retry",
            ),
            (500, "Error \"Unknown error: boom\"", "retry"),
            (503, "Error \"InterceptorPB not connected !\"", "retry"),
            (429, "", "throttled None"),
            (404, "Not Found", "fault gateway_config"),
            (302, "", "fault gateway_config"),
        ];
        for &(code, body, want) in cases {
            let status = StatusCode::from_u16(code).expect("valid status");
            let got = interpret_answer(status, None, body);
            assert_eq!(kind(&got), want, "{code} {body:?}: {got:?}");
        }
        let got = interpret_answer(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&HeaderValue::from_static("4")),
            "",
        );
        assert_eq!(
            got,
            Err(SendError::Throttled {
                retry_after: Some(Duration::from_secs(4))
            })
        );
        // Reasons quote Jasmin's words, never a number it echoed.
        let got = interpret_answer(
            StatusCode::BAD_REQUEST,
            None,
            "Error \"Argument to has an invalid value: 6281234567890x.\"",
        );
        let Err(SendError::Permanent { reason, .. }) = got else {
            panic!("expected permanent, got {got:?}");
        };
        assert!(!reason.contains("6281234567890"), "{reason}");
    }

    fn form_pairs(s: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(s.as_bytes())
            .into_owned()
            .collect()
    }

    /// Owned pairs as the callback handler hands them to a parser.
    fn borrowed(pairs: &[(String, String)]) -> Vec<QueryPair<'_>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect()
    }

    /// One report as Jasmin sends it, and what it must parse to.
    struct ReportCase {
        query: &'static str,
        body: &'static str,
        outcome: ReceiptOutcome,
        raw: &'static str,
        message_id: Option<i64>,
        err: Option<&'static str>,
    }

    const REPORTS: &[ReportCase] = &[
        // Level 2/3 handset receipts, POSTed (our default).
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&id_smsc=2567&message_status=DELIVRD&level=3&connector=smsc1&subdate=1311022338&donedate=1311022339&sub=001&dlvrd=001&err=000&text=Jadwal+vaksinasi+dos",
            outcome: ReceiptOutcome::Delivered,
            raw: "DELIVRD",
            message_id: Some(5),
            err: Some("000"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&id_smsc=2567&message_status=UNDELIV&level=2&err=001",
            outcome: ReceiptOutcome::Undelivered,
            raw: "UNDELIV",
            message_id: Some(5),
            err: Some("001"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=DELETED&level=2&err=002",
            outcome: ReceiptOutcome::Undelivered,
            raw: "DELETED",
            message_id: Some(5),
            err: Some("002"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=EXPIRED&level=2&err=027",
            outcome: ReceiptOutcome::Expired,
            raw: "EXPIRED",
            message_id: Some(5),
            err: Some("027"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=REJECTD&level=2&err=011",
            outcome: ReceiptOutcome::Rejected,
            raw: "REJECTD",
            message_id: Some(5),
            err: Some("011"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ACCEPTD&level=2&err=000",
            outcome: ReceiptOutcome::Accepted,
            raw: "ACCEPTD",
            message_id: Some(5),
            err: Some("000"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=enroute&level=2",
            outcome: ReceiptOutcome::Accepted,
            raw: "enroute",
            message_id: Some(5),
            err: None,
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=UNKNOWN&level=2&err=000",
            outcome: ReceiptOutcome::Unknown,
            raw: "UNKNOWN",
            message_id: Some(5),
            err: Some("000"),
        },
        ReportCase {
            query: "pcid=5",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=SOMETHING&level=2",
            outcome: ReceiptOutcome::Unknown,
            raw: "SOMETHING",
            message_id: Some(5),
            err: None,
        },
        // Level 1 SMSC answers.
        ReportCase {
            query: "pcid=6",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_ROK&level=1&connector=smsc1",
            outcome: ReceiptOutcome::Accepted,
            raw: "ESME_ROK",
            message_id: Some(6),
            err: None,
        },
        ReportCase {
            query: "pcid=6",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_RINVDSTADR&level=1",
            outcome: ReceiptOutcome::InvalidNumber,
            raw: "ESME_RINVDSTADR",
            message_id: Some(6),
            err: Some("ESME_RINVDSTADR"),
        },
        ReportCase {
            query: "pcid=6",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_RINVNUMDESTS&level=1",
            outcome: ReceiptOutcome::Rejected,
            raw: "ESME_RINVNUMDESTS",
            message_id: Some(6),
            err: Some("ESME_RINVNUMDESTS"),
        },
        ReportCase {
            query: "pcid=6",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_RINVSRCADR&level=1",
            outcome: ReceiptOutcome::Rejected,
            raw: "ESME_RINVSRCADR",
            message_id: Some(6),
            err: Some("ESME_RINVSRCADR"),
        },
        ReportCase {
            query: "pcid=6",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_RTHROTTLED&level=1",
            outcome: ReceiptOutcome::Rejected,
            raw: "ESME_RTHROTTLED",
            message_id: Some(6),
            err: Some("ESME_RTHROTTLED"),
        },
        // dlr-method=GET: every field in the query.
        ReportCase {
            query: "pcid=7&id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=DELIVRD&level=3&id_smsc=99&err=000",
            body: "",
            outcome: ReceiptOutcome::Delivered,
            raw: "DELIVRD",
            message_id: Some(7),
            err: Some("000"),
        },
        // Jasmin <= 0.9 GET: a second '?' swallowed into our pcid.
        ReportCase {
            query: "pcid=8?id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=ESME_ROK&level=1",
            body: "",
            outcome: ReceiptOutcome::Accepted,
            raw: "ESME_ROK",
            message_id: Some(8),
            err: None,
        },
        // No pcid (a dlr-url configured by hand): Jasmin's id still matches.
        ReportCase {
            query: "",
            body: "id=16fd2706-8baf-433b-82eb-8c7fada847da&message_status=DELIVRD&level=2&err=000",
            outcome: ReceiptOutcome::Delivered,
            raw: "DELIVRD",
            message_id: None,
            err: Some("000"),
        },
    ];

    #[test]
    fn every_report_form() {
        for (i, case) in REPORTS.iter().enumerate() {
            let got = JasminReceipts
                .parse(&borrowed(&form_pairs(case.query)), case.body.as_bytes())
                .unwrap_or_else(|e| panic!("report {i}: {e}"));
            assert_eq!(
                got,
                ParsedReceipt {
                    message_id: case.message_id,
                    gateway_message_id: Some("16fd2706-8baf-433b-82eb-8c7fada847da".to_string()),
                    raw_status: case.raw.to_string(),
                    error_code: case.err.map(str::to_string),
                    outcome: case.outcome,
                },
                "report {i}"
            );
        }
        assert_eq!(JasminReceipts.ack_body(), "ACK/Jasmin");
    }

    #[test]
    fn malformed_reports() {
        let cases: &[(&str, &str, &str)] = &[
            ("pcid=5", "message_status=DELIVRD", "id"),
            ("pcid=5", "id=&message_status=DELIVRD", "id"),
            ("pcid=5", "id=abc", "message_status"),
            ("pcid=5", "id=abc&message_status=", "message_status"),
            ("pcid=x", "id=abc&message_status=DELIVRD", "pcid"),
            ("pcid=", "id=abc&message_status=DELIVRD", "pcid"),
            ("pcid=1.5", "id=abc&message_status=DELIVRD", "pcid"),
            ("", "", "id"),
            ("", "{\"id\":\"abc\",\"message_status\":\"DELIVRD\"}", "id"),
        ];
        for &(query, body, field) in cases {
            let err = JasminReceipts
                .parse(&borrowed(&form_pairs(query)), body.as_bytes())
                .expect_err(body);
            assert_eq!(err.field, field, "{query} {body}");
        }
    }

    // ---- End to end: simulator (Jasmin mode) + gateway + receiver ----

    /// Last digit → outcome, as in the Kannel simulator tests.
    const RULES: &str = "1=delivered,2=undelivered,3=rejected,4=expired,5=invalid,6=no_receipt";

    fn sim_config() -> SimulatorConfig {
        SimulatorConfig {
            listen: "127.0.0.1:0".to_string(),
            dialect: SimDialect::Jasmin,
            receipt_delay_ms: 10,
            receipt_jitter_ms: 5,
            rules: parse_rules(RULES).expect("test rules parse"),
            callback_retry_delay_ms: 30,
            seed: Some(11),
            ..SimulatorConfig::default()
        }
    }

    async fn start_sim(config: SimulatorConfig) -> SimHandle {
        let sim = Simulator::bind(config).await.expect("bind simulator");
        let handle = sim.handle();
        sim.spawn(std::future::pending());
        handle
    }

    /// What the receiver hands the test for each callback.
    type Got = (Method, Result<ParsedReceipt, ReceiptError>);

    /// Our callback endpoint in miniature: parses with [`JasminReceipts`]
    /// and answers `status` with `ack` (the real one answers 200 with
    /// `ack_body()`).
    async fn start_receiver(
        status: StatusCode,
        ack: &'static str,
    ) -> (String, mpsc::UnboundedReceiver<Got>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let parser: Arc<dyn ReceiptParser> = Arc::new(JasminReceipts);
        let app = axum::Router::new().route(
            "/callbacks/jasmin/TOKEN",
            axum::routing::any(move |method: Method, RawQuery(q): RawQuery, body: Bytes| {
                let tx = tx.clone();
                let parser = parser.clone();
                async move {
                    let q = q.unwrap_or_default();
                    let query: Vec<QueryPair> = url::form_urlencoded::parse(q.as_bytes()).collect();
                    // The test may have stopped listening; that is fine.
                    let _ = tx.send((method, parser.parse(&query, &body)));
                    (status, ack)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/callbacks/jasmin/TOKEN"), rx)
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a callback within 5 s")
            .expect("receiver alive")
    }

    async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Got>) {
        let extra = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        assert!(extra.is_err(), "unexpected callback: {extra:?}");
    }

    /// Sends one message to a number ending in `last_digit` and returns the
    /// reports it produced, sorted so the level-1 report comes first.
    async fn send_and_collect(
        last_digit: char,
        level: DlrLevel,
        method: DlrMethod,
        expected: usize,
    ) -> (SimHandle, String, Vec<ParsedReceipt>) {
        let sim = start_sim(sim_config()).await;
        let (callback, mut rx) = start_receiver(StatusCode::OK, ACK_BODY).await;
        let config = JasminConfig {
            dlr_level: level,
            dlr_method: method,
            ..JasminConfig::default()
        };
        let gw = gateway(&sim.send_url(), &callback, config);
        let accepted = gw
            .send(&sms(
                41,
                &format!("+628123456700{last_digit}"),
                "Jadwal vaksinasi",
            ))
            .await
            .expect("jasmin accepts");
        let jasmin_id = accepted.gateway_message_id.expect("jasmin gives an id");
        let mut receipts = Vec::new();
        for _ in 0..expected {
            let (m, parsed) = next(&mut rx).await;
            let want = match method {
                DlrMethod::Get => Method::GET,
                DlrMethod::Post => Method::POST,
            };
            assert_eq!(m, want, "dlr-method is honoured");
            receipts.push(parsed.expect("simulator reports parse"));
        }
        nothing_more(&mut rx).await;
        receipts.sort_by_key(|r| !r.raw_status.starts_with("ESME_"));
        for r in &receipts {
            assert_eq!(r.message_id, Some(41), "pcid comes back");
            assert_eq!(r.gateway_message_id.as_deref(), Some(jasmin_id.as_str()));
        }
        (sim, jasmin_id, receipts)
    }

    /// `(raw_status, outcome, error_code)` of one report.
    type Seen3 = (String, ReceiptOutcome, Option<String>);

    fn outcomes(receipts: &[ParsedReceipt]) -> Vec<Seen3> {
        receipts
            .iter()
            .map(|r| (r.raw_status.clone(), r.outcome, r.error_code.clone()))
            .collect()
    }

    fn o(raw: &str, outcome: ReceiptOutcome, err: Option<&str>) -> Seen3 {
        (raw.to_string(), outcome, err.map(str::to_string))
    }

    #[tokio::test]
    async fn every_outcome_end_to_end_level_3() {
        use ReceiptOutcome as R;
        let cases: Vec<(char, Vec<Seen3>)> = vec![
            (
                '1',
                vec![
                    o("ESME_ROK", R::Accepted, None),
                    o("DELIVRD", R::Delivered, Some("000")),
                ],
            ),
            (
                '2',
                vec![
                    o("ESME_ROK", R::Accepted, None),
                    o("UNDELIV", R::Undelivered, Some("001")),
                ],
            ),
            (
                '3',
                vec![
                    o("ESME_ROK", R::Accepted, None),
                    o("REJECTD", R::Rejected, Some("011")),
                ],
            ),
            (
                '4',
                vec![
                    o("ESME_ROK", R::Accepted, None),
                    o("EXPIRED", R::Expired, Some("027")),
                ],
            ),
            (
                '5',
                vec![o(
                    "ESME_RINVDSTADR",
                    R::InvalidNumber,
                    Some("ESME_RINVDSTADR"),
                )],
            ),
            ('6', vec![o("ESME_ROK", R::Accepted, None)]),
        ];
        for (digit, want) in cases {
            let (sim, _, receipts) =
                send_and_collect(digit, DlrLevel::Both, DlrMethod::Post, want.len()).await;
            assert_eq!(outcomes(&receipts), want, "number ending {digit}");
            let stats = sim.stats();
            assert_eq!((stats.submits_total, stats.duplicates), (1, 0));
            assert_eq!(stats.callbacks_sent, want.len() as u64);
            assert_eq!(stats.callbacks_unacknowledged, 0);
        }
    }

    #[tokio::test]
    async fn levels_and_get_method() {
        use ReceiptOutcome as R;
        let (_, _, r) = send_and_collect('1', DlrLevel::Terminal, DlrMethod::Get, 1).await;
        assert_eq!(outcomes(&r), vec![o("DELIVRD", R::Delivered, Some("000"))]);
        let (_, _, r) = send_and_collect('1', DlrLevel::Smsc, DlrMethod::Get, 1).await;
        assert_eq!(outcomes(&r), vec![o("ESME_ROK", R::Accepted, None)]);
        // Level 2 only: an SMSC refusal is never reported (see DlrLevel).
        let (_, _, r) = send_and_collect('5', DlrLevel::Terminal, DlrMethod::Post, 0).await;
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn reports_not_acknowledged_are_sent_again() {
        let mut config = sim_config();
        config.callback_retries = 2;
        let sim = start_sim(config).await;
        // 200 OK, but not the exact acknowledgement Jasmin needs.
        let (callback, mut rx) = start_receiver(StatusCode::OK, "OK").await;
        let gw = gateway(
            &sim.send_url(),
            &callback,
            JasminConfig {
                dlr_level: DlrLevel::Terminal,
                ..JasminConfig::default()
            },
        );
        gw.send(&sms(9, "+6281234567001", "hi"))
            .await
            .expect("accepted");
        let (_, first) = next(&mut rx).await;
        let first = first.expect("parses");
        for _ in 0..2 {
            let (_, again) = next(&mut rx).await;
            assert_eq!(again.expect("parses"), first, "the same report again");
        }
        nothing_more(&mut rx).await;
        let stats = sim.stats();
        assert_eq!(
            (
                stats.callback_attempts,
                stats.callbacks_unacknowledged,
                stats.callbacks_failed,
                stats.callbacks_sent
            ),
            (3, 3, 1, 0)
        );
    }

    #[tokio::test]
    async fn a_404_is_not_retried() {
        let sim = start_sim(sim_config()).await;
        let (callback, mut rx) = start_receiver(StatusCode::NOT_FOUND, "unknown message").await;
        let gw = gateway(
            &sim.send_url(),
            &callback,
            JasminConfig {
                dlr_level: DlrLevel::Smsc,
                ..JasminConfig::default()
            },
        );
        gw.send(&sms(9, "+6281234567001", "hi"))
            .await
            .expect("accepted");
        next(&mut rx).await.1.expect("parses");
        nothing_more(&mut rx).await;
        let stats = sim.stats();
        assert_eq!(
            (
                stats.callback_attempts,
                stats.callbacks_failed,
                stats.callbacks_unacknowledged
            ),
            (1, 1, 0)
        );
    }

    #[tokio::test]
    async fn wrong_password_is_a_gateway_fault() {
        let sim = start_sim(sim_config()).await;
        let gw = gateway(
            &sim.send_url(),
            CALLBACK,
            JasminConfig {
                password: Secret::new("wrong"),
                ..JasminConfig::default()
            },
        );
        match gw.send(&sms(1, "+6281234567001", "hi")).await {
            Err(SendError::GatewayFault {
                kind: Fault::Config,
                reason,
            }) => {
                assert!(reason.contains("authentication"), "{reason}");
            }
            other => panic!("expected a configuration fault, got {other:?}"),
        }
        let stats = sim.stats();
        assert_eq!((stats.rejected_requests, stats.submits_total), (1, 0));
    }
}

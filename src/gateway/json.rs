//! A generic JSON-over-HTTP aggregator, described entirely by settings.
//!
//! Many Indonesian SMS aggregators speak "POST a JSON object, get a JSON
//! object with an id back, receive JSON receipts on a webhook", each with its
//! own field names. Rather than one file per aggregator, [`JsonConfig`] holds
//! the request template, where the id is in the answer, and how receipts map
//! to outcomes. The built-in simulator's JSON mode is the reference example:
//! [`JsonConfig::default`] talks to it out of the box.
//!
//! # The request
//!
//! `body_template` is JSON text with placeholders. Each placeholder is
//! replaced by its value **JSON-string-escaped, without the quotes**, so put
//! it inside a string (`"text": "{{text}}"`) — it may share the string with
//! other text (`"ref": "pc-{{message_id}}"`). `{{message_id}}` is digits, so
//! it may also stand alone as a number (`"ref": {{message_id}}`).
//!
//! | placeholder        | value                                               |
//! |--------------------|-----------------------------------------------------|
//! | `{{to}}`           | E.164 digits without `+`: `6281234567890`           |
//! | `{{to_e164}}`      | E.164 with `+`: `+6281234567890`                    |
//! | `{{text}}`         | the message text (UTF-8)                            |
//! | `{{sender}}`       | `sender` from the settings                          |
//! | `{{message_id}}`   | our `messages.id`                                   |
//! | `{{callback_url}}` | this message's receipt URL: `…/{id}.{mac}?pcid={id}` |
//! | `{{coding}}`       | `gsm7` or `ucs2`                                    |
//!
//! `method = "GET"` sends the rendered template's members as query
//! parameters instead (the template must then be a flat object). The
//! template is checked when the gateway is built: unknown placeholders, no
//! destination or no text, or a result that is not JSON with a quoted
//! `"`, `\` and newline in the text are configuration errors.
//!
//! # The simulator's JSON API (the default configuration)
//!
//! `POST /v1/messages` with `Authorization: Bearer <password>` and
//! `{"to": "62…", "text": "…", "reference": "<our id>", "callback_url": "…"}`
//! answers `202 {"message_id": "<id>", "status": "accepted"}`, then POSTs
//! `{"message_id": "<id>", "reference": "<our id>", "status": "DELIVERED" |
//! "FAILED" | "EXPIRED" | "REJECTED" | "INVALID", "error": "…" | null}` to
//! `callback_url`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;

use super::callback::CallbackUrl;
use super::http::{parse_retry_after, refusal, unrecognised_answer, HttpGateway, Wire};
use super::{
    Accepted, OutboundSms, ParsedReceipt, QueryPair, ReceiptError, ReceiptOutcome, ReceiptParser,
    SendError, Transient,
};
use crate::secret::Secret;

/// Query parameter carrying our `messages.id` in `{{callback_url}}`, so a
/// receipt can be matched even from an aggregator that echoes no reference.
pub use super::callback::OUR_ID_PARAM;

/// HTTP method of the send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
pub enum JsonMethod {
    /// The rendered template is the JSON body.
    #[default]
    #[serde(rename = "POST", alias = "post")]
    Post,
    /// The rendered template's members become query parameters.
    #[serde(rename = "GET", alias = "get")]
    Get,
}

/// How the aggregator wants us to authenticate.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum JsonAuth {
    /// No `Authorization` header (a key in `headers` or the URL instead).
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer { token: Secret },
    /// `Authorization: Basic base64(username:password)`.
    Basic { username: String, password: Secret },
}

/// The outcomes an aggregator status can be mapped to (settings names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MappedOutcome {
    Delivered,
    Undelivered,
    Expired,
    Rejected,
    InvalidNumber,
    /// Intermediate (queued, sent to the operator).
    Accepted,
}

impl From<MappedOutcome> for ReceiptOutcome {
    fn from(m: MappedOutcome) -> Self {
        match m {
            MappedOutcome::Delivered => ReceiptOutcome::Delivered,
            MappedOutcome::Undelivered => ReceiptOutcome::Undelivered,
            MappedOutcome::Expired => ReceiptOutcome::Expired,
            MappedOutcome::Rejected => ReceiptOutcome::Rejected,
            MappedOutcome::InvalidNumber => ReceiptOutcome::InvalidNumber,
            MappedOutcome::Accepted => ReceiptOutcome::Accepted,
        }
    }
}

/// Where a receipt's fields are (JSON Pointers, RFC 6901) and what its
/// statuses mean.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonReceiptMapping {
    /// The aggregator's message id (the one its send answer gave us).
    pub id_pointer: String,
    /// Our `messages.id`, when the aggregator echoes a reference we sent
    /// (a string or a number). Without it, `pcid` in a per-message callback
    /// URL or the aggregator's id match the receipt (on a fixed URL, `pcid`
    /// is ignored: nothing signs it).
    pub our_id_pointer: Option<String>,
    /// The aggregator's status (a string or a number).
    pub status_pointer: String,
    /// The aggregator's error code or text, if any.
    pub error_pointer: Option<String>,
    /// Aggregator status → outcome, keys compared case-insensitively. A
    /// status not listed is stored raw as `unknown`, never guessed.
    pub statuses: BTreeMap<String, MappedOutcome>,
    /// The aggregator's own signature on its callbacks, checked before
    /// anything is read (`[gateways.json.receipt.signature]`).
    pub signature: Option<ReceiptSignature>,
}

/// How an aggregator signs its callbacks: HMAC-SHA256 over the raw body, or
/// over a timestamp and the body (`signed_payload`) with the timestamp in
/// its own header and a tolerance window against replays. This covers
/// HMAC-SHA256 webhook schemes such as GitHub's (`prefix = "sha256="` over
/// the body) and Slack's (`prefix = "v0="`, `signed_payload =
/// "v0:{timestamp}:{body}"`); asymmetric ones (Ed25519, JWT) are not
/// implemented. A callback
/// whose signature is missing, wrong or stale is refused 401 (and counted),
/// and nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptSignature {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// The HMAC key the aggregator shares with us.
    pub secret: Secret,
    /// How the signature is written: `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in its header, e.g. `sha256=` (removed
    /// before comparing).
    #[serde(default)]
    pub prefix: String,
    /// The header carrying the time of signing, in Unix seconds. When set,
    /// it is part of what is signed and must be within `tolerance_secs`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// What is signed when `timestamp_header` is set: `{timestamp}` and
    /// `{body}` (the raw body, byte for byte) in any order with any text
    /// around them. Default `{timestamp}.{body}`.
    #[serde(default = "default_signed_payload")]
    pub signed_payload: String,
    /// How far the timestamp may be from our clock, either way, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

fn default_signed_payload() -> String {
    "{timestamp}.{body}".to_string()
}

fn default_tolerance() -> u64 {
    300
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    /// Standard or URL-safe alphabet, with or without padding.
    Base64,
}

impl ReceiptSignature {
    fn check_config(&self) -> Result<(), JsonConfigError> {
        let bad = |what: &str| JsonConfigError::Signature(what.to_string());
        if HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            return Err(bad("header is not a valid header name"));
        }
        if self.secret.is_empty() {
            return Err(bad("secret is empty"));
        }
        if let Some(t) = &self.timestamp_header {
            if HeaderName::from_bytes(t.as_bytes()).is_err() {
                return Err(bad("timestamp_header is not a valid header name"));
            }
            if self.signed_payload.matches("{body}").count() != 1
                || self.signed_payload.matches("{timestamp}").count() != 1
            {
                return Err(bad(
                    "signed_payload must hold {timestamp} and {body} once each",
                ));
            }
        }
        Ok(())
    }

    /// Checks one callback's signature at `now_secs`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now_secs: i64,
    ) -> Result<(), &'static str> {
        use hmac::Mac;
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let presented = header(&self.header).ok_or("signature header missing")?;
        let presented = presented
            .strip_prefix(self.prefix.as_str())
            .ok_or("signature without its prefix")?
            .trim();
        let presented = decode_signature(presented, self.encoding).ok_or("signature unreadable")?;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        match &self.timestamp_header {
            None => mac.update(body),
            Some(t) => {
                let ts = header(t).ok_or("timestamp header missing")?;
                let at: i64 = ts.parse().map_err(|_| "timestamp not Unix seconds")?;
                if now_secs.abs_diff(at) > self.tolerance_secs {
                    return Err("timestamp outside the tolerance window (stale or replayed)");
                }
                let (pre, post) = self
                    .signed_payload
                    .split_once("{body}")
                    .expect("checked at start: {body} is present");
                mac.update(pre.replace("{timestamp}", ts).as_bytes());
                mac.update(body);
                mac.update(post.replace("{timestamp}", ts).as_bytes());
            }
        }
        // `verify_slice` compares in constant time.
        mac.verify_slice(&presented)
            .map_err(|_| "signature does not match")
    }

    /// The header value an aggregator would send for `body` at `timestamp`
    /// (the simulator and tests sign with it).
    pub fn sign(&self, body: &[u8], timestamp: Option<i64>) -> String {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        match (timestamp, self.signed_payload.split_once("{body}")) {
            (Some(ts), Some((pre, post))) if self.timestamp_header.is_some() => {
                mac.update(pre.replace("{timestamp}", &ts.to_string()).as_bytes());
                mac.update(body);
                mac.update(post.replace("{timestamp}", &ts.to_string()).as_bytes());
            }
            _ => mac.update(body),
        }
        let raw = mac.finalize().into_bytes();
        let text = match self.encoding {
            SignatureEncoding::Hex => raw.iter().map(|b| format!("{b:02x}")).collect(),
            SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.encode(raw),
        };
        format!("{}{text}", self.prefix)
    }
}

fn decode_signature(text: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    use base64::Engine;
    match encoding {
        SignatureEncoding::Hex => {
            if !text.len().is_multiple_of(2) || !text.is_ascii() {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
                .collect()
        }
        SignatureEncoding::Base64 => {
            use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
            let unpadded = text.trim_end_matches('=');
            STANDARD
                .decode(text)
                .or_else(|_| URL_SAFE.decode(text))
                .or_else(|_| URL_SAFE_NO_PAD.decode(unpadded))
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(unpadded))
                .ok()
        }
    }
}

impl Default for JsonReceiptMapping {
    /// The simulator's receipts.
    fn default() -> Self {
        let statuses = [
            ("DELIVERED", MappedOutcome::Delivered),
            ("FAILED", MappedOutcome::Undelivered),
            ("EXPIRED", MappedOutcome::Expired),
            ("REJECTED", MappedOutcome::Rejected),
            ("INVALID", MappedOutcome::InvalidNumber),
            ("ACCEPTED", MappedOutcome::Accepted),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        JsonReceiptMapping {
            id_pointer: "/message_id".to_string(),
            our_id_pointer: Some("/reference".to_string()),
            status_pointer: "/status".to_string(),
            error_pointer: Some("/error".to_string()),
            statuses,
            signature: None,
        }
    }
}

/// One JSON aggregator, read from settings. The defaults describe the
/// built-in simulator's JSON mode at its default address.
#[derive(Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonConfig {
    /// The send endpoint.
    pub url: String,
    /// `POST` (default) or `GET`.
    pub method: JsonMethod,
    /// Extra request headers (e.g. an API key header). Values are secrets:
    /// they never print.
    pub headers: BTreeMap<String, Secret>,
    /// `Authorization` scheme.
    pub auth: JsonAuth,
    /// Sender id for `{{sender}}`.
    pub sender: String,
    /// The request body; see the module documentation.
    pub body_template: String,
    /// JSON Pointer to the aggregator's message id in a 2xx answer.
    pub id_pointer: String,
    /// HTTP statuses (4xx/5xx) that mean "slow down" for this aggregator,
    /// besides 429.
    pub throttle_status: Vec<u16>,
    /// How to read its receipts.
    pub receipt: JsonReceiptMapping,
    /// Whole-request timeout; a slow answer is retried.
    pub timeout_ms: u64,
}

/// By hand rather than derived: `url` may carry credentials (see
/// [`crate::secret::redact_url`]).
impl std::fmt::Debug for JsonConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be added here too.
        let JsonConfig {
            url,
            method,
            headers,
            auth,
            sender,
            body_template,
            id_pointer,
            throttle_status,
            receipt,
            timeout_ms,
        } = self;
        f.debug_struct("JsonConfig")
            .field("url", &crate::secret::DebugUrl(url))
            .field("method", method)
            .field("headers", headers)
            .field("auth", auth)
            .field("sender", sender)
            .field("body_template", body_template)
            .field("id_pointer", id_pointer)
            .field("throttle_status", throttle_status)
            .field("receipt", receipt)
            .field("timeout_ms", timeout_ms)
            .finish()
    }
}

impl Default for JsonConfig {
    fn default() -> Self {
        JsonConfig {
            url: "http://127.0.0.1:13013/v1/messages".to_string(),
            method: JsonMethod::Post,
            headers: BTreeMap::new(),
            auth: JsonAuth::Bearer {
                token: Secret::new("secret"),
            },
            sender: "PEDULICOVID".to_string(),
            body_template: concat!(
                r#"{"to": "{{to}}", "text": "{{text}}", "sender": "{{sender}}", "#,
                r#""reference": "{{message_id}}", "callback_url": "{{callback_url}}"}"#
            )
            .to_string(),
            id_pointer: "/message_id".to_string(),
            throttle_status: Vec::new(),
            receipt: JsonReceiptMapping::default(),
            timeout_ms: 10_000,
        }
    }
}

impl JsonConfig {
    /// Whether this aggregator can only call one fixed receipt URL: its
    /// template has no `{{callback_url}}`, so it is never handed a
    /// per-message URL and its callbacks carry the gateway-wide token.
    pub fn uses_fixed_url(&self) -> bool {
        Template::parse(&self.body_template)
            .map(|t| !t.0.contains(&Piece::Field(Field::CallbackUrl)))
            .unwrap_or(false)
    }

    /// The request timeout as a `Duration`, for [`super::http::client`].
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// A JSON gateway or receipt mapping that cannot work as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonConfigError {
    #[error("body_template: {0}")]
    Template(String),
    #[error("{field}: {pointer:?} is not a JSON Pointer (use \"\" or \"/a/b\")")]
    Pointer {
        field: &'static str,
        pointer: String,
    },
    #[error("headers: {0:?} is not a valid header name or value")]
    Header(String),
    #[error("receipt.signature: {0}")]
    Signature(String),
    #[error("throttle_status: {0} is not a 4xx or 5xx status")]
    ThrottleStatus(u16),
    #[error("receipt.statuses: {0:?} is listed twice with different outcomes (keys ignore case)")]
    DuplicateStatus(String),
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Field(Field),
}

/// The placeholders a template may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    To,
    ToE164,
    Text,
    Sender,
    MessageId,
    CallbackUrl,
    Coding,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "to" => Field::To,
            "to_e164" => Field::ToE164,
            "text" => Field::Text,
            "sender" => Field::Sender,
            "message_id" => Field::MessageId,
            "callback_url" => Field::CallbackUrl,
            "coding" => Field::Coding,
            _ => return None,
        })
    }
}

/// Values for one rendering.
struct Values<'a> {
    to: &'a str,
    to_e164: &'a str,
    text: &'a str,
    sender: &'a str,
    message_id: i64,
    callback_url: String,
    coding: &'a str,
}

/// `body_template`, split once at start-up.
#[derive(Debug, Clone)]
struct Template(Vec<Piece>);

impl Template {
    /// Splits at `{{name}}` (spaces inside the braces allowed).
    fn parse(text: &str) -> Result<Template, JsonConfigError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| {
                JsonConfigError::Template("a \"{{\" is never closed by \"}}\"".to_string())
            })?;
            let name = after[..close].trim();
            let field = Field::parse(name).ok_or_else(|| {
                JsonConfigError::Template(format!(
                    "unknown placeholder {{{{{name}}}}} (known: to, to_e164, text, sender, \
                     message_id, callback_url, coding)"
                ))
            })?;
            pieces.push(Piece::Field(field));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        let uses = |f: Field| pieces.contains(&Piece::Field(f));
        if !(uses(Field::To) || uses(Field::ToE164)) {
            return Err(JsonConfigError::Template(
                "no destination ({{to}} or {{to_e164}})".to_string(),
            ));
        }
        if !uses(Field::Text) {
            return Err(JsonConfigError::Template("no {{text}}".to_string()));
        }
        Ok(Template(pieces))
    }

    fn render(&self, v: &Values<'_>) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Field(f) => {
                    let value: std::borrow::Cow<'_, str> = match f {
                        Field::To => v.to.into(),
                        Field::ToE164 => v.to_e164.into(),
                        Field::Text => v.text.into(),
                        Field::Sender => v.sender.into(),
                        Field::MessageId => v.message_id.to_string().into(),
                        Field::CallbackUrl => v.callback_url.as_str().into(),
                        Field::Coding => v.coding.into(),
                    };
                    out.push_str(&json_escape(&value));
                }
            }
        }
        out
    }
}

/// The JSON string escape of `s`, without the surrounding quotes.
fn json_escape(s: &str) -> String {
    // Serialising a `str` cannot fail (no maps with non-string keys, no
    // custom `Serialize`), so the fallback is unreachable.
    let quoted = serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    quoted[1..quoted.len() - 1].to_string()
}

fn check_pointer(field: &'static str, p: &str) -> Result<(), JsonConfigError> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(JsonConfigError::Pointer {
            field,
            pointer: p.to_string(),
        })
    }
}

/// Sends through one JSON aggregator: the shared [`HttpGateway`] speaking
/// [`JsonWire`].
pub type JsonGateway = HttpGateway<JsonWire>;

impl JsonGateway {
    /// Checks the configuration ([`JsonWire::new`]) and builds the gateway.
    /// `callback_url` is the full base of our receipt endpoint; `client`
    /// carries the timeout ([`JsonConfig::timeout`]) and TLS settings.
    pub fn new(
        name: impl Into<String>,
        config: JsonConfig,
        callback_url: CallbackUrl,
        client: reqwest::Client,
    ) -> Result<Self, JsonConfigError> {
        Ok(HttpGateway::with_wire(
            name,
            client,
            JsonWire::new(config, callback_url)?,
        ))
    }
}

/// One aggregator's half of sending: its rendered template (a JSON `POST`,
/// or query parameters for `GET`), its answer read by [`interpret_answer`].
pub struct JsonWire {
    config: JsonConfig,
    /// Our receipt endpoint, signed per message (see [`super::callback`]).
    callback_url: CallbackUrl,
    template: Template,
    /// `config.headers`, checked and built once.
    headers: HeaderMap,
}

impl JsonWire {
    /// Checks the configuration (template, pointers, headers, throttle
    /// statuses, receipt statuses), so one bad setting fails at start-up.
    pub fn new(config: JsonConfig, callback_url: CallbackUrl) -> Result<Self, JsonConfigError> {
        let template = Template::parse(&config.body_template)?;
        // Render with awkward sample values: the result must be JSON (and a
        // flat object for GET), whatever the text holds.
        let sample = Values {
            to: "6281234567890",
            to_e164: "+6281234567890",
            text: "a \"quoted\" \\ text\nwith é 疫 💉",
            sender: &config.sender,
            message_id: 1,
            callback_url: callback_url.for_message_with_our_id(1),
            coding: "ucs2",
        };
        let rendered = template.render(&sample);
        let value: Value = serde_json::from_str(&rendered).map_err(|e| {
            JsonConfigError::Template(format!(
                "does not render to JSON ({e}); put placeholders inside \"…\""
            ))
        })?;
        if config.method == JsonMethod::Get {
            query_pairs(&value).ok_or_else(|| {
                JsonConfigError::Template(
                    "GET needs a flat JSON object (members become query parameters)".to_string(),
                )
            })?;
        }
        check_pointer("id_pointer", &config.id_pointer)?;
        // Receipt mapping checks, so one bad setting fails at start-up.
        JsonReceipts::new(config.receipt.clone())?;
        if let Some(&bad) = config
            .throttle_status
            .iter()
            .find(|&&s| !(400..=599).contains(&s))
        {
            return Err(JsonConfigError::ThrottleStatus(bad));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| JsonConfigError::Header(k.clone()))?;
            let mut value = HeaderValue::from_str(v.expose())
                .map_err(|_| JsonConfigError::Header(k.clone()))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(JsonWire {
            config,
            callback_url,
            template,
            headers,
        })
    }

    /// `{{callback_url}}` for one message.
    pub fn callback_url_for(&self, message_id: i64) -> String {
        self.callback_url.for_message_with_our_id(message_id)
    }

    /// The rendered request for one message (the body for POST). Public so
    /// tests can check it; it holds the number and the text, so it is never
    /// logged.
    pub fn render(&self, sms: &OutboundSms) -> String {
        self.template.render(&Values {
            to: sms.to.digits(),
            to_e164: sms.to.as_e164(),
            text: sms.text.as_str(),
            sender: &self.config.sender,
            message_id: sms.message_id,
            callback_url: self.callback_url_for(sms.message_id),
            coding: sms.text.encoding().as_str(),
        })
    }
}

/// A flat object's members as query pairs (strings as they are, numbers and
/// booleans as JSON text, nulls left out); `None` for anything else.
fn query_pairs(v: &Value) -> Option<Vec<(String, String)>> {
    let obj = v.as_object()?;
    let mut out = Vec::with_capacity(obj.len());
    for (k, v) in obj {
        match v {
            Value::Null => {}
            Value::String(s) => out.push((k.clone(), s.clone())),
            Value::Number(_) | Value::Bool(_) => out.push((k.clone(), v.to_string())),
            Value::Array(_) | Value::Object(_) => return None,
        }
    }
    Some(out)
}

impl Wire for JsonWire {
    const DIALECT: &'static str = "json";

    /// The rendered template as a JSON body (or as query parameters), our
    /// headers and the `Authorization` scheme.
    fn request(
        &self,
        client: &reqwest::Client,
        sms: &OutboundSms,
    ) -> Result<reqwest::RequestBuilder, SendError> {
        let body = self.render(sms);
        let builder = match self.config.method {
            JsonMethod::Post => client
                .post(&self.config.url)
                .header(CONTENT_TYPE, "application/json")
                .body(body),
            JsonMethod::Get => {
                // Checked in `new` with sample values; real values are
                // escaped the same way, so this only fails on a bug.
                let pairs = serde_json::from_str::<Value>(&body)
                    .ok()
                    .as_ref()
                    .and_then(query_pairs)
                    .ok_or_else(|| SendError::Permanent {
                        reason: "body_template did not render to a flat JSON object".to_string(),
                        invalid_number: false,
                    })?;
                client.get(&self.config.url).query(&pairs)
            }
        };
        let builder = builder
            .header(ACCEPT, "application/json")
            .headers(self.headers.clone());
        Ok(match &self.config.auth {
            JsonAuth::None => builder,
            JsonAuth::Bearer { token } => builder.bearer_auth(token.expose()),
            JsonAuth::Basic { username, password } => {
                builder.basic_auth(username, Some(password.expose()))
            }
        })
    }

    fn read_answer(
        &self,
        status: StatusCode,
        retry_after: Option<&HeaderValue>,
        body: &str,
    ) -> Result<Accepted, SendError> {
        interpret_answer(
            status,
            retry_after,
            body,
            &self.config.id_pointer,
            &self.config.throttle_status,
        )
    }
}

/// Maps one send answer to the engine's decision.
///
/// | HTTP                     | body                                  | result                           |
/// |--------------------------|---------------------------------------|----------------------------------|
/// | 2xx                      | JSON, string/number at `id_pointer`   | `Accepted`, gateway id           |
/// | 2xx                      | JSON without it                       | `Retryable`, "no message id in answer" |
/// | 2xx                      | not JSON                              | `Retryable`, "unrecognised …"    |
/// | listed in `throttle_status` |                                    | `Throttled`, `Retry-After`       |
/// | other                    |                                       | [`refusal`]: 429 throttle, 5xx/408 retry, 401/403/404/3xx gateway fault, other 4xx permanent |
///
/// A 2xx without an id is retried, not trusted: without the id its receipts
/// may never match, and at-least-once is the engine's promise. A generic
/// aggregator cannot say that a refusal is about the number, so
/// `invalid_number` is always `false` here; its receipts can (`invalid_number`
/// in `receipt.statuses`).
pub fn interpret_answer(
    status: StatusCode,
    retry_after: Option<&HeaderValue>,
    body: &str,
    id_pointer: &str,
    throttle_status: &[u16],
) -> Result<Accepted, SendError> {
    if status.is_success() {
        let Ok(value) = serde_json::from_str::<Value>(body.trim()) else {
            return Err(unrecognised_answer(status));
        };
        return match value.pointer(id_pointer).and_then(scalar) {
            Some(id) => Ok(Accepted {
                gateway_message_id: Some(id),
            }),
            None => Err(SendError::retry(
                Transient::BadAnswer,
                "no message id in answer",
            )),
        };
    }
    if throttle_status.contains(&status.as_u16()) {
        return Err(SendError::Throttled {
            retry_after: retry_after.and_then(parse_retry_after),
        });
    }
    Err(refusal(status, retry_after, body))
}

/// A string, or a number/boolean as its JSON text; trimmed, never empty.
fn scalar(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// Reads one JSON aggregator's receipt callbacks.
///
/// One receipt per request: the body must be one JSON object. An array of
/// receipts is refused (400) rather than half-read, because
/// [`ReceiptParser::parse`] returns one receipt; an aggregator that batches
/// needs the trait to grow a batch form first.
#[derive(Debug, Clone)]
pub struct JsonReceipts {
    mapping: JsonReceiptMapping,
    /// `mapping.statuses` with lower-case keys.
    statuses: HashMap<String, ReceiptOutcome>,
}

impl JsonReceipts {
    /// Checks the pointers and that no status is listed twice (ignoring
    /// case) with different outcomes.
    pub fn new(mapping: JsonReceiptMapping) -> Result<Self, JsonConfigError> {
        check_pointer("receipt.id_pointer", &mapping.id_pointer)?;
        check_pointer("receipt.status_pointer", &mapping.status_pointer)?;
        if let Some(p) = &mapping.our_id_pointer {
            check_pointer("receipt.our_id_pointer", p)?;
        }
        if let Some(p) = &mapping.error_pointer {
            check_pointer("receipt.error_pointer", p)?;
        }
        if let Some(sig) = &mapping.signature {
            sig.check_config()?;
        }
        let mut statuses = HashMap::new();
        for (k, v) in &mapping.statuses {
            let key = k.trim().to_lowercase();
            let outcome = ReceiptOutcome::from(*v);
            if let Some(prev) = statuses.insert(key, outcome) {
                if prev != outcome {
                    return Err(JsonConfigError::DuplicateStatus(k.clone()));
                }
            }
        }
        Ok(JsonReceipts { mapping, statuses })
    }
}

impl ReceiptParser for JsonReceipts {
    fn authenticate(&self, headers: &HeaderMap, body: &[u8], now_secs: i64) -> Result<(), String> {
        match &self.mapping.signature {
            None => Ok(()),
            Some(sig) => sig.verify(headers, body, now_secs).map_err(str::to_string),
        }
    }

    /// | field                | from                                   | required |
    /// |----------------------|----------------------------------------|----------|
    /// | `raw_status`         | `status_pointer` (string or number)    | yes      |
    /// | `gateway_message_id` | `id_pointer`                           | this or our id |
    /// | `message_id`         | `our_id_pointer`, else `pcid` in the query | this or theirs |
    /// | `error_code`         | `error_pointer` (null or "" = none)    | no       |
    /// | `outcome`            | `statuses[raw_status]`, ignoring case; else `Unknown` | — |
    ///
    /// Our id, when present, must be an integer: an aggregator echoes what
    /// we sent, so anything else is not ours. Behind the gateway-wide token
    /// (a fixed URL) the callback handler drops `pcid` before parsing:
    /// nothing signs the query there.
    fn parse(&self, query: &[QueryPair<'_>], body: &[u8]) -> Result<ParsedReceipt, ReceiptError> {
        let bad = |field: &'static str, reason: &str| ReceiptError {
            field,
            reason: reason.to_string(),
        };
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(bad("body", "empty; expected one JSON receipt"));
        }
        let value: Value = serde_json::from_slice(body).map_err(|e| ReceiptError {
            field: "body",
            reason: format!("not JSON: {e}"),
        })?;
        if value.is_array() {
            return Err(bad(
                "body",
                "a JSON array of receipts is not supported: one receipt per request",
            ));
        }
        if !value.is_object() {
            return Err(bad("body", "expected a JSON object"));
        }
        let at = |p: &str| value.pointer(p).filter(|v| !v.is_null());
        let m = &self.mapping;

        let raw_status = match at(&m.status_pointer) {
            None => return Err(bad("status", "missing")),
            Some(v) => scalar(v).ok_or_else(|| bad("status", "not a string or number"))?,
        };
        let gateway_message_id = match at(&m.id_pointer) {
            None => None,
            Some(v) => Some(scalar(v).ok_or_else(|| bad("id", "not a string or number"))?),
        };
        let echoed = m.our_id_pointer.as_deref().and_then(at);
        let message_id = match echoed {
            Some(v) => Some(
                scalar(v)
                    .and_then(|s| s.parse::<i64>().ok())
                    .ok_or_else(|| bad("our_id", "not an integer message id"))?,
            ),
            None => match query.iter().find(|(k, _)| k == OUR_ID_PARAM) {
                Some((_, v)) => Some(
                    v.trim()
                        .parse::<i64>()
                        .map_err(|_| bad(OUR_ID_PARAM, "not an integer message id"))?,
                ),
                None => None,
            },
        };
        if gateway_message_id.is_none() && message_id.is_none() {
            return Err(bad("id", "neither the aggregator's id nor our reference"));
        }
        let error_code = m.error_pointer.as_deref().and_then(at).and_then(scalar);
        let outcome = self
            .statuses
            .get(&raw_status.to_lowercase())
            .copied()
            .unwrap_or(ReceiptOutcome::Unknown);
        Ok(ParsedReceipt {
            message_id,
            gateway_message_id,
            raw_status,
            error_code,
            outcome,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::body::Bytes;
    use axum::extract::{RawQuery, State};
    use axum::http::Method;
    use axum::response::IntoResponse;
    use tokio::sync::mpsc;

    use super::*;
    use crate::domain::{Encoding, Msisdn, SmsText};
    use crate::gateway::Gateway;
    use carrier_sim::{parse_rules, SimDialect, SimHandle, Simulator, SimulatorConfig};

    const CALLBACK: &str = "http://127.0.0.1:8080/callbacks/agg/TOKEN";

    fn client() -> reqwest::Client {
        super::super::http::client(Duration::from_secs(5), 8)
    }

    fn gateway(config: JsonConfig, callback: &str) -> JsonGateway {
        JsonGateway::new("agg", config, callback.into(), client()).expect("valid config")
    }

    fn sms(id: i64, number: &str, text: &str) -> OutboundSms {
        OutboundSms {
            message_id: id,
            to: Msisdn::parse(number).expect("valid test number"),
            text: SmsText::new(text),
        }
    }

    /// What a capturing aggregator saw.
    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        query: Vec<(String, String)>,
        headers: axum::http::HeaderMap,
        body: Bytes,
    }

    async fn capturing_aggregator(
        answer: (StatusCode, &'static str),
    ) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let app = axum::Router::new()
            .route(
                "/v1/send",
                axum::routing::any(
                    move |State(seen): State<Arc<Mutex<Vec<Seen>>>>,
                          method: Method,
                          headers: axum::http::HeaderMap,
                          RawQuery(query): RawQuery,
                          body: Bytes| async move {
                        seen.lock().expect("test mutex").push(Seen {
                            method,
                            query: url::form_urlencoded::parse(
                                query.unwrap_or_default().as_bytes(),
                            )
                            .into_owned()
                            .collect(),
                            headers,
                            body,
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
            // The test's runtime ends the server.
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/v1/send"), seen)
    }

    fn full_template() -> String {
        concat!(
            r#"{"msisdn": "{{to}}", "e164": "{{to_e164}}", "body": "{{text}}", "#,
            r#""from": "{{sender}}", "ref": {{message_id}}, "tag": "pc-{{ message_id }}", "#,
            r#""hook": "{{callback_url}}", "coding": "{{coding}}", "fixed": [1, true]}"#
        )
        .to_string()
    }

    #[tokio::test]
    async fn post_request_for_gsm7_and_ucs2_texts() {
        let (url, seen) =
            capturing_aggregator((StatusCode::CREATED, r#"{"data": {"id": 98765}}"#)).await;
        let mut headers = BTreeMap::new();
        headers.insert("X-Api-Key".to_string(), Secret::new("k3y"));
        let config = JsonConfig {
            url,
            headers,
            auth: JsonAuth::Bearer {
                token: Secret::new("t0ken"),
            },
            body_template: full_template(),
            id_pointer: "/data/id".to_string(),
            ..JsonConfig::default()
        };
        let gw = gateway(config, CALLBACK);
        let gsm = "Jadwal \"dosis 2\": 12/03 09.00 WIB\\ok\n{Rp} 100%";
        let ucs = "Vaksinasi 疫苗 untuk Anda 💉";
        for (id, text, coding) in [(42, gsm, Encoding::Gsm7), (43, ucs, Encoding::Ucs2)] {
            let m = sms(id, "081234567001", text);
            assert_eq!(m.text.encoding(), coding);
            let got = gw.send(&m).await;
            assert_eq!(
                got,
                Ok(Accepted {
                    gateway_message_id: Some("98765".to_string())
                }),
                "numeric ids become strings"
            );
            let s = seen
                .lock()
                .expect("test mutex")
                .last()
                .cloned()
                .expect("a request");
            assert_eq!(s.method, Method::POST);
            assert!(s.query.is_empty());
            assert_eq!(s.headers["content-type"], "application/json");
            assert_eq!(s.headers["authorization"], "Bearer t0ken");
            assert_eq!(s.headers["x-api-key"], "k3y");
            let body: Value = serde_json::from_slice(&s.body).expect("body is JSON");
            let want = serde_json::json!({
                "msisdn": "6281234567001",
                "e164": "+6281234567001",
                "body": text,
                "from": "PEDULICOVID",
                "ref": id,
                "tag": format!("pc-{id}"),
                "hook": format!("{CALLBACK}?pcid={id}"),
                "coding": coding.as_str(),
                "fixed": [1, true],
            });
            assert_eq!(body, want);
        }
    }

    #[tokio::test]
    async fn get_request_and_basic_auth() {
        let (url, seen) = capturing_aggregator((StatusCode::OK, r#"{"id": "abc"}"#)).await;
        let config = JsonConfig {
            url: format!("{url}?account=7"),
            method: JsonMethod::Get,
            auth: JsonAuth::Basic {
                username: "user".to_string(),
                password: Secret::new("pass"),
            },
            body_template:
                r#"{"to": "{{to_e164}}", "msg": "{{text}}", "n": {{message_id}}, "skip": null}"#
                    .to_string(),
            id_pointer: "/id".to_string(),
            ..JsonConfig::default()
        };
        let gw = gateway(config, CALLBACK);
        let text = "Vaksinasi 疫苗 & more";
        gw.send(&sms(5, "+6281234567002", text))
            .await
            .expect("accepted");
        let s = seen.lock().expect("test mutex")[0].clone();
        assert_eq!(s.method, Method::GET);
        assert!(s.body.is_empty());
        // base64("user:pass")
        assert_eq!(s.headers["authorization"], "Basic dXNlcjpwYXNz");
        let mut q = s.query.clone();
        q.sort();
        assert_eq!(
            q,
            vec![
                ("account".to_string(), "7".to_string()),
                ("msg".to_string(), text.to_string()),
                ("n".to_string(), "5".to_string()),
                ("to".to_string(), "+6281234567002".to_string()),
            ]
        );
    }

    #[test]
    fn bad_configurations_are_refused_at_start() {
        let with = |f: &dyn Fn(&mut JsonConfig)| {
            let mut c = JsonConfig::default();
            f(&mut c);
            JsonGateway::new("agg", c, CALLBACK.into(), client()).map(|_| ())
        };
        assert_eq!(with(&|_| {}), Ok(()));
        type Change = Box<dyn Fn(&mut JsonConfig)>;
        let cases: Vec<(&str, Change)> = vec![
            (
                "unknown",
                Box::new(|c| {
                    c.body_template = r#"{"to":"{{to}}","t":"{{text}}","x":"{{nik}}"}"#.into()
                }),
            ),
            (
                "never closed",
                Box::new(|c| c.body_template = r#"{"to":"{{to}}","t":"{{text"}"#.into()),
            ),
            (
                "no destination",
                Box::new(|c| c.body_template = r#"{"t":"{{text}}"}"#.into()),
            ),
            (
                "no {{text}}",
                Box::new(|c| c.body_template = r#"{"to":"{{to}}"}"#.into()),
            ),
            (
                "does not render",
                Box::new(|c| c.body_template = r#"{"to":"{{to}}","t":{{text}}}"#.into()),
            ),
            (
                "does not render",
                Box::new(|c| c.body_template = r#"{"to":"{{to}}","t":"{{text}}""#.into()),
            ),
            (
                "flat",
                Box::new(|c| {
                    c.method = JsonMethod::Get;
                    c.body_template = r#"{"to":"{{to}}","m":{"t":"{{text}}"}}"#.into();
                }),
            ),
            (
                "JSON Pointer",
                Box::new(|c| c.id_pointer = "data.id".into()),
            ),
            (
                "JSON Pointer",
                Box::new(|c| c.receipt.status_pointer = "status".into()),
            ),
            (
                "header",
                Box::new(|c| {
                    c.headers.insert("Bad Header".into(), Secret::new("x"));
                }),
            ),
            (
                "header",
                Box::new(|c| {
                    c.headers.insert("X-Key".into(), Secret::new("line\nbreak"));
                }),
            ),
            (
                "4xx or 5xx",
                Box::new(|c| c.throttle_status = vec![503, 200]),
            ),
            (
                "listed twice",
                Box::new(|c| {
                    c.receipt
                        .statuses
                        .insert("delivered".into(), MappedOutcome::Undelivered);
                }),
            ),
        ];
        for (want, f) in cases {
            let err = with(&*f).expect_err(want);
            assert!(err.to_string().contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn settings_deserialise_and_never_print_secrets() {
        let c: JsonConfig = toml::from_str(
            r#"
            url = "https://api.example.id/sms"
            auth = { type = "basic", username = "u", password = "hunter2" }
            headers = { "X-Api-Key" = "k3y-hunter3" }
            throttle_status = [503]
            [receipt]
            status_pointer = "/state"
            statuses = { sent = "accepted", DELIVRD = "delivered", bad_number = "invalid_number" }
            "#,
        )
        .expect("parses");
        assert_eq!(c.method, JsonMethod::Post);
        assert_eq!(
            c.receipt.id_pointer, "/message_id",
            "defaults fill the rest"
        );
        assert_eq!(
            c.receipt.statuses["bad_number"],
            MappedOutcome::InvalidNumber
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("hunter3"),
            "{debug}"
        );
        let c: JsonConfig =
            toml::from_str("auth = { type = \"none\" }\nmethod = \"get\"").expect("parses");
        assert_eq!((c.auth, c.method), (JsonAuth::None, JsonMethod::Get));
        for bad in [
            "auth = { type = \"digest\" }",
            "method = \"PUT\"",
            "[receipt]\nstatuses = { x = \"lost\" }",
            "body = \"x\"",
        ] {
            assert!(toml::from_str::<JsonConfig>(bad).is_err(), "{bad}");
        }
    }

    fn kind(r: &Result<Accepted, SendError>) -> String {
        match r {
            Ok(a) => format!(
                "accepted {}",
                a.gateway_message_id.as_deref().unwrap_or("-")
            ),
            Err(SendError::Retryable { reason, .. }) => format!("retry {reason}"),
            Err(SendError::Permanent { invalid_number, .. }) => {
                assert!(!invalid_number);
                "perm".to_string()
            }
            Err(SendError::Throttled { retry_after }) => format!("throttled {retry_after:?}"),
            Err(SendError::GatewayFault { kind, .. }) => format!("fault {}", kind.as_str()),
        }
    }

    #[test]
    fn every_answer_form() {
        let cases: &[(u16, &str, &str)] = &[
            (
                200,
                r#"{"message_id": "m-1", "status": "accepted"}"#,
                "accepted m-1",
            ),
            (202, r#"{"message_id": 17}"#, "accepted 17"),
            (201, r#" {"message_id": " m-2 "} "#, "accepted m-2"),
            (
                200,
                r#"{"message_id": ""}"#,
                "retry no message id in answer",
            ),
            (
                200,
                r#"{"message_id": null}"#,
                "retry no message id in answer",
            ),
            (
                200,
                r#"{"message_id": {"x": 1}}"#,
                "retry no message id in answer",
            ),
            (
                200,
                r#"{"status": "error", "reason": "x"}"#,
                "retry no message id in answer",
            ),
            (200, "OK", "retry unrecognised gateway answer: HTTP 200"),
            (200, "", "retry unrecognised gateway answer: HTTP 200"),
            (400, r#"{"error": "bad"}"#, "perm"),
            (401, "", "fault gateway_config"),
            (403, "forbidden", "fault gateway_config"),
            (404, "", "fault gateway_config"),
            (405, "", "fault gateway_config"),
            (308, "", "fault gateway_config"),
            (422, r#"{"error": "invalid number"}"#, "perm"),
            (429, "", "throttled None"),
            (503, "", "throttled None"),
            (500, "", "retry HTTP 500"),
            (502, "bad gateway", "retry HTTP 502: bad gateway"),
        ];
        for &(code, body, want) in cases {
            let status = StatusCode::from_u16(code).expect("valid status");
            let got = interpret_answer(status, None, body, "/message_id", &[503]);
            assert_eq!(kind(&got), want, "{code} {body:?}");
        }
        let got = interpret_answer(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(&HeaderValue::from_static("7")),
            "",
            "/id",
            &[503],
        );
        assert_eq!(kind(&got), "throttled Some(7s)");
    }

    fn pairs(s: &str) -> Vec<QueryPair<'_>> {
        url::form_urlencoded::parse(s.as_bytes()).collect()
    }

    #[test]
    fn every_receipt_form() {
        use ReceiptOutcome as R;
        let p = JsonReceipts::new(JsonReceiptMapping::default()).expect("valid mapping");
        // (query, body, outcome, raw, our id, their id, error)
        type Case = (
            &'static str,
            &'static str,
            R,
            &'static str,
            Option<i64>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: &[Case] = &[
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"DELIVERED","error":null}"#,
                R::Delivered,
                "DELIVERED",
                Some(41),
                Some("m1"),
                None,
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"FAILED","error":"001"}"#,
                R::Undelivered,
                "FAILED",
                Some(41),
                Some("m1"),
                Some("001"),
            ),
            (
                "",
                r#"{"message_id":"m1","reference":41,"status":"expired","error":"027"}"#,
                R::Expired,
                "expired",
                Some(41),
                Some("m1"),
                Some("027"),
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"Rejected","error":""}"#,
                R::Rejected,
                "Rejected",
                Some(41),
                Some("m1"),
                None,
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"INVALID","error":"0x0000000b"}"#,
                R::InvalidNumber,
                "INVALID",
                Some(41),
                Some("m1"),
                Some("0x0000000b"),
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"ACCEPTED"}"#,
                R::Accepted,
                "ACCEPTED",
                Some(41),
                Some("m1"),
                None,
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":"QUEUED_AT_OPERATOR"}"#,
                R::Unknown,
                "QUEUED_AT_OPERATOR",
                Some(41),
                Some("m1"),
                None,
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":7,"error":13}"#,
                R::Unknown,
                "7",
                Some(41),
                Some("m1"),
                Some("13"),
            ),
            // Our id from the callback URL when the reference is not echoed.
            (
                "pcid=52",
                r#"{"message_id":"m2","status":"DELIVERED"}"#,
                R::Delivered,
                "DELIVERED",
                Some(52),
                Some("m2"),
                None,
            ),
            (
                "pcid=52",
                r#"{"message_id":"m2","reference":null,"status":"DELIVERED"}"#,
                R::Delivered,
                "DELIVERED",
                Some(52),
                Some("m2"),
                None,
            ),
            // An echoed reference wins over the URL.
            (
                "pcid=52",
                r#"{"message_id":"m2","reference":"53","status":"DELIVERED"}"#,
                R::Delivered,
                "DELIVERED",
                Some(53),
                Some("m2"),
                None,
            ),
            // Their id alone is enough.
            (
                "",
                r#"{"message_id":"m3","status":"DELIVERED"}"#,
                R::Delivered,
                "DELIVERED",
                None,
                Some("m3"),
                None,
            ),
            // Our id alone is enough.
            (
                "",
                r#"{"reference":"54","status":"DELIVERED"}"#,
                R::Delivered,
                "DELIVERED",
                Some(54),
                None,
                None,
            ),
        ];
        for (i, &(query, body, outcome, raw, ours, theirs, err)) in cases.iter().enumerate() {
            let got = p
                .parse(&pairs(query), body.as_bytes())
                .unwrap_or_else(|e| panic!("case {i}: {e}"));
            assert_eq!(
                got,
                ParsedReceipt {
                    message_id: ours,
                    gateway_message_id: theirs.map(str::to_string),
                    raw_status: raw.to_string(),
                    error_code: err.map(str::to_string),
                    outcome,
                },
                "case {i}"
            );
        }
        assert_eq!(p.ack_body(), "OK");

        // Nested pointers and a numeric status table.
        let mapping = JsonReceiptMapping {
            id_pointer: "/data/msgid".into(),
            our_id_pointer: None,
            status_pointer: "/data/state/code".into(),
            error_pointer: Some("/data/state/desc".into()),
            statuses: [("2".to_string(), MappedOutcome::Delivered)]
                .into_iter()
                .collect(),
            signature: None,
        };
        let p = JsonReceipts::new(mapping).expect("valid mapping");
        let got = p
            .parse(
                &[],
                br#"{"data":{"msgid":99,"state":{"code":2,"desc":"ok"}}}"#,
            )
            .expect("parses");
        assert_eq!(
            (
                got.gateway_message_id.as_deref(),
                got.outcome,
                got.error_code.as_deref()
            ),
            (Some("99"), R::Delivered, Some("ok"))
        );
    }

    #[test]
    fn malformed_receipts() {
        let p = JsonReceipts::new(JsonReceiptMapping::default()).expect("valid mapping");
        let cases: &[(&str, &str, &str)] = &[
            ("", "", "body"),
            ("", "  \n", "body"),
            ("", "message_id=m1&status=DELIVERED", "body"),
            ("", r#"{"message_id":"m1","status":"DELIVERED""#, "body"),
            ("", r#"[{"message_id":"m1","status":"DELIVERED"}]"#, "body"),
            ("", r#""DELIVERED""#, "body"),
            ("", r#"{"message_id":"m1","reference":"41"}"#, "status"),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":null}"#,
                "status",
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":{"a":1}}"#,
                "status",
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"41","status":""}"#,
                "status",
            ),
            (
                "",
                r#"{"message_id":["m1"],"reference":"41","status":"DELIVERED"}"#,
                "id",
            ),
            (
                "",
                r#"{"message_id":"m1","reference":"x41","status":"DELIVERED"}"#,
                "our_id",
            ),
            (
                "",
                r#"{"message_id":"m1","reference":4.5,"status":"DELIVERED"}"#,
                "our_id",
            ),
            (
                "pcid=x",
                r#"{"message_id":"m1","status":"DELIVERED"}"#,
                "pcid",
            ),
            ("", r#"{"status":"DELIVERED"}"#, "id"),
        ];
        for &(query, body, field) in cases {
            let err = p.parse(&pairs(query), body.as_bytes()).expect_err(body);
            assert_eq!(err.field, field, "{query} {body}: {err}");
        }
    }

    // ---- End to end: simulator (JSON mode) + gateway + receiver ----

    const RULES: &str = "1=delivered,2=undelivered,3=rejected,4=expired,5=invalid,6=no_receipt";

    async fn start_sim() -> SimHandle {
        let config = SimulatorConfig {
            listen: "127.0.0.1:0".to_string(),
            dialect: SimDialect::Json,
            receipt_delay_ms: 10,
            receipt_jitter_ms: 5,
            rules: parse_rules(RULES).expect("test rules parse"),
            callback_retry_delay_ms: 30,
            seed: Some(5),
            ..SimulatorConfig::default()
        };
        let sim = Simulator::bind(config).await.expect("bind simulator");
        let handle = sim.handle();
        sim.spawn(std::future::pending());
        handle
    }

    type Got = Result<ParsedReceipt, ReceiptError>;

    /// Our callback endpoint in miniature, answering `status` and the
    /// parser's `ack_body()`.
    async fn start_receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Got>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let parser: Arc<dyn ReceiptParser> =
            Arc::new(JsonReceipts::new(JsonReceiptMapping::default()).expect("valid mapping"));
        let app = axum::Router::new().route(
            "/callbacks/agg/TOKEN",
            axum::routing::post(move |RawQuery(q): RawQuery, body: Bytes| {
                let tx = tx.clone();
                let parser = parser.clone();
                async move {
                    let q = q.unwrap_or_default();
                    let query = pairs(&q);
                    // The test may have stopped listening; that is fine.
                    let _ = tx.send(parser.parse(&query, &body));
                    (status, parser.ack_body())
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
        (format!("http://{addr}/callbacks/agg/TOKEN"), rx)
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

    #[tokio::test]
    async fn every_outcome_end_to_end() {
        use ReceiptOutcome as R;
        let sim = start_sim().await;
        let (callback, mut rx) = start_receiver(StatusCode::OK).await;
        let gw = gateway(
            JsonConfig {
                url: sim.send_url(),
                ..JsonConfig::default()
            },
            &callback,
        );
        let cases = [
            ('1', Some((R::Delivered, "DELIVERED", None))),
            ('2', Some((R::Undelivered, "FAILED", Some("001")))),
            ('3', Some((R::Rejected, "REJECTED", Some("011")))),
            ('4', Some((R::Expired, "EXPIRED", Some("027")))),
            ('5', Some((R::InvalidNumber, "INVALID", Some("0x0000000b")))),
            ('6', None),
        ];
        for (i, (digit, want)) in cases.into_iter().enumerate() {
            let id = 100 + i64::try_from(i).expect("small index");
            let accepted = gw
                .send(&sms(
                    id,
                    &format!("+628123456700{digit}"),
                    "Jadwal vaksinasi 疫苗",
                ))
                .await
                .expect("accepted");
            let theirs = accepted.gateway_message_id.expect("an id");
            match want {
                None => nothing_more(&mut rx).await,
                Some((outcome, raw, err)) => {
                    let got = next(&mut rx).await.expect("parses");
                    assert_eq!(
                        got,
                        ParsedReceipt {
                            message_id: Some(id),
                            gateway_message_id: Some(theirs),
                            raw_status: raw.to_string(),
                            error_code: err.map(str::to_string),
                            outcome,
                        },
                        "number ending {digit}"
                    );
                }
            }
        }
        nothing_more(&mut rx).await;
        let stats = sim.stats();
        assert_eq!((stats.submits_total, stats.duplicates), (6, 0));
        assert_eq!((stats.callbacks_sent, stats.callbacks_failed), (5, 0));
        assert_eq!(stats.no_receipt, 1);
    }

    #[tokio::test]
    async fn failing_receiver_is_retried_and_wrong_token_is_a_gateway_fault() {
        let sim = start_sim().await;
        let (callback, mut rx) = start_receiver(StatusCode::SERVICE_UNAVAILABLE).await;
        let gw = gateway(
            JsonConfig {
                url: sim.send_url(),
                ..JsonConfig::default()
            },
            &callback,
        );
        gw.send(&sms(9, "+6281234567001", "hi"))
            .await
            .expect("accepted");
        let first = next(&mut rx).await.expect("parses");
        for _ in 0..3 {
            assert_eq!(next(&mut rx).await.expect("parses"), first);
        }
        nothing_more(&mut rx).await;
        let stats = sim.stats();
        assert_eq!((stats.callback_attempts, stats.callbacks_failed), (4, 1));

        let gw = gateway(
            JsonConfig {
                url: sim.send_url(),
                auth: JsonAuth::Bearer {
                    token: Secret::new("wrong"),
                },
                ..JsonConfig::default()
            },
            &callback,
        );
        match gw.send(&sms(10, "+6281234567001", "hi")).await {
            Err(SendError::GatewayFault {
                reason,
                kind: crate::gateway::Fault::Config,
            }) => assert!(reason.contains("401"), "{reason}"),
            other => panic!("expected a configuration fault, got {other:?}"),
        }
        assert_eq!(sim.stats().rejected_requests, 1);
    }
}

#[cfg(test)]
mod signature_tests {
    use super::*;
    use crate::gateway::ReceiptParser;

    fn signed_mapping(sig: ReceiptSignature) -> JsonReceipts {
        JsonReceipts::new(JsonReceiptMapping {
            signature: Some(sig),
            ..Default::default()
        })
        .expect("valid mapping")
    }

    fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const BODY: &[u8] = br#"{"message_id":"m1","reference":"41","status":"DELIVERED"}"#;

    #[test]
    fn body_only_hex_signature() {
        let sig = ReceiptSignature {
            header: "X-Signature".into(),
            secret: Secret::new("aggregator-shared-secret"),
            encoding: SignatureEncoding::Hex,
            prefix: "sha256=".into(),
            timestamp_header: None,
            signed_payload: default_signed_payload(),
            tolerance_secs: 300,
        };
        let good = sig.sign(BODY, None);
        assert!(
            good.starts_with("sha256=") && good.len() == 7 + 64,
            "{good}"
        );
        let p = signed_mapping(sig.clone());
        assert_eq!(
            p.authenticate(&headers(&[("x-signature", good.clone())]), BODY, 0),
            Ok(())
        );
        // Upper-case hex is the same bytes.
        let upper = format!("sha256={}", good[7..].to_uppercase());
        assert_eq!(
            p.authenticate(&headers(&[("x-signature", upper)]), BODY, 0),
            Ok(())
        );
        // A changed body, a wrong key, a missing header, no prefix.
        let mut tampered = BODY.to_vec();
        tampered[40] ^= 1;
        assert!(p
            .authenticate(&headers(&[("x-signature", good.clone())]), &tampered, 0)
            .is_err());
        let other = ReceiptSignature {
            secret: Secret::new("not-the-secret"),
            ..sig
        };
        assert!(p
            .authenticate(
                &headers(&[("x-signature", other.sign(BODY, None))]),
                BODY,
                0
            )
            .is_err());
        assert!(p.authenticate(&HeaderMap::new(), BODY, 0).is_err());
        assert!(p
            .authenticate(&headers(&[("x-signature", good[7..].to_string())]), BODY, 0)
            .is_err());
    }

    #[test]
    fn timestamped_base64_signature_and_replay_window() {
        let sig = ReceiptSignature {
            header: "Webhook-Signature".into(),
            secret: Secret::new("aggregator-shared-secret"),
            encoding: SignatureEncoding::Base64,
            prefix: String::new(),
            timestamp_header: Some("Webhook-Timestamp".into()),
            signed_payload: "{timestamp}|{body}".into(),
            tolerance_secs: 300,
        };
        let p = signed_mapping(sig.clone());
        let at = 1_800_000_000;
        let h = |ts: i64, s: String| {
            headers(&[
                ("webhook-signature", s),
                ("webhook-timestamp", ts.to_string()),
            ])
        };
        assert_eq!(
            p.authenticate(&h(at, sig.sign(BODY, Some(at))), BODY, at + 299),
            Ok(())
        );
        // Stale (a replay after the window), and from the future.
        let stale = p.authenticate(&h(at, sig.sign(BODY, Some(at))), BODY, at + 301);
        assert!(stale.unwrap_err().contains("tolerance"));
        assert!(p
            .authenticate(&h(at, sig.sign(BODY, Some(at))), BODY, at - 301)
            .is_err());
        // The timestamp is signed: moving it forward breaks the signature.
        assert!(p
            .authenticate(&h(at + 100, sig.sign(BODY, Some(at))), BODY, at)
            .is_err());
    }

    /// Slack's documented example request (api.slack.com, "Verifying
    /// requests from Slack"), as settings.
    #[test]
    fn slack_documented_example_verifies() {
        let sig = ReceiptSignature {
            header: "X-Slack-Signature".into(),
            secret: Secret::new("8f742231b10e8888abcd99yyyzzz85a5"),
            encoding: SignatureEncoding::Hex,
            prefix: "v0=".into(),
            timestamp_header: Some("X-Slack-Request-Timestamp".into()),
            signed_payload: "v0:{timestamp}:{body}".into(),
            tolerance_secs: 300,
        };
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let h = headers(&[
            (
                "x-slack-signature",
                "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503".into(),
            ),
            ("x-slack-request-timestamp", "1531420618".into()),
        ]);
        assert_eq!(sig.verify(&h, body, 1_531_420_618 + 10), Ok(()));
    }

    #[test]
    fn bad_signature_settings_are_refused_at_start() {
        let base = ReceiptSignature {
            header: "X-Sig".into(),
            secret: Secret::new("s"),
            encoding: SignatureEncoding::Hex,
            prefix: String::new(),
            timestamp_header: Some("X-Ts".into()),
            signed_payload: default_signed_payload(),
            tolerance_secs: 300,
        };
        for bad in [
            ReceiptSignature {
                header: "bad header".into(),
                ..base.clone()
            },
            ReceiptSignature {
                secret: Secret::default(),
                ..base.clone()
            },
            ReceiptSignature {
                signed_payload: "{body}".into(),
                ..base.clone()
            },
        ] {
            let e = JsonReceipts::new(JsonReceiptMapping {
                signature: Some(bad),
                ..Default::default()
            })
            .unwrap_err();
            assert!(e.to_string().starts_with("receipt.signature:"), "{e}");
        }
        let parsed: JsonReceiptMapping = toml::from_str(
            "[signature]\nheader = \"X-Sig\"\nsecret = \"k\"\nencoding = \"base64\"\ntimestamp_header = \"X-Ts\"\n",
        )
        .unwrap();
        let s = parsed.signature.unwrap();
        assert_eq!(s.encoding, SignatureEncoding::Base64);
        assert_eq!(s.signed_payload, "{timestamp}.{body}");
        assert_eq!(s.tolerance_secs, 300);
        assert!(!format!("{s:?}").contains("\"k\""));
    }
}

//! The carrier's side of the wire: what the simulator needs to speak each
//! dialect, written from the carriers' documentation rather than taken from
//! the product's gateways. A test double that shared the code under test
//! would agree with it even where both were wrong; these few constants and
//! functions are the simulator's own reading of the protocols.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;

/// Kannel's delivery-report types, the bits of `dlr-mask` and the values of
/// `%d` (Kannel 1.4.5, `gw/dlr.h`).
pub mod dlr {
    /// `DLR_SUCCESS`: delivered to the handset.
    pub const SUCCESS: u8 = 1;
    /// `DLR_FAIL`: not delivered to the handset (final).
    pub const FAIL: u8 = 2;
    /// `DLR_BUFFERED`: intermediate, queued on the SMSC.
    pub const BUFFERED: u8 = 4;
    /// `DLR_SMSC_SUCCESS`: the SMSC accepted the submit.
    pub const SMSC_SUCCESS: u8 = 8;
    /// `DLR_SMSC_FAIL`: the SMSC refused the submit.
    pub const SMSC_FAIL: u8 = 16;
    /// `DLR_EXPIRED`: sent together with `FAIL` (34).
    pub const EXPIRED: u8 = 32;
}

/// The body Jasmin's DLR thrower waits for before it stops re-sending a
/// delivery report (`jasmin/routing/throwers.py`).
pub const JASMIN_ACK_BODY: &str = "ACK/Jasmin";

/// The simulator's password: compared in constant time, never printed
/// (`Debug` shows `[redacted]`), so settings dumps that hold it stay clean.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(value: impl Into<String>) -> Self {
        Password(value.into())
    }

    /// The clear value, for whoever must send it (a gateway wired to the
    /// simulator).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares with a presented value in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), presented.as_bytes());
        a.len() == b.len() && bool::from(a.ct_eq(b))
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Password)
    }
}

impl serde::Serialize for Password {
    /// Redacted, like `Debug`: a settings dump never holds it.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

/// How the JSON aggregator signs its receipt callbacks: HMAC-SHA256 of the
/// body, or of `signed_payload` with the time of signing, in the header
/// `header` (the webhook schemes of GitHub and Slack). The table reads like
/// a JSON gateway's `[gateways.json.receipt.signature]`, so one table can
/// configure both ends; `tolerance_secs` is the receiver's and ignored here.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct JsonSignature {
    /// The header carrying the signature, e.g. `X-Signature`.
    pub header: String,
    /// The HMAC key shared with the receiver.
    pub secret: Password,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Text before the signature in its header, e.g. `sha256=`.
    #[serde(default)]
    pub prefix: String,
    /// The header carrying the time of signing (Unix seconds); when set, the
    /// time is signed too, as `signed_payload` says.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// What is signed with a timestamp: `{timestamp}` and `{body}` with any
    /// text around them. Default `{timestamp}.{body}`.
    #[serde(default = "default_signed_payload")]
    pub signed_payload: String,
}

fn default_signed_payload() -> String {
    "{timestamp}.{body}".to_string()
}

/// How a signature is written in its header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

impl JsonSignature {
    /// The header value for `body` signed at `timestamp` (Unix seconds; used
    /// only when `timestamp_header` is set).
    pub fn sign(&self, body: &[u8], timestamp: i64) -> String {
        use base64::Engine;
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(self.secret.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        match (
            &self.timestamp_header,
            self.signed_payload.split_once("{body}"),
        ) {
            (Some(_), Some((pre, post))) => {
                let ts = timestamp.to_string();
                mac.update(pre.replace("{timestamp}", &ts).as_bytes());
                mac.update(body);
                mac.update(post.replace("{timestamp}", &ts).as_bytes());
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

/// The client that sends receipt callbacks: pooled keep-alive connections
/// (`max_idle_per_host`), Nagle off, no proxy and no redirects (a callback
/// URL carries a token), HTTPS with Mozilla's roots through rustls.
pub fn callback_client(timeout: Duration, max_idle_per_host: usize) -> reqwest::Client {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    // Neither step reads input: the protocol versions are ring's defaults
    // and the roots are compiled in.
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .user_agent(concat!("carrier-sim/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .tcp_nodelay(true)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .use_preconfigured_tls(tls)
        .build()
        .expect("a reqwest client with a rustls config builds")
}

/// A destination fit for a log line: the last three digits only
/// (`****890`), never the number.
pub fn mask_number(digits: &str) -> String {
    let d: Vec<char> = digits.chars().filter(char::is_ascii_digit).collect();
    if d.len() < 7 {
        return "****".to_string();
    }
    format!("****{}", d[d.len() - 3..].iter().collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_documented_example_signs() {
        // https://api.slack.com/authentication/verifying-requests-from-slack
        let sig: JsonSignature = toml::from_str(
            "header = \"X-Slack-Signature\"\nsecret = \"8f742231b10e8888abcd99yyyzzz85a5\"\n\
             prefix = \"v0=\"\ntimestamp_header = \"X-Slack-Request-Timestamp\"\n\
             signed_payload = \"v0:{timestamp}:{body}\"\n",
        )
        .expect("signature settings");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            sig.sign(body, 1531420618),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
        assert_eq!(format!("{:?}", sig.secret), "[redacted]");
    }

    #[test]
    fn numbers_are_masked_and_passwords_compared() {
        assert_eq!(mask_number("6281234567890"), "****890");
        assert_eq!(mask_number("123"), "****");
        let p = Password::new("secret");
        assert!(p.matches("secret") && !p.matches("secreT") && !p.matches("secre"));
    }
}

//! Carrier gateways: one file per dialect behind one small trait.
//!
//! The engine only sees [`Gateway`]: it hands over an [`OutboundSms`] and gets
//! back either [`Accepted`] or a [`SendError`] that already carries the retry
//! decision. Receipt parsing for each dialect lives next to its sender so that
//! the request we build and the callback we expect are read together.
//!
//! - [`dialect`]: the dialects, a gateway's settings for exactly one of them,
//!   and [`build`], the one function that makes a gateway from its settings.
//! - [`http`]: sending over HTTP, written once ([`http::HttpGateway`]); a
//!   dialect supplies only its request and how to read its answer
//!   ([`http::Wire`]).
//! - [`kannel`], [`jasmin`], [`json`]: one file per dialect (its settings,
//!   its `Wire`, its status tables, its receipt parser).
//! - [`callback`]: what binds a receipt callback to one gateway and message.

pub mod callback;
pub mod dialect;
pub mod http;
pub mod jasmin;
pub mod json;
pub mod kannel;

pub use dialect::{build, Built, Dialect, DialectSettings, GatewayDialect};

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Msisdn, SmsText};

/// One SMS to hand to a carrier.
#[derive(Debug, Clone)]
pub struct OutboundSms {
    /// Our `messages.id`; travels inside the callback URL so receipts match
    /// even when the gateway gives us no id of its own (Kannel never does).
    pub message_id: i64,
    /// Destination, already normalised.
    pub to: Msisdn,
    /// Rendered, transliterated body with its encoding and segment count.
    pub text: SmsText,
}

/// The gateway took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The carrier's own id, when its answer carries one (Kannel's does not).
    pub gateway_message_id: Option<String>,
}

/// Why a send did not go through, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Transport error, timeout, 5xx: try again later.
    #[error("transient gateway failure: {reason}")]
    Retryable { reason: String, kind: Transient },
    /// The gateway asked us to slow down (429 or a dialect's throttle code).
    #[error("gateway throttled the request")]
    Throttled { retry_after: Option<Duration> },
    /// The gateway refused this message for good (4xx, invalid number).
    #[error("gateway rejected the message: {reason}")]
    Permanent {
        reason: String,
        /// `true` when the refusal is about the destination number itself.
        invalid_number: bool,
    },
    /// The gateway, or our settings for it, is broken: a TLS failure (unknown
    /// CA, wrong host name, expired certificate, client certificate refused)
    /// or a URL the client cannot use. Every message sent there would fail
    /// the same way, so it is the gateway's fault, never the message's: the
    /// engine opens the gateway's breaker at once, keeps the message queued
    /// without using one of its attempts, and never flags its worker for it
    /// (the attempt is still logged, so a campaign stuck on it auto-pauses).
    #[error("gateway unusable ({}): {reason}", kind.as_str())]
    GatewayFault { reason: String, kind: Fault },
}

/// What kind of gateway-wide fault a [`SendError::GatewayFault`] is: set
/// where the error is classified ([`http::transport_error`]), read by
/// metrics (`reason="tls"` / `reason="gateway_config"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The TLS handshake failed (or the connection was closed by a TLS
    /// alert): the certificate, its name or date, the CA, or the client
    /// certificate. Fixed by an operator, not by waiting.
    Tls,
    /// The request could not be built: an invalid URL or one whose scheme is
    /// neither `http` nor `https`.
    Config,
}

impl Fault {
    /// The label used in `last_error` and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Tls => "tls",
            Fault::Config => "gateway_config",
        }
    }
}

/// What kind of transient failure a [`SendError::Retryable`] is: set where
/// the error is made, read by metrics (never guessed from the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transient {
    /// No answer in time (a client timeout, or HTTP 408).
    Timeout,
    /// No connection.
    Connect,
    /// HTTP 5xx.
    Http5xx,
    /// An answer we cannot read: not the dialect's, no message id, a broken body.
    BadAnswer,
    /// Anything else worth retrying (a gateway out of credit or route).
    Other,
}

impl SendError {
    /// A [`SendError::Retryable`].
    pub fn retry(kind: Transient, reason: impl Into<String>) -> SendError {
        SendError::Retryable {
            reason: reason.into(),
            kind,
        }
    }

    /// Whether the request may have put the message in the carrier's hands,
    /// so that a delivery receipt for it is believable
    /// (`attempts.handed_over`). A refused connection, a throttle or a
    /// gateway fault (TLS, configuration) never did; a timeout, a 5xx, an
    /// unreadable answer or a refusal of the message itself may have.
    pub fn may_have_reached_carrier(&self) -> bool {
        match self {
            SendError::Retryable { kind, .. } => *kind != Transient::Connect,
            SendError::Permanent { .. } => true,
            SendError::Throttled { .. } | SendError::GatewayFault { .. } => false,
        }
    }

    /// Short machine-readable reason kept in `messages.last_error`.
    pub fn short(&self) -> String {
        match self {
            SendError::Retryable { reason, .. } => format!("retryable: {reason}"),
            SendError::Throttled { retry_after } => match retry_after {
                Some(d) => format!("throttled: retry after {}s", d.as_secs()),
                None => "throttled".to_string(),
            },
            SendError::Permanent { reason, .. } => format!("permanent: {reason}"),
            SendError::GatewayFault { reason, kind } => {
                format!("gateway fault ({}): {reason}", kind.as_str())
            }
        }
    }
}

/// A carrier dialect able to submit one SMS.
#[async_trait]
pub trait Gateway: Send + Sync + 'static {
    /// The configured name of this gateway (`messages.gateway`, callback path).
    fn name(&self) -> &str;
    /// Submit one message. Never called inside a database transaction.
    async fn send(&self, sms: &OutboundSms) -> Result<Accepted, SendError>;
}

/// What a delivery receipt says about a message, mapped from a dialect's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptOutcome {
    /// Delivered to the handset (final).
    Delivered,
    /// Not delivered to the handset (final).
    Undelivered,
    /// Validity period ran out before delivery (final).
    Expired,
    /// Refused by the SMSC or the network (final).
    Rejected,
    /// Refused because the destination number is not valid (final).
    InvalidNumber,
    /// Intermediate: accepted by the SMSC, or buffered on the way.
    Accepted,
    /// A code this dialect does not define: stored, counted, never guessed.
    Unknown,
}

/// A receipt as one dialect's callback described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedReceipt {
    /// Our message id, when the callback carries it.
    pub message_id: Option<i64>,
    /// The carrier's id for the message, when present.
    pub gateway_message_id: Option<String>,
    /// The dialect's own status value, verbatim (e.g. Kannel's `%d`).
    pub raw_status: String,
    /// The carrier's error code, when present (e.g. `err:001`, `0x0000000b`).
    pub error_code: Option<String>,
    /// What the receipt means for the message.
    pub outcome: ReceiptOutcome,
}

/// One decoded `key=value` pair of a callback's query, as
/// `url::form_urlencoded::parse` yields it: borrowed from the query unless
/// decoding changed it.
pub type QueryPair<'a> = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>);

/// Reads one gateway's receipt callbacks. One per configured gateway (a
/// generic JSON gateway's field mapping is configuration), chosen by the
/// callback path.
pub trait ReceiptParser: Send + Sync + 'static {
    /// Parses a callback from its query pairs and body (either may be empty:
    /// Kannel uses GET, Jasmin GET or POST form, JSON aggregators POST JSON).
    /// The pairs are decoded but borrowed from the query where no decoding
    /// was needed ([`QueryPair`]).
    fn parse(&self, query: &[QueryPair<'_>], body: &[u8]) -> Result<ParsedReceipt, ReceiptError>;
    /// The body to answer a stored receipt with. Jasmin re-sends a callback
    /// unless the body is exactly `ACK/Jasmin`; Kannel only looks at the
    /// status code.
    fn ack_body(&self) -> &'static str {
        "OK"
    }
    /// Checks the carrier's own signature on a callback (its headers and raw
    /// body, at `now_secs`), where its settings ask for one; before parsing.
    /// `Err` says why, and the callback is refused 401. Most dialects sign
    /// nothing: our per-message URL token is their binding.
    fn authenticate(
        &self,
        _headers: &reqwest::header::HeaderMap,
        _body: &[u8],
        _now_secs: i64,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// A callback that cannot be read at all (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed receipt: {field}: {reason}")]
pub struct ReceiptError {
    pub field: &'static str,
    pub reason: String,
}

impl ReceiptError {
    /// A required field that is not there.
    pub fn missing(field: &'static str) -> ReceiptError {
        ReceiptError {
            field,
            reason: "missing".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only what may have reached the carrier makes a receipt for the
    /// message believable (`attempts.handed_over`).
    #[test]
    fn only_errors_that_may_have_reached_the_carrier_are_hand_overs() {
        assert!(
            !SendError::retry(Transient::Connect, "connect: refused").may_have_reached_carrier()
        );
        assert!(!SendError::Throttled { retry_after: None }.may_have_reached_carrier());
        for kind in [Fault::Tls, Fault::Config] {
            let e = SendError::GatewayFault {
                reason: "x".into(),
                kind,
            };
            assert!(!e.may_have_reached_carrier(), "{kind:?}");
        }
        for kind in [
            Transient::Timeout,
            Transient::Http5xx,
            Transient::BadAnswer,
            Transient::Other,
        ] {
            assert!(
                SendError::retry(kind, "x").may_have_reached_carrier(),
                "{kind:?}"
            );
        }
        let refused = SendError::Permanent {
            reason: "unknown subscriber".into(),
            invalid_number: true,
        };
        assert!(refused.may_have_reached_carrier());
    }
}

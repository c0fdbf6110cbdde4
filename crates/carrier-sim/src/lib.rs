//! carrier-sim: a carrier for pedulicovid to talk to when no real one
//! should be (`pedulicovid demo`, `pedulicovid carrier-sim`, the
//! `carrier-sim` binary, a gateway with `dialect = "simulator"`, the tests
//! and the benchmarks).
//!
//! **What it owns and what it may not touch.** This crate owns the carrier's
//! side of three HTTP dialects (sendsms answers, delivery-report callbacks,
//! faults, counters) and nothing of the product: it does not depend on the
//! `pedulicovid` crate (the product depends on it), so it cannot share the
//! gateways' code or reach the database. Where it needs a protocol detail
//! (Kannel's DLR bits, Jasmin's acknowledgement, the aggregator's callback
//! signature) it has its own reading in [`wire`], which is the point of a
//! test double: it agrees with the product only where both follow the
//! carrier. The product maps its `[simulator]` settings onto
//! [`SimulatorConfig`] and wires a gateway to [`SimHandle::send_url`].
//!
//! It speaks one of three dialects ([`SimDialect`]), so every gateway the
//! engine knows can be driven against it with its ordinary code: the
//! simulator is one more carrier, never a special case.
//!
//! * **Kannel** (default): answers `GET /cgi-bin/sendsms` exactly like Kannel
//!   1.4.5 (and its POST mode: the text as a `text/plain` body, the fields
//!   as `X-Kannel-*` headers) and calls the request's `dlr-url` back the way
//!   Kannel's smsbox does (placeholders, the `%d` bitmask, retries of any
//!   answer but 200/202, callbacks in no particular order), for
//!   pedulicovid's `KannelGateway`.
//! * **Jasmin**: answers `GET`/`POST /send` like Jasmin's HTTP API
//!   (`Success "<uuid>"`, `Error "…"` with Jasmin's status codes) and throws
//!   delivery reports at `dlr-url` with `dlr-method`, level 1 (`ESME_ROK`,
//!   `ESME_RINVDSTADR`) and/or level 2 (`DELIVRD`, …) as `dlr-level` asks,
//!   re-sending each until it is answered 2xx with exactly `ACK/Jasmin`, for
//!   pedulicovid's `JasminGateway`.
//! * **JSON**: the reference JSON aggregator (`POST /v1/messages`, described
//!   in pedulicovid's `gateway::json`) for its `JsonGateway` with default
//!   settings.
//!
//! The outcome of each message comes from a suffix rule on the destination
//! (like the SMPP simulator's `--rules 0=UNDELIV,...`) or else from a
//! weighted random mix, whatever the dialect.
//!
//! Counters ([`SimStats`], also at `GET /sim/stats`) let black-box tests check
//! exactly-once sending: `duplicates` counts submits to a number that had
//! already been submitted.
//!
//! For reliability tests it can also misbehave like a real carrier
//! ([`FaultConfig`]: 5xx, 429 with Retry-After, timeouts, connection resets,
//! slow and garbage answers, answers lost after accepting, an outage), and it
//! times every send request per destination ([`SimHandle::attempt_report`],
//! `GET /sim/attempts`) so tests can check that attempts are bounded and
//! backoff is honoured. pedulicovid's `RELIABILITY.md` describes the tests
//! that use them; its `tests/it/sim_dialects.rs` drives the product's
//! gateways against this crate end to end.
//!
//! Logs carry masked numbers only and never the text or a URL (callback URLs
//! hold the receiver's callback token).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

mod cli;
pub mod wire;
pub use cli::{parse_mix, serve_until, SimArgs};
use wire::JASMIN_ACK_BODY;
pub use wire::{callback_client, dlr, mask_number, JsonSignature, Password, SignatureEncoding};

/// Settings of `pedulicovid carrier-sim` (and of the simulator the demo and
/// the tests start in-process). Every field has a default that works.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct SimulatorConfig {
    /// Address to listen on; port 0 picks a free one (tests).
    pub listen: String,
    /// Which carrier API to speak (`kannel`, `jasmin` or `json`).
    pub dialect: SimDialect,
    /// Username the requests must carry (Kannel `sendsms-user`, Jasmin user;
    /// unused by the JSON API).
    pub username: String,
    /// Password, compared in constant time (the Bearer token of the JSON
    /// API).
    pub password: Password,
    /// Delay before answering sendsms, to model a slow gateway.
    pub answer_latency_ms: u64,
    /// Base delay between the answer and the final receipt callback.
    pub receipt_delay_ms: u64,
    /// The final receipt comes `receipt_delay_ms` ± up to this much.
    pub receipt_jitter_ms: u64,
    /// Proportions of outcomes for numbers no rule matches.
    pub mix: OutcomeMix,
    /// Outcome by destination suffix; the longest matching suffix wins over
    /// the mix.
    pub rules: Vec<SuffixRule>,
    /// Extra attempts for a callback that is not taken (Kannel: answered
    /// other than 200/202, like `http-request-retry`; Jasmin: not 2xx with
    /// exactly `ACK/Jasmin`, like `dlr-thrower/max_retries`; JSON: not 2xx).
    pub callback_retries: u32,
    /// Pause between callback attempts, like Kannel's `http-queue-delay`.
    pub callback_retry_delay_ms: u64,
    /// Most callbacks in flight at once (Kannel: `max-pending-requests`,
    /// whose default is 512: `HTTP_MAX_PENDING` in Kannel's `smsbox.c`, the
    /// value `../shared/carrier/kannel.conf` sets too).
    pub callback_concurrency: usize,
    /// Seed for the outcome mix and the jitter; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// Keep every send request per destination for [`SimHandle::attempt_report`]
    /// (on by default; the benchmark turns it off to keep its memory to the
    /// engine's own).
    pub record_attempts: bool,
    /// Carrier faults injected into send requests (all off by default):
    /// `[simulator.faults]` in the settings file, or
    /// `PEDULICOVID__SIMULATOR__FAULTS__SERVER_ERROR=0.1` and the like.
    pub faults: FaultConfig,
    /// JSON dialect: sign every receipt callback as an aggregator would
    /// (`[simulator.json_signature]`, the same table as a gateway's
    /// `[gateways.json.receipt.signature]`). Off by default.
    pub json_signature: Option<JsonSignature>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            listen: "127.0.0.1:13013".to_string(),
            dialect: SimDialect::Kannel,
            username: "pedulicovid".to_string(),
            password: Password::new("secret"),
            answer_latency_ms: 0,
            receipt_delay_ms: 50,
            receipt_jitter_ms: 50,
            mix: OutcomeMix::default(),
            rules: Vec::new(),
            callback_retries: 3,
            callback_retry_delay_ms: 2000,
            callback_concurrency: 512,
            seed: None,
            record_attempts: true,
            faults: FaultConfig::default(),
            json_signature: None,
        }
    }
}

/// Faults the simulator injects into send requests, for reliability tests
/// (`tests/it/faults.rs`, `RELIABILITY.md`). Every share is a probability
/// (0..1) per request, drawn once per request in the order listed (their sum
/// should stay at or below 1; what is above 1 never happens). All are off by
/// default, and with all of them off the simulator draws nothing extra, so
/// seeded runs are unchanged.
///
/// A faulted request never counts as a submit (no receipt, not in
/// `duplicates`) — except `accept_then_timeout`, which models a carrier that
/// took the message but whose answer never arrived: it *is* submitted, so a
/// client that retries it makes a real duplicate. Every request, faulted or
/// not, is recorded per destination with its arrival time and what it got
/// (see [`SimHandle::attempt_report`]).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct FaultConfig {
    /// Share answered `500 Internal Server Error` or `503 Service
    /// Unavailable` (half each), in the dialect's words.
    pub server_error: f64,
    /// Share answered `429 Too Many Requests` with `Retry-After:
    /// retry_after_secs`.
    pub throttle: f64,
    /// The `Retry-After` of throttled answers, in seconds.
    pub retry_after_secs: u64,
    /// Share held without an answer for `timeout_hold_ms` (set it longer
    /// than the client's timeout), then answered `504`; nothing submitted.
    pub timeout: f64,
    /// Share submitted (counted, receipt planned) and *then* held like
    /// `timeout`: the answer comes too late. Counts as a submit.
    pub accept_then_timeout: f64,
    /// How long `timeout` and `accept_then_timeout` requests are held.
    pub timeout_hold_ms: u64,
    /// Share whose connection is reset (TCP RST, no answer at all) once the
    /// request has been read.
    pub reset: f64,
    /// Share answered normally but only after an extra `slow_ms` (keep it
    /// under the client's timeout, or the late answer is a lost one).
    pub slow: f64,
    /// The extra delay of slow answers.
    pub slow_ms: u64,
    /// Share answered `200 OK` with a body that is not the dialect's answer
    /// (an HTML page, an empty body, `OK`, bytes).
    pub garbage: f64,
    /// An outage starts this long after the simulator started (`None`: no
    /// scheduled outage; [`SimHandle::set_down`] works either way) …
    pub down_after_ms: Option<u64>,
    /// … and lasts this long.
    pub down_for_ms: u64,
    /// What a send request gets during an outage.
    pub down_answer: DownAnswer,
    /// Destinations ending in one of these digit suffixes are always
    /// answered `503` (a number the gateway can never route), so tests can
    /// watch a message use up its attempts. Counted as `server_errors`.
    pub always_fail: Vec<String>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            server_error: 0.0,
            throttle: 0.0,
            retry_after_secs: 1,
            timeout: 0.0,
            accept_then_timeout: 0.0,
            timeout_hold_ms: 30_000,
            reset: 0.0,
            slow: 0.0,
            slow_ms: 1_000,
            garbage: 0.0,
            down_after_ms: None,
            down_for_ms: 60_000,
            down_answer: DownAnswer::Reset,
            always_fail: Vec::new(),
        }
    }
}

impl FaultConfig {
    /// True when some share is above 0 (a draw is needed per request).
    fn any_share(&self) -> bool {
        [
            self.server_error,
            self.throttle,
            self.timeout,
            self.accept_then_timeout,
            self.reset,
            self.slow,
            self.garbage,
        ]
        .iter()
        .any(|w| w.is_finite() && *w > 0.0)
    }

    /// Which fault a draw `u` in `0..1` lands on, if any.
    fn pick(&self, u: f64) -> Option<Fault> {
        let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
        let buckets = [
            (Fault::ServerError, self.server_error),
            (Fault::Throttle, self.throttle),
            (Fault::Timeout, self.timeout),
            (Fault::AcceptThenTimeout, self.accept_then_timeout),
            (Fault::Reset, self.reset),
            (Fault::Garbage, self.garbage),
            (Fault::Slow, self.slow),
        ];
        let mut edge = 0.0;
        for (fault, w) in buckets {
            edge += clean(w);
            if u < edge {
                return Some(fault);
            }
        }
        None
    }
}

/// What a send request gets while the simulated gateway is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DownAnswer {
    /// The connection is reset without an answer (a gateway gone away).
    #[default]
    Reset,
    /// `503 Service Unavailable` (a gateway behind a load balancer).
    Unavailable,
}

/// One injected fault (internal: what the draw chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ServerError,
    Throttle,
    Timeout,
    AcceptThenTimeout,
    Reset,
    Garbage,
    Slow,
}

/// What one send request to one destination got, as recorded per
/// destination (see [`SimHandle::attempts_for`]).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "snake_case")]
pub enum AttemptKind {
    /// Submitted (slow answers included).
    Accepted,
    /// Refused by validation (credentials, number syntax): not submitted.
    Refused,
    /// Answered 500 or 503 by fault injection.
    ServerError,
    /// Answered 429 with `Retry-After`.
    Throttled,
    /// Held past the client's timeout; not submitted.
    Timeout,
    /// Submitted, then held past the client's timeout.
    AcceptedThenTimeout,
    /// Connection reset without an answer.
    Reset,
    /// Answered 200 with a body that is not the dialect's answer.
    Garbage,
    /// Refused because the gateway was down (reset or 503).
    Down,
}

impl AttemptKind {
    /// Every kind, in counter order.
    pub const ALL: [AttemptKind; 9] = [
        AttemptKind::Accepted,
        AttemptKind::Refused,
        AttemptKind::ServerError,
        AttemptKind::Throttled,
        AttemptKind::Timeout,
        AttemptKind::AcceptedThenTimeout,
        AttemptKind::Reset,
        AttemptKind::Garbage,
        AttemptKind::Down,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptKind::Accepted => "accepted",
            AttemptKind::Refused => "refused",
            AttemptKind::ServerError => "server_error",
            AttemptKind::Throttled => "throttled",
            AttemptKind::Timeout => "timeout",
            AttemptKind::AcceptedThenTimeout => "accepted_then_timeout",
            AttemptKind::Reset => "reset",
            AttemptKind::Garbage => "garbage",
            AttemptKind::Down => "down",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// The gateway took the message (a submit was counted).
    pub fn is_submit(self) -> bool {
        matches!(
            self,
            AttemptKind::Accepted | AttemptKind::AcceptedThenTimeout
        )
    }
}

impl fmt::Display for AttemptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One send request to one destination.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct Attempt {
    /// When the request arrived, in milliseconds since the simulator started.
    pub at_ms: f64,
    /// What it got.
    pub kind: AttemptKind,
}

/// Per-destination attempt figures over every send request so far (also
/// `GET /sim/attempts`): are attempts bounded, is backoff honoured?
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct AttemptReport {
    /// Destinations that got at least one request.
    pub destinations: u64,
    /// Requests per destination, summed (a request to two numbers counts
    /// twice).
    pub attempts_total: u64,
    /// Number of attempts → how many destinations got that many.
    pub distribution: std::collections::BTreeMap<u64, u64>,
    /// Most attempts any one destination got.
    pub max_attempts: u64,
    /// Most attempts any one destination got, not counting those answered
    /// 429 (engines do not count a throttle as an attempt).
    pub max_attempts_not_throttled: u64,
    /// Most 429 answers any one destination got.
    pub max_throttled: u64,
    /// Most submits any one destination got (1 in an exactly-once run).
    pub max_submits: u64,
    /// Smallest gap between two consecutive requests to one destination,
    /// in milliseconds (`None` with no destination tried twice).
    pub min_gap_ms: Option<f64>,
    /// The same by what the earlier request got, e.g. `throttled` → the
    /// smallest wait after a 429 (compare with `Retry-After`).
    pub min_gap_after_ms: std::collections::BTreeMap<AttemptKind, f64>,
}

/// The carrier API the simulator speaks; one per simulator, as a real
/// carrier speaks one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SimDialect {
    /// Kannel 1.4.5 `sendsms` (`GET /cgi-bin/sendsms`).
    #[default]
    Kannel,
    /// Jasmin's HTTP API (`GET`/`POST /send`).
    Jasmin,
    /// The reference JSON aggregator (`POST /v1/messages`).
    Json,
}

impl SimDialect {
    /// Every dialect.
    pub const ALL: [SimDialect; 3] = [SimDialect::Kannel, SimDialect::Jasmin, SimDialect::Json];

    /// The name used in settings and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            SimDialect::Kannel => "kannel",
            SimDialect::Jasmin => "jasmin",
            SimDialect::Json => "json",
        }
    }

    /// Path of the send endpoint.
    pub fn send_path(self) -> &'static str {
        match self {
            SimDialect::Kannel => "/cgi-bin/sendsms",
            SimDialect::Jasmin => "/send",
            SimDialect::Json => "/v1/messages",
        }
    }
}

impl fmt::Display for SimDialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SimDialect {
    type Err = String;

    /// `kannel`, `jasmin` or `json`, case-insensitively (`carrier-sim
    /// --dialect`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        SimDialect::ALL
            .into_iter()
            .find(|d| d.as_str() == lower)
            .ok_or_else(|| format!("unknown dialect {s:?} (kannel, jasmin, json)"))
    }
}

/// What happens to one simulated message once the send is accepted
/// (receipts described in Kannel's terms; the other dialects report the same
/// outcome in their own words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimOutcome {
    /// Receipt `stat:DELIVRD err:000`, DLR type 1.
    Delivered,
    /// Receipt `stat:UNDELIV err:001`, DLR type 2.
    Undelivered,
    /// Receipt `stat:REJECTD err:011`, DLR type 2.
    Rejected,
    /// Receipt `stat:EXPIRED err:027`, DLR type 34 (Kannel with the TLV).
    Expired,
    /// SMSC refuses the submit with ESME_RINVDSTADR, DLR type 16, no SMSC id.
    #[serde(alias = "nack")]
    Invalid,
    /// Accepted by the SMSC but never a receipt, for receipt-timeout tests.
    #[serde(alias = "noreceipt", alias = "nodlr")]
    NoReceipt,
}

impl SimOutcome {
    /// Every outcome, in counter order.
    pub const ALL: [SimOutcome; 6] = [
        SimOutcome::Delivered,
        SimOutcome::Undelivered,
        SimOutcome::Rejected,
        SimOutcome::Expired,
        SimOutcome::Invalid,
        SimOutcome::NoReceipt,
    ];

    /// The name used in settings, on the command line and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SimOutcome::Delivered => "delivered",
            SimOutcome::Undelivered => "undelivered",
            SimOutcome::Rejected => "rejected",
            SimOutcome::Expired => "expired",
            SimOutcome::Invalid => "invalid",
            SimOutcome::NoReceipt => "no_receipt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    /// `(stat, err, dlvrd)` of this outcome's handset receipt, for outcomes
    /// that have one.
    fn receipt_fields(self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            SimOutcome::Delivered => Some(("DELIVRD", "000", "001")),
            SimOutcome::Undelivered => Some(("UNDELIV", "001", "000")),
            SimOutcome::Rejected => Some(("REJECTD", "011", "000")),
            SimOutcome::Expired => Some(("EXPIRED", "027", "000")),
            SimOutcome::Invalid | SimOutcome::NoReceipt => None,
        }
    }
}

impl fmt::Display for SimOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SimOutcome {
    type Err = String;

    /// Accepts our names and the SMPP simulator's (`DELIVRD`, `UNDELIV`,
    /// `REJECTD`, `NACK`, `NODLR`), case-insensitively, so rules copied from
    /// the Kannel harness work unchanged.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Ok(match lower.as_str() {
            "delivered" | "delivrd" => SimOutcome::Delivered,
            "undelivered" | "undeliv" => SimOutcome::Undelivered,
            "rejected" | "rejectd" => SimOutcome::Rejected,
            "expired" => SimOutcome::Expired,
            "invalid" | "nack" => SimOutcome::Invalid,
            "no_receipt" | "noreceipt" | "nodlr" | "none" => SimOutcome::NoReceipt,
            _ => {
                return Err(format!(
                    "unknown outcome {s:?} (delivered, undelivered, rejected, expired, invalid, no_receipt)"
                ))
            }
        })
    }
}

/// Relative weights of outcomes for numbers no rule matches. They need not
/// add up to 1: they are normalised; negative or NaN weights count as 0, and
/// all-zero weights mean "always delivered".
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(default)]
pub struct OutcomeMix {
    /// Weight of [`SimOutcome::Delivered`].
    pub delivered: f64,
    /// Weight of [`SimOutcome::Undelivered`].
    pub undelivered: f64,
    /// Weight of [`SimOutcome::Rejected`].
    pub rejected: f64,
    /// Weight of [`SimOutcome::Expired`].
    pub expired: f64,
    /// Weight of [`SimOutcome::Invalid`].
    pub invalid: f64,
}

impl Default for OutcomeMix {
    /// Roughly what a campaign to registered numbers sees: most delivered,
    /// a few percent of each failure.
    fn default() -> Self {
        OutcomeMix {
            delivered: 0.90,
            undelivered: 0.04,
            rejected: 0.02,
            expired: 0.02,
            invalid: 0.02,
        }
    }
}

impl OutcomeMix {
    /// Draws one outcome according to the weights.
    pub fn pick(&self, rng: &mut impl Rng) -> SimOutcome {
        let clean = |w: f64| if w.is_finite() && w > 0.0 { w } else { 0.0 };
        let weighted = [
            (SimOutcome::Delivered, clean(self.delivered)),
            (SimOutcome::Undelivered, clean(self.undelivered)),
            (SimOutcome::Rejected, clean(self.rejected)),
            (SimOutcome::Expired, clean(self.expired)),
            (SimOutcome::Invalid, clean(self.invalid)),
        ];
        let total: f64 = weighted.iter().map(|(_, w)| w).sum();
        if total <= 0.0 {
            return SimOutcome::Delivered;
        }
        let mut x = rng.gen_range(0.0..total);
        for (outcome, w) in weighted {
            if x < w {
                return outcome;
            }
            x -= w;
        }
        // Rounding can leave x a hair above the last bucket.
        weighted
            .iter()
            .rev()
            .find(|(_, w)| *w > 0.0)
            .map_or(SimOutcome::Delivered, |(o, _)| *o)
    }
}

/// "Numbers ending in `suffix` get `outcome`", for deterministic tests and
/// demos.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SuffixRule {
    /// Trailing digits of the destination (as sent in `to`, e.g. `77`).
    pub suffix: String,
    /// What happens to matching numbers.
    pub outcome: SimOutcome,
}

/// Parses the CLI form `0=undelivered,9=expired,77=invalid`.
pub fn parse_rules(s: &str) -> Result<Vec<SuffixRule>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (suffix, outcome) = part
                .split_once('=')
                .ok_or_else(|| format!("rule {part:?}: expected SUFFIX=OUTCOME"))?;
            let suffix = suffix.trim();
            if suffix.is_empty() || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("rule {part:?}: the suffix must be digits"));
            }
            Ok(SuffixRule {
                suffix: suffix.to_string(),
                outcome: outcome.parse().map_err(|e| format!("rule {part:?}: {e}"))?,
            })
        })
        .collect()
}

/// The rule with the longest suffix matching `digits`, if any.
fn rule_for(rules: &[SuffixRule], digits: &str) -> Option<SimOutcome> {
    rules
        .iter()
        .filter(|r| digits.ends_with(r.suffix.as_str()))
        .max_by_key(|r| r.suffix.len())
        .map(|r| r.outcome)
}

/// A snapshot of the simulator's counters (also `GET /sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SimStats {
    /// Recipients accepted (Kannel `0: Accepted for delivery`, Jasmin
    /// `Success`, JSON 202), one per number in `to`.
    pub submits_total: u64,
    /// Submits to a number that had been submitted before: 0 in an
    /// exactly-once run.
    pub duplicates: u64,
    /// Submits that drew [`SimOutcome::Delivered`].
    pub delivered: u64,
    /// Submits that drew [`SimOutcome::Undelivered`].
    pub undelivered: u64,
    /// Submits that drew [`SimOutcome::Rejected`].
    pub rejected: u64,
    /// Submits that drew [`SimOutcome::Expired`].
    pub expired: u64,
    /// Submits that drew [`SimOutcome::Invalid`].
    pub invalid: u64,
    /// Submits that drew [`SimOutcome::NoReceipt`].
    pub no_receipt: u64,
    /// Send requests refused (400 / 401 / 403 / 422), submitting nothing.
    pub rejected_requests: u64,
    /// Callbacks taken (Kannel: 200/202; Jasmin: 2xx with `ACK/Jasmin`;
    /// JSON: 2xx), each counted once, whatever the attempts.
    pub callbacks_sent: u64,
    /// Callbacks dropped after `1 + callback_retries` failed attempts (or
    /// at once on a 404 in Jasmin mode, as Jasmin does).
    pub callbacks_failed: u64,
    /// Every HTTP attempt at a callback, retries included.
    pub callback_attempts: u64,
    /// Jasmin mode: attempts answered 2xx but without exactly `ACK/Jasmin`
    /// (each one is sent again, as Jasmin does).
    #[serde(default)]
    pub callbacks_unacknowledged: u64,
    /// Send requests that reached a send endpoint with a destination,
    /// faulted or not (one per destination; see [`AttemptReport`]).
    #[serde(default)]
    pub attempts_total: u64,
    /// Faults injected ([`FaultConfig`]): answered 500/503.
    #[serde(default)]
    pub server_errors: u64,
    /// Answered 429 with `Retry-After`.
    #[serde(default)]
    pub throttled: u64,
    /// Held past the client's timeout, not submitted.
    #[serde(default)]
    pub timeouts: u64,
    /// Submitted, then held past the client's timeout (these count in
    /// `submits_total`).
    #[serde(default)]
    pub accepted_then_timeouts: u64,
    /// Connections reset without an answer (outage resets included).
    #[serde(default)]
    pub resets: u64,
    /// Answered late by `slow_ms` (and submitted).
    #[serde(default)]
    pub slow_answers: u64,
    /// Answered 200 with a body that is not the dialect's answer.
    #[serde(default)]
    pub garbage_answers: u64,
    /// Send requests refused because the gateway was down.
    #[serde(default)]
    pub outage_refusals: u64,
    /// TCP connections accepted on the send endpoint: a client that keeps
    /// its connections alive opens about as many as it has requests in
    /// flight at once, whatever the number of messages.
    #[serde(default)]
    pub connections: u64,
    /// Kannel send requests in its POST mode (`X-Kannel-*` headers, the
    /// text as the body), whatever their answer.
    #[serde(default)]
    pub kannel_posts: u64,
}

/// Number of mutex shards for the per-number submit counts: enough that
/// concurrent handlers rarely wait on each other.
const SHARDS: usize = 16;

/// A destination as a map key: the number itself when it is up to 18 digits
/// without a leading zero (every MSISDN), else a hash of the text with the
/// top bit set, which no such number has (10^18 < 2^63). An 8-byte key
/// instead of a `String` keeps a 1.5-million-number campaign's accounting
/// small.
fn number_key(digits: &str) -> u64 {
    let plain = !digits.is_empty()
        && digits.len() <= 18
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    match digits.parse::<u64>() {
        Ok(n) if plain => n,
        _ => {
            let mut h = DefaultHasher::new();
            digits.hash(&mut h);
            h.finish() | 1 << 63
        }
    }
}

/// The mutex shard of a [`number_key`].
fn shard_of(key: u64) -> usize {
    // Spread consecutive numbers; the modulo keeps the cast lossless.
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize % SHARDS
}

/// Shared state behind every [`SimHandle`] clone and every request.
struct Inner {
    config: SimulatorConfig,
    local_addr: SocketAddr,
    submits_total: AtomicU64,
    duplicates: AtomicU64,
    outcomes: [AtomicU64; 6],
    rejected_requests: AtomicU64,
    callbacks_sent: AtomicU64,
    callbacks_failed: AtomicU64,
    callback_attempts: AtomicU64,
    callbacks_unacknowledged: AtomicU64,
    /// Submits per destination ([`number_key`]), sharded by the key.
    per_number: Vec<Mutex<HashMap<u64, u32>>>,
    /// Every send request per destination, sharded like `per_number` (empty
    /// unless `record_attempts`).
    attempts: Vec<Mutex<HashMap<u64, Vec<Attempt>>>>,
    /// Requests recorded in `attempts`, by [`AttemptKind`].
    attempt_counts: [AtomicU64; 9],
    /// Slow answers given (they are `Accepted` attempts).
    slow_answers: AtomicU64,
    /// Resets given (fault or outage).
    resets: AtomicU64,
    /// Connections accepted.
    connections: AtomicU64,
    /// Kannel POST-mode send requests.
    kannel_posts: AtomicU64,
    /// When the simulator was bound: the origin of attempt times and of the
    /// scheduled outage.
    started: Instant,
    /// Down by [`SimHandle::set_down`], whatever the schedule says.
    forced_down: AtomicBool,
    rng: Mutex<StdRng>,
    /// Next SMSC message id; unique for the simulator's life.
    next_fid: AtomicU64,
    /// Bounds callbacks in flight (one permit per HTTP attempt).
    callback_slots: Arc<Semaphore>,
    /// Callbacks waiting for their time ([`SimHandle::schedule`]).
    queue: Mutex<CallbackQueue>,
    /// Wakes the pump when something is queued.
    wake: tokio::sync::Notify,
    /// Keep-alive client for the callbacks.
    client: reqwest::Client,
}

/// Locks a mutex whose data stays valid even if a holder panicked: counters
/// and an RNG have no invariant a half-finished update could break.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A cheap, cloneable view of a running simulator, for tests and the stats
/// endpoint.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

impl SimHandle {
    /// A consistent-enough snapshot of the counters (each read atomically).
    pub fn stats(&self) -> SimStats {
        let i = &self.inner;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let outcome = |o: SimOutcome| load(&i.outcomes[o.index()]);
        SimStats {
            submits_total: load(&i.submits_total),
            duplicates: load(&i.duplicates),
            delivered: outcome(SimOutcome::Delivered),
            undelivered: outcome(SimOutcome::Undelivered),
            rejected: outcome(SimOutcome::Rejected),
            expired: outcome(SimOutcome::Expired),
            invalid: outcome(SimOutcome::Invalid),
            no_receipt: outcome(SimOutcome::NoReceipt),
            rejected_requests: load(&i.rejected_requests),
            callbacks_sent: load(&i.callbacks_sent),
            callbacks_failed: load(&i.callbacks_failed),
            callback_attempts: load(&i.callback_attempts),
            callbacks_unacknowledged: load(&i.callbacks_unacknowledged),
            attempts_total: i.attempt_counts.iter().map(load).sum(),
            server_errors: load(&i.attempt_counts[AttemptKind::ServerError.index()]),
            throttled: load(&i.attempt_counts[AttemptKind::Throttled.index()]),
            timeouts: load(&i.attempt_counts[AttemptKind::Timeout.index()]),
            accepted_then_timeouts: load(
                &i.attempt_counts[AttemptKind::AcceptedThenTimeout.index()],
            ),
            resets: load(&i.resets),
            slow_answers: load(&i.slow_answers),
            garbage_answers: load(&i.attempt_counts[AttemptKind::Garbage.index()]),
            outage_refusals: load(&i.attempt_counts[AttemptKind::Down.index()]),
            connections: load(&i.connections),
            kannel_posts: load(&i.kannel_posts),
        }
    }

    /// Takes the gateway down (`true`: every send request is refused as
    /// [`FaultConfig::down_answer`] says) or brings it back (`false`; a
    /// scheduled outage still applies in its window).
    pub fn set_down(&self, down: bool) {
        self.inner.forced_down.store(down, Ordering::SeqCst);
        tracing::info!(down, "carrier-sim: gateway down switched");
    }

    /// Is the gateway down now (forced, or inside the scheduled outage)?
    pub fn is_down(&self) -> bool {
        let i = &self.inner;
        if i.forced_down.load(Ordering::SeqCst) {
            return true;
        }
        match i.config.faults.down_after_ms {
            Some(after) => {
                let t = i.started.elapsed();
                let from = Duration::from_millis(after);
                t >= from && t < from + Duration::from_millis(i.config.faults.down_for_ms)
            }
            None => false,
        }
    }

    /// Every send request to `digits` so far, oldest first.
    pub fn attempts_for(&self, digits: &str) -> Vec<Attempt> {
        let key = number_key(digits);
        let mut all = lock(self.attempt_shard(key))
            .get(&key)
            .cloned()
            .unwrap_or_default();
        all.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        all
    }

    /// Attempts per destination and the gaps between them, over every
    /// destination tried so far. O(requests): for the end of a test, not a
    /// polling loop.
    pub fn attempt_report(&self) -> AttemptReport {
        let mut r = AttemptReport::default();
        for shard in &self.inner.attempts {
            let shard = lock(shard);
            for list in shard.values() {
                let mut list = list.clone();
                list.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
                let n = list.len() as u64;
                r.destinations += 1;
                r.attempts_total += n;
                *r.distribution.entry(n).or_insert(0) += 1;
                r.max_attempts = r.max_attempts.max(n);
                let throttled = list
                    .iter()
                    .filter(|a| a.kind == AttemptKind::Throttled)
                    .count() as u64;
                r.max_throttled = r.max_throttled.max(throttled);
                r.max_attempts_not_throttled = r.max_attempts_not_throttled.max(n - throttled);
                let submits = list.iter().filter(|a| a.kind.is_submit()).count() as u64;
                r.max_submits = r.max_submits.max(submits);
                for pair in list.windows(2) {
                    let gap = pair[1].at_ms - pair[0].at_ms;
                    r.min_gap_ms = Some(r.min_gap_ms.map_or(gap, |g: f64| g.min(gap)));
                    let after = r.min_gap_after_ms.entry(pair[0].kind).or_insert(gap);
                    *after = after.min(gap);
                }
            }
        }
        r
    }

    fn attempt_shard(&self, key: u64) -> &Mutex<HashMap<u64, Vec<Attempt>>> {
        &self.inner.attempts[shard_of(key)]
    }

    /// Milliseconds since the simulator started (attempt times).
    fn clock_ms(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64() * 1000.0
    }

    /// Records one request arrived at `at_ms` to each of `destinations`.
    fn record_attempt(&self, destinations: &[String], at_ms: f64, kind: AttemptKind) {
        for d in destinations {
            if self.inner.config.record_attempts {
                let key = number_key(d);
                lock(self.attempt_shard(key))
                    .entry(key)
                    .or_default()
                    .push(Attempt { at_ms, kind });
            }
            self.inner.attempt_counts[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Serves one send request with fault injection around the dialect's
    /// own handling (`normal`, which submits when it accepts):
    ///
    /// 1. the arrival is timed and `answer_latency_ms` waited;
    /// 2. during an outage the request is reset or answered 503;
    /// 3. otherwise one draw picks a fault (or none) from the shares;
    /// 4. a fault that submits (`slow`, `accept_then_timeout`) or no fault
    ///    runs `normal`; its answer decides `Accepted` or `Refused`.
    ///
    /// Every destination of the request gets an [`Attempt`] either way.
    async fn serve_send<Fut>(
        &self,
        conn: &ConnCtl,
        destinations: Vec<String>,
        normal: Fut,
    ) -> Response
    where
        Fut: Future<Output = Response>,
    {
        let i = &self.inner;
        let arrived = self.clock_ms();
        if i.config.answer_latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(i.config.answer_latency_ms)).await;
        }
        let dialect = i.config.dialect;
        let faults = &i.config.faults;
        let masked = || {
            destinations
                .first()
                .map(|d| mask_number(d))
                .unwrap_or_default()
        };
        if self.is_down() {
            self.record_attempt(&destinations, arrived, AttemptKind::Down);
            tracing::debug!(to = %masked(), "carrier-sim: down, refusing");
            return match faults.down_answer {
                DownAnswer::Reset => self.reset(conn),
                DownAnswer::Unavailable => fault_answer(
                    dialect,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service unavailable",
                ),
            };
        }
        let doomed = destinations
            .iter()
            .any(|d| faults.always_fail.iter().any(|s| d.ends_with(s.as_str())));
        if doomed {
            self.record_attempt(&destinations, arrived, AttemptKind::ServerError);
            return fault_answer(
                dialect,
                StatusCode::SERVICE_UNAVAILABLE,
                "Service unavailable",
            );
        }
        let (fault, u) = if faults.any_share() {
            let u: f64 = lock(&i.rng).gen();
            (faults.pick(u), u)
        } else {
            (None, 1.0)
        };
        if let Some(f) = fault {
            tracing::debug!(to = %masked(), fault = ?f, "carrier-sim: injecting a fault");
        }
        match fault {
            Some(Fault::ServerError) => {
                self.record_attempt(&destinations, arrived, AttemptKind::ServerError);
                // The lower half of the bucket answers 500, the upper 503.
                let status = if u < faults.server_error / 2.0 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                fault_answer(dialect, status, "Internal server error")
            }
            Some(Fault::Throttle) => {
                self.record_attempt(&destinations, arrived, AttemptKind::Throttled);
                let mut resp =
                    fault_answer(dialect, StatusCode::TOO_MANY_REQUESTS, "Too many requests");
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    header::HeaderValue::from(faults.retry_after_secs),
                );
                resp
            }
            Some(Fault::Timeout) => {
                self.record_attempt(&destinations, arrived, AttemptKind::Timeout);
                tokio::time::sleep(Duration::from_millis(faults.timeout_hold_ms)).await;
                fault_answer(dialect, StatusCode::GATEWAY_TIMEOUT, "Gateway timeout")
            }
            Some(Fault::Reset) => {
                self.record_attempt(&destinations, arrived, AttemptKind::Reset);
                self.reset(conn)
            }
            Some(Fault::Garbage) => {
                self.record_attempt(&destinations, arrived, AttemptKind::Garbage);
                const PAGES: [&str; 4] = [
                    "<html><head><title>Welcome</title></head><body>It works!</body></html>",
                    "",
                    "OK",
                    "\u{1}\u{2}\u{fffd}garbage",
                ];
                let page = PAGES[(u * 1e6) as usize % PAGES.len()];
                (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], page).into_response()
            }
            Some(Fault::AcceptThenTimeout) => {
                let resp = normal.await;
                let kind = if resp.status().is_success() {
                    AttemptKind::AcceptedThenTimeout
                } else {
                    AttemptKind::Refused
                };
                self.record_attempt(&destinations, arrived, kind);
                tokio::time::sleep(Duration::from_millis(faults.timeout_hold_ms)).await;
                resp
            }
            Some(Fault::Slow) | None => {
                if fault == Some(Fault::Slow) {
                    i.slow_answers.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(faults.slow_ms)).await;
                }
                let resp = normal.await;
                let kind = if resp.status().is_success() {
                    AttemptKind::Accepted
                } else {
                    AttemptKind::Refused
                };
                self.record_attempt(&destinations, arrived, kind);
                resp
            }
        }
    }

    /// Resets the request's connection: the answer returned here is never
    /// written (the connection fails on its first write and is closed with
    /// `SO_LINGER` 0, i.e. a TCP RST).
    fn reset(&self, conn: &ConnCtl) -> Response {
        self.inner.resets.fetch_add(1, Ordering::Relaxed);
        conn.kill();
        StatusCode::INTERNAL_SERVER_ERROR.into_response()
    }

    /// How many times `digits` (as sent in `to`, e.g. `6281234567890`) was
    /// submitted: exactly-once tests expect 1 for every recipient.
    pub fn submits_for(&self, digits: &str) -> u64 {
        let key = number_key(digits);
        let shard = lock(self.shard(key));
        shard.get(&key).copied().map_or(0, u64::from)
    }

    /// Where the simulator listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The sendsms URL to configure a `KannelGateway` with (the Kannel
    /// path whatever the dialect; see [`Self::send_url`]).
    pub fn sendsms_url(&self) -> String {
        self.url_for(SimDialect::Kannel.send_path())
    }

    /// The send endpoint of the dialect the simulator speaks: a
    /// `KannelConfig::sendsms_url`, `JasminConfig::send_url` or
    /// `JsonConfig::url`.
    pub fn send_url(&self) -> String {
        self.url_for(self.inner.config.dialect.send_path())
    }

    /// The dialect the simulator speaks.
    pub fn dialect(&self) -> SimDialect {
        self.inner.config.dialect
    }

    fn url_for(&self, path: &str) -> String {
        let addr = self.inner.local_addr;
        // A wildcard listener is reached through loopback.
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}{path}", addr.port())
    }

    fn shard(&self, key: u64) -> &Mutex<HashMap<u64, u32>> {
        &self.inner.per_number[shard_of(key)]
    }

    /// Counts one accepted recipient (any dialect) and draws its outcome and
    /// SMSC message id.
    fn record_submit(&self, digits: &str) -> (SimOutcome, String) {
        let i = &self.inner;
        let previous = {
            let key = number_key(digits);
            let mut shard = lock(self.shard(key));
            let n = shard.entry(key).or_insert(0);
            *n += 1;
            *n - 1
        };
        if previous > 0 {
            i.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        i.submits_total.fetch_add(1, Ordering::Relaxed);

        let outcome = rule_for(&i.config.rules, digits)
            .unwrap_or_else(|| i.config.mix.pick(&mut *lock(&i.rng)));
        i.outcomes[outcome.index()].fetch_add(1, Ordering::Relaxed);
        tracing::debug!(to = %mask_number(digits), %outcome, "carrier-sim: submit accepted");
        // The SMSC message id, shared by every report of the message.
        let smsc_id = format!("{:010X}", i.next_fid.fetch_add(1, Ordering::Relaxed));
        (outcome, smsc_id)
    }

    /// Kannel: records one accepted recipient and schedules its callbacks.
    fn submit(&self, digits: &str, req: &SubmitRequest) {
        let (outcome, smsc_id) = self.record_submit(digits);
        let Some(dlr_url) = req.dlr_url.as_deref() else {
            return;
        };
        for (kind, delay) in self.plan(outcome, req.dlr_mask) {
            let fid = if kind == dlr::SMSC_FAIL {
                String::new()
            } else {
                smsc_id.clone()
            };
            let report = Report {
                kind,
                outcome,
                fid,
                to: digits.to_string(),
                from: req.from.clone(),
                username: req.username.clone(),
                text20: req.text20.clone(),
                submit_date: req.submit_date.clone(),
            };
            self.schedule(
                delay,
                0,
                Job::Kannel {
                    template: dlr_url.to_string(),
                    report,
                },
            );
        }
    }

    /// Which DLR types to send for an outcome under a mask, and when.
    ///
    /// SMSC-level reports (8, 16) and the intermediate 4 go out right after
    /// the answer, as Kannel issues them on `submit_sm_resp`; the final
    /// receipt follows `receipt_delay_ms` ± `receipt_jitter_ms`. Each one is
    /// its own task, so, as with Kannel, their order is not guaranteed.
    fn plan(&self, outcome: SimOutcome, mask: u8) -> Vec<(u8, Duration)> {
        let now = Duration::ZERO;
        let mut plan = Vec::new();
        if outcome == SimOutcome::Invalid {
            plan.push((dlr::SMSC_FAIL, now));
        } else {
            plan.push((dlr::SMSC_SUCCESS, now));
            if outcome != SimOutcome::NoReceipt {
                plan.push((dlr::BUFFERED, now));
            }
            let last = match outcome {
                SimOutcome::Delivered => Some(dlr::SUCCESS),
                SimOutcome::Undelivered | SimOutcome::Rejected => Some(dlr::FAIL),
                SimOutcome::Expired => Some(dlr::EXPIRED | dlr::FAIL),
                SimOutcome::Invalid | SimOutcome::NoReceipt => None,
            };
            if let Some(kind) = last {
                plan.push((kind, self.receipt_delay()));
            }
        }
        plan.retain(|(kind, _)| kind & mask != 0);
        plan
    }

    fn receipt_delay(&self) -> Duration {
        let c = &self.inner.config;
        let jitter = c.receipt_jitter_ms;
        let offset: i64 = if jitter == 0 {
            0
        } else {
            let j = i64::try_from(jitter).unwrap_or(i64::MAX);
            lock(&self.inner.rng).gen_range(-j..=j)
        };
        let base = i64::try_from(c.receipt_delay_ms).unwrap_or(i64::MAX);
        let ms = base.saturating_add(offset).max(0);
        Duration::from_millis(ms.unsigned_abs())
    }

    /// Jasmin: records one accepted recipient, schedules its reports and
    /// returns Jasmin's message id (a uuid, as Jasmin's).
    ///
    /// Reports follow `dlr-level`: level 1 (1 or 3) right away, `ESME_ROK`
    /// or, for [`SimOutcome::Invalid`], `ESME_RINVDSTADR`; level 2 (2 or 3)
    /// after the receipt delay, with the receipt fields, for outcomes that
    /// have a receipt. With level 2 alone an SMSC refusal is never reported,
    /// as with Jasmin.
    fn submit_jasmin(&self, digits: &str, req: &JasminSubmit) -> String {
        let (outcome, smsc_id) = self.record_submit(digits);
        let jasmin_id = uuid::Uuid::new_v4().to_string();
        let Some(target) = &req.dlr else {
            return jasmin_id;
        };
        let mut reports: Vec<(Vec<(&'static str, String)>, Duration)> = Vec::new();
        if target.level == 1 || target.level == 3 {
            let status = if outcome == SimOutcome::Invalid {
                "ESME_RINVDSTADR"
            } else {
                "ESME_ROK"
            };
            reports.push((
                vec![
                    ("id", jasmin_id.clone()),
                    ("message_status", status.to_string()),
                    ("level", "1".to_string()),
                    ("connector", "sim".to_string()),
                ],
                Duration::ZERO,
            ));
        }
        if target.level == 2 || target.level == 3 {
            if let Some((stat, err, dlvrd)) = outcome.receipt_fields() {
                reports.push((
                    vec![
                        ("id", jasmin_id.clone()),
                        ("id_smsc", smsc_id.clone()),
                        ("message_status", stat.to_string()),
                        ("level", target.level.to_string()),
                        ("connector", "sim".to_string()),
                        ("subdate", req.submit_date.clone()),
                        ("donedate", smsc_date()),
                        ("sub", "001".to_string()),
                        ("dlvrd", dlvrd.to_string()),
                        ("err", err.to_string()),
                        ("text", req.text20.clone()),
                    ],
                    self.receipt_delay(),
                ));
            }
        }
        for (fields, delay) in reports {
            let form: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields)
                .finish();
            let callback = if target.post {
                Callback::Jasmin {
                    url: target.url.clone(),
                    form: Some(form),
                }
            } else {
                let sep = if target.url.contains('?') { '&' } else { '?' };
                Callback::Jasmin {
                    url: format!("{}{sep}{form}", target.url),
                    form: None,
                }
            };
            self.schedule(delay, 0, Job::Ready(callback));
        }
        jasmin_id
    }

    /// JSON: records one accepted recipient, schedules its one final
    /// receipt and returns the aggregator's message id.
    ///
    /// [`SimOutcome::Invalid`] is reported at once (the operator refused
    /// it), the others after the receipt delay; [`SimOutcome::NoReceipt`]
    /// never.
    fn submit_json(&self, digits: &str, req: &JsonSubmit) -> String {
        let (outcome, _smsc_id) = self.record_submit(digits);
        let message_id = uuid::Uuid::new_v4().to_string();
        let Some(url) = req.callback_url.clone() else {
            return message_id;
        };
        let (status, error, delay) = match outcome {
            SimOutcome::Delivered => ("DELIVERED", None, self.receipt_delay()),
            SimOutcome::Undelivered => ("FAILED", Some("001"), self.receipt_delay()),
            SimOutcome::Rejected => ("REJECTED", Some("011"), self.receipt_delay()),
            SimOutcome::Expired => ("EXPIRED", Some("027"), self.receipt_delay()),
            SimOutcome::Invalid => ("INVALID", Some("0x0000000b"), Duration::ZERO),
            SimOutcome::NoReceipt => return message_id,
        };
        let body = serde_json::json!({
            "message_id": message_id,
            "reference": req.reference,
            "status": status,
            "error": error,
        })
        .to_string()
        .into_bytes();
        self.schedule(delay, 0, Job::Ready(Callback::Json { url, body }));
        message_id
    }

    /// Queues a callback (`attempt` 0 for the first) to be made after
    /// `delay`. Pending callbacks wait in one time-ordered queue, as data
    /// (a few hundred bytes each), not as a sleeping task each: a receiver
    /// that falls behind by hundreds of thousands of receipts costs the
    /// carrier little memory, as with Kannel's DLR store. One pump task runs
    /// while the queue is not empty.
    fn schedule(&self, delay: Duration, attempt: u32, job: Job) {
        let (start, earliest) = {
            let mut q = lock(&self.inner.queue);
            q.seq += 1;
            let seq = q.seq;
            q.heap.push(Scheduled {
                due: Instant::now() + delay,
                seq,
                attempt,
                job,
            });
            let earliest = q.heap.peek().map(|h| h.seq) == Some(seq);
            (!std::mem::replace(&mut q.pumping, true), earliest)
        };
        if start {
            tokio::spawn(self.clone().pump());
        } else if earliest {
            // The pump sleeps until the head of the queue is due; only a new
            // head can make that sleep too long. (A wake that lands before
            // the pump waits is kept by the Notify.)
            self.inner.wake.notify_one();
        }
    }

    /// Makes the queued callbacks as they fall due, at most
    /// `callback_concurrency` at once (Kannel: `max-pending-requests`);
    /// ends when the queue is empty.
    async fn pump(self) {
        loop {
            let due = {
                let mut q = lock(&self.inner.queue);
                match q.heap.peek() {
                    Some(next) => next.due,
                    None => {
                        q.pumping = false;
                        return;
                    }
                }
            };
            if due > Instant::now() {
                tokio::select! {
                    _ = tokio::time::sleep_until(due.into()) => {}
                    _ = self.inner.wake.notified() => {}
                }
                continue;
            }
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = self.inner.callback_slots.clone().acquire_owned().await else {
                return;
            };
            let Some(next) = lock(&self.inner.queue).heap.pop() else {
                continue;
            };
            let handle = self.clone();
            tokio::spawn(async move {
                handle.deliver(next).await;
                drop(permit);
            });
        }
    }

    /// Makes one attempt at a callback like the carrier would; until one is
    /// taken, `1 + callback_retries` attempts `callback_retry_delay_ms`
    /// apart (see [`Self::attempt`]), then dropped.
    async fn deliver(&self, item: Scheduled) {
        let i = &self.inner;
        let attempts = 1 + i.config.callback_retries;
        i.callback_attempts.fetch_add(1, Ordering::Relaxed);
        // Expanded once: a retry repeats the same request (Kannel's smsbox
        // retries the URL it built, `%T` and `%I` included).
        let callback = item.job.callback();
        match self.attempt(&callback).await {
            Verdict::Taken => {
                i.callbacks_sent.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Retry if item.attempt + 1 < attempts => {
                self.schedule(
                    Duration::from_millis(i.config.callback_retry_delay_ms),
                    item.attempt + 1,
                    Job::Ready(callback),
                );
            }
            Verdict::Retry => {
                i.callbacks_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(attempts, "carrier-sim: callback dropped after retries");
            }
            Verdict::Drop => {
                i.callbacks_failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("carrier-sim: callback dropped: 404 is final for jasmin");
            }
        }
    }

    /// One HTTP attempt at a callback, judged by the dialect's rule:
    ///
    /// | dialect | request                    | taken when                        |
    /// |---------|----------------------------|-----------------------------------|
    /// | Kannel  | GET expanded `dlr-url`     | 200 or 202 only (even 204 retries) |
    /// | Jasmin  | GET `?fields` or POST form | 2xx and body trimmed = `ACK/Jasmin`; a 404 is dropped at once |
    /// | JSON    | POST JSON                  | any 2xx                           |
    ///
    /// A refused connection or a timeout is retried in every dialect.
    async fn attempt(&self, callback: &Callback) -> Verdict {
        let client = &self.inner.client;
        let sent = match callback {
            Callback::Kannel { url } | Callback::Jasmin { url, form: None } => {
                client.get(url).send().await
            }
            Callback::Jasmin {
                url,
                form: Some(form),
            } => {
                client
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone())
                    .send()
                    .await
            }
            Callback::Json { url, body } => {
                let mut req = client
                    .post(url)
                    .header(header::CONTENT_TYPE, "application/json");
                // Signed per attempt, as aggregators do: a retry carries a
                // fresh timestamp.
                if let Some(sig) = &self.inner.config.json_signature {
                    let now = chrono::Utc::now().timestamp();
                    req = req.header(sig.header.as_str(), sig.sign(body, now));
                    if let Some(t) = &sig.timestamp_header {
                        req = req.header(t.as_str(), now.to_string());
                    }
                }
                req.body(body.clone()).send().await
            }
        };
        let Ok(resp) = sent else {
            return Verdict::Retry;
        };
        let status = resp.status();
        // Reading the body also returns the connection to the pool.
        let body = resp.bytes().await.unwrap_or_default();
        let taken = match callback {
            Callback::Kannel { .. } => status.as_u16() == 200 || status.as_u16() == 202,
            Callback::Jasmin { .. } => {
                if status == StatusCode::NOT_FOUND {
                    return Verdict::Drop;
                }
                let acked = status.is_success()
                    && std::str::from_utf8(&body).map(str::trim) == Ok(JASMIN_ACK_BODY);
                if status.is_success() && !acked {
                    self.inner
                        .callbacks_unacknowledged
                        .fetch_add(1, Ordering::Relaxed);
                }
                acked
            }
            Callback::Json { .. } => status.is_success(),
        };
        if taken {
            Verdict::Taken
        } else {
            Verdict::Retry
        }
    }
}

/// A callback waiting in the queue.
struct Scheduled {
    due: Instant,
    /// Order of scheduling: equal due times go first in, first out.
    seq: u64,
    /// Attempts made before this one.
    attempt: u32,
    job: Job,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest must come out
    /// first.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// What a queued callback will send.
enum Job {
    /// A Kannel report, its `dlr-url` expanded when first sent (`%T` is the
    /// report's time, as with Kannel); retries send that same URL.
    Kannel { template: String, report: Report },
    /// Any other callback, ready as it is.
    Ready(Callback),
}

impl Job {
    fn callback(&self) -> Callback {
        match self {
            Job::Kannel { template, report } => Callback::Kannel {
                url: expand_dlr_url(template, report),
            },
            Job::Ready(c) => c.clone(),
        }
    }
}

/// The callbacks not yet made, earliest first.
#[derive(Default)]
struct CallbackQueue {
    heap: std::collections::BinaryHeap<Scheduled>,
    seq: u64,
    /// A pump task is running.
    pumping: bool,
}

/// One callback to make, in its dialect's form.
#[derive(Clone)]
enum Callback {
    /// An expanded Kannel `dlr-url`.
    Kannel { url: String },
    /// A Jasmin report: the full GET URL (`form: None`), or the `dlr-url`
    /// and the form body to POST.
    Jasmin { url: String, form: Option<String> },
    /// A JSON receipt POSTed to the request's `callback_url`.
    Json { url: String, body: Vec<u8> },
}

/// What one callback attempt leads to.
enum Verdict {
    /// The receiver took it: done.
    Taken,
    /// Try again after the retry delay, if attempts are left.
    Retry,
    /// Give up now (Jasmin's "no retry" answer, 404).
    Drop,
}

/// The parts of a Jasmin `/send` that its reports need.
struct JasminSubmit {
    /// Where and how to report, when `dlr=yes` came with a `dlr-url`.
    dlr: Option<JasminDlr>,
    /// First 20 characters of the text, for the `text` field.
    text20: String,
    /// `YYMMDDhhmm` at submit time.
    submit_date: String,
}

/// A Jasmin request's `dlr-*` fields.
struct JasminDlr {
    url: String,
    /// 1, 2 or 3.
    level: u8,
    /// `dlr-method=POST` (Jasmin's default).
    post: bool,
}

/// The parts of a JSON send that its receipt needs.
struct JsonSubmit {
    /// Echoed as given (string or number; null when absent).
    reference: serde_json::Value,
    callback_url: Option<String>,
}

/// The parts of a sendsms request that its callbacks need.
struct SubmitRequest {
    username: String,
    from: String,
    dlr_mask: u8,
    dlr_url: Option<String>,
    /// First 20 characters of the text, for the receipt's `text:` field.
    text20: String,
    /// `YYMMDDhhmm` at submit time.
    submit_date: String,
}

/// One DLR the simulator will report.
struct Report {
    /// Kannel's `%d`.
    kind: u8,
    outcome: SimOutcome,
    /// `%F`: empty for type 16, as Kannel does.
    fid: String,
    to: String,
    from: String,
    username: String,
    text20: String,
    submit_date: String,
}

impl Report {
    /// `%A`: what Kannel passes on from the SMSC for this report.
    fn answer(&self) -> String {
        match self.kind {
            dlr::SMSC_SUCCESS => "ACK/".to_string(),
            dlr::SMSC_FAIL => "NACK/0x0000000b/Invalid Destination Address".to_string(),
            _ => {
                let (stat, err, dlvrd) = if self.kind == dlr::BUFFERED {
                    ("ENROUTE", "000", "000")
                } else {
                    match self.outcome {
                        SimOutcome::Delivered => ("DELIVRD", "000", "001"),
                        SimOutcome::Undelivered => ("UNDELIV", "001", "000"),
                        SimOutcome::Rejected => ("REJECTD", "011", "000"),
                        SimOutcome::Expired => ("EXPIRED", "027", "000"),
                        // Never planned: these have no receipt.
                        SimOutcome::Invalid | SimOutcome::NoReceipt => ("UNKNOWN", "000", "000"),
                    }
                };
                format!(
                    "id:{} sub:001 dlvrd:{dlvrd} submit date:{} done date:{} stat:{stat} err:{err} text:{}",
                    self.fid,
                    self.submit_date,
                    smsc_date(),
                    self.text20
                )
            }
        }
    }
}

/// `YYMMDDhhmm`, the SMPP receipt date format.
fn smsc_date() -> String {
    chrono::Utc::now().format("%y%m%d%H%M").to_string()
}

/// Replaces Kannel's placeholders in a `dlr-url`, each value form-encoded as
/// smsbox does (space → `+`, `:` → `%3A`, …). Unknown `%x` are left as they are.
fn expand_dlr_url(template: &str, r: &Report) -> String {
    let mut out = String::with_capacity(template.len() + 128);
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(p) = chars.next() else {
            out.push('%');
            break;
        };
        let now = chrono::Utc::now();
        let value: String = match p {
            'd' => r.kind.to_string(),
            'F' => r.fid.clone(),
            'A' => r.answer(),
            'p' => r.to.clone(),
            'P' => r.from.clone(),
            'T' => now.timestamp().to_string(),
            't' => now.format("%Y-%m-%d %H:%M:%S").to_string(),
            'I' => uuid::Uuid::new_v4().to_string(),
            'i' => "sim".to_string(),
            'n' => r.username.clone(),
            'o' if r.kind == dlr::SMSC_SUCCESS || r.kind == dlr::SMSC_FAIL => String::new(),
            'o' => r.username.clone(),
            'D' => String::new(),
            other => {
                out.push('%');
                out.push(other);
                continue;
            }
        };
        out.extend(url::form_urlencoded::byte_serialize(value.as_bytes()));
    }
    out
}

/// A bound, not yet running simulator.
pub struct Simulator {
    listener: tokio::net::TcpListener,
    handle: SimHandle,
}

impl Simulator {
    /// Binds the listener now (so a test knows the port before anything
    /// runs) with a backlog of 1024: the README measured lost callbacks with
    /// Python's default of 5 under bursts, and our sendsms side gets the same
    /// bursts from many workers.
    pub async fn bind(config: SimulatorConfig) -> anyhow::Result<Simulator> {
        let addr = tokio::net::lookup_host(config.listen.as_str())
            .await
            .with_context(|| format!("resolving carrier-sim listen address {}", config.listen))?
            .next()
            .with_context(|| format!("no address for {}", config.listen))?;
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .context("creating the carrier-sim socket")?;
        // Restarting right after a stop must not fail on TIME_WAIT sockets.
        socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
        socket
            .bind(addr)
            .with_context(|| format!("binding carrier-sim to {addr}"))?;
        let listener = socket.listen(1024).context("listening")?;
        let local_addr = listener.local_addr().context("reading the bound address")?;

        let mut rng = match config.seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_entropy(),
        };
        // Start SMSC ids at a random 10-hex-digit value like the SMPP
        // simulator's, so ids from two runs rarely collide in one database
        // (and a seeded run gets the same ids every time).
        let first_fid = 0x94_0000_0000 + rng.gen_range(0..0x0F_0000_0000u64);
        let permits = config.callback_concurrency.max(1);
        let inner = Inner {
            local_addr,
            submits_total: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            outcomes: Default::default(),
            rejected_requests: AtomicU64::new(0),
            callbacks_sent: AtomicU64::new(0),
            callbacks_failed: AtomicU64::new(0),
            callback_attempts: AtomicU64::new(0),
            callbacks_unacknowledged: AtomicU64::new(0),
            per_number: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            attempts: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            attempt_counts: Default::default(),
            slow_answers: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            kannel_posts: AtomicU64::new(0),
            started: Instant::now(),
            forced_down: AtomicBool::new(false),
            rng: Mutex::new(rng),
            next_fid: AtomicU64::new(first_fid),
            callback_slots: Arc::new(Semaphore::new(permits)),
            queue: Mutex::new(CallbackQueue::default()),
            wake: tokio::sync::Notify::new(),
            client: callback_client(Duration::from_secs(10), permits),
            config,
        };
        tracing::info!(%local_addr, "carrier-sim listening");
        Ok(Simulator {
            listener,
            handle: SimHandle {
                inner: Arc::new(inner),
            },
        })
    }

    /// Where the simulator listens (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    /// `http://127.0.0.1:PORT/cgi-bin/sendsms`, for a `KannelConfig`.
    pub fn sendsms_url(&self) -> String {
        self.handle.sendsms_url()
    }

    /// The send endpoint of the configured dialect (see
    /// [`SimHandle::send_url`]).
    pub fn send_url(&self) -> String {
        self.handle.send_url()
    }

    /// Current counters.
    pub fn stats(&self) -> SimStats {
        self.handle.stats()
    }

    /// A handle that outlives `run` consuming the simulator.
    pub fn handle(&self) -> SimHandle {
        self.handle.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and finishes
    /// the requests in progress. Callbacks already scheduled keep running on
    /// the runtime (as Kannel would still send its queue).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let listener = FaultListener {
            inner: self.listener,
            sim: self.handle.clone(),
        };
        let app = router(self.handle).into_make_service_with_connect_info::<ConnCtl>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .context("carrier-sim server")
    }

    /// [`Self::run`] on a new task, for tests and the demo.
    pub fn spawn(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<anyhow::Result<()>> {
        tokio::spawn(self.run(shutdown))
    }
}

/// Only the configured dialect's send endpoint is served (a real carrier
/// speaks one API); `/sim/stats` always.
fn router(handle: SimHandle) -> Router {
    let dialect = handle.inner.config.dialect;
    let router = Router::new()
        .route("/sim/stats", get(stats))
        .route("/sim/attempts", get(attempts));
    let router = match dialect {
        SimDialect::Kannel => router.route(dialect.send_path(), get(sendsms).post(sendsms_post)),
        SimDialect::Jasmin => router.route(dialect.send_path(), get(jasmin_send).post(jasmin_send)),
        SimDialect::Json => router.route(dialect.send_path(), post(json_send)),
    };
    router.with_state(handle)
}

/// A Kannel-style `text/html` answer.
fn kannel_answer(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Kannel 1.4.5's answers, checked in its order: credentials, receiver,
/// receiver syntax.
async fn sendsms(
    State(sim): State<SimHandle>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    RawQuery(query): RawQuery,
) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let to = params
        .iter()
        .find(|(k, _)| k == "to")
        .map_or("", |(_, v)| v.as_str());
    let destinations = destinations(to.split_whitespace());
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    sim.serve_send(&conn, destinations, async {
        kannel_sendsms(&sim, MISSING_RECEIVER_GET, get)
    })
    .await
}

/// The destinations of a request as the per-number counters key them
/// (digits, no `+`), skipping what is not a number at all.
fn destinations<'a>(numbers: impl Iterator<Item = &'a str>) -> Vec<String> {
    numbers
        .map(|n| n.trim())
        .map(|n| n.strip_prefix('+').unwrap_or(n))
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

/// How Kannel 1.4.5 words a request without a receiver: its GET and its POST
/// mode say it differently.
const MISSING_RECEIVER_GET: &str = "Missing receiver number, rejected";
const MISSING_RECEIVER_POST: &str = "Missing receiver(s) number(s), rejected";

/// Kannel's sendsms once past latency and faults. `get` reads one field by
/// its GET name (`username`, `text`, `dlr-url`, …), wherever the request
/// carried it: the query (GET) or an `X-Kannel-*` header and the body (POST);
/// `missing_receiver` is that mode's answer to a request without `to`.
fn kannel_sendsms<'a>(
    sim: &SimHandle,
    missing_receiver: &'static str,
    get: impl Fn(&str) -> Option<&'a str>,
) -> Response {
    let i = &sim.inner;
    let reject = |status, body| {
        i.rejected_requests.fetch_add(1, Ordering::Relaxed);
        kannel_answer(status, body)
    };

    let username = get("username").unwrap_or("");
    let password = get("password").unwrap_or("");
    // Evaluate both so a wrong username costs the same as a wrong password.
    let user_ok = username == i.config.username;
    let pass_ok = i.config.password.matches(password);
    if !(user_ok && pass_ok) {
        tracing::info!("carrier-sim: sendsms with wrong credentials");
        return reject(StatusCode::FORBIDDEN, "Authorization failed for sendsms");
    }
    let to = get("to").unwrap_or("").trim();
    if to.is_empty() {
        return reject(StatusCode::BAD_REQUEST, missing_receiver);
    }
    // Several recipients may share one `to`, separated by spaces (Kannel).
    let mut recipients = Vec::new();
    for number in to.split_whitespace() {
        let digits = number.strip_prefix('+').unwrap_or(number);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return reject(
                StatusCode::BAD_REQUEST,
                "Number(s) has/have been denied by white- and/or black-lists.",
            );
        }
        recipients.push(digits);
    }

    let request = SubmitRequest {
        username: username.to_string(),
        from: get("from").unwrap_or("").to_string(),
        // Kannel reads the mask as an integer; anything unreadable asks for
        // no reports, and the missing callbacks show up in tests.
        dlr_mask: get("dlr-mask")
            .and_then(|m| m.trim().parse().ok())
            .unwrap_or(0),
        dlr_url: get("dlr-url").filter(|u| !u.is_empty()).map(str::to_string),
        text20: get("text").unwrap_or("").chars().take(20).collect(),
        submit_date: smsc_date(),
    };
    for digits in recipients {
        sim.submit(digits, &request);
    }
    kannel_answer(StatusCode::ACCEPTED, "0: Accepted for delivery")
}

/// Kannel's POST mode, as Kannel 1.4.5 takes it: the text is the body
/// (`text/plain`, its `charset` UTF-8 here), every other field an
/// `X-Kannel-*` header (names in any case, values stripped of blanks).
/// Kannel reads no query parameters on a POST: credentials in the query
/// are not credentials (403). Any other body type gets Kannel's
/// `400 Invalid content-type` (a form POST included), checked before the
/// credentials, as Kannel does.
async fn sendsms_post(
    State(sim): State<SimHandle>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let x_kannel = |name: &str| {
        headers
            .get(format!("x-kannel-{name}"))
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    sim.inner.kannel_posts.fetch_add(1, Ordering::Relaxed);
    let destinations = destinations(x_kannel("to").unwrap_or("").split_whitespace());
    sim.serve_send(&conn, destinations, async {
        // No type at all is read as text (Kannel 1.4.5 does); its XML and
        // binary (`application/octet-stream`) bodies are not simulated.
        let plain = headers.get(header::CONTENT_TYPE).is_none_or(|v| {
            v.to_str()
                .ok()
                .and_then(|v| v.split(';').next())
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
        });
        if !plain {
            sim.inner.rejected_requests.fetch_add(1, Ordering::Relaxed);
            return kannel_answer(StatusCode::BAD_REQUEST, "Invalid content-type");
        }
        let text = String::from_utf8_lossy(&body);
        kannel_sendsms(&sim, MISSING_RECEIVER_POST, |key| match key {
            "text" => Some(text.as_ref()),
            other => x_kannel(other),
        })
    })
    .await
}

/// A Jasmin-style `text/plain` answer: `Success "…"` or `Error "…"`.
fn jasmin_answer(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Jasmin's `/send`, checked in Jasmin's order: arguments (mandatory ones,
/// then patterns), content, then credentials. The query and a form body are
/// read together, as Twisted merges them. Simplifications: no routing,
/// billing or throughput quotas (so never 412 or a throttling 403), JSON
/// request bodies are not read, and bad `hex-content` is a 400 (Jasmin fails
/// it later with a 500).
async fn jasmin_send(
    State(sim): State<SimHandle>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let to = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .chain(url::form_urlencoded::parse(&body))
        .find(|(k, _)| k == "to")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let destinations = destinations(std::iter::once(to.as_str()));
    sim.serve_send(&conn, destinations, jasmin_submit(&sim, query, body))
        .await
}

/// Jasmin's `/send` once past latency and faults.
async fn jasmin_submit(sim: &SimHandle, query: Option<String>, body: Bytes) -> Response {
    let i = &sim.inner;
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    params.extend(url::form_urlencoded::parse(&body).into_owned());
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let reject = |status: StatusCode, reason: String| {
        i.rejected_requests.fetch_add(1, Ordering::Relaxed);
        jasmin_answer(status, format!("Error \"{reason}\""))
    };
    let invalid = |arg: &str, value: &str| {
        reject(
            StatusCode::BAD_REQUEST,
            format!("Argument {arg} has an invalid value: {value}."),
        )
    };

    let (Some(to), Some(username), Some(password)) = (get("to"), get("username"), get("password"))
    else {
        return reject(
            StatusCode::BAD_REQUEST,
            "Mandatory arguments not found, please refer to the HTTPAPI specifications."
                .to_string(),
        );
    };
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("to", to);
    }
    let coding = get("coding").unwrap_or("0");
    if !matches!(
        coding,
        "0" | "1" | "2" | "3" | "4" | "5" | "6" | "7" | "8" | "9" | "10" | "13" | "14"
    ) {
        return invalid("coding", coding);
    }
    let dlr_url = get("dlr-url").filter(|u| !u.is_empty());
    let dlr = match get("dlr") {
        _ if dlr_url.is_some() || get("dlr-level").is_some() => "yes",
        None => "no",
        Some(v) => v,
    };
    if dlr != "yes" && dlr != "no" {
        return invalid("dlr", dlr);
    }
    if let Some(url) = dlr_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return invalid("dlr-url", url);
        }
    }
    // Jasmin's defaults when a report is asked for: level 1, POST.
    let level = get("dlr-level").unwrap_or("1");
    let level: u8 = match level {
        "1" | "2" | "3" => level.parse().unwrap_or(1),
        other => return invalid("dlr-level", other),
    };
    let method = get("dlr-method").unwrap_or("POST").to_ascii_uppercase();
    if method != "GET" && method != "POST" {
        return invalid("dlr-method", &method);
    }
    let text20: String = match (get("content"), get("hex-content")) {
        (None, None) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "content or hex-content not present.".to_string(),
            )
        }
        (Some(_), Some(_)) => {
            return reject(
                StatusCode::BAD_REQUEST,
                "content and hex-content cannot be used both in same request.".to_string(),
            )
        }
        (Some(content), None) => content.chars().take(20).collect(),
        (None, Some(hex)) => match decode_hex(hex) {
            Some(bytes) if coding == "8" => {
                let units: Vec<u16> = bytes
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
                    .collect();
                String::from_utf16_lossy(&units).chars().take(20).collect()
            }
            Some(bytes) => String::from_utf8_lossy(&bytes).chars().take(20).collect(),
            None => return invalid("hex-content", "(not hex)"),
        },
    };
    // Evaluate both so a wrong username costs the same as a wrong password.
    let user_ok = username == i.config.username;
    let pass_ok = i.config.password.matches(password);
    if !(user_ok && pass_ok) {
        tracing::info!("carrier-sim: jasmin send with wrong credentials");
        return reject(
            StatusCode::FORBIDDEN,
            format!("Authentication failure for username:{username}"),
        );
    }
    let request = JasminSubmit {
        dlr: match (dlr, dlr_url) {
            ("yes", Some(url)) => Some(JasminDlr {
                url: url.to_string(),
                level,
                post: method == "POST",
            }),
            // `dlr=yes` without a `dlr-url` is reconsidered as `no`.
            _ => None,
        },
        text20,
        submit_date: smsc_date(),
    };
    let id = sim.submit_jasmin(digits, &request);
    jasmin_answer(StatusCode::OK, format!("Success \"{id}\""))
}

/// `"00FF"` → `[0, 255]`; `None` for odd lengths or non-hex digits.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).ok())
        .collect()
}

/// The reference JSON aggregator's `POST /v1/messages` (see
/// pedulicovid's `gateway::json`):
///
/// | case                                   | answer                                  |
/// |----------------------------------------|-----------------------------------------|
/// | accepted                               | 202 `{"message_id": "…", "status": "accepted"}` |
/// | no `Authorization: Bearer <password>`  | 401 `{"error": "unauthorized"}`         |
/// | not a JSON object, no `to` or `text`   | 400 `{"error": "…"}`                    |
/// | `to` not digits (an optional `+`)      | 422 `{"error": "invalid number"}`       |
async fn json_send(
    State(sim): State<SimHandle>,
    ConnectInfo(conn): ConnectInfo<ConnCtl>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let to = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("to")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let destinations = destinations(std::iter::once(to.as_str()));
    sim.serve_send(&conn, destinations, json_submit(&sim, headers, body))
        .await
}

/// The JSON aggregator's `POST /v1/messages` once past latency and faults.
async fn json_submit(sim: &SimHandle, headers: HeaderMap, body: Bytes) -> Response {
    let i = &sim.inner;
    let reject = |status: StatusCode, error: &str| {
        i.rejected_requests.fetch_add(1, Ordering::Relaxed);
        (status, Json(serde_json::json!({ "error": error }))).into_response()
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !i.config.password.matches(token) {
        tracing::info!("carrier-sim: json send with a wrong token");
        return reject(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return reject(StatusCode::BAD_REQUEST, "the body must be a JSON object");
    };
    let Some(to) = obj.get("to").and_then(serde_json::Value::as_str) else {
        return reject(StatusCode::BAD_REQUEST, "missing field: to");
    };
    if obj
        .get("text")
        .and_then(serde_json::Value::as_str)
        .is_none()
    {
        return reject(StatusCode::BAD_REQUEST, "missing field: text");
    }
    let digits = to.strip_prefix('+').unwrap_or(to);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return reject(StatusCode::UNPROCESSABLE_ENTITY, "invalid number");
    }
    let request = JsonSubmit {
        reference: obj
            .get("reference")
            .cloned()
            .unwrap_or(serde_json::Value::Null),
        callback_url: obj
            .get("callback_url")
            .and_then(serde_json::Value::as_str)
            .filter(|u| !u.is_empty())
            .map(str::to_string),
    };
    let message_id = sim.submit_json(digits, &request);
    (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "message_id": message_id, "status": "accepted" })),
    )
        .into_response()
}

async fn stats(State(sim): State<SimHandle>) -> Json<SimStats> {
    Json(sim.stats())
}

async fn attempts(State(sim): State<SimHandle>) -> Json<AttemptReport> {
    Json(sim.attempt_report())
}

/// A fault's answer in the dialect's words: Kannel `text/html`, Jasmin
/// `Error "…"`, JSON `{"error": "…"}`.
fn fault_answer(dialect: SimDialect, status: StatusCode, reason: &str) -> Response {
    match dialect {
        SimDialect::Kannel => (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            reason.to_string(),
        )
            .into_response(),
        SimDialect::Jasmin => jasmin_answer(status, format!("Error \"{reason}\"")),
        SimDialect::Json => (status, Json(serde_json::json!({ "error": reason }))).into_response(),
    }
}

/// Per-connection control, handed to handlers as `ConnectInfo`: lets a
/// handler reset the connection it is answering on.
#[derive(Clone)]
struct ConnCtl {
    kill: Arc<AtomicBool>,
}

impl ConnCtl {
    fn kill(&self) {
        self.kill.store(true, Ordering::SeqCst);
    }
}

/// The simulator's listener: plain TCP whose connections a handler can
/// reset ([`ConnCtl`]).
struct FaultListener {
    inner: tokio::net::TcpListener,
    /// Counts the connections.
    sim: SimHandle,
}

impl axum::serve::Listener for FaultListener {
    type Io = FaultIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        self.sim.inner.connections.fetch_add(1, Ordering::Relaxed);
        // Answers are small and latency-bound, like the gateway client's.
        let _ = io.set_nodelay(true);
        let io = FaultIo {
            inner: io,
            ctl: ConnCtl {
                kill: Arc::new(AtomicBool::new(false)),
            },
        };
        (io, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, FaultListener>>
    for ConnCtl
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, FaultListener>) -> Self {
        stream.io().ctl.clone()
    }
}

/// A TCP stream that fails every operation once its [`ConnCtl`] is killed,
/// having set `SO_LINGER` 0 so that closing it sends a RST.
struct FaultIo {
    inner: tokio::net::TcpStream,
    ctl: ConnCtl,
}

impl FaultIo {
    /// `Some(error)` once killed.
    fn killed(&self) -> Option<std::io::Error> {
        if !self.ctl.kill.load(Ordering::SeqCst) {
            return None;
        }
        let _ = self.inner.set_zero_linger();
        Some(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    }
}

impl tokio::io::AsyncRead for FaultIo {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(e) = self.killed() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for FaultIo {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(e) = self.killed() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if let Some(e) = self.killed() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(e) = self.killed() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(e) = self.killed() {
            return std::task::Poll::Ready(Err(e));
        }
        std::pin::Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rules used by the tests: the last digit picks the outcome.
    const RULES: &str = "1=delivered,2=undelivered,3=rejected,4=expired,5=invalid,6=no_receipt";

    #[test]
    fn number_keys_never_collide_between_numbers_and_other_text() {
        assert_eq!(number_key("6281234567890"), 6_281_234_567_890);
        let keys = [
            number_key("6281234567890"),
            number_key("06281234567890"),
            number_key("+6281234567890"),
            number_key("99999999999999999999"),
            number_key(""),
        ];
        let distinct: std::collections::HashSet<u64> = keys.iter().copied().collect();
        assert_eq!(distinct.len(), keys.len(), "{keys:?}");
        assert!(keys[1..].iter().all(|k| k >> 63 == 1));
    }

    fn test_config() -> SimulatorConfig {
        SimulatorConfig {
            listen: "127.0.0.1:0".to_string(),
            receipt_delay_ms: 10,
            receipt_jitter_ms: 5,
            rules: parse_rules(RULES).expect("test rules parse"),
            callback_retry_delay_ms: 50,
            seed: Some(7),
            ..SimulatorConfig::default()
        }
    }

    async fn start_sim(config: SimulatorConfig) -> SimHandle {
        let sim = Simulator::bind(config).await.expect("bind simulator");
        let handle = sim.handle();
        sim.spawn(std::future::pending());
        handle
    }

    async fn raw_get(url: &str) -> (StatusCode, String) {
        let resp = reqwest::get(url).await.expect("simulator answers");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    #[tokio::test]
    async fn graceful_shutdown_stops_the_server() {
        let sim = Simulator::bind(test_config()).await.expect("bind");
        let url = sim.sendsms_url();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = sim.spawn(async move {
            let _ = rx.await;
        });
        assert_eq!(raw_get(&format!("{url}?to=1")).await.0.as_u16(), 403);
        tx.send(()).expect("server waiting");
        task.await.expect("task joins").expect("clean shutdown");
        assert!(
            reqwest::get(url).await.is_err(),
            "port closed after shutdown"
        );
    }

    #[test]
    fn rules_parse_and_longest_suffix_wins() {
        let rules =
            parse_rules("0=undelivered, 9=expired,77=invalid,7=DELIVRD,5=nodlr,").expect("parses");
        assert_eq!(rules.len(), 5);
        assert_eq!(
            rule_for(&rules, "6281234567890"),
            Some(SimOutcome::Undelivered)
        );
        assert_eq!(rule_for(&rules, "6281234567877"), Some(SimOutcome::Invalid));
        assert_eq!(
            rule_for(&rules, "6281234567867"),
            Some(SimOutcome::Delivered)
        );
        assert_eq!(
            rule_for(&rules, "6281234567865"),
            Some(SimOutcome::NoReceipt)
        );
        assert_eq!(rule_for(&rules, "6281234567861"), None);
        assert_eq!(parse_rules("").expect("empty is fine"), vec![]);
        for bad in ["0", "x=delivered", "=delivered", "1=lost"] {
            assert!(parse_rules(bad).is_err(), "{bad}");
        }
        for o in SimOutcome::ALL {
            assert_eq!(o.as_str().parse::<SimOutcome>(), Ok(o));
            let json = serde_json::to_string(&o).expect("serialises");
            assert_eq!(json, format!("\"{o}\""));
        }
    }

    #[test]
    fn dialects_parse_and_serialise() {
        for d in SimDialect::ALL {
            assert_eq!(d.as_str().parse::<SimDialect>(), Ok(d));
            assert_eq!(d.as_str().to_uppercase().parse::<SimDialect>(), Ok(d));
            let json = serde_json::to_string(&d).expect("serialises");
            assert_eq!(json, format!("\"{d}\""));
        }
        assert!("smpp".parse::<SimDialect>().is_err());
        assert_eq!(SimulatorConfig::default().dialect, SimDialect::Kannel);
        let c: SimulatorConfig = serde_json::from_str(r#"{"dialect":"jasmin"}"#).expect("parses");
        assert_eq!(c.dialect, SimDialect::Jasmin);
        // Stats served by an older simulator still read.
        let old = r#"{"submits_total":1,"duplicates":0,"delivered":1,"undelivered":0,"rejected":0,"expired":0,"invalid":0,"no_receipt":0,"rejected_requests":0,"callbacks_sent":1,"callbacks_failed":0,"callback_attempts":1}"#;
        let s: SimStats = serde_json::from_str(old).expect("parses");
        assert_eq!(s.callbacks_unacknowledged, 0);
    }

    async fn start_dialect(dialect: SimDialect) -> SimHandle {
        start_sim(SimulatorConfig {
            dialect,
            ..test_config()
        })
        .await
    }

    #[tokio::test]
    async fn only_the_configured_dialect_is_served() {
        let sim = start_dialect(SimDialect::Jasmin).await;
        assert!(sim.send_url().ends_with("/send"));
        assert_eq!(sim.dialect(), SimDialect::Jasmin);
        let (status, _) = raw_get(&format!("{}?to=1", sim.sendsms_url())).await;
        assert_eq!(status.as_u16(), 404);
        let sim = start_dialect(SimDialect::Json).await;
        assert!(sim.send_url().ends_with("/v1/messages"));
        let (status, _) = raw_get(&sim.send_url()).await;
        assert_eq!(status.as_u16(), 405, "JSON sends are POSTs");
        let sim = start_sim(test_config()).await;
        assert_eq!(sim.send_url(), sim.sendsms_url());
    }

    #[tokio::test]
    async fn jasmin_answers_for_bad_requests() {
        let sim = start_dialect(SimDialect::Jasmin).await;
        let base = format!("{}?username=pedulicovid&password=secret", sim.send_url());
        let cases: &[(&str, u16, &str)] = &[
            (
                "&content=hi",
                400,
                "Error \"Mandatory arguments not found, please refer to the HTTPAPI specifications.\"",
            ),
            ("&to=62x&content=hi", 400, "Error \"Argument to has an invalid value: 62x.\""),
            ("&to=6281&coding=11&content=hi", 400, "Error \"Argument coding has an invalid value: 11.\""),
            ("&to=6281&dlr-level=4&content=hi", 400, "Error \"Argument dlr-level has an invalid value: 4.\""),
            ("&to=6281", 400, "Error \"content or hex-content not present.\""),
            (
                "&to=6281&content=a&hex-content=00",
                400,
                "Error \"content and hex-content cannot be used both in same request.\"",
            ),
            ("&to=6281&coding=8&hex-content=0", 400, "Error \"Argument hex-content has an invalid value: (not hex).\""),
        ];
        for &(extra, code, body) in cases {
            let (status, got) = raw_get(&format!("{base}{extra}")).await;
            assert_eq!((status.as_u16(), got.as_str()), (code, body), "{extra}");
        }
        let (status, got) = raw_get(&format!(
            "{}?username=x&password=secret&to=6281&content=hi",
            sim.send_url()
        ))
        .await;
        assert_eq!(
            (status.as_u16(), got.as_str()),
            (403, "Error \"Authentication failure for username:x\"")
        );
        // A form POST with the fields in the body, no report asked for.
        let resp = reqwest::Client::new()
            .post(sim.send_url())
            .form(&[
                ("username", "pedulicovid"),
                ("password", "secret"),
                ("to", "+6281234567001"),
                ("coding", "8"),
                ("hex-content", "00480069"),
            ])
            .send()
            .await
            .expect("simulator answers");
        assert_eq!(resp.status().as_u16(), 200);
        let body = resp.text().await.expect("body");
        assert!(body.starts_with("Success \"") && body.len() == 46, "{body}");
        let stats = sim.stats();
        assert_eq!((stats.rejected_requests, stats.submits_total), (8, 1));
        assert_eq!(sim.submits_for("6281234567001"), 1);
        assert_eq!(stats.callback_attempts, 0);
    }

    #[tokio::test]
    async fn json_answers_for_bad_requests() {
        let sim = start_dialect(SimDialect::Json).await;
        let client = reqwest::Client::new();
        let post = |token: &'static str, body: &'static str| {
            client
                .post(sim.send_url())
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let cases: &[(&str, &str, u16, &str)] = &[
            ("wrong", r#"{"to":"6281","text":"hi"}"#, 401, "unauthorized"),
            ("secret", "not json", 400, "the body must be a JSON object"),
            ("secret", r#"["to"]"#, 400, "the body must be a JSON object"),
            ("secret", r#"{"text":"hi"}"#, 400, "missing field: to"),
            ("secret", r#"{"to":"6281"}"#, 400, "missing field: text"),
            (
                "secret",
                r#"{"to":"62-81","text":"hi"}"#,
                422,
                "invalid number",
            ),
        ];
        for &(token, body, code, error) in cases {
            let resp = post(token, body).await.expect("simulator answers");
            assert_eq!(resp.status().as_u16(), code, "{body}");
            let v: serde_json::Value = resp.json().await.expect("JSON answer");
            assert_eq!(v, serde_json::json!({ "error": error }), "{body}");
        }
        let resp = post(
            "secret",
            r#"{"to":"+6281234567001","text":"hi","reference":7}"#,
        )
        .await
        .expect("simulator answers");
        assert_eq!(resp.status().as_u16(), 202);
        let v: serde_json::Value = resp.json().await.expect("JSON answer");
        assert_eq!(v["status"], "accepted");
        assert!(
            v["message_id"].as_str().is_some_and(|id| id.len() == 36),
            "{v}"
        );
        let stats = sim.stats();
        assert_eq!((stats.rejected_requests, stats.submits_total), (6, 1));
        assert_eq!(stats.callback_attempts, 0, "no callback_url, no receipt");
    }

    #[test]
    fn settings_deserialise_with_defaults() {
        let c: SimulatorConfig = serde_json::from_str(
            r#"{"listen":"127.0.0.1:0","rules":[{"suffix":"7","outcome":"nack"}],"mix":{"delivered":1}}"#,
        )
        .expect("parses");
        assert_eq!(c.rules[0].outcome, SimOutcome::Invalid);
        assert_eq!(c.mix.delivered, 1.0);
        assert_eq!(c.mix.undelivered, 0.04, "unset weights keep their default");
        assert_eq!(c.callback_retries, 3);
        assert_eq!(c.password.expose(), "secret");
    }

    #[test]
    fn mix_follows_weights() {
        let mut rng = StdRng::seed_from_u64(1);
        let only = OutcomeMix {
            delivered: 0.0,
            undelivered: 0.0,
            rejected: 0.0,
            expired: 2.0,
            invalid: f64::NAN,
        };
        assert!((0..100).all(|_| only.pick(&mut rng) == SimOutcome::Expired));
        let none = OutcomeMix {
            delivered: 0.0,
            undelivered: -1.0,
            rejected: 0.0,
            expired: 0.0,
            invalid: 0.0,
        };
        assert_eq!(none.pick(&mut rng), SimOutcome::Delivered);
        let mut counts = HashMap::new();
        for _ in 0..10_000 {
            *counts
                .entry(OutcomeMix::default().pick(&mut rng))
                .or_insert(0u32) += 1;
        }
        let delivered = counts[&SimOutcome::Delivered];
        assert!((8_800..9_200).contains(&delivered), "{counts:?}");
        assert!(counts.len() == 5, "{counts:?}");
    }

    #[test]
    fn placeholders_are_replaced_like_kannel() {
        let report = Report {
            kind: dlr::SUCCESS,
            outcome: SimOutcome::Delivered,
            fid: "945B058829".to_string(),
            to: "6281234567001".to_string(),
            from: "PEDULICOVID".to_string(),
            username: "pedulicovid".to_string(),
            text20: "Jadwal vaksinasi dos".to_string(),
            submit_date: "2611252006".to_string(),
        };
        let url = expand_dlr_url(
            "http://h/dlr?id=msg-0001&status=%d&to=%p&from=%P&smsc=%i&fid=%F&ts=%T&answer=%A&kid=%I&x=%Z&y=%",
            &report,
        );
        assert!(url.starts_with("http://h/dlr?id=msg-0001&status=1&to=6281234567001&from=PEDULICOVID&smsc=sim&fid=945B058829&ts="), "{url}");
        assert!(url.contains("&answer=id%3A945B058829+sub%3A001+dlvrd%3A001+submit+date%3A2611252006+done+date%3A"), "{url}");
        assert!(
            url.contains("+stat%3ADELIVRD+err%3A000+text%3AJadwal+vaksinasi+dos&kid="),
            "{url}"
        );
        assert!(url.ends_with("&x=%Z&y=%"), "{url}");
        let nack = Report {
            kind: dlr::SMSC_FAIL,
            fid: String::new(),
            ..report
        };
        assert_eq!(
            expand_dlr_url("status=%d&fid=%F&answer=%A", &nack),
            "status=16&fid=&answer=NACK%2F0x0000000b%2FInvalid+Destination+Address"
        );
    }

    #[test]
    fn fault_shares_pick_in_order_and_settings_parse() {
        let f = FaultConfig {
            server_error: 0.1,
            throttle: 0.05,
            timeout: 0.05,
            reset: 0.05,
            garbage: f64::NAN,
            slow: 0.05,
            ..FaultConfig::default()
        };
        assert!(f.any_share());
        assert!(!FaultConfig::default().any_share());
        assert_eq!(f.pick(0.0), Some(Fault::ServerError));
        assert_eq!(f.pick(0.12), Some(Fault::Throttle));
        assert_eq!(f.pick(0.17), Some(Fault::Timeout));
        assert_eq!(f.pick(0.22), Some(Fault::Reset));
        assert_eq!(f.pick(0.27), Some(Fault::Slow), "NaN garbage never happens");
        assert_eq!(f.pick(0.31), None);
        let c: SimulatorConfig =
            serde_json::from_str(r#"{"faults":{"server_error":0.1}}"#).expect("parses");
        assert_eq!(c.faults.server_error, 0.1);
        assert_eq!(c.faults.retry_after_secs, 1);
    }
}

//! The built-in carrier simulator (`pedulicovid carrier-sim`).
//!
//! It answers `GET /cgi-bin/sendsms` exactly like Kannel 1.4.5 and calls the
//! request's `dlr-url` back the way Kannel's smsbox does (placeholders, the
//! `%d` bitmask, retries of any answer but 200/202, callbacks in no particular
//! order). The engine therefore drives it with the ordinary
//! [`KannelGateway`](crate::gateway::kannel::KannelGateway): the simulator is
//! one more carrier, never a special case. The outcome of each message comes
//! from a suffix rule on the destination (like the SMPP simulator's
//! `--rules 0=UNDELIV,...`) or else from a weighted random mix.
//!
//! Counters ([`SimStats`], also at `GET /sim/stats`) let black-box tests check
//! exactly-once sending: `duplicates` counts submits to a number that had
//! already been submitted.
//!
//! Logs carry masked numbers only and never the text or a URL (the `dlr-url`
//! holds our callback token).

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context;
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::domain::mask_phone;
use crate::gateway::http;
use crate::gateway::kannel::dlr;
use crate::secret::Secret;

/// Settings of `pedulicovid carrier-sim` (and of the simulator the demo and
/// the tests start in-process). Every field has a default that works.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default)]
pub struct SimulatorConfig {
    /// Address to listen on; port 0 picks a free one (tests).
    pub listen: String,
    /// `sendsms-user` username the requests must carry.
    pub username: String,
    /// `sendsms-user` password, compared in constant time.
    pub password: Secret,
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
    /// Extra attempts for a callback that is not answered 200/202, like
    /// Kannel's `http-request-retry`.
    pub callback_retries: u32,
    /// Pause between callback attempts, like Kannel's `http-queue-delay`.
    pub callback_retry_delay_ms: u64,
    /// Most callbacks in flight at once (Kannel: `max-pending-requests`).
    pub callback_concurrency: usize,
    /// Seed for the outcome mix and the jitter; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            listen: "127.0.0.1:13013".to_string(),
            username: "pedulicovid".to_string(),
            password: Secret::new("secret"),
            answer_latency_ms: 0,
            receipt_delay_ms: 50,
            receipt_jitter_ms: 50,
            mix: OutcomeMix::default(),
            rules: Vec::new(),
            callback_retries: 3,
            callback_retry_delay_ms: 2000,
            callback_concurrency: 256,
            seed: None,
        }
    }
}

/// What happens to one simulated message after `0: Accepted for delivery`.
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
    /// Recipients accepted (`0: Accepted for delivery`), one per number in `to`.
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
    /// sendsms requests refused (403 / 400), submitting nothing.
    pub rejected_requests: u64,
    /// Callbacks answered 200/202 (each counted once, whatever the attempts).
    pub callbacks_sent: u64,
    /// Callbacks dropped after `1 + callback_retries` failed attempts.
    pub callbacks_failed: u64,
    /// Every HTTP attempt at a callback, retries included.
    pub callback_attempts: u64,
}

/// Number of mutex shards for the per-number submit counts: enough that
/// concurrent handlers rarely wait on each other.
const SHARDS: usize = 16;

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
    /// Submits per destination, sharded by hash of the digits.
    per_number: Vec<Mutex<HashMap<String, u64>>>,
    rng: Mutex<StdRng>,
    /// Next SMSC message id; unique for the simulator's life.
    next_fid: AtomicU64,
    /// Bounds callbacks in flight (one permit per HTTP attempt).
    callback_slots: Semaphore,
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
        }
    }

    /// How many times `digits` (as sent in `to`, e.g. `6281234567890`) was
    /// submitted: exactly-once tests expect 1 for every recipient.
    pub fn submits_for(&self, digits: &str) -> u64 {
        let shard = lock(self.shard(digits));
        shard.get(digits).copied().unwrap_or(0)
    }

    /// Where the simulator listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The sendsms URL to configure a `KannelGateway` with.
    pub fn sendsms_url(&self) -> String {
        let addr = self.inner.local_addr;
        // A wildcard listener is reached through loopback.
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
            ip if ip.is_unspecified() => "[::1]".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            std::net::IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}/cgi-bin/sendsms", addr.port())
    }

    fn shard(&self, digits: &str) -> &Mutex<HashMap<String, u64>> {
        let mut h = DefaultHasher::new();
        digits.hash(&mut h);
        // The modulo keeps the value below SHARDS, so the cast cannot truncate.
        &self.inner.per_number[(h.finish() % SHARDS as u64) as usize]
    }

    /// Records one accepted recipient and schedules its callbacks.
    fn submit(&self, digits: &str, req: &SubmitRequest) {
        let i = &self.inner;
        let previous = {
            let mut shard = lock(self.shard(digits));
            let n = shard.entry(digits.to_string()).or_insert(0);
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
        tracing::debug!(to = %mask_phone(digits), %outcome, "carrier-sim: submit accepted");
        // The SMSC message id, shared by the 8, 4 and final reports.
        let smsc_id = format!("{:010X}", i.next_fid.fetch_add(1, Ordering::Relaxed));

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
            let handle = self.clone();
            let template = dlr_url.to_string();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let url = expand_dlr_url(&template, &report);
                handle.deliver(url).await;
            });
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

    /// Calls one expanded `dlr-url` like smsbox: success is 200 or 202 only;
    /// anything else (even 204), a refused connection or a timeout is retried
    /// `callback_retries` times, then dropped.
    async fn deliver(&self, url: String) {
        let i = &self.inner;
        let attempts = 1 + i.config.callback_retries;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(i.config.callback_retry_delay_ms)).await;
            }
            let ok = {
                // The semaphore is never closed, so acquiring only waits.
                let Ok(_permit) = i.callback_slots.acquire().await else {
                    return;
                };
                i.callback_attempts.fetch_add(1, Ordering::Relaxed);
                match i.client.get(&url).send().await {
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        // Drain the body so the connection goes back to the pool.
                        let _ = resp.bytes().await;
                        status == 200 || status == 202
                    }
                    Err(_) => false,
                }
            };
            if ok {
                i.callbacks_sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        i.callbacks_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(attempts, "carrier-sim: callback dropped after retries");
    }
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
            per_number: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            rng: Mutex::new(rng),
            next_fid: AtomicU64::new(first_fid),
            callback_slots: Semaphore::new(permits),
            client: http::client(Duration::from_secs(10), permits),
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
        let app = router(self.handle);
        axum::serve(self.listener, app)
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

fn router(handle: SimHandle) -> Router {
    Router::new()
        .route("/cgi-bin/sendsms", get(sendsms).post(sendsms_post))
        .route("/sim/stats", get(stats))
        .with_state(handle)
}

/// A Kannel-style `text/html` answer.
fn kannel_answer(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

/// Kannel 1.4.5's answers, checked in its order: credentials, receiver,
/// receiver syntax.
async fn sendsms(State(sim): State<SimHandle>, RawQuery(query): RawQuery) -> Response {
    let i = &sim.inner;
    if i.config.answer_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(i.config.answer_latency_ms)).await;
    }
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
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
        return reject(StatusCode::BAD_REQUEST, "Missing receiver number, rejected");
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

/// Kannel answers a POST carrying query parameters with 403; the simulator
/// does not implement Kannel's POST body forms at all, so every POST gets it.
async fn sendsms_post(State(sim): State<SimHandle>) -> Response {
    sim.inner.rejected_requests.fetch_add(1, Ordering::Relaxed);
    kannel_answer(StatusCode::FORBIDDEN, "Authorization failed for sendsms")
}

async fn stats(State(sim): State<SimHandle>) -> Json<SimStats> {
    Json(sim.stats())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::routing::get;
    use tokio::sync::mpsc;

    use super::*;
    use crate::domain::{Msisdn, SmsText};
    use crate::gateway::kannel::{interpret_answer, parse_receipt, KannelConfig, KannelGateway};
    use crate::gateway::{Gateway, OutboundSms, ParsedReceipt, ReceiptOutcome, SendError};

    type Pairs = Vec<(String, String)>;

    /// Rules used by the end-to-end tests: the last digit picks the outcome.
    const RULES: &str = "1=delivered,2=undelivered,3=rejected,4=expired,5=invalid,6=no_receipt";

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

    /// A receipt endpoint on port 0 answering `status`; every callback's
    /// query pairs arrive on the channel.
    async fn start_receiver(status: StatusCode) -> (String, mpsc::UnboundedReceiver<Pairs>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().route(
            "/callbacks/sim/TOKEN",
            get(move |RawQuery(q): RawQuery| {
                let tx = tx.clone();
                async move {
                    let pairs: Pairs =
                        url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                            .into_owned()
                            .collect();
                    // The test may have stopped listening; that is fine.
                    let _ = tx.send(pairs);
                    status
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
        (format!("http://{addr}/callbacks/sim/TOKEN"), rx)
    }

    fn gateway(sim: &SimHandle, callback_url: &str, password: &str, dlr_mask: u8) -> KannelGateway {
        let config = KannelConfig {
            sendsms_url: sim.sendsms_url(),
            password: Secret::new(password),
            dlr_mask,
            ..KannelConfig::default()
        };
        KannelGateway::new(
            "sim",
            config,
            callback_url.to_string(),
            http::client(Duration::from_secs(5), 8),
        )
    }

    fn sms(id: i64, number: &str) -> OutboundSms {
        OutboundSms {
            message_id: id,
            to: Msisdn::parse(number).expect("valid test number"),
            text: SmsText::new("PEDULICOVID: jadwal vaksinasi Anda sudah tersedia"),
        }
    }

    async fn next(rx: &mut mpsc::UnboundedReceiver<Pairs>) -> Pairs {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("a callback within 5 s")
            .expect("receiver alive")
    }

    async fn nothing_more(rx: &mut mpsc::UnboundedReceiver<Pairs>) {
        let extra = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await;
        assert!(extra.is_err(), "unexpected callback: {extra:?}");
    }

    /// Sends one message through `KannelGateway` to a number whose last
    /// digit selects the outcome, and returns the receipts it produced.
    async fn send_and_collect(
        last_digit: char,
        mask: u8,
        expected: usize,
    ) -> (SimHandle, Vec<ParsedReceipt>, Vec<Pairs>) {
        let sim = start_sim(test_config()).await;
        let (callback, mut rx) = start_receiver(StatusCode::OK).await;
        let gw = gateway(&sim, &callback, "secret", mask);
        let number = format!("+628123456700{last_digit}");
        let got = gw.send(&sms(41, &number)).await;
        assert_eq!(
            got,
            Ok(crate::gateway::Accepted {
                gateway_message_id: None
            })
        );
        let mut raw = Vec::new();
        for _ in 0..expected {
            raw.push(next(&mut rx).await);
        }
        nothing_more(&mut rx).await;
        let parsed = raw
            .iter()
            .map(|p| parse_receipt(p).expect("simulator callbacks parse"))
            .collect();
        (sim, parsed, raw)
    }

    async fn check_final(last_digit: char, outcome: ReceiptOutcome, raw: &str, err: &str) {
        let (sim, receipts, pairs) = send_and_collect(last_digit, 19, 1).await;
        let r = &receipts[0];
        assert_eq!(r.message_id, Some(41));
        assert_eq!(r.outcome, outcome);
        assert_eq!(r.raw_status, raw);
        assert_eq!(r.error_code.as_deref(), Some(err));
        if outcome == ReceiptOutcome::InvalidNumber {
            assert_eq!(r.gateway_message_id, None, "no SMSC id for a NACK");
        } else {
            let fid = r.gateway_message_id.as_deref().expect("an SMSC id");
            assert!(
                fid.len() >= 10 && fid.bytes().all(|b| b.is_ascii_hexdigit()),
                "{fid}"
            );
        }
        // No phone number in the callback: our dlr-url has no %p.
        assert!(
            pairs[0].iter().all(|(_, v)| !v.contains("81234567")),
            "{pairs:?}"
        );
        let stats = sim.stats();
        assert_eq!(stats.submits_total, 1);
        assert_eq!(stats.duplicates, 0);
        assert_eq!(stats.callbacks_sent, 1);
        assert_eq!(sim.submits_for(&format!("628123456700{last_digit}")), 1);
    }

    #[tokio::test]
    async fn delivered_end_to_end() {
        check_final('1', ReceiptOutcome::Delivered, "1", "000").await;
    }

    #[tokio::test]
    async fn undelivered_end_to_end() {
        check_final('2', ReceiptOutcome::Undelivered, "2", "001").await;
    }

    #[tokio::test]
    async fn rejected_end_to_end() {
        check_final('3', ReceiptOutcome::Rejected, "2", "011").await;
    }

    #[tokio::test]
    async fn expired_end_to_end() {
        check_final('4', ReceiptOutcome::Expired, "34", "027").await;
    }

    #[tokio::test]
    async fn invalid_end_to_end() {
        check_final('5', ReceiptOutcome::InvalidNumber, "16", "0x0000000b").await;
    }

    #[tokio::test]
    async fn no_receipt_end_to_end() {
        let (sim, receipts, _) = send_and_collect('6', 19, 0).await;
        assert!(receipts.is_empty());
        assert_eq!(sim.stats().no_receipt, 1);
    }

    #[tokio::test]
    async fn mask_31_adds_ack_and_enroute() {
        let (_sim, receipts, _) = send_and_collect('1', 31, 3).await;
        let kinds: BTreeSet<&str> = receipts.iter().map(|r| r.raw_status.as_str()).collect();
        assert_eq!(kinds, BTreeSet::from(["1", "4", "8"]));
        let fids: BTreeSet<_> = receipts
            .iter()
            .map(|r| r.gateway_message_id.clone())
            .collect();
        assert_eq!(fids.len(), 1, "one SMSC id for all three: {fids:?}");
        for r in &receipts {
            let want = if r.raw_status == "1" {
                ReceiptOutcome::Delivered
            } else {
                ReceiptOutcome::Accepted
            };
            assert_eq!(r.outcome, want);
        }
        // NODLR still ACKs; NACK gets only its 16.
        let (_sim, receipts, _) = send_and_collect('6', 31, 1).await;
        assert_eq!(receipts[0].raw_status, "8");
        let (_sim, receipts, _) = send_and_collect('5', 31, 1).await;
        assert_eq!(receipts[0].raw_status, "16");
    }

    #[tokio::test]
    async fn wrong_password_is_permanent() {
        let sim = start_sim(test_config()).await;
        let gw = gateway(&sim, "http://127.0.0.1:9/cb", "wrong", 19);
        let got = gw.send(&sms(1, "+6281234567001")).await;
        match got {
            Err(SendError::Permanent { invalid_number, .. }) => assert!(!invalid_number),
            other => panic!("expected permanent, got {other:?}"),
        }
        let stats = sim.stats();
        assert_eq!((stats.rejected_requests, stats.submits_total), (1, 0));
    }

    async fn raw_get(url: &str) -> (StatusCode, String) {
        let resp = reqwest::get(url).await.expect("simulator answers");
        let status = resp.status();
        (status, resp.text().await.expect("body"))
    }

    #[tokio::test]
    async fn kannel_answers_for_bad_requests() {
        let sim = start_sim(test_config()).await;
        let base = format!("{}?username=pedulicovid&password=secret", sim.sendsms_url());

        let (status, body) = raw_get(&format!("{base}&to=abc&text=hi")).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (
                400,
                "Number(s) has/have been denied by white- and/or black-lists."
            )
        );
        match interpret_answer(status, None, &body) {
            Err(SendError::Permanent { invalid_number, .. }) => assert!(invalid_number),
            other => panic!("expected permanent invalid number, got {other:?}"),
        }

        let (status, body) = raw_get(&format!("{base}&text=hi")).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (400, "Missing receiver number, rejected")
        );

        let (status, body) = raw_get(&format!(
            "{}?username=x&password=secret&to=1",
            sim.sendsms_url()
        ))
        .await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (403, "Authorization failed for sendsms")
        );

        let resp = reqwest::Client::new()
            .post(format!("{base}&to=6281234567001"))
            .send()
            .await
            .expect("simulator answers");
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(
            resp.text().await.expect("body"),
            "Authorization failed for sendsms"
        );

        let (status, body) =
            raw_get(&format!("{base}&to=%2B6281234567001+6281234567002&text=hi")).await;
        assert_eq!(
            (status.as_u16(), body.as_str()),
            (202, "0: Accepted for delivery")
        );
        let stats = sim.stats();
        assert_eq!((stats.rejected_requests, stats.submits_total), (4, 2));
    }

    #[tokio::test]
    async fn failing_receiver_gets_one_plus_retries_identical_callbacks() {
        let sim = start_sim(test_config()).await;
        let (callback, mut rx) = start_receiver(StatusCode::INTERNAL_SERVER_ERROR).await;
        let gw = gateway(&sim, &callback, "secret", 19);
        gw.send(&sms(9, "+6281234567001")).await.expect("accepted");
        let first = next(&mut rx).await;
        for _ in 0..3 {
            assert_eq!(next(&mut rx).await, first, "retries are identical");
        }
        nothing_more(&mut rx).await;
        let stats = sim.stats();
        assert_eq!(
            (
                stats.callbacks_failed,
                stats.callbacks_sent,
                stats.callback_attempts
            ),
            (1, 0, 4)
        );
    }

    #[tokio::test]
    async fn receiver_answering_204_is_retried_like_kannel() {
        let mut config = test_config();
        config.callback_retries = 1;
        let sim = start_sim(config).await;
        let (callback, mut rx) = start_receiver(StatusCode::NO_CONTENT).await;
        let gw = gateway(&sim, &callback, "secret", 19);
        gw.send(&sms(9, "+6281234567001")).await.expect("accepted");
        next(&mut rx).await;
        next(&mut rx).await;
        nothing_more(&mut rx).await;
        assert_eq!(sim.stats().callbacks_failed, 1);
    }

    #[tokio::test]
    async fn duplicates_are_counted_and_stats_served() {
        let sim = start_sim(test_config()).await;
        let gw = gateway(&sim, "http://127.0.0.1:9/cb", "secret", 0);
        gw.send(&sms(1, "+6281234567001")).await.expect("accepted");
        gw.send(&sms(2, "+6281234567001")).await.expect("accepted");
        gw.send(&sms(3, "+6281234567011")).await.expect("accepted");
        assert_eq!(sim.submits_for("6281234567001"), 2);
        assert_eq!(sim.submits_for("6281234567011"), 1);
        assert_eq!(sim.submits_for("6281234567099"), 0);
        let url = sim.sendsms_url().replace("/cgi-bin/sendsms", "/sim/stats");
        let served: SimStats = reqwest::get(url)
            .await
            .expect("stats answer")
            .json()
            .await
            .expect("stats JSON");
        assert_eq!(served, sim.stats());
        assert_eq!(
            (served.submits_total, served.duplicates, served.delivered),
            (3, 1, 3)
        );
        assert_eq!(served.callback_attempts, 0, "mask 0 asks for no reports");
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
}

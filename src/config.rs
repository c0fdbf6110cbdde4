//! Typed settings: defaults that work with no configuration at all, an
//! optional TOML file, and `PEDULICOVID__SECTION__KEY` environment overrides.
//!
//! Precedence, lowest first: built-in defaults → `pedulicovid.toml` (or
//! `--config FILE`) → environment → command-line flags (`--database-url`).
//! Secrets are [`Secret`]s and never appear in `Debug` output or logs.
//!
//! There is no default gateway: `run`, `serve` and `worker` send only
//! through the gateways the operator configured. The built-in simulator is a
//! gateway like the others, asked for by name (`dialect = "simulator"`);
//! nothing ever rewrites a configured gateway's URL or credentials.
//!
//! Environment values stay strings until a setting's type asks for a number,
//! a boolean or a list (see [`EnvDeserializer`]), so a password `123456` or
//! a short code `007` reaches its field as written.

use std::path::Path;

use anyhow::{bail, Context};
use serde::de::{self, IntoDeserializer};
use serde::Deserialize;

use crate::gateway::http::GatewayTls;
use crate::gateway::jasmin::JasminConfig;
use crate::gateway::json::JsonConfig;
use crate::gateway::kannel::KannelConfig;
use crate::secret::Secret;
use carrier_sim::SimulatorConfig;

/// The dialects and a gateway's settings for one of them live with the
/// gateways (`gateway::dialect`); named here too, where settings are read.
pub use crate::gateway::{Dialect, DialectSettings, GatewayDialect};

/// Environment variables starting with this prefix override settings;
/// `__` separates the path: `PEDULICOVID__WORKER__MAX_ATTEMPTS=3`,
/// `PEDULICOVID__GATEWAYS__0__RATE_PER_SEC=50`.
pub const ENV_PREFIX: &str = "PEDULICOVID__";

/// Everything the program can be told.
#[derive(Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://FILE` (default `sqlite://pedulicovid.db`) or `postgres://…`.
    pub database_url: String,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub sms: SmsSettings,
    /// Carrier gateways in routing order; the first is the default route.
    /// None by default: `run` and `worker` refuse to start without one.
    pub gateways: Vec<GatewaySettings>,
    /// The built-in carrier simulator's knobs (outcome mix, rules, delays,
    /// listen address, the dialect it speaks). It runs only for `demo`,
    /// `carrier-sim`, the benches, and a gateway with `dialect = "simulator"`.
    pub simulator: SimulatorConfig,
    /// The WhatsApp chatbot's API.
    pub chatbot: ChatbotSettings,
    /// How the process logs (`[log]`).
    pub log: LogSettings,
    /// `pedulicovid worker`'s own `/metrics` listener (`[metrics]`).
    pub metrics: MetricsSettings,
    /// Limits on callers (`[limits]`).
    pub limits: LimitSettings,
    /// How long records are kept (`[retention]`).
    pub retention: RetentionSettings,
    /// The async runtime of `run`, `serve` and `worker` (`[runtime]`).
    pub runtime: RuntimeSettings,
}

/// Most runtime threads a process may be given: a typo (`10000`) must
/// not start ten thousand threads.
pub const MAX_RUNTIME_THREADS: usize = 256;

/// `[runtime]`: the threads that run a long-running process's tasks (HTTP
/// requests and receipt batches, dispatch loops, housekeeping) in `run`,
/// `serve` and `worker`. Other commands run on one thread per core.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Default 1: every task of the process on one thread. A notice's work
    /// is mostly waiting on the network and the database, and a second
    /// thread mostly paid for handing tasks between threads (wake-ups,
    /// stealing): on one, `serve` and `worker` spend about 8 % less CPU a
    /// notice (BENCHMARKS.md, "sixth pass"), and one thread carries about
    /// 10,000 sends or receipts a second, far above any carrier's rate.
    /// Raise it for a process that must use more than one core (or run
    /// more workers); `0` is one thread per core. At most 256.
    pub threads: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings { threads: 1 }
    }
}

impl RuntimeSettings {
    /// The worker threads to start: `threads`, or one per core for 0.
    pub fn worker_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

/// `[retention]`: how long each kind of record is kept before housekeeping
/// purges it, in days; `0` keeps that kind for ever. Idempotency keys keep
/// their own setting, `worker.idempotency_retention_secs`. README,
/// "Retention", says what each purge removes and what stays.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Raw receipt payloads as the carrier sent them (they may hold the
    /// number): emptied; the receipt's outcome, effect and time stay.
    /// Default 30.
    pub receipt_payloads_days: u32,
    /// Message bodies and numbers of finished (completed or cancelled)
    /// campaigns, counted from when the campaign finished, and the numbers
    /// of extra notices (`resends`): removed; statuses, times and counts
    /// stay. Default 90.
    pub message_data_days: u32,
    /// Send attempts (the support timeline's attempt lines; a receipt for
    /// a message whose attempts are gone is no longer accepted through the
    /// gateway-wide token). Default 180.
    pub attempts_days: u32,
    /// The audit trail. Default 730 (two years).
    pub audit_days: u32,
    /// Rows one batch purges per kind; housekeeping runs a batch per kind
    /// every `interval_secs`, and again on its next round (500 ms) while
    /// batches come back full. Default 1000.
    pub batch_rows: u32,
    /// Seconds between purge rounds once nothing is due. Default 60.
    pub interval_secs: u64,
}

impl RetentionSettings {
    /// The store's policy, with the idempotency keys' own period.
    pub fn policy(&self, worker: &WorkerSettings) -> crate::store::RetentionPolicy {
        crate::store::RetentionPolicy::from_days(
            self.receipt_payloads_days,
            self.message_data_days,
            self.attempts_days,
            self.audit_days,
            worker.idempotency_retention_secs,
            self.batch_rows,
        )
    }
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            receipt_payloads_days: 30,
            message_data_days: 90,
            attempts_days: 180,
            audit_days: 730,
            batch_rows: 1000,
            interval_secs: 60,
        }
    }
}

/// `[limits]`: what one caller may ask for. The defaults suit a province;
/// after an overnight blast to a national campaign the chatbot's morning
/// peak is far above 20 requests a second (README, "Limits").
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Requests per second one chatbot token may make (its burst is the
    /// same number). Default 20.
    pub chatbot_rate_per_sec: u32,
    /// Extra notices (support resends, chatbot re-registrations) one phone
    /// number may get in any 24 hours. Default 3: more looks like spam to a
    /// carrier, which then blocks the sender.
    pub resends_per_number_per_day: u32,
    /// Rows a support search returns at most. Default 50.
    pub search_rows: u32,
}

impl Default for LimitSettings {
    fn default() -> Self {
        LimitSettings {
            chatbot_rate_per_sec: crate::http::api::CHATBOT_RATE_PER_SEC,
            resends_per_number_per_day: crate::domain::notice::RESENDS_PER_NUMBER_PER_DAY as u32,
            search_rows: crate::store::SEARCH_LIMIT as u32,
        }
    }
}

impl LimitSettings {
    /// Every limit at least 1 (0 would refuse every request of its kind).
    pub fn check(&self) -> anyhow::Result<()> {
        for (name, v) in [
            ("chatbot_rate_per_sec", self.chatbot_rate_per_sec),
            (
                "resends_per_number_per_day",
                self.resends_per_number_per_day,
            ),
            ("search_rows", self.search_rows),
        ] {
            if v == 0 {
                bail!(
                    "limits.{name} must be at least 1 (PEDULICOVID__LIMITS__{})",
                    name.to_uppercase()
                );
            }
        }
        Ok(())
    }

    /// The store's share of them.
    pub fn store(&self) -> crate::store::Limits {
        crate::store::Limits {
            resends_per_number_per_day: i64::from(self.resends_per_number_per_day),
            search_rows: i64::from(self.search_rows),
        }
    }
}

/// `[metrics]`: where a process without the HTTP server (`pedulicovid
/// worker`) serves `/metrics` and `/healthz`. `run` and `serve` serve them
/// on their HTTP listener.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `host:port`; default `127.0.0.1:9464` (loopback: a scraper on the
    /// same host, or a proxy). Several workers on one host need a port
    /// each (`PEDULICOVID__METRICS__LISTEN=127.0.0.1:9465`); empty turns
    /// the listener off.
    pub listen: String,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// How the process logs (`[log]`); `--log-format` overrides `format`.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// `text` (default): one human-readable line an event. `json`: one JSON
/// object a line (timestamp, level, target, fields, the current span and
/// its parents), for a log store.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The WhatsApp chatbot's API (`[chatbot]`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatbotSettings {
    /// `"validated"` (default): a re-registration waits, pending, until a
    /// One Data import carries the new number for the NIK or support staff
    /// approve it; only then is the notice sent to the new number.
    /// `"immediate"`: applied at once, with a notice that carries no NIK
    /// digits, for operators who accept the risk (see SECURITY.md).
    pub reregistration: crate::store::ReregistrationMode,
}

/// By hand rather than derived: `database_url` may carry credentials (see
/// [`crate::secret::redact_url`]).
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a field added later must be added here too.
        let Settings {
            database_url,
            http,
            worker,
            sms,
            gateways,
            simulator,
            chatbot,
            log,
            metrics,
            limits,
            retention,
            runtime,
        } = self;
        f.debug_struct("Settings")
            .field("database_url", &crate::secret::DebugUrl(database_url))
            .field("http", http)
            .field("worker", worker)
            .field("sms", sms)
            .field("gateways", gateways)
            .field("simulator", simulator)
            .field("chatbot", chatbot)
            .field("log", log)
            .field("metrics", metrics)
            .field("limits", limits)
            .field("retention", retention)
            .field("runtime", runtime)
            .finish()
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: "sqlite://pedulicovid.db".into(),
            http: HttpSettings::default(),
            worker: WorkerSettings::default(),
            sms: SmsSettings::default(),
            gateways: vec![],
            simulator: SimulatorConfig::default(),
            chatbot: ChatbotSettings::default(),
            log: LogSettings::default(),
            metrics: MetricsSettings::default(),
            limits: LimitSettings::default(),
            retention: RetentionSettings::default(),
            runtime: RuntimeSettings::default(),
        }
    }
}

/// The HTTP server: receipts, APIs, metrics.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on. Port 0 picks a free port (tests).
    pub listen: String,
    /// Base URL carriers use to reach us for receipts. Defaults to
    /// `http://{listen}`; set it when a proxy or NAT sits in front.
    pub public_url: Option<String>,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Time limit for any request, in milliseconds, counted from the end
    /// of its headers.
    pub request_timeout_ms: u64,
    /// Time a client has to send a request's headers, in milliseconds,
    /// counted from the moment the server waits for them: on a new
    /// connection, and between requests on a kept-alive one (so it is also
    /// how long an idle keep-alive connection stays open). A client that
    /// sends part of a header and stops is disconnected after it, instead
    /// of holding a connection for ever.
    pub header_read_timeout_ms: u64,
    /// Receipt group-commit tasks (0 = by backend: 1 on SQLite, 2 on
    /// PostgreSQL).
    pub receipt_batchers: usize,
    /// Most receipts stored and applied in one transaction.
    pub receipt_max_batch: usize,
    /// Receipts waiting for a batcher at most; callbacks beyond it wait for
    /// room (the queue never grows past this).
    pub receipt_queue: usize,
    /// PEM certificate chain (leaf first) to serve HTTPS directly. With
    /// `tls_key_file`; both unset: plain HTTP (behind a proxy). Re-read when
    /// the files change (checked at each new connection) and on SIGHUP.
    pub tls_cert_file: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<std::path::PathBuf>,
    /// Mark the support UI's cookies `Secure` on every answer. Absent: yes
    /// unless `listen` is a loopback address (then only for requests that
    /// came over HTTPS). `false` is for a plain-HTTP UI on a private
    /// network, at the operator's risk.
    pub ui_secure_cookies: Option<bool>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            body_limit_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            receipt_batchers: 0,
            receipt_max_batch: 256,
            receipt_queue: 4096,
            tls_cert_file: None,
            tls_key_file: None,
            ui_secure_cookies: None,
        }
    }
}

/// What happens to a message whose worker died mid-send (lease expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryPolicy {
    /// Return it to the queue: nothing is lost, a duplicate is possible.
    AtLeastOnce,
    /// Mark it `unknown` and flag it for review: never a duplicate.
    AtMostOnce,
}

/// The dispatch worker.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Rows claimed per batch.
    pub batch_size: u32,
    /// Requests in flight to gateways at once, per worker process.
    pub concurrency: usize,
    /// Attempts before a message ends `failed` / `retries_exhausted`.
    pub max_attempts: u32,
    /// How long a claimed row stays leased to this worker.
    pub lease_secs: u64,
    /// Sleep between polls when the queue has nothing due.
    pub poll_ms: u64,
    /// First retry delay; doubles per attempt (with jitter) up to the max.
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub policy: DeliveryPolicy,
    /// Messages still `sent` without a final receipt after this long become
    /// `unknown` and are flagged `no_receipt`.
    pub receipt_timeout_secs: u64,
    /// A message still failing transiently this long after it was enqueued
    /// is given up (`failed`, `retries_exhausted`), throttles included.
    pub max_age_secs: u64,
    /// Cap over all gateways together, messages per second (0 = none).
    pub global_rate_per_sec: u32,
    /// Auto-pause a campaign when more than `auto_pause_threshold` of its
    /// last `auto_pause_window` send attempts failed.
    pub auto_pause_window: u32,
    pub auto_pause_threshold: f64,
    /// Chatbot `Idempotency-Key`s older than this are deleted by
    /// housekeeping; a retry later than this is a new request. Seven days:
    /// a chatbot outbox replaying after a long-weekend outage still gets the
    /// stored answer, not a second notice (the per-number resend limit only
    /// spans 24 hours).
    pub idempotency_retention_secs: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 200,
            concurrency: 64,
            max_attempts: 5,
            lease_secs: 60,
            poll_ms: 250,
            backoff_initial_ms: 2_000,
            backoff_max_ms: 300_000,
            policy: DeliveryPolicy::AtLeastOnce,
            receipt_timeout_secs: 24 * 3600,
            max_age_secs: 24 * 3600,
            global_rate_per_sec: 0,
            auto_pause_window: 200,
            auto_pause_threshold: 0.5,
            idempotency_retention_secs: 7 * 24 * 3600,
        }
    }
}

/// Message composition.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsSettings {
    /// Segments a campaign template may need for a typical worker.
    pub max_segments: u32,
    /// A rendered message longer than this is failed, not sent (a long name
    /// must not turn one notice into a 4-part bill).
    pub hard_max_segments: u32,
    /// Directory holding `sms/*.tera`; built-in templates are used when absent.
    pub templates_dir: String,
}

impl Default for SmsSettings {
    fn default() -> Self {
        SmsSettings {
            max_segments: 1,
            hard_max_segments: 3,
            templates_dir: "templates".into(),
        }
    }
}

/// One carrier gateway. Read from the documented shape
/// (`RawGatewaySettings`: `dialect = "…"` and that dialect's table
/// beside it), then held as one [`GatewayDialect`] variant.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(try_from = "RawGatewaySettings", into = "RawGatewaySettings")]
pub struct GatewaySettings {
    /// Name used in routing, `messages.gateway` and the callback path.
    /// Required (letters, digits, `-`, `_`).
    pub name: String,
    /// What the gateway speaks and its settings for that: `kannel` (the
    /// default) with `[gateways.kannel]`, `jasmin`, `json`, or `simulator`
    /// for the built-in simulator. Compares with a [`Dialect`]
    /// (`g.dialect == Dialect::Simulator`).
    pub dialect: GatewayDialect,
    /// Messages per second sent to this gateway, all workers together
    /// (0 = unlimited).
    pub rate_per_sec: u32,
    /// SMS segments per second (a 2-part message costs 2; 0 = unlimited).
    pub segments_per_sec: u32,
    /// Operators routed here (`telkomsel`, `indosat`, …); empty = any.
    pub operators: Vec<String>,
    /// Consecutive transient failures (transport, 5xx, throttle) that take
    /// the gateway out of rotation (0 = never).
    pub breaker_threshold: u32,
    /// How long it stays out before one probe request is let through.
    pub breaker_cool_down_secs: u64,
    /// Token carriers present on receipt callbacks. Empty: one is generated
    /// and kept in the database, so every process sharing it agrees. It
    /// also keys the per-message MAC in every callback URL we hand out
    /// (`gateway::callback`). At least 32 characters.
    pub callback_secret: Secret,
    /// The configured `callback_secret` before a rotation: tokens and MACs
    /// made with it still verify until `callback_secret_previous_until`.
    pub callback_secret_previous: Secret,
    /// When the previous secret stops verifying (RFC 3339, e.g.
    /// `2026-12-09T00:00:00Z`); required with `callback_secret_previous`.
    pub callback_secret_previous_until: Option<String>,
    /// For a generated secret: how long the previous one keeps verifying
    /// after `pedulicovid gateways rotate-secret` (receipts for messages
    /// sent before the rotation still land). Seven days by default: longer
    /// than any SMSC validity period.
    pub callback_secret_grace_secs: u64,
    /// `[gateways.tls]`: a private CA and a client certificate, for any
    /// dialect (see [`GatewayTls`]). Verification is always on.
    pub tls: GatewayTls,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            name: String::new(),
            dialect: GatewayDialect::default(),
            rate_per_sec: 0,
            segments_per_sec: 0,
            operators: vec![],
            breaker_threshold: 20,
            breaker_cool_down_secs: 30,
            callback_secret: Secret::default(),
            callback_secret_previous: Secret::default(),
            callback_secret_previous_until: None,
            callback_secret_grace_secs: 7 * 24 * 3600,
            tls: GatewayTls::default(),
        }
    }
}

/// The settings file's table: `path` (`--config`), or `pedulicovid.toml`
/// in the working directory when present, or none.
fn settings_file(path: Option<&Path>) -> anyhow::Result<Option<toml::Table>> {
    let file = match path {
        Some(p) => p.to_path_buf(),
        None => match Some(Path::new("pedulicovid.toml")).filter(|p| p.exists()) {
            Some(p) => p.to_path_buf(),
            None => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading settings file {}", file.display()))?;
    let table = text
        .parse()
        .with_context(|| format!("parsing settings file {}", file.display()))?;
    Ok(Some(table))
}

/// One line of `pedulicovid config show`: [`Settings::shown`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShownSetting {
    pub key: String,
    /// As TOML writes the value; secrets `[redacted]`.
    pub value: String,
    /// `default`, `file` or `environment`.
    pub source: &'static str,
}

/// Calls `f` with the dotted key and the value of every leaf of `v`: a
/// table's keys and an array of tables' indexes are path segments; any
/// other array (of strings, numbers) is one leaf.
fn leaves(prefix: &str, v: &toml::Value, f: &mut dyn FnMut(&str, &toml::Value)) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                leaves(&join(k), v, f);
            }
        }
        toml::Value::Array(a) if !a.is_empty() && a.iter().all(|x| x.is_table()) => {
            for (i, v) in a.iter().enumerate() {
                leaves(&join(&i.to_string()), v, f);
            }
        }
        other => f(prefix, other),
    }
}

/// [`GatewaySettings`] as written in the settings file and the environment
/// (README "Settings"): `dialect` plus a table per dialect beside it
/// (`[gateways.kannel]`, `PEDULICOVID__GATEWAYS__0__KANNEL__…`). Read as it
/// is, field by field (so environment strings become numbers only where the
/// field is one, and `serde_path_to_error` names a bad field), then made one
/// [`GatewayDialect`] by [`GatewayDialect::from_tables`], which refuses
/// another dialect's table. The fields mirror [`GatewaySettings`], whose
/// comments describe them.
#[derive(Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
struct RawGatewaySettings {
    name: String,
    dialect: Dialect,
    rate_per_sec: u32,
    segments_per_sec: u32,
    operators: Vec<String>,
    breaker_threshold: u32,
    breaker_cool_down_secs: u64,
    callback_secret: Secret,
    callback_secret_previous: Secret,
    callback_secret_previous_until: Option<String>,
    callback_secret_grace_secs: u64,
    /// One field per dialect table: the documented file format.
    kannel: Option<KannelConfig>,
    jasmin: Option<JasminConfig>,
    json: Option<JsonConfig>,
    tls: GatewayTls,
}

impl Default for RawGatewaySettings {
    /// What [`GatewaySettings::default`] has, with no dialect table given.
    fn default() -> Self {
        let GatewaySettings {
            name,
            dialect,
            rate_per_sec,
            segments_per_sec,
            operators,
            breaker_threshold,
            breaker_cool_down_secs,
            callback_secret,
            callback_secret_previous,
            callback_secret_previous_until,
            callback_secret_grace_secs,
            tls,
        } = GatewaySettings::default();
        RawGatewaySettings {
            name,
            dialect: dialect.dialect(),
            rate_per_sec,
            segments_per_sec,
            operators,
            breaker_threshold,
            breaker_cool_down_secs,
            callback_secret,
            callback_secret_previous,
            callback_secret_previous_until,
            callback_secret_grace_secs,
            kannel: None,
            jasmin: None,
            json: None,
            tls,
        }
    }
}

/// The documented shape again, for `config show`: `dialect` and the one
/// table the gateway has.
impl From<GatewaySettings> for RawGatewaySettings {
    fn from(g: GatewaySettings) -> RawGatewaySettings {
        let dialect = g.dialect.dialect();
        let table = match g.dialect {
            GatewayDialect::Carrier(t) | GatewayDialect::Simulator(Some(t)) => Some(t),
            GatewayDialect::Simulator(None) => None,
        };
        let (mut kannel, mut jasmin, mut json) = (None, None, None);
        match table {
            Some(DialectSettings::Kannel(c)) => kannel = Some(c),
            Some(DialectSettings::Jasmin(c)) => jasmin = Some(c),
            Some(DialectSettings::Json(c)) => json = Some(c),
            None => {}
        }
        RawGatewaySettings {
            name: g.name,
            dialect,
            rate_per_sec: g.rate_per_sec,
            segments_per_sec: g.segments_per_sec,
            operators: g.operators,
            breaker_threshold: g.breaker_threshold,
            breaker_cool_down_secs: g.breaker_cool_down_secs,
            callback_secret: g.callback_secret,
            callback_secret_previous: g.callback_secret_previous,
            callback_secret_previous_until: g.callback_secret_previous_until,
            callback_secret_grace_secs: g.callback_secret_grace_secs,
            kannel,
            jasmin,
            json,
            tls: g.tls,
        }
    }
}

impl TryFrom<RawGatewaySettings> for GatewaySettings {
    type Error = String;

    fn try_from(raw: RawGatewaySettings) -> Result<Self, String> {
        let RawGatewaySettings {
            name,
            dialect,
            rate_per_sec,
            segments_per_sec,
            operators,
            breaker_threshold,
            breaker_cool_down_secs,
            callback_secret,
            callback_secret_previous,
            callback_secret_previous_until,
            callback_secret_grace_secs,
            kannel,
            jasmin,
            json,
            tls,
        } = raw;
        let tables = [
            kannel.map(DialectSettings::from),
            jasmin.map(DialectSettings::from),
            json.map(DialectSettings::from),
        ];
        Ok(GatewaySettings {
            dialect: GatewayDialect::from_tables(&name, dialect, tables.into_iter().flatten())?,
            name,
            rate_per_sec,
            segments_per_sec,
            operators,
            breaker_threshold,
            breaker_cool_down_secs,
            callback_secret,
            callback_secret_previous,
            callback_secret_previous_until,
            callback_secret_grace_secs,
            tls,
        })
    }
}

impl GatewaySettings {
    /// A gateway that asks for the built-in simulator by name (demo,
    /// benches, tests): the only way the simulator is ever sent to.
    pub fn simulator(name: &str) -> GatewaySettings {
        GatewaySettings {
            name: name.into(),
            dialect: GatewayDialect::Simulator(None),
            ..GatewaySettings::default()
        }
    }

    /// The send URL of a real gateway, from its dialect's table (empty for
    /// `simulator`, whose address is known only once it runs).
    pub fn send_url(&self) -> &str {
        self.dialect.send_url()
    }

    /// Refuses a configured callback secret too short to key a MAC, and a
    /// previous secret without a deadline.
    fn check_callback_secrets(&self) -> anyhow::Result<()> {
        let min = crate::gateway::callback::MIN_SECRET_CHARS;
        for (field, s) in [
            ("callback_secret", &self.callback_secret),
            ("callback_secret_previous", &self.callback_secret_previous),
        ] {
            let n = s.expose().chars().count();
            if n > 0 && n < min {
                bail!(
                    "gateway {:?}: {field} has {n} characters; at least {min} are required \
                     (or leave callback_secret empty to have one generated)",
                    self.name
                );
            }
        }
        match (
            self.callback_secret_previous.is_empty(),
            &self.callback_secret_previous_until,
        ) {
            (true, _) => {}
            (false, None) => bail!(
                "gateway {:?}: callback_secret_previous needs callback_secret_previous_until \
                 (RFC 3339, when it stops verifying)",
                self.name
            ),
            (false, Some(_)) => {
                self.previous_secret_until_ms()?;
            }
        }
        if !self.callback_secret_previous.is_empty() && self.callback_secret.is_empty() {
            bail!(
                "gateway {:?}: callback_secret_previous is set but callback_secret is empty",
                self.name
            );
        }
        Ok(())
    }

    /// `callback_secret_previous_until` in Unix milliseconds (0 when unset).
    pub fn previous_secret_until_ms(&self) -> anyhow::Result<i64> {
        match &self.callback_secret_previous_until {
            None => Ok(0),
            Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                .map(|d| d.timestamp_millis())
                .with_context(|| {
                    format!(
                        "gateway {:?}: callback_secret_previous_until {t:?} is not an RFC 3339 time",
                        self.name
                    )
                }),
        }
    }
}

/// A gateway URL must parse and be `http` or `https`. The URL itself is
/// never quoted in the error: it may hold a password.
fn check_gateway_url(gateway: &str, field: &str, url: &str) -> anyhow::Result<()> {
    let u = url::Url::parse(url)
        .map_err(|e| anyhow::anyhow!("gateway {gateway:?}: {field} is not a valid URL ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") {
        bail!(
            "gateway {gateway:?}: {field} has scheme {:?}; use http or https",
            u.scheme()
        );
    }
    if u.host_str().is_none_or(str::is_empty) {
        bail!("gateway {gateway:?}: {field} has no host");
    }
    Ok(())
}

/// The host (and port, when written) of a URL, for logs: never the user,
/// password, path or query, which may carry credentials.
pub fn url_host(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            (None, _) => "-".into(),
        },
        Err(_) => "-".into(),
    }
}

/// Whether `url` is plain `http` to a host that is neither loopback nor on
/// a private network (RFC 1918, IPv6 unique-local, link-local): credentials
/// and message text would then cross networks in clear. Host names other
/// than `localhost` count as public: where they resolve is not ours to
/// guess at start.
pub fn plain_http_to_public_host(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    if u.scheme() != "http" {
        return false;
    }
    match u.host() {
        Some(url::Host::Ipv4(ip)) => {
            !(ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified())
        }
        Some(url::Host::Ipv6(ip)) => {
            let seg0 = ip.segments()[0];
            let unique_local = (seg0 & 0xfe00) == 0xfc00;
            let link_local = (seg0 & 0xffc0) == 0xfe80;
            !(ip.is_loopback() || unique_local || link_local || ip.is_unspecified())
        }
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            !(d == "localhost" || d.ends_with(".localhost"))
        }
        None => false,
    }
}

/// Whether `url`'s host is this machine (a loopback address or
/// `localhost`).
fn url_is_loopback(url: &str) -> bool {
    match url::Url::parse(url).ok().as_ref().and_then(|u| u.host()) {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

impl Settings {
    /// Loads settings: defaults, then `path` (or `pedulicovid.toml` when it
    /// exists), then the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Settings> {
        Settings::load_from(path, std::env::vars())
    }

    /// [`Settings::load`] with the environment given explicitly (tests).
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Settings> {
        // Start empty: `#[serde(default)]` on every section fills what the
        // file and the environment leave out.
        let mut tree = toml::Table::new();
        if let Some(overlay) = settings_file(path)? {
            merge(&mut tree, overlay);
        }
        for (key, value) in env {
            if let Some(path) = key.strip_prefix(ENV_PREFIX) {
                set_path(&mut tree, path, &value)
                    .with_context(|| format!("environment variable {key}"))?;
            }
        }
        if tree
            .get("simulator")
            .and_then(|s| s.get("enabled"))
            .is_some()
        {
            bail!(
                "simulator.enabled is gone: the simulator never runs by default. \
                 Ask for it by name with a gateway: [[gateways]] name = \"sim\" \
                 dialect = \"simulator\" (or run `pedulicovid demo`)"
            );
        }
        let settings: Settings =
            serde_path_to_error::deserialize(EnvDeserializer(toml::Value::Table(tree.clone())))
                .map_err(|e| {
                    anyhow::anyhow!(
                        "invalid settings: {}: {} (check the settings file and \
                         PEDULICOVID__* variables)",
                        e.path(),
                        e.inner()
                    )
                })?;
        settings.check()?;
        // A real gateway sends where its settings say, never to a built-in
        // default address: its URL must be written, in the file or the
        // environment.
        for (i, g) in settings.gateways.iter().enumerate() {
            let Some(field) = g.dialect.url_field() else {
                continue;
            };
            let (section, key) = field.split_once('.').unwrap_or(("", field));
            let given = tree
                .get("gateways")
                .and_then(|a| a.get(i))
                .and_then(|t| t.get(section))
                .and_then(|t| t.get(key))
                .is_some();
            if !given {
                bail!(
                    "gateway {:?} (dialect {}): {field} is required \
                     (in [[gateways]], or PEDULICOVID__GATEWAYS__{i}__{})",
                    g.name,
                    g.dialect,
                    field.replace('.', "__").to_ascii_uppercase()
                );
            }
        }
        Ok(settings)
    }

    /// Every effective setting with where its value came from, for
    /// `pedulicovid config show`: `key` is dotted (`gateways.0.kannel.password`),
    /// `value` as TOML writes it (secrets `[redacted]`), `source` one of
    /// `default`, `file` and `environment` (the environment wins over the
    /// file, as in [`Settings::load`]).
    pub fn shown(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Vec<ShownSetting>> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let settings = Settings::load_from(path, env.clone())?;
        let effective = toml::Value::try_from(&settings).context("writing the settings")?;
        let mut from_file = std::collections::BTreeSet::new();
        if let Some(tree) = settings_file(path)? {
            leaves("", &toml::Value::Table(tree), &mut |k, _| {
                from_file.insert(k.to_string());
            });
        }
        let from_env: std::collections::BTreeSet<String> = env
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(ENV_PREFIX))
            .map(|p| {
                p.split("__")
                    .map(|x| x.to_ascii_lowercase())
                    .collect::<Vec<_>>()
                    .join(".")
            })
            .collect();
        let mut out = vec![];
        leaves("", &effective, &mut |key, value| {
            let source = if from_env.contains(key) {
                "environment"
            } else if from_file.contains(key) {
                "file"
            } else {
                "default"
            };
            out.push(ShownSetting {
                key: key.to_string(),
                value: value.to_string(),
                source,
            });
        });
        Ok(out)
    }

    /// Cross-field checks that serde cannot express. Called when settings
    /// load and again by [`crate::app::App::start`] (settings built in code).
    pub fn check(&self) -> anyhow::Result<()> {
        self.limits.check()?;
        let mut names = std::collections::HashSet::new();
        for (i, g) in self.gateways.iter().enumerate() {
            if g.name.is_empty() {
                bail!(
                    "gateway {i}: name is required (name = \"…\" in [[gateways]], \
                     or PEDULICOVID__GATEWAYS__{i}__NAME)"
                );
            }
            if !g
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "gateway name {:?}: use letters, digits, '-' and '_' only",
                    g.name
                );
            }
            g.check_callback_secrets()?;
            if !names.insert(g.name.as_str()) {
                bail!("gateway {:?} is configured twice", g.name);
            }
            if let Some(field) = g.dialect.url_field() {
                check_gateway_url(&g.name, field, g.send_url())?;
            }
            if let GatewayDialect::Carrier(DialectSettings::Kannel(k)) = &g.dialect {
                k.check()
                    .map_err(|e| anyhow::anyhow!("gateway {:?}: {e}", g.name))?;
            }
        }
        for g in &self.gateways {
            if let Err(e) = g.tls.check() {
                bail!("gateway {:?}: {e}", g.name);
            }
        }
        if self.http.tls_cert_file.is_some() != self.http.tls_key_file.is_some() {
            bail!("http.tls_cert_file and http.tls_key_file go together: set both (HTTPS) or neither (plain HTTP)");
        }
        if self.http.header_read_timeout_ms == 0 {
            bail!("http.header_read_timeout_ms must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            bail!("worker.max_attempts must be at least 1");
        }
        if self.worker.batch_size == 0 || self.worker.concurrency == 0 {
            bail!("worker.batch_size and worker.concurrency must be at least 1");
        }
        if self.runtime.threads > MAX_RUNTIME_THREADS {
            bail!(
                "runtime.threads = {}: at most {MAX_RUNTIME_THREADS} (0 = one per core; \
                 [runtime] threads or PEDULICOVID__RUNTIME__THREADS)",
                self.runtime.threads
            );
        }
        Ok(())
    }

    /// Start-up checks of the address carriers call back on, for a process
    /// that hands messages to (or takes receipts from) a real gateway (one
    /// whose dialect is not `simulator`). Returns the warnings to log.
    ///
    /// - `http.public_url` unset and `http.listen` an unspecified address
    ///   (`0.0.0.0`, `[::]`): refused. Every dlr-url would read
    ///   `http://0.0.0.0:…`, which no gateway can reach, and every worker
    ///   would end `no_receipt`.
    /// - `http.public_url` unset, `http.listen` loopback, and a gateway on
    ///   another host: a warning (that gateway cannot reach us; a tunnel
    ///   or a proxy on the same machine might, hence not refused).
    /// - `http.public_url` plain `http` to a public host: a warning
    ///   (receipts and their MACs cross networks in clear).
    pub fn check_callback_base(&self) -> anyhow::Result<Vec<String>> {
        let real: Vec<&GatewaySettings> = self
            .gateways
            .iter()
            .filter(|g| g.dialect != Dialect::Simulator)
            .collect();
        let mut warnings = vec![];
        if real.is_empty() {
            return Ok(warnings);
        }
        let Some(public) = &self.http.public_url else {
            let listen = self.http.listen.trim();
            let ip = listen
                .parse::<std::net::SocketAddr>()
                .map(|a| a.ip())
                .ok()
                .or_else(|| listen.parse::<std::net::IpAddr>().ok());
            let loopback_listen = match ip {
                Some(ip) if ip.is_unspecified() => bail!(
                    "http.public_url is required: http.listen {listen:?} is an unspecified \
                     address, so the callback URLs handed to gateway {:?} would read \
                     {}://{listen}/… and no receipt could ever arrive; set http.public_url \
                     to the URL the gateways reach this service at (e.g. \
                     https://sms.example.go.id), or PEDULICOVID__HTTP__PUBLIC_URL",
                    real[0].name,
                    self.http_scheme(),
                ),
                Some(ip) => ip.is_loopback(),
                None => listen.to_ascii_lowercase().starts_with("localhost:"),
            };
            if loopback_listen {
                for g in real.iter().filter(|g| !url_is_loopback(g.send_url())) {
                    warnings.push(format!(
                        "gateway {:?} is at {}, not on this machine, but http.public_url is \
                         unset and http.listen {listen:?} is loopback: its callback URLs point \
                         at loopback, so its receipts cannot arrive; set http.public_url",
                        g.name,
                        url_host(g.send_url()),
                    ));
                }
            }
            return Ok(warnings);
        };
        if plain_http_to_public_host(public) {
            warnings.push(format!(
                "http.public_url {:?} is plain http to a public host: receipts and their \
                 per-message MACs cross the network in clear; use https",
                url_host(public)
            ));
        }
        Ok(warnings)
    }

    /// The base URL carriers call back on: `http.public_url`, else the
    /// bound address, `https://` when the listener serves TLS itself.
    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.http.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("{}://{bound}", self.http_scheme()),
        }
    }

    /// `https` when `[http]` has a certificate, `http` otherwise.
    pub fn http_scheme(&self) -> &'static str {
        if self.http.tls_cert_file.is_some() {
            "https"
        } else {
            "http"
        }
    }
}

/// Deep-merges `overlay` into `base`; arrays and scalars are replaced.
fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets `A__B__0__C` (case-insensitive keys) to `raw`, kept as a string:
/// [`EnvDeserializer`] parses it later only if the field asks for a number,
/// a boolean, a list or a table.
fn set_path(tree: &mut toml::Table, path: &str, raw: &str) -> anyhow::Result<()> {
    let parts: Vec<String> = path.split("__").map(|p| p.to_ascii_lowercase()).collect();
    // A missing container is an array when the key below it is an index.
    let empty_for = |next: Option<&String>| match next {
        Some(n) if n.parse::<usize>().is_ok() => toml::Value::Array(vec![]),
        _ => toml::Value::Table(toml::Table::new()),
    };
    let mut slot: &mut toml::Value = tree
        .entry(parts[0].clone())
        .or_insert_with(|| empty_for(parts.get(1)));
    for (k, part) in parts.iter().enumerate().skip(1) {
        let next = parts.get(k + 1);
        slot = match slot {
            toml::Value::Table(t) => t.entry(part.clone()).or_insert_with(|| empty_for(next)),
            toml::Value::Array(a) => {
                let i: usize = part
                    .parse()
                    .with_context(|| format!("{part:?} is not an array index"))?;
                while a.len() <= i {
                    a.push(empty_for(next));
                }
                &mut a[i]
            }
            _ => bail!("{path}: {part:?} is below a plain value"),
        };
    }
    *slot = toml::Value::String(raw.to_string());
    Ok(())
}

/// Deserializes settings from the merged TOML tree, reading a *string*
/// as a number, boolean, list or table only where the target field is one.
///
/// Why: environment variables are text, and guessing their type (the old
/// loader parsed each as a TOML value) turned `PASSWORD=123456` into an
/// integer the password field refused, and would read a short code `007`
/// as 7. Here the field's type decides: a `String`/`Secret` gets the text
/// exactly as written; a `u32` gets it parsed, with an error naming the
/// field (through `serde_path_to_error`) when it is not a number. Values
/// from the TOML file keep their TOML types. It is type-directed, so fields
/// other branches add are covered without annotations.
///
/// Why not a crate: `config` and `figment` would replace this loader
/// whole, and both build nested *maps* from separated environment keys, so
/// the `PEDULICOVID__GATEWAYS__0__…` array indexes documented in the README
/// would need their list syntax instead; `serde-aux`'s
/// `deserialize_number_from_string` works per field and would have to be
/// remembered on every new number. This adapter is the one piece missing
/// from `toml`'s value deserializer.
///
/// Limits: a value buffered by serde before its type is known (inside
/// `#[serde(flatten)]`, untagged or internally tagged enums) is seen as a
/// string; settings keep numbers out of such places (`JsonAuth` holds only
/// strings).
struct EnvDeserializer(toml::Value);

/// An error while reading settings; its field path is added by
/// `serde_path_to_error`.
#[derive(Debug)]
struct SettingsError(String);

impl std::fmt::Display for SettingsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SettingsError {}

impl de::Error for SettingsError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        SettingsError(msg.to_string())
    }
}

/// Parses `raw` as one TOML value (`[1, 2]`, `{ a = "b" }`).
fn parse_toml_value(raw: &str) -> Option<toml::Value> {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
}

/// Numbers: a string is parsed as the field's type asks, nothing else.
macro_rules! number_from_string {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0 {
                toml::Value::String(s) => match s.trim().parse::<$ty>() {
                    Ok(n) => visitor.$visit(n),
                    Err(_) => Err(de::Error::invalid_value(de::Unexpected::Str(&s), &visitor)),
                },
                other => EnvDeserializer(other).deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for EnvDeserializer {
    type Error = SettingsError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(a) => visitor.visit_seq(de::value::SeqDeserializer::new(
                a.into_iter().map(EnvDeserializer),
            )),
            toml::Value::Table(t) => visitor.visit_map(de::value::MapDeserializer::new(
                t.into_iter().map(|(k, v)| (k, EnvDeserializer(v))),
            )),
        }
    }

    number_from_string! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_f32 => f32, visit_f32;
        deserialize_f64 => f64, visit_f64;
    }

    fn deserialize_bool<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            toml::Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" => visitor.visit_bool(true),
                "false" => visitor.visit_bool(false),
                _ => Err(de::Error::invalid_value(de::Unexpected::Str(&s), &visitor)),
            },
            other => EnvDeserializer(other).deserialize_any(visitor),
        }
    }

    /// A list from the environment is written as a TOML array:
    /// `PEDULICOVID__GATEWAYS__0__OPERATORS='["telkomsel", "indosat"]'`.
    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            toml::Value::String(s) => match parse_toml_value(&s) {
                Some(v @ toml::Value::Array(_)) => EnvDeserializer(v).deserialize_any(visitor),
                _ => Err(de::Error::invalid_value(
                    de::Unexpected::Str(&s),
                    &"a list written as a TOML array, e.g. [\"a\", \"b\"]",
                )),
            },
            other => EnvDeserializer(other).deserialize_any(visitor),
        }
    }

    /// A table from the environment is a TOML inline table
    /// (`{ a = "b" }`); usually one sets its keys one by one instead.
    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            toml::Value::String(s) => match parse_toml_value(&s) {
                Some(v @ toml::Value::Table(_)) => EnvDeserializer(v).deserialize_any(visitor),
                _ => Err(de::Error::invalid_value(
                    de::Unexpected::Str(&s),
                    &"a table written as a TOML inline table, e.g. { key = \"value\" }",
                )),
            },
            other => EnvDeserializer(other).deserialize_any(visitor),
        }
    }

    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        // An absent key never reaches here (`#[serde(default)]`).
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match self.0 {
            // A unit variant by name: `dialect = "jasmin"`.
            toml::Value::String(s) => visitor.visit_enum(s.into_deserializer()),
            // An externally tagged variant with data: `{ variant = … }`.
            toml::Value::Table(t) if t.len() == 1 => {
                // The guard checked there is exactly one entry.
                let (k, v) = t.into_iter().next().expect("one entry");
                visitor.visit_enum(de::value::MapAccessDeserializer::new(
                    de::value::MapDeserializer::new(std::iter::once((k, EnvDeserializer(v)))),
                ))
            }
            other => EnvDeserializer(other).deserialize_any(visitor),
        }
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit unit_struct tuple tuple_struct identifier
        ignored_any i128 u128
    }
}

impl<'de> IntoDeserializer<'de, SettingsError> for EnvDeserializer {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway's settings of one dialect; panics on another.
    fn kannel(g: &GatewaySettings) -> &KannelConfig {
        match &g.dialect {
            GatewayDialect::Carrier(DialectSettings::Kannel(c)) => c,
            other => panic!("{:?} is not a kannel gateway: {other:?}", g.name),
        }
    }

    fn jasmin(g: &GatewaySettings) -> &JasminConfig {
        match &g.dialect {
            GatewayDialect::Carrier(DialectSettings::Jasmin(c)) => c,
            other => panic!("{:?} is not a jasmin gateway: {other:?}", g.name),
        }
    }

    fn json(g: &GatewaySettings) -> &JsonConfig {
        match &g.dialect {
            GatewayDialect::Carrier(DialectSettings::Json(c)) => c,
            other => panic!("{:?} is not a json gateway: {other:?}", g.name),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn with_gateway(listen: &str, public_url: Option<&str>, gateway_url: &str) -> Settings {
        let mut s = Settings::default();
        s.http.listen = listen.into();
        s.http.public_url = public_url.map(String::from);
        s.gateways = vec![GatewaySettings {
            name: "tsel".into(),
            dialect: KannelConfig {
                sendsms_url: gateway_url.into(),
                ..Default::default()
            }
            .into(),
            ..Default::default()
        }];
        s
    }

    #[test]
    fn an_unspecified_listen_address_without_public_url_is_refused() {
        for listen in ["0.0.0.0:8080", "[::]:8080"] {
            let s = with_gateway(listen, None, "http://127.0.0.1:13013/cgi-bin/sendsms");
            let e = s.check_callback_base().unwrap_err().to_string();
            assert!(e.contains("http.public_url is required"), "{e}");
            assert!(e.contains(listen) && e.contains("\"tsel\""), "{e}");
            // With public_url: accepted, no warning.
            let s = with_gateway(
                listen,
                Some("https://sms.example.go.id"),
                "http://127.0.0.1:13013/cgi-bin/sendsms",
            );
            assert_eq!(s.check_callback_base().unwrap(), Vec::<String>::new());
        }
        // Only simulator gateways: nothing to refuse (the demo).
        let mut s = with_gateway("0.0.0.0:8080", None, "http://127.0.0.1:1/x");
        s.gateways = vec![GatewaySettings::simulator("sim")];
        assert_eq!(s.check_callback_base().unwrap(), Vec::<String>::new());
        // No gateway at all: nothing to refuse either.
        s.gateways.clear();
        assert_eq!(s.check_callback_base().unwrap(), Vec::<String>::new());
    }

    #[test]
    fn callback_base_warnings() {
        // Loopback listen, gateway elsewhere: warned, naming the gateway.
        let s = with_gateway(
            "127.0.0.1:8080",
            None,
            "http://10.1.2.3:13013/cgi-bin/sendsms",
        );
        let w = s.check_callback_base().unwrap();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("\"tsel\"")
                && w[0].contains("10.1.2.3:13013")
                && w[0].contains("http.public_url"),
            "{w:?}"
        );
        let s = with_gateway(
            "localhost:8080",
            None,
            "https://kannel.example.com/cgi-bin/sendsms",
        );
        assert_eq!(s.check_callback_base().unwrap().len(), 1);
        // Loopback listen, gateway on this machine: fine.
        for url in [
            "http://127.0.0.1:13013/x",
            "http://localhost:13013/x",
            "http://[::1]:1/x",
        ] {
            let s = with_gateway("127.0.0.1:8080", None, url);
            assert_eq!(
                s.check_callback_base().unwrap(),
                Vec::<String>::new(),
                "{url}"
            );
        }
        // A listen on a real interface: the bound address may be reachable.
        let s = with_gateway("10.0.0.5:8080", None, "http://10.1.2.3:13013/x");
        assert_eq!(s.check_callback_base().unwrap(), Vec::<String>::new());
        // public_url plain http to a public host: warned; https or a private host: fine.
        let s = with_gateway(
            "0.0.0.0:8080",
            Some("http://sms.example.go.id"),
            "http://10.1.2.3/x",
        );
        let w = s.check_callback_base().unwrap();
        assert!(w.len() == 1 && w[0].contains("plain http"), "{w:?}");
        for ok in ["https://sms.example.go.id", "http://10.0.0.5:8080"] {
            let s = with_gateway("0.0.0.0:8080", Some(ok), "http://10.1.2.3/x");
            assert_eq!(
                s.check_callback_base().unwrap(),
                Vec::<String>::new(),
                "{ok}"
            );
        }
    }

    /// The smallest real gateway, through the environment.
    const KANNEL_ENV: [(&str, &str); 2] = [
        ("PEDULICOVID__GATEWAYS__0__NAME", "tsel"),
        (
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
            "http://127.0.0.1:13013/cgi-bin/sendsms",
        ),
    ];

    fn with_kannel(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut v = env(&KANNEL_ENV);
        v.extend(env(extra));
        v
    }

    #[test]
    fn chatbot_reregistration_mode_is_validated_unless_set() {
        use crate::store::ReregistrationMode;
        let s = Settings::load_from(None, vec![]).unwrap();
        assert_eq!(s.chatbot.reregistration, ReregistrationMode::Validated);
        let s = Settings::load_from(
            None,
            env(&[("PEDULICOVID__CHATBOT__REREGISTRATION", "immediate")]),
        )
        .unwrap();
        assert_eq!(s.chatbot.reregistration, ReregistrationMode::Immediate);
        let e = Settings::load_from(
            None,
            env(&[("PEDULICOVID__CHATBOT__REREGISTRATION", "sometimes")]),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("sometimes"), "{e:#}");
    }

    /// The settings file the Debian package installs loads as shipped.
    #[test]
    fn the_packaged_settings_file_loads() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/debian/pedulicovid.toml");
        let s = Settings::load_from(Some(&file), vec![]).unwrap();
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.runtime.threads, 1);
    }

    #[test]
    fn runtime_threads_default_to_one_and_refuse_a_typo() {
        let s = Settings::load_from(None, vec![]).unwrap();
        assert_eq!(s.runtime.threads, 1);
        assert_eq!(s.runtime.worker_threads(), 1);
        let all =
            Settings::load_from(None, env(&[("PEDULICOVID__RUNTIME__THREADS", "0")])).unwrap();
        let cores = std::thread::available_parallelism().unwrap().get();
        assert_eq!(all.runtime.worker_threads(), cores);
        let four =
            Settings::load_from(None, env(&[("PEDULICOVID__RUNTIME__THREADS", "4")])).unwrap();
        assert_eq!(four.runtime.worker_threads(), 4);
        for (value, says) in [
            ("10000", "runtime.threads = 10000: at most 256"),
            ("-1", "runtime.threads"),
            ("two", "runtime.threads"),
        ] {
            let e = Settings::load_from(None, env(&[("PEDULICOVID__RUNTIME__THREADS", value)]))
                .expect_err(value);
            assert!(format!("{e:#}").contains(says), "{value}: {e:#}");
        }
    }

    #[test]
    fn defaults_work_with_nothing_configured() {
        let s = Settings::load_from(Some(Path::new("/nonexistent/x.toml")), vec![]);
        assert!(s.is_err(), "an explicit file that is missing is an error");
        let s = Settings::load_from(None, vec![]).unwrap();
        assert_eq!(s.database_url, "sqlite://pedulicovid.db");
        assert!(s.gateways.is_empty(), "no gateway unless configured");
    }

    #[test]
    fn environment_only_gateway_is_the_configured_carrier_never_the_simulator() {
        let s = Settings::load_from(None, env(&KANNEL_ENV)).unwrap();
        assert_eq!(s.gateways.len(), 1);
        let g = &s.gateways[0];
        assert_eq!(g.name, "tsel");
        assert_eq!(g.dialect, Dialect::Kannel);
        assert_eq!(
            kannel(g).sendsms_url,
            "http://127.0.0.1:13013/cgi-bin/sendsms"
        );
        // Named "sim" changes nothing either: the name never picks a dialect.
        let s = Settings::load_from(
            None,
            with_kannel(&[("PEDULICOVID__GATEWAYS__0__NAME", "sim")]),
        )
        .unwrap();
        assert_eq!(s.gateways[0].dialect, Dialect::Kannel);
        // The simulator only by name.
        let s = Settings::load_from(
            None,
            env(&[
                ("PEDULICOVID__GATEWAYS__0__NAME", "trial"),
                ("PEDULICOVID__GATEWAYS__0__DIALECT", "simulator"),
            ]),
        )
        .unwrap();
        assert_eq!(s.gateways[0].dialect, Dialect::Simulator);
    }

    #[test]
    fn the_removed_simulator_switch_is_refused_with_the_way_forward() {
        for e in [
            env(&[("PEDULICOVID__SIMULATOR__ENABLED", "true")]),
            env(&[("PEDULICOVID__SIMULATOR__ENABLED", "false")]),
        ] {
            let e = Settings::load_from(None, e).unwrap_err();
            assert!(
                format!("{e:#}").contains("dialect = \"simulator\""),
                "{e:#}"
            );
        }
    }

    #[test]
    fn a_real_gateway_needs_its_url_written() {
        for (dialect, var) in [
            ("kannel", "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL"),
            ("jasmin", "PEDULICOVID__GATEWAYS__0__JASMIN__SEND_URL"),
            ("json", "PEDULICOVID__GATEWAYS__0__JSON__URL"),
        ] {
            let e = Settings::load_from(
                None,
                env(&[
                    ("PEDULICOVID__GATEWAYS__0__NAME", "g"),
                    ("PEDULICOVID__GATEWAYS__0__DIALECT", dialect),
                ]),
            )
            .unwrap_err();
            assert!(format!("{e:#}").contains(var), "{dialect}: {e:#}");
        }
        let e = Settings::load_from(
            None,
            env(&[(
                "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
                "http://127.0.0.1:1/x",
            )]),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("PEDULICOVID__GATEWAYS__0__NAME"),
            "{e:#}"
        );
    }

    /// A gateway reads only its own dialect's table: another dialect's, in
    /// the file or the environment, is refused with the gateway's name
    /// rather than silently ignored.
    #[test]
    fn another_dialects_table_is_refused_naming_the_gateway() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "[[gateways]]\nname = \"tsel\"\ndialect = \"kannel\"\n\
             [gateways.kannel]\nsendsms_url = \"http://10.0.0.2:13013/cgi-bin/sendsms\"\n\
             [gateways.jasmin]\nsend_url = \"http://10.0.0.3:1401/send\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Settings::load_from(Some(&f), vec![]).unwrap_err());
        assert!(
            e.contains("gateways[0]") && e.contains("\"tsel\"") && e.contains("[gateways.jasmin]"),
            "{e}"
        );
        // Through the environment, and with kannel as the default dialect.
        let e = Settings::load_from(
            None,
            with_kannel(&[(
                "PEDULICOVID__GATEWAYS__0__JSON__URL",
                "http://127.0.0.1:1/v1",
            )]),
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("\"tsel\"") && e.contains("[gateways.json]") && e.contains("kannel"),
            "{e}"
        );
        // Its own table alone loads.
        let s = Settings::load_from(
            None,
            env(&[
                ("PEDULICOVID__GATEWAYS__0__NAME", "jas"),
                ("PEDULICOVID__GATEWAYS__0__DIALECT", "jasmin"),
                (
                    "PEDULICOVID__GATEWAYS__0__JASMIN__SEND_URL",
                    "http://127.0.0.1:1/send",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(jasmin(&s.gateways[0]).send_url, "http://127.0.0.1:1/send");
        // A simulator gateway may tune the dialect the simulator speaks,
        // with one table.
        let s = Settings::load_from(
            None,
            env(&[
                ("PEDULICOVID__GATEWAYS__0__NAME", "sim"),
                ("PEDULICOVID__GATEWAYS__0__DIALECT", "simulator"),
                ("PEDULICOVID__GATEWAYS__0__KANNEL__TIMEOUT_MS", "300"),
            ]),
        )
        .unwrap();
        assert!(matches!(
            &s.gateways[0].dialect,
            GatewayDialect::Simulator(Some(DialectSettings::Kannel(k))) if k.timeout_ms == 300
        ));
    }

    #[test]
    fn gateway_urls_must_parse_and_be_http_or_https() {
        let url = "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL";
        for (bad, says) in [
            ("ftp://kannel.example/cgi-bin/sendsms", "scheme \"ftp\""),
            ("kannel.example:13013/sendsms", "scheme \"kannel.example\""),
            ("http://user:s3cr3t@[::1/x", "not a valid URL"),
            ("/cgi-bin/sendsms", "not a valid URL"),
        ] {
            let e = Settings::load_from(None, with_kannel(&[(url, bad)])).unwrap_err();
            let e = format!("{e:#}");
            assert!(
                e.contains("\"tsel\"") && e.contains("kannel.sendsms_url"),
                "{e}"
            );
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("s3cr3t"), "a URL is never quoted: {e}");
        }
        for good in [
            "https://sms.example.co.id/api",
            "http://10.1.2.3:13013/cgi-bin/sendsms",
        ] {
            Settings::load_from(None, with_kannel(&[(url, good)])).unwrap();
        }
    }

    /// `method = "POST"` reads from the environment like any setting, and
    /// what Kannel's POST mode would drop is refused at load, naming the
    /// gateway and the setting.
    #[test]
    fn kannel_post_mode_is_checked_at_load() {
        use crate::gateway::kannel::KannelMethod;
        let method = ("PEDULICOVID__GATEWAYS__0__KANNEL__METHOD", "POST");
        let s = Settings::load_from(None, with_kannel(&[method])).unwrap();
        assert_eq!(kannel(&s.gateways[0]).method, KannelMethod::Post);
        let routed = (
            "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
            "http://10.0.0.2:13013/cgi-bin/sendsms?smsc=smsc-jkt-7",
        );
        let e = format!(
            "{:#}",
            Settings::load_from(None, with_kannel(&[method, routed])).unwrap_err()
        );
        assert!(
            e.contains("\"tsel\"") && e.contains("kannel.sendsms_url has query parameters (smsc)"),
            "{e}"
        );
        assert!(!e.contains("smsc-jkt-7"), "a value is never quoted: {e}");
        // The same URL by GET: its query stays first in every request.
        Settings::load_from(None, with_kannel(&[routed])).unwrap();
    }

    #[test]
    fn plain_http_warns_only_beyond_loopback_and_private_networks() {
        for quiet in [
            "http://127.0.0.1:13013/x",
            "http://localhost/x",
            "http://10.0.0.5/x",
            "http://172.20.1.1/x",
            "http://192.168.1.10/x",
            "http://[::1]:80/x",
            "http://[fd12:3456::1]/x",
            "https://203.0.113.9/x",
            "https://sms.example.com/x",
        ] {
            assert!(!plain_http_to_public_host(quiet), "{quiet}");
        }
        for loud in [
            "http://203.0.113.9/x",
            "http://172.32.0.1/x",
            "http://sms.example.com/x",
            "http://[2001:db8::1]/x",
        ] {
            assert!(plain_http_to_public_host(loud), "{loud}");
        }
        assert_eq!(
            url_host("https://u:pw@sms.example.com:8443/send?password=pw"),
            "sms.example.com:8443"
        );
    }

    /// Every string setting a secret, an id or a sender lives in, given
    /// values that look like numbers, booleans or TOML: each arrives as
    /// written.
    #[test]
    fn environment_strings_stay_strings_in_every_secret_and_sender_field() {
        for v in [
            "123456", "1500567", "007", "true", "1.5", "-1", "1e3", "[1]", "0x10",
        ] {
            let long = format!("{v}{}", "0".repeat(32));
            let s = Settings::load_from(
                None,
                env(&[
                    ("PEDULICOVID__DATABASE_URL", v),
                    ("PEDULICOVID__HTTP__PUBLIC_URL", v),
                    ("PEDULICOVID__SMS__TEMPLATES_DIR", v),
                    ("PEDULICOVID__GATEWAYS__0__NAME", "kannel"),
                    // At least 32 characters: the value, then digits.
                    ("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", &long),
                    (
                        "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
                        "http://127.0.0.1:1/cgi-bin/sendsms",
                    ),
                    ("PEDULICOVID__GATEWAYS__0__KANNEL__USERNAME", v),
                    ("PEDULICOVID__GATEWAYS__0__KANNEL__PASSWORD", v),
                    ("PEDULICOVID__GATEWAYS__0__KANNEL__SENDER", v),
                    ("PEDULICOVID__GATEWAYS__1__NAME", "jasmin"),
                    ("PEDULICOVID__GATEWAYS__1__DIALECT", "jasmin"),
                    (
                        "PEDULICOVID__GATEWAYS__1__JASMIN__SEND_URL",
                        "http://127.0.0.1:1/send",
                    ),
                    ("PEDULICOVID__GATEWAYS__1__JASMIN__USERNAME", v),
                    ("PEDULICOVID__GATEWAYS__1__JASMIN__PASSWORD", v),
                    ("PEDULICOVID__GATEWAYS__1__JASMIN__SENDER", v),
                    ("PEDULICOVID__GATEWAYS__2__NAME", "bearer"),
                    ("PEDULICOVID__GATEWAYS__2__DIALECT", "json"),
                    (
                        "PEDULICOVID__GATEWAYS__2__JSON__URL",
                        "https://sms.example/v1",
                    ),
                    ("PEDULICOVID__GATEWAYS__2__JSON__SENDER", v),
                    ("PEDULICOVID__GATEWAYS__2__JSON__AUTH__TYPE", "bearer"),
                    ("PEDULICOVID__GATEWAYS__2__JSON__AUTH__TOKEN", v),
                    ("PEDULICOVID__GATEWAYS__2__JSON__HEADERS__X_API_KEY", v),
                    ("PEDULICOVID__GATEWAYS__3__NAME", "basic"),
                    ("PEDULICOVID__GATEWAYS__3__DIALECT", "json"),
                    (
                        "PEDULICOVID__GATEWAYS__3__JSON__URL",
                        "https://sms.example/v1",
                    ),
                    ("PEDULICOVID__GATEWAYS__3__JSON__AUTH__TYPE", "basic"),
                    ("PEDULICOVID__GATEWAYS__3__JSON__AUTH__USERNAME", v),
                    ("PEDULICOVID__GATEWAYS__3__JSON__AUTH__PASSWORD", v),
                    ("PEDULICOVID__SIMULATOR__USERNAME", v),
                    ("PEDULICOVID__SIMULATOR__PASSWORD", v),
                ]),
            );
            let s = s.unwrap_or_else(|e| panic!("{v:?}: {e:#}"));
            assert_eq!(s.database_url, v);
            assert_eq!(s.http.public_url.as_deref(), Some(v));
            assert_eq!(s.sms.templates_dir, v);
            let [k, j, b, basic] = &s.gateways[..] else {
                panic!("four gateways: {:?}", s.gateways);
            };
            assert_eq!(k.callback_secret.expose(), long);
            assert_eq!(kannel(k).username, v);
            assert_eq!(kannel(k).password.expose(), v);
            assert_eq!(kannel(k).sender, v);
            assert_eq!(jasmin(j).username, v);
            assert_eq!(jasmin(j).password.expose(), v);
            assert_eq!(jasmin(j).sender, v);
            assert_eq!(json(b).sender, v);
            assert_eq!(
                json(b).auth,
                crate::gateway::json::JsonAuth::Bearer {
                    token: Secret::new(v)
                }
            );
            assert_eq!(
                json(b).headers.get("x_api_key").map(Secret::expose),
                Some(v),
                "{:?}",
                json(b).headers.keys().collect::<Vec<_>>()
            );
            assert_eq!(
                json(basic).auth,
                crate::gateway::json::JsonAuth::Basic {
                    username: v.to_string(),
                    password: Secret::new(v)
                }
            );
            assert_eq!(s.simulator.username, v);
            assert_eq!(s.simulator.password.expose(), v);
        }
    }

    #[test]
    fn environment_numbers_booleans_and_lists_parse_where_the_field_is_one() {
        let s = Settings::load_from(
            None,
            with_kannel(&[
                ("PEDULICOVID__WORKER__MAX_ATTEMPTS", "007"),
                ("PEDULICOVID__WORKER__AUTO_PAUSE_THRESHOLD", "0.25"),
                ("PEDULICOVID__WORKER__POLICY", "at_most_once"),
                ("PEDULICOVID__HTTP__BODY_LIMIT_BYTES", " 4096 "),
                ("PEDULICOVID__GATEWAYS__0__RATE_PER_SEC", "50"),
                (
                    "PEDULICOVID__GATEWAYS__0__OPERATORS",
                    "[\"telkomsel\", \"indosat\"]",
                ),
                ("PEDULICOVID__GATEWAYS__0__KANNEL__DLR_MASK", "31"),
                ("PEDULICOVID__GATEWAYS__1__NAME", "j"),
                ("PEDULICOVID__GATEWAYS__1__DIALECT", "jasmin"),
                (
                    "PEDULICOVID__GATEWAYS__1__JASMIN__SEND_URL",
                    "http://127.0.0.1:1/send",
                ),
                ("PEDULICOVID__GATEWAYS__1__JASMIN__DLR_LEVEL", "2"),
                ("PEDULICOVID__GATEWAYS__2__NAME", "a"),
                ("PEDULICOVID__GATEWAYS__2__DIALECT", "json"),
                (
                    "PEDULICOVID__GATEWAYS__2__JSON__URL",
                    "https://sms.example/v1",
                ),
                (
                    "PEDULICOVID__GATEWAYS__2__JSON__THROTTLE_STATUS",
                    "[429, 503]",
                ),
                ("PEDULICOVID__SIMULATOR__RECORD_ATTEMPTS", "FALSE"),
                ("PEDULICOVID__SIMULATOR__SEED", "42"),
            ]),
        )
        .unwrap();
        assert_eq!(s.worker.max_attempts, 7);
        assert_eq!(s.worker.auto_pause_threshold, 0.25);
        assert_eq!(s.worker.policy, DeliveryPolicy::AtMostOnce);
        assert_eq!(s.http.body_limit_bytes, 4096);
        assert_eq!(s.gateways[0].rate_per_sec, 50);
        assert_eq!(s.gateways[0].operators, ["telkomsel", "indosat"]);
        assert_eq!(kannel(&s.gateways[0]).dlr_mask, 31);
        assert_eq!(
            jasmin(&s.gateways[1]).dlr_level,
            crate::gateway::jasmin::DlrLevel::Terminal
        );
        assert_eq!(json(&s.gateways[2]).throttle_status, [429, 503]);
        assert!(!s.simulator.record_attempts);
        assert_eq!(s.simulator.seed, Some(42));
    }

    #[test]
    fn a_bad_environment_value_names_its_field() {
        for (var, value, path) in [
            (
                "PEDULICOVID__WORKER__MAX_ATTEMPTS",
                "many",
                "worker.max_attempts",
            ),
            (
                "PEDULICOVID__GATEWAYS__0__RATE_PER_SEC",
                "fast",
                "gateways[0].rate_per_sec",
            ),
            (
                "PEDULICOVID__GATEWAYS__0__RATE_PER_SEC",
                "-5",
                "gateways[0].rate_per_sec",
            ),
            (
                "PEDULICOVID__GATEWAYS__0__KANNEL__DLR_MASK",
                "300",
                "gateways[0].kannel.dlr_mask",
            ),
            (
                "PEDULICOVID__SIMULATOR__RECORD_ATTEMPTS",
                "yes",
                "simulator.record_attempts",
            ),
            (
                "PEDULICOVID__GATEWAYS__0__OPERATORS",
                "telkomsel",
                "gateways[0].operators",
            ),
        ] {
            let e = Settings::load_from(None, with_kannel(&[(var, value)])).unwrap_err();
            let e = format!("{e:#}");
            assert!(e.contains(path) && e.contains(value), "{var}={value}: {e}");
        }
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "database_url = \"postgres://app:dbpass@x/y\"\n[worker]\nmax_attempts = 7\n\
             [[gateways]]\nname = \"tsel\"\nrate_per_sec = 10\n[gateways.kannel]\npassword = \"hunter2\"\n\
             sendsms_url = \"http://10.0.0.2:13013/cgi-bin/sendsms\"\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&f),
            env(&[
                ("PEDULICOVID__WORKER__MAX_ATTEMPTS", "3"),
                ("PEDULICOVID__GATEWAYS__0__RATE_PER_SEC", "50"),
                ("PEDULICOVID__HTTP__PUBLIC_URL", "https://dispatch.example"),
                ("UNRELATED", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.database_url, "postgres://app:dbpass@x/y");
        assert_eq!(s.worker.max_attempts, 3);
        assert_eq!(s.gateways[0].name, "tsel");
        assert_eq!(s.gateways[0].rate_per_sec, 50);
        assert_eq!(
            s.http.public_url.as_deref(),
            Some("https://dispatch.example")
        );
        assert_eq!(kannel(&s.gateways[0]).password.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"), "secrets never print");
        assert!(
            !format!("{s:?}").contains("dbpass"),
            "nor a database password"
        );
    }

    #[test]
    fn callback_secrets_are_long_enough_and_previous_ones_expire() {
        // Gateway 0 named and pointed somewhere; the pairs given add to it.
        let gw_env = |pairs: &[(&str, &str)]| {
            let mut all = env(&[
                ("PEDULICOVID__GATEWAYS__0__NAME", "tsel"),
                (
                    "PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL",
                    "http://127.0.0.1:13013/cgi-bin/sendsms",
                ),
            ]);
            all.extend(env(pairs));
            all
        };
        let e = Settings::load_from(
            None,
            gw_env(&[
                ("PEDULICOVID__GATEWAYS__0__NAME", "tsel"),
                ("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", "short-secret"),
            ]),
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(e.contains("\"tsel\"") && e.contains("at least 32"), "{e}");
        assert!(!e.contains("short-secret"), "the secret never prints: {e}");
        let long = "s".repeat(32);
        let ok = Settings::load_from(
            None,
            gw_env(&[("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", long.as_str())]),
        );
        assert!(ok.is_ok(), "{:?}", ok.err());
        // A previous secret needs its deadline, as RFC 3339.
        let prev = "p".repeat(40);
        let e = Settings::load_from(
            None,
            gw_env(&[
                ("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", long.as_str()),
                (
                    "PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET_PREVIOUS",
                    prev.as_str(),
                ),
            ]),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("callback_secret_previous_until"),
            "{e:#}"
        );
        let e = Settings::load_from(
            None,
            gw_env(&[
                ("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", long.as_str()),
                (
                    "PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET_PREVIOUS",
                    prev.as_str(),
                ),
                (
                    "PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET_PREVIOUS_UNTIL",
                    "next week",
                ),
            ]),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("RFC 3339"), "{e:#}");
        let s = Settings::load_from(
            None,
            gw_env(&[
                ("PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET", long.as_str()),
                (
                    "PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET_PREVIOUS",
                    prev.as_str(),
                ),
                (
                    "PEDULICOVID__GATEWAYS__0__CALLBACK_SECRET_PREVIOUS_UNTIL",
                    "2026-12-09T00:00:00Z",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.gateways[0].previous_secret_until_ms().unwrap(),
            1_796_774_400_000
        );
    }

    #[test]
    fn bad_settings_say_what_is_wrong() {
        let e = Settings::load_from(None, env(&[("PEDULICOVID__WORKER__MAX_ATTEMPTS", "many")]))
            .unwrap_err();
        assert!(format!("{e:#}").contains("max_attempts"), "{e:#}");
        let e =
            Settings::load_from(None, env(&[("PEDULICOVID__WORKER__NO_SUCH", "1")])).unwrap_err();
        assert!(format!("{e:#}").contains("no_such"), "{e:#}");
        let e = Settings::load_from(
            None,
            with_kannel(&[("PEDULICOVID__GATEWAYS__0__DIALECT", "smpp")]),
        )
        .unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("gateways[0].dialect") && e.contains("smpp"),
            "{e}"
        );
        for known in Dialect::ALL {
            assert!(e.contains(known.as_str()), "lists {known}: {e}");
        }
    }
}

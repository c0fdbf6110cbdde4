//! Typed settings: defaults that work with no configuration at all, an
//! optional TOML file, and `PEDULICOVID__SECTION__KEY` environment overrides.
//!
//! Precedence, lowest first: built-in defaults → `pedulicovid.toml` (or
//! `--config FILE`) → environment → command-line flags (`--database-url`).
//! Secrets are [`Secret`]s and never appear in `Debug` output or logs.

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::gateway::jasmin::JasminConfig;
use crate::gateway::json::JsonConfig;
use crate::gateway::kannel::KannelConfig;
use crate::secret::Secret;
use crate::simulator::SimulatorConfig;

/// Environment variables starting with this prefix override settings;
/// `__` separates the path: `PEDULICOVID__WORKER__MAX_ATTEMPTS=3`,
/// `PEDULICOVID__GATEWAYS__0__RATE_PER_SEC=50`.
pub const ENV_PREFIX: &str = "PEDULICOVID__";

/// Everything the program can be told.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `sqlite://FILE` (default `sqlite://pedulicovid.db`) or `postgres://…`.
    pub database_url: String,
    pub http: HttpSettings,
    pub worker: WorkerSettings,
    pub sms: SmsSettings,
    /// Carrier gateways in routing order; the first is the default route.
    pub gateways: Vec<GatewaySettings>,
    /// The built-in carrier simulator, run in-process by `run` and `serve`
    /// when enabled (the default, so a fresh checkout works end to end).
    pub simulator: SimulatorSettings,
    /// The WhatsApp chatbot's API.
    pub chatbot: ChatbotSettings,
}

/// The WhatsApp chatbot's API (`[chatbot]`).
#[derive(Debug, Clone, Default, Deserialize)]
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
        } = self;
        f.debug_struct("Settings")
            .field("database_url", &crate::secret::DebugUrl(database_url))
            .field("http", http)
            .field("worker", worker)
            .field("sms", sms)
            .field("gateways", gateways)
            .field("simulator", simulator)
            .field("chatbot", chatbot)
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
            gateways: vec![GatewaySettings::default()],
            simulator: SimulatorSettings::default(),
            chatbot: ChatbotSettings::default(),
        }
    }
}

/// The HTTP server: receipts, APIs, metrics.
#[derive(Debug, Clone, Deserialize)]
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
    /// Receipt group-commit tasks (0 = by backend: 1 on SQLite, 3 on
    /// PostgreSQL).
    pub receipt_batchers: usize,
    /// Most receipts stored and applied in one transaction.
    pub receipt_max_batch: usize,
    /// Receipts waiting for a batcher at most; callbacks beyond it wait for
    /// room (the queue never grows past this).
    pub receipt_queue: usize,
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
#[derive(Debug, Clone, Deserialize)]
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
#[derive(Debug, Clone, Deserialize)]
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

/// One carrier gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Name used in routing, `messages.gateway` and the callback path.
    pub name: String,
    /// `kannel`, `jasmin` or `json` (the built-in simulator speaks each).
    pub dialect: String,
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
    /// and kept in the database, so every process sharing it agrees.
    pub callback_secret: Secret,
    /// Settings of the `kannel` dialect.
    pub kannel: KannelConfig,
    /// Settings of the `jasmin` dialect.
    pub jasmin: JasminConfig,
    /// Settings of the `json` dialect (a new aggregator is configuration).
    pub json: JsonConfig,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            name: "sim".into(),
            dialect: "kannel".into(),
            rate_per_sec: 0,
            segments_per_sec: 0,
            operators: vec![],
            breaker_threshold: 20,
            breaker_cool_down_secs: 30,
            callback_secret: Secret::default(),
            kannel: KannelConfig::default(),
            jasmin: JasminConfig::default(),
            json: JsonConfig::default(),
        }
    }
}

/// The in-process simulator.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Start it inside `run` / `serve`.
    pub enabled: bool,
    #[serde(flatten)]
    pub config: SimulatorConfig,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        SimulatorSettings {
            enabled: true,
            config: SimulatorConfig::default(),
        }
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
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(Path::new("pedulicovid.toml").to_path_buf()).filter(|p| p.exists()),
        };
        if let Some(file) = &file {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading settings file {}", file.display()))?;
            let overlay: toml::Table = text
                .parse()
                .with_context(|| format!("parsing settings file {}", file.display()))?;
            merge(&mut tree, overlay);
        }
        for (key, value) in env {
            if let Some(path) = key.strip_prefix(ENV_PREFIX) {
                set_path(&mut tree, path, &value)
                    .with_context(|| format!("environment variable {key}"))?;
            }
        }
        let settings: Settings = toml::Value::Table(tree)
            .try_into()
            .context("invalid settings (check the file and PEDULICOVID__* variables)")?;
        settings.check()?;
        Ok(settings)
    }

    /// Cross-field checks that serde cannot express.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.gateways.is_empty() {
            bail!("settings: at least one gateway is required");
        }
        let mut names = std::collections::HashSet::new();
        for g in &self.gateways {
            if !matches!(g.dialect.as_str(), "kannel" | "jasmin" | "json") {
                bail!(
                    "gateway {:?}: unknown dialect {:?} (known: kannel, jasmin, json)",
                    g.name,
                    g.dialect
                );
            }
            if !names.insert(g.name.as_str()) {
                bail!("gateway {:?} is configured twice", g.name);
            }
            if g.name.is_empty()
                || !g
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                bail!(
                    "gateway name {:?}: use letters, digits, '-' and '_' only",
                    g.name
                );
            }
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
        Ok(())
    }

    /// The base URL carriers call back on.
    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.http.public_url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
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

/// Sets `A__B__0__C` (case-insensitive keys) to `raw`, read as a TOML value
/// when it parses as one (numbers, booleans, arrays), else as a string.
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
    *slot = parse_scalar(raw);
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
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

    #[test]
    fn defaults_work_with_nothing_configured() {
        let s = Settings::load_from(Some(Path::new("/nonexistent/x.toml")), vec![]);
        assert!(s.is_err(), "an explicit file that is missing is an error");
        let s = Settings::load_from(None, vec![]).unwrap();
        assert_eq!(s.database_url, "sqlite://pedulicovid.db");
        assert_eq!(s.gateways.len(), 1);
        assert_eq!(s.gateways[0].name, "sim");
        assert!(s.simulator.enabled);
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.toml");
        std::fs::write(
            &f,
            "database_url = \"postgres://app:dbpass@x/y\"\n[worker]\nmax_attempts = 7\n\
             [[gateways]]\nname = \"tsel\"\nrate_per_sec = 10\n[gateways.kannel]\npassword = \"hunter2\"\n",
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
        assert_eq!(s.gateways[0].kannel.password.expose(), "hunter2");
        assert!(!format!("{s:?}").contains("hunter2"), "secrets never print");
        assert!(
            !format!("{s:?}").contains("dbpass"),
            "nor a database password"
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
        let e = Settings::load_from(None, env(&[("PEDULICOVID__GATEWAYS__0__DIALECT", "smpp")]))
            .unwrap_err();
        assert!(format!("{e:#}").contains("unknown dialect"), "{e:#}");
    }
}

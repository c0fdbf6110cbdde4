//! Wiring: builds the store, renderer, gateways, HTTP server, workers and
//! housekeeping from [`Settings`], and stops them cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{Dialect, Settings};
use crate::dispatch::{housekeeping, Dispatcher, Route, Router};
use crate::domain::Operator;
use crate::gateway::callback::{CallbackKeys, CallbackUrl, KeySet};
use crate::gateway::{DialectSettings, GatewayDialect};
use crate::http::{self, AppState, CallbackGateway};
use crate::render::Renderer;
use crate::secret::Secret;
use crate::store::{redact_url, Store};
use carrier_sim::{SimDialect, SimHandle, Simulator, SimulatorConfig};

/// Which parts to run in this process.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    /// Receipt callbacks and the API.
    pub http: bool,
    /// Number of dispatch workers (0 = none).
    pub workers: usize,
    /// Campaign state, lease expiry, receipt timeouts.
    pub housekeeping: bool,
    /// May start the in-process carrier simulator, for the gateways that
    /// ask for it (`dialect = "simulator"`) and only for them. Off only in
    /// tests that must send nowhere.
    pub simulator: bool,
}

impl Parts {
    /// `pedulicovid run`: everything in one process.
    pub const ALL: Parts = Parts {
        http: true,
        workers: 1,
        housekeeping: true,
        simulator: true,
    };
    /// `pedulicovid serve`.
    pub const SERVE: Parts = Parts {
        http: true,
        workers: 0,
        housekeeping: true,
        simulator: true,
    };
    /// `pedulicovid worker`.
    pub const WORKER: Parts = Parts {
        http: false,
        workers: 1,
        housekeeping: true,
        simulator: true,
    };
}

/// Why `run` and `worker` refuse to start without a gateway, and what to
/// add.
pub const NO_GATEWAY: &str = "no gateway configured: `run` and `worker` send only through \
gateways you configure. Add one to pedulicovid.toml:\n  [[gateways]]\n  name = \"telkomsel\"\n  \
dialect = \"kannel\"\n  [gateways.kannel]\n  sendsms_url = \"http://kannel.example:13013/cgi-bin/sendsms\"\n  \
username = \"…\"\n  password = \"…\"\nor through the environment: PEDULICOVID__GATEWAYS__0__NAME, \
PEDULICOVID__GATEWAYS__0__DIALECT, PEDULICOVID__GATEWAYS__0__KANNEL__SENDSMS_URL, \
PEDULICOVID__GATEWAYS__0__KANNEL__USERNAME, PEDULICOVID__GATEWAYS__0__KANNEL__PASSWORD. \
To try pedulicovid against the built-in carrier simulator instead, run `pedulicovid demo`";

/// SIMULATOR HOOK (`dialect = "simulator"`; the simulator's only wiring
/// into gateway building): what the gateway `name` that asked for the
/// built-in simulator puts on the wire. The dialect the simulator speaks
/// (`simulator.dialect`), with the gateway's table of that dialect when it
/// has one (a timeout, a JSON template) or that dialect's defaults, pointed
/// at the running simulator (`handle`) with the simulator's credentials.
/// No other gateway's address or credentials are ever set from elsewhere.
/// Without a running simulator (a process that may not start one) the
/// settings stay as they are. The result goes through the one
/// [`crate::gateway::build`] like every other gateway's.
fn simulator_wire(
    name: &str,
    tuning: Option<&DialectSettings>,
    sim: &SimulatorConfig,
    handle: Option<&SimHandle>,
) -> anyhow::Result<DialectSettings> {
    let speaks = match sim.dialect {
        SimDialect::Kannel => Dialect::Kannel,
        SimDialect::Jasmin => Dialect::Jasmin,
        SimDialect::Json => Dialect::Json,
    };
    let mut wire = match tuning {
        Some(t) if t.dialect() != speaks => anyhow::bail!(
            "gateway {name:?} (dialect simulator) has a [gateways.{}] table, but the \
             simulator speaks {speaks} (simulator.dialect): give it the [gateways.{speaks}] \
             table, or none",
            t.dialect()
        ),
        Some(t) => t.clone(),
        None => DialectSettings::default_for(speaks)
            .context("the simulator speaks a carrier dialect")?,
    };
    let Some(h) = handle else {
        return Ok(wire);
    };
    // The simulator's password is its own type (it does not depend on
    // this crate); the gateway holds it as a `Secret` like any other.
    let password = Secret::new(sim.password.expose());
    match &mut wire {
        DialectSettings::Kannel(c) => {
            c.sendsms_url = h.sendsms_url();
            c.username = sim.username.clone();
            c.password = password;
        }
        DialectSettings::Jasmin(c) => {
            c.send_url = h.send_url();
            c.username = sim.username.clone();
            c.password = password;
        }
        DialectSettings::Json(c) => {
            c.url = h.send_url();
            c.auth = crate::gateway::json::JsonAuth::Bearer { token: password };
        }
    }
    Ok(wire)
}

/// A running pedulicovid.
pub struct App {
    pub store: Store,
    pub settings: Settings,
    pub renderer: Arc<Renderer>,
    /// Where the HTTP server listens, when it runs.
    pub http_addr: Option<SocketAddr>,
    /// The in-process simulator, when it runs.
    pub simulator: Option<SimHandle>,
    /// Where a worker without the HTTP server serves `/metrics`
    /// (`[metrics] listen`), when it does.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl App {
    /// Connects, migrates, and starts the requested parts.
    pub async fn start(settings: Settings, parts: Parts) -> anyhow::Result<App> {
        settings.check()?;
        // Callback URLs nobody can reach: refused or warned about before
        // anything starts (see `Settings::check_callback_base`).
        for w in settings.check_callback_base()? {
            warn!("{w}");
        }
        if parts.workers > 0 && settings.gateways.is_empty() {
            anyhow::bail!("{}", NO_GATEWAY);
        }
        if parts.http && settings.gateways.is_empty() {
            warn!(
                "no gateway configured: nothing will be sent and no receipt can be taken \
                 (add [[gateways]] to the settings; see `pedulicovid demo` for a trial)"
            );
        }
        let wants_simulator = settings
            .gateways
            .iter()
            .any(|g| g.dialect == Dialect::Simulator);
        if wants_simulator && parts.workers > 0 && !parts.simulator {
            anyhow::bail!("a gateway asks for the simulator, which this process may not start");
        }
        let store = Store::connect(&settings.database_url)
            .await
            .with_context(|| format!("opening database {}", redact_url(&settings.database_url)))?;
        store.migrate().await.context("applying migrations")?;
        let store = store.with_limits(settings.limits.store());
        let renderer = Arc::new(Renderer::load(Some(std::path::Path::new(
            &settings.sms.templates_dir,
        )))?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![];

        // The simulator runs only when a gateway names it; only those
        // gateways are wired to it (below).
        let mut simulator = None;
        if parts.simulator && wants_simulator {
            let sim = Simulator::bind(settings.simulator.clone()).await?;
            let handle = sim.handle();
            let mut rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let _ = sim
                    .run(async move {
                        let _ = rx.wait_for(|s| *s).await;
                    })
                    .await;
            }));
            simulator = Some(handle);
        }

        let listener = if parts.http {
            let addr: SocketAddr = tokio::net::lookup_host(&settings.http.listen)
                .await
                .with_context(|| format!("http.listen {:?}", settings.http.listen))?
                .next()
                .context("http.listen resolves to nothing")?;
            let socket = if addr.is_ipv4() {
                tokio::net::TcpSocket::new_v4()?
            } else {
                tokio::net::TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            socket
                .bind(addr)
                .with_context(|| format!("binding HTTP server to {addr}"))?;
            // Carriers send receipts in bursts of hundreds of connections.
            Some(socket.listen(1024)?)
        } else {
            None
        };
        let http_addr = listener.as_ref().map(|l| l.local_addr()).transpose()?;
        let public_url = match http_addr {
            Some(a) => settings.public_url(a),
            None => settings.http.public_url.clone().unwrap_or_else(|| {
                format!("{}://{}", settings.http_scheme(), settings.http.listen)
            }),
        };

        // Callback tokens: configured, or generated once and shared through
        // the database.
        // Per-message callback URLs carry a MAC of (gateway, message id)
        // keyed by that secret (gateway::callback); the secret itself is
        // never in them.
        let mut callbacks = HashMap::new();
        let mut routes = vec![];
        let mut all_keys = vec![];
        for g in &settings.gateways {
            let keys = if g.callback_secret.is_empty() {
                let grace_ms = i64::try_from(g.callback_secret_grace_secs.saturating_mul(1000))
                    .unwrap_or(i64::MAX);
                CallbackKeys::generated(g.name.clone(), grace_ms, &store).await?
            } else {
                CallbackKeys::configured(
                    g.name.clone(),
                    KeySet {
                        current: g.callback_secret.clone(),
                        previous: Some(g.callback_secret_previous.clone())
                            .filter(|p| !p.is_empty()),
                        previous_until_ms: g.previous_secret_until_ms()?,
                    },
                )
            };
            all_keys.push(keys.clone());
            let callback_url = CallbackUrl::Signed {
                base: format!("{public_url}/callbacks/{}", g.name),
                keys: keys.clone(),
            };
            // Every loop of this process shares the gateway's client: the
            // pool keeps a connection for each request they can have in
            // flight together. A smaller pool closes the surplus each time
            // a batch's requests come back at once and opens it again for
            // the next batch (one new connection per five sends measured).
            let idle = settings
                .worker
                .concurrency
                .saturating_mul(parts.workers.max(1))
                .max(8);
            // What goes on the wire, and where: the gateway's own dialect
            // settings, or, for the one that asked for the simulator by
            // name, the simulator's dialect, address and credentials.
            let wire = match &g.dialect {
                GatewayDialect::Carrier(own) => own.clone(),
                GatewayDialect::Simulator(tuning) => simulator_wire(
                    &g.name,
                    tuning.as_ref(),
                    &settings.simulator,
                    simulator.as_ref(),
                )?,
            };
            info!(
                gateway = %g.name,
                dialect = %g.dialect,
                wire = %wire.dialect(),
                host = %crate::config::url_host(wire.send_url()),
                "gateway configured"
            );
            if crate::config::plain_http_to_public_host(wire.send_url()) {
                warn!(
                    gateway = %g.name,
                    host = %crate::config::url_host(wire.send_url()),
                    "plain http to a host that is neither loopback nor private: credentials \
                     and message text cross the network in clear; use https"
                );
            }
            let built = crate::gateway::build(&g.name, &wire, callback_url, &g.tls, idle)?;
            let operators = g
                .operators
                .iter()
                .map(|o| {
                    Operator::from_str_name(o)
                        .with_context(|| format!("gateway {}: unknown operator {o:?}", g.name))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            routes.push(
                Route::new(built.gateway, g.rate_per_sec, g.segments_per_sec, operators)
                    .with_breaker(
                        g.breaker_threshold,
                        Duration::from_secs(g.breaker_cool_down_secs),
                    ),
            );
            // The gateway-wide token only for an aggregator that is never
            // handed a per-message URL (gateway::callback).
            keys.accept_gateway_token(built.fixed_callback_url);
            callbacks.insert(
                g.name.clone(),
                CallbackGateway {
                    keys,
                    parser: built.receipts,
                    metrics: crate::metrics::METRICS.gateways.get(&g.name),
                },
            );
        }
        // Only workers route; `serve` may run without any gateway.
        let router = (parts.workers > 0)
            .then(|| Arc::new(Router::new(routes, settings.worker.global_rate_per_sec)));
        // A generated secret rotated by `gateways rotate-secret` reaches
        // every process within half a minute (the callback endpoint also
        // reloads at once when a token does not verify).
        if all_keys.iter().any(|k| k.is_generated()) {
            let (store, mut rx) = (store.clone(), shutdown_rx.clone());
            tasks.push(tokio::spawn(async move {
                while !*rx.borrow() {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(30)) => {}
                        _ = rx.changed() => {}
                    }
                    for k in &all_keys {
                        if let Err(e) = k.reload(&store).await {
                            tracing::warn!(gateway = %k.gateway(), error = %e, "reloading the callback secret failed");
                        }
                    }
                }
            }));
        }

        // Read before anything is served: a bad certificate or key is a
        // start-up error naming the field.
        let server_tls = match (&settings.http.tls_cert_file, &settings.http.tls_key_file) {
            (Some(cert), Some(key)) if parts.http => {
                Some(Arc::new(http::ServerTls::load(cert, key)?))
            }
            _ => None,
        };
        if let Some(listener) = listener {
            let batchers = match settings.http.receipt_batchers {
                0 => http::ReceiptBatcher::default_tasks(store.backend()),
                n => n,
            };
            let state = AppState::new(http::AppStateParts {
                store: store.clone(),
                callbacks: Arc::new(callbacks),
                receipts: http::ReceiptBatcher::spawn(
                    store.clone(),
                    batchers,
                    settings.http.receipt_max_batch,
                    settings.http.receipt_queue,
                ),
                api: http::api::ApiState::new(renderer.clone(), settings.sms.max_segments)
                    .with_reregistration(settings.chatbot.reregistration)
                    .with_chatbot_rate(settings.limits.chatbot_rate_per_sec),
                ui_secure_cookies: http::ui::session::secure_cookies(
                    settings.http.ui_secure_cookies,
                    listener.local_addr()?.ip(),
                ),
            });
            info!(
                secure = state.ui_secure_cookies,
                "support UI cookies: Secure on every answer (true), or only for requests over HTTPS (false)"
            );
            let app = http::router(
                state,
                settings.http.body_limit_bytes,
                Duration::from_millis(settings.http.request_timeout_ms),
            );
            let mut rx = shutdown_rx.clone();
            info!(addr = ?http_addr, tls = server_tls.is_some(), "HTTP server listening");
            let header_read_timeout = Duration::from_millis(settings.http.header_read_timeout_ms);
            tasks.push(tokio::spawn(http::serve_with(
                listener,
                app,
                header_read_timeout,
                server_tls,
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            )));
        }

        // A worker without the HTTP server still shows its sends, failures,
        // latencies, waits and breakers to Prometheus.
        let mut metrics_addr = None;
        if !parts.http && parts.workers > 0 && !settings.metrics.listen.is_empty() {
            let listener = tokio::net::TcpListener::bind(&settings.metrics.listen)
                .await
                .with_context(|| {
                    format!(
                        "metrics.listen {:?}: cannot listen (another worker on this host? \
                         give each its own port, or \"\" for none)",
                        settings.metrics.listen
                    )
                })?;
            let addr = listener.local_addr()?;
            info!(%addr, "worker metrics on http://{addr}/metrics");
            metrics_addr = Some(addr);
            let mut rx = shutdown_rx.clone();
            tasks.push(tokio::spawn(http::serve(
                listener,
                http::metrics_router(),
                Duration::from_millis(settings.http.header_read_timeout_ms),
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            )));
        }

        if let Some(router) = &router {
            tasks.push(tokio::spawn(crate::dispatch::heartbeat(
                store.clone(),
                router.clone(),
                crate::dispatch::process_id(),
                shutdown_rx.clone(),
            )));
            for _ in 0..parts.workers {
                let d = Dispatcher::new(
                    store.clone(),
                    renderer.clone(),
                    router.clone(),
                    settings.worker.clone(),
                    settings.sms.clone(),
                );
                tasks.push(tokio::spawn(d.run(shutdown_rx.clone())));
            }
        }
        if parts.housekeeping {
            tasks.push(tokio::spawn(housekeeping(
                store.clone(),
                settings.worker.clone(),
                shutdown_rx.clone(),
            )));
            tasks.push(tokio::spawn(crate::dispatch::retention(
                store.clone(),
                settings.retention.policy(&settings.worker),
                std::time::Duration::from_secs(settings.retention.interval_secs.max(1)),
                shutdown_rx.clone(),
            )));
        }

        Ok(App {
            store,
            settings,
            renderer,
            http_addr,
            simulator,
            metrics_addr,
            shutdown,
            tasks,
        })
    }

    /// The HTTP port (tests start with port 0).
    pub fn port(&self) -> Option<u16> {
        self.http_addr.map(|a| a.port())
    }

    /// Stops claiming, lets the batch in hand finish and be recorded, stops
    /// the server, and waits (at most `grace`) for everything to end.
    pub async fn stop(self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!(
                "shutdown grace period ran out; leases left will expire and be recovered"
            );
        }
        self.store.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::json::JsonConfig;
    use crate::gateway::kannel::KannelConfig;

    /// A simulator gateway speaks what the simulator speaks: its own table
    /// tunes that dialect, and a table of another dialect is refused at
    /// start, naming the gateway.
    #[test]
    fn a_simulator_gateway_speaks_the_simulator_dialect() {
        let sim = SimulatorConfig {
            dialect: SimDialect::Json,
            ..SimulatorConfig::default()
        };
        let wire = simulator_wire("sim", None, &sim, None).unwrap();
        assert_eq!(wire.dialect(), Dialect::Json);
        let tuned: DialectSettings = JsonConfig {
            timeout_ms: 300,
            ..JsonConfig::default()
        }
        .into();
        let wire = simulator_wire("sim", Some(&tuned), &sim, None).unwrap();
        assert!(matches!(wire, DialectSettings::Json(c) if c.timeout_ms == 300));
        let other: DialectSettings = KannelConfig::default().into();
        let e = simulator_wire("sim", Some(&other), &sim, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"sim\"") && e.contains("[gateways.kannel]") && e.contains("json"),
            "{e}"
        );
    }
}

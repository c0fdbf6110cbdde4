//! Wiring: builds the store, renderer, gateways, HTTP server, workers and
//! housekeeping from [`Settings`], and stops them cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::config::Settings;
use crate::dispatch::{housekeeping, Dispatcher, Route, Router};
use crate::domain::Operator;
use crate::gateway::jasmin::{JasminGateway, JasminReceipts};
use crate::gateway::json::{JsonGateway, JsonReceipts};
use crate::gateway::kannel::{KannelGateway, KannelReceipts};
use crate::gateway::ReceiptParser;
use crate::gateway::{http as gwhttp, Gateway};
use crate::http::{self, AppState, CallbackGateway};
use crate::render::Renderer;
use crate::simulator::{SimHandle, Simulator};
use crate::store::{redact_url, Store};

/// Which parts to run in this process.
#[derive(Debug, Clone, Copy)]
pub struct Parts {
    /// Receipt callbacks and the API.
    pub http: bool,
    /// Number of dispatch workers (0 = none).
    pub workers: usize,
    /// Campaign state, lease expiry, receipt timeouts.
    pub housekeeping: bool,
    /// The in-process carrier simulator (when `simulator.enabled`).
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
        simulator: false,
    };
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
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl App {
    /// Connects, migrates, and starts the requested parts.
    pub async fn start(mut settings: Settings, parts: Parts) -> anyhow::Result<App> {
        let store = Store::connect(&settings.database_url)
            .await
            .with_context(|| format!("opening database {}", redact_url(&settings.database_url)))?;
        store.migrate().await.context("applying migrations")?;
        let renderer = Arc::new(Renderer::load(Some(std::path::Path::new(
            &settings.sms.templates_dir,
        )))?);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![];

        let mut simulator = None;
        if parts.simulator && settings.simulator.enabled {
            let sim = Simulator::bind(settings.simulator.config.clone()).await?;
            let handle = sim.handle();
            // The gateway named "sim" is the simulator's: point it there,
            // whatever port it got.
            if let Some(g) = settings.gateways.iter_mut().find(|g| g.name == "sim") {
                g.dialect = handle.dialect().as_str().to_string();
                g.kannel.sendsms_url = handle.sendsms_url();
                g.kannel.username = settings.simulator.config.username.clone();
                g.kannel.password = settings.simulator.config.password.clone();
                g.jasmin.send_url = handle.send_url();
                g.jasmin.username = settings.simulator.config.username.clone();
                g.jasmin.password = settings.simulator.config.password.clone();
                g.json.url = handle.send_url();
                g.json.auth = crate::gateway::json::JsonAuth::Bearer {
                    token: settings.simulator.config.password.clone(),
                };
            }
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
            None => settings
                .http
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", settings.http.listen)),
        };

        // Callback tokens: configured, or generated once and shared through
        // the database.
        let mut callbacks = HashMap::new();
        let mut routes = vec![];
        for g in &settings.gateways {
            let secret = if g.callback_secret.is_empty() {
                store.gateway_secret(&g.name).await?
            } else {
                g.callback_secret.clone()
            };
            let callback_url = format!("{public_url}/callbacks/{}/{}", g.name, secret.expose());
            let idle = settings.worker.concurrency.max(8);
            let (gateway, parser): (Arc<dyn Gateway>, Arc<dyn ReceiptParser>) =
                match g.dialect.as_str() {
                    "jasmin" => (
                        Arc::new(JasminGateway::new(
                            g.name.clone(),
                            g.jasmin.clone(),
                            callback_url,
                            gwhttp::client(g.jasmin.timeout(), idle),
                        )),
                        Arc::new(JasminReceipts),
                    ),
                    "json" => (
                        Arc::new(
                            JsonGateway::new(
                                g.name.clone(),
                                g.json.clone(),
                                callback_url,
                                gwhttp::client(g.json.timeout(), idle),
                            )
                            .with_context(|| format!("gateway {}: json settings", g.name))?,
                        ),
                        Arc::new(JsonReceipts::new(g.json.receipt.clone()).with_context(|| {
                            format!("gateway {}: json receipt mapping", g.name)
                        })?),
                    ),
                    _ => (
                        Arc::new(KannelGateway::new(
                            g.name.clone(),
                            g.kannel.clone(),
                            callback_url,
                            gwhttp::client(g.kannel.timeout(), idle),
                        )),
                        Arc::new(KannelReceipts),
                    ),
                };
            let operators = g
                .operators
                .iter()
                .map(|o| {
                    Operator::from_str_name(o)
                        .with_context(|| format!("gateway {}: unknown operator {o:?}", g.name))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            routes.push(
                Route::new(gateway, g.rate_per_sec, g.segments_per_sec, operators).with_breaker(
                    g.breaker_threshold,
                    Duration::from_secs(g.breaker_cool_down_secs),
                ),
            );
            callbacks.insert(
                g.name.clone(),
                CallbackGateway {
                    secret,
                    parser,
                    metrics: crate::metrics::METRICS.gateways.get(&g.name),
                },
            );
        }
        let router = Arc::new(Router::new(routes, settings.worker.global_rate_per_sec));

        if let Some(listener) = listener {
            let batchers = match settings.http.receipt_batchers {
                0 => http::ReceiptBatcher::default_tasks(store.backend()),
                n => n,
            };
            let state = AppState {
                store: store.clone(),
                callbacks: Arc::new(callbacks),
                receipts: http::ReceiptBatcher::spawn(
                    store.clone(),
                    batchers,
                    settings.http.receipt_max_batch,
                    settings.http.receipt_queue,
                ),
                api: http::api::ApiState::new(renderer.clone(), settings.sms.max_segments)
                    .with_reregistration(settings.chatbot.reregistration),
            };
            let app = http::router(
                state,
                settings.http.body_limit_bytes,
                Duration::from_millis(settings.http.request_timeout_ms),
            );
            let mut rx = shutdown_rx.clone();
            info!(addr = ?http_addr, "HTTP server listening");
            let header_read_timeout = Duration::from_millis(settings.http.header_read_timeout_ms);
            tasks.push(tokio::spawn(http::serve(
                listener,
                app,
                header_read_timeout,
                async move {
                    let _ = rx.wait_for(|s| *s).await;
                },
            )));
        }

        if parts.workers > 0 {
            tasks.push(tokio::spawn(crate::dispatch::heartbeat(
                store.clone(),
                router.clone(),
                crate::dispatch::process_id(),
                shutdown_rx.clone(),
            )));
        }
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
        if parts.housekeeping {
            tasks.push(tokio::spawn(housekeeping(
                store.clone(),
                settings.worker.clone(),
                shutdown_rx.clone(),
            )));
        }

        Ok(App {
            store,
            settings,
            renderer,
            http_addr,
            simulator,
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

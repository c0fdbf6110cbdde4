//! The unlimited run as the deployment it measures: a `serve` (the HTTP
//! server taking receipts, and housekeeping), a `worker` (the dispatch
//! loops) and the carrier, each where its CPU can be told apart.
//!
//! Server and worker are two [`App`]s in this process, each on a tokio
//! runtime of its own whose threads are named for it (`pc-http`,
//! `pc-disp`); the simulator runs on a third (`pc-sim`) or, with
//! `--simulator external`, as a `carrier-sim` process beside this one. CPU
//! per part is then read from `/proc/self/task/*/stat` by thread name (and
//! `/proc/PID/stat` for the external simulator); SQLite's work shows on its
//! connection threads (`sqlx-sqlite-worker-N`), PostgreSQL's on the server's
//! processes. What no named thread accounts for (this driver, threads that
//! ended during the run) is reported as `other`, so the parts always add up
//! to the process total.
//!
//! The worker reaches the simulator as a Kannel gateway on loopback with
//! the simulator's credentials, the way `pedulicovid worker` processes reach
//! it in the multi-process tests; both apps name it `sim`, so the
//! callback token in the database is shared.

use std::collections::BTreeMap;
use std::future::Future;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Serialize;

use carrier_sim::{SimHandle, Simulator, SimulatorConfig};
use pedulicovid::app::{App, Parts};
use pedulicovid::config::{DialectSettings, GatewayDialect, GatewaySettings, Settings};
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::secret::Secret;

use crate::engine::{proc_cpu_s, round2};

/// Where the simulator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum SimulatorPlace {
    /// On a runtime of its own in this process.
    #[default]
    Internal,
    /// A `carrier-sim` process (next to this binary), so this process's
    /// figures are the product's alone.
    External,
}

/// Thread-name prefixes of the parts (at most 15 bytes: `/proc` truncates).
const HTTP_THREADS: &str = "pc-http";
const DISPATCH_THREADS: &str = "pc-disp";
const SIM_THREADS: &str = "pc-sim";
const SQLITE_THREADS: &str = "sqlx-sqlite-wor";

/// CPU seconds of each part of a run.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PartsCpu {
    /// The worker: claims, renders, sends, records.
    pub dispatcher: f64,
    /// The HTTP server (receipts) and housekeeping.
    pub server: f64,
    /// The carrier simulator (not the product's cost).
    pub simulator: f64,
    /// The database: PostgreSQL's processes, or SQLite's connection threads.
    pub database: f64,
    /// This process outside the named threads (the benchmark's driver,
    /// threads that ended).
    pub other: f64,
}

impl PartsCpu {
    /// Microseconds per message of each part.
    pub fn per_message_us(&self, messages: u64) -> PartsCpu {
        self.map(|s| round2(s * 1e6 / messages.max(1) as f64))
    }

    pub fn rounded(&self) -> PartsCpu {
        self.map(round2)
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> PartsCpu {
        PartsCpu {
            dispatcher: f(self.dispatcher),
            server: f(self.server),
            simulator: f(self.simulator),
            database: f(self.database),
            other: f(self.other),
        }
    }
}

/// A CPU reading of every part, to subtract from a later one.
#[derive(Debug, Clone, Default)]
pub struct CpuReading {
    by_thread: BTreeMap<String, f64>,
    process: f64,
    external_sim: f64,
    postgres: Option<f64>,
}

impl CpuReading {
    /// The parts' CPU between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuReading) -> PartsCpu {
        let part = |prefix: &str| {
            let now: f64 = sum_prefix(&self.by_thread, prefix);
            let then: f64 = sum_prefix(&earlier.by_thread, prefix);
            (now - then).max(0.0)
        };
        let dispatcher = part(DISPATCH_THREADS);
        let server = part(HTTP_THREADS);
        let sim_threads = part(SIM_THREADS);
        let sqlite = part(SQLITE_THREADS);
        let process = (self.process - earlier.process).max(0.0);
        let other = (process - dispatcher - server - sim_threads - sqlite).max(0.0);
        let database = match (self.postgres, earlier.postgres) {
            (Some(a), Some(b)) => (a - b).max(0.0),
            _ => sqlite,
        };
        PartsCpu {
            dispatcher,
            server,
            simulator: sim_threads + (self.external_sim - earlier.external_sim).max(0.0),
            database,
            other,
        }
    }
}

pub(crate) fn sum_prefix(by_thread: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    by_thread
        .iter()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
        .sum()
}

/// CPU seconds of this process's live threads, by thread name.
pub(crate) fn threads_cpu() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        if let Some(cpu) = proc_cpu_s(&stat) {
            *out.entry(name).or_default() += cpu;
        }
    }
    out
}

fn pid_cpu_s(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| proc_cpu_s(&s))
        .unwrap_or(0.0)
}

/// The simulator of a run.
enum Sim {
    Internal {
        handle: SimHandle,
        stop: tokio::sync::watch::Sender<bool>,
        done: tokio::task::JoinHandle<()>,
    },
    External {
        child: SimProcess,
        sendsms_url: String,
    },
}

/// The external simulator's process, killed when dropped: a run that
/// fails, or is interrupted, leaves no `carrier-sim` behind.
struct SimProcess(Child);

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `serve` + `worker` + simulator.
pub struct RunParts {
    pub server: App,
    pub worker: App,
    sim: Sim,
    /// Kept until [`RunParts::stop`].
    runtimes: Runtimes,
    postgres: bool,
}

/// The runtimes of a run, shut down in the background however it ends (a
/// runtime may not be dropped inside another, and an error return would:
/// a part that failed to start panicked instead of saying why).
pub(crate) struct Runtimes(pub(crate) Vec<tokio::runtime::Runtime>);

impl Drop for Runtimes {
    fn drop(&mut self) {
        for rt in self.0.drain(..) {
            rt.shutdown_background();
        }
    }
}

/// Runs `f` on `rt` and waits for it here.
async fn on<F>(rt: &tokio::runtime::Runtime, f: F) -> anyhow::Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.spawn(f).await.context("a benchmark part panicked")
}

pub(crate) fn runtime(
    name: &'static str,
    threads: usize,
) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .with_context(|| format!("starting the {name} runtime"))
}

/// A free loopback port, for a process that must be told its address.
fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

impl RunParts {
    /// Starts the simulator (`place`), the server and the worker with
    /// `workers` dispatch loops, from the benchmark's settings `s` (whose
    /// one gateway is the simulator).
    pub async fn start(
        s: &Settings,
        workers: usize,
        place: SimulatorPlace,
    ) -> anyhow::Result<RunParts> {
        // Server and worker get the threads `serve` and `worker` would
        // (`[runtime] threads`); the carrier keeps two.
        let threads = s.runtime.worker_threads();
        let mut runtimes = Runtimes(vec![
            runtime(HTTP_THREADS, threads)?,
            runtime(DISPATCH_THREADS, threads)?,
        ]);
        let sim_config = s.simulator.clone();
        let sim = match place {
            SimulatorPlace::Internal => {
                let rt = runtime(SIM_THREADS, 2)?;
                let (stop, mut stopped) = tokio::sync::watch::channel(false);
                let (handle, done) = on(&rt, async move {
                    let sim = Simulator::bind(sim_config).await?;
                    let handle = sim.handle();
                    let done = tokio::spawn(async move {
                        let _ = sim
                            .run(async move {
                                let _ = stopped.wait_for(|s| *s).await;
                            })
                            .await;
                    });
                    Ok::<_, anyhow::Error>((handle, done))
                })
                .await??;
                runtimes.0.push(rt);
                Sim::Internal { handle, stop, done }
            }
            SimulatorPlace::External => spawn_external(&sim_config).await?,
        };
        let sendsms_url = match &sim {
            Sim::Internal { handle, .. } => handle.sendsms_url(),
            Sim::External { sendsms_url, .. } => sendsms_url.clone(),
        };
        let mut s = s.clone();
        s.gateways = s
            .gateways
            .iter()
            .map(|g| kannel_gateway(g, &s.simulator, &sendsms_url))
            .collect::<anyhow::Result<_>>()?;
        let server_settings = s.clone();
        let server = on(&runtimes.0[0], async move {
            App::start(
                server_settings,
                Parts {
                    simulator: false,
                    ..Parts::SERVE
                },
            )
            .await
        })
        .await??;
        let port = server.port().context("the server has no HTTP port")?;
        s.http.public_url = Some(format!("http://127.0.0.1:{port}").parse()?);
        let worker = on(&runtimes.0[1], async move {
            App::start(
                s,
                // Housekeeping is the server's here.
                Parts {
                    workers,
                    housekeeping: false,
                    simulator: false,
                    ..Parts::WORKER
                },
            )
            .await
        })
        .await??;
        let postgres = worker.store.backend() == pedulicovid::store::Backend::Postgres;
        Ok(RunParts {
            server,
            worker,
            sim,
            runtimes,
            postgres,
        })
    }

    /// The in-process simulator's handle (none when it runs outside).
    pub fn sim(&self) -> Option<&SimHandle> {
        match &self.sim {
            Sim::Internal { handle, .. } => Some(handle),
            Sim::External { .. } => None,
        }
    }

    /// A CPU reading of every part now.
    pub fn cpu(&self) -> CpuReading {
        CpuReading {
            by_thread: threads_cpu(),
            process: crate::engine::process_cpu_s().unwrap_or(0.0),
            external_sim: match &self.sim {
                Sim::External { child, .. } => pid_cpu_s(child.0.id()),
                Sim::Internal { .. } => 0.0,
            },
            postgres: if self.postgres {
                crate::engine::postgres_cpu_s(pedulicovid::store::Backend::Postgres)
            } else {
                None
            },
        }
    }

    /// Stops the worker, then the server, then the simulator.
    pub async fn stop(self) {
        let RunParts {
            server,
            worker,
            sim,
            runtimes,
            ..
        } = self;
        let _ = on(&runtimes.0[1], worker.stop(Duration::from_secs(10))).await;
        let _ = on(&runtimes.0[0], server.stop(Duration::from_secs(10))).await;
        match sim {
            Sim::Internal { stop, done, .. } => {
                let _ = stop.send(true);
                let _ = tokio::time::timeout(Duration::from_secs(10), done).await;
            }
            // Killed as it is dropped.
            Sim::External { child, .. } => drop(child),
        }
        drop(runtimes);
    }
}

/// The simulator gateway `g` as a Kannel gateway at `sendsms_url` with the
/// simulator's credentials.
fn kannel_gateway(
    g: &GatewaySettings,
    sim: &SimulatorConfig,
    sendsms_url: &str,
) -> anyhow::Result<GatewaySettings> {
    // The gateway's own Kannel table (its method, timeout), at the
    // simulator's address with its credentials.
    let tuned = match &g.dialect {
        GatewayDialect::Carrier(DialectSettings::Kannel(k))
        | GatewayDialect::Simulator(Some(DialectSettings::Kannel(k))) => k.clone(),
        _ => KannelConfig::default(),
    };
    Ok(GatewaySettings {
        dialect: KannelConfig {
            sendsms_url: sendsms_url.to_string(),
            username: sim.username.clone(),
            password: Secret::new(sim.password.expose()),
            ..tuned
        }
        .into(),
        ..g.clone()
    })
}

/// Starts `carrier-sim` (next to this binary) on a free port with the
/// benchmark's simulator settings, and waits until it answers.
async fn spawn_external(c: &SimulatorConfig) -> anyhow::Result<Sim> {
    let exe = std::env::current_exe()?
        .parent()
        .context("this binary's directory")?
        .join("carrier-sim");
    if !exe.exists() {
        bail!(
            "--simulator external needs {} (cargo build --release -p carrier-sim)",
            exe.display()
        );
    }
    let port = free_port()?;
    let child = SimProcess(
        Command::new(&exe)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--mix")
            .arg("delivered=1")
            .arg("--answer-latency-ms")
            .arg(c.answer_latency_ms.to_string())
            .arg("--receipt-delay-ms")
            .arg(c.receipt_delay_ms.to_string())
            .arg("--callback-concurrency")
            .arg(c.callback_concurrency.max(1).to_string())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?,
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("carrier-sim did not listen on 127.0.0.1:{port} within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Sim::External {
        child,
        sendsms_url: format!("http://127.0.0.1:{port}/cgi-bin/sendsms"),
    })
}

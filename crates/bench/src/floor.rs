//! `pedulicovid-bench http-floor`: what the two HTTP exchanges a notice
//! needs cost with the stack the product ships, and nothing else.
//!
//! A notice is one request from the dispatcher to the carrier (Kannel's
//! `sendsms`) and one receipt callback from the carrier to our server. This
//! runs exactly those two exchanges, N times, with the product's own parts
//! around them and no work of ours in between:
//!
//! - the **client** (`fl-client` threads, as many as `[runtime] threads`):
//!   the gateway client the product builds (`gateway::http::client`: its
//!   pool, timeouts, no proxy, no redirects) sending `GET`s of the URL our
//!   Kannel dialect sends for the sample worker (the same parameters, the
//!   same rendered text, a `dlr-url` signed as ours are), built before the
//!   clock starts, and reading each answer; with `--kannel-method POST`,
//!   Kannel's POST mode as our dialect sends it instead (the text as the
//!   body, the fields as `X-Kannel-*` headers, the URL short);
//! - the **server** (`fl-server` threads, the same count): axum behind the
//!   product's own serve loop (`http::serve`: hyper's HTTP/1.1 with its
//!   header-read timeout), answering `GET /callbacks/{gateway}/{token}`
//!   with `OK` after the same extractors as the receipt handler (path,
//!   headers, raw query) and nothing else;
//! - the **carrier** (`fl-carrier`, two threads): answers each send with
//!   Kannel's `0: Accepted for delivery` and calls its `dlr-url` back with
//!   the simulator's client, at most `--callback-concurrency` in flight.
//!
//! Client + server per notice is the floor under the benchmark's
//! dispatcher + server: the CPU the two exchanges take before anything of
//! ours (claims, rendering, rate limits, receipt parsing and checking,
//! statements) is done. It is measured the way the campaign benchmark
//! measures its parts, from `/proc/self/task/*/stat` by thread name.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use serde::Serialize;

use pedulicovid::config::Settings;
use pedulicovid::gateway::callback::message_token;
use pedulicovid::gateway::kannel::KannelMethod;
use pedulicovid::render::{RenderContext, Renderer};
use pedulicovid::secret::Secret;

use crate::engine::round2;
use crate::parts::{runtime, sum_prefix, threads_cpu, Runtimes};

const CLIENT_THREADS: &str = "fl-client";
const SERVER_THREADS: &str = "fl-server";
const CARRIER_THREADS: &str = "fl-carrier";

#[derive(Debug, clap::Args)]
pub struct FloorArgs {
    /// Notices: one send and one receipt callback each.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub messages: u64,
    /// Sends in flight at once (the worker's `worker.concurrency`; default
    /// its default).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: Option<u64>,
    /// Receipt callbacks the carrier keeps in flight at once (default the
    /// simulator's, Kannel's own 512).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub callback_concurrency: Option<u64>,
    /// How the send travels: `GET` (the URL carries everything) or `POST`
    /// (Kannel's POST mode, `[gateways.kannel] method`).
    #[arg(long, value_parser = crate::engine::parse_kannel_method, default_value = "GET")]
    pub kannel_method: KannelMethod,
    /// Print one JSON object instead of the summary lines.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct FloorReport {
    pub benchmark: &'static str,
    pub messages: u64,
    pub concurrency: usize,
    pub callback_concurrency: usize,
    pub runtime_threads: usize,
    /// `--kannel-method`.
    pub kannel_method: KannelMethod,
    pub seconds: f64,
    pub notices_per_s: f64,
    /// CPU µs per notice: `client` (the send), `server` (the receipt), their
    /// sum `floor`, and the carrier's (not ours).
    pub cpu_us_per_message: FloorCpu,
    pub load_avg_at_start: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct FloorCpu {
    pub client: f64,
    pub server: f64,
    pub floor: f64,
    pub carrier: f64,
}

/// The carrier's side: where callbacks go, and how many may be in flight.
#[derive(Clone)]
struct Carrier {
    callbacks: reqwest::Client,
    in_flight: Arc<tokio::sync::Semaphore>,
}

pub async fn run(s: Settings, a: FloorArgs) -> anyhow::Result<()> {
    let report = measure(&s, &a).await?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let c = &report.cpu_us_per_message;
        println!(
            "http-floor: {} notices in {:.1} s ({:.0}/s), {} sends and {} callbacks in flight, {} runtime thread(s)",
            report.messages,
            report.seconds,
            report.notices_per_s,
            report.concurrency,
            report.callback_concurrency,
            report.runtime_threads
        );
        println!(
            "CPU µs per notice: client (the send) {:.1}, server (the receipt) {:.1}, floor {:.1}; carrier {:.1}",
            c.client, c.server, c.floor, c.carrier
        );
    }
    Ok(())
}

/// One run: every send answered, every callback in.
pub async fn measure(s: &Settings, a: &FloorArgs) -> anyhow::Result<FloorReport> {
    let threads = s.runtime.worker_threads();
    let in_flight = |given: Option<u64>, default: usize| {
        given.map_or(default, |n| usize::try_from(n).unwrap_or(usize::MAX))
    };
    let concurrency = in_flight(a.concurrency, s.worker.concurrency);
    let callback_concurrency = in_flight(a.callback_concurrency, s.simulator.callback_concurrency);
    let runtimes = Runtimes(vec![
        runtime(CLIENT_THREADS, threads)?,
        runtime(SERVER_THREADS, threads)?,
        runtime(CARRIER_THREADS, 2)?,
    ]);
    let [client_rt, server_rt, carrier_rt] = &runtimes.0[..] else {
        unreachable!("three runtimes");
    };

    // Our server: the receipt route's extractors, then `OK`; told when the
    // last callback is in.
    let all_in = Arc::new(tokio::sync::Notify::new());
    let (server_addr, server_stop) = {
        let app = Router::new()
            .route("/callbacks/{gateway}/{token}", get(receipt))
            .with_state(Received {
                count: Arc::new(AtomicU64::new(0)),
                total: a.messages,
                all_in: all_in.clone(),
            });
        serve_on(
            server_rt,
            app,
            Duration::from_millis(s.http.header_read_timeout_ms),
        )
        .await?
    };

    // The carrier: `0: Accepted for delivery`, then the callback.
    let carrier = Carrier {
        callbacks: carrier_sim::callback_client(Duration::from_secs(30), callback_concurrency),
        in_flight: Arc::new(tokio::sync::Semaphore::new(callback_concurrency)),
    };
    let carrier_app = Router::new()
        .route("/cgi-bin/sendsms", get(sendsms).post(sendsms_post))
        .with_state(carrier);
    let (carrier_addr, carrier_stop) = serve_on(
        carrier_rt,
        carrier_app,
        Duration::from_millis(s.http.header_read_timeout_ms),
    )
    .await?;

    // The URLs the dispatcher would send for the sample worker, made
    // before the clock starts: the floor is reqwest's work, not ours.
    let text = Renderer::builtin()
        .render("undangan_registrasi", &RenderContext::sample())?
        .into_string();
    let secret = Secret::new("http-floor-callback-secret");
    let sends: Vec<Prepared> = (1..=a.messages as i64)
        .map(|id| {
            let token = message_token(&secret, "sim", id);
            Ok(match a.kannel_method {
                KannelMethod::Get => {
                    Prepared::Get(sendsms_url(carrier_addr, server_addr, &token, &text)?)
                }
                KannelMethod::Post => {
                    Prepared::Post(HeaderValue::try_from(dlr_url(server_addr, &token))?)
                }
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let post = PostSend {
        url: reqwest::Url::parse(&format!("http://{carrier_addr}/cgi-bin/sendsms"))?,
        headers: post_headers(),
        text,
    };

    let load_avg_at_start = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    let before = threads_cpu();
    let started = Instant::now();
    let client = pedulicovid::gateway::http::client(Duration::from_secs(30), concurrency);
    let sent = client_rt.spawn(async move {
        futures::stream::iter(sends)
            .map(|send| {
                let request = match send {
                    Prepared::Get(url) => client.get(url),
                    Prepared::Post(dlr_url) => post.request(&client, dlr_url),
                };
                async move {
                    let answer = request.send().await?.text().await?;
                    anyhow::ensure!(answer.starts_with("0:"), "the carrier answered {answer:?}");
                    Ok(())
                }
            })
            .buffer_unordered(concurrency)
            .fold(
                Ok(()),
                |acc: anyhow::Result<()>, r| async move { acc.and(r) },
            )
            .await
    });
    sent.await.context("the client panicked")??;
    // `notify_one` keeps its permit when the last callback came in first.
    tokio::time::timeout(Duration::from_secs(120), all_in.notified())
        .await
        .context("not every callback arrived within 120 s")?;
    let seconds = started.elapsed().as_secs_f64();
    let after = threads_cpu();
    let _ = server_stop.send(true);
    let _ = carrier_stop.send(true);
    drop(runtimes);

    let part = |prefix: &str| {
        let cpu = (sum_prefix(&after, prefix) - sum_prefix(&before, prefix)).max(0.0);
        round2(cpu * 1e6 / a.messages as f64)
    };
    let (client_us, server_us) = (part(CLIENT_THREADS), part(SERVER_THREADS));
    let report = FloorReport {
        benchmark: "http-floor",
        messages: a.messages,
        concurrency,
        callback_concurrency,
        runtime_threads: threads,
        kannel_method: a.kannel_method,
        seconds: round2(seconds),
        notices_per_s: round2(a.messages as f64 / seconds),
        cpu_us_per_message: FloorCpu {
            client: client_us,
            server: server_us,
            floor: round2(client_us + server_us),
            carrier: part(CARRIER_THREADS),
        },
        load_avg_at_start,
    };
    Ok(report)
}

/// Binds a loopback port on `rt` and serves `app` there with the
/// product's serve loop until the returned sender turns true.
async fn serve_on(
    rt: &tokio::runtime::Runtime,
    app: Router,
    header_read_timeout: Duration,
) -> anyhow::Result<(std::net::SocketAddr, tokio::sync::watch::Sender<bool>)> {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let listener = rt
        .spawn(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .await??;
    let addr = listener.local_addr()?;
    rt.spawn(pedulicovid::http::serve(
        listener,
        app,
        header_read_timeout,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    Ok((addr, stop))
}

/// One send, made before the clock starts: the whole `GET` URL, or the
/// POST's one per-message header (its `dlr-url`).
enum Prepared {
    Get(reqwest::Url),
    Post(HeaderValue),
}

/// What every POST-mode send shares.
struct PostSend {
    url: reqwest::Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    text: String,
}

impl PostSend {
    /// The request our dialect makes in POST mode: the shared headers, the
    /// per-message `X-Kannel-Dlr-Url`, the text as the body.
    fn request(&self, client: &reqwest::Client, dlr_url: HeaderValue) -> reqwest::RequestBuilder {
        let mut request = client.post(self.url.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value.clone());
        }
        request
            .header(HeaderName::from_static("x-kannel-dlr-url"), dlr_url)
            .body(self.text.clone())
    }
}

/// The POST-mode headers our dialect sends, but the per-message
/// `dlr-url`, with the GET's values.
fn post_headers() -> Vec<(HeaderName, HeaderValue)> {
    [
        ("x-kannel-username", "pedulicovid"),
        ("x-kannel-password", "a-password-of-24-chars!!"),
        ("x-kannel-dlr-mask", "31"),
        ("x-kannel-from", "PEDULICOVID"),
        ("x-kannel-to", "6281234567890"),
        ("x-kannel-coding", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
    .chain([(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    )])
    .collect()
}

/// The per-message `dlr-url` our dialect makes: the signed path `token`
/// (`{id}.{mac}`) and Kannel's placeholders.
fn dlr_url(server: std::net::SocketAddr, token: &str) -> String {
    let id = token.split('.').next().unwrap_or_default();
    format!("http://{server}/callbacks/sim/{token}?id={id}&status=%d&fid=%F&answer=%A&ts=%T")
}

/// A Kannel `sendsms` URL as our dialect makes it (the parameters in its
/// order, form-encoded), with the per-message [`dlr_url`].
fn sendsms_url(
    carrier: std::net::SocketAddr,
    server: std::net::SocketAddr,
    token: &str,
    text: &str,
) -> Result<reqwest::Url, url::ParseError> {
    let dlr_url = dlr_url(server, token);
    let mut url = reqwest::Url::parse(&format!("http://{carrier}/cgi-bin/sendsms"))?;
    url.query_pairs_mut().extend_pairs([
        ("username", "pedulicovid"),
        ("password", "a-password-of-24-chars!!"),
        ("from", "PEDULICOVID"),
        ("to", "6281234567890"),
        ("text", text),
        ("coding", "0"),
        ("charset", "UTF-8"),
        ("dlr-mask", "31"),
        ("dlr-url", &dlr_url),
    ]);
    Ok(url)
}

/// Callbacks counted by our side, and whom to tell when all are in.
#[derive(Clone)]
struct Received {
    count: Arc<AtomicU64>,
    total: u64,
    all_in: Arc<tokio::sync::Notify>,
}

/// Our side of a callback: the receipt handler's extractors, then `OK`.
async fn receipt(
    State(received): State<Received>,
    Path((_gateway, _token)): Path<(String, String)>,
    _headers: HeaderMap,
    RawQuery(_query): RawQuery,
) -> &'static str {
    if received.count.fetch_add(1, Ordering::AcqRel) + 1 == received.total {
        received.all_in.notify_one();
    }
    "OK"
}

/// The carrier's side of a send: accept, and call the `dlr-url` back
/// (status 1, delivered) in the background.
async fn sendsms(State(carrier): State<Carrier>, RawQuery(query): RawQuery) -> &'static str {
    let dlr = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "dlr-url")
            .map(|(_, v)| v.into_owned())
    });
    accept(carrier, dlr)
}

/// The same in Kannel's POST mode: the `dlr-url` is a header.
async fn sendsms_post(State(carrier): State<Carrier>, headers: HeaderMap) -> &'static str {
    let dlr = headers
        .get("x-kannel-dlr-url")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    accept(carrier, dlr)
}

/// Accepts a send, calling its `dlr-url` (Kannel's placeholders filled in)
/// back in the background.
fn accept(carrier: Carrier, dlr_url: Option<String>) -> &'static str {
    let dlr = dlr_url.map(|v| {
        v.replace("%d", "1")
            .replace("%F", "sim-1")
            .replace("%A", "id%3Asim-1+stat%3ADELIVRD")
            .replace("%T", "1638316800")
    });
    if let Some(dlr) = dlr {
        tokio::spawn(async move {
            let Ok(_permit) = carrier.in_flight.acquire().await else {
                return;
            };
            if let Ok(r) = carrier.callbacks.get(dlr).send().await {
                let _ = r.bytes().await;
            }
        });
    }
    "0: Accepted for delivery"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_send_is_answered_and_every_callback_arrives() {
        for kannel_method in [KannelMethod::Get, KannelMethod::Post] {
            let a = FloorArgs {
                messages: 2_000,
                concurrency: Some(8),
                callback_concurrency: Some(16),
                kannel_method,
                json: true,
            };
            let r = measure(&Settings::default(), &a)
                .await
                .expect("a small run");
            // `measure` ends only when every callback is in (or fails).
            assert_eq!(r.messages, 2_000);
            assert_eq!((r.concurrency, r.callback_concurrency), (8, 16));
            assert_eq!(r.kannel_method, kannel_method);
            let c = &r.cpu_us_per_message;
            // /proc counts CPU in 10 ms ticks: a small run may see none on
            // one side, never on both.
            assert!(c.client + c.server > 0.0, "{kannel_method:?}: {c:?}");
            assert!((c.floor - (c.client + c.server)).abs() < 0.02, "{c:?}");
        }
    }

    #[test]
    fn the_send_carries_the_text_and_a_dlr_url_the_carrier_can_call() {
        let carrier = "127.0.0.1:1".parse().unwrap();
        let server = "127.0.0.1:2".parse().unwrap();
        let token = message_token(&Secret::new("s"), "sim", 42);
        let url = sendsms_url(
            carrier,
            server,
            &token,
            "Yth. Siti & co: 100% di pedulilindungi.id",
        )
        .unwrap();
        let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["text"], "Yth. Siti & co: 100% di pedulilindungi.id");
        let dlr = &pairs["dlr-url"];
        assert_eq!(
            dlr,
            &format!(
                "http://127.0.0.1:2/callbacks/sim/{token}?id=42&status=%d&fid=%F&answer=%A&ts=%T"
            )
        );
    }
}

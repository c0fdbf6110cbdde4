//! The REAL carrier harness (`shared/carrier`: Kannel 1.4.5 bearerbox +
//! smsbox and the SMPP SMSC simulator) going away under the dispatcher:
//!
//! * stopped in the middle of a campaign and started again: every message
//!   ends final, none is lost, the sends refused while Kannel was down were
//!   retried, nothing failed;
//! * stopped before a campaign whose numbers prefer it: its circuit breaker
//!   opens and every message goes out through the second route (the
//!   in-process simulator, the gateway named "sim").
//!
//! The harness is shared with `tests/it/kannel_harness.rs` (one Kannel on fixed
//! ports): the tests here run one at a time ([`crate::SERIAL`]), each makes sure
//! the harness is up before it starts, and a guard starts it again when a
//! test ends, failed or not, so later tests find it running. Stopping it
//! while another test binary uses it would break that binary's test; cargo
//! runs test binaries one after another, so only a concurrent `cargo test`
//! elsewhere could.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::carrier::{start_harness, stop_harness, Carrier, CARRIER};
use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::config::GatewaySettings;
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::secret::Secret;
use pedulicovid::status::Status;

/// One test at a time: they stop and start the one harness.
use crate::SERIAL;

/// The running harness. The first call per binary starts it (or finds it
/// running); every call checks it is up, since an earlier test stopped it.
/// Panics (fails the test) with start.sh's output when it cannot start.
async fn carrier() -> Carrier {
    let result = tokio::task::spawn_blocking(|| {
        let first = CARRIER.get_or_init(start_harness).clone();
        match first {
            // `start.sh` again is a no-op printing "already running".
            Ok(_) => start_harness(),
            Err(e) => Err(e),
        }
    })
    .await
    .expect("harness start-up thread");
    match result {
        Ok(c) => c,
        Err(e) => panic!("the Kannel carrier harness is not available:\n{e}"),
    }
}

/// Starts the harness again when dropped if a test stopped it, so a test
/// that fails (panics) while Kannel is down still leaves it running.
struct Restarter {
    stopped: AtomicBool,
}

impl Restarter {
    fn new() -> Restarter {
        Restarter {
            stopped: AtomicBool::new(false),
        }
    }

    async fn stop(&self, carrier: &Carrier) {
        self.stopped.store(true, Ordering::SeqCst);
        let c = carrier.clone();
        tokio::task::spawn_blocking(move || stop_harness(&c))
            .await
            .expect("stop thread");
    }

    async fn start(&self) -> Carrier {
        let c = tokio::task::spawn_blocking(start_harness)
            .await
            .expect("start thread")
            .unwrap_or_else(|e| panic!("restarting the carrier harness failed:\n{e}"));
        self.stopped.store(false, Ordering::SeqCst);
        c
    }
}

impl Drop for Restarter {
    fn drop(&mut self) {
        if self.stopped.load(Ordering::SeqCst) {
            // Blocking here is fine: the test is over (a multi-threaded
            // runtime, or unwinding from a panic).
            if let Err(e) = start_harness() {
                eprintln!("restarting the carrier harness after the test failed:\n{e}");
            }
        }
    }
}

fn kannel_gateway(name: &str, carrier: &Carrier) -> GatewaySettings {
    GatewaySettings {
        name: name.into(),
        dialect: KannelConfig {
            sendsms_url: carrier.sendsms_url.clone(),
            username: carrier.username.clone(),
            password: Secret::new(carrier.password.clone()),
            ..KannelConfig::default()
        }
        .into(),
        ..GatewaySettings::default()
    }
}

/// One `messages` row, read with plain sqlx.
#[derive(Debug, Clone, sqlx::FromRow)]
struct MessageRow {
    id: i64,
    status: String,
    gateway: Option<String>,
    sent_at: Option<i64>,
}

/// One `attempts` row of a campaign's messages.
#[derive(Debug, Clone, sqlx::FromRow)]
struct AttemptRow {
    message_id: i64,
    gateway: Option<String>,
    outcome: String,
}

async fn messages(url: &str, campaign: i64) -> Vec<MessageRow> {
    sql_rows(
        url,
        "SELECT id, status, gateway, sent_at FROM messages WHERE campaign_id = $1 ORDER BY id",
        &[campaign],
    )
    .await
}

async fn attempts(url: &str, campaign: i64) -> Vec<AttemptRow> {
    sql_rows(
        url,
        "SELECT a.message_id, a.gateway, a.outcome FROM attempts a \
         JOIN messages m ON m.id = a.message_id WHERE m.campaign_id = $1 ORDER BY a.id",
        &[campaign],
    )
    .await
}

/// The last lines of a harness log, for failure messages.
fn log_tail(run_dir: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(run_dir.join(name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Kannel stopped ~1 s into a ~4 s campaign, started again ~3 s later.
async fn kannel_stopped_mid_campaign(backend: &str) {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let carrier = carrier().await;
    let restarter = Restarter::new();

    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    let mut g = kannel_gateway("kannel", &carrier);
    // 200 messages at 50/s: about 4 s of sending.
    g.rate_per_sec = 50;
    // A refused connection opens the breaker after 5 in a row; one probe a
    // second tells when Kannel is back. Until then messages wait without
    // using attempts.
    g.breaker_threshold = 5;
    g.breaker_cool_down_secs = 1;
    s.gateways = vec![g];
    // Retries outlast the outage: smsbox (the sendsms port) goes within
    // 0.3 s of stop.sh, bearerbox takes ~10 s to drain and exit under load,
    // then 3 s down and ~1.8 s to start: sendsms refuses for ~15 s.
    s.worker.max_attempts = 30;
    s.worker.backoff_initial_ms = 200;
    s.worker.backoff_max_ms = 1_000;
    // Messages bearerbox held when it was stopped lose their DLR mapping
    // (internal DLR storage) or the message itself: they never get a
    // receipt and must end `unknown` / `no_receipt` soon.
    s.worker.receipt_timeout_secs = 5;
    let app = start(s, Parts::ALL).await;

    // Numbers ending 1-6: every one the SMSC simulator delivers.
    let n = 200u32;
    let b = if backend == "sqlite" { 1 } else { 2 };
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(
            i,
            ["31", "73", "94"][(i % 3) as usize],
            &format!("{b}{i:06}{}", 1 + i % 6),
        ));
    }
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, u64::from(n), "{:?}", imported.rejections);
    let (c, enqueued) = create_campaign(&app, campaign_request("outage")).await;
    assert_eq!(enqueued, u64::from(n));
    let created = Instant::now();

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = app.store.campaign_report(c.id).await.unwrap();
    restarter.stop(&carrier).await;
    let stopped_at = created.elapsed();
    let during = app.store.campaign_report(c.id).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let carrier = restarter.start().await;
    let restarted_at = created.elapsed();

    let mut r = wait_done(&app.store, c.id, Duration::from_secs(90)).await;
    let settled = created.elapsed();
    // Late receipts may still turn an `unknown` into `delivered`; wait until
    // nothing changes for 2 s.
    let mut last = r.by_status.clone();
    let mut calm = Instant::now();
    let limit = Instant::now() + Duration::from_secs(20);
    while calm.elapsed() < Duration::from_secs(2) && Instant::now() < limit {
        tokio::time::sleep(Duration::from_millis(200)).await;
        r = app.store.campaign_report(c.id).await.unwrap();
        if r.by_status != last {
            last = r.by_status.clone();
            calm = Instant::now();
        }
    }
    let rows = messages(&db.url, c.id).await;
    let tries = attempts(&db.url, c.id).await;
    let by_outcome: BTreeMap<&str, usize> = tries.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.outcome.as_str()).or_default() += 1;
        m
    });
    let ctx = format!(
        "{r:?}\nbefore the stop: {before:?}\nright after it: {during:?}\n\
         attempts by outcome: {by_outcome:?}\nstop.sh returned at {stopped_at:?}, restarted at \
         {restarted_at:?}, settled at {settled:?}\nbearerbox.log:\n{}",
        log_tail(&carrier.run_dir, "bearerbox.log")
    );

    // Accounting: every message is in a final state, none lost.
    let n = i64::from(n);
    assert_eq!(r.enqueued, n, "{ctx}");
    assert_eq!(rows.len(), n as usize, "{ctx}");
    assert_eq!(r.in_flight(), 0, "{ctx}");
    let delivered = r.status(Status::Delivered);
    let unknown = r.status(Status::Unknown);
    assert_eq!(delivered + unknown, n, "only delivered or unknown: {ctx}");
    for s in [
        Status::Failed,
        Status::Undelivered,
        Status::Expired,
        Status::Rejected,
        Status::Cancelled,
    ] {
        assert_eq!(r.status(s), 0, "{s:?}: {ctx}");
    }
    // Every message went to Kannel at least once, and an `unknown` is one
    // whose receipt never came, flagged for follow-up.
    assert_eq!(r.sent, n, "{ctx}");
    for m in &rows {
        assert!(
            m.sent_at.is_some() && m.gateway.as_deref() == Some("kannel"),
            "message {} ({m:?}): {ctx}",
            m.id
        );
    }
    let flags: BTreeMap<String, i64> = r.flagged_by_reason.iter().cloned().collect();
    let want: BTreeMap<String, i64> = if unknown > 0 {
        [("no_receipt".to_string(), unknown)].into_iter().collect()
    } else {
        BTreeMap::new()
    };
    assert_eq!(flags, want, "{ctx}");

    // The outage was seen: sends refused while Kannel was down were retried,
    // and each retried message went out again afterwards.
    let retried: Vec<i64> = tries
        .iter()
        .filter(|a| a.outcome == "retry")
        .map(|a| a.message_id)
        .collect();
    assert!(
        !retried.is_empty(),
        "no send was refused during the outage: {ctx}"
    );
    assert!(tries.iter().all(|a| a.outcome != "failed"), "{ctx}");
    for id in &retried {
        let last_try = tries.iter().rev().find(|a| a.message_id == *id).unwrap();
        assert_eq!(
            last_try.outcome, "sent",
            "message {id} was retried until Kannel took it: {ctx}"
        );
    }

    app.stop(Duration::from_secs(5)).await;
    eprintln!(
        "{backend}: {n} messages; stop.sh began at 1 s and returned at {stopped_at:?}, Kannel back at {restarted_at:?}; \
         settled at {settled:?}; {delivered} delivered, {unknown} unknown (no receipt), {} \
         messages retried ({by_outcome:?}); whole test {:?}",
        {
            let mut ids = retried.clone();
            ids.sort_unstable();
            ids.dedup();
            ids.len()
        },
        t0.elapsed()
    );
    drop(restarter);
}
both_backends!(kannel_stopped_mid_campaign);

/// Kannel down before the campaign: its breaker opens after 3 refused
/// connections and everything goes out through the simulator.
async fn kannel_down_fails_over_to_the_second_route(backend: &str) {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let carrier = carrier().await;
    let restarter = Restarter::new();
    restarter.stop(&carrier).await;

    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    // Telkomsel numbers (0812…) prefer "primary", the stopped Kannel; "sim"
    // (the in-process simulator) is the default route.
    let mut primary = kannel_gateway("primary", &carrier);
    primary.operators = vec!["telkomsel".into()];
    primary.breaker_threshold = 3;
    primary.breaker_cool_down_secs = 60;
    s.gateways = vec![primary, GatewaySettings::simulator("sim")];
    s.simulator.mix = all_delivered();
    s.worker.batch_size = 10;
    let app = start(s, Parts::ALL).await;
    let sim = app.simulator.clone().expect("simulator runs");

    let n = 40u32;
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(i, "31", &format!("{i:07}{}", 1 + i % 6)));
    }
    assert_eq!(import_text(&app.store, &csv).await.accepted, u64::from(n));
    let (c, enqueued) = create_campaign(&app, campaign_request("failover")).await;
    assert_eq!(enqueued, u64::from(n));
    let r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    let rows = messages(&db.url, c.id).await;
    let tries = attempts(&db.url, c.id).await;
    let ctx = format!("{r:?}\n{:?}", sim.stats());

    let n = i64::from(n);
    assert_eq!(r.sent, n, "{ctx}");
    assert_eq!(r.status(Status::Delivered), n, "{ctx}");
    assert_eq!(r.status(Status::Failed), 0, "{ctx}");
    assert!(r.flagged_by_reason.is_empty(), "{ctx}");
    for m in &rows {
        assert_eq!(m.gateway.as_deref(), Some("sim"), "{m:?}: {ctx}");
        assert_eq!(m.status, "delivered", "{m:?}");
    }
    assert_eq!(sim.stats().submits_total, n as u64, "{ctx}");
    assert_eq!(sim.stats().duplicates, 0, "{ctx}");
    // The first sends tried the primary and were retried; none was sent
    // there.
    let on_primary: Vec<&AttemptRow> = tries
        .iter()
        .filter(|a| a.gateway.as_deref() == Some("primary"))
        .collect();
    assert!(
        !on_primary.is_empty(),
        "the primary was tried first: {tries:?}"
    );
    assert!(
        on_primary.iter().all(|a| a.outcome == "retry"),
        "{on_primary:?}"
    );

    // `gateways status`: the primary is out of rotation (recorded in the
    // background, so allow it a moment).
    let limit = Instant::now() + Duration::from_secs(5);
    let states = loop {
        let states = app.store.gateway_states().await.unwrap();
        let open = states
            .iter()
            .any(|s| s.gateway == "primary" && s.state == "open");
        if open || Instant::now() > limit {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let primary = states
        .iter()
        .find(|s| s.gateway == "primary")
        .unwrap_or_else(|| panic!("primary state recorded: {states:?}"));
    assert_eq!(primary.state, "open", "{states:?}");

    app.stop(Duration::from_secs(5)).await;
    restarter.start().await;
    eprintln!(
        "{backend}: {n} messages failed over to sim, {} attempts on the primary; whole test {:?}",
        on_primary.len(),
        t0.elapsed()
    );
}
both_backends!(kannel_down_fails_over_to_the_second_route);

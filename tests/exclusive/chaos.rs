//! Crash chaos, bounded for CI: three `pedulicovid worker` processes share
//! one PostgreSQL queue and send a 5,000-message campaign to the carrier
//! simulator (running in this test process) while a driver SIGKILLs a random
//! worker every ~1.5 s, six times, restarting it each time.
//!
//! At the end every message is in a final state and none is lost (the
//! statuses add up to what was enqueued, no lease is left after
//! housekeeping). Duplicates, counted by the simulator per destination, stay
//! within what the killed workers held leased at their deaths (≤ batch size
//! × kills) under `at_least_once`, and are 0 under `at_most_once`, where the
//! uncertain messages end `unknown`, flagged `lease_lost`.
//!
//! `scripts/chaos.sh` is the long manual version (100,000 messages, 20
//! kills, the release binary, `pedulicovid carrier-sim` as its own process);
//! `RELIABILITY.md` has the figures.

use std::time::{Duration, Instant};

use crate::common::workers::Workers;
use crate::common::*;
use carrier_sim::{Simulator, SimulatorConfig};
use pedulicovid::app::Parts;
use pedulicovid::config::DeliveryPolicy;
use pedulicovid::gateway::kannel::KannelConfig;
use pedulicovid::status::Status;
use pedulicovid::store::{CampaignReport, Store};

/// One chaos run at a time: each starts three processes and would otherwise
/// starve the other of CPU and PostgreSQL connections.
use crate::SERIAL;

const MESSAGES: u32 = 5_000;
const PROCESSES: usize = 3;
const BATCH: i64 = 50;
/// Rows a worker may hold leased at once: the batch it is sending and the
/// one before, whose outcomes it records meanwhile (the dispatcher is
/// pipelined).
const HELD_AT_MOST: i64 = 2 * BATCH;
const KILLS: usize = 6;
const KILL_EVERY: Duration = Duration::from_millis(1_500);
/// Messages per second, all workers together: 5,000 take ~12 s, so every
/// kill lands mid-campaign.
const RATE: u32 = 400;

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn import_workers(store: &Store, n: u32) {
    // NIKs from `row` are unique for up to 9,999 rows.
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(i, "31", &format!("{:08}", 80_000_000 + i)));
    }
    let report = import_text(store, &csv).await;
    assert_eq!(
        report.accepted,
        u64::from(n),
        "{:?}",
        &report.rejections[..3]
    );
}

fn open_flags(r: &CampaignReport, reason: &str) -> i64 {
    r.flagged_by_reason
        .iter()
        .find(|(k, _)| k == reason)
        .map_or(0, |(_, v)| *v)
}

async fn chaos(policy: DeliveryPolicy) {
    let _serial = SERIAL.lock().await;
    let t0 = Instant::now();
    let db = TestDb::new("postgres").await;
    // A few ms per answer: batches are always partly in flight. Receipts
    // come after 8-12 s, as from a slow network, so a killed worker's sends
    // are still unconfirmed when they come round again: the case where
    // at-least-once re-sends and at-most-once gives up. (With fast
    // receipts a re-queued message, which goes to the back of the queue,
    // is settled by its receipt before its turn: no duplicate at all.)
    let sim_cfg = SimulatorConfig {
        listen: "127.0.0.1:0".into(),
        answer_latency_ms: 3,
        receipt_delay_ms: 10_000,
        receipt_jitter_ms: 2_000,
        callback_retry_delay_ms: 100,
        mix: all_delivered(),
        ..Default::default()
    };
    let sim = Simulator::bind(sim_cfg).await.expect("simulator binds");
    let sim_handle = sim.handle();
    sim.spawn(std::future::pending::<()>());
    let sim = sim_handle;

    // This process: receipts (HTTP) and housekeeping, with the workers'
    // policy and lease, so it expires the dead workers' leases as they would.
    let mut s = test_settings(&db);
    s.gateways[0].dialect = KannelConfig {
        sendsms_url: sim.sendsms_url(),
        ..Default::default()
    }
    .into();
    s.worker.lease_secs = 2;
    s.worker.policy = policy;
    let app = start(
        s,
        Parts {
            http: true,
            workers: 0,
            housekeeping: true,
            simulator: false,
        },
    )
    .await;
    import_workers(&app.store, MESSAGES).await;
    let (c, n) = create_campaign(&app, campaign_request("chaos")).await;
    let (id, enqueued) = (c.id, n as i64);
    assert_eq!(enqueued, i64::from(MESSAGES));

    let policy_name = match policy {
        DeliveryPolicy::AtLeastOnce => "at_least_once",
        DeliveryPolicy::AtMostOnce => "at_most_once",
    };
    let batch = BATCH.to_string();
    let rate = RATE.to_string();
    let mut workers = Workers::new(
        &db.url,
        &sim,
        &app,
        &[
            ("PEDULICOVID__WORKER__BATCH_SIZE", &batch),
            ("PEDULICOVID__WORKER__LEASE_SECS", "2"),
            ("PEDULICOVID__WORKER__POLICY", policy_name),
            ("PEDULICOVID__GATEWAYS__0__RATE_PER_SEC", &rate),
        ],
    );
    for _ in 0..PROCESSES {
        workers.spawn();
    }
    let pool = sqlx::PgPool::connect(&db.url).await.expect("raw pool");

    // Let the workers get going, then kill one every KILL_EVERY.
    let from = Instant::now();
    while sim.stats().submits_total < 200 {
        assert!(
            from.elapsed() < Duration::from_secs(15),
            "the workers never got going: {:?}",
            sim.stats()
        );
        workers.assert_alive();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let sending_from = Instant::now();
    // (pid, submits at the kill, rows it held leased, of which `sending`)
    let mut kills: Vec<(u32, u64, i64, i64)> = vec![];
    let mut next_kill = Instant::now() + KILL_EVERY;
    for _ in 0..KILLS {
        tokio::time::sleep_until(tokio::time::Instant::from_std(next_kill)).await;
        next_kill += KILL_EVERY;
        workers.assert_alive();
        let pid = workers.kill_random();
        let at = sim.stats().submits_total;
        let owned = format!("SELECT COUNT(*) FROM messages WHERE lease_owner LIKE '%-{pid}-%'");
        let held = count(&pool, &owned).await;
        let sending = count(&pool, &format!("{owned} AND status = 'sending'")).await;
        kills.push((pid, at, held, sending));
        workers.spawn();
    }
    // Every kill hit a campaign still sending.
    assert!(
        kills.iter().all(|k| (k.1 as i64) < enqueued),
        "the campaign was done before the last kill: {kills:?}"
    );

    // Wait until every message is final (or unknown) and nothing is leased.
    let settle_from = Instant::now();
    let r = loop {
        let r = app.store.campaign_report(id).await.expect("report");
        let open = r.status(Status::Queued) + r.status(Status::Sending) + r.status(Status::Sent);
        // Every submit's one receipt has been called back, too.
        let st = sim.stats();
        let receipts_done = st.callbacks_sent + st.callbacks_failed == st.submits_total;
        if open == 0 && receipts_done && app.store.leased_count().await.expect("leases") == 0 {
            break r;
        }
        if settle_from.elapsed() > Duration::from_secs(40) {
            panic!("not settled 40 s after the last kill: {r:?} kills {kills:?}");
        }
        workers.assert_alive();
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sending_took = sending_from.elapsed();
    // Late receipts for the last sends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = {
        let again = app.store.campaign_report(id).await.unwrap();
        assert_eq!(again.by_status, r.by_status, "settled means settled");
        again
    };
    let stats = sim.stats();
    let delivered = r.status(Status::Delivered);
    let unknown = r.status(Status::Unknown);
    let held: i64 = kills.iter().map(|k| k.2).sum();
    let in_flight: i64 = kills.iter().map(|k| k.3).sum();
    eprintln!(
        "chaos ({policy_name}): {enqueued} messages, {PROCESSES} workers, {} kills (held {held} leased rows, \
         {in_flight} sending: {:?}); duplicates {} (bound {}), delivered {delivered}, unknown {unknown}, \
         lease_lost flags {}; sending {sending_took:?}, elapsed {:?}",
        kills.len(),
        kills.iter().map(|k| k.2).collect::<Vec<_>>(),
        stats.duplicates,
        HELD_AT_MOST * KILLS as i64,
        open_flags(&r, "lease_lost"),
        t0.elapsed()
    );

    // Nothing lost: every message in a final state (or unknown, for review).
    assert_eq!(r.enqueued, enqueued, "{r:?}");
    let settled: i64 = Status::ALL
        .into_iter()
        .filter(|s| s.is_final() || *s == Status::Unknown)
        .map(|s| r.status(s))
        .sum();
    assert_eq!(settled, enqueued, "{r:?}");
    assert_eq!(r.unrecorded, 0, "{r:?}");
    assert!(
        kills.iter().all(|k| k.2 <= HELD_AT_MOST),
        "a worker held more than a batch in flight and one being recorded: {kills:?}"
    );
    match policy {
        DeliveryPolicy::AtLeastOnce => {
            assert!(
                stats.duplicates as i64 <= held,
                "{} duplicates, more than the {held} rows the killed workers held",
                stats.duplicates
            );
            assert!(stats.duplicates as i64 <= HELD_AT_MOST * KILLS as i64);
            assert_eq!(delivered, enqueued, "{r:?}");
            assert_eq!(
                stats.submits_total - stats.duplicates,
                enqueued as u64,
                "every number submitted at least once: {stats:?}"
            );
        }
        DeliveryPolicy::AtMostOnce => {
            assert_eq!(stats.duplicates, 0, "{stats:?}");
            assert_eq!(unknown, open_flags(&r, "lease_lost"), "{r:?}");
            assert_eq!(delivered + unknown, enqueued, "{r:?}");
            // Each submit is one delivered message; unknown ones never went.
            assert_eq!(stats.submits_total as i64, delivered, "{stats:?}");
            assert!(
                unknown <= in_flight,
                "unknown {unknown} > {in_flight} in flight"
            );
            assert!(unknown > 0, "six kills mid-batch left nothing uncertain");
        }
    }
    pool.close().await;
    drop(workers);
    app.stop(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_at_least_once_loses_nothing() {
    chaos(DeliveryPolicy::AtLeastOnce).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_at_most_once_sends_nothing_twice() {
    chaos(DeliveryPolicy::AtMostOnce).await
}

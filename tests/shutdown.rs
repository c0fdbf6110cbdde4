//! Graceful shutdown of the real binary: SIGTERM stops claiming, the batch
//! in hand is finished and recorded, no lease is left behind, exit 0.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

async fn sigterm_finishes_the_batch_and_leaves_no_lease(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut csv = String::from(HEADER);
    for i in 0..400u32 {
        csv.push_str(&row(i, "31", &format!("{:07}1", i)));
    }
    import_text(&store, &csv).await;
    let out = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args([
            "campaign",
            "create",
            "--name",
            "shutdown",
            "--template",
            "undangan_registrasi",
        ])
        .args(["--window", "00:00-24:00", "--database-url", &db.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 40 messages a second: the campaign takes ~10 s, so SIGTERM lands
    // mid-campaign with a batch in flight.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("run")
        .env("PEDULICOVID__DATABASE_URL", &db.url)
        .env("PEDULICOVID__HTTP__LISTEN", "127.0.0.1:0")
        .env("PEDULICOVID__SIMULATOR__LISTEN", "127.0.0.1:0")
        .env("PEDULICOVID__GATEWAYS__0__RATE_PER_SEC", "40")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let sent = store.queue_depth().await.unwrap();
        let n: i64 = sent
            .iter()
            .filter(|(s, _)| s != "queued")
            .map(|(_, n)| n)
            .sum();
        if n >= 60 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never started sending: {sent:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let term = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if term.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("did not exit within 15 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        term.elapsed() < Duration::from_secs(5),
        "took {:?}",
        term.elapsed()
    );

    let depth = store.queue_depth().await.unwrap();
    let count = |s: &str| {
        depth
            .iter()
            .find(|(k, _)| k == s)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    assert_eq!(count("sending"), 0, "nothing left mid-send: {depth:?}");
    assert!(count("queued") > 0, "stopped before the end: {depth:?}");
    assert_eq!(
        store.leased_count().await.unwrap(),
        0,
        "no lease left behind"
    );
}
both_backends!(sigterm_finishes_the_batch_and_leaves_no_lease);

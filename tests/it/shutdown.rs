//! Graceful shutdown of the real binary: SIGTERM stops claiming, the batch
//! in hand is finished and recorded, no lease is left behind, exit 0. And
//! of the HTTP server (the same `App::stop` SIGTERM calls): a request in
//! flight is answered, new connections are not taken.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

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
        // The built-in simulator, asked for by name.
        .env("PEDULICOVID__GATEWAYS__0__NAME", "sim")
        .env("PEDULICOVID__GATEWAYS__0__DIALECT", "simulator")
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
            .filter(|c| c.status != "queued")
            .map(|c| c.count)
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
            .find(|c| c.status == s)
            .map(|c| c.count)
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

async fn a_request_in_flight_is_answered_during_shutdown(backend: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let db = TestDb::new(backend).await;
    let parts = pedulicovid::app::Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = start(test_settings(&db), parts).await;
    let addr = format!("127.0.0.1:{}", app.port().unwrap());
    // An idle kept-alive connection must not hold the shutdown up.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("an answer on the kept-alive connection")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // Headers in, half the body still to come: the request is in flight.
    let mut conn = TcpStream::connect(&addr).await.unwrap();
    conn.write_all(
        b"POST /callbacks/nosuch/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nid=1&",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(app.stop(Duration::from_secs(10)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "stopped with a request in flight");
    // No new connections once stopping.
    assert!(
        TcpStream::connect(&addr).await.is_err(),
        "a connection accepted while stopping"
    );
    conn.write_all(b"st=12").await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.ends_with("unknown gateway"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stops once the request is answered")
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
        .await
        .expect("the idle connection is closed by stop, not left open");
    assert_eq!(closed.unwrap_or(0), 0, "idle one closed");
}
both_backends!(a_request_in_flight_is_answered_during_shutdown);

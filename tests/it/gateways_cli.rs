//! `pedulicovid gateways status`: every configured gateway with its breaker
//! state (closed when never recorded), rates and routes, on both backends.

use crate::common::*;
use serde_json::Value;

const SETTINGS: &str = r#"
[[gateways]]
name = "primary"
rate_per_sec = 100
segments_per_sec = 150
operators = ["telkomsel", "indosat"]
breaker_threshold = 5
breaker_cool_down_secs = 30
kannel = { sendsms_url = "http://127.0.0.1:13013/cgi-bin/sendsms" }

[[gateways]]
name = "backup"
dialect = "jasmin"
jasmin = { send_url = "http://127.0.0.1:1401/send" }
"#;

/// Runs the binary with the settings file and database; returns stdout.
async fn cli(config: &std::path::Path, url: &str, args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--config")
        .arg(config)
        .arg("--database-url")
        .arg(url)
        .args(args)
        .current_dir(config.parent().expect("a directory"))
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

async fn gateways_status_lists_every_gateway_with_its_breaker(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    store
        .set_gateway_state("primary", "open", "5 consecutive failures", "worker-a")
        .await
        .unwrap();
    // A gateway since removed from the settings still shows.
    store
        .set_gateway_state("retired", "half_open", "7 consecutive failures", "worker-b")
        .await
        .unwrap();
    let recorded_at = store.gateway_states().await.unwrap()[0].changed_at;
    store.close().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(&config, SETTINGS).unwrap();

    let json: Value =
        serde_json::from_str(&cli(&config, &db.url, &["gateways", "status", "--json"]).await)
            .expect("one JSON object");
    let gws = json["gateways"].as_array().expect("a list");
    let names: Vec<&str> = gws.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["primary", "backup", "retired"]);

    let p = &gws[0];
    assert_eq!(p["configured"], true);
    assert_eq!(p["position"], 1);
    assert_eq!(p["dialect"], "kannel");
    assert_eq!(p["state"], "open");
    assert_eq!(p["last_error"], "5 consecutive failures");
    assert_eq!(p["worker"], "worker-a");
    assert_eq!(p["since_ms"], recorded_at);
    assert!(p["since"].as_str().unwrap().ends_with("WIB"));
    assert!(p["probe_after"].as_str().unwrap().ends_with("WIB"));
    assert_eq!(p["rate_per_sec"], 100);
    assert_eq!(p["segments_per_sec"], 150);
    assert_eq!(p["operators"], serde_json::json!(["telkomsel", "indosat"]));
    assert_eq!(p["breaker_threshold"], 5);
    assert_eq!(p["breaker_cool_down_secs"], 30);
    assert_eq!(p["never_recorded"], false);

    // No row yet: closed, never used, default route, unlimited.
    let b = &gws[1];
    assert_eq!(b["position"], 2);
    assert_eq!(b["dialect"], "jasmin");
    assert_eq!(b["state"], "closed");
    assert_eq!(b["never_recorded"], true);
    assert!(b["since"].is_null() && b["last_error"].is_null() && b["probe_after"].is_null());
    assert_eq!(b["rate_per_sec"], 0);
    assert_eq!(b["operators"], serde_json::json!([]));

    let r = &gws[2];
    assert_eq!(r["configured"], false);
    assert_eq!(r["state"], "half_open");
    assert!(r["position"].is_null());

    // The table says the same.
    let text = cli(&config, &db.url, &["gateways", "status"]).await;
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{text}"))
            .to_string()
    };
    let primary = line("primary");
    for part in [
        "kannel",
        "open",
        "100/s",
        "150/s",
        "5 / 30s",
        "telkomsel,indosat",
        "5 consecutive failures (probe after",
    ] {
        assert!(primary.contains(part), "{part:?} missing in {primary:?}");
    }
    let backup = line("backup");
    for part in [
        "jasmin",
        "closed",
        "never used",
        "unlimited",
        "default (any operator)",
    ] {
        assert!(backup.contains(part), "{part:?} missing in {backup:?}");
    }
    let retired = line("retired");
    assert!(retired.contains("half_open") && retired.contains("(not in the settings)"));
}

both_backends!(gateways_status_lists_every_gateway_with_its_breaker);

/// `gateways rotate-secret NAME`: a generated secret is replaced, the old
/// one kept as the previous (valid for the grace period), the rotation
/// audited; a configured secret or an unknown name is refused, changing
/// nothing.
async fn rotate_secret_replaces_a_generated_secret_and_audits_it(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let before = store.gateway_secret("primary").await.unwrap();
    let backup_before = store.gateway_secret("backup").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    let configured = format!(
        "{SETTINGS}\n[[gateways]]\nname = \"fixed\"\ncallback_secret = \"{}\"\n\
         kannel = {{ sendsms_url = \"http://127.0.0.1:13013/cgi-bin/sendsms\" }}\n",
        "f".repeat(40)
    );
    std::fs::write(&config, configured).unwrap();

    let out = cli(&config, &db.url, &["gateways", "rotate-secret", "primary"]).await;
    assert!(
        out.contains("gateway primary: callback secret rotated") && out.contains("WIB"),
        "{out}"
    );
    let set = store.gateway_secret_set("primary").await.unwrap();
    let (current, previous, rotated_at) = (set.current, set.previous, set.rotated_at);
    assert_ne!(current, before);
    assert_eq!(current.expose().len(), 64);
    assert_eq!(previous.as_ref(), Some(&before));
    assert!(rotated_at.is_some());
    assert!(!out.contains(before.expose()) && !out.contains(current.expose()));
    // The other gateway's secret is untouched.
    assert_eq!(store.gateway_secret("backup").await.unwrap(), backup_before);
    let audit: Vec<(String, String)> = sql_rows(
        &db.url,
        "SELECT action, subject FROM audit_log ORDER BY id",
        &[],
    )
    .await;
    assert_eq!(
        audit,
        [(
            "gateway.rotate_secret".to_string(),
            "gateway:primary".to_string()
        )]
    );

    for (name, says) in [
        ("fixed", "configured callback_secret"),
        ("nosuch", "no gateway named"),
    ] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
            .arg("--config")
            .arg(&config)
            .arg("--database-url")
            .arg(&db.url)
            .args(["gateways", "rotate-secret", name])
            .current_dir(dir.path())
            .env("RUST_LOG", "warn")
            .output()
            .await
            .unwrap();
        assert!(!out.status.success(), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{name}: {err}");
    }
    assert_eq!(
        store.gateway_secret_set("primary").await.unwrap().current,
        current,
        "a refused rotation changes nothing"
    );
    store.close().await;
}

both_backends!(rotate_secret_replaces_a_generated_secret_and_audits_it);

/// A simulator gateway in the settings of a production command: a loud
/// warning at `run`, and flagged in `gateways status`; a real gateway is
/// not.
async fn a_simulator_gateway_is_flagged_loudly(backend: &str) {
    let db = TestDb::new(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("settings.toml");
    std::fs::write(
        &config,
        format!(
            "{SETTINGS}\n[[gateways]]\nname = \"forgotten\"\ndialect = \"simulator\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[simulator]\nlisten = \"127.0.0.1:0\"\n"
        ),
    )
    .unwrap();

    let json: Value =
        serde_json::from_str(&cli(&config, &db.url, &["gateways", "status", "--json"]).await)
            .expect("one JSON object");
    let flags: Vec<(&str, bool)> = json["gateways"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap(),
                g["simulator"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        flags,
        [("primary", false), ("backup", false), ("forgotten", true)]
    );
    let text = cli(&config, &db.url, &["gateways", "status"]).await;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("reach nobody"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(lines[0].contains("forgotten"), "{text}");

    // `run` warns at start, naming the gateway.
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .arg("--config")
        .arg(&config)
        .arg("--database-url")
        .arg(&db.url)
        .arg("run")
        .current_dir(dir.path())
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary runs");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = vec![];
    let found = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let hit = line.contains("WARN")
                && line.contains("\"forgotten\" is the built-in simulator")
                && line.contains("reach nobody");
            seen.push(line);
            if hit {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    child.kill().await.ok();
    assert!(found, "{seen:#?}");
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("\"primary\" is the built-in")),
        "{seen:#?}"
    );
}

both_backends!(a_simulator_gateway_is_flagged_loudly);

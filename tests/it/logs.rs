//! Structured logs: `--log-format json`, the access log (route templates,
//! never raw paths), request ids taken or made.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{break_audit_log, Served};

/// Distinctive values a request path carries, which no log line may.
const TOKEN: &str = "Tok3nSecretQwertyZx0987654321";
const MESSAGE_ID: &str = "777000111";
const CAMPAIGN_ID: &str = "918273645";

/// `serve --log-format json`: every line on standard error is a JSON object
/// with a timestamp, a level and a target; each request has an access line
/// with method, route template, status, latency and request id; a sane
/// caller id is echoed, any other replaced by a new one.
#[tokio::test]
async fn json_access_log_has_route_templates_and_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path(), &["--log-format", "json"], &[]);
    let url = served.url.clone();

    let client = reqwest::Client::new();
    let get = |path: String, id: Option<&'static str>| {
        let mut r = client.get(format!("{url}{path}"));
        if let Some(id) = id {
            r = r.header("x-request-id", id);
        }
        r.send()
    };
    let kept = get("/healthz".into(), Some("probe-7")).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "probe-7");
    let replaced = get("/healthz".into(), Some("not {a} good id"))
        .await
        .unwrap();
    let made = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(made.len(), 36, "a UUID: {made}");
    let callback = get(
        format!("/callbacks/tsel/{TOKEN}?id={MESSAGE_ID}&status=1"),
        None,
    )
    .await
    .unwrap();
    let callback_id = callback.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let api = get(format!("/api/v1/campaigns/{CAMPAIGN_ID}"), None)
        .await
        .unwrap();
    assert_eq!(api.status(), 401, "no token");

    // SIGTERM, then everything it logged until it exits.
    let lines = served.stop();

    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for e in &events {
        for key in ["timestamp", "level", "target"] {
            assert!(e.get(key).is_some(), "no {key}: {e}");
        }
    }
    let access: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "pedulicovid::access")
        .collect();
    let find = |route: &str, id: Option<&str>| {
        access
            .iter()
            .find(|e| {
                e["span"]["route"] == route && id.is_none_or(|id| e["span"]["request_id"] == id)
            })
            .unwrap_or_else(|| panic!("no access line for {route} {id:?}: {access:#?}"))
    };
    let health = find("/healthz", Some("probe-7"));
    assert_eq!(health["fields"]["status"], 200, "{health}");
    assert_eq!(health["span"]["method"], "GET", "{health}");
    assert!(health["fields"]["latency_ms"].is_number(), "{health}");
    find("/healthz", Some(&made));
    let cb = find("/callbacks/{gateway}/{token}", Some(&callback_id));
    assert_eq!(cb["fields"]["status"], callback.status().as_u16(), "{cb}");
    let campaign = find("/api/v1/campaigns/{id}", None);
    assert_eq!(campaign["fields"]["status"], 401, "{campaign}");

    let all = lines.join("\n");
    for leak in [TOKEN, MESSAGE_ID, CAMPAIGN_ID] {
        assert!(!all.contains(leak), "{leak} in the log:\n{all}");
    }
}

/// Text logs: `--color always` puts escape codes in, `--color never`
/// keeps them out, and `auto` (with or without `NO_COLOR`) keeps them out
/// of a pipe.
#[test]
fn color_follows_the_flag_and_no_color() {
    let run = |args: &[&str], no_color: bool| {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pedulicovid"));
        cmd.args(args)
            .arg("migrate")
            .current_dir(dir.path())
            .env("RUST_LOG", "debug")
            .env(
                "PEDULICOVID__DATABASE_URL",
                format!("sqlite://{}", dir.path().join("x.db").display()),
            );
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let escape = '\u{1b}';
    let always = run(&["--color", "always"], false);
    assert!(!always.is_empty() && always.contains(escape), "{always:?}");
    assert!(!run(&["--color", "never"], false).contains(escape));
    // auto: standard error is a pipe here, so no colour either way.
    assert!(!run(&[], true).contains(escape));
}

/// A send the gateway did not take is logged at WARN with what an
/// operator needs to find it (the gateway, our message id, the number
/// masked) as the event's own fields, at the default level too: the
/// per-message spans are DEBUG, so nothing else carries them there.
#[test]
fn a_refused_send_is_logged_with_its_gateway_message_and_masked_number() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["demo", "--workers", "200", "--json", "--log-format", "json"])
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        // A fifth of the simulator's answers are 5xx: retried, and warned.
        .env("PEDULICOVID__SIMULATOR__FAULTS__SERVER_ERROR", "0.2")
        .output()
        .expect("run the demo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let refused: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| {
            e["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.ends_with("did not take the message"))
        })
        .collect();
    assert!(!refused.is_empty(), "no refusal logged:\n{stderr}");
    for e in &refused {
        let f = &e["fields"];
        assert_eq!(e["level"], "WARN", "{e}");
        assert_eq!(f["gateway"], "sim", "{e}");
        assert!(f["message.id"].as_i64().is_some_and(|id| id > 0), "{e}");
        let to = f["to"].as_str().unwrap_or_default();
        assert!(to.starts_with("+62") && to.contains("****"), "{e}");
        assert!(
            f["error"].as_str().is_some_and(|s| s.contains("HTTP 5")),
            "{e}"
        );
    }
}

/// The cause of a 500 is logged once at ERROR with what finds the request
/// (method, route template, request id) as the line's own fields, so a
/// log filtered to WARN, which drops the INFO access span, still has them.
#[tokio::test]
async fn a_server_error_names_its_request_at_warn() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
            .args(args)
            .current_dir(dir.path())
            .env("PEDULICOVID__DATABASE_URL", &url)
            .env("RUST_LOG", "warn")
            .output()
            .expect("the binary runs");
        assert!(out.status.success(), "{args:?}: {out:?}");
        serde_json::from_slice::<Value>(&out.stdout).expect("JSON on stdout")
    };
    let token = cli(&[
        "token", "create", "--name", "ops", "--role", "operator", "--json",
    ]);
    let secret = token["secret"].as_str().unwrap().to_string();
    // Every audited action fails: its answer is a 500.
    break_audit_log(&url).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pedulicovid"))
        .args(["serve", "--log-format", "json"])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .env("PEDULICOVID__DATABASE_URL", &url)
        .env("PEDULICOVID__HTTP__LISTEN", format!("127.0.0.1:{port}"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("the binary runs");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "serve did not answer on {base}");
    let res = client
        .post(format!("{base}/api/v1/campaigns"))
        .bearer_auth(&secret)
        .json(&serde_json::json!({"name": "lagi", "template": "undangan_registrasi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 500);
    let id = res.headers()["x-request-id"].to_str().unwrap().to_string();

    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = child.wait();
    let failed: Vec<Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["fields"]["message"] == "request failed")
        .collect();
    assert_eq!(failed.len(), 1, "{stderr}");
    let f = &failed[0]["fields"];
    assert_eq!(failed[0]["level"], "ERROR", "{stderr}");
    assert_eq!(f["method"], "POST", "{stderr}");
    assert_eq!(f["route"], "/api/v1/campaigns", "{stderr}");
    assert_eq!(f["request_id"], id.as_str(), "{stderr}");
    assert!(
        f["error"]
            .as_str()
            .is_some_and(|e| e.contains("audit down")),
        "{stderr}"
    );
}

/// At the default INFO a receipt callback is handled outside the access
/// span (made only for an answer that is logged): a refused one still has
/// its access line in the `http` span, and the warning it caused names its
/// request itself.
#[tokio::test]
async fn a_refused_callback_names_its_request_at_info() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("pedulicovid.toml"),
        "[[gateways]]\nname = \"tsel\"\ncallback_secret = \"the-callback-secret-of-tsel-4242424\"\n\
         [gateways.kannel]\nsendsms_url = \"http://127.0.0.1:13913/cgi-bin/sendsms\"\n",
    )
    .unwrap();
    let served = Served::start(dir.path(), &["--log-format", "json"], &[]);
    let res = reqwest::Client::new()
        .get(format!(
            "{}/callbacks/tsel/{MESSAGE_ID}.{TOKEN}?id={MESSAGE_ID}&status=1",
            served.url
        ))
        .header("x-request-id", "carrier-call-9")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let lines = served.stop();
    let events: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let warned = events
        .iter()
        .find(|e| e["level"] == "WARN" && e["target"] == "pedulicovid::http::callbacks")
        .unwrap_or_else(|| panic!("no warning: {lines:#?}"));
    assert_eq!(warned["fields"]["request_id"], "carrier-call-9", "{warned}");
    assert_eq!(warned["fields"]["gateway"], "tsel", "{warned}");
    let access = events
        .iter()
        .find(|e| e["target"] == "pedulicovid::access")
        .unwrap_or_else(|| panic!("no access line: {lines:#?}"));
    assert_eq!(access["fields"]["status"], 401, "{access}");
    assert_eq!(access["span"]["request_id"], "carrier-call-9", "{access}");
    assert_eq!(
        access["span"]["route"], "/callbacks/{gateway}/{token}",
        "{access}"
    );
    assert_eq!(access["span"]["method"], "GET", "{access}");
    let all = lines.join("\n");
    assert!(!all.contains(TOKEN), "the token in the log:\n{all}");
}

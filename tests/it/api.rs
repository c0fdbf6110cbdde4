//! The HTTP API through the real app: roles on every route, the chatbot's
//! re-registration end to end with the simulator, support resends with
//! their audit and limits, the operators' campaign API, `/metrics`, and the
//! OpenAPI document checked against every route the router serves.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::common::*;
use pedulicovid::app::{App, Parts};
use pedulicovid::campaign;
use pedulicovid::http::api::chatbot::{ADVICE_FLAGGED, ADVICE_NOT_FOUND};
use pedulicovid::http::api::{route_table, RouteSpec};
use pedulicovid::http::{route_table as all_routes, Auth};
use pedulicovid::store::{NewToken, ReregistrationMode, Role, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The running app and a client for it.
struct Api {
    app: App,
    base: String,
    http: reqwest::Client,
    // Dropped last: the database outlives the app.
    _db: TestDb,
}

impl Api {
    async fn start(backend: &str, parts: Parts, rules: &str) -> Api {
        Api::start_mode(backend, parts, rules, ReregistrationMode::Validated).await
    }

    /// [`Api::start`] with `chatbot.reregistration = mode`.
    async fn start_mode(backend: &str, parts: Parts, rules: &str, mode: ReregistrationMode) -> Api {
        let db = TestDb::new(backend).await;
        let mut settings = ruled_settings(&db, rules);
        settings.chatbot.reregistration = mode;
        let app = start(settings, parts).await;
        let base = base_url(&app);
        Api {
            app,
            base,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    fn store(&self) -> &Store {
        &self.app.store
    }

    async fn token(&self, name: &str, role: Role) -> String {
        self.store().create_token(name, role).await.unwrap().secret
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.json(b);
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("request")
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .call(Method::POST, path, Some(token), Some(&body), &[])
            .await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /api/v1/campaigns/{id}/{action}` with an empty body.
    async fn campaign_action(&self, id: i64, action: &str, token: &str) -> (StatusCode, Value) {
        let path = format!("/api/v1/campaigns/{id}/{action}");
        self.post(&path, token, json!({})).await
    }

    /// `POST /api/v1/campaigns`, which must answer 201; the new campaign's id.
    async fn create_campaign(&self, token: &str, body: Value) -> i64 {
        let (s, v) = self.post("/api/v1/campaigns", token, body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        v["campaign"]["id"].as_i64().unwrap()
    }

    /// A GET and its raw response.
    async fn get_raw(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.call(Method::GET, path, token, None, &[]).await
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let r = self.get_raw(path, Some(token)).await;
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn stop(self) {
        self.app.stop(Duration::from_secs(5)).await;
    }
}

/// A re-registration request for `row(i, prov, _)` from the WhatsApp
/// number `phone`, proved with the NIK and the registered name.
/// `promtool check metrics` (Debian's `prometheus` package; scripts/test.sh
/// installs it) on an exposition: fails the test on any lint finding.
fn promtool_check_metrics(exposition: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: `apt-get install prometheus` (scripts/test.sh does)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{exposition}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rereg_body(i: u32, prov: &str, phone: &str) -> Value {
    json!({"nik": nik_of(i, prov), "full_name": format!("Nakes Nomor {i}"), "whatsapp_phone": phone})
}

/// `0812…` for a `row(_, _, tail)`.
fn phone_of(tail: &str) -> String {
    format!("0812{tail:0>8}")
}

/// Polls `f` until it returns `Some`, or panics after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > limit {
            panic!("{what}: not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every message of the worker is final and returns the
/// statuses, oldest first.
async fn settled_statuses(store: &Store, worker: i64) -> Vec<String> {
    wait_for(
        "worker's messages final",
        Duration::from_secs(30),
        || async {
            let t = store.timeline(worker).await.unwrap();
            let st: Vec<String> = t.messages.iter().map(|m| m.status.clone()).collect();
            (!st.is_empty()
                && st
                    .iter()
                    .all(|s| !matches!(s.as_str(), "queued" | "sending" | "sent")))
            .then_some(st)
        },
    )
    .await
}

// ---------------------------------------------------------------- OpenAPI

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

fn path_with_ids(p: &str) -> String {
    p.replace("{id}", "1")
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_string)
        .collect()
}

/// A concrete path for a template: ids 1, the simulator's gateway, a
/// wrong callback token.
fn concrete(path: &str) -> String {
    path_with_ids(path)
        .replace("{flag}", "1")
        .replace("{gateway}", "sim")
        .replace("{token}", "not-the-token")
}

async fn openapi_document_matches_the_router(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let r = api.get_raw("/api/openapi.json", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    let spec = oas3::from_json(&text).expect("the document parses as OpenAPI 3.1");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    let doc: Value = serde_json::from_str(&text).unwrap();
    // Every reference points at a schema the document defines.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let mut refs = vec![];
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(schemas.contains_key(name), "dangling $ref {r}");
    }
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");

    // Every operation: answers declared, a unique operationId, its path
    // parameters declared (required) exactly as the template has them, and
    // security schemes the document defines.
    let mut documented = std::collections::BTreeMap::new();
    let mut operation_ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let what = format!("{} {path}", method.to_uppercase());
            assert!(
                op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                "{what}: no responses"
            );
            let id = op["operationId"].as_str().expect("operationId");
            assert!(
                operation_ids.insert(id.to_string()),
                "{what}: duplicate {id}"
            );
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let distinct: BTreeSet<(String, String)> = params
                .iter()
                .map(|p| (p["in"].to_string(), p["name"].to_string()))
                .collect();
            assert_eq!(distinct.len(), params.len(), "{what}: a parameter twice");
            let in_path: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| {
                    assert_eq!(p["required"], true, "{what}: path parameter {p}");
                    p["name"].as_str().unwrap().to_string()
                })
                .collect();
            assert_eq!(in_path, template_params(path), "{what}: path parameters");
            let mut security = std::collections::BTreeMap::new();
            for req in op["security"].as_array().cloned().unwrap_or_default() {
                for (scheme, scopes) in req.as_object().unwrap() {
                    assert!(schemes.contains_key(scheme), "{what}: scheme {scheme}");
                    let scopes: BTreeSet<String> = scopes
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|s| s.as_str().unwrap().to_string())
                        .collect();
                    security.insert(scheme.clone(), scopes);
                }
            }
            documented.insert((method.to_uppercase(), path.clone()), security);
        }
    }

    // The routes the router is built from, all of them: the same set of
    // (method, path) as the document, both ways.
    let table = all_routes();
    let served: BTreeSet<(String, String)> = table
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(served.len(), table.len(), "a route listed twice");
    let in_doc: BTreeSet<(String, String)> = documented.keys().cloned().collect();
    assert_eq!(
        served.difference(&in_doc).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "served but not documented"
    );
    assert_eq!(
        in_doc.difference(&served).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not served"
    );
    for part in [
        "/api/",
        "/ui",
        "/callbacks/",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            served.iter().any(|(_, p)| p.starts_with(part)),
            "no {part} route"
        );
    }

    // Each route's security is what it checks.
    for r in &table {
        let what = format!("{} {}", r.method, r.path);
        let security = &documented[&(r.method.to_string(), r.path.to_string())];
        let expected: std::collections::BTreeMap<String, BTreeSet<String>> = match r.auth {
            Auth::Public => Default::default(),
            Auth::Bearer => [(
                "bearer".to_string(),
                r.roles.iter().map(|x| x.as_str().to_string()).collect(),
            )]
            .into(),
            Auth::Session => [("session".to_string(), BTreeSet::new())].into(),
            // In the path (a path parameter), or in a header.
            Auth::CallbackToken if r.path.contains("{token}") => Default::default(),
            Auth::CallbackToken => [("callback_token".to_string(), BTreeSet::new())].into(),
        };
        assert_eq!(security, &expected, "{what}");
        assert_eq!(r.roles.is_empty(), r.auth != Auth::Bearer, "{what}");
    }

    // The table is what the server serves: every route answers a caller
    // without credentials (200, 401, 403, or a redirect to sign in),
    // never 404 or 405.
    for r in &table {
        let resp = api
            .call(r.method.clone(), &concrete(r.path), None, None, &[])
            .await;
        let s = resp.status();
        assert!(
            s != StatusCode::NOT_FOUND && s != StatusCode::METHOD_NOT_ALLOWED,
            "{} {}: {s}",
            r.method,
            r.path
        );
        if r.auth == Auth::Public && r.method == Method::GET {
            assert_eq!(s, StatusCode::OK, "{} {}", r.method, r.path);
        }
        if r.auth == Auth::Bearer || r.auth == Auth::CallbackToken {
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{} {}", r.method, r.path);
        }
    }
    // Anything else is 404: JSON outside the UI, the UI's page inside it.
    let resp = api.get_raw("/api/v1/nothing-here", None).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].is_string());
    let resp = api
        .call(Method::POST, "/ui/tidak-ada", None, None, &[])
        .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.headers()["x-frame-options"], "DENY");
    assert!(resp
        .text()
        .await
        .unwrap()
        .contains("Halaman tidak ditemukan"));
    api.stop().await;
}
both_backends!(openapi_document_matches_the_router);

// ---------------------------------------------------------------- roles

/// A request body that passes validation for each route.
fn sample_body(r: &RouteSpec) -> Option<Value> {
    let p = r.path;
    Some(match (r.method.as_str(), p) {
        ("POST", "/api/v1/chatbot/lookup") => json!({"phone": "081200000001"}),
        ("POST", "/api/v1/chatbot/reregister") => rereg_body(90, "31", "081300000001"),
        ("POST", "/api/v1/support/search") => json!({"query": "Nakes"}),
        ("POST", p) if p.ends_with("/resend") => json!({"reason": "matrix"}),
        ("POST", p) if p.ends_with("/resolve") => json!({"note": "matrix"}),
        ("POST", p) if p.ends_with("/schedule") => json!({"at": "2099-01-01 08:00"}),
        ("POST", "/api/v1/campaigns") => json!({
            "name": "matrix", "template": "undangan_registrasi", "window": "00:00-24:00"
        }),
        ("POST", _) => json!({}),
        _ => return None,
    })
}

async fn every_route_checks_its_roles(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let mut good = std::collections::HashMap::new();
    let mut revoked = std::collections::HashMap::new();
    for role in Role::ALL {
        good.insert(role, api.token(&format!("{role}-ok"), role).await);
        revoked.insert(role, api.token(&format!("{role}-old"), role).await);
        api.store()
            .revoke_token(&format!("{role}-old"))
            .await
            .unwrap();
    }
    let key = [("Idempotency-Key", "matrix-1")];
    for r in route_table().into_iter().filter(|r| !r.roles.is_empty()) {
        let path = path_with_ids(r.path).replace("/1", "/999999");
        let body = sample_body(&r);
        let what = format!("{} {}", r.method, r.path);
        let call = |token: Option<String>| {
            let (api, method, path, body) = (&api, r.method.clone(), path.clone(), body.clone());
            async move {
                let resp = api
                    .call(method, &path, token.as_deref(), body.as_ref(), &key)
                    .await;
                let status = resp.status();
                let json: Value = resp.json().await.unwrap_or(Value::Null);
                (status, json)
            }
        };
        let (s, b) = call(None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: no token");
        assert!(b["error"].is_string(), "{what}: {b}");
        let (s, _) = call(Some("pcv_operator_0000".into())).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: unknown token");
        for role in Role::ALL {
            let (s, b) = call(Some(revoked[&role].clone())).await;
            assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: revoked {role}");
            assert_eq!(b["error"], "token revoked");
            let (s, b) = call(Some(good[&role].clone())).await;
            if r.roles.contains(&role) {
                assert!(
                    !matches!(
                        s,
                        StatusCode::UNAUTHORIZED
                            | StatusCode::FORBIDDEN
                            | StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::INTERNAL_SERVER_ERROR
                    ),
                    "{what}: {role} must get through, got {s} {b}"
                );
            } else {
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {role} {b}");
                assert!(b["error"].as_str().unwrap().contains("may not use"));
            }
        }
    }
    // Using a token records it (off the request path, so poll).
    wait_for("last_used_at recorded", Duration::from_secs(5), || async {
        let all = api.store().tokens().await.unwrap();
        let t = all.iter().find(|t| t.name == "chatbot-ok").unwrap();
        t.last_used_at
    })
    .await;
    api.stop().await;
}
both_backends!(every_route_checks_its_roles);

async fn tokens_are_stored_as_hashes_only(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let NewToken { token: t, secret } = store
        .create_token("chatbot-kominfo", Role::Chatbot)
        .await
        .unwrap();
    assert!(secret.starts_with("pcv_chatbot_"), "{secret}");
    assert_eq!(secret.len(), "pcv_chatbot_".len() + 64);
    assert!(store
        .create_token("chatbot-kominfo", Role::Support)
        .await
        .is_err());
    assert!(store
        .create_token("bad name!", Role::Support)
        .await
        .is_err());
    let found = store.check_token(&secret).await.unwrap();
    assert_eq!(found.check, pedulicovid::store::TokenCheck::Valid);
    assert_eq!(found.token.unwrap().id, t.id);
    let unknown = store.check_token("pcv_chatbot_nope").await.unwrap();
    assert_eq!(unknown.check, pedulicovid::store::TokenCheck::Unknown);
    // Nothing stored holds the token itself.
    let sql = "SELECT name || role || token_hash FROM api_tokens";
    let stored: Vec<String> = if backend == "sqlite" {
        let p = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&p).await.unwrap()
    } else {
        let p = sqlx::PgPool::connect(&db.url).await.unwrap();
        sqlx::query_scalar(sql).fetch_all(&p).await.unwrap()
    };
    assert!(stored.iter().all(|s| !s.contains(&secret[12..])));
    // Revoke by id, then by name: both work, twice is harmless.
    let NewToken {
        token: t2,
        secret: s2,
    } = store.create_token("desk-1", Role::Support).await.unwrap();
    store.revoke_token(&t2.id.to_string()).await.unwrap();
    assert_eq!(
        store.check_token(&s2).await.unwrap().check,
        pedulicovid::store::TokenCheck::Revoked
    );
    store.revoke_token("chatbot-kominfo").await.unwrap();
    store.revoke_token("chatbot-kominfo").await.unwrap();
    assert!(store.revoke_token("nobody").await.is_err());
    let all = store.tokens().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|t| t.revoked_at.is_some()));
}
both_backends!(tokens_are_stored_as_hashes_only);

// ---------------------------------------------------------------- chatbot

async fn chatbot_reregisters_a_flagged_worker(backend: &str) {
    // Numbers ending in 0 are undelivered; everything else is delivered.
    // The `immediate` mode: applied at once (tests/it/reregistration.rs has the
    // default, validated mode).
    let api = Api::start_mode(
        backend,
        Parts::ALL,
        "0=undelivered",
        ReregistrationMode::Immediate,
    )
    .await;
    let csv = format!(
        "{HEADER}{}{}{}",
        row(1, "31", "00000010"),
        row(2, "73", "00000021"),
        row(3, "31", "00000031").replace("true,true", "false,true"),
    );
    assert_eq!(import_text(api.store(), &csv).await.accepted, 3);
    let campaign = run_campaign(&api.app, "januari", "00:00-24:00").await;
    wait_done(api.store(), campaign, Duration::from_secs(30)).await;
    let bot = api.token("chatbot-kominfo", Role::Chatbot).await;
    let flagged_nik = nik_of(1, "31");
    let flagged = worker_id(api.store(), &flagged_nik).await;

    // Found by the last 6 digits of the NIK and the phone (any format).
    let (s, a) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"nik_last6": &flagged_nik[10..], "phone": "+62 812-0000-0010"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a["found"], true, "{a}");
    assert_eq!(a["registered"], true);
    assert_eq!(a["validated"], true);
    assert_eq!(a["flagged"], true);
    assert_eq!(a["flag_reasons"], json!(["undelivered"]));
    assert_eq!(a["last_notice"]["status"], "undelivered");
    assert!(a["last_notice"]["at"].as_str().unwrap().ends_with("WIB"));
    assert_eq!(a["advice"], ADVICE_FLAGGED);
    assert!(a.get("nik_last4").is_none(), "{a}");
    assert_eq!(a["phone_masked"], "+62812****010");
    let text = a.to_string();
    assert!(
        !text.contains(&flagged_nik) && !text.contains("Nakes") && !text.contains("81200000010")
    );

    // Not found and "does not match" are the same answer, byte for byte.
    let mut answers = vec![];
    for body in [
        json!({"nik_last6": "999999", "phone": phone_of("00000010")}),
        json!({"nik_last6": &nik_of(2, "73")[10..], "phone": phone_of("00000010")}),
        json!({"nik_last6": &flagged_nik[10..], "phone": "081299999999"}),
    ] {
        let r = api
            .call(
                Method::POST,
                "/api/v1/chatbot/lookup",
                Some(&bot),
                Some(&body),
                &[],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        answers.push(r.text().await.unwrap());
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let nf: Value = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!(nf["found"], false);
    assert_eq!(nf["advice"], ADVICE_NOT_FOUND);
    // The same keys as a found answer.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&nf), keys(&a));

    // By full NIK and by phone: the delivered worker.
    let (_, d) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"nik": nik_of(2, "73"), "whatsapp_phone": "081300000073"}),
        )
        .await;
    assert_eq!(
        (d["found"].clone(), d["flagged"].clone()),
        (json!(true), json!(false))
    );
    assert!(
        d["advice"].as_str().unwrap().contains("sudah terkirim"),
        "{d}"
    );
    let (_, p) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"phone": phone_of("00000021")}),
        )
        .await;
    // By phone alone: no NIK digit and no name in any field.
    assert_eq!(p["found"], true);
    let text = p.to_string();
    let nik2 = nik_of(2, "73");
    assert!(
        !text.contains(&nik2[12..]) && !text.contains("Nakes"),
        "{p}"
    );
    // Bad input names the field.
    let (s, e) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"nik_last6": "12345", "phone": phone_of("1")}),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("nik_last6"))
    );
    let (s, e) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"phone": "021-555-0123"}),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("phone"))
    );

    // Re-registration with a new number.
    // The name as the person types it: case, spaces and punctuation aside.
    let rereg = json!({
        "nik": &flagged_nik,
        "full_name": "NAKES  nomor-1",
        "whatsapp_phone": "0813-0000-0011",
    });
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            Some(&bot),
            Some(&rereg),
            &[],
        )
        .await;
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "Idempotency-Key is required"
    );
    let key = [("Idempotency-Key", "wa-chat-77-rereg")];
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            Some(&bot),
            Some(&rereg),
            &key,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let first = r.text().await.unwrap();
    let done: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(done["reregistered"], true);
    assert_eq!(done["status"], "reregistered");
    assert_eq!(done["phone_changed"], true);
    assert_eq!(done["flags_resolved"], 1);
    assert_eq!(done["phone_masked"], "+62813****011");
    // A number nobody validated: the notice without NIK digits.
    assert_eq!(
        done["notice"]["campaign_name"],
        pedulicovid::store::UNVALIDATED_CAMPAIGN
    );
    assert_ne!(done["notice"]["campaign_id"], campaign);
    assert!(!first.contains(&flagged_nik));

    // The simulator delivers the new notice to the new number (the
    // standing campaign's window opened, whatever the hour).
    open_windows_now(&api._db.url).await;
    let statuses = settled_statuses(api.store(), flagged).await;
    assert_eq!(statuses, vec!["undelivered", "delivered"]);
    let sim = api.app.simulator.clone().unwrap();
    assert_eq!(sim.submits_for("6281300000011"), 1);
    let t = api.store().timeline(flagged).await.unwrap();
    assert_eq!(t.flags.len(), 1);
    assert_eq!(t.flags[0].resolution.as_deref(), Some("reregistered"));
    assert_eq!(
        t.flags[0].resolved_by.as_deref(),
        Some("chatbot:chatbot-kominfo")
    );
    let chatbot_changes = t
        .phone_changes
        .iter()
        .filter(|p| p.source == "chatbot")
        .count();
    assert_eq!(chatbot_changes, 1);
    assert!(t.audit.iter().any(|a| a.action == "worker.reregister"));
    let w = api
        .store()
        .worker_by_nik(&flagged_nik)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.phone.as_e164(), "+6281300000011");

    // The same request again with the same key: the stored answer, nothing more.
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            Some(&bot),
            Some(&rereg),
            &key,
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    assert_eq!(r.text().await.unwrap(), first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = api.store().timeline(flagged).await.unwrap();
    assert_eq!(t.messages.len(), 2, "one new message only");
    assert_eq!(
        t.phone_changes
            .iter()
            .filter(|p| p.source == "chatbot")
            .count(),
        1
    );
    assert_eq!(sim.submits_for("6281300000011"), 1);
    // The same key with another request is refused.
    let mut other = rereg.clone();
    other["whatsapp_phone"] = json!("081300000021");
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            Some(&bot),
            Some(&other),
            &key,
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    // An unknown worker: 404, the same for a wrong name.
    let (s1, e1) = api
        .post_with_key(rereg_body(91, "31", "081300000041"), &bot, "k-2")
        .await;
    let mut wrong_name = rereg_body(2, "73", "081300000041");
    wrong_name["full_name"] = json!("Nakes Nomor 3");
    let (s2, e2) = api.post_with_key(wrong_name, &bot, "k-3").await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    assert_eq!(e1, e2);

    // Looked up by the new number: no longer flagged, notice delivered.
    let (_, n) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"phone": "081300000011"}),
        )
        .await;
    assert_eq!(n["flagged"], false);
    assert_eq!(n["last_notice"]["status"], "delivered");

    // A worker not validated: the phone changes, no notice is queued.
    let (s, nv) = api
        .post_with_key(rereg_body(3, "31", "081300000051"), &bot, "k-4")
        .await;
    assert_eq!(s, StatusCode::OK, "{nv}");
    assert!(nv["notice"].is_null());
    api.stop().await;
}
both_backends!(chatbot_reregisters_a_flagged_worker);

impl Api {
    async fn post_with_key(&self, body: Value, token: &str, key: &str) -> (StatusCode, Value) {
        let r = self
            .call(
                Method::POST,
                "/api/v1/chatbot/reregister",
                Some(token),
                Some(&body),
                &[("Idempotency-Key", key)],
            )
            .await;
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// A re-registration (pending in the default mode) approved by support
    /// staff: the approval's outcome as JSON.
    async fn rereg_approved(&self, body: Value, token: &str, key: &str) -> Value {
        let (s, a) = self.post_with_key(body, token, key).await;
        assert_eq!(s, StatusCode::OK, "{a}");
        assert_eq!(a["status"], "pending_validation", "{a}");
        let id = self
            .store()
            .reregistrations(Some("pending"), None, 10)
            .await
            .unwrap()[0]
            .id;
        let o = self
            .store()
            .approve_reregistration(
                id,
                &pedulicovid::domain::notice::FreeText::staff("desk-1").unwrap(),
                &pedulicovid::domain::notice::FreeText::note("checked by phone").unwrap(),
            )
            .await
            .unwrap();
        serde_json::to_value(o).unwrap()
    }
}

async fn reregistration_outside_any_campaign_uses_the_standing_one(backend: &str) {
    let api = Api::start(backend, Parts::ALL, "").await;
    let csv = format!("{HEADER}{}", row(5, "94", "00000052"));
    import_text(api.store(), &csv).await;
    let bot = api.token("bot", Role::Chatbot).await;
    let a = api
        .rereg_approved(rereg_body(5, "94", "081300000052"), &bot, "s-1")
        .await;
    let name = a["notice"]["campaign_name"].as_str().unwrap();
    assert_eq!(name, pedulicovid::store::REREGISTRATION_CAMPAIGN);
    let c = api
        .store()
        .campaign(a["notice"]["campaign_id"].as_i64().unwrap())
        .await
        .unwrap();
    assert_eq!(c.template, "registrasi_ulang");
    assert_eq!((c.window_start, c.window_end), (480, 1200));
    // The notice waits for 08:00-20:00 in the worker's zone (WIT here).
    let due = a["notice"]["next_attempt_at"].as_i64().unwrap();
    let w = pedulicovid::campaign::Window::default();
    assert!(w.is_open(due, 9));
    // A second re-registration reuses the same standing campaign.
    let csv = format!("{HEADER}{}", row(6, "31", "00000062"));
    import_text(api.store(), &csv).await;
    let b = api
        .rereg_approved(rereg_body(6, "31", "081300000062"), &bot, "s-2")
        .await;
    assert_eq!(b["notice"]["campaign_id"], a["notice"]["campaign_id"]);
    api.stop().await;
}
both_backends!(reregistration_outside_any_campaign_uses_the_standing_one);

async fn concurrent_retries_do_the_work_once(backend: &str) {
    let api = Api::start_mode(backend, Parts::SERVE, "", ReregistrationMode::Immediate).await;
    let csv = format!(
        "{HEADER}{}{}{}",
        row(7, "31", "00000070"),
        // Two workers sharing one phone.
        row(8, "31", "00000088"),
        row(9, "51", "00000088"),
    );
    import_text(api.store(), &csv).await;
    run_campaign(&api.app, "januari", &closed_window_now()).await;
    let bot = api.token("bot", Role::Chatbot).await;
    let body = rereg_body(7, "31", "081300000071");
    let calls = (0..6).map(|_| api.post_with_key(body.clone(), &bot, "same-key"));
    let answers = futures::future::join_all(calls).await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    assert!(
        answers.windows(2).all(|w| w[0].1 == w[1].1),
        "one stored answer"
    );
    let w = worker_id(api.store(), &nik_of(7, "31")).await;
    let t = api.store().timeline(w).await.unwrap();
    assert_eq!(t.messages.len(), 2, "one new message only");
    assert_eq!(
        t.messages[0].status, "cancelled",
        "the queued notice to the old number"
    );
    assert_eq!(t.messages[1].status, "queued");
    assert_eq!(t.resends.len(), 1);

    // A shared phone alone does not say who: the bot must ask for the
    // NIK's last digits, which then find exactly one.
    let (_, a) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"phone": phone_of("00000088")}),
        )
        .await;
    assert_eq!(a["found"], false);
    assert_eq!(
        a["advice"],
        pedulicovid::http::api::chatbot::ADVICE_AMBIGUOUS
    );
    let (_, a) = api
        .post(
            "/api/v1/chatbot/lookup",
            &bot,
            json!({"phone": phone_of("00000088"), "nik_last6": &nik_of(9, "51")[10..]}),
        )
        .await;
    assert_eq!(a["found"], true);
    assert!(a.get("nik_last4").is_none(), "{a}");
    api.stop().await;
}
both_backends!(concurrent_retries_do_the_work_once);

/// (key, created_at) of every stored idempotency key, read with SQL.
async fn idempotency_keys(url: &str) -> Vec<(String, i64)> {
    let sql = "SELECT idem_key, created_at FROM idempotency_keys ORDER BY idem_key";
    sql_rows(url, sql, &[]).await
}

/// Moves a stored idempotency key's creation back by `age_ms`.
async fn age_key(url: &str, key: &str, age_ms: i64) {
    let sql = "UPDATE idempotency_keys SET created_at = created_at - $1 WHERE idem_key = $2";
    let n = if url.starts_with("sqlite:") {
        let p = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(age_ms)
            .bind(key)
            .execute(&p)
            .await
            .unwrap()
            .rows_affected()
    } else {
        let p = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(age_ms)
            .bind(key)
            .execute(&p)
            .await
            .unwrap()
            .rows_affected()
    };
    assert_eq!(n, 1, "{key}");
}

async fn housekeeping_purges_old_idempotency_keys(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let csv = format!(
        "{HEADER}{}{}",
        row(7, "31", "00000070"),
        row(8, "31", "00000080")
    );
    import_text(api.store(), &csv).await;
    run_campaign(&api.app, "januari", &closed_window_now()).await;
    let bot = api.token("bot", Role::Chatbot).await;
    for (i, key) in [(7, "k-old"), (8, "k-fresh")] {
        let body = rereg_body(i, "31", &format!("0813000000{i}1"));
        let (s, a) = api.post_with_key(body, &bot, key).await;
        assert_eq!(s, StatusCode::OK, "{a}");
    }
    let day = 24 * 3600 * 1000;
    let worker = pedulicovid::config::WorkerSettings::default();
    assert_eq!(worker.idempotency_retention_secs, 7 * 24 * 3600);
    // Past the retention by a day, and a day inside it.
    age_key(&api._db.url, "k-old", 8 * day).await;
    age_key(&api._db.url, "k-fresh", 6 * day).await;
    pedulicovid::dispatch::housekeeping_once(api.store(), &worker)
        .await
        .unwrap();
    let left: Vec<String> = idempotency_keys(&api._db.url)
        .await
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(left, ["k-fresh"]);
    // The kept key still answers a retry from its stored response.
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/reregister",
            Some(&bot),
            Some(&rereg_body(8, "31", "081300000081")),
            &[("Idempotency-Key", "k-fresh")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["idempotent-replayed"], "true");
    api.stop().await;
}
both_backends!(housekeeping_purges_old_idempotency_keys);

async fn chatbot_rate_limit_is_per_token(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let a = api.token("bot-a", Role::Chatbot).await;
    let b = api.token("bot-b", Role::Chatbot).await;
    let body = json!({"phone": "081200000001"});
    let calls = (0..60).map(|_| {
        api.call(
            Method::POST,
            "/api/v1/chatbot/lookup",
            Some(&a),
            Some(&body),
            &[],
        )
    });
    let answers = futures::future::join_all(calls).await;
    let limited: Vec<&reqwest::Response> = answers
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert!(!limited.is_empty(), "60 requests at once exceed 20/s");
    let retry: u64 = limited[0].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (s, _) = api.post("/api/v1/chatbot/lookup", &b, body.clone()).await;
    assert_eq!(s, StatusCode::OK, "another token has its own budget");
    api.stop().await;
}
both_backends!(chatbot_rate_limit_is_per_token);

// ---------------------------------------------------------------- support

async fn support_resend_is_audited_refused_in_flight_and_limited(backend: &str) {
    let api = Api::start(backend, Parts::ALL, "0=undelivered").await;
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "00000011"),
        row(3, "31", "00000030"),
    );
    import_text(api.store(), &csv).await;
    let c = run_campaign(&api.app, "januari", "00:00-24:00").await;
    wait_done(api.store(), c, Duration::from_secs(30)).await;
    let desk = api.token("desk-1", Role::Support).await;
    let nik = nik_of(1, "31");
    let w = worker_id(api.store(), &nik).await;

    // Search by NIK, by phone in another format, by part of the name.
    for q in [
        nik.clone(),
        "+62 812 0000 0011".into(),
        "kes nomor 1".into(),
    ] {
        let (s, r) = api
            .post("/api/v1/support/search", &desk, json!({"query": q}))
            .await;
        assert_eq!(s, StatusCode::OK, "{r}");
        let ids: Vec<i64> = r["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["id"].as_i64().unwrap())
            .collect();
        assert!(ids.contains(&w), "{q}: {r}");
        assert!(!r.to_string().contains(&nik), "masked");
        assert!(!r.to_string().contains("Nakes Nomor 1"), "masked");
    }
    let (s, r) = api
        .post("/api/v1/support/search", &desk, json!({"query": "100%_"}))
        .await;
    assert_eq!(
        (s, r["results"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );
    let (s, r) = api
        .post("/api/v1/support/search", &desk, json!({"query": "ab"}))
        .await;
    assert_eq!(
        (s, r["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("query"))
    );

    // Three resends to one number in a day; each waits for the last one.
    let resend = format!("/api/v1/support/workers/{w}/resend");
    for i in 1..=3 {
        let (s, n) = api
            .post(
                &resend,
                &desk,
                json!({"staff": "Siti", "reason": format!("caller {i}: phone was off")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{n}");
        assert_eq!(n["generation"], i + 1);
        settled_statuses(api.store(), w).await;
    }
    let r = api
        .call(
            Method::POST,
            &resend,
            Some(&desk),
            Some(&json!({"reason": "fourth"})),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 3600
    );
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("at most 3"), "{e}");
    let sim = api.app.simulator.clone().unwrap();
    assert_eq!(sim.submits_for("6281200000011"), 4);

    // The timeline says who did what.
    let (s, t) = api
        .get(&format!("/api/v1/support/workers/{w}/timeline"), &desk)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["messages"].as_array().unwrap().len(), 4);
    let audits: Vec<&Value> = t["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "worker.resend")
        .collect();
    assert_eq!(audits.len(), 3);
    assert_eq!(audits[0]["actor"], "Siti (via desk-1)");
    assert!(audits[0]["detail"]
        .as_str()
        .unwrap()
        .contains("caller 1: phone was off"));
    assert_eq!(t["resends"].as_array().unwrap().len(), 3);
    let m0 = &t["messages"][0];
    assert!(!m0["attempt_log"].as_array().unwrap().is_empty());
    assert!(!m0["receipts"].as_array().unwrap().is_empty());
    assert!(!t.to_string().contains("6281200000011"), "phones masked");

    // A worker whose notice waits for its window: a resend is refused.
    let csv = format!("{HEADER}{}", row(4, "31", "00000041"));
    import_text(api.store(), &csv).await;
    run_campaign(&api.app, "tertunda", &closed_window_now()).await;
    let w4 = worker_id(api.store(), &nik_of(4, "31")).await;
    let (s, e) = api
        .post(
            &format!("/api/v1/support/workers/{w4}/resend"),
            &desk,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("queued"));
    let (s, _) = api
        .post(
            "/api/v1/support/workers/99999999/resend",
            &desk,
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = api.post(&resend, &desk, json!({"reason": " "})).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("reason"))
    );

    // Resolving a flag by hand, with a note.
    let w3 = worker_id(api.store(), &nik_of(3, "31")).await;
    let flag = api.store().timeline(w3).await.unwrap().flags[0].id;
    let path = format!("/api/v1/support/flags/{flag}/resolve");
    let (s, f) = api
        .post(&path, &desk, json!({"note": "registered at the puskesmas"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{f}");
    assert_eq!(f["resolution"], "support");
    assert_eq!(f["note"], "registered at the puskesmas");
    assert_eq!(f["resolved_by"], "desk-1");
    let (s, _) = api.post(&path, &desk, json!({"note": "again"})).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let t3 = api.store().timeline(w3).await.unwrap();
    assert!(t3
        .audit
        .iter()
        .any(|a| a.action == "flag.resolve" && a.actor == "desk-1"));
    api.stop().await;
}
both_backends!(support_resend_is_audited_refused_in_flight_and_limited);

// ---------------------------------------------------------------- operator

async fn operators_run_campaigns_over_the_api(backend: &str) {
    let api = Api::start(backend, Parts::ALL, "0=undelivered").await;
    // Worker 2 (undelivered, so on the outreach list) has a name a
    // spreadsheet would run as a formula.
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "00000011"),
        row(2, "31", "00000020").replacen("Nakes Nomor 2,", "=1+2 Budi,", 1),
    );
    import_text(api.store(), &csv).await;
    let op = api.token("ops", Role::Operator).await;

    let (s, e) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "x", "template": "undangan_registrasi", "window": "20:00-08:00"}),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("window"))
    );
    let (s, e) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "x", "template": "no_such_template"}),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("template"))
    );
    let (s, e) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "x", "template": "undangan_registrasi", "provinces": ["99"]}),
        )
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("province"))
    );

    let (s, created) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "Jakarta", "template": "undangan_registrasi", "window": "00:00-24:00", "provinces": ["31"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["enqueued"], 2);
    assert_eq!(created["campaign"]["created_by"], "ops");
    let id = created["campaign"]["id"].as_i64().unwrap();
    wait_done(api.store(), id, Duration::from_secs(30)).await;

    let (s, p) = api.get(&format!("/api/v1/campaigns/{id}"), &op).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["by_status"]["delivered"], 1);
    assert_eq!(p["by_status"]["undelivered"], 1);
    assert_eq!(p["flagged_by_reason"]["undelivered"], 1);
    assert_eq!(p["sent"], 2);
    assert!(p["throughput_per_sec"].as_f64().unwrap() > 0.0);
    // Nothing left: no ETA, not "0 s from now".
    assert_eq!(
        (&p["eta_seconds"], &p["eta_wib"]),
        (&Value::Null, &Value::Null)
    );
    let (s, list) = api.get("/api/v1/campaigns", &op).await;
    assert_eq!((s, list.as_array().unwrap().len()), (StatusCode::OK, 1));

    // The outreach list: full contact data by design, and audited.
    let r = api
        .get_raw(
            &format!("/api/v1/campaigns/{id}/nonrecipients.csv"),
            Some(&op),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text().await.unwrap();
    let mut rd = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        rd.headers().unwrap().iter().collect::<Vec<_>>()[..4],
        ["flag_id", "campaign_id", "message_id", "nik"]
    );
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][3], nik_of(2, "31"));
    // The name is guarded against formulas; the phone we normalised is not
    // mangled.
    assert_eq!(&rows[0][4], "'=1+2 Budi");
    assert_eq!(&rows[0][5], "+6281200000020");

    // Pause, resume and cancel a scheduled campaign; each audited.
    let (_, later) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "nanti", "template": "undangan_registrasi", "at": "2099-01-01 08:00"}),
        )
        .await;
    let later = later["campaign"]["id"].as_i64().unwrap();
    let r = api
        .call(
            Method::POST,
            &format!("/api/v1/campaigns/{later}/pause"),
            Some(&op),
            None,
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["status"].clone(), v["pause_reason"].clone()),
        (json!("paused"), json!("paused by operator"))
    );
    let (s, _) = api
        .post(
            &format!("/api/v1/campaigns/{later}/pause"),
            &op,
            json!({"reason": "twice"}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    // Its start is still ahead: resumed, it is scheduled again.
    let (s, v) = api.campaign_action(later, "resume", &op).await;
    assert_eq!(
        (s, v["status"].clone()),
        (StatusCode::OK, json!("scheduled"))
    );
    let (s, v) = api.campaign_action(later, "cancel", &op).await;
    assert_eq!(
        (s, v["status"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (s, _) = api.campaign_action(later, "cancel", &op).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = api.get("/api/v1/campaigns/424242", &op).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, e) = api.get("/api/v1/campaigns/abc", &op).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("path"))
    );

    // /metrics: no token, the queue and flags, no personal data.
    let r = api.get_raw("/metrics", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let m = r.text().await.unwrap();
    assert!(
        m.contains("pedulicovid_open_flags{gateway=\"sim\",reason=\"undelivered\"} 1"),
        "{m}"
    );
    assert!(
        m.contains("pedulicovid_messages{gateway=\"\",status=\"cancelled\"}"),
        "{m}"
    );
    assert!(m.contains("pedulicovid_build_info{"), "{m}");
    assert!(m.contains("process_resident_memory_bytes"), "{m}");
    // The exposition of a real campaign passes Prometheus' own linter.
    promtool_check_metrics(&m);
    assert!(
        m.contains("pedulicovid_messages{gateway=\"sim\",status=\"delivered\"} 1"),
        "{m}"
    );
    assert!(m.contains("pedulicovid_send_latency_seconds_count"));
    assert!(m.contains("pedulicovid_database_up 1"));
    assert!(!m.contains("81200000020") && !m.contains(&nik_of(2, "31")));
    for path in ["/healthz", "/readyz"] {
        let r = api.get_raw(path, None).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    // The audit trail has the operator's actions.
    let audits = audit_actions(&api._db.url).await;
    for a in [
        "campaign.create",
        "campaign.export_nonrecipients",
        "campaign.pause",
        "campaign.resume",
        "campaign.cancel",
    ] {
        assert!(
            audits.contains(&(a.to_string(), "ops".to_string())),
            "{a}: {audits:?}"
        );
    }
    api.stop().await;
}
both_backends!(operators_run_campaigns_over_the_api);

/// (province, next_attempt_at, status) of every message of the campaign,
/// by province, read with SQL.
async fn due_times(url: &str, campaign: i64) -> Vec<(String, i64, String)> {
    let sql = "SELECT w.province_code, m.next_attempt_at, m.status FROM messages m \
               JOIN health_workers w ON w.id = m.worker_id WHERE m.campaign_id = $1 \
               ORDER BY w.province_code";
    sql_rows(url, sql, &[campaign]).await
}

async fn operators_reschedule_campaigns(backend: &str) {
    // No worker: messages stay queued, so their due times can be read.
    let api = Api::start(backend, Parts::SERVE, "").await;
    // Jakarta is WIB (UTC+7), Papua WIT (UTC+9).
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "00000011"),
        row(2, "94", "00000021")
    );
    assert_eq!(import_text(api.store(), &csv).await.accepted, 2);
    let op = api.token("ops", Role::Operator).await;
    let create = |body: Value| api.create_campaign(&op, body);
    let schedule = |id: i64, body: Value| {
        let api = &api;
        let op = op.clone();
        async move {
            api.post(&format!("/api/v1/campaigns/{id}/schedule"), &op, body)
                .await
        }
    };
    let id = create(json!({"name": "nanti", "template": "undangan_registrasi",
        "at": "2099-01-01 10:00", "window": "08:00-20:00"}))
    .await;

    // 06:30 WIB is before the window in Jakarta (08:00 WIB) and 08:30 in
    // Papua, inside it: each message moves exactly as creation would have
    // placed it.
    let (s, v) = schedule(id, json!({"at": "2099-02-03 06:30"})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let at = campaign::parse_time("2099-02-03 06:30").unwrap();
    assert_eq!(v["campaign"]["status"], "scheduled");
    assert_eq!(v["campaign"]["scheduled_at"], at);
    assert_eq!(v["campaign"]["scheduled_wib"], "2099-02-03 06:30:00 WIB");
    assert_eq!(v["rescheduled"], 2);
    let wib_open = campaign::parse_time("2099-02-03 08:00").unwrap();
    assert_eq!(
        due_times(&api._db.url, id).await,
        vec![
            ("31".to_string(), wib_open, "queued".to_string()),
            ("94".to_string(), at, "queued".to_string()),
        ]
    );
    // RFC 3339 works too, as at creation.
    let (s, v) = schedule(id, json!({"at": "2099-02-04T12:00:00+09:00"})).await;
    assert_eq!((s, &v["rescheduled"]), (StatusCode::OK, &json!(2)), "{v}");
    let at2 = campaign::parse_time("2099-02-04 10:00").unwrap();
    assert_eq!(
        due_times(&api._db.url, id)
            .await
            .iter()
            .map(|r| r.1)
            .collect::<Vec<_>>(),
        vec![at2, at2]
    );

    // Bad times change nothing.
    for (body, why) in [
        (json!({"at": "besok"}), "is not a time"),
        (json!({"at": "2020-01-01 08:00"}), "in the past"),
    ] {
        let (s, e) = schedule(id, body.clone()).await;
        assert_eq!(
            (s, e["field"].clone()),
            (StatusCode::BAD_REQUEST, json!("at")),
            "{body}: {e}"
        );
        assert!(e["reason"].as_str().unwrap().contains(why), "{e}");
    }
    let (s, e) = schedule(id, json!({"at": "2099-01-01 08:00", "window": "x"})).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("body"))
    );
    let with_deadline = create(json!({"name": "tenggat", "template": "undangan_registrasi",
        "at": "2099-01-01 10:00", "deadline": "2099-01-05 00:00"}))
    .await;
    let (s, e) = schedule(with_deadline, json!({"at": "2099-01-06 08:00"})).await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("at"))
    );
    assert!(e["reason"].as_str().unwrap().contains("deadline"), "{e}");
    assert_eq!(
        api.store().campaign(id).await.unwrap().scheduled_at,
        at2,
        "a refusal changed the campaign"
    );

    // Paused stays paused; resumed with its start ahead it is scheduled.
    let (s, _) = api.campaign_action(id, "pause", &op).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = schedule(id, json!({"at": "2099-03-01 09:00"})).await;
    assert_eq!(
        (s, &v["campaign"]["status"]),
        (StatusCode::OK, &json!("paused"))
    );
    let (_, v) = api.campaign_action(id, "resume", &op).await;
    assert_eq!(v["status"], "scheduled");
    // Moved to now, it runs (and each message waits for its window).
    let now = chrono::Utc::now().to_rfc3339();
    let (s, v) = schedule(id, json!({"at": now})).await;
    assert_eq!(
        (s, &v["campaign"]["status"]),
        (StatusCode::OK, &json!("running")),
        "{v}"
    );

    // Finished campaigns are refused: cancelled, and completed (nobody in
    // Bali, so nothing to send).
    let (s, _) = api.campaign_action(id, "cancel", &op).await;
    assert_eq!(s, StatusCode::OK);
    let (s, e) = schedule(id, json!({"at": "2099-04-01 08:00"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("cancelled"), "{e}");
    let empty = create(json!({"name": "kosong", "template": "undangan_registrasi",
        "provinces": ["51"]}))
    .await;
    wait_for(
        "empty campaign completed",
        Duration::from_secs(10),
        || async {
            let c = api.store().campaign(empty).await.unwrap();
            (c.status.as_str() == "completed").then_some(())
        },
    )
    .await;
    let (s, e) = schedule(empty, json!({"at": "2099-04-01 08:00"})).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(e["error"].as_str().unwrap().contains("completed"), "{e}");
    let (s, _) = schedule(424242, json!({"at": "2099-04-01 08:00"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // One audit entry per change made, by the operator; none for refusals.
    let audits = audit_actions(&api._db.url).await;
    let schedules: Vec<_> = audits
        .iter()
        .filter(|(a, _)| a == "campaign.schedule")
        .collect();
    assert_eq!(schedules.len(), 4, "{audits:?}");
    assert!(schedules.iter().all(|(_, actor)| actor == "ops"));
    api.stop().await;
}
both_backends!(operators_reschedule_campaigns);

async fn operator_actions_commit_with_their_audit_entry(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let csv = format!("{HEADER}{}", row(1, "31", "00000011"));
    import_text(api.store(), &csv).await;
    let op = api.token("ops", Role::Operator).await;
    let id = api
        .create_campaign(
            &op,
            json!({"name": "nanti", "template": "undangan_registrasi", "at": "2099-01-01 10:00"}),
        )
        .await;
    let before = api.store().campaign(id).await.unwrap();
    let due_before = due_times(&api._db.url, id).await;

    // With the audit trail failing, no action takes effect: the change
    // and its entry are one transaction.
    break_audit_log(&api._db.url).await;
    for (path, body) in [
        ("schedule", json!({"at": "2099-02-01 10:00"})),
        ("pause", json!({})),
        ("cancel", json!({})),
    ] {
        let (s, e) = api
            .post(&format!("/api/v1/campaigns/{id}/{path}"), &op, body)
            .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR, "{path}: {e}");
    }
    let r = api
        .get_raw(
            &format!("/api/v1/campaigns/{id}/nonrecipients.csv"),
            Some(&op),
        )
        .await;
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !r.text().await.unwrap().contains("flag_id"),
        "data left unaudited"
    );
    let (s, _) = api
        .post(
            "/api/v1/campaigns",
            &op,
            json!({"name": "lagi", "template": "undangan_registrasi"}),
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);

    let after = api.store().campaign(id).await.unwrap();
    assert_eq!(
        (after.status.as_str(), after.scheduled_at, after.updated_at),
        (
            before.status.as_str(),
            before.scheduled_at,
            before.updated_at
        )
    );
    assert_eq!(due_times(&api._db.url, id).await, due_before);
    assert_eq!(api.store().campaigns().await.unwrap().len(), 1);
    api.stop().await;
}
both_backends!(operator_actions_commit_with_their_audit_entry);

// ---------------------------------------------------------------- limits

async fn body_limit_and_json_errors_cover_the_api(backend: &str) {
    let api = Api::start(backend, Parts::SERVE, "").await;
    let bot = api.token("bot", Role::Chatbot).await;
    let big = json!({"phone": "0".repeat(200_000)});
    let r = api
        .call(
            Method::POST,
            "/api/v1/chatbot/lookup",
            Some(&bot),
            Some(&big),
            &[],
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The unread body is still on the connection: it is closed, and the
    // client told so, rather than reused for the next request.
    assert_eq!(r.headers()["connection"], "close");
    let r = api
        .http
        .post(format!("{}/api/v1/chatbot/lookup", api.base))
        .bearer_auth(&bot)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["field"], "body");
    let (s, e) = api
        .post("/api/v1/chatbot/lookup", &bot, json!({"NIK": "x"}))
        .await;
    assert_eq!(
        (s, e["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("body"))
    );
    api.stop().await;
}
both_backends!(body_limit_and_json_errors_cover_the_api);

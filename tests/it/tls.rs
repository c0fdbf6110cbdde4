//! HTTPS to gateways and on our own listener, against real TLS on 127.0.0.1.
//!
//! Every test makes its own certificate authority with rcgen and a tiny
//! HTTPS carrier (tokio-rustls + hyper + axum) that answers like Kannel,
//! Jasmin and a JSON aggregator. The client side is the product's own
//! (`gateway_client`, the dialects, `App`); only the carrier is test code.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::routing::{get, post};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::domain::{Msisdn, SmsText};
use pedulicovid::gateway::http::{gateway_client, GatewayTls};
use pedulicovid::gateway::jasmin::{JasminConfig, JasminGateway};
use pedulicovid::gateway::json::{JsonConfig, JsonGateway};
use pedulicovid::gateway::kannel::{KannelConfig, KannelGateway};
use pedulicovid::gateway::{Fault, Gateway, OutboundSms, SendError};
use pedulicovid::metrics::{FailureReason, METRICS};

// ---------------------------------------------------------------------------
// A throw-away PKI
// ---------------------------------------------------------------------------

/// A certificate authority made for one test.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = cert.pem();
        Ca { cert, key, pem }
    }

    /// A leaf certificate for `ip` and/or `dns` names, valid between the
    /// two years given (inclusive of 1 January of each).
    fn leaf(&self, ip: Option<IpAddr>, dns: &[&str], years: (i32, i32)) -> Leaf {
        let mut params =
            CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        if let Some(ip) = ip {
            params.subject_alt_names.push(SanType::IpAddress(ip));
        }
        params.distinguished_name.push(
            DnType::CommonName,
            dns.first().copied().unwrap_or("127.0.0.1"),
        );
        params.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        params.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1, valid now.
    fn loopback(&self) -> Leaf {
        self.leaf(Some(LOOPBACK), &[], (2020, 2090))
    }
}

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

impl Leaf {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }
    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---------------------------------------------------------------------------
// A tiny HTTPS carrier
// ---------------------------------------------------------------------------

/// What the carrier saw: requests answered, and Kannel `dlr-url`s.
#[derive(Default)]
struct Seen {
    requests: AtomicU64,
    dlr_urls: Mutex<Vec<String>>,
}

/// An HTTPS carrier on 127.0.0.1 serving `leaf`; when `client_ca` is given
/// it requires a client certificate signed by it (mutual TLS). Answers:
/// `GET /cgi-bin/sendsms` as Kannel, `POST /send` as Jasmin, `POST
/// /v1/messages` as a JSON aggregator.
async fn carrier(leaf: &Leaf, client_ca: Option<&Ca>) -> (u16, Arc<Seen>) {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(leaf.chain(), leaf.key()).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen = Arc::new(Seen::default());
    let app = axum::Router::new()
        .route(
            "/cgi-bin/sendsms",
            get(
                |State(seen): State<Arc<Seen>>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    if let Some(u) = q.get("dlr-url") {
                        seen.dlr_urls.lock().unwrap().push(u.clone());
                    }
                    (axum::http::StatusCode::ACCEPTED, "0: Accepted for delivery")
                },
            ),
        )
        .route(
            "/send",
            post(|State(seen): State<Arc<Seen>>| async move {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                "Success \"4a9f2c1e-jasmin\""
            }),
        )
        .route(
            "/v1/messages",
            post(|State(seen): State<Arc<Seen>>| async move {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                axum::Json(serde_json::json!({ "message_id": "agg-77" }))
            }),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: the request never arrives.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                    .await;
            });
        }
    });
    (port, seen)
}

/// [`test_settings`] with no simulator and exactly one gateway, `name`
/// (Kannel dialect, defaults otherwise): what these tests configure is
/// never rewritten or joined by anything else.
fn one_gateway(db: &TestDb, name: &str) -> pedulicovid::config::Settings {
    let mut s = test_settings(db);
    s.gateways = vec![named_gateway(name)];
    s
}

/// A Kannel gateway (not the simulator) at a port nothing listens on;
/// tests point it where they need.
fn named_gateway(name: &str) -> pedulicovid::config::GatewaySettings {
    pedulicovid::config::GatewaySettings {
        name: name.into(),
        dialect: kannel_at("https://127.0.0.1:9/cgi-bin/sendsms".into()),
        ..Default::default()
    }
}

/// A Kannel gateway's settings sending to `sendsms_url`.
fn kannel_at(sendsms_url: String) -> pedulicovid::config::GatewayDialect {
    KannelConfig {
        sendsms_url,
        ..Default::default()
    }
    .into()
}

fn sms(id: i64) -> OutboundSms {
    OutboundSms {
        message_id: id,
        to: Msisdn::parse("081234567890").unwrap(),
        text: SmsText::new("Halo nakes"),
    }
}

fn kannel(port: u16, tls: &GatewayTls) -> KannelGateway {
    let config = KannelConfig {
        sendsms_url: format!("https://127.0.0.1:{port}/cgi-bin/sendsms"),
        ..Default::default()
    };
    let client = gateway_client("tsel", tls, Duration::from_secs(5), 4).expect("client builds");
    KannelGateway::new(
        "tsel",
        config,
        "https://127.0.0.1:1/callbacks/tsel/token".into(),
        client,
    )
}

fn ca_only(dir: &Path, ca: &Ca) -> GatewayTls {
    GatewayTls {
        ca_file: Some(write(dir, "ca.pem", &ca.pem)),
        ..Default::default()
    }
}

/// The send failed as a TLS fault of the gateway, with a reason that says
/// `want` (case-insensitive).
fn assert_tls_fault(got: Result<pedulicovid::gateway::Accepted, SendError>, want: &str) {
    match got {
        Err(SendError::GatewayFault {
            kind: Fault::Tls,
            reason,
        }) => assert!(
            reason.to_lowercase().contains(&want.to_lowercase()),
            "reason {reason:?} does not say {want:?}"
        ),
        other => panic!("expected a TLS gateway fault ({want}), got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// HTTPS to gateways
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_dialect_sends_over_https_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let (port, seen) = carrier(&ca.loopback(), None).await;
    let tls = ca_only(dir.path(), &ca);

    let got = kannel(port, &tls).send(&sms(1)).await;
    assert_eq!(got.unwrap().gateway_message_id, None, "kannel gives no id");

    let client = gateway_client("jas", &tls, Duration::from_secs(5), 4).unwrap();
    let jasmin = JasminGateway::new(
        "jas",
        JasminConfig {
            send_url: format!("https://127.0.0.1:{port}/send"),
            ..Default::default()
        },
        "https://127.0.0.1:1/callbacks/jas/token".into(),
        client,
    );
    let got = jasmin.send(&sms(2)).await.unwrap();
    assert_eq!(got.gateway_message_id.as_deref(), Some("4a9f2c1e-jasmin"));

    let client = gateway_client("agg", &tls, Duration::from_secs(5), 4).unwrap();
    let json = JsonGateway::new(
        "agg",
        JsonConfig {
            url: format!("https://127.0.0.1:{port}/v1/messages"),
            ..Default::default()
        },
        "https://127.0.0.1:1/callbacks/agg/token".into(),
        client,
    )
    .unwrap();
    let got = json.send(&sms(3)).await.unwrap();
    assert_eq!(got.gateway_message_id.as_deref(), Some("agg-77"));

    assert_eq!(seen.requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_unknown_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let (port, seen) = carrier(&ca.loopback(), None).await;
    // The public roots do not know a private CA…
    assert_tls_fault(
        kannel(port, &GatewayTls::default()).send(&sms(1)).await,
        "UnknownIssuer",
    );
    // …and `ca_file` replaces them: another CA's file does not help.
    let other = Ca::new("someone else");
    assert_tls_fault(
        kannel(port, &ca_only(dir.path(), &other))
            .send(&sms(1))
            .await,
        "UnknownIssuer",
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test]
async fn a_wrong_host_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    // Signed by the trusted CA, but for another name than 127.0.0.1.
    let leaf = ca.leaf(None, &["sms.other-carrier.example"], (2020, 2090));
    let (port, seen) = carrier(&leaf, None).await;
    assert_tls_fault(
        kannel(port, &ca_only(dir.path(), &ca)).send(&sms(1)).await,
        "not valid for",
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_expired_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let leaf = ca.leaf(Some(LOOPBACK), &[], (2019, 2021));
    let (port, seen) = carrier(&leaf, None).await;
    assert_tls_fault(
        kannel(port, &ca_only(dir.path(), &ca)).send(&sms(1)).await,
        "expired",
    );
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn mutual_tls_works_with_the_client_certificate_and_is_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let clients = Ca::new("carrier's client CA");
    let (port, seen) = carrier(&ca.loopback(), Some(&clients)).await;

    let ours = clients.leaf(None, &["pedulicovid.kemkes.example"], (2020, 2090));
    let with_cert = GatewayTls {
        ca_file: Some(write(dir.path(), "ca.pem", &ca.pem)),
        client_cert_file: Some(write(dir.path(), "client.pem", &ours.cert_pem)),
        client_key_file: Some(write(dir.path(), "client.key", &ours.key_pem)),
    };
    kannel(port, &with_cert)
        .send(&sms(1))
        .await
        .expect("accepted with the client certificate");
    assert_eq!(seen.requests.load(Ordering::SeqCst), 1);

    // Without one the carrier ends the handshake (a TLS alert).
    let got = kannel(port, &ca_only(dir.path(), &ca)).send(&sms(2)).await;
    assert!(
        matches!(
            got,
            Err(SendError::GatewayFault {
                kind: Fault::Tls,
                ..
            })
        ),
        "{got:?}"
    );
    // A certificate from a CA the carrier does not trust: refused too.
    let stranger = Ca::new("not the carrier's").leaf(None, &["x.example"], (2020, 2090));
    let wrong_cert = GatewayTls {
        client_cert_file: Some(write(dir.path(), "stranger.pem", &stranger.cert_pem)),
        client_key_file: Some(write(dir.path(), "stranger.key", &stranger.key_pem)),
        ..with_cert.clone()
    };
    let got = kannel(port, &wrong_cert).send(&sms(3)).await;
    assert!(
        matches!(
            got,
            Err(SendError::GatewayFault {
                kind: Fault::Tls,
                ..
            })
        ),
        "{got:?}"
    );
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        1,
        "only the first got through"
    );
}

#[tokio::test]
async fn a_url_the_client_cannot_use_is_a_configuration_fault() {
    for url in ["ftp://127.0.0.1:2121/sendsms", "not a url at all"] {
        let config = KannelConfig {
            sendsms_url: url.into(),
            ..Default::default()
        };
        let client =
            gateway_client("tsel", &GatewayTls::default(), Duration::from_secs(2), 1).unwrap();
        let g = KannelGateway::new("tsel", config, "http://127.0.0.1:1/cb".into(), client);
        let got = g.send(&sms(1)).await;
        assert!(
            matches!(
                got,
                Err(SendError::GatewayFault {
                    kind: Fault::Config,
                    ..
                })
            ),
            "{url}: {got:?}"
        );
    }
}

#[tokio::test]
async fn plain_http_behind_an_https_url_is_a_tls_fault() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A plain-HTTP server where the settings say https://.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let mut buf = [0u8; 512];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
        }
    });
    let got = kannel(port, &GatewayTls::default()).send(&sms(1)).await;
    assert!(
        matches!(
            got,
            Err(SendError::GatewayFault {
                kind: Fault::Tls,
                ..
            })
        ),
        "{got:?}"
    );
}

#[tokio::test]
async fn bad_tls_files_stop_the_start_naming_gateway_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("carrier CA");
    let leaf = ca.loopback();
    let other = ca.loopback();
    let garbage = write(dir.path(), "garbage.pem", "not PEM at all\n");
    let cert = write(dir.path(), "c.pem", &leaf.cert_pem);
    let key = write(dir.path(), "c.key", &leaf.key_pem);
    let other_key = write(dir.path(), "o.key", &other.key_pem);
    let missing = dir.path().join("missing.pem");
    let cases: Vec<(GatewayTls, &str)> = vec![
        (
            GatewayTls {
                ca_file: Some(missing.clone()),
                ..Default::default()
            },
            "tls.ca_file",
        ),
        (
            GatewayTls {
                ca_file: Some(garbage.clone()),
                ..Default::default()
            },
            "tls.ca_file",
        ),
        (
            GatewayTls {
                client_cert_file: Some(garbage.clone()),
                client_key_file: Some(key.clone()),
                ..Default::default()
            },
            "tls.client_cert_file",
        ),
        (
            GatewayTls {
                client_cert_file: Some(cert.clone()),
                client_key_file: Some(garbage.clone()),
                ..Default::default()
            },
            "tls.client_key_file",
        ),
        (
            GatewayTls {
                client_cert_file: Some(cert.clone()),
                client_key_file: Some(other_key),
                ..Default::default()
            },
            "does not fit",
        ),
    ];
    for (tls, want) in cases {
        let e = gateway_client("tsel", &tls, Duration::from_secs(1), 1).unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("gateway tsel") && text.contains(want),
            "{text}"
        );
    }

    // A certificate without its key (or the reverse) is refused by the
    // settings check, before any file is read; so is half of `[http]` TLS.
    let checked = |tls: GatewayTls, http: pedulicovid::config::HttpSettings| {
        pedulicovid::config::Settings {
            gateways: vec![pedulicovid::config::GatewaySettings {
                tls,
                ..named_gateway("tsel")
            }],
            http,
            ..Default::default()
        }
        .check()
    };
    let half_client = GatewayTls {
        client_cert_file: Some(cert.clone()),
        ..Default::default()
    };
    let e = checked(half_client, Default::default()).unwrap_err();
    assert!(format!("{e:#}").contains("client_key_file"), "{e:#}");
    let half_http = pedulicovid::config::HttpSettings {
        tls_key_file: Some(key.clone()),
        ..Default::default()
    };
    let e = checked(GatewayTls::default(), half_http).unwrap_err();
    assert!(format!("{e:#}").contains("tls_cert_file"), "{e:#}");

    // The same from a settings file: `[gateways.tls]` is read, and the
    // app does not start with a missing CA file.
    let db = TestDb::new("sqlite").await;
    let mut s = one_gateway(&db, "tsel");
    s.gateways[0].tls.ca_file = Some(missing);
    let e = pedulicovid::app::App::start(s, Parts::ALL)
        .await
        .err()
        .expect("refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("gateway tsel") && text.contains("tls.ca_file"),
        "{text}"
    );
}

#[test]
fn gateway_tls_is_read_from_the_settings_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "p.toml",
        "[[gateways]]\nname = \"agg\"\ndialect = \"json\"\n\
         [gateways.json]\nurl = \"https://agg.example/v1/sms\"\n\
         [gateways.tls]\nca_file = \"/etc/pedulicovid/agg-ca.pem\"\n\
         client_cert_file = \"/etc/pedulicovid/agg.pem\"\nclient_key_file = \"/etc/pedulicovid/agg.key\"\n\
         [http]\ntls_cert_file = \"/etc/pedulicovid/https.pem\"\ntls_key_file = \"/etc/pedulicovid/https.key\"\n",
    );
    let s = pedulicovid::config::Settings::load_from(Some(&f), vec![]).unwrap();
    let tls = &s.gateways[0].tls;
    assert_eq!(
        tls.ca_file.as_deref(),
        Some(Path::new("/etc/pedulicovid/agg-ca.pem"))
    );
    assert_eq!(
        tls.client_key_file.as_deref(),
        Some(Path::new("/etc/pedulicovid/agg.key"))
    );
    assert_eq!(s.http_scheme(), "https");
    assert_eq!(
        s.public_url("127.0.0.1:8443".parse().unwrap()),
        "https://127.0.0.1:8443"
    );
    // There is no setting that turns verification off.
    std::fs::write(
        &f,
        "[[gateways]]\nname = \"agg\"\n[gateways.tls]\ninsecure = true\n",
    )
    .unwrap();
    let e = pedulicovid::config::Settings::load_from(Some(&f), vec![]).unwrap_err();
    assert!(format!("{e:#}").contains("insecure"), "{e:#}");
}

// ---------------------------------------------------------------------------
// A bad certificate, end to end: the gateway's fault, not the workers'
// ---------------------------------------------------------------------------

async fn bad_certificate_opens_the_breaker_and_flags_no_worker(backend: &str) {
    let ca = Ca::new("carrier CA");
    // Expired: the kind of fault an operator fixes, not a message.
    let (port, seen) = carrier(&ca.leaf(Some(LOOPBACK), &[], (2019, 2021)), None).await;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend).await;
    let mut s = one_gateway(&db, "tls-broken");
    let g = &mut s.gateways[0];
    g.dialect = kannel_at(format!("https://127.0.0.1:{port}/cgi-bin/sendsms"));
    g.tls.ca_file = Some(write(dir.path(), "ca.pem", &ca.pem));
    g.breaker_threshold = 20;
    g.breaker_cool_down_secs = 1;
    // One attempt each: were a TLS failure charged to the message, every
    // worker would be flagged `retries_exhausted` at the first try.
    s.worker.max_attempts = 1;
    s.worker.auto_pause_window = 3;
    s.worker.auto_pause_threshold = 0.5;
    let tls_before = METRICS
        .gateways
        .get("tls-broken")
        .failures(FailureReason::Tls);
    let app = start(s, Parts::ALL).await;
    let c = campaign_of(&app, 6, "bad certificate").await;
    // The campaign auto-pauses on the failed attempts…
    wait_status(&app.store, c, "paused", Duration::from_secs(20)).await;
    // …the breaker opened and says so for operators…
    let states = app.store.gateway_states().await.unwrap();
    assert!(
        states.iter().any(|s| s.gateway == "tls-broken"
            && s.state == "open"
            && s.detail.contains("gateway fault (tls)")),
        "{states:?}"
    );
    // …nothing reached the carrier, and no worker is flagged: every
    // message is still queued with no attempt used.
    assert_eq!(seen.requests.load(Ordering::SeqCst), 0);
    let r = app.store.campaign_report(c).await.unwrap();
    assert!(r.flagged_by_reason.is_empty(), "{r:?}");
    let rows: Vec<(String, i64, String)> = sql_rows(
        &db.url,
        "SELECT status, CAST(attempts AS BIGINT), COALESCE(last_error, '') FROM messages \
         WHERE campaign_id = $1 ORDER BY id",
        &[c],
    )
    .await;
    assert_eq!(rows.len(), 6);
    for (status, attempts, _) in &rows {
        assert_eq!((status.as_str(), *attempts), ("queued", 0), "{rows:?}");
    }
    assert!(
        rows.iter()
            .any(|(_, _, e)| e.contains("gateway fault (tls)") && e.contains("expired")),
        "{rows:?}"
    );
    let flags: Vec<(i64,)> = sql_rows(&db.url, "SELECT COUNT(*) FROM non_recipients", &[]).await;
    assert_eq!(flags[0].0, 0);
    let outcomes: Vec<(String,)> =
        sql_rows(&db.url, "SELECT DISTINCT outcome FROM attempts", &[]).await;
    assert_eq!(outcomes, vec![("gateway_fault".to_string(),)]);
    assert!(
        METRICS
            .gateways
            .get("tls-broken")
            .failures(FailureReason::Tls)
            > tls_before,
        "counted under reason=\"tls\""
    );
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(bad_certificate_opens_the_breaker_and_flags_no_worker);

// ---------------------------------------------------------------------------
// TLS on our own listener
// ---------------------------------------------------------------------------

/// A client that trusts only `ca` (a new one per call: no pooled
/// connection, so each request is a new handshake).
fn client_trusting(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

async fn listener_serves_https_and_receipts_come_back_over_it(backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ours = Ca::new("our CA");
    let carrier_ca = Ca::new("carrier CA");
    let (port, seen) = carrier(&carrier_ca.loopback(), None).await;
    let leaf = ours.loopback();
    let cert = write(dir.path(), "https.pem", &leaf.cert_pem);
    let key = write(dir.path(), "https.key", &leaf.key_pem);
    let db = TestDb::new(backend).await;
    let mut s = one_gateway(&db, "tsel");
    s.http.tls_cert_file = Some(cert.clone());
    s.http.tls_key_file = Some(key.clone());
    let g = &mut s.gateways[0];
    g.dialect = kannel_at(format!("https://127.0.0.1:{port}/cgi-bin/sendsms"));
    g.tls.ca_file = Some(write(dir.path(), "carrier-ca.pem", &carrier_ca.pem));
    let app = start(s, Parts::ALL).await;
    let base = format!("https://127.0.0.1:{}", app.port().unwrap());

    // A real TLS client that trusts our CA gets answers; plain HTTP does not.
    let r = client_trusting(&ours)
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", app.port().unwrap()))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP must not be served"
    );

    // A notice goes out through the HTTPS carrier with an https:// receipt
    // URL, and the receipt sent to it over TLS is applied.
    let csv = format!("{HEADER}{}", row(1, "31", "1"));
    assert_eq!(import_text(&app.store, &csv).await.accepted, 1);
    let (c, _) = create_campaign(&app, campaign_request("https receipts")).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let dlr = loop {
        if let Some(u) = seen.dlr_urls.lock().unwrap().first().cloned() {
            break u;
        }
        assert!(Instant::now() < deadline, "nothing sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(dlr.starts_with(&format!("{base}/callbacks/tsel/")), "{dlr}");
    // Wait for the send to be recorded, then deliver as Kannel would.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.store.campaign_report(c.id).await.unwrap().sent == 0 {
        assert!(Instant::now() < deadline, "send not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = dlr
        .replace("%d", "1")
        .replace("%F", "")
        .replace("%A", "ACK")
        .replace("%T", "1700000000");
    let r = client_trusting(&ours).get(url).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = wait_done(&app.store, c.id, Duration::from_secs(10)).await;
    assert_eq!(r.status(pedulicovid::status::Status::Delivered), 1, "{r:?}");
    app.stop(Duration::from_secs(5)).await;
}
both_backends!(listener_serves_https_and_receipts_come_back_over_it);

#[tokio::test]
async fn a_replaced_certificate_is_served_to_the_next_connection() {
    let dir = tempfile::tempdir().unwrap();
    let first = Ca::new("first CA");
    let second = Ca::new("second CA");
    let leaf = first.loopback();
    let cert = write(dir.path(), "https.pem", &leaf.cert_pem);
    let key = write(dir.path(), "https.key", &leaf.key_pem);
    let db = TestDb::new("sqlite").await;
    let mut s = one_gateway(&db, "tsel");
    s.http.tls_cert_file = Some(cert.clone());
    s.http.tls_key_file = Some(key.clone());
    let app = start(
        s,
        Parts {
            http: true,
            workers: 0,
            housekeeping: false,
            simulator: false,
        },
    )
    .await;
    let url = format!("https://127.0.0.1:{}/healthz", app.port().unwrap());
    client_trusting(&first)
        .get(&url)
        .send()
        .await
        .expect("first certificate");
    assert!(client_trusting(&second).get(&url).send().await.is_err());

    // Half a replacement (a new key, the old certificate) is not loaded:
    // the certificate in use stays.
    let renewed = second.loopback();
    std::fs::write(&key, &renewed.key_pem).unwrap();
    client_trusting(&first)
        .get(&url)
        .send()
        .await
        .expect("old certificate kept");
    // The whole replacement is, at the next connection, without a restart.
    std::fs::write(&cert, &renewed.cert_pem).unwrap();
    client_trusting(&second)
        .get(&url)
        .send()
        .await
        .expect("new certificate served");
    let e = client_trusting(&first).get(&url).send().await.unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // A bad key file at start is an error naming the field.
    let db2 = TestDb::new("sqlite").await;
    let mut s = one_gateway(&db2, "tsel");
    s.http.tls_cert_file = Some(cert);
    s.http.tls_key_file = Some(write(dir.path(), "bad.key", "nope"));
    let e = pedulicovid::app::App::start(s, Parts::ALL)
        .await
        .err()
        .expect("refused");
    assert!(format!("{e:#}").contains("http.tls_key_file"), "{e:#}");
    app.stop(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn sighup_reloads_a_certificate_the_file_check_cannot_see() {
    let dir = tempfile::tempdir().unwrap();
    // Names of one length, and leaves retried until their PEM lengths
    // match: the replacement below keeps each file's length, inode and
    // modification time, which is all the per-connection check looks at.
    let one = Ca::new("CA one");
    let two = Ca::new("CA two");
    let leaf = one.loopback();
    let renewed = (0..200)
        .map(|_| two.loopback())
        .find(|l| l.cert_pem.len() == leaf.cert_pem.len() && l.key_pem.len() == leaf.key_pem.len())
        .expect("a same-length certificate within 200 tries");
    let cert = write(dir.path(), "https.pem", &leaf.cert_pem);
    let key = write(dir.path(), "https.key", &leaf.key_pem);
    let db = TestDb::new("sqlite").await;
    let mut s = one_gateway(&db, "tsel");
    s.http.tls_cert_file = Some(cert.clone());
    s.http.tls_key_file = Some(key.clone());
    let app = start(
        s,
        Parts {
            http: true,
            workers: 0,
            housekeeping: false,
            simulator: false,
        },
    )
    .await;
    let url = format!("https://127.0.0.1:{}/healthz", app.port().unwrap());
    client_trusting(&one)
        .get(&url)
        .send()
        .await
        .expect("first certificate");

    // Replace both files in place, then put their modification times back.
    for (path, text) in [(&cert, &renewed.cert_pem), (&key, &renewed.key_pem)] {
        let before = std::fs::metadata(path).unwrap().modified().unwrap();
        std::fs::write(path, text).unwrap();
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(before)
            .unwrap();
    }
    client_trusting(&one)
        .get(&url)
        .send()
        .await
        .expect("unchanged stamps: the certificate in use stays");

    // SIGHUP (the server of this test listens for it; a plain-HTTP server
    // would not) re-reads the files whatever their stamps say.
    // SAFETY: raise(3) with a valid signal number has no preconditions.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if client_trusting(&two).get(&url).send().await.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client_trusting(&one).get(&url).send().await.is_err());
    app.stop(Duration::from_secs(5)).await;
}

/// Reads until the peer closes (or errors); what it sent.
async fn read_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![];
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn tls_keeps_the_header_timeout_and_graceful_shutdown() {
    use tokio::io::AsyncWriteExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("our CA");
    let leaf = ca.loopback();
    let db = TestDb::new("sqlite").await;
    let mut s = one_gateway(&db, "tsel");
    s.http.tls_cert_file = Some(write(dir.path(), "https.pem", &leaf.cert_pem));
    s.http.tls_key_file = Some(write(dir.path(), "https.key", &leaf.key_pem));
    s.http.header_read_timeout_ms = 3_000;
    let parts = Parts {
        http: true,
        workers: 0,
        housekeeping: false,
        simulator: false,
    };
    let app = start(s, parts).await;
    let addr = format!("127.0.0.1:{}", app.port().unwrap());

    // A client that connects and never says hello…
    let mut mute = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // …and one that completes the handshake, then sends half a header.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(LOOPBACK.into());
    let mut slow = connector.connect(name, tcp).await.expect("handshake");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();

    // Meanwhile others are served.
    let url = format!("https://{addr}/healthz");
    client_trusting(&ca).get(&url).send().await.expect("served");

    // Both silent ones are cut off once their time is up, not before, and
    // the half request gets no answer.
    let (_, sent) = tokio::time::timeout(Duration::from_secs(8), async {
        tokio::join!(read_to_close(&mut mute), read_to_close(&mut slow))
    })
    .await
    .expect("the server closes connections that stay silent");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(2_900),
        "closed after {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "closed after {waited:?}");
    assert!(!String::from_utf8_lossy(&sent).contains(" 200 "));

    // Neither an idle kept-alive HTTPS connection nor a handshake that
    // never comes holds up shutdown.
    let idle = client_trusting(&ca);
    idle.get(&url).send().await.expect("served");
    let _mute = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let stopping = Instant::now();
    app.stop(Duration::from_secs(10)).await;
    assert!(
        stopping.elapsed() < Duration::from_millis(2_000),
        "stop took {:?}",
        stopping.elapsed()
    );
    assert!(
        idle.get(&url).send().await.is_err(),
        "nothing served after stop"
    );
}

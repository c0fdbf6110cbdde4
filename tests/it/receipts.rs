//! Receipt callbacks through the real HTTP server on both databases:
//! authentication, malformed and unknown reports, ordering, duplicates,
//! receipts that overtake our own bookkeeping, late deliveries, and limits.
//!
//! Messages are put into known states without the simulator interfering:
//! either nothing sends at all (no worker, so they stay `queued`), or the
//! in-process simulator takes every message and never calls back (rule
//! `no_receipt` for every last digit, and the default DLR mask asks for no
//! intermediate reports), so they stay `sent` until a test reports on them.

use std::time::{Duration, Instant};

use crate::common::*;
use carrier_sim::parse_rules;
use pedulicovid::app::{App, Parts};
use pedulicovid::gateway::callback::message_token;
use pedulicovid::secret::Secret;
use pedulicovid::status::Status;
use pedulicovid::store::{now_ms, SendOutcome, StoredReceipt};

const DELIVERED: &str = "id:F1 sub:001 dlvrd:001 submit date:2101130000 done date:2101130001 stat:DELIVRD err:000 text:Yth. Nakes";
const UNDELIVERED: &str = "id:F1 sub:001 dlvrd:000 submit date:2101130000 done date:2101130001 stat:UNDELIV err:001 text:Yth. Nakes";
const REJECTED: &str = "id:F1 sub:001 dlvrd:000 submit date:2101130000 done date:2101130001 stat:REJECTD err:011 text:Yth. Nakes";
const EXPIRED: &str = "id:F1 sub:001 dlvrd:000 submit date:2101130000 done date:2101130001 stat:EXPIRED err:027 text:Yth. Nakes";
const ENROUTE: &str = "id:F1 sub:001 dlvrd:000 submit date:2101130000 done date:2101130001 stat:ENROUTE err:000 text:Yth. Nakes";
const NACK_INVALID: &str = "NACK/0x0000000b/Invalid Destination Address";

/// A running app with one campaign of `n` messages in a known state.
struct Ctx {
    app: App,
    db: TestDb,
    raw: Raw,
    client: reqwest::Client,
    token: String,
    campaign: i64,
    /// Message ids, ascending.
    ids: Vec<i64>,
}

/// How far the campaign's messages get before the test takes over.
#[derive(Clone, Copy, PartialEq)]
enum Start {
    /// No worker: every message stays `queued`.
    Queued,
    /// A worker sends everything to a simulator that never reports back:
    /// every message ends `sent`.
    Sent,
}

async fn setup(backend: &str, n: u32, until: Start) -> Ctx {
    setup_with(backend, n, until, |_| {}).await
}

/// [`setup`], with the settings adjusted first (more gateways, secrets).
async fn setup_with(
    backend: &str,
    n: u32,
    until: Start,
    tweak: impl FnOnce(&mut pedulicovid::config::Settings),
) -> Ctx {
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    tweak(&mut s);
    // Every last digit: accepted, and never a receipt.
    s.simulator.rules = parse_rules(
        &(0..10)
            .map(|d| format!("{d}=no_receipt"))
            .collect::<Vec<_>>()
            .join(","),
    )
    .unwrap();
    let parts = match until {
        Start::Queued => Parts {
            http: true,
            workers: 0,
            housekeeping: false,
            simulator: false,
        },
        Start::Sent => Parts {
            http: true,
            workers: 1,
            housekeeping: false,
            simulator: true,
        },
    };
    let app = start(s, parts).await;
    let mut csv = String::from(HEADER);
    for i in 0..n {
        csv.push_str(&row(i, "31", &format!("{:07}{}", 1000 + i, i % 10)));
    }
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, u64::from(n), "{:?}", imported.rejections);
    let (c, enqueued) = create_campaign(&app, campaign_request("receipts")).await;
    assert_eq!(enqueued, u64::from(n));
    let raw = Raw::connect(&db.url).await;
    let ids = raw
        .ints(
            "SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id",
            &[c.id],
        )
        .await;
    assert_eq!(ids.len(), n as usize);
    if until == Start::Sent {
        let t0 = Instant::now();
        loop {
            let r = app.store.campaign_report(c.id).await.unwrap();
            if r.status(Status::Sent) == i64::from(n) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "messages never all reached sent: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let token = app
        .store
        .gateway_secret("sim")
        .await
        .unwrap()
        .expose()
        .to_string();
    Ctx {
        app,
        db,
        raw,
        client: reqwest::Client::new(),
        token,
        campaign: c.id,
        ids,
    }
}

impl Ctx {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.app.port().expect("http runs"))
    }

    /// The gateway-wide callback URL (the secret in the path), as an
    /// aggregator with one fixed URL would call it.
    fn callback_url(&self) -> String {
        format!("{}/callbacks/sim/{}", self.base(), self.token)
    }

    /// The per-message callback URL we hand the carrier for message `id`:
    /// `{id}.{mac}` in the path (what the gateway's `dlr-url` starts with).
    fn message_url(&self, id: i64) -> String {
        self.message_url_on("sim", &self.token, id)
    }

    /// A per-message URL on `gateway`, its MAC keyed by `secret`.
    fn message_url_on(&self, gateway: &str, secret: &str, id: i64) -> String {
        let token = message_token(&Secret::new(secret), gateway, id);
        format!("{}/callbacks/{gateway}/{token}", self.base())
    }

    /// One Kannel DLR callback the way smsbox sends it (GET, form-encoded
    /// query) on the message's own URL. Returns the HTTP status.
    async fn dlr(&self, id: i64, status: u32, answer: &str) -> u16 {
        self.dlr_at(&self.message_url(id), id, status, answer).await
    }

    /// [`Ctx::dlr`] on any URL.
    async fn dlr_at(&self, url: &str, id: i64, status: u32, answer: &str) -> u16 {
        let id = id.to_string();
        let status = status.to_string();
        let fid = if answer.starts_with("NACK/") {
            ""
        } else {
            "F1"
        };
        self.client
            .get(url)
            .query(&[
                ("id", id.as_str()),
                ("status", status.as_str()),
                ("fid", fid),
                ("answer", answer),
                ("ts", "1610470800"),
            ])
            .send()
            .await
            .expect("callback request")
            .status()
            .as_u16()
    }

    /// A GET with a literal query string (for malformed reports).
    async fn get_raw(&self, url: &str) -> u16 {
        self.client
            .get(url)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    async fn status(&self, id: i64) -> String {
        self.raw
            .texts("SELECT status FROM messages WHERE id = $1", &[id])
            .await
            .remove(0)
    }

    async fn effects(&self, id: i64) -> Vec<String> {
        self.app
            .store
            .receipts_for(id)
            .await
            .unwrap()
            .into_iter()
            .map(|r: StoredReceipt| r.effect.unwrap_or_default())
            .collect()
    }

    async fn receipt_count(&self) -> i64 {
        self.raw.int("SELECT COUNT(*) FROM receipts", &[]).await
    }

    /// Open flags of this campaign as (message id, reason).
    async fn open_flags(&self) -> Vec<(i64, String)> {
        self.app
            .store
            .flags(Some(self.campaign), false)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.message_id, f.reason))
            .collect()
    }

    async fn finish(self) {
        let Ctx { app, db, raw, .. } = self;
        raw.close().await;
        app.stop(Duration::from_secs(5)).await;
        drop(db);
    }
}

async fn wrong_token_and_unknown_gateway_store_nothing(backend: &str) {
    let ctx = setup(backend, 2, Start::Queued).await;
    let m = ctx.ids[0];
    let q = format!("?id={m}&status=1&fid=F1&answer=stat%3ADELIVRD");

    // Wrong token in the path: 401, nothing stored, nothing changed.
    let wrong = format!("{}/callbacks/sim/{}{q}", ctx.base(), "0".repeat(64));
    assert_eq!(ctx.get_raw(&wrong).await, 401);
    // A token one character short of the real one.
    let short = format!(
        "{}/callbacks/sim/{}{q}",
        ctx.base(),
        &ctx.token[..ctx.token.len() - 1]
    );
    assert_eq!(ctx.get_raw(&short).await, 401);
    // Unknown gateway name, even with the right token: 404.
    let unknown = format!("{}/callbacks/nosuch/{}{q}", ctx.base(), ctx.token);
    assert_eq!(ctx.get_raw(&unknown).await, 404);
    // Header route without a header, and with a wrong one.
    let header_url = format!("{}/callbacks/sim{q}", ctx.base());
    assert_eq!(ctx.get_raw(&header_url).await, 401);
    let st = ctx
        .client
        .get(&header_url)
        .header("X-Callback-Token", "not-the-token")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 401);
    assert_eq!(
        ctx.receipt_count().await,
        0,
        "a refused callback is never stored"
    );
    assert_eq!(ctx.status(m).await, "queued");

    // The gateway-wide token itself, in the path or the header, on a
    // gateway handed per-message URLs (Kannel): refused like a wrong one.
    let st = ctx
        .client
        .get(&header_url)
        .header("X-Callback-Token", &ctx.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 401);
    assert_eq!(
        ctx.get_raw(&format!("{}{q}", ctx.callback_url())).await,
        401
    );
    assert_eq!(ctx.receipt_count().await, 0);
    // The message's own token in the header works like the path: taken
    // (200, so the carrier stops), kept raw, but this message was never
    // handed to any gateway, so nothing changes.
    let own = ctx.message_url(m);
    let own_token = own.rsplit('/').next().unwrap();
    let st = ctx
        .client
        .get(&header_url)
        .header("X-Callback-Token", own_token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 200);
    assert_eq!(ctx.status(m).await, "queued");
    assert_eq!(ctx.effects(m).await, ["not_sent"]);
    assert_eq!(ctx.receipt_count().await, 1);
    ctx.finish().await;
}
both_backends!(wrong_token_and_unknown_gateway_store_nothing);

async fn malformed_callbacks_are_400_and_kept_raw(backend: &str) {
    let ctx = setup(backend, 1, Start::Queued).await;
    let m = ctx.ids[0];
    let queries = [
        "status=1&fid=F1".to_string(),
        "id=abc&status=1".to_string(),
        format!("id={m}&fid=F1&answer=ACK%2F"),
        format!("id={m}&status=x"),
        format!("id={m}&status="),
    ];
    for q in &queries {
        let url = format!("{}?{q}", ctx.message_url(m));
        assert_eq!(ctx.get_raw(&url).await, 400, "{q}");
    }
    // No query and no body at all.
    assert_eq!(ctx.get_raw(&ctx.message_url(m)).await, 400);
    let payloads = ctx
        .raw
        .texts(
            "SELECT payload FROM receipts WHERE effect = 'malformed' ORDER BY id",
            &[],
        )
        .await;
    let mut expected: Vec<String> = queries.to_vec();
    expected.push(String::new());
    assert_eq!(payloads, expected, "each malformed report is kept verbatim");
    assert_eq!(ctx.receipt_count().await, 6);
    assert_eq!(ctx.status(m).await, "queued", "nothing was applied");
    assert!(ctx.effects(m).await.is_empty());
    ctx.finish().await;
}
both_backends!(malformed_callbacks_are_400_and_kept_raw);

async fn receipt_for_unknown_message_is_404_and_kept(backend: &str) {
    let ctx = setup(backend, 1, Start::Queued).await;
    let ghost = ctx.ids[0] + 1_000_000;
    assert_eq!(ctx.dlr(ghost, 1, DELIVERED).await, 404);
    let kept = ctx.app.store.receipts_for(ghost).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].effect.as_deref(), Some("unknown_message"));
    assert_eq!(kept[0].outcome.as_deref(), Some("delivered"));
    assert_eq!(kept[0].raw_status.as_deref(), Some("1"));
    assert!(
        kept[0].payload.contains(&format!("id={ghost}")),
        "{}",
        kept[0].payload
    );
    assert_eq!(ctx.status(ctx.ids[0]).await, "queued");
    ctx.finish().await;
}
both_backends!(receipt_for_unknown_message_is_404_and_kept);

async fn order_and_duplicates_follow_the_status_machine(backend: &str) {
    let ctx = setup(backend, 8, Start::Sent).await;
    let m = &ctx.ids;

    // m0: final before intermediates; intermediates never move it back.
    for (st, ans) in [(1, DELIVERED), (8, "ACK/"), (4, ENROUTE)] {
        assert_eq!(ctx.dlr(m[0], st, ans).await, 200);
    }
    assert_eq!(ctx.status(m[0]).await, "delivered");
    assert_eq!(
        ctx.effects(m[0]).await,
        ["applied", "intermediate", "intermediate"]
    );

    // m1: the same undelivered report five times: one flag, one change.
    for _ in 0..5 {
        assert_eq!(ctx.dlr(m[1], 2, UNDELIVERED).await, 200);
    }
    assert_eq!(ctx.status(m[1]).await, "undelivered");
    assert_eq!(
        ctx.effects(m[1]).await,
        ["applied", "ignored", "ignored", "ignored", "ignored"]
    );

    // m2: intermediates on a sent message change nothing; the final then applies.
    assert_eq!(ctx.dlr(m[2], 8, "ACK/").await, 200);
    assert_eq!(ctx.dlr(m[2], 4, ENROUTE).await, 200);
    assert_eq!(ctx.status(m[2]).await, "sent");
    assert_eq!(ctx.dlr(m[2], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[2]).await, "delivered");

    // m3: undelivered, then a delivered: undelivered is final (can_become
    // says no), so the flag stays.
    assert!(!Status::Undelivered.can_become(Status::Delivered));
    assert_eq!(ctx.dlr(m[3], 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.dlr(m[3], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[3]).await, "undelivered");
    assert_eq!(ctx.effects(m[3]).await, ["applied", "ignored"]);

    // m4: delivered, then undelivered: stays delivered, never flagged.
    assert_eq!(ctx.dlr(m[4], 1, DELIVERED).await, 200);
    assert_eq!(ctx.dlr(m[4], 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.status(m[4]).await, "delivered");
    assert_eq!(ctx.effects(m[4]).await, ["applied", "ignored"]);

    // m5: SMSC refuses the destination (16 + ESME_RINVDSTADR), then a
    // REJECTD receipt: rejected with flag invalid_number, unchanged after.
    assert_eq!(ctx.dlr(m[5], 16, NACK_INVALID).await, 200);
    assert_eq!(ctx.dlr(m[5], 2, REJECTED).await, 200);
    assert_eq!(ctx.status(m[5]).await, "rejected");
    let r5 = ctx.app.store.receipts_for(m[5]).await.unwrap();
    assert_eq!(r5[0].outcome.as_deref(), Some("invalid_number"));
    assert_eq!(r5[0].error_code.as_deref(), Some("0x0000000b"));
    assert_eq!(r5[1].effect.as_deref(), Some("ignored"));

    // m6: expired (34 = EXPIRED | FAIL).
    assert_eq!(ctx.dlr(m[6], 34, EXPIRED).await, 200);
    assert_eq!(ctx.status(m[6]).await, "expired");

    // m7: a DLR type the dialect does not define: kept, no change.
    assert_eq!(ctx.dlr(m[7], 64, "").await, 200);
    assert_eq!(ctx.status(m[7]).await, "sent");
    assert_eq!(ctx.effects(m[7]).await, ["unknown_code"]);

    let mut flags = ctx.open_flags().await;
    flags.sort();
    assert_eq!(
        flags,
        vec![
            (m[1], "undelivered".to_string()),
            (m[3], "undelivered".to_string()),
            (m[5], "invalid_number".to_string()),
            (m[6], "expired".to_string()),
        ]
    );
    let r = ctx.app.store.campaign_report(ctx.campaign).await.unwrap();
    assert_eq!(r.status(Status::Delivered), 3, "{r:?}");
    assert_eq!(r.status(Status::Sent), 1, "{r:?}");
    assert_eq!(
        ctx.raw
            .int(
                "SELECT COUNT(*) FROM receipts WHERE message_id = $1",
                &[m[1]]
            )
            .await,
        5
    );
    ctx.finish().await;
}
both_backends!(order_and_duplicates_follow_the_status_machine);

/// The receipt batcher keeps its PostgreSQL connection from one batch to
/// the next (no pool round trips while callbacks queue). One that died
/// under it between batches (a restarted server, a proxy's idle timeout)
/// costs a retry on a fresh connection, never a receipt: the carrier is
/// answered 200 only after the receipt is applied.
async fn receipts_survive_the_batchers_connection_dying(backend: &str) {
    let ctx = setup(backend, 3, Start::Sent).await;
    assert_eq!(ctx.dlr(ctx.ids[0], 1, DELIVERED).await, 200);
    if backend == "postgres" {
        // Every connection to the app's database but the test's own.
        let killed = ctx
            .raw
            .int(
                "SELECT COUNT(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await;
        assert!(killed >= 1, "the app held no connection to kill");
    }
    assert_eq!(ctx.dlr(ctx.ids[1], 1, DELIVERED).await, 200);
    assert_eq!(ctx.dlr(ctx.ids[2], 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.status(ctx.ids[1]).await, "delivered");
    assert_eq!(ctx.status(ctx.ids[2]).await, "undelivered");
    assert_eq!(ctx.effects(ctx.ids[1]).await, ["applied"]);
    assert_eq!(ctx.receipt_count().await, 3);
    ctx.finish().await;
}
both_backends!(receipts_survive_the_batchers_connection_dying);

/// One batch of mixed receipts, as the group commit takes them under load:
/// each is stored with the effect it was answered with, whichever statement
/// stored it (on PostgreSQL a batch whose moves are all deliveries stores
/// its receipts inside the update's statement), and only the applied ones
/// moved their message.
async fn a_mixed_batch_stores_the_effects_it_answers(backend: &str) {
    use pedulicovid::gateway::{ParsedReceipt, ReceiptOutcome};
    use pedulicovid::store::{IncomingReceipt, ReceiptEffect};

    let ctx = setup(backend, 4, Start::Sent).await;
    let m = &ctx.ids;
    assert_eq!(ctx.dlr(m[3], 1, DELIVERED).await, 200);
    // The carrier's id of message 0, as a send through a gateway that
    // answers with one records it (normalised: `normalize_ref`).
    ctx.raw
        .exec(
            "UPDATE messages SET gateway_message_id = 'GW-M0', gateway_ref = 'gw-m0' WHERE id = $1",
            &[m[0]],
        )
        .await;
    let receipt = |n: usize, id: i64, outcome: ReceiptOutcome| IncomingReceipt {
        gateway: "sim".into(),
        payload: format!("batch-{n}"),
        parsed: ParsedReceipt {
            message_id: Some(id),
            gateway_message_id: None,
            raw_status: "test".into(),
            error_code: None,
            outcome,
        },
        signed: false,
    };
    let batch = vec![
        receipt(0, m[0], ReceiptOutcome::Delivered),
        receipt(1, m[1], ReceiptOutcome::Accepted),
        receipt(2, m[3], ReceiptOutcome::Delivered),
        receipt(3, m[3] + 1_000, ReceiptOutcome::Delivered),
        receipt(4, m[2], ReceiptOutcome::Delivered),
        // Names message 0 by the carrier's id alone, in the same batch as
        // the receipt that moves it: an intermediate report all the same.
        {
            let mut r = receipt(5, m[0], ReceiptOutcome::Accepted);
            r.parsed.message_id = None;
            r.parsed.gateway_message_id = Some("00GW-M0".into());
            r
        },
    ];
    let effects = ctx.app.store.apply_receipts(&batch).await.unwrap();
    use ReceiptEffect::*;
    assert_eq!(
        effects,
        [
            Applied,
            Intermediate,
            Ignored,
            UnknownMessage,
            Applied,
            Intermediate
        ]
    );
    for (n, effect) in effects.iter().enumerate() {
        let stored = ctx
            .raw
            .texts(
                "SELECT effect FROM receipts WHERE payload = 'batch-' || CAST($1 AS TEXT)",
                &[n as i64],
            )
            .await;
        assert_eq!(stored, [effect.as_str()], "receipt {n}");
    }
    for (i, status) in [
        (0, "delivered"),
        (1, "sent"),
        (2, "delivered"),
        (3, "delivered"),
    ] {
        assert_eq!(ctx.status(m[i]).await, status, "message {i}");
    }
    ctx.finish().await;
}
both_backends!(a_mixed_batch_stores_the_effects_it_answers);

async fn receipt_before_the_send_is_recorded_applies(backend: &str) {
    let ctx = setup(backend, 4, Start::Queued).await;
    let m = &ctx.ids;

    // "Delivered" for a message still queued and never claimed (a week
    // ahead): no carrier can know it, even with a valid MAC (a leaked
    // secret): kept, answered 200, nothing changes.
    assert_eq!(ctx.dlr(m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "queued");
    assert_eq!(ctx.effects(m[0]).await, ["not_sent"]);
    let lease = now_ms() + 60_000;
    // (How many rows one claim takes is `claim_takes_at_most_its_limit`'s
    // business; this test only needs one message in `sending`.)
    let claimed = ctx.app.store.claim("test-worker", 1, lease).await.unwrap();
    assert!(!claimed.is_empty());
    let sending = claimed[0].id;
    assert_eq!(ctx.status(sending).await, "sending");

    // Delivered while `sending` (the carrier answered before we recorded
    // the send): applies; recording the send afterwards keeps it delivered.
    assert_eq!(ctx.dlr(sending, 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(sending).await, "delivered");
    let lost = ctx
        .app
        .store
        .record_outcomes(
            "test-worker",
            &[SendOutcome::Sent {
                id: sending,
                gateway: "sim".into(),
                gateway_message_id: None,
                body: "Yth. Nakes".into(),
                encoding: "gsm7",
                segments: 1,
            }],
        )
        .await
        .unwrap();
    assert_eq!(lost, 0);
    assert_eq!(ctx.status(sending).await, "delivered");
    let r = ctx.app.store.campaign_report(ctx.campaign).await.unwrap();
    assert_eq!(r.sent, 1, "the send itself is still recorded: {r:?}");

    // Every other claim gets exactly the untouched messages, never the
    // delivered one.
    let mut others: Vec<i64> = claimed.iter().skip(1).map(|c| c.id).collect();
    others.extend(
        ctx.app
            .store
            .claim("test-worker", 100, lease)
            .await
            .unwrap()
            .iter()
            .map(|c| c.id),
    );
    others.sort();
    let expected: Vec<i64> = m.iter().copied().filter(|id| *id != sending).collect();
    assert_eq!(others, expected);
    assert!(ctx
        .app
        .store
        .claim("test-worker", 100, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(ctx.status(sending).await, "delivered");
    // The first claim took the oldest message, m[0]: its early report
    // changed nothing, the one that came once it was handed over applied.
    assert_eq!(sending, m[0]);
    assert_eq!(ctx.effects(m[0]).await, ["not_sent", "applied"]);
    assert!(ctx.open_flags().await.is_empty());
    ctx.finish().await;
}
both_backends!(receipt_before_the_send_is_recorded_applies);

/// The carrier took the message but its answer was lost (a timeout), and
/// the delivery report overtook the worker's retry: the retry must not
/// leave the row leased. Found by `faults::lost_answers`: the live worker
/// kept renewing the stale lease and the campaign never completed.
async fn receipt_overtaking_a_retry_releases_the_lease(backend: &str) {
    let ctx = setup(backend, 1, Start::Queued).await;
    let store = &ctx.app.store;
    let claimed = store
        .claim("test-worker", 1, now_ms() + 60_000)
        .await
        .unwrap();
    let id = claimed[0].id;
    assert_eq!(ctx.dlr(id, 1, DELIVERED).await, 200);
    let lost = store
        .record_outcomes(
            "test-worker",
            &[SendOutcome::Retry {
                id,
                gateway: Some("sim".into()),
                next_attempt_at: now_ms(),
                error: "timed out".into(),
                cause: pedulicovid::store::RetryCause::Transient,
                handed_over: true,
            }],
        )
        .await
        .unwrap();
    assert_eq!(lost, 0, "a receipt-settled row is released, not lost");
    assert_eq!(ctx.status(id).await, "delivered");
    assert_eq!(store.leased_count().await.unwrap(), 0);
    assert_eq!(
        store
            .renew_leases("test-worker", now_ms() + 60_000)
            .await
            .unwrap(),
        0
    );
    let r = store.campaign_report(ctx.campaign).await.unwrap();
    assert_eq!(r.in_flight(), 0, "{r:?}");
    assert_eq!(r.sent, 1, "the receipt proves the send: {r:?}");
    assert!(store
        .claim("test-worker", 10, now_ms() + 60_000)
        .await
        .unwrap()
        .is_empty());
    ctx.finish().await;
}
both_backends!(receipt_overtaking_a_retry_releases_the_lease);

/// A notice queued into a campaign that housekeeping marked `completed` in a
/// race (PostgreSQL: the completion's NOT EXISTS read a snapshot from before
/// the resend committed) must still go out: housekeeping reopens it. Found
/// by `api::support_resend_…` on PostgreSQL, where a resend sat queued.
async fn queued_notice_reopens_a_completed_campaign(backend: &str) {
    let ctx = setup(backend, 1, Start::Queued).await;
    let store = &ctx.app.store;
    let lease = now_ms() + 60_000;
    // Mark it the way the race leaves it: completed with a queued row.
    ctx.raw
        .int(
            "UPDATE campaigns SET status = 'completed' WHERE id = $1 RETURNING id",
            &[ctx.campaign],
        )
        .await;
    assert!(store
        .claim("test-worker", 10, lease)
        .await
        .unwrap()
        .is_empty());
    store.advance_campaigns().await.unwrap();
    assert_eq!(
        store.campaign(ctx.campaign).await.unwrap().status.as_str(),
        "running"
    );
    assert_eq!(
        store.claim("test-worker", 10, lease).await.unwrap().len(),
        1
    );
    ctx.finish().await;
}
both_backends!(queued_notice_reopens_a_completed_campaign);

/// A claim leases at most `limit` rows (`worker.batch_size`): found while
/// testing receipts that overtake the send.
async fn claim_takes_at_most_its_limit(backend: &str) {
    let ctx = setup(backend, 5, Start::Queued).await;
    let lease = now_ms() + 60_000;
    let ids =
        |c: Vec<pedulicovid::store::ClaimedMessage>| c.iter().map(|c| c.id).collect::<Vec<_>>();
    let two = ctx.app.store.claim("test-worker", 2, lease).await.unwrap();
    assert_eq!(
        ids(two),
        ctx.ids[..2],
        "claim(limit = 2) leases the two first due"
    );
    for next in &ctx.ids[2..] {
        let one = ctx.app.store.claim("test-worker", 1, lease).await.unwrap();
        assert_eq!(
            ids(one),
            [*next],
            "claim(limit = 1) leases exactly the next due message"
        );
    }
    assert!(ctx
        .app
        .store
        .claim("test-worker", 1, lease)
        .await
        .unwrap()
        .is_empty());
    ctx.finish().await;
}

both_backends!(claim_takes_at_most_its_limit);

async fn late_delivered_overrides_failed_and_resolves_its_flag(backend: &str) {
    let ctx = setup(backend, 1, Start::Queued).await;
    let lease = now_ms() + 60_000;
    let claimed = ctx.app.store.claim("w", 1, lease).await.unwrap();
    let id = claimed[0].id;
    ctx.app
        .store
        .record_outcomes(
            "w",
            &[SendOutcome::Failed {
                id,
                gateway: Some("sim".into()),
                error: "timeout (after 5 attempts)".into(),
                reason: pedulicovid::status::FlagReason::RetriesExhausted,
                handed_over: true,
            }],
        )
        .await
        .unwrap();
    assert_eq!(ctx.status(id).await, "failed");
    assert_eq!(
        ctx.open_flags().await,
        [(id, "retries_exhausted".to_string())]
    );

    // An intermediate does nothing to a failed message; an undelivered
    // does not replace our failure either (failed is final).
    assert_eq!(ctx.dlr(id, 8, "ACK/").await, 200);
    assert_eq!(ctx.dlr(id, 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.status(id).await, "failed");
    // Proof of delivery does.
    assert_eq!(ctx.dlr(id, 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(id).await, "delivered");
    assert_eq!(
        ctx.effects(id).await,
        ["intermediate", "ignored", "applied"]
    );
    assert!(ctx.open_flags().await.is_empty());
    let all = ctx.app.store.flags(Some(ctx.campaign), true).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].resolution.as_deref(), Some("delivered_late"));
    ctx.finish().await;
}
both_backends!(late_delivered_overrides_failed_and_resolves_its_flag);

async fn late_delivered_resolves_no_receipt_flag(backend: &str) {
    let ctx = setup(backend, 3, Start::Sent).await;
    let m = &ctx.ids;
    // A cutoff in the future: every sent message is overdue.
    let swept = ctx
        .app
        .store
        .sweep_no_receipt(now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(swept, 3);
    for id in m {
        assert_eq!(ctx.status(*id).await, "unknown");
    }
    let mut open = ctx.open_flags().await;
    open.sort();
    assert_eq!(
        open,
        m.iter()
            .map(|id| (*id, "no_receipt".to_string()))
            .collect::<Vec<_>>()
    );

    // m0: a late delivered resolves the flag.
    assert_eq!(ctx.dlr(m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "delivered");
    let open = ctx
        .app
        .store
        .flags(Some(ctx.campaign), false)
        .await
        .unwrap();
    assert!(
        open.iter().all(|f| f.message_id != m[0]),
        "resolved flag still listed: {open:?}"
    );
    let all = ctx.app.store.flags(Some(ctx.campaign), true).await.unwrap();
    let f0 = all
        .iter()
        .find(|f| f.message_id == m[0])
        .expect("flag kept");
    assert_eq!(f0.resolution.as_deref(), Some("delivered_late"));
    assert!(f0.resolved_at.is_some());

    // m1: a late undelivered replaces the reason on the same open flag.
    assert_eq!(ctx.dlr(m[1], 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.status(m[1]).await, "undelivered");
    // m2: an intermediate leaves it unknown and flagged.
    assert_eq!(ctx.dlr(m[2], 4, ENROUTE).await, 200);
    assert_eq!(ctx.status(m[2]).await, "unknown");

    let mut open = ctx.open_flags().await;
    open.sort();
    assert_eq!(
        open,
        vec![
            (m[1], "undelivered".to_string()),
            (m[2], "no_receipt".to_string())
        ]
    );
    let r = ctx.app.store.campaign_report(ctx.campaign).await.unwrap();
    assert_eq!(r.flagged(), 2, "{r:?}");
    ctx.finish().await;
}
both_backends!(late_delivered_resolves_no_receipt_flag);

async fn form_post_works_like_get(backend: &str) {
    let ctx = setup(backend, 2, Start::Sent).await;
    let form = |id: i64, status: &str, answer: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &id.to_string())
            .append_pair("status", status)
            .append_pair("fid", "F1")
            .append_pair("answer", answer)
            .finish()
    };
    // Token in the path.
    let st = ctx
        .client
        .post(ctx.message_url(ctx.ids[0]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(ctx.ids[0], "1", DELIVERED))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 200);
    assert_eq!(ctx.status(ctx.ids[0]).await, "delivered");
    let r = ctx.app.store.receipts_for(ctx.ids[0]).await.unwrap();
    assert_eq!(r[0].error_code.as_deref(), Some("000"));
    assert_eq!(r[0].gateway_message_id.as_deref(), Some("F1"));

    // Token in the header.
    let st = ctx
        .client
        .post(format!("{}/callbacks/sim", ctx.base()))
        .header(
            "X-Callback-Token",
            message_token(&Secret::new(ctx.token.as_str()), "sim", ctx.ids[1]),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(ctx.ids[1], "2", REJECTED))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 200);
    assert_eq!(ctx.status(ctx.ids[1]).await, "rejected");
    assert_eq!(
        ctx.open_flags().await,
        [(ctx.ids[1], "rejected".to_string())]
    );

    // A malformed POST body is 400 and kept, like a malformed GET.
    let st = ctx
        .client
        .post(ctx.message_url(ctx.ids[0]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("id=abc&status=1")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 400);
    assert_eq!(
        ctx.raw
            .texts(
                "SELECT payload FROM receipts WHERE effect = 'malformed'",
                &[]
            )
            .await,
        ["id=abc&status=1"]
    );
    ctx.finish().await;
}
both_backends!(form_post_works_like_get);

async fn oversized_body_is_413(backend: &str) {
    let ctx = setup(backend, 2, Start::Queued).await;
    let limit = ctx.app.settings.http.body_limit_bytes;
    assert_eq!(limit, 64 * 1024);

    let big = format!("id={}&status=1&pad={}", ctx.ids[0], "a".repeat(limit));
    assert!(big.len() > limit);
    let st = ctx
        .client
        .post(ctx.message_url(ctx.ids[0]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 413);
    assert_eq!(ctx.receipt_count().await, 0);
    assert_eq!(ctx.status(ctx.ids[0]).await, "queued");

    // Just under the limit is fine.
    let head = format!("id={}&status=1&pad=", ctx.ids[1]);
    let fits = format!("{head}{}", "a".repeat(limit - head.len()));
    assert_eq!(fits.len(), limit);
    let st = ctx
        .client
        .post(ctx.message_url(ctx.ids[1]))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(fits)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st.as_u16(), 200);
    // Taken and kept (a never-sent message: it changes nothing).
    assert_eq!(ctx.effects(ctx.ids[1]).await, ["not_sent"]);
    ctx.finish().await;
}
both_backends!(oversized_body_is_413);

/// A notice replaced by a re-registration while it was still in flight can
/// still fail on the old number. That failure is recorded, but it must not
/// flag the worker again: the worker's standing is the newer notice's.
async fn failure_of_a_replaced_notice_leaves_no_open_flag(backend: &str) {
    use pedulicovid::domain::{Msisdn, Nik};
    use pedulicovid::store::{ChatbotReregistration, Idempotent, ReregistrationMode};

    let ctx = setup(backend, 1, Start::Sent).await;
    let old = ctx.ids[0];
    let nik = nik_of(0, "31");
    // Proved by the chatbot (pending One Data validation), then approved by
    // support staff: the notice moves to the new number.
    let done = ctx
        .app
        .store
        .chatbot_reregister(
            &ChatbotReregistration {
                nik: Nik::parse(&nik).unwrap(),
                full_name: "Nakes Nomor 0".into(),
                whatsapp_phone: Msisdn::parse("081399990000").unwrap(),
            },
            ReregistrationMode::Validated,
            "chatbot:test",
            None,
            |_| String::new(),
        )
        .await
        .unwrap();
    let Idempotent::Done { outcome, .. } = done else {
        panic!("no idempotency key, nothing to replay")
    };
    let outcome = ctx
        .app
        .store
        .approve_reregistration(
            outcome.reregistration_id,
            &pedulicovid::domain::notice::FreeText::staff("desk-1").unwrap(),
            &pedulicovid::domain::notice::FreeText::note("called the worker").unwrap(),
        )
        .await
        .unwrap();
    assert!(outcome.notice.is_some(), "{outcome:?}");
    let newer = ctx
        .raw
        .ints(
            "SELECT id FROM messages WHERE campaign_id = $1 ORDER BY id",
            &[ctx.campaign],
        )
        .await;
    let newer: Vec<i64> = newer.into_iter().filter(|&id| id > old).collect();
    assert_eq!(newer.len(), 1, "one new notice: {newer:?}");

    // The old number's carrier reports the first notice undelivered.
    assert_eq!(ctx.dlr(old, 2, UNDELIVERED).await, 200);
    assert_eq!(ctx.status(old).await, "undelivered");
    assert!(
        ctx.open_flags().await.is_empty(),
        "{:?}",
        ctx.open_flags().await
    );
    let all = ctx.app.store.flags(Some(ctx.campaign), true).await.unwrap();
    assert_eq!(all.len(), 1, "the failure is on record: {all:?}");
    assert_eq!(all[0].resolution.as_deref(), Some("superseded"));

    // The newer notice failing does flag the worker.
    let t0 = Instant::now();
    while ctx.status(newer[0]).await != "sent" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "new notice never sent"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(ctx.dlr(newer[0], 2, UNDELIVERED).await, 200);
    assert_eq!(
        ctx.open_flags().await,
        [(newer[0], "undelivered".to_string())]
    );
    ctx.finish().await;
}
both_backends!(failure_of_a_replaced_notice_leaves_no_open_flag);

// ---------------------------------------------------------------------
// Receipts bound to what we sent: a receipt changes only a message handed
// to the gateway whose callback it came through, and every per-message
// callback URL carries a MAC of (gateway, message id).
// ---------------------------------------------------------------------

use pedulicovid::metrics::{ReceiptLabel, METRICS};

/// Records the outcomes of one claim of every due message: `sent` through
/// the given gateway for the messages listed, back to the queue untouched
/// (attempt not counted) for the others.
async fn hand_over(ctx: &Ctx, sent: &[(i64, &str)]) {
    let store = &ctx.app.store;
    let claimed = store
        .claim("test-worker", 1000, now_ms() + 60_000)
        .await
        .unwrap();
    let outcomes: Vec<SendOutcome> = claimed
        .iter()
        .map(|c| match sent.iter().find(|(id, _)| *id == c.id) {
            Some((id, gw)) => SendOutcome::Sent {
                id: *id,
                gateway: gw.to_string(),
                gateway_message_id: Some(format!("G{id}")),
                body: "Yth. Nakes".into(),
                encoding: "gsm7",
                segments: 1,
            },
            None => SendOutcome::Defer {
                id: c.id,
                until: now_ms(),
            },
        })
        .collect();
    assert_eq!(
        store
            .record_outcomes("test-worker", &outcomes)
            .await
            .unwrap(),
        0
    );
    for (id, _) in sent {
        assert_eq!(ctx.status(*id).await, "sent");
    }
}

/// A second gateway named per test and backend, so its `/metrics` counters
/// belong to one test alone (tests run at once in one process).
fn other_gateway(test: &str, backend: &str) -> String {
    format!("{test}_{backend}")
}

fn with_other_gateway(
    test: &str,
    backend: &str,
) -> impl FnOnce(&mut pedulicovid::config::Settings) {
    let name = other_gateway(test, backend);
    move |s| {
        let mut other = s.gateways[0].clone();
        other.name = name;
        s.gateways.push(other);
    }
}

async fn cross_gateway_receipts_change_nothing(backend: &str) {
    let ctx = setup_with(
        backend,
        3,
        Start::Queued,
        with_other_gateway("cross", backend),
    )
    .await;
    let other = other_gateway("cross", backend);
    let other_token = ctx
        .app
        .store
        .gateway_secret(&other)
        .await
        .unwrap()
        .expose()
        .to_string();
    assert_ne!(other_token, ctx.token);
    let m = ctx.ids.clone();
    hand_over(&ctx, &[(m[0], other.as_str()), (m[1], "sim")]).await;
    let other_metrics = METRICS.gateways.get(&other);

    // (a) A valid per-message URL of gateway "sim" for a message sent
    // through the other gateway: kept, answered 200, nothing changes.
    assert_eq!(ctx.dlr(m[0], 1, DELIVERED).await, 200);
    // (b) "sim"'s gateway-wide token naming it: refused (a Kannel
    // gateway is handed per-message URLs only).
    assert_eq!(
        ctx.dlr_at(&ctx.callback_url(), m[0], 2, UNDELIVERED).await,
        401
    );
    assert_eq!(ctx.status(m[0]).await, "sent");
    assert_eq!(ctx.effects(m[0]).await, ["not_ours"]);
    // (c) "sim"'s MAC presented on the other gateway's path: 401, not kept.
    let forged = ctx.message_url_on(&other, &ctx.token, m[0]);
    assert_eq!(ctx.dlr_at(&forged, m[0], 1, DELIVERED).await, 401);
    assert_eq!(other_metrics.receipts(ReceiptLabel::BadToken), 1);
    // (e) The other gateway's URL for the message "sim" was given.
    let theirs = ctx.message_url_on(&other, &other_token, m[1]);
    assert_eq!(ctx.dlr_at(&theirs, m[1], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[1]).await, "sent");
    assert_eq!(ctx.effects(m[1]).await, ["not_ours"]);
    assert_eq!(other_metrics.receipts(ReceiptLabel::NotOurs), 1);
    // (d) Its own gateway's report applies.
    let own = ctx.message_url_on(&other, &other_token, m[0]);
    assert_eq!(ctx.dlr_at(&own, m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "delivered");
    assert_eq!(ctx.effects(m[0]).await, ["not_ours", "applied"]);
    assert_eq!(other_metrics.receipts(ReceiptLabel::Delivered), 1);
    assert!(ctx.open_flags().await.is_empty());
    // m[2] was never touched.
    assert_eq!(ctx.status(m[2]).await, "queued");
    assert!(ctx.effects(m[2]).await.is_empty());
    ctx.finish().await;
}
both_backends!(cross_gateway_receipts_change_nothing);

async fn never_sent_and_cancelled_messages_change_nothing(backend: &str) {
    let ctx = setup_with(
        backend,
        3,
        Start::Queued,
        with_other_gateway("unsent", backend),
    )
    .await;
    let other = other_gateway("unsent", backend);
    let other_token = ctx
        .app
        .store
        .gateway_secret(&other)
        .await
        .unwrap()
        .expose()
        .to_string();
    let m = ctx.ids.clone();
    let metrics = METRICS.gateways.get(&other);

    // Queued for a campaign not yet sent: a valid MAC (as from a leaked
    // secret) changes nothing; the gateway-wide token is refused outright.
    let url = ctx.message_url_on(&other, &other_token, m[0]);
    assert_eq!(ctx.dlr_at(&url, m[0], 1, DELIVERED).await, 200);
    let fixed = format!("{}/callbacks/{other}/{other_token}", ctx.base());
    assert_eq!(ctx.dlr_at(&fixed, m[0], 2, UNDELIVERED).await, 401);
    assert_eq!(ctx.status(m[0]).await, "queued");
    assert_eq!(ctx.effects(m[0]).await, ["not_sent"]);
    assert_eq!(metrics.receipts(ReceiptLabel::NotSent), 1);

    // Failed before any hand-over (it never rendered): claimed, but no
    // gateway was ever given it.
    let claimed = ctx
        .app
        .store
        .claim("test-worker", 1, now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, m[0]);
    ctx.app
        .store
        .record_outcomes(
            "test-worker",
            &[SendOutcome::Failed {
                id: m[0],
                gateway: None,
                error: "template: boom".into(),
                reason: pedulicovid::status::FlagReason::RenderFailed,
                handed_over: false,
            }],
        )
        .await
        .unwrap();
    assert_eq!(ctx.dlr_at(&url, m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "failed");
    assert_eq!(
        ctx.open_flags().await,
        [(m[0], "render_failed".to_string())],
        "a forged delivery never resolves a flag"
    );

    // Cancelled: nothing went out.
    ctx.app
        .store
        .control_campaign(
            ctx.campaign,
            pedulicovid::store::CampaignAction::Cancel,
            "test",
            "tester",
        )
        .await
        .unwrap();
    assert_eq!(ctx.status(m[1]).await, "cancelled");
    let url1 = ctx.message_url_on(&other, &other_token, m[1]);
    assert_eq!(ctx.dlr_at(&url1, m[1], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[1]).await, "cancelled");
    assert_eq!(ctx.effects(m[1]).await, ["not_sent"]);
    assert_eq!(metrics.receipts(ReceiptLabel::NotSent), 3);
    assert_eq!(metrics.receipts(ReceiptLabel::Delivered), 0);
    ctx.finish().await;
}
both_backends!(never_sent_and_cancelled_messages_change_nothing);

async fn wrong_mac_is_refused_and_counted(backend: &str) {
    let ctx = setup(backend, 2, Start::Queued).await;
    let m = ctx.ids.clone();
    hand_over(&ctx, &[(m[0], "sim"), (m[1], "sim")]).await;
    let metrics = METRICS.gateways.get("sim");
    let before = metrics.receipts(ReceiptLabel::BadToken);

    let good = ctx.message_url(m[0]);
    // One hex digit changed.
    let mut bad = good.clone().into_bytes();
    let last = bad.len() - 1;
    bad[last] = if bad[last] == b'0' { b'1' } else { b'0' };
    let bad = String::from_utf8(bad).unwrap();
    assert_eq!(ctx.dlr_at(&bad, m[0], 1, DELIVERED).await, 401);
    // A MAC for another message: the id in the path is what it covers.
    let swapped = good.replace(&format!("/{}.", m[0]), &format!("/{}.", m[1]));
    assert_eq!(ctx.dlr_at(&swapped, m[0], 1, DELIVERED).await, 401);
    assert_eq!(ctx.dlr_at(&swapped, m[1], 1, DELIVERED).await, 401);
    // m[1]'s own URL, naming m[0] in the query: 401 too.
    assert_eq!(
        ctx.dlr_at(&ctx.message_url(m[1]), m[0], 1, DELIVERED).await,
        401
    );
    // A MAC made with a wrong key, and a truncated one.
    let wrong_key = ctx.message_url_on("sim", &"k".repeat(64), m[0]);
    assert_eq!(ctx.dlr_at(&wrong_key, m[0], 1, DELIVERED).await, 401);
    assert_eq!(
        ctx.dlr_at(&good[..good.len() - 2], m[0], 1, DELIVERED)
            .await,
        401
    );
    assert_eq!(
        ctx.receipt_count().await,
        0,
        "a refused callback is never kept"
    );
    assert_eq!(ctx.status(m[0]).await, "sent");
    assert_eq!(ctx.status(m[1]).await, "sent");
    assert!(metrics.receipts(ReceiptLabel::BadToken) >= before + 6);
    // The right one works.
    assert_eq!(ctx.dlr_at(&good, m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "delivered");
    ctx.finish().await;
}
both_backends!(wrong_mac_is_refused_and_counted);

async fn replayed_valid_receipt_is_a_harmless_duplicate(backend: &str) {
    let ctx = setup(backend, 2, Start::Queued).await;
    let m = ctx.ids.clone();
    hand_over(&ctx, &[(m[0], "sim"), (m[1], "sim")]).await;
    for _ in 0..3 {
        assert_eq!(ctx.dlr(m[0], 2, UNDELIVERED).await, 200);
    }
    // A replayed "delivered" later does not undo the final report either.
    assert_eq!(ctx.dlr(m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "undelivered");
    assert_eq!(
        ctx.effects(m[0]).await,
        ["applied", "ignored", "ignored", "ignored"]
    );
    assert_eq!(ctx.open_flags().await, [(m[0], "undelivered".to_string())]);
    // The neighbour is untouched.
    assert_eq!(ctx.status(m[1]).await, "sent");
    ctx.finish().await;
}
both_backends!(replayed_valid_receipt_is_a_harmless_duplicate);

/// `[json]` for an aggregator never handed a per-message URL: its
/// template has no `{{callback_url}}`, so it calls one fixed URL with the
/// gateway-wide token.
const FIXED_URL_TEMPLATE: &str =
    "[json]\nbody_template = '{\"to\": \"{{to}}\", \"text\": \"{{text}}\"}'\n";

/// A JSON gateway on one fixed URL, its receipts naming the aggregator's id
/// (`message_id`) and, with `our_id`, our id (`reference`).
fn fixed_json(name: &str, our_id: bool) -> pedulicovid::config::GatewaySettings {
    let pointer = if our_id {
        "[json.receipt]\nour_id_pointer = \"/reference\"\n"
    } else {
        ""
    };
    toml::from_str(&format!(
        "name = \"{name}\"\ndialect = \"json\"\n{FIXED_URL_TEMPLATE}{pointer}"
    ))
    .expect("gateway settings")
}

impl Ctx {
    /// The gateway-wide URL of gateway `name`.
    async fn fixed_url_of(&self, name: &str) -> String {
        let token = self.app.store.gateway_secret(name).await.unwrap();
        format!("{}/callbacks/{name}/{}", self.base(), token.expose())
    }

    /// POSTs a JSON receipt body to `url`; returns the HTTP status.
    async fn post_json(&self, url: &str, body: String) -> u16 {
        self.client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

/// A receipt racing the send through a fixed URL (the gateway-wide token,
/// no per-message MAC) names the aggregator's id, which no send recorded
/// yet: it waits (`pending`) and applies once the send through this
/// gateway is recorded. (With a MAC it applies at once: see
/// `receipt_before_the_send_is_recorded_applies`.)
async fn racing_receipt_on_a_fixed_url_waits_for_the_send(backend: &str) {
    let name = format!("fixed_{backend}");
    let agg = fixed_json(&name, false);
    let ctx = setup_with(backend, 1, Start::Queued, move |s| s.gateways.push(agg)).await;
    let store = &ctx.app.store;
    let id = ctx.ids[0];
    store
        .claim("test-worker", 1, now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(ctx.status(id).await, "sending");
    let url = ctx.fixed_url_of(&name).await;
    let body = format!(r#"{{"message_id":"G{id}","status":"DELIVERED"}}"#);
    assert_eq!(ctx.post_json(&url, body).await, 200);
    assert_eq!(ctx.status(id).await, "sending");
    let r = store.receipts_for(id).await.unwrap();
    assert!(r.is_empty(), "matched by the aggregator's id only: {r:?}");
    assert_eq!(
        ctx.raw.texts("SELECT effect FROM receipts", &[]).await,
        ["pending"]
    );
    assert_eq!(store.apply_pending_receipts(60_000).await.unwrap(), 0);
    store
        .record_outcomes(
            "test-worker",
            &[SendOutcome::Sent {
                id,
                gateway: name.clone(),
                gateway_message_id: Some(format!("G{id}")),
                body: "Yth. Nakes".into(),
                encoding: "gsm7",
                segments: 1,
            }],
        )
        .await
        .unwrap();
    assert_eq!(store.apply_pending_receipts(60_000).await.unwrap(), 1);
    assert_eq!(ctx.status(id).await, "delivered");
    assert_eq!(ctx.effects(id).await, ["applied"]);
    ctx.finish().await;
}
both_backends!(racing_receipt_on_a_fixed_url_waits_for_the_send);

async fn rotated_secret_keeps_verifying_for_its_grace_period(backend: &str) {
    let ctx = setup_with(backend, 4, Start::Queued, |s| {
        s.gateways[0].callback_secret_grace_secs = 3;
    })
    .await;
    let m = ctx.ids.clone();
    hand_over(
        &ctx,
        &[(m[0], "sim"), (m[1], "sim"), (m[2], "sim"), (m[3], "sim")],
    )
    .await;
    let old = ctx.token.clone();
    let store = &ctx.app.store;
    store.rotate_gateway_secret("sim", "tester").await.unwrap();
    let new = store
        .gateway_secret("sim")
        .await
        .unwrap()
        .expose()
        .to_string();
    assert_ne!(old, new);
    assert_eq!(
        ctx.raw
            .int(
                "SELECT COUNT(*) FROM audit_log WHERE action = 'gateway.rotate_secret' AND subject = 'gateway:sim'",
                &[]
            )
            .await,
        1
    );
    // A receipt for a message sent before the rotation (old MAC) lands.
    let by_old = |id| ctx.message_url_on("sim", &old, id);
    assert_eq!(ctx.dlr_at(&by_old(m[0]), m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "delivered");
    // The new secret verifies at once (the endpoint reloads it).
    let by_new = ctx.message_url_on("sim", &new, m[1]);
    assert_eq!(ctx.dlr_at(&by_new, m[1], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[1]).await, "delivered");
    // After the grace period the old secret verifies nothing.
    tokio::time::sleep(Duration::from_millis(3_200)).await;
    assert_eq!(ctx.dlr_at(&by_old(m[2]), m[2], 1, DELIVERED).await, 401);
    let old_fixed = format!("{}/callbacks/sim/{old}", ctx.base());
    assert_eq!(ctx.dlr_at(&old_fixed, m[2], 1, DELIVERED).await, 401);
    assert_eq!(ctx.status(m[2]).await, "sent");
    // The new one still does.
    let url3 = ctx.message_url_on("sim", &new, m[3]);
    assert_eq!(ctx.dlr_at(&url3, m[3], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[3]).await, "delivered");
    ctx.finish().await;
}
both_backends!(rotated_secret_keeps_verifying_for_its_grace_period);

async fn configured_previous_secret_verifies_until_its_deadline(backend: &str) {
    let current = "c".repeat(40);
    let previous = "p".repeat(40);
    // Far enough ahead for the set-up below on a loaded machine; the test
    // then waits for the deadline itself, not for a fixed time.
    let until = now_ms() + 8_000;
    let ctx = setup_with(backend, 2, Start::Queued, |s| {
        s.gateways[0].callback_secret = Secret::new(current.clone());
        s.gateways[0].callback_secret_previous = Secret::new(previous.clone());
        s.gateways[0].callback_secret_previous_until = Some(
            chrono::DateTime::from_timestamp_millis(until)
                .unwrap()
                .to_rfc3339(),
        );
    })
    .await;
    let m = ctx.ids.clone();
    hand_over(&ctx, &[(m[0], "sim"), (m[1], "sim")]).await;
    let url = ctx.message_url_on("sim", &previous, m[0]);
    assert_eq!(ctx.dlr_at(&url, m[0], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[0]).await, "delivered");
    let past_deadline = u64::try_from(until + 200 - now_ms()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(past_deadline)).await;
    let url = ctx.message_url_on("sim", &previous, m[1]);
    assert_eq!(ctx.dlr_at(&url, m[1], 1, DELIVERED).await, 401);
    let url = ctx.message_url_on("sim", &current, m[1]);
    assert_eq!(ctx.dlr_at(&url, m[1], 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(m[1]).await, "delivered");
    ctx.finish().await;
}
both_backends!(configured_previous_secret_verifies_until_its_deadline);

/// A JSON aggregator that signs its callbacks (HMAC-SHA256 over a
/// timestamp and the raw body), calling one fixed URL with its own id.
async fn json_aggregator_signature_is_checked(backend: &str) {
    let name = format!("agg_{backend}");
    let agg: pedulicovid::config::GatewaySettings = toml::from_str(&format!(
        "name = \"{name}\"\ndialect = \"json\"\n{FIXED_URL_TEMPLATE}\
         [json.receipt.signature]\nheader = \"X-Agg-Signature\"\n\
         secret = \"aggregator-webhook-secret\"\nencoding = \"base64\"\n\
         timestamp_header = \"X-Agg-Timestamp\"\ntolerance_secs = 60\n"
    ))
    .expect("gateway settings");
    let pedulicovid::config::GatewayDialect::Carrier(pedulicovid::config::DialectSettings::Json(
        json,
    )) = &agg.dialect
    else {
        panic!("a json gateway: {:?}", agg.dialect);
    };
    let sig = json.receipt.signature.clone().unwrap();
    let ctx = setup_with(backend, 1, Start::Queued, move |s| s.gateways.push(agg)).await;
    let id = ctx.ids[0];
    hand_over(&ctx, &[(id, name.as_str())]).await;
    let token = ctx
        .app
        .store
        .gateway_secret(&name)
        .await
        .unwrap()
        .expose()
        .to_string();
    let url = format!("{}/callbacks/{name}/{token}", ctx.base());
    let body = format!(r#"{{"message_id":"G{id}","status":"DELIVERED"}}"#);
    let post = |signature: String, ts: i64| {
        let (url, body) = (url.clone(), body.clone());
        let client = ctx.client.clone();
        async move {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("X-Agg-Signature", signature)
                .header("X-Agg-Timestamp", ts.to_string())
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let now = now_ms() / 1000;
    let metrics = METRICS.gateways.get(&name);
    // Wrong: signed with another key.
    let mut wrong = sig.clone();
    wrong.secret = Secret::new("not-the-webhook-secret");
    assert_eq!(post(wrong.sign(body.as_bytes(), Some(now)), now).await, 401);
    // Stale: a correct signature from ten minutes ago (a replay).
    let then = now - 600;
    assert_eq!(post(sig.sign(body.as_bytes(), Some(then)), then).await, 401);
    // A correct signature with the timestamp moved.
    assert_eq!(post(sig.sign(body.as_bytes(), Some(then)), now).await, 401);
    assert_eq!(ctx.receipt_count().await, 0);
    assert_eq!(ctx.status(id).await, "sent");
    assert_eq!(metrics.receipts(ReceiptLabel::BadSignature), 3);
    // Correct.
    assert_eq!(post(sig.sign(body.as_bytes(), Some(now)), now).await, 200);
    assert_eq!(ctx.status(id).await, "delivered");
    assert_eq!(ctx.effects(id).await, ["applied"]);
    ctx.finish().await;
}
both_backends!(json_aggregator_signature_is_checked);

/// A worker handed a message over and died before writing it down; its
/// lease expired and the message is back in `queued`. The carrier's report
/// on the message's own URL (its MAC proves we built the request) applies;
/// the same report for a message never claimed does not.
async fn receipt_after_a_lease_expired_on_a_handed_over_message(backend: &str) {
    let ctx = setup(backend, 2, Start::Queued).await;
    let store = &ctx.app.store;
    let claimed = store.claim("dead-worker", 1, now_ms() - 1).await.unwrap();
    let taken = claimed[0].id;
    let never = *ctx.ids.iter().find(|id| **id != taken).unwrap();
    assert_eq!(
        store
            .expire_leases(pedulicovid::config::DeliveryPolicy::AtLeastOnce, 5)
            .await
            .unwrap(),
        1
    );
    assert_eq!(ctx.status(taken).await, "queued");
    // The gateway-wide token is refused on a Kannel gateway.
    assert_eq!(
        ctx.dlr_at(&ctx.callback_url(), taken, 1, DELIVERED).await,
        401
    );
    assert_eq!(ctx.status(taken).await, "queued");
    // Its own URL proves the hand-over.
    assert_eq!(ctx.dlr(taken, 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(taken).await, "delivered");
    assert_eq!(ctx.effects(taken).await, ["applied"]);
    assert_eq!(ctx.dlr(never, 1, DELIVERED).await, 200);
    assert_eq!(ctx.status(never).await, "queued");
    assert_eq!(ctx.effects(never).await, ["not_sent"]);
    ctx.finish().await;
}
both_backends!(receipt_after_a_lease_expired_on_a_handed_over_message);

/// Sends that never reached the carrier (a refused connection, a 429
/// throttle, a TLS fault) go back to the queue with the gateway written
/// down, but they are no hand-over: a receipt through the gateway-wide
/// token naming them (our id, from the body) is `not_sent` and changes
/// nothing. A timeout may have reached the carrier: its receipt applies.
async fn retries_that_never_left_us_are_not_hand_overs(backend: &str) {
    use pedulicovid::gateway::{Fault, SendError, Transient};
    use pedulicovid::store::RetryCause;
    let name = format!("norefs_{backend}");
    let agg = fixed_json(&name, true);
    let ctx = setup_with(backend, 4, Start::Queued, move |s| s.gateways.push(agg)).await;
    let store = &ctx.app.store;
    let m = ctx.ids.clone();
    let claimed = store
        .claim("test-worker", 4, now_ms() + 60_000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 4);
    let retry = |id: i64, cause: RetryCause, e: SendError| SendOutcome::Retry {
        id,
        gateway: Some(name.clone()),
        next_attempt_at: now_ms() + 600_000,
        error: e.short(),
        cause,
        handed_over: e.may_have_reached_carrier(),
    };
    let outcomes = [
        retry(
            m[0],
            RetryCause::Transient,
            SendError::retry(
                Transient::Connect,
                "connect: Connection refused (os error 111)",
            ),
        ),
        retry(
            m[1],
            RetryCause::Throttled,
            SendError::Throttled { retry_after: None },
        ),
        retry(
            m[2],
            RetryCause::GatewayFault,
            SendError::GatewayFault {
                reason: "tls: certificate expired".into(),
                kind: Fault::Tls,
            },
        ),
        retry(
            m[3],
            RetryCause::Transient,
            SendError::retry(Transient::Timeout, "timeout"),
        ),
    ];
    assert_eq!(
        store
            .record_outcomes("test-worker", &outcomes)
            .await
            .unwrap(),
        0
    );
    for id in &m {
        assert_eq!(ctx.status(*id).await, "queued");
    }
    let url = ctx.fixed_url_of(&name).await;
    let body =
        |id: i64| format!(r#"{{"message_id":"X{id}","reference":"{id}","status":"DELIVERED"}}"#);
    for id in &m[..3] {
        assert_eq!(ctx.post_json(&url, body(*id)).await, 200);
        assert_eq!(ctx.status(*id).await, "queued", "message {id}");
        assert_eq!(ctx.effects(*id).await, ["not_sent"], "message {id}");
    }
    store.apply_pending_receipts(60_000).await.unwrap();
    for id in &m[..3] {
        assert_eq!(ctx.status(*id).await, "queued", "message {id}");
    }
    // The timeout may have reached the carrier: its report applies.
    assert_eq!(ctx.post_json(&url, body(m[3])).await, 200);
    assert_eq!(ctx.status(m[3]).await, "delivered");
    assert_eq!(ctx.effects(m[3]).await, ["applied"]);
    assert_eq!(
        ctx.raw
            .int(
                "SELECT COUNT(*) FROM attempts WHERE handed_over = TRUE",
                &[]
            )
            .await,
        1
    );
    ctx.finish().await;
}
both_backends!(retries_that_never_left_us_are_not_hand_overs);

/// On a fixed URL only the aggregator's signature (or our id inside its
/// body) binds a receipt to a message: `pcid` in the query is nobody's
/// word. A captured body for message X replayed with `?pcid=Y` changes
/// nothing on Y; a body naming Y by our id but X by the aggregator's id
/// is `not_ours`.
async fn fixed_url_receipts_ignore_an_unsigned_pcid(backend: &str) {
    let name = format!("pcid_{backend}");
    let ours = format!("pcidref_{backend}");
    let (a, b) = (fixed_json(&name, false), fixed_json(&ours, true));
    let ctx = setup_with(backend, 4, Start::Queued, move |s| {
        s.gateways.push(a);
        s.gateways.push(b);
    })
    .await;
    let m = ctx.ids.clone();
    hand_over(
        &ctx,
        &[(m[0], &name), (m[1], &name), (m[2], &ours), (m[3], &ours)],
    )
    .await;
    let url = ctx.fixed_url_of(&name).await;
    let x = m[0];
    let y = m[1];
    let body = format!(r#"{{"message_id":"G{x}","status":"FAILED"}}"#);
    assert_eq!(ctx.post_json(&format!("{url}?pcid={y}"), body).await, 200);
    assert_eq!(ctx.status(y).await, "sent");
    assert!(ctx.effects(y).await.is_empty());
    // It is a report on X (its own id), as captured.
    assert_eq!(ctx.status(x).await, "undelivered");

    // Our id (m[3]) and the aggregator's id of another message (m[2]).
    let url = ctx.fixed_url_of(&ours).await;
    let (x, y) = (m[2], m[3]);
    let body = format!(r#"{{"message_id":"G{x}","reference":"{y}","status":"DELIVERED"}}"#);
    assert_eq!(ctx.post_json(&url, body).await, 200);
    assert_eq!(ctx.status(y).await, "sent");
    assert_eq!(ctx.status(x).await, "sent");
    assert_eq!(ctx.effects(y).await, ["not_ours"]);
    // Both agreeing: applies.
    let body = format!(r#"{{"message_id":"G{y}","reference":"{y}","status":"DELIVERED"}}"#);
    assert_eq!(ctx.post_json(&url, body).await, 200);
    assert_eq!(ctx.status(y).await, "delivered");
    ctx.finish().await;
}
both_backends!(fixed_url_receipts_ignore_an_unsigned_pcid);

/// The gateway-wide token (the secret itself) is refused wherever we hand
/// per-message URLs: Jasmin, and JSON whose template has `{{callback_url}}`
/// (Kannel: `wrong_token_and_unknown_gateway_store_nothing`); a fixed-URL
/// JSON aggregator takes it. An empty header token is refused.
async fn gateway_token_only_on_fixed_url_gateways(backend: &str) {
    let jas = format!("jas_{backend}");
    let per = format!("perjson_{backend}");
    let fixed = format!("fixedok_{backend}");
    let (j, p, f) = (
        toml::from_str::<pedulicovid::config::GatewaySettings>(&format!(
            "name = \"{jas}\"\ndialect = \"jasmin\"\n"
        ))
        .unwrap(),
        toml::from_str::<pedulicovid::config::GatewaySettings>(&format!(
            "name = \"{per}\"\ndialect = \"json\"\n"
        ))
        .unwrap(),
        fixed_json(&fixed, false),
    );
    let ctx = setup_with(backend, 3, Start::Queued, move |s| {
        s.gateways.extend([j, p, f]);
    })
    .await;
    let m = ctx.ids.clone();
    hand_over(&ctx, &[(m[0], &jas), (m[1], &per), (m[2], &fixed)]).await;
    let jasmin_url = format!("{}?pcid={}", ctx.fixed_url_of(&jas).await, m[0]);
    let st = ctx
        .client
        .post(&jasmin_url)
        .form(&[
            ("id", format!("G{}", m[0])),
            ("message_status", "DELIVRD".to_string()),
            ("level", "2".to_string()),
        ])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(st, 401);
    let body = |id: i64| format!(r#"{{"message_id":"G{id}","status":"DELIVERED"}}"#);
    let per_url = ctx.fixed_url_of(&per).await;
    assert_eq!(ctx.post_json(&per_url, body(m[1])).await, 401);
    let header = format!("{}/callbacks/{fixed}", ctx.base());
    let st = ctx
        .client
        .post(&header)
        .header("X-Callback-Token", "")
        .header("content-type", "application/json")
        .body(body(m[2]))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(st, 401);
    assert_eq!(ctx.receipt_count().await, 0);
    for id in &m {
        assert_eq!(ctx.status(*id).await, "sent");
    }
    let fixed_url = ctx.fixed_url_of(&fixed).await;
    assert_eq!(ctx.post_json(&fixed_url, body(m[2])).await, 200);
    assert_eq!(ctx.status(m[2]).await, "delivered");
    ctx.finish().await;
}
both_backends!(gateway_token_only_on_fixed_url_gateways);

//! A whole campaign through the real app on both databases: import →
//! campaign → worker → simulator over HTTP → receipts → flags.

use std::time::Duration;

use crate::common::*;
use pedulicovid::app::Parts;
use pedulicovid::config::GatewayDialect;
use pedulicovid::gateway::kannel::{KannelConfig, KannelMethod};

async fn whole_campaign_flags_the_right_workers(backend: &str) {
    whole_campaign(backend, KannelMethod::Get).await;
}
both_backends!(whole_campaign_flags_the_right_workers);

/// The same campaign with the gateway in Kannel's POST mode
/// (`[gateways.kannel] method = "POST"`): the same outcomes.
async fn whole_campaign_in_kannel_post_mode(backend: &str) {
    whole_campaign(backend, KannelMethod::Post).await;
}
both_backends!(whole_campaign_in_kannel_post_mode);

async fn whole_campaign(backend: &str, method: KannelMethod) {
    let db = TestDb::new(backend).await;
    // Numbers no rule matches are delivered (the default mix is random).
    let mut s = ruled_settings(
        &db,
        "0=undelivered,9=expired,8=rejected,7=invalid,5=no_receipt",
    );
    s.worker.receipt_timeout_secs = 2;
    s.gateways[0].dialect = GatewayDialect::Simulator(Some(
        KannelConfig {
            method,
            ..KannelConfig::default()
        }
        .into(),
    ));
    let app = start(s, Parts::ALL).await;

    // 12 workers: tails 0..=9 plus two more delivered; one not validated,
    // one not eligible (never enqueued).
    let mut csv = String::from(HEADER);
    for i in 0..12u32 {
        csv.push_str(&row(i, "31", &format!("{:04}{}", i, i % 10)));
    }
    csv.push_str(&row(20, "94", "00002021").replace("true,true", "false,true"));
    csv.push_str(&row(21, "51", "00002031").replace("true,true", "true,false"));
    let imported = import_text(&app.store, &csv).await;
    assert_eq!(imported.accepted, 14, "{:?}", imported.rejections);

    let (c, enqueued) = create_campaign(&app, campaign_request("e2e")).await;
    assert_eq!(
        enqueued, 12,
        "only validated and eligible workers are enqueued"
    );

    let r = wait_done(&app.store, c.id, Duration::from_secs(30)).await;
    let sim = app.simulator.clone().unwrap().stats();
    assert_eq!(sim.submits_total, 12);
    assert_eq!(sim.duplicates, 0);
    let posts = if method == KannelMethod::Post { 12 } else { 0 };
    assert_eq!(sim.kannel_posts, posts, "{method:?}");
    assert_eq!(r.sent, 12);
    use pedulicovid::status::Status::*;
    assert_eq!(r.status(Undelivered), 2, "{r:?}"); // i = 0, 10
    assert_eq!(r.status(Delivered), 6, "{r:?}"); // 1, 2, 3, 4, 6, 11
    assert_eq!(r.status(Expired), 1);
    assert_eq!(r.status(Rejected), 2); // 8 rejected + 7 invalid number
    assert_eq!(r.status(Unknown), 1); // 5: no receipt within the timeout
    let flags: std::collections::BTreeMap<String, i64> =
        r.flagged_by_reason.iter().cloned().collect();
    assert_eq!(flags.get("undelivered"), Some(&2));
    assert_eq!(flags.get("expired"), Some(&1));
    assert_eq!(flags.get("rejected"), Some(&1));
    assert_eq!(flags.get("invalid_number"), Some(&1));
    assert_eq!(flags.get("no_receipt"), Some(&1));
    app.stop(Duration::from_secs(5)).await;
}

async fn reimport_changes_nothing_and_keeps_phone_history(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let csv = format!(
        "{HEADER}{}{}",
        row(1, "31", "11111111"),
        row(2, "73", "22222222")
    );
    let first = import_text(&store, &csv).await;
    assert_eq!((first.counts.inserted, first.counts.updated), (2, 0));
    let again = import_text(&store, &csv).await;
    assert_eq!(
        (
            again.counts.inserted,
            again.counts.updated,
            again.counts.unchanged
        ),
        (0, 0, 2)
    );
    let changed = csv.replace("081211111111", "081299999999");
    let third = import_text(&store, &changed).await;
    assert_eq!((third.counts.updated, third.counts.phone_changes), (1, 1));
    let w = store
        .worker_by_nik(&row(1, "31", "x")[..16])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.phone.as_e164(), "+6281299999999");
}
both_backends!(reimport_changes_nothing_and_keeps_phone_history);

async fn bad_rows_are_rejected_one_by_one(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let csv = format!(
        "{HEADER}{}3171014505900002,Nomor Rumah,021-5550123,bidan,F1,3171,31,1,1\n\
         {}\"unterminated,quote\n{}",
        row(1, "31", "11111111"),
        row(2, "31", "22222222"),
        row(3, "31", "33333333"),
    );
    let r = import_text(&store, &csv).await;
    assert!(r.accepted >= 2, "{r:?}");
    let phone = r
        .rejections
        .iter()
        .find(|x| x.field == "phone")
        .expect("phone rejected");
    assert_eq!(phone.line, 3);
    assert!(phone.reason.contains("mobile"), "{}", phone.reason);
    assert_eq!(store.count_workers().await.unwrap() as u64, r.accepted);
}
both_backends!(bad_rows_are_rejected_one_by_one);

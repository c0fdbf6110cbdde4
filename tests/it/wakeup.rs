//! Wake-ups: an idle worker starts on new work when told, not at its next
//! poll. Workers here poll once every ten minutes, so only a wake-up can
//! get a notice out within the test's limits.

use std::time::Duration;

use pedulicovid::app::Parts;
use pedulicovid::campaign::{self, CampaignRequest};
use pedulicovid::status::Status;
use pedulicovid::store::{now_ms, CampaignAction, Store};

use crate::common::*;

/// Longer than any test here waits: a notice that goes out did so because
/// a wake-up said so.
const POLL_MS: u64 = 600_000;

/// Long enough for a loaded CI machine, far below the poll interval.
const LIMIT: Duration = Duration::from_secs(30);

/// Where the work comes from: the app's own store (the same process), or,
/// on PostgreSQL, a second store with its own connections, as another
/// process would be (`NOTIFY` reaches every listener of the database).
async fn enqueuer(app_store: &Store, db: &TestDb, backend: &str) -> Store {
    if backend == "postgres" {
        db.store().await
    } else {
        app_store.clone()
    }
}

async fn enqueue_resume_and_reschedule_wake_idle_workers(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = test_settings(&db);
    s.worker.poll_ms = POLL_MS;
    s.simulator.mix = all_delivered();
    let app = start(s, Parts::ALL).await;
    let csv: String = std::iter::once(HEADER.to_string())
        .chain((0..3).map(|i| row(i, "31", &format!("{i}"))))
        .collect();
    assert_eq!(import_text(&app.store, &csv).await.accepted, 3);
    // The workers have made their first (empty) claim and sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let other = enqueuer(&app.store, &db, backend).await;

    // An enqueue.
    let created = campaign::create(&other, &app.renderer, 1, campaign_request("wake: enqueue"))
        .await
        .expect("campaign created");
    assert_eq!(created.enqueued, 3);
    let r = wait_done(&app.store, created.campaign.id, LIMIT).await;
    assert_eq!(r.status(Status::Delivered), 3, "{r:?}");

    // A resume: paused before its start, resumed once the start has come.
    let req = CampaignRequest {
        at: Some(now_ms() + 2_000),
        ..campaign_request("wake: resume")
    };
    let paused = campaign::create(&other, &app.renderer, 1, req)
        .await
        .expect("campaign created");
    other
        .control_campaign(paused.campaign.id, CampaignAction::Pause, "test", "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(
        app.store
            .campaign_report(paused.campaign.id)
            .await
            .unwrap()
            .status(Status::Delivered),
        0,
        "a paused campaign sends nothing"
    );
    other
        .control_campaign(paused.campaign.id, CampaignAction::Resume, "test", "test")
        .await
        .unwrap();
    let r = wait_done(&app.store, paused.campaign.id, LIMIT).await;
    assert_eq!(r.status(Status::Delivered), 3, "{r:?}");

    // A reschedule: from tomorrow to now.
    let req = CampaignRequest {
        at: Some(now_ms() + 86_400_000),
        ..campaign_request("wake: reschedule")
    };
    let later = campaign::create(&other, &app.renderer, 1, req)
        .await
        .expect("campaign created");
    campaign::reschedule(&other, later.campaign.id, now_ms(), "test")
        .await
        .expect("rescheduled");
    let r = wait_done(&app.store, later.campaign.id, LIMIT).await;
    assert_eq!(r.status(Status::Delivered), 3, "{r:?}");

    app.stop(Duration::from_secs(5)).await;
}
both_backends!(enqueue_resume_and_reschedule_wake_idle_workers);

//! `[limits]`: the per-number notice limit, the support search's rows and
//! the chatbot's rate come from the settings, not from constants.

use std::time::Duration;

use pedulicovid::app::Parts;
use pedulicovid::domain::notice::FreeText;
use pedulicovid::store::{NewToken, Role, SupportError};

use crate::common::*;

async fn limits_come_from_the_settings(backend: &str) {
    let db = TestDb::new(backend).await;
    let mut s = ruled_settings(&db, "0=undelivered");
    s.limits.resends_per_number_per_day = 1;
    s.limits.search_rows = 2;
    s.limits.chatbot_rate_per_sec = 1;
    let app = start(s, Parts::ALL).await;
    let csv: String = (1..=3)
        .map(|i| row(i, "31", &format!("000000{i}0")))
        .collect();
    import_text(&app.store, &format!("{HEADER}{csv}")).await;
    let c = run_campaign(&app, "batas", "00:00-24:00").await;
    wait_done(&app.store, c, Duration::from_secs(30)).await;

    // Three workers match; the search returns two.
    let found = app.store.search_workers("nakes nomor").await.unwrap();
    assert_eq!(found.workers.len(), 2, "{found:?}");
    assert_eq!(app.store.limits().search_rows, 2);

    // One extra notice per number a day: the second is refused.
    let w = worker_id(&app.store, &nik_of(1, "31")).await;
    let (staff, why) = (
        FreeText::staff("Siti").unwrap(),
        FreeText::reason("ponsel mati").unwrap(),
    );
    app.store.resend(w, &staff, &why).await.expect("the first");
    wait_done(&app.store, c, Duration::from_secs(30)).await;
    match app.store.resend(w, &staff, &why).await {
        Err(SupportError::Limit { message, .. }) => {
            assert!(message.contains("at most 1 per number"), "{message}")
        }
        other => panic!("a second extra notice: {other:?}"),
    }

    // One chatbot request a second per token.
    let NewToken { secret, .. } = app.store.create_token("bot", Role::Chatbot).await.unwrap();
    let client = reqwest::Client::new();
    let mut statuses = vec![];
    for _ in 0..3 {
        let r = client
            .post(format!("{}/api/v1/chatbot/lookup", base_url(&app)))
            .bearer_auth(&secret)
            .json(&serde_json::json!({"phone": "081200000010"}))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].contains(&429), "{statuses:?}");
    app.stop(Duration::from_secs(5)).await;
}

both_backends!(limits_come_from_the_settings);

/// A limit of 0 would refuse every request of its kind: refused at start,
/// naming the setting.
#[test]
fn a_zero_limit_is_refused() {
    let mut s = pedulicovid::config::Settings::default();
    s.limits.search_rows = 0;
    let e = format!("{:#}", s.check().unwrap_err());
    assert!(
        e.contains("limits.search_rows") && e.contains("PEDULICOVID__LIMITS__SEARCH_ROWS"),
        "{e}"
    );
}

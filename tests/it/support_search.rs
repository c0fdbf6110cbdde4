//! Support search by name, served by an index (issue 10, point 8), on both
//! databases: substring, case- and accent-insensitive; wildcards are
//! literal; fewer than 3 characters refused; at most `SEARCH_LIMIT` rows,
//! shown in name order; a renamed worker is found by the new name only; a search
//! that runs out of time is refused as too broad and leaves the store
//! working. (The API and UI tests in `api.rs`, `ui_browser.rs` and
//! `security.rs` search through the same function.)

use std::time::Duration;

use crate::common::*;
use pedulicovid::store::{SearchKind, SearchResults, Store, SupportError, SEARCH_LIMIT};

/// Imports workers `i` with the given names (province 31).
async fn import_named(store: &Store, named: &[(u32, &str)]) {
    let mut csv = HEADER.to_string();
    for (i, name) in named {
        csv.push_str(&row(*i, "31", &format!("{:08}", 10 + i)).replacen(
            &format!("Nakes Nomor {i},"),
            &format!("{name},"),
            1,
        ));
    }
    let r = import_text(store, &csv).await;
    assert_eq!(r.rejected_rows, 0, "{r:?}");
}

/// Ids found by a name search for `q`, in the order returned.
async fn names(store: &Store, q: &str) -> Vec<i64> {
    let SearchResults {
        kind,
        workers: rows,
    } = store
        .search_workers(q)
        .await
        .unwrap_or_else(|e| panic!("{q:?}: {e}"));
    assert_eq!(kind, SearchKind::Name, "{q:?}");
    rows.iter().map(|r| r.id).collect()
}

async fn name_search_folds_case_and_accents(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    import_named(
        &store,
        &[
            (1, "José Émile Ñúñez"),
            (2, "Siti Rahayu"),
            (3, "SITI AMINAH"),
            (4, "Budi 1000 Santoso"),
            (5, "Budi 100%_x Santoso"),
            (6, "Agus \"Quote\" Salim"),
        ],
    )
    .await;
    let id = |i: u32| {
        let store = store.clone();
        async move { worker_id(&store, &nik_of(i, "31")).await }
    };
    let (jose, siti_r, siti_a, budi_1000, budi_pct, agus) = (
        id(1).await,
        id(2).await,
        id(3).await,
        id(4).await,
        id(5).await,
        id(6).await,
    );

    for (q, want) in [
        // Case and accents, either side.
        ("jose", vec![jose]),
        ("JOSÉ", vec![jose]),
        ("émile", vec![jose]),
        ("nunez", vec![jose]),
        ("ÑÚÑ", vec![jose]),
        // Substring anywhere, across a space; name order (AMINAH < Rahayu).
        ("siti", vec![siti_a, siti_r]),
        ("ti ra", vec![siti_r]),
        ("ahayu", vec![siti_r]),
        // Wildcards and FTS syntax are literal text.
        ("100%_", vec![budi_pct]),
        ("100", vec![budi_pct, budi_1000]),
        ("\"quote\"", vec![agus]),
        ("siti OR budi", vec![]),
        ("sit*", vec![]),
        ("zzz", vec![]),
    ] {
        assert_eq!(names(&store, q).await, want, "{q:?}");
    }

    // Fewer than 3 characters (after trimming): refused, naming the field.
    for q in ["ab", "  é  ", "Ñ"] {
        match store.search_workers(q).await {
            Err(SupportError::Invalid { field, reason }) => {
                assert_eq!(field, "query");
                assert!(reason.contains("3"), "{reason}");
            }
            other => panic!("{q:?}: {other:?}"),
        }
    }

    // A renamed worker is found by the new name, not the old one; the
    // others are untouched.
    import_named(&store, &[(2, "Siti Wulandari")]).await;
    assert_eq!(names(&store, "rahayu").await, Vec::<i64>::new());
    assert_eq!(names(&store, "wulan").await, vec![siti_r]);
    assert_eq!(names(&store, "siti").await, vec![siti_a, siti_r]);
}
both_backends!(name_search_folds_case_and_accents);

async fn name_search_is_bounded(backend: &str) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let mut csv = HEADER.to_string();
    for i in 0..3000 {
        csv.push_str(&row(i, "31", &format!("{:08}", i)));
    }
    import_text(&store, &csv).await;
    store.refresh_statistics(&["health_workers"]).await;

    // Rows: SEARCH_LIMIT of the 3,000 matches (which ones is unspecified),
    // distinct, each a match, in name order.
    let rows = store.search_workers("nakes").await.unwrap().workers;
    assert_eq!(rows.len() as i64, SEARCH_LIMIT);
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut in_order: Vec<(String, i64)> = Vec::new();
    for r in &rows {
        let name = sql_rows::<(String,)>(
            &db.url,
            "SELECT full_name FROM health_workers WHERE id = $1",
            &[r.id],
        )
        .await
        .remove(0)
        .0;
        assert!(name.starts_with("Nakes Nomor "), "{name}");
        in_order.push((name, r.id));
    }
    let mut sorted = in_order.clone();
    sorted.sort();
    assert_eq!(in_order, sorted, "name order");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as i64, SEARCH_LIMIT, "distinct");

    // Time: a search out of time is refused, naming the field, and does
    // not wait for the statement. SQLite: no time at all, so the first
    // progress check stops it. PostgreSQL: 200 ms while another session
    // holds the table locked (a search stuck behind anything).
    let lock = if backend == "postgres" {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("LOCK TABLE health_workers IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .unwrap();
        Some((pool, tx))
    } else {
        None
    };
    let budget = if lock.is_some() {
        Duration::from_millis(200)
    } else {
        Duration::ZERO
    };
    let hasty = store.clone().with_search_timeout(budget);
    let started = std::time::Instant::now();
    match hasty.search_workers("nakes nomor").await {
        Err(SupportError::Invalid { field, reason }) => {
            assert_eq!(field, "query");
            assert!(reason.contains("could not be answered within"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    if let Some((pool, tx)) = lock {
        tx.rollback().await.unwrap();
        pool.close().await;
    }
    // The store (every pooled connection) works afterwards: the bound ended
    // with the search.
    for _ in 0..20 {
        assert_eq!(names(&store, "nomor 2999").await.len(), 1);
        store.campaigns().await.unwrap();
    }
}
both_backends!(name_search_is_bounded);

//! The behaviour suite on PostgreSQL: each test has a fresh database on the
//! server of `TEST_DATABASE_URL`, dropped when it ends. Without that variable
//! these tests skip with a notice, except under `CI=true`, where they fail.

// The suite's files are loaded once per store, on purpose.
#![allow(clippy::duplicate_mod)]

use crate::helpers::*;

const STORE: StoreKind = StoreKind::Postgres;

store_suite!();

// PostgreSQL alone: a table lock that holds a reader (SQLite's readers never
// wait on a writer in WAL mode).

/// `GET /protected` with `access`: its status.
async fn protected(router: &axum::Router, access: &str) -> axum::http::StatusCode {
    crate::helpers::call(
        router,
        crate::helpers::bearer(axum::http::Method::GET, "/protected", access),
    )
    .await
    .status
}

/// A reload that hangs on the database holds up the one request making it;
/// the others go on with the keys known. PostgreSQL only: a table lock there
/// stalls the reload's read at a chosen point (SQLite's readers never wait).
#[tokio::test]
async fn a_stalled_key_reload_holds_up_one_request_not_all() {
    let Some(app) = TestApp::on(STORE, &[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]).await else {
        return;
    };
    let access = app.signed_in_ann().await.access_token();
    let url = app.vars["DATABASE_URL"].clone();
    let locker = sqlx::PgPool::connect(&url).await.unwrap();
    let mut tx = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE signing_keys IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await
        .unwrap();

    app.advance(61);
    let router = app.router.clone();
    let token = access.clone();
    let stalled = tokio::spawn(async move { protected(&router, &token).await });
    // Until the first request's reload waits on the lock.
    let watcher = sqlx::PgPool::connect(&url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE '%FROM signing_keys%'",
        )
        .fetch_one(&watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never began"
        );
        tokio::task::yield_now().await;
    }
    for _ in 0..20 {
        assert_eq!(
            protected(&app.router, &access).await,
            axum::http::StatusCode::OK
        );
    }
    assert!(!stalled.is_finished(), "the reload is still held");
    tx.rollback().await.unwrap();
    assert_eq!(stalled.await.unwrap(), axum::http::StatusCode::OK);
}

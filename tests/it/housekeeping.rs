//! Housekeeping: expired sessions, old audit events and quiet throttle
//! counters are deleted in batches; nothing live is touched.

use latchkey::testing::BATCH;
use latchkey::store::NewSession;

use crate::helpers::*;

#[tokio::test]
async fn a_sweep_deletes_only_what_can_never_be_used_again() {
    let app = test_app!(&[("SESSION_MAX_LIFETIME", "100"), ("AUDIT_RETENTION", "100")]);
    let stop = tokio::sync::watch::channel(false).1;
    let first = app.signed_in_ann().await.refresh_token();
    assert_eq!(app.login("ann", "wrong password").await.status, 401);

    app.advance(60);
    let second = app.login("ann", PASSWORD).await.refresh_token();
    app.advance(50);

    let swept = app.auth.sweep(&stop).await.unwrap();
    assert_eq!(swept.sessions, 1, "{swept:?}");
    assert_eq!(swept.throttles, 0, "the failed login is recent: {swept:?}");
    assert!(
        swept.events > 0,
        "the first login's events are past retention: {swept:?}"
    );
    assert_eq!(
        app.refresh(&first).await.error_code(),
        "invalid_refresh_token"
    );
    assert_eq!(
        app.refresh(&second).await.status,
        200,
        "the live session survives"
    );
    let events = audit_events(&*app.store).await;
    let cutoff = START + 110 - 100;
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.at >= cutoff), "{events:?}");

    app.advance(3600);
    let swept = app.auth.sweep(&stop).await.unwrap();
    // The successful login cleared the account's counters; the address's is left.
    assert_eq!(swept.throttles, 1, "{swept:?}");
}

#[tokio::test]
async fn a_sweep_works_through_more_rows_than_one_batch() {
    let app = test_app!();
    let user = app.add_user("ann", PASSWORD).await;
    let count = BATCH + 150;
    for i in 0..count {
        app.store
            .create_session(NewSession {
                id: format!("expired-{i}"),
                user_id: user.id,
                credentials_version: user.credentials_version,
                now: START - 200,
                idle_expires_at: START - 100,
                absolute_expires_at: START - 100,
                user_agent: None,
                ip: None,
                remember: true,
                amr: "pwd".to_owned(),
            }, i64::MAX)
            .await
            .unwrap()
            .unwrap();
    }
    let live = app.login("ann", PASSWORD).await.refresh_token();

    let stop = tokio::sync::watch::channel(false).1;
    let swept = app.auth.sweep(&stop).await.unwrap();
    assert_eq!(swept.sessions, count.unsigned_abs());
    assert!(
        app.store
            .session("expired-0")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(app.refresh(&live).await.status, 200);
}

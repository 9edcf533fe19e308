//! `POST /token`: refresh-token rotation (README, "Rotation rules"), the
//! grace path, reuse detection, idle and absolute lifetimes, and the cookie's
//! edge cases.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use latchkey::store::Session;

use crate::helpers::*;

const COOKIE_NAME: &str = "__Host-refresh_token";

/// The session id behind an access token, as `/me` reports it.
async fn session_id(app: &TestApp, access: &str) -> String {
    let me = app.get_with_bearer("/me", access).await;
    assert_eq!(me.status, StatusCode::OK, "/me: {}", me.text());
    me.json()["session_id"]
        .as_str()
        .expect("session_id")
        .to_owned()
}

async fn stored_session(app: &TestApp, sid: &str) -> Session {
    app.store
        .session(sid)
        .await
        .expect("store answers")
        .expect("session row exists")
}

/// Signs ann in; returns (access token, refresh token, session id).
async fn ann_signed_in(app: &TestApp) -> (String, String, String) {
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    let refresh = login.refresh_token();
    let sid = session_id(app, &access).await;
    (access, refresh, sid)
}

/// A `/token` call that must succeed; returns the response.
async fn rotate_ok(app: &TestApp, refresh: &str) -> TestResponse {
    let response = app.refresh(refresh).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "rotation refused: {}",
        response.text()
    );
    response
}

fn assert_refused(response: &TestResponse, code: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "expected 401 {code}, got: {}",
        response.text()
    );
    assert_eq!(response.error_code(), code);
    response.assert_cookie_cleared();
    response.assert_no_store();
}

fn post_token_with_cookie_header(value: &str) -> Request<Body> {
    Request::post("/token")
        .header(header::COOKIE, value)
        .body(Body::empty())
        .expect("request")
}

// ---------------------------------------------------------------------------
// Rule 1: the current token rotates.

#[tokio::test]
async fn rotating_returns_a_new_access_token_and_a_different_refresh_cookie_that_then_works() {
    let app = test_app!();
    let (access0, refresh0, _) = ann_signed_in(&app).await;
    app.advance(1);

    let rotated = rotate_ok(&app, &refresh0).await;
    rotated.assert_no_store();
    let body = rotated.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body.get("refresh_token").is_none(),
        "the refresh token is only ever in the cookie: {body}"
    );
    let access1 = rotated.access_token();
    assert_ne!(access1, access0, "a new access token");

    let cookie = rotated.refresh_cookie().expect("rotated cookie");
    assert_eq!(cookie.name(), COOKIE_NAME);
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(rotated.max_age(), 86_400, "the idle expiry slid");
    let refresh1 = rotated.refresh_token();
    assert_ne!(refresh1, refresh0, "the refresh cookie changed");

    let protected = app.get_with_bearer("/protected", &access1).await;
    assert_eq!(protected.status, StatusCode::OK, "{}", protected.text());

    let again = rotate_ok(&app, &refresh1).await;
    let refresh2 = again.refresh_token();
    assert_ne!(refresh2, refresh1);
    assert_ne!(refresh2, refresh0);
}

#[tokio::test]
async fn a_routine_rotation_is_not_an_audit_event_but_updates_last_use() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;
    let events_before = app.event_kinds().await;

    app.advance(30);
    rotate_ok(&app, &refresh0).await;

    assert_eq!(app.event_kinds().await, events_before);
    let session = stored_session(&app, &sid).await;
    assert_eq!(session.last_used_at, START + 30);
    assert_eq!(session.generation, 1);
}

// ---------------------------------------------------------------------------
// Rule 2: the grace path.

#[tokio::test]
async fn the_token_just_rotated_away_gets_the_current_cookie_back_within_the_grace_window() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;

    let rotated = rotate_ok(&app, &refresh0).await;
    let refresh1 = rotated.refresh_token();
    assert_eq!(stored_session(&app, &sid).await.generation, 1);

    // A second tab, or a retry after a lost response, a few seconds later.
    app.advance(5);
    let late = rotate_ok(&app, &refresh0).await;
    late.assert_no_store();
    assert_eq!(
        late.refresh_token(),
        refresh1,
        "the grace answer carries the session's current refresh token, byte for byte"
    );
    assert_eq!(
        late.max_age(),
        86_400 - 5,
        "the current token's remaining life"
    );
    let late_access = late.access_token();
    let protected = app.get_with_bearer("/protected", &late_access).await;
    assert_eq!(protected.status, StatusCode::OK, "{}", protected.text());

    let session = stored_session(&app, &sid).await;
    assert_eq!(session.generation, 1, "the chain did not advance");
    assert_eq!(session.revoked_at, None, "nothing was revoked");

    // The same late token again, still inside the window: same answer.
    app.advance(4);
    let later = rotate_ok(&app, &refresh0).await;
    assert_eq!(later.refresh_token(), refresh1);
    assert_eq!(stored_session(&app, &sid).await.generation, 1);

    // And the current token still rotates normally.
    let next = rotate_ok(&app, &refresh1).await;
    let refresh2 = next.refresh_token();
    assert_ne!(refresh2, refresh1);
    assert_eq!(stored_session(&app, &sid).await.generation, 2);
    assert!(
        !app.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned()),
        "the grace path is not reuse"
    );
}

#[tokio::test]
async fn the_grace_window_is_less_than_refresh_reuse_grace_seconds() {
    let app = test_app!();
    let (_, refresh0, _) = ann_signed_in(&app).await;
    rotate_ok(&app, &refresh0).await;

    app.advance(9);
    rotate_ok(&app, &refresh0).await;

    app.advance(1); // exactly REFRESH_REUSE_GRACE (10 s) after the rotation
    let response = app.refresh(&refresh0).await;
    assert_refused(&response, "refresh_token_reused");
}

// ---------------------------------------------------------------------------
// Rule 3: reuse revokes the session.

#[tokio::test]
async fn the_previous_token_after_the_grace_window_is_reuse_and_kills_the_whole_session() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;
    let refresh1 = rotate_ok(&app, &refresh0).await.refresh_token();

    app.advance(11);
    let reused = app.refresh(&refresh0).await;
    assert_refused(&reused, "refresh_token_reused");
    assert!(
        app.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned()),
        "reuse is an audit event: {:?}",
        app.event_kinds().await
    );
    let session = stored_session(&app, &sid).await;
    assert!(session.revoked_at.is_some(), "the session is revoked");

    // The legitimate holder's newest token dies with it.
    let newest = app.refresh(&refresh1).await;
    assert_refused(&newest, "invalid_refresh_token");
}

#[tokio::test]
async fn a_token_two_generations_old_is_reuse_even_inside_the_grace_window() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;
    let refresh1 = rotate_ok(&app, &refresh0).await.refresh_token();
    let refresh2 = rotate_ok(&app, &refresh1).await.refresh_token();

    app.advance(1);
    let reused = app.refresh(&refresh0).await;
    assert_refused(&reused, "refresh_token_reused");
    assert!(
        app.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned())
    );
    assert!(stored_session(&app, &sid).await.revoked_at.is_some());

    let newest = app.refresh(&refresh2).await;
    assert_refused(&newest, "invalid_refresh_token");
}

#[tokio::test]
async fn an_old_token_past_its_own_expiry_is_still_reuse_while_the_session_lives() {
    let app = test_app!(&[("JWT_REFRESH_EXPIRATION", "60")]);
    let (_, stale, sid) = ann_signed_in(&app).await;
    // The holder keeps the session alive well past the first token's expiry.
    let mut current = stale.clone();
    for _ in 0..3 {
        app.advance(50);
        current = rotate_ok(&app, &current).await.refresh_token();
    }

    let reused = app.refresh(&stale).await;
    assert_refused(&reused, "refresh_token_reused");
    assert!(stored_session(&app, &sid).await.revoked_at.is_some());
    assert_refused(&app.refresh(&current).await, "invalid_refresh_token");
}

// ---------------------------------------------------------------------------
// Rule 4: concurrency, over real sockets.

/// `POST /token` with `refresh` as the cookie over a real socket: the status,
/// the refresh cookie the answer sets (empty when it clears it), and the body.
async fn post_token(
    client: &reqwest::Client,
    url: &str,
    refresh: &str,
) -> (u16, Option<String>, String) {
    let response = client
        .post(url)
        .header("cookie", format!("{COOKIE_NAME}={refresh}"))
        .send()
        .await
        .expect("request reaches the server");
    let status = response.status().as_u16();
    let token = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_owned());
    (status, token, response.text().await.expect("body"))
}

/// Many sessions rotating at the same instants land in shared commits on
/// SQLite (group commit) and in concurrent transactions on PostgreSQL; each
/// must still advance its own chain exactly once per round, and a duplicate
/// of a cookie sent alongside it must get the same answer, not a reuse alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_sessions_rotating_at_once_each_advance_their_own_chain() {
    const SESSIONS: usize = 24;
    const ROUNDS: i64 = 4;
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let mut chains = Vec::new();
    for _ in 0..SESSIONS {
        let login = app.login("ann", PASSWORD).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text());
        let sid = session_id(&app, &login.access_token()).await;
        chains.push((sid, login.refresh_token()));
    }

    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/token");
    for _ in 0..ROUNDS {
        // Every session once, and every other one twice (the same cookie).
        let sends: Vec<usize> = (0..SESSIONS).chain((0..SESSIONS).step_by(2)).collect();
        let barrier = Arc::new(tokio::sync::Barrier::new(sends.len()));
        let mut calls = tokio::task::JoinSet::new();
        for i in sends {
            let (client, url, barrier) = (client.clone(), url.clone(), barrier.clone());
            let refresh = chains[i].1.clone();
            calls.spawn(async move {
                barrier.wait().await;
                let (status, token, body) = post_token(&client, &url, &refresh).await;
                (i, status, token, body)
            });
        }
        let mut next: Vec<Option<String>> = vec![None; SESSIONS];
        while let Some(joined) = calls.join_next().await {
            let (i, status, token, body) = joined.expect("task");
            assert_eq!(status, 200, "session {i}: {body}");
            let token = token.expect("a refresh cookie");
            assert!(!token.is_empty(), "a set cookie, not a clearing one");
            if let Some(seen) = &next[i] {
                assert_eq!(*seen, token, "both copies of session {i} got the same cookie");
            }
            next[i] = Some(token);
        }
        for (chain, token) in chains.iter_mut().zip(next) {
            chain.1 = token.expect("every session answered");
        }
    }
    server.stop().await;

    for (sid, _) in &chains {
        let session = stored_session(&app, sid).await;
        assert_eq!(session.generation, ROUNDS, "one rotation per round for {sid}");
        assert_eq!(session.revoked_at, None);
    }
    assert!(
        !app.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned())
    );
    // The last cookies are the current ones.
    for (_, token) in &chains {
        rotate_ok(&app, token).await;
    }
}


#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_two_concurrent_refreshes_with_one_cookie_leave_exactly_one_live_chain() {
    const CALLS: usize = 32;
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;

    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/token");
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let (client, url, barrier) = (client.clone(), url.clone(), barrier.clone());
        let refresh = refresh0.clone();
        calls.spawn(async move {
            barrier.wait().await;
            post_token(&client, &url, &refresh).await
        });
    }

    let mut refresh_tokens = Vec::new();
    let mut access_tokens = Vec::new();
    while let Some(joined) = calls.join_next().await {
        let (status, token, body) = joined.expect("task");
        assert_eq!(status, 200, "every concurrent caller succeeds: {body}");
        let token = token.expect("a refresh cookie");
        assert!(!token.is_empty(), "a set cookie, not a clearing one");
        refresh_tokens.push(token);
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
        access_tokens.push(json["access_token"].as_str().expect("access").to_owned());
    }
    server.stop().await;

    assert_eq!(refresh_tokens.len(), CALLS);
    let first = refresh_tokens[0].clone();
    assert_ne!(first, refresh0);
    assert!(
        refresh_tokens.iter().all(|t| *t == first),
        "all callers got the same refresh token: one chain, not several"
    );
    let session = stored_session(&app, &sid).await;
    assert_eq!(session.generation, 1, "exactly one rotation happened");
    assert_eq!(session.revoked_at, None);
    assert!(
        !app.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned())
    );
    for access in &access_tokens {
        let protected = app.get_with_bearer("/protected", access).await;
        assert_eq!(protected.status, StatusCode::OK);
    }

    // The one live chain continues.
    let next = rotate_ok(&app, &first).await;
    assert_ne!(next.refresh_token(), first);
    assert_eq!(stored_session(&app, &sid).await.generation, 2);
}

// ---------------------------------------------------------------------------
// A runaway refresh loop (`MAX_REFRESHES_PER_MINUTE`).

#[tokio::test]
async fn a_session_refreshing_past_its_limit_is_told_when_to_come_back() {
    let app = test_app!();
    let (_, mut refresh, sid) = ann_signed_in(&app).await;
    // The default, 60 a minute: a minute's worth at once, then one a second.
    for _ in 0..60 {
        refresh = rotate_ok(&app, &refresh).await.refresh_token();
    }
    let refused = app.refresh(&refresh).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS, "{}", refused.text());
    assert_eq!(refused.error_code(), "too_many_attempts");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.refresh_cookie().is_none(), "the cookie is kept");
    assert_eq!(stored_session(&app, &sid).await.generation, 60);

    // Other sessions are not held back.
    let other = app.login("ann", PASSWORD).await.refresh_token();
    rotate_ok(&app, &other).await;

    // A second later the same cookie goes on, no reuse detected.
    app.advance(1);
    rotate_ok(&app, &refresh).await;
    assert_eq!(stored_session(&app, &sid).await.generation, 61);
    assert!(!app.event_kinds().await.contains(&"refresh_token_reused".to_owned()));
}

#[tokio::test]
async fn refreshes_sent_at_the_same_instant_stop_at_the_limit() {
    const CALLS: usize = 40;
    let app = test_app!(&[("MAX_REFRESHES_PER_MINUTE", "10")]);
    let (_, refresh, _) = ann_signed_in(&app).await;
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/token");
    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..CALLS {
        let (client, url, barrier, refresh) =
            (client.clone(), url.clone(), barrier.clone(), refresh.clone());
        calls.spawn(async move {
            barrier.wait().await;
            post_token(&client, &url, &refresh).await.0
        });
    }
    let mut statuses = Vec::new();
    while let Some(joined) = calls.join_next().await {
        statuses.push(joined.expect("task"));
    }
    server.stop().await;
    // One rotates, nine get the grace answer, the rest wait.
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), CALLS - 10, "{statuses:?}");
}

// ---------------------------------------------------------------------------
// Lifetimes.

#[tokio::test]
async fn an_unused_session_expires_after_jwt_refresh_expiration() {
    let app = test_app!(&[
        ("JWT_REFRESH_EXPIRATION", "60"),
        ("REFRESH_REUSE_GRACE", "5"),
    ]);
    let login = app.signed_in_ann().await;
    assert_eq!(login.max_age(), 60);
    let refresh0 = login.refresh_token();

    app.advance(60);
    let response = app.refresh(&refresh0).await;
    assert_refused(&response, "invalid_refresh_token");
}

#[tokio::test]
async fn rotating_before_the_idle_timeout_slides_it_forward() {
    let app = test_app!(&[
        ("JWT_REFRESH_EXPIRATION", "60"),
        ("REFRESH_REUSE_GRACE", "5"),
    ]);
    let refresh0 = app.signed_in_ann().await.refresh_token();

    app.advance(30);
    let rotated = rotate_ok(&app, &refresh0).await;
    assert_eq!(
        rotated.max_age(),
        60,
        "Max-Age back to the full idle timeout"
    );
    let refresh1 = rotated.refresh_token();

    // t+89: past the login cookie's end (t+60), inside the slid one (t+90).
    app.advance(59);
    let again = rotate_ok(&app, &refresh1).await;
    assert_eq!(again.max_age(), 60);
    let refresh2 = again.refresh_token();

    app.advance(60);
    let response = app.refresh(&refresh2).await;
    assert_refused(&response, "invalid_refresh_token");
}

#[tokio::test]
async fn rotation_never_extends_the_absolute_session_lifetime() {
    let app = test_app!(&[
        ("SESSION_MAX_LIFETIME", "100"),
        ("JWT_REFRESH_EXPIRATION", "60"),
    ]);
    let login = app.signed_in_ann().await;
    assert_eq!(login.max_age(), 60);

    app.advance(50);
    let at_50 = rotate_ok(&app, &login.refresh_token()).await;
    assert_eq!(at_50.max_age(), 50, "capped at the absolute end, not 60");

    app.advance(40);
    let at_90 = rotate_ok(&app, &at_50.refresh_token()).await;
    assert_eq!(
        at_90.max_age(),
        10,
        "Max-Age shrinks toward the absolute end"
    );

    app.advance(10);
    let at_100 = app.refresh(&at_90.refresh_token()).await;
    assert_refused(&at_100, "invalid_refresh_token");
}

#[tokio::test]
async fn the_login_cookie_never_outlives_the_absolute_session_lifetime() {
    let app = test_app!(&[
        ("SESSION_MAX_LIFETIME", "30"),
        ("JWT_REFRESH_EXPIRATION", "60"),
    ]);
    let login = app.signed_in_ann().await;
    assert_eq!(login.max_age(), 30);

    app.advance(30);
    let response = app.refresh(&login.refresh_token()).await;
    assert_refused(&response, "invalid_refresh_token");
}

// ---------------------------------------------------------------------------
// Logout, revocation, methods.

#[tokio::test]
async fn after_logout_the_old_cookie_no_longer_refreshes() {
    let app = test_app!();
    let (_, refresh0, _) = ann_signed_in(&app).await;

    let logout = app.logout(&refresh0).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text());
    logout.assert_cookie_cleared();

    let response = app.refresh(&refresh0).await;
    assert_refused(&response, "invalid_refresh_token");
}

#[tokio::test]
async fn get_and_head_on_token_are_method_not_allowed_and_rotate_nothing() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;

    for method in [Method::GET, Method::HEAD] {
        let response = app
            .send(
                Request::builder()
                    .method(method.clone())
                    .uri("/token")
                    .header(header::COOKIE, format!("{COOKIE_NAME}={refresh0}"))
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        assert_eq!(
            response.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}: {}",
            response.text()
        );
        let allow = response.header("allow").unwrap_or_default();
        assert!(allow.contains("POST"), "{method}: Allow = {allow:?}");
        assert!(
            response.refresh_cookie().is_none(),
            "{method} sets no cookie"
        );
        response.assert_no_store();
        if method == Method::GET {
            assert_eq!(response.error_code(), "method_not_allowed");
        }
    }

    let session = stored_session(&app, &sid).await;
    assert_eq!(session.generation, 0, "GET/HEAD changed nothing");
    rotate_ok(&app, &refresh0).await;
}

#[tokio::test]
async fn revoking_every_session_kills_the_refresh_cookie() {
    let app = test_app!();
    let (access, refresh0, _) = ann_signed_in(&app).await;

    let revoked = app.delete_with_bearer("/sessions", &access).await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());

    let response = app.refresh(&refresh0).await;
    assert_refused(&response, "invalid_refresh_token");
}

#[tokio::test]
async fn revoking_one_session_kills_that_sessions_cookie_only() {
    let app = test_app!();
    let (access, refresh_a, sid_a) = ann_signed_in(&app).await;
    let other = app.login("ann", PASSWORD).await;
    assert_eq!(other.status, StatusCode::OK);
    let refresh_b = other.refresh_token();

    let revoked = app
        .delete_with_bearer(&format!("/sessions/{sid_a}"), &access)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());

    assert_refused(&app.refresh(&refresh_a).await, "invalid_refresh_token");
    rotate_ok(&app, &refresh_b).await;
}

// ---------------------------------------------------------------------------
// What the cookie header may carry.

#[tokio::test]
async fn a_request_without_the_refresh_cookie_is_missing_refresh_token() {
    let app = test_app!();
    app.signed_in_ann().await;

    let bare = app
        .send(
            Request::post("/token")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    let unrelated = app
        .send(post_token_with_cookie_header(
            "theme=dark; refresh_token_x=1",
        ))
        .await;
    for response in [bare, unrelated] {
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text()
        );
        assert_eq!(response.error_code(), "missing_refresh_token");
        response.assert_no_store();
    }
}

#[tokio::test]
async fn two_refresh_cookies_at_once_are_refused_without_a_server_error() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;

    let planted = app
        .send(post_token_with_cookie_header(&format!(
            "{COOKIE_NAME}=a; {COOKIE_NAME}=b"
        )))
        .await;
    assert_eq!(
        planted.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        planted.text()
    );
    assert_eq!(planted.error_code(), "invalid_refresh_token");
    planted.assert_cookie_cleared();

    // A genuine cookie next to a planted one: neither is trusted.
    for header_value in [
        format!("{COOKIE_NAME}={refresh0}; {COOKIE_NAME}=planted"),
        format!("{COOKIE_NAME}=planted; {COOKIE_NAME}={refresh0}"),
    ] {
        let response = app.send(post_token_with_cookie_header(&header_value)).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "{}",
            response.text()
        );
        assert!(!response.status.is_server_error());
    }
    // Two separate Cookie headers.
    let split = app
        .send(
            Request::post("/token")
                .header(header::COOKIE, format!("{COOKIE_NAME}={refresh0}"))
                .header(header::COOKIE, format!("{COOKIE_NAME}=planted"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(split.status, StatusCode::UNAUTHORIZED, "{}", split.text());

    assert_eq!(
        stored_session(&app, &sid).await.generation,
        0,
        "an ambiguous request rotated nothing"
    );
}

#[tokio::test]
async fn garbage_refresh_cookies_are_invalid_and_cleared() {
    let app = test_app!();
    let (_, refresh0, sid) = ann_signed_in(&app).await;

    let five_kb = "A".repeat(5 * 1024);
    for garbage in ["x", "a.b.c", five_kb.as_str(), "e30.e30.", "...."] {
        let response = app.refresh(garbage).await;
        assert_eq!(
            response.status,
            StatusCode::UNAUTHORIZED,
            "cookie {:.20}…: {}",
            garbage,
            response.text()
        );
        assert_refused(&response, "invalid_refresh_token");
    }

    // Garbage harms nobody: the real session is untouched.
    let session = stored_session(&app, &sid).await;
    assert_eq!(session.generation, 0);
    assert_eq!(session.revoked_at, None);
    rotate_ok(&app, &refresh0).await;
}

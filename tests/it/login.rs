//! `POST /login`, JSON and form.

#![allow(clippy::unwrap_used, clippy::expect_used)]


use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn login_returns_an_access_token_and_sets_the_refresh_cookie() {
    let app = test_app!();
    let response = app.signed_in_ann().await;

    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body.get("refresh_token").is_none(),
        "the refresh token is only ever in the cookie"
    );
    response.assert_no_store();

    let cookie = response.refresh_cookie().expect("refresh cookie");
    assert_eq!(cookie.name(), "__Host-refresh_token");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(response.max_age(), 86_400);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_identical_answers() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let wrong_password = app.login("ann", "not the password").await;
    let unknown_user = app.login("nobody", "not the password").await;

    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(wrong_password.error_code(), "invalid_credentials");
    assert!(wrong_password.refresh_cookie().is_none());
}

// ---------------------------------------------------------------- more of POST /login (JSON)

/// The header and claims of a JWT, decoded without checking anything.
fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut decode = || {
        let part = parts.next().expect("a JWT part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    (decode(), decode())
}

#[tokio::test]
async fn login_answers_in_json() {
    let app = test_app!();
    let response = app.signed_in_ann().await;

    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{:?}",
        response.header("content-type")
    );
    let body = response.json();
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
}

#[tokio::test]
async fn the_access_token_names_the_user_and_session_and_lives_jwt_expiration() {
    let app = test_app!(&[("JWT_EXPIRATION", "60")]);
    let ann = app.add_user("ann", PASSWORD).await;
    let response = app.login("ann", PASSWORD).await;
    assert_eq!(response.json()["expires_in"], 60);

    let (header, claims) = jwt_parts(&response.access_token());

    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "HS256");
    assert_eq!(claims["sub"], ann.id.to_string());
    assert_eq!(claims["username"], "ann");
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iat"], START);
    assert_eq!(claims["exp"], START + 60);
    for claim in ["iss", "aud", "sid", "jti"] {
        assert!(
            claims[claim].as_str().is_some_and(|v| !v.is_empty()),
            "{claim} in {claims}"
        );
    }
    let me = app
        .get_with_bearer("/me", &response.access_token())
        .await
        .json();
    assert_eq!(claims["sid"], me["session_id"]);
}

#[tokio::test]
async fn the_refresh_token_is_not_an_access_token_and_holds_no_password() {
    let app = test_app!();
    let response = app.signed_in_ann().await;

    let (header, claims) = jwt_parts(&response.refresh_token());

    assert_ne!(header["typ"], "at+jwt");
    assert!(header["typ"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(!claims.to_string().contains(PASSWORD));
}

#[tokio::test]
async fn each_login_starts_a_new_session() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let one = app.login("ann", PASSWORD).await;
    let two = app.login("ann", PASSWORD).await;

    let sid = |r: &TestResponse| jwt_parts(&r.access_token()).1["sid"].clone();
    assert_ne!(sid(&one), sid(&two));
    assert_ne!(one.refresh_token(), two.refresh_token());
    // Both stay usable.
    assert_eq!(
        app.refresh(&one.refresh_token()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&two.refresh_token()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_username_at_login_ignores_case_and_surrounding_spaces() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    for username in ["ANN", "Ann", "  ann  "] {
        let response = app.login(username, PASSWORD).await;
        assert_eq!(response.status, StatusCode::OK, "{username:?}");
        assert_eq!(
            jwt_parts(&response.access_token()).1["username"],
            "ann",
            "{username:?}"
        );
    }
}

#[tokio::test]
async fn the_password_is_compared_exactly() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    for wrong in [
        PASSWORD.to_uppercase(),
        format!("{PASSWORD} "),
        format!(" {PASSWORD}"),
        PASSWORD[..PASSWORD.len() - 1].to_owned(),
    ] {
        let response = app.login("ann", &wrong).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    }
}

#[tokio::test]
async fn the_cookie_never_outlives_the_session_maximum() {
    let app = test_app!(&[("SESSION_MAX_LIFETIME", "3600")]);

    let response = app.signed_in_ann().await;

    assert_eq!(response.max_age(), 3600);
}

#[tokio::test]
async fn the_cookie_lives_jwt_refresh_expiration() {
    let app = test_app!(&[("JWT_REFRESH_EXPIRATION", "7200")]);

    let response = app.signed_in_ann().await;

    assert_eq!(response.max_age(), 7200);
}

#[tokio::test]
async fn without_secure_cookies_the_cookie_drops_the_host_prefix_and_secure() {
    let app = test_app!(&[("COOKIE_SECURE", "false")]);
    let response = app.signed_in_ann().await;

    let cookie = response.refresh_cookie().expect("refresh cookie");
    assert_eq!(cookie.name(), "refresh_token");
    assert_ne!(cookie.secure(), Some(true));
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.path(), Some("/"));

    // And that cookie is the one read back.
    let refreshed = app
        .send(
            Request::post("/token")
                .header(header::COOKIE, format!("refresh_token={}", cookie.value()))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
    assert_eq!(
        refreshed.refresh_cookie().map(|c| c.name().to_owned()),
        Some("refresh_token".to_owned())
    );
}

#[tokio::test]
async fn samesite_follows_the_configuration() {
    for (setting, expected) in [
        ("lax", cookie::SameSite::Lax),
        ("none", cookie::SameSite::None),
        ("strict", cookie::SameSite::Strict),
    ] {
        let app = test_app!(&[("COOKIE_SAMESITE", setting)]);
        let response = app.signed_in_ann().await;
        let cookie = response.refresh_cookie().expect("refresh cookie");
        assert_eq!(cookie.same_site(), Some(expected), "{setting}");
        assert_eq!(cookie.secure(), Some(true), "{setting}");
    }
}

#[tokio::test]
async fn logins_are_recorded_in_the_audit_trail() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    app.login("ann", "not the password").await;
    app.login("nobody", "not the password").await;
    app.login("ann", PASSWORD).await;

    let events = audit_events(&*app.store).await;
    let summary: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.username.as_deref()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("login_failed", Some("ann")),
            ("login_failed", Some("nobody")),
            ("login_succeeded", Some("ann")),
        ]
    );
    for event in &events {
        assert!(event.request_id.is_some(), "{event:?}");
        let text = format!("{event:?}");
        assert!(!text.contains("not the password"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
}

/// Fails logins for `username` until one is refused with 429; returns it.
async fn fail_until_throttled(app: &TestApp, username: &str, limit: usize) -> Option<TestResponse> {
    for _ in 0..limit {
        let response = app.login(username, "not the password").await;
        match response.status {
            StatusCode::TOO_MANY_REQUESTS => return Some(response),
            StatusCode::UNAUTHORIZED => {}
            other => panic!("unexpected {other}: {}", response.text()),
        }
    }
    None
}

#[tokio::test]
async fn repeated_failures_are_throttled_with_retry_after_and_the_wait_ends() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let throttled = fail_until_throttled(&app, "ann", 200)
        .await
        .expect("throttled at some point");

    assert_eq!(throttled.error_code(), "too_many_attempts");
    throttled.assert_no_store();
    let retry_after: i64 = throttled
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1, "{retry_after}");

    // While it lasts, even the right password gets the same refusal.
    let during = app.login("ann", PASSWORD).await;
    assert_eq!(during.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(during.refresh_cookie().is_none());
    assert!(
        app.event_kinds()
            .await
            .contains(&"login_throttled".to_owned())
    );

    app.advance(retry_after);
    let after = app.login("ann", PASSWORD).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.text());
}

#[tokio::test]
async fn unknown_usernames_are_throttled_like_known_ones() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let known = fail_until_throttled(&app, "ann", 200).await;
    let unknown = fail_until_throttled(&app, "nobody", 200).await;

    let known = known.expect("known user throttled");
    let unknown = unknown.expect("unknown user throttled");
    assert_eq!(known.error_code(), unknown.error_code());
}

#[tokio::test]
async fn one_address_guessing_one_account_is_throttled_after_a_few_failures() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let throttled = fail_until_throttled(&app, "ann", 10).await;

    assert!(throttled.is_some(), "no 429 within 10 failures");
}

#[tokio::test]
async fn over_a_real_socket_one_address_is_throttled_after_a_few_failures() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let server = TestServer::start(app.auth.clone()).await;
    let http = reqwest::Client::new();

    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = http
            .post(server.url("/login"))
            .json(&json!({ "username": "ann", "password": "not the password" }))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    server.stop().await;

    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().take_while(|s| **s == 401).count() >= 5,
        "a few honest mistakes are allowed: {statuses:?}"
    );
}

#[tokio::test]
async fn a_success_forgives_earlier_failures() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    for _ in 0..4 {
        assert_eq!(
            app.login("ann", "not the password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);
    for _ in 0..4 {
        assert_eq!(
            app.login("ann", "not the password").await.status,
            StatusCode::UNAUTHORIZED,
            "the count started again"
        );
    }
}

#[tokio::test]
async fn an_unknown_user_costs_as_much_bcrypt_work_as_a_wrong_password() {
    // Counted, not timed: one bcrypt verification of the configured cost
    // either way (a dummy hash for unknown users), so the answers take the
    // same time without a test that compares clocks on a noisy machine.
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let hasher = app.auth.hasher();
    let mut work = Vec::new();
    for username in ["ann", "nobody", "ann", "nobody-else"] {
        let before = hasher.verifications();
        let response = app.login(username, "not the password").await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED);
        work.push(hasher.verifications() - before);
    }
    assert_eq!(work, [1, 1, 1, 1], "bcrypt verifications per failed login");
}

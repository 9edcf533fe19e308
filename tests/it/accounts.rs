//! Account control: changing the password, and the operator's CLI (disable,
//! enable, sessions, audit); sign-up throttling; header limits; JWT headers
//! that point elsewhere for keys.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_every_other() {
    let app = test_app!();
    let here = app.signed_in_ann().await;
    let elsewhere = app.login("ann", PASSWORD).await.refresh_token();

    let changed = app.change_password(&here.access_token(), PASSWORD, NEW_PASSWORD).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    changed.assert_no_store();

    assert_eq!(
        app.refresh(&here.refresh_token()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.refresh(&elsewhere).await.error_code(),
        "invalid_refresh_token"
    );
    assert_eq!(
        app.login("ann", PASSWORD).await.error_code(),
        "invalid_credentials"
    );
    assert_eq!(app.login("ann", NEW_PASSWORD).await.status, StatusCode::OK);
    assert!(
        app.event_kinds()
            .await
            .contains(&"password_changed".to_owned())
    );
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing_and_is_throttled() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();

    let refused = app.change_password(&access, "not my password", NEW_PASSWORD).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_code(), "wrong_current_password");
    assert_eq!(
        app.login("ann", PASSWORD).await.status,
        StatusCode::OK,
        "unchanged"
    );

    let mut last = refused.status;
    for _ in 0..6 {
        last = app.change_password(&access, "still not it", NEW_PASSWORD)
            .await
            .status;
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "a stolen access token cannot guess on"
    );
}

#[tokio::test]
async fn a_weak_or_missing_new_password_is_refused() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let weak = app.change_password(&access, PASSWORD, "short").await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak.error_code(), "weak_password");
    let long = "x".repeat(257);
    assert_eq!(
        app.change_password(&access, PASSWORD, &long)
            .await
            .error_code(),
        "weak_password"
    );
    assert_eq!(
        app.login("ann", PASSWORD).await.status,
        StatusCode::OK,
        "unchanged"
    );

    let unauthenticated = app
        .send(json_post(
            "/password",
            &json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        ))
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    let malformed = app
        .send(
            Request::post("/password")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{\"current_password\":"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.error_code(), "invalid_request");
}

#[tokio::test]
async fn a_disabled_user_is_signed_out_everywhere_and_refused_like_a_wrong_password() {
    let app = test_app!();
    let session = app.signed_in_ann().await.refresh_token();

    let out = stdout(&app.cli(&["user", "disable", "ann"], ""));
    assert!(out.contains("1 sessions revoked"), "{out}");
    assert_eq!(
        app.refresh(&session).await.error_code(),
        "invalid_refresh_token"
    );
    let disabled = app.login("ann", PASSWORD).await;
    let unknown = app.login("nobody", PASSWORD).await;
    assert_eq!(disabled.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        disabled.body, unknown.body,
        "no hint that the account exists"
    );

    stdout(&app.cli(&["user", "enable", "ann"], ""));
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);
    let kinds = app.event_kinds().await;
    assert!(
        kinds.contains(&"user_disabled".to_owned()) && kinds.contains(&"user_enabled".to_owned())
    );
}

#[tokio::test]
async fn the_cli_lists_and_revokes_a_users_sessions() {
    let app = test_app!();
    // The CLI runs on the real clock: bring the app's clock to it.
    app.advance(latchkey::clock::Clock::now(&latchkey::clock::SystemClock) - START);
    let first = app.signed_in_ann().await;
    let second = app.login("ann", PASSWORD).await.refresh_token();
    let sid = app
        .get_with_bearer("/me", &first.access_token())
        .await
        .json()["session_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let listed = stdout(&app.cli(&["user", "sessions", "ann"], ""));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.contains(&sid), "{listed}");

    stdout(&app.cli(&["user", "revoke-sessions", "ann", "--session", &sid], ""));
    assert_eq!(
        app.refresh(&first.refresh_token()).await.error_code(),
        "invalid_refresh_token"
    );
    assert_eq!(
        app.refresh(&second).await.status,
        StatusCode::OK,
        "only that one"
    );

    stdout(&app.cli(&["user", "revoke-sessions", "ann"], ""));
    assert_eq!(stdout(&app.cli(&["user", "sessions", "ann"], "")), "");
    let missing = app.cli(&["user", "disable", "nobody"], "");
    assert!(!missing.status.success());
}

#[tokio::test]
async fn the_cli_prints_the_audit_trail_without_secrets() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    assert_eq!(
        app.login("ann", "wrong password").await.status,
        StatusCode::UNAUTHORIZED
    );
    app.add_user("bob", PASSWORD).await;
    assert_eq!(app.login("bob", PASSWORD).await.status, StatusCode::OK);

    // The test clock is in 2026-01-01; ask for everything since then.
    let all = stdout(&app.cli(&["audit", "--since", "2025-12-31T00:00:00Z"], ""));
    assert!(
        all.contains("login_succeeded") && all.contains("login_failed"),
        "{all}"
    );
    assert!(all.contains("user=bob"), "{all}");
    let anns = stdout(&app.cli(
        &["audit", "--user", "ann", "--since", "2025-12-31T00:00:00Z"],
        "",
    ));
    assert!(
        anns.contains("user=ann") && !anns.contains("user=bob"),
        "{anns}"
    );
    for secret in [
        PASSWORD.to_owned(),
        login.access_token(),
        login.refresh_token(),
    ] {
        assert!(!all.contains(&secret));
    }
    let bad = app.cli(&["audit", "--since", "last tuesday"], "");
    assert!(!bad.status.success());
}

#[tokio::test]
async fn a_username_that_forges_an_audit_line_is_printed_as_one_escaped_line() {
    let app = test_app!();
    let forged = "x\n2026-01-01T00:00:00Z  login_succeeded user=admin\u{202e}";
    assert_eq!(
        app.login(forged, "wrong password").await.status,
        StatusCode::UNAUTHORIZED
    );

    let all = stdout(&app.cli(&["audit", "--since", "2025-12-31T00:00:00Z"], ""));

    assert_eq!(all.lines().count(), 1, "{all}");
    let line = all.trim_end();
    assert!(line.contains("login_failed"), "{line}");
    // The newline, a control character, was replaced (U+FFFD) before it was
    // stored; what is left is escaped as it is printed.
    assert!(
        line.contains(
            "user=x\u{fffd}2026-01-01t00:00:00z\\u{20}\\u{20}login_succeeded\\u{20}user=admin\\u{202e}"
        ),
        "{line}"
    );
    assert!(!line.contains('\u{202e}'), "{line}");
}

#[tokio::test]
async fn a_user_agent_with_a_tab_is_listed_escaped() {
    let app = test_app!();
    // The CLI lists live sessions on the real clock.
    app.advance(latchkey::clock::Clock::now(&latchkey::clock::SystemClock) - START);
    app.add_user("ann", PASSWORD).await;
    let signed_in = app
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "Browser/1.0\tforged column")
                .body(Body::from(
                    json!({ "username": "ann", "password": PASSWORD }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());

    let listed = stdout(&app.cli(&["user", "sessions", "ann"], ""));

    assert!(listed.contains(r"Browser/1.0\tforged column"), "{listed}");
    assert!(!listed.contains('\t'), "{listed}");
}

#[tokio::test]
async fn sign_ups_from_one_address_are_throttled() {
    let app = test_app!(&[("THROTTLE_REGISTER_ADDRESS", "3")]);
    for i in 0..3 {
        let created = app
            .send(json_post(
                "/register",
                &json!({ "username": format!("user{i}"), "password": PASSWORD }),
            ))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    }
    let throttled = app
        .send(json_post(
            "/register",
            &json!({ "username": "user9", "password": PASSWORD }),
        ))
        .await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.error_code(), "too_many_attempts");
    assert!(throttled.header("retry-after").is_some());
    assert!(app.store.user_by_name("user9").await.unwrap().is_none());
}

#[tokio::test]
async fn oversized_headers_get_431_in_the_json_error_shape() {
    let app = test_app!();
    let huge_cookie = app
        .send(
            Request::post("/token")
                .header(
                    header::COOKIE,
                    format!("__Host-refresh_token={}", "a".repeat(20_000)),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        huge_cookie.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(huge_cookie.error_code(), "headers_too_large");

    let mut many = Request::get("/healthz");
    for i in 0..10 {
        many = many.header(format!("x-filler-{i}"), "b".repeat(8_000));
    }
    let many = app.send(many.body(Body::empty()).unwrap()).await;
    assert_eq!(many.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

/// A JWT with the given header and payload, signed with HS256 under `key`.
fn sign(header: &serde_json::Value, claims: &serde_json::Value, key: &[u8]) -> String {
    let header: jsonwebtoken::Header = serde_json::from_value(header.clone()).unwrap();
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

#[tokio::test]
async fn key_pointing_jwt_headers_are_refused_and_never_fetched() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let payload = access.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let attacker_key = b"the attacker's own key, 32 bytes or more";
    let ours = app.vars["JWT_SECRET"].as_bytes();

    // A listener that would notice any fetch of the advertised key set.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let jku = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let jwk = json!({ "kty": "oct", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(attacker_key) });
    for header in [
        json!({ "alg": "HS256", "typ": "at+jwt", "jku": jku }),
        json!({ "alg": "HS256", "typ": "at+jwt", "jwk": jwk }),
        json!({ "alg": "HS256", "typ": "at+jwt", "kid": "../../attacker" }),
    ] {
        let forged = sign(&header, &claims, attacker_key);
        let refused = app.get_with_bearer("/protected", &forged).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{header}");
        assert_eq!(refused.error_code(), "invalid_token");
        // Signed with our own key, a token that offers a key of its own or
        // names one latchkey does not have is refused all the same (RFC 8725
        // §3.10; README, "Signing keys").
        let genuine = sign(&header, &claims, ours);
        assert_eq!(
            app.get_with_bearer("/protected", &genuine).await.status,
            StatusCode::UNAUTHORIZED,
            "{header}"
        );
    }
    assert!(
        listener.accept().is_err(),
        "nothing fetched the advertised key set"
    );
}

//! Session controls (README, "How sessions work"): `auth_time` and step-up
//! (`POST /reauthenticate`, RFC 9470's challenge), deleting an account, "Keep
//! me signed in", and the live-session check of account actions.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";
/// `REAUTH_MAX_AGE`'s default.
const REAUTH_MAX_AGE: i64 = 600;
/// `SESSION_IDLE_TIMEOUT_NO_REMEMBER`'s default.
const NOT_REMEMBERED_IDLE: i64 = 12 * 3600;
/// The exact step-up challenge (RFC 9470 §3) at the default maximum age.
const STEP_UP_CHALLENGE: &str = r#"Bearer realm="latchkey", error="insufficient_user_authentication", error_description="this action needs your password again: reauthenticate and retry", max_age=600"#;

/// The claims of a JWT, read without checking it (the tests check the
/// tokens elsewhere; here only what they say matters).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

fn auth_time(token: &str) -> i64 {
    claims(token)["auth_time"].as_i64().expect("auth_time")
}

fn reauthenticate_request(access: &str, password: &str) -> Request<Body> {
    Request::post("/reauthenticate")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(json!({ "password": password }).to_string()))
        .unwrap()
}

async fn reauthenticate(app: &TestApp, access: &str, password: &str) -> TestResponse {
    app.send(reauthenticate_request(access, password)).await
}

async fn login_remembering(app: &TestApp, remember: bool) -> TestResponse {
    app.send(json_post(
        "/login",
        &json!({ "username": "ann", "password": PASSWORD, "remember": remember }),
    ))
    .await
}

async fn session_auth_time(app: &TestApp, access: &str) -> i64 {
    let sid = claims(access)["sid"].as_str().unwrap().to_owned();
    app.store.session(&sid).await.unwrap().unwrap().auth_time
}

// ---------------------------------------------------------------------------
// auth_time and step-up

#[tokio::test]
async fn access_tokens_carry_the_logins_auth_time_and_amr_across_every_rotation() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    assert_eq!(auth_time(&login.access_token()), START);
    // RFC 8176: signed in with a password.
    assert_eq!(claims(&login.access_token())["amr"], serde_json::json!(["pwd"]));

    let mut refresh = login.refresh_token();
    for step in 1..=3 {
        app.advance(500);
        let rotated = app.refresh(&refresh).await;
        assert_eq!(rotated.status, StatusCode::OK);
        let access = rotated.access_token();
        assert_eq!(claims(&access)["iat"], START + 500 * step, "a new token…");
        assert_eq!(auth_time(&access), START, "…with the login's auth_time");
        assert_eq!(claims(&access)["amr"], serde_json::json!(["pwd"]), "…and amr");
        refresh = rotated.refresh_token();
    }
}

#[tokio::test]
async fn reauthenticating_makes_auth_time_now_for_the_session_and_its_later_tokens() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    app.advance(800);

    let fresh = reauthenticate(&app, &login.access_token(), PASSWORD).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text());
    fresh.assert_no_store();
    assert!(fresh.refresh_cookie().is_none(), "the refresh cookie stays");
    let access = fresh.access_token();
    assert_eq!(auth_time(&access), START + 800);
    assert_eq!(claims(&access)["sid"], claims(&login.access_token())["sid"]);
    assert_eq!(session_auth_time(&app, &access).await, START + 800);

    app.advance(100);
    let rotated = app.refresh(&login.refresh_token()).await;
    assert_eq!(auth_time(&rotated.access_token()), START + 800);
    assert!(
        app.event_kinds()
            .await
            .contains(&"reauthenticated".to_owned())
    );
}

#[tokio::test]
async fn a_wrong_password_at_reauthentication_is_refused_and_counted_like_a_login() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    app.advance(800);

    let refused = reauthenticate(&app, &access, "not my password").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "invalid_credentials");
    assert_eq!(session_auth_time(&app, &access).await, START, "unchanged");

    // THROTTLE_LOGIN_PAIR (5) counts this one; four more, then the back-off.
    for _ in 0..4 {
        let refused = reauthenticate(&app, &access, "still not it").await;
        assert_eq!(refused.error_code(), "invalid_credentials");
    }
    let throttled = reauthenticate(&app, &access, PASSWORD).await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.error_code(), "too_many_attempts");
    assert!(throttled.header("retry-after").is_some());
    assert_eq!(
        app.login("ann", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS,
        "the same counters as a login from this address"
    );
    let kinds = app.event_kinds().await;
    assert!(kinds.contains(&"reauthentication_failed".to_owned()));

    let missing = app
        .send(
            Request::post("/reauthenticate")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert_eq!(missing.error_code(), "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_wrong_reauthentications_at_once_verify_only_the_pair_allowance() {
    let app = test_app!(&[("TRUSTED_PROXIES", "127.0.0.1")]);
    let access = app.signed_in_ann().await.access_token();
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/reauthenticate");
    let before = app.auth.hasher().verifications();

    let mut set = JoinSet::new();
    for _ in 0..40 {
        let (client, url, access) = (client.clone(), url.clone(), access.clone());
        set.spawn(async move {
            let response = client
                .post(url)
                .bearer_auth(access)
                .header("x-forwarded-for", "198.51.100.7")
                .json(&json!({ "password": "wrong guess!" }))
                .send()
                .await
                .expect("request reaches the server");
            response.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.unwrap());
    }

    assert_eq!(
        app.auth.hasher().verifications() - before,
        5,
        "THROTTLE_LOGIN_PAIR"
    );
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 5);
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    server.stop().await;
}

/// A step-up of `here` that has checked the password and is held there
/// while `changer`'s session changes it (straight in the store, as a
/// password change that won the race); its answer once let go, and `here`'s
/// session after.
async fn step_up_across_a_password_change(
    app: &Arc<TestApp>,
    here: &str,
    changer: &str,
) -> (TestResponse, latchkey::store::Session) {
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    let hold = app.auth.hasher().hold();
    let pending = {
        let (app, here) = (app.clone(), here.to_owned());
        tokio::spawn(async move { reauthenticate(&app, &here, PASSWORD).await })
    };
    wait_for_hash_queue(&app.auth, 1).await;
    let new_hash = bcrypt::hash(NEW_PASSWORD, 4).unwrap();
    let changer_sid = claims(changer)["sid"].as_str().unwrap().to_owned();
    app.store
        .change_password(latchkey::store::PasswordChange {
            user_id: ann.id,
            verified_hash: &ann.password_hash,
            new_hash: &new_hash,
            keep_session: Some(&changer_sid),
            now: now(app),
        })
        .await
        .unwrap()
        .expect("the change applies");
    drop(hold);
    let answer = pending.await.unwrap();
    let sid = claims(here)["sid"].as_str().unwrap().to_owned();
    (answer, app.store.session(&sid).await.unwrap().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_that_finishes_after_a_password_change_elsewhere_changes_nothing() {
    let app = Arc::new(test_app!());
    let here = app.signed_in_ann().await.access_token();
    let elsewhere = app.login("ann", PASSWORD).await.access_token();
    app.advance(800);

    // The change from the other session revokes this one.
    let (stepped_up, session) = step_up_across_a_password_change(&app, &here, &elsewhere).await;
    assert_eq!(stepped_up.status, StatusCode::UNAUTHORIZED, "{}", stepped_up.text());
    assert_eq!(stepped_up.error_code(), "invalid_token");
    assert!(session.revoked_at.is_some());
    assert_eq!(session.auth_time, START, "no step-up recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reauthentication_that_finishes_after_its_own_session_changed_the_password_changes_nothing()
{
    let app = Arc::new(test_app!());
    let here = app.signed_in_ann().await.access_token();
    app.advance(800);

    // The session stays live through its own change, so only the hash the
    // step-up verified, now gone, can refuse it.
    let (stepped_up, session) = step_up_across_a_password_change(&app, &here, &here).await;
    assert_eq!(stepped_up.status, StatusCode::UNAUTHORIZED, "{}", stepped_up.text());
    assert_eq!(stepped_up.error_code(), "invalid_credentials");
    assert!(session.is_live(START + 800), "still signed in");
    assert_eq!(session.auth_time, START, "no step-up recorded");
}

#[tokio::test]
async fn an_event_recorded_after_an_accounts_erasure_keeps_the_id_alone() {
    let app = test_app!();
    let user = app.add_user(DOOMED, PASSWORD).await;
    // As a request in flight during the deletion would record it, after.
    app.auth.delete_user(&user).await.unwrap();
    let client = latchkey::ClientInfo {
        ip: Some("198.51.100.7".into()),
        user_agent: None,
        request_id: Some("late-request".into()),
    };
    app.auth
        .record(latchkey::Event::new(latchkey::AuditKind::LoginSucceeded, &client).user(user.id, DOOMED))
        .await;
    let late = audit_events(&*app.store)
        .await
        .into_iter()
        .find(|e| e.kind == "login_succeeded")
        .expect("recorded");
    assert_eq!(late.user_id, Some(user.id));
    assert_eq!((late.username, late.ip, late.request_id), (None, None, None));

    // An event of a user who exists keeps everything.
    let other = app.add_user("ann", PASSWORD).await;
    app.auth
        .record(latchkey::Event::new(latchkey::AuditKind::LoginSucceeded, &client).user(other.id, "ann"))
        .await;
    let kept = audit_events(&*app.store)
        .await
        .into_iter()
        .find(|e| e.user_id == Some(other.id))
        .unwrap();
    assert_eq!(kept.username.as_deref(), Some("ann"));
    assert_eq!(kept.ip.as_deref(), Some("198.51.100.7"));
}

#[tokio::test]
async fn the_step_up_check_accepts_a_password_up_to_reauth_max_age_old() {
    let app = test_app!(&[("REAUTH_MAX_AGE", "60")]);
    let access = app.signed_in_ann().await.access_token();
    let claims: latchkey::AccessClaims =
        serde_json::from_value(claims(&access)).expect("access claims");
    let max_age = std::time::Duration::from_secs(60);
    app.advance(60);
    app.auth
        .require_recent_authentication(&claims, max_age)
        .expect("60 s old is recent enough");
    app.advance(1);
    let refused = app
        .auth
        .require_recent_authentication(&claims, max_age)
        .unwrap_err();
    assert_eq!(refused.code(), "insufficient_user_authentication");
    // An application's handler answers it as latchkey's routes do.
    let answer = axum::response::IntoResponse::into_response(refused);
    assert_eq!(answer.status(), 401);
    assert_eq!(
        answer.headers()[axum::http::header::WWW_AUTHENTICATE],
        r#"Bearer realm="latchkey", error="insufficient_user_authentication", error_description="this action needs your password again: reauthenticate and retry", max_age=60"#
    );
}

#[tokio::test]
async fn protective_actions_never_ask_for_a_recent_password() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let other = app.login("ann", PASSWORD).await.access_token();
    let other_sid = claims(&other)["sid"].as_str().unwrap().to_owned();
    // Past REAUTH_MAX_AGE, the access token still valid.
    app.advance(REAUTH_MAX_AGE + 100);
    assert_eq!(
        app.delete_with_bearer("/me", &access).await.error_code(),
        "insufficient_user_authentication",
        "the password is stale"
    );
    let revoked = app
        .delete_with_bearer(&format!("/sessions/{other_sid}"), &access)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT, "{}", revoked.text());
    let everywhere = app.delete_with_bearer("/sessions", &access).await;
    assert_eq!(everywhere.status, StatusCode::NO_CONTENT, "{}", everywhere.text());
}

// ---------------------------------------------------------------------------
// Deleting an account

/// A name that no random token, id or digest can contain (`.` is in no
/// base64url alphabet), so finding it anywhere means it was kept.
const DOOMED: &str = "zed.doomed";

/// `DOOMED` with two sessions, a device cookie, throttle counters of every
/// kind that names an account, and audit events; returns a login.
async fn doomed_with_history(app: &TestApp) -> (i64, TestResponse) {
    let user = app.add_user(DOOMED, PASSWORD).await;
    let login = app.login(DOOMED, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    let device = login
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("__Host-device="))
        .expect("a device cookie");
    let device = device.split(';').next().unwrap().to_owned();
    let second = app.login(DOOMED, PASSWORD).await;
    assert_eq!(second.status, StatusCode::OK);
    // After the last success (which clears them): a wrong password with the
    // device cookie (its own counter), and two without (the account's, the
    // pair's).
    let with_device = app
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &device)
                .body(Body::from(
                    json!({ "username": DOOMED, "password": "wrong!" }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(with_device.status, StatusCode::UNAUTHORIZED);
    for _ in 0..2 {
        assert_eq!(
            app.login(DOOMED, "wrong!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    app.auth.flush_audit(true).await;
    let rows = every_row(app).await;
    for counter in ["login-user:", "login-pair:", "login-device:"] {
        assert!(rows.iter().any(|r| r.contains(counter)), "{counter} before: {rows:#?}");
    }
    assert!(
        rows.iter().any(|r| r.contains(DOOMED)),
        "the history names the user before"
    );
    (user.id, login)
}

#[tokio::test]
async fn deleting_an_account_with_a_stale_password_check_gets_the_step_up_challenge() {
    let app = test_app!();
    let (_, login) = doomed_with_history(&app).await;
    app.advance(REAUTH_MAX_AGE + 1);
    let rotated = app.refresh(&login.refresh_token()).await;
    let stale = rotated.access_token();

    let refused = app.delete_with_bearer("/me", &stale).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "insufficient_user_authentication");
    assert_eq!(refused.header("www-authenticate"), Some(STEP_UP_CHALLENGE));
    refused.assert_no_store();
    assert!(refused.refresh_cookie().is_none());
    assert!(app.auth.user_named(DOOMED).await.unwrap().is_some(), "kept");

    // The step-up answers it.
    let fresh = reauthenticate(&app, &stale, PASSWORD).await.access_token();
    let deleted = app.delete_with_bearer("/me", &fresh).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    deleted.assert_cookie_cleared();
    assert!(app.auth.user_named(DOOMED).await.unwrap().is_none(), "gone");
}

#[tokio::test]
async fn a_deleted_account_leaves_no_row_that_names_it_and_its_name_is_free_again() {
    let app = test_app!();
    let (id, login) = doomed_with_history(&app).await;
    let access = login.access_token();

    let deleted = app.delete_with_bearer("/me", &access).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.text());
    deleted.assert_cookie_cleared();
    deleted.assert_no_store();
    let device = deleted
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with("__Host-device="))
        .expect("the device cookie, which names the account, is cleared too");
    assert!(device.starts_with("__Host-device=;") && device.contains("Max-Age=0"), "{device}");
    app.auth.flush_audit(true).await;

    let rows = every_row(&app).await;
    let naming: Vec<&String> = rows.iter().filter(|r| r.contains(DOOMED)).collect();
    assert!(naming.is_empty(), "rows still name the user: {naming:#?}");
    let events: Vec<_> = audit_events(&*app.store)
        .await
        .into_iter()
        .filter(|e| e.user_id == Some(id))
        .collect();
    assert!(events.iter().any(|e| e.kind == "login_succeeded"), "kept");
    assert!(events.iter().any(|e| e.kind == "account_deleted"));
    for event in &events {
        assert_eq!(
            (&event.username, &event.ip, &event.request_id),
            (&None, &None, &None),
            "{event:?}"
        );
    }
    for table in ["users:", "sessions:"] {
        assert!(!rows.iter().any(|r| r.starts_with(table)), "{rows:#?}");
    }
    for counter in ["login-user:", "login-pair:", "login-device:"] {
        assert!(!rows.iter().any(|r| r.contains(counter)), "{rows:#?}");
    }

    // Old cookies and tokens are refused; the name can be taken again.
    let refreshed = app.refresh(&login.refresh_token()).await;
    assert_eq!(refreshed.error_code(), "invalid_refresh_token");
    for (method, path) in [(Method::GET, "/me"), (Method::GET, "/sessions"), (Method::DELETE, "/me")] {
        let refused = app.send(bearer(method.clone(), path, &access)).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(refused.error_code(), "invalid_token");
    }
    let registered = app
        .send(json_post(
            "/register",
            &json!({ "username": DOOMED, "password": PASSWORD }),
        ))
        .await;
    assert_eq!(registered.status, StatusCode::CREATED, "{}", registered.text());
    let new_id: i64 = registered.json()["id"].as_str().unwrap().parse().unwrap();
    assert_ne!(new_id, id, "ids are never reused");
    // The old access token names the old id: stateless checks pass it until
    // it expires (README, "How sessions work"), never as the new account.
    let old = app.get_with_bearer("/protected", &access).await;
    assert_eq!(old.json()["user"]["id"], id.to_string());
    app.advance(secs(app.auth.config().tokens.access_ttl));
    assert_eq!(
        app.get_with_bearer("/protected", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn an_operator_deletes_an_account_with_the_cli() {
    let app = test_app!();
    let (id, login) = doomed_with_history(&app).await;

    let output = app.cli(&["user", "delete", DOOMED], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    // The binary runs on the real clock, long after the test's: its count of
    // sessions still live is its own.
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.starts_with(&format!("deleted {DOOMED} (id {id}); ")), "{said}");
    assert!(said.ends_with(" sessions ended\n"), "{said}");
    assert_eq!(
        app.refresh(&login.refresh_token()).await.error_code(),
        "invalid_refresh_token"
    );
    app.auth.flush_audit(true).await;
    let rows = every_row(&app).await;
    assert!(!rows.iter().any(|r| r.contains(DOOMED)), "{rows:#?}");

    let again = app.cli(&["user", "delete", DOOMED], "");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no user named"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_finishes_after_the_account_is_deleted_gets_401_and_leaves_nothing() {
    let app = Arc::new(test_app!());
    let ann = app.add_user("ann", PASSWORD).await;
    let hold = app.auth.hasher().hold();
    let pending = {
        let app = app.clone();
        tokio::spawn(async move { app.login("ann", PASSWORD).await })
    };
    wait_for_hash_queue(&app.auth, 1).await;

    app.auth.delete_user(&ann).await.unwrap();
    drop(hold);

    let login = pending.await.unwrap();
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.text());
    assert!(login.refresh_cookie().is_none());
    assert!(app.store.active_sessions(ann.id, START).await.unwrap().is_empty());
    app.auth.flush_audit(true).await;
    let rows = every_row(&app).await;
    assert!(
        !rows.iter().any(|r| r.starts_with("users:") || r.starts_with("sessions:")),
        "{rows:#?}"
    );
}

// ---------------------------------------------------------------------------
// "Keep me signed in"

#[tokio::test]
async fn a_session_not_remembered_sets_a_browser_session_cookie_on_every_rotation() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let login = login_remembering(&app, false).await;
    assert_eq!(login.status, StatusCode::OK);

    let device = login
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .find(|v| v.starts_with("__host-device="))
        .unwrap();
    assert!(!device.contains("max-age") && !device.contains("expires"), "{device}");

    let mut response = login;
    let mut previous = None;
    for _ in 0..4 {
        let cookie = response.refresh_cookie().expect("a refresh cookie");
        assert!(!cookie.value().is_empty());
        assert_eq!(cookie.max_age(), None, "no Max-Age: {cookie}");
        assert_eq!(cookie.expires(), None, "no Expires: {cookie}");
        let raw = response
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_ascii_lowercase())
            .find(|v| v.starts_with("__host-refresh_token="))
            .unwrap();
        assert!(!raw.contains("max-age") && !raw.contains("expires"), "{raw}");
        app.advance(60);
        let current = response.refresh_token();
        response = app.refresh(&current).await;
        assert_eq!(response.status, StatusCode::OK);
        previous = Some(current);
    }
    // Rule 2, the grace path, hands back the current cookie the same way.
    let graced = app.refresh(&previous.unwrap()).await;
    assert_eq!(graced.status, StatusCode::OK);
    assert_eq!(graced.refresh_token(), response.refresh_token(), "the grace path");
    assert_eq!(graced.refresh_cookie().unwrap().max_age(), None);
    let sessions = app
        .get_with_bearer("/sessions", &response.access_token())
        .await
        .json();
    assert_eq!(sessions[0]["remembered"], false);

    let remembered = login_remembering(&app, true).await;
    assert_eq!(remembered.max_age(), 86_400);
    let sessions = app
        .get_with_bearer("/sessions", &remembered.access_token())
        .await
        .json();
    let flags: Vec<&Value> = sessions.as_array().unwrap().iter().map(|s| &s["remembered"]).collect();
    assert_eq!(flags, [&json!(true), &json!(false)], "newest first");
}

#[tokio::test]
async fn a_session_not_remembered_ends_after_its_shorter_idle_timeout() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let forgotten = login_remembering(&app, false).await.refresh_token();
    let kept = login_remembering(&app, true).await.refresh_token();

    // Used within the idle timeout, it lives on, and the timeout slides.
    app.advance(NOT_REMEMBERED_IDLE - 1);
    let forgotten = app.refresh(&forgotten).await;
    assert_eq!(forgotten.status, StatusCode::OK);
    let forgotten = forgotten.refresh_token();
    let kept = app.refresh(&kept).await.refresh_token();
    app.advance(NOT_REMEMBERED_IDLE - 1);
    let forgotten = app.refresh(&forgotten).await;
    assert_eq!(forgotten.status, StatusCode::OK);

    // Unused for its idle timeout, it ends; the remembered one does not.
    app.advance(NOT_REMEMBERED_IDLE);
    assert_eq!(
        app.refresh(&forgotten.refresh_token()).await.error_code(),
        "invalid_refresh_token"
    );
    let kept = app.refresh(&kept).await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text());
}

#[tokio::test]
async fn the_login_forms_unticked_box_means_not_remembered() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let form = |body: &str| {
        app.send(form_post(
            "/login",
            &format!("username=ann&password=correct+horse+battery{body}"),
        ))
    };
    let unticked = form("&remember_offered=true").await;
    assert_eq!(unticked.status, StatusCode::SEE_OTHER);
    assert_eq!(unticked.refresh_cookie().unwrap().max_age(), None);
    let ticked = form("&remember_offered=true&remember=true").await;
    assert_eq!(ticked.max_age(), 86_400);
    let scripted = form("").await;
    assert_eq!(scripted.max_age(), 86_400, "without the box: as before");
    let json_default = app.login("ann", PASSWORD).await;
    assert_eq!(json_default.max_age(), 86_400, "JSON without `remember`");
}

// ---------------------------------------------------------------------------
// Live checks on account actions

/// Each account action, with the token of a session that has ended: `401
/// invalid_token`, and nothing done.
async fn assert_account_actions_refuse(app: &TestApp, access: &str, other_sid: &str) {
    let password_change = Request::post("/password")
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }).to_string(),
        ))
        .unwrap();
    let requests = [
        bearer(Method::GET, "/me", access),
        bearer(Method::GET, "/sessions", access),
        bearer(Method::DELETE, &format!("/sessions/{other_sid}"), access),
        bearer(Method::DELETE, "/sessions", access),
        password_change,
        reauthenticate_request(access, PASSWORD),
        bearer(Method::DELETE, "/me", access),
    ];
    for request in requests {
        let what = format!("{} {}", request.method(), request.uri());
        let refused = app.send(request).await;
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(refused.error_code(), "invalid_token", "{what}");
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|c| c.contains(r#"error="invalid_token""#)),
            "{what}"
        );
    }
    // Stateless, on purpose: the token is valid until it expires.
    assert_eq!(
        app.get_with_bearer("/protected", access).await.status,
        StatusCode::OK
    );
    let other = app.store.session(other_sid).await.unwrap().unwrap();
    assert!(other.is_live(now(app)), "the other session lives on");
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK, "same password");
}

#[tokio::test]
async fn account_actions_refuse_the_token_of_a_logged_out_or_revoked_session() {
    let app = test_app!();
    let gone = app.signed_in_ann().await;
    let other = app.login("ann", PASSWORD).await.access_token();
    let other_sid = claims(&other)["sid"].as_str().unwrap().to_owned();
    assert_eq!(app.logout(&gone.refresh_token()).await.status, StatusCode::NO_CONTENT);
    assert_account_actions_refuse(&app, &gone.access_token(), &other_sid).await;

    let revoked = app.login("ann", PASSWORD).await.access_token();
    let revoked_sid = claims(&revoked)["sid"].as_str().unwrap().to_owned();
    let done = app
        .delete_with_bearer(&format!("/sessions/{revoked_sid}"), &other)
        .await;
    assert_eq!(done.status, StatusCode::NO_CONTENT);
    assert_account_actions_refuse(&app, &revoked, &other_sid).await;
}

#[tokio::test]
async fn account_actions_refuse_the_token_of_an_evicted_session() {
    let app = test_app!(&[("MAX_SESSIONS_PER_USER", "1")]);
    let evicted = app.signed_in_ann().await.access_token();
    let current = app.login("ann", PASSWORD).await.access_token();
    let current_sid = claims(&current)["sid"].as_str().unwrap().to_owned();
    assert_account_actions_refuse(&app, &evicted, &current_sid).await;
}

#[tokio::test]
async fn account_actions_refuse_the_token_of_an_expired_session() {
    let app = test_app!(&[("SESSION_MAX_LIFETIME", "1000")]);
    let ending = app.signed_in_ann().await;
    // Its absolute lifetime ends while its latest access token lives on.
    app.advance(999);
    let expiring = app.refresh(&ending.refresh_token()).await.access_token();
    let other = app.login("ann", PASSWORD).await.access_token();
    let other_sid = claims(&other)["sid"].as_str().unwrap().to_owned();
    app.advance(1);
    assert!(claims(&expiring)["exp"].as_i64().unwrap() > now(&app));
    assert_account_actions_refuse(&app, &expiring, &other_sid).await;
}

fn now(app: &TestApp) -> i64 {
    use latchkey::clock::Clock;
    app.clock.now()
}

//! A second factor (README, "Second factor"): TOTP enrolment, sign-in in two
//! steps (JSON and the form), codes that hold under attack, recovery codes,
//! step-up with both factors, `amr` in the tokens, and the operator's reset.
//! Codes are computed by the tests' own RFC 6238 (`totp_code`), not by the
//! crate latchkey uses, so a bug the two shared could not pass.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::totp::{base32_decode, totp_code};
use crate::helpers::*;

const MFA_COOKIE: &str = "__Host-mfa";

#[test]
fn the_tests_own_totp_meets_rfc_6238s_vectors() {
    // Appendix B, SHA-1: the 8-digit values' last six digits.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"; // "12345678901234567890"
    assert_eq!(totp_code(secret, 59), "287082");
    assert_eq!(totp_code(secret, 1_111_111_109), "081804");
    assert_eq!(totp_code(secret, 1_234_567_890), "005924");
    assert_eq!(totp_code(secret, 2_000_000_000), "279037");
}

fn now(app: &TestApp) -> i64 {
    latchkey::clock::Clock::now(&app.clock)
}

fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn with_json(mut request: Request<Body>, body: &Value) -> Request<Body> {
    *request.body_mut() = Body::from(body.to_string());
    request
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    request
}

fn set_cookie(response: &TestResponse, name: &str) -> Option<cookie::Cookie<'static>> {
    response
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == name)
}

/// ann, signed in, with TOTP on: her secret and recovery codes.
async fn ann_with_totp(app: &TestApp) -> (String, Vec<String>) {
    let login = app.signed_in_ann().await;
    enable_totp(app, &login.access_token()).await
}

/// Turns TOTP on with the session of `access`: the secret and recovery codes.
async fn enable_totp(app: &TestApp, access: &str) -> (String, Vec<String>) {
    let enrolled = app
        .send(bearer(Method::POST, "/me/totp", access))
        .await;
    assert_eq!(enrolled.status, StatusCode::OK, "{}", enrolled.text());
    let secret = enrolled.json()["secret"].as_str().unwrap().to_owned();
    let uri = enrolled.json()["otpauth_uri"].as_str().unwrap().to_owned();
    assert!(uri.starts_with("otpauth://totp/latchkey:ann?secret="), "{uri}");
    assert_eq!(base32_decode(&secret).len(), 20, "160 bits");

    // A wrong code leaves it pending; the current one turns it on.
    let wrong = app
        .send(with_json(
            bearer(Method::POST, "/me/totp/confirm", access),
            &json!({ "code": "000000" }),
        ))
        .await;
    assert_eq!(wrong.error_code(), "invalid_code");
    let confirmed = app
        .send(with_json(
            bearer(Method::POST, "/me/totp/confirm", access),
            &json!({ "code": totp_code(&secret, now(app)) }),
        ))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.text());
    let codes: Vec<String> = confirmed.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

/// The password step: `401 second_factor_required` and the pending
/// login's cookie, as `name=value` for the second step.
async fn password_step(app: &TestApp) -> String {
    let answer = app.login("ann", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert_eq!(answer.error_code(), "second_factor_required");
    assert_eq!(answer.json()["factors"], json!(["totp", "recovery_code"]));
    assert!(answer.refresh_cookie().is_none(), "nobody is signed in yet");
    let cookie = set_cookie(&answer, MFA_COOKIE).expect("the pending login's cookie");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.max_age().map(|a| a.whole_seconds()), Some(300));
    format!("{MFA_COOKIE}={}", cookie.value())
}

/// ann's password, then the current code of `secret`: signed in.
async fn both_steps(app: &TestApp, secret: &str) -> TestResponse {
    let pending = password_step(app).await;
    second_step(app, &pending, &json!({ "code": totp_code(secret, now(app)) })).await
}

/// `POST /reauthenticate` with `body`, for the session of `access`.
async fn step_up(app: &TestApp, access: &str, body: &Value) -> TestResponse {
    app.send(with_json(bearer(Method::POST, "/reauthenticate", access), body))
        .await
}

async fn second_step(app: &TestApp, cookie: &str, body: &Value) -> TestResponse {
    app.send(
        Request::post("/login/second-factor")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::COOKIE, cookie)
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn with_totp_on_a_login_takes_a_password_then_a_code() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    let before = app.store.active_sessions(ann.id, now(&app)).await.unwrap().len();

    // A wrong password says nothing of the second factor.
    let wrong = app.login("ann", "not the password").await;
    assert_eq!(wrong.error_code(), "invalid_credentials");

    let pending = password_step(&app).await;
    assert_eq!(
        app.store.active_sessions(ann.id, now(&app)).await.unwrap().len(),
        before,
        "no session before the second step"
    );
    app.advance(31);
    let signed_in = second_step(&app, &pending, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
    let access = signed_in.access_token();
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp"]));
    let cleared = set_cookie(&signed_in, MFA_COOKIE).expect("the pending cookie cleared");
    assert_eq!(cleared.max_age().map(|a| a.whole_seconds()), Some(0));

    // `amr` is the session's: every rotation carries it.
    let mut refresh = signed_in.refresh_token();
    for _ in 0..2 {
        app.advance(100);
        let rotated = app.refresh(&refresh).await;
        assert_eq!(claims(&rotated.access_token())["amr"], json!(["pwd", "otp"]));
        refresh = rotated.refresh_token();
    }

    // The pending login worked once.
    let again = second_step(&app, &pending, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(again.error_code(), "invalid_code");
}

#[tokio::test]
async fn a_code_works_once_and_one_step_of_skew_either_way() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    app.advance(60);
    let code = totp_code(&secret, now(&app));
    let first = second_step(&app, &password_step(&app).await, &json!({ "code": code })).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    // The same code again, in the same step: refused.
    let replay = second_step(&app, &password_step(&app).await, &json!({ "code": code })).await;
    assert_eq!(replay.error_code(), "invalid_code");

    // A phone a step behind, and a step ahead: accepted; two steps: not.
    app.advance(90);
    let behind = totp_code(&secret, now(&app) - 30);
    let late = second_step(&app, &password_step(&app).await, &json!({ "code": behind })).await;
    assert_eq!(late.status, StatusCode::OK, "{}", late.text());
    app.advance(90);
    let ahead = totp_code(&secret, now(&app) + 30);
    let early = second_step(&app, &password_step(&app).await, &json!({ "code": ahead })).await;
    assert_eq!(early.status, StatusCode::OK, "{}", early.text());
    app.advance(90);
    let stale = totp_code(&secret, now(&app) - 60);
    let refused = second_step(&app, &password_step(&app).await, &json!({ "code": stale })).await;
    assert_eq!(refused.error_code(), "invalid_code");
}

#[tokio::test]
async fn a_recovery_code_works_once() {
    let app = test_app!();
    let (_, codes) = ann_with_totp(&app).await;
    let used = second_step(
        &app,
        &password_step(&app).await,
        &json!({ "recovery_code": codes[3].to_uppercase() }),
    )
    .await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.text());
    assert_eq!(claims(&used.access_token())["amr"], json!(["pwd", "otp"]));
    let again = second_step(
        &app,
        &password_step(&app).await,
        &json!({ "recovery_code": codes[3] }),
    )
    .await;
    assert_eq!(again.error_code(), "invalid_code");
    let neither = second_step(&app, &password_step(&app).await, &json!({})).await;
    assert_eq!(neither.error_code(), "invalid_request");
}

#[tokio::test]
async fn a_pending_login_dies_after_300_seconds_or_five_wrong_codes() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    let pending = password_step(&app).await;
    app.advance(301);
    let late = second_step(&app, &pending, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(late.error_code(), "invalid_code");

    let pending = password_step(&app).await;
    for _ in 0..5 {
        // Each counts against this login, whether the account's own
        // allowance lets it be checked (`invalid_code`) or not (`429`).
        let wrong = second_step(&app, &pending, &json!({ "code": "000000" })).await;
        assert!(
            ["invalid_code", "too_many_attempts"].contains(&wrong.error_code().as_str()),
            "{}",
            wrong.text()
        );
    }
    // Past the account's back-off, well within the 300 s: this login is
    // spent all the same.
    app.advance(30);
    let right_but_spent =
        second_step(&app, &pending, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(right_but_spent.error_code(), "invalid_code");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_guesses_at_the_same_instant_check_at_most_the_allowance() {
    let app = Arc::new(test_app!());
    ann_with_totp(&app).await;
    // The wrong code of the enrolment is one already.
    app.auth.flush_audit(true).await;
    let failed_before = app
        .event_kinds()
        .await
        .iter()
        .filter(|k| *k == "second_factor_failed")
        .count();
    // Ten pending logins, as an attacker with the password would open.
    let mut pending = Vec::new();
    for _ in 0..10 {
        pending.push(password_step(&app).await);
    }
    let guesses: Vec<_> = (0..50)
        .map(|i| {
            let (app, cookie) = (app.clone(), pending[i % 10].clone());
            tokio::spawn(async move {
                second_step(&app, &cookie, &json!({ "code": format!("{:06}", i) }))
                    .await
                    .status
            })
        })
        .collect();
    for guess in guesses {
        let status = guess.await.unwrap();
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    // Each code actually checked is a `second_factor_failed` event: at most
    // THROTTLE_LOGIN_PAIR (5) for the account, however many pending logins.
    app.auth.flush_audit(true).await;
    let checked = app
        .event_kinds()
        .await
        .iter()
        .filter(|k| *k == "second_factor_failed")
        .count()
        - failed_before;
    assert!((1..=5).contains(&checked), "{checked} codes checked");
}

#[tokio::test]
async fn the_form_takes_the_second_step_on_a_page_of_its_own() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    app.advance(30);
    let page = app
        .send(form_post(
            "/login",
            &form_body(&[("username", "ann"), ("password", PASSWORD), ("next", "/app")]),
        ))
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.text().contains("action=\"/login/second-factor\""), "{}", page.text());
    let cookie = set_cookie(&page, MFA_COOKIE).expect("the pending cookie");
    let code = totp_code(&secret, now(&app));
    let done = app
        .send(
            Request::post("/login/second-factor")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("{MFA_COOKIE}={}", cookie.value()))
                .body(Body::from(form_body(&[("code", &code), ("next", "/app")])))
                .unwrap(),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text());
    assert_eq!(done.header("location"), Some("/app"));
    assert!(done.refresh_cookie().is_some());
}

#[tokio::test]
async fn a_step_up_asks_for_both_factors_and_removing_one_needs_it() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    // ann's first session signed in with her password alone (before TOTP).
    let first = app.login("ann", PASSWORD).await;
    assert_eq!(first.error_code(), "second_factor_required");
    app.advance(31);
    let signed_in = both_steps(&app, &secret).await;
    let access = signed_in.access_token();

    // The password alone is not a step-up any more.
    app.advance(700);
    let password_only = step_up(&app, &access, &json!({ "password": PASSWORD })).await;
    assert_eq!(password_only.error_code(), "second_factor_required");
    let removal = app.send(bearer(Method::DELETE, "/me/totp", &access)).await;
    assert_eq!(removal.error_code(), "insufficient_user_authentication");
    let both = step_up(&app, &access, &json!({ "password": PASSWORD, "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.text());
    let fresh = both.access_token();
    assert_eq!(claims(&fresh)["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims(&fresh)["auth_time"], now(&app));

    let codes = app
        .send(bearer(Method::POST, "/me/recovery-codes", &fresh))
        .await;
    assert_eq!(codes.status, StatusCode::OK, "{}", codes.text());
    let removed = app.send(bearer(Method::DELETE, "/me/totp", &fresh)).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
    // The password alone signs in again.
    let plain = app.login("ann", PASSWORD).await;
    assert_eq!(plain.status, StatusCode::OK, "{}", plain.text());
    assert_eq!(claims(&plain.access_token())["amr"], json!(["pwd"]));
}

#[tokio::test]
async fn a_session_that_proved_only_the_password_cannot_remove_the_factor() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let enrolled = app.send(bearer(Method::POST, "/me/totp", &access)).await;
    let secret = enrolled.json()["secret"].as_str().unwrap().to_owned();
    let confirmed = app
        .send(with_json(
            bearer(Method::POST, "/me/totp/confirm", &access),
            &json!({ "code": totp_code(&secret, now(&app)) }),
        ))
        .await;
    assert_eq!(confirmed.status, StatusCode::OK);
    // A recent password, but no code: `amr` is `["pwd"]`.
    assert_eq!(claims(&access)["amr"], json!(["pwd"]));
    for (method, path) in [(Method::DELETE, "/me/totp"), (Method::POST, "/me/recovery-codes")] {
        let refused = app.send(bearer(method, path, &access)).await;
        assert_eq!(refused.error_code(), "insufficient_user_authentication", "{path}");
    }
}

#[tokio::test]
async fn the_confirming_code_and_a_wrong_password_open_nothing() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    // The code that confirmed the factor, in the same step: used.
    let same_step = second_step(&app, &password_step(&app).await, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(same_step.error_code(), "invalid_code");
    // A wrong password: no pending login, no cookie.
    let wrong = app.login("ann", "not the password").await;
    assert!(set_cookie(&wrong, MFA_COOKIE).is_none());
    // A factor that is on is not replaced by a new enrolment.
    let signed_in = {
        app.advance(30);
        second_step(&app, &password_step(&app).await, &json!({ "code": totp_code(&secret, now(&app)) })).await
    };
    let again = app.send(bearer(Method::POST, "/me/totp", &signed_in.access_token())).await;
    assert_eq!(again.error_code(), "invalid_request");
}

#[tokio::test]
async fn a_password_change_ends_a_pending_login() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    app.advance(30);
    let signed_in = second_step(&app, &password_step(&app).await, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    let pending = password_step(&app).await;
    let changed = app
        .change_password(&signed_in.access_token(), PASSWORD, "a brand new passphrase")
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    app.advance(30);
    let late = second_step(&app, &pending, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(late.error_code(), "invalid_code");
}

#[tokio::test]
async fn a_secret_sealed_under_the_previous_refresh_secret_is_sealed_again_when_used() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    let old = app.vars["JWT_REFRESH_SECRET"].clone();
    let new = "a-new-refresh-secret-0123456789abcdefghij".to_owned();
    let instance = |overrides: Vec<(String, String)>| {
        let mut vars = app.vars.clone();
        vars.extend(overrides);
        let config = config_from(&vars).unwrap();
        let auth = latchkey::Auth::with_clock(config, app.store.shared(), Arc::new(app.clock.clone())).unwrap();
        axum::Router::new().merge(latchkey::router(auth)).layer(axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from(CLIENT_ADDR)))
    };
    // During the rotation: the old secret opens, and the code seals it anew.
    let rotating = instance(vec![
        ("JWT_REFRESH_SECRET".into(), new.clone()),
        ("JWT_REFRESH_SECRET_PREVIOUS".into(), old),
    ]);
    app.advance(30);
    let pending = call(&rotating, json_post("/login", &json!({ "username": "ann", "password": PASSWORD }))).await;
    let cookie = format!("{MFA_COOKIE}={}", set_cookie(&pending, MFA_COOKIE).unwrap().value());
    let request = Request::post("/login/second-factor")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, &cookie)
        .body(Body::from(json!({ "code": totp_code(&secret, now(&app)) }).to_string()))
        .unwrap();
    assert_eq!(call(&rotating, request).await.status, StatusCode::OK);
    // After it, without the previous secret: still the same factor.
    let after = instance(vec![("JWT_REFRESH_SECRET".into(), new)]);
    app.advance(30);
    let pending = call(&after, json_post("/login", &json!({ "username": "ann", "password": PASSWORD }))).await;
    let cookie = format!("{MFA_COOKIE}={}", set_cookie(&pending, MFA_COOKIE).unwrap().value());
    let request = Request::post("/login/second-factor")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::COOKIE, &cookie)
        .body(Body::from(json!({ "code": totp_code(&secret, now(&app)) }).to_string()))
        .unwrap();
    let answer = call(&after, request).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
}

#[tokio::test]
async fn an_operator_reset_removes_the_factor_and_ends_every_session() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    // The confirming code's step is used: the next code is the next step's.
    app.advance(30);
    let signed_in = both_steps(&app, &secret).await;
    let out = app.cli(&["user", "reset-second-factor", "ann"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("removed ann's second factor"));
    assert_eq!(
        app.refresh(&signed_in.refresh_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_store_never_holds_the_secret() {
    let app = test_app!();
    let (secret, codes) = ann_with_totp(&app).await;
    let raw = base32_decode(&secret);
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    for row in every_row(&app).await {
        for needle in [secret.as_str(), hex.as_str(), codes[0].as_str()] {
            assert!(!row.to_lowercase().contains(&needle.to_lowercase()), "{needle} in {row}");
        }
    }
}

#[tokio::test]
async fn a_password_reset_by_mail_leaves_the_second_factor_on() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth
        .set_email(&ann, "ann@example.com", true)
        .await
        .unwrap();
    app.auth
        .forgot_password("ann", &latchkey::ClientInfo::default());
    app.auth.settled().await;
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 1);
    let mails = outbox_mails(std::path::Path::new(&app.vars["MAIL_OUTBOX_DIR"]));
    let token = crate::helpers::smtp::link_token(mails.last().unwrap());
    let reset = app
        .send(json_post(
            "/password/reset",
            &json!({ "token": token, "password": "a brand new passphrase" }),
        ))
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.text());
    // The new password still leads to the code, not to a session.
    let answer = app.login("ann", "a brand new passphrase").await;
    assert_eq!(answer.error_code(), "second_factor_required");
    let cookie = format!(
        "{MFA_COOKIE}={}",
        set_cookie(&answer, MFA_COOKIE).unwrap().value()
    );
    app.advance(30);
    let signed_in = second_step(&app, &cookie, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(signed_in.status, StatusCode::OK, "{}", signed_in.text());
}

/// `root`, an `admin`, as an operator adds one.
async fn add_admin(app: &TestApp) -> latchkey::store::User {
    app.auth
        .create_user("root", PASSWORD, "admin")
        .await
        .expect("create admin")
}

#[tokio::test]
async fn a_role_that_requires_a_second_factor_sets_one_up_before_any_token() {
    let app = test_app!(&[("SECOND_FACTOR_REQUIRED_ROLES", "ops, admin")]);
    let root = add_admin(&app).await;
    // Other roles sign in as ever.
    app.add_user("ann", PASSWORD).await;
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);
    // A wrong password says nothing of the requirement.
    assert_eq!(app.login("root", "not the password").await.error_code(), "invalid_credentials");

    let answer = app.login("root", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text());
    assert_eq!(answer.error_code(), "second_factor_enrollment_required");
    assert_eq!(answer.json()["factors"], json!(["totp"]));
    assert!(answer.refresh_cookie().is_none(), "no session before the factor is on");
    assert!(answer.json().get("access_token").is_none());
    let secret = answer.json()["totp"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(base32_decode(&secret).len(), 20);
    // Another sign-in (another tab) shows the same pending secret.
    let other_tab = app.login("root", PASSWORD).await;
    assert_eq!(other_tab.json()["totp"]["secret"], secret.as_str());
    assert!(answer.json()["totp"]["qr_svg"].as_str().unwrap().contains("<svg"));
    let cookie = set_cookie(&answer, MFA_COOKIE).expect("the pending login's cookie");
    let cookie = format!("{MFA_COOKIE}={}", cookie.value());
    assert!(app.store.active_sessions(root.id, now(&app)).await.unwrap().is_empty());

    // A wrong code, or a recovery code (there are none yet), enrols nothing.
    let wrong = second_step(&app, &cookie, &json!({ "code": "000000" })).await;
    assert_eq!(wrong.error_code(), "invalid_code");
    let recovery = second_step(&app, &cookie, &json!({ "recovery_code": "aaaa-bbbb-cccc-dddd" })).await;
    assert_eq!(recovery.error_code(), "invalid_code");
    assert!(app.store.active_sessions(root.id, now(&app)).await.unwrap().is_empty());

    let done = second_step(&app, &cookie, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert_eq!(done.json()["recovery_codes"].as_array().unwrap().len(), 10);
    let access = done.access_token();
    assert_eq!(claims(&access)["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims(&access)["role"], "admin");
    assert_eq!(app.get_with_bearer("/me", &access).await.status, StatusCode::OK);
    assert!(done.refresh_cookie().is_some());
    // Its rotations keep the factor, so the session lives on.
    app.advance(60);
    let rotated = app.refresh(&done.refresh_token()).await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.text());

    // From now on the password leads to a code, like any account's.
    app.advance(31);
    let next = app.login("root", PASSWORD).await;
    assert_eq!(next.error_code(), "second_factor_required");

    // Removing the factor (with both factors, recently) ends every session:
    // the next sign-in sets one up again.
    let stepped = step_up(&app, &rotated.access_token(), &json!({ "password": PASSWORD, "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(stepped.status, StatusCode::OK, "{}", stepped.text());
    let removed = app
        .send(bearer(Method::DELETE, "/me/totp", &stepped.access_token()))
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text());
    assert!(app.store.active_sessions(root.id, now(&app)).await.unwrap().is_empty());
    let again = app.login("root", PASSWORD).await;
    assert_eq!(again.error_code(), "second_factor_enrollment_required");
}

#[tokio::test]
async fn the_form_shows_the_qr_code_then_the_recovery_codes() {
    let app = test_app!(&[("SECOND_FACTOR_REQUIRED_ROLES", "admin")]);
    add_admin(&app).await;
    let page = app
        .send(form_post(
            "/login",
            &form_body(&[("username", "root"), ("password", PASSWORD), ("next", "/app")]),
        ))
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    let html = page.text();
    assert!(html.contains("<svg"), "{html}");
    let secret = html
        .split("id=\"totp-secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the secret on the page")
        .to_owned();
    assert!(!html.contains("name=\"recovery_code\""), "nothing to recover yet");
    let cookie = set_cookie(&page, MFA_COOKIE).expect("the pending cookie");
    let post = |code: String| {
        Request::post("/login/second-factor")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("{MFA_COOKIE}={}", cookie.value()))
            .body(Body::from(form_body(&[("code", &code), ("next", "/app")])))
            .unwrap()
    };
    // A wrong code shows the same QR code and secret again.
    let wrong = app.send(post("000000".to_owned())).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains(&format!("id=\"totp-secret\">{secret}<")), "{}", wrong.text());
    assert!(wrong.text().contains("<svg"));
    let done = app.send(post(totp_code(&secret, now(&app)))).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
    assert!(done.refresh_cookie().is_some(), "signed in");
    assert_eq!(done.text().matches("<li><code>").count(), 10, "{}", done.text());
    assert!(done.text().contains("href=\"/app\""));
}

#[tokio::test]
async fn a_session_from_before_its_role_required_a_second_factor_is_refused() {
    let app = test_app!();
    let root = add_admin(&app).await;
    let before = app.login("root", PASSWORD).await;
    assert_eq!(before.status, StatusCode::OK);
    let (access, refresh) = (before.access_token(), before.refresh_token());

    // The same database, now served with the setting.
    let mut vars = app.vars.clone();
    vars.insert("SECOND_FACTOR_REQUIRED_ROLES".into(), "admin".into());
    let strict = latchkey::Auth::with_clock(
        config_from(&vars).unwrap(),
        app.store.shared(),
        Arc::new(app.clock.clone()),
    )
    .unwrap();
    let strict = latchkey::router(strict).layer(axum::extract::connect_info::MockConnectInfo(
        std::net::SocketAddr::from(CLIENT_ADDR),
    ));
    let me = call(&strict, bearer(Method::GET, "/me", &access)).await;
    assert_eq!(me.error_code(), "invalid_token", "refused at once");
    let rotated = call(
        &strict,
        Request::post("/token")
            .header(header::COOKIE, format!("__Host-refresh_token={refresh}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(rotated.error_code(), "invalid_refresh_token", "{}", rotated.text());
    rotated.assert_cookie_cleared();
    assert!(
        app.store.active_sessions(root.id, now(&app)).await.unwrap().is_empty(),
        "the session ended"
    );
}

#[tokio::test]
async fn turning_the_factor_on_ends_the_other_sessions() {
    let app = test_app!();
    let elsewhere = app.signed_in_ann().await;
    app.advance(1);
    let here = app.login("ann", PASSWORD).await;
    enable_totp(&app, &here.access_token()).await;
    let refused = app.refresh(&elsewhere.refresh_token()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.text());
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    assert_eq!(
        app.store.active_sessions(ann.id, now(&app)).await.unwrap().len(),
        1,
        "the enrolling session lives on"
    );
    app.auth.flush_audit(true).await;
    assert!(app.event_kinds().await.contains(&"password_only_sessions_ended".to_owned()));
}

#[tokio::test]
async fn a_gone_pending_login_clears_its_cookie_and_a_new_login_ends_the_old_one() {
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    let first = password_step(&app).await;
    // Signing in again from the same browser ends the login its cookie names.
    let again = app
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::COOKIE, &first)
                .body(Body::from(json!({ "username": "ann", "password": PASSWORD }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(again.error_code(), "second_factor_required");
    app.advance(31);
    let stale = second_step(&app, &first, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(stale.error_code(), "invalid_code");
    let cleared = set_cookie(&stale, MFA_COOKIE).expect("the dead login's cookie cleared");
    assert_eq!(cleared.max_age().map(|a| a.whole_seconds()), Some(0));
    // A wrong code for a login still waiting keeps its cookie.
    let second = format!("{MFA_COOKIE}={}", set_cookie(&again, MFA_COOKIE).unwrap().value());
    let wrong = second_step(&app, &second, &json!({ "code": "000000" })).await;
    assert_eq!(wrong.error_code(), "invalid_code");
    assert!(set_cookie(&wrong, MFA_COOKIE).is_none());
    let done = second_step(&app, &second, &json!({ "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text());
}

#[tokio::test]
async fn a_route_can_require_a_recent_second_factor_with_rfc_9470s_acr_values() {
    use axum::routing::get;
    use latchkey::RecentAuthentication;
    let app = test_app!();
    let (secret, _) = ann_with_totp(&app).await;
    async fn payout(RecentAuthentication(claims): RecentAuthentication<600, true>) -> String {
        claims.username
    }
    async fn profile(RecentAuthentication(claims): RecentAuthentication<600>) -> String {
        claims.username
    }
    let embedder = axum::Router::new()
        .route("/payout", get(payout))
        .route("/profile", get(profile))
        .with_state(app.auth.clone());

    // A password-only session passes the recent-password route only.
    app.auth.create_user("bob", PASSWORD, "user").await.unwrap();
    let bob = app.login("bob", PASSWORD).await.access_token();
    assert_eq!(call(&embedder, bearer(Method::GET, "/profile", &bob)).await.status, StatusCode::OK);
    let refused = call(&embedder, bearer(Method::GET, "/payout", &bob)).await;
    assert_eq!(refused.error_code(), "insufficient_user_authentication");
    let challenge = refused.header("www-authenticate").unwrap().to_owned();
    assert!(challenge.contains(r#"acr_values="mfa""#), "{challenge}");
    assert!(challenge.contains("max_age=600"), "{challenge}");

    // ann, with both factors, passes; too long after, she is asked again.
    app.advance(31);
    let signed_in = both_steps(&app, &secret).await;
    let access = signed_in.access_token();
    let paid = call(&embedder, bearer(Method::GET, "/payout", &access)).await;
    assert_eq!(paid.status, StatusCode::OK, "{}", paid.text());
    app.advance(601);
    let stale = call(&embedder, bearer(Method::GET, "/payout", &access)).await;
    assert_eq!(stale.error_code(), "insufficient_user_authentication");
    // The recent-password route's challenge names no acr_values.
    let profile = call(&embedder, bearer(Method::GET, "/profile", &access)).await;
    assert!(!profile.header("www-authenticate").unwrap().contains("acr_values"));
}

#[tokio::test]
async fn at_most_a_hundred_wrong_codes_in_a_row_are_ever_checked() {
    // The decaying throttle out of the way: this is the cap that never decays.
    let app = Arc::new(test_app!(&[("THROTTLE_LOGIN_PAIR", "1000"), ("THROTTLE_LOGIN_ADDRESS", "1000")]));
    let (secret, codes) = ann_with_totp(&app).await;
    app.advance(31);
    let signed_in = both_steps(&app, &secret).await;
    let access = signed_in.access_token();
    // 120 wrong codes at once through step-up, each with the right password.
    let guesses: Vec<_> = (0..120)
        .map(|i| {
            let (app, access) = (app.clone(), access.clone());
            tokio::spawn(async move {
                step_up(&app, &access, &json!({ "password": PASSWORD, "code": format!("{:06}", 999_000 + i) })).await
                .error_code()
            })
        })
        .collect();
    let mut answers = std::collections::HashMap::<String, usize>::new();
    for guess in guesses {
        *answers.entry(guess.await.unwrap()).or_default() += 1;
    }
    // Every code counted is checked and wrong; the rest were refused
    // unchecked (or, at this rate, found the hashing queue full).
    let mut checked = answers.get("invalid_code").copied().unwrap_or(0);
    assert!(checked <= 100, "{answers:?}");
    for code in answers.keys() {
        assert!(
            ["invalid_code", "second_factor_locked", "server_busy"].contains(&code.as_str()),
            "{answers:?}"
        );
    }
    // One at a time up to the cap: exactly 100 are ever checked.
    while checked < 100 {
        let guess = step_up(&app, &access, &json!({ "password": PASSWORD, "code": "999999" })).await;
        assert_eq!(guess.error_code(), "invalid_code", "after {checked}");
        checked += 1;
    }
    // However long one waits (past the throttle's hour), and even with the
    // right code.
    app.advance(7_200);
    let access = app.refresh(&signed_in.refresh_token()).await.access_token();
    let right = step_up(&app, &access, &json!({ "password": PASSWORD, "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(right.status, StatusCode::FORBIDDEN, "{}", right.text());
    assert_eq!(right.error_code(), "second_factor_locked");
    // A recovery code still works.
    let recovered = step_up(&app, &access, &json!({ "password": PASSWORD, "recovery_code": codes[0] })).await;
    assert_eq!(recovered.status, StatusCode::OK, "{}", recovered.text());
    // And sets the count back: codes are checked again.
    let unlocked = step_up(&app, &recovered.access_token(), &json!({ "password": PASSWORD, "code": totp_code(&secret, now(&app)) })).await;
    assert_eq!(unlocked.status, StatusCode::OK, "{}", unlocked.text());
    let metrics = app.auth.metrics_text();
    assert!(metrics.contains(r#"latchkey_second_factor_checks_total{outcome="rejected"}"#), "{metrics}");
    assert!(metrics.contains(r#"latchkey_second_factor_checks_total{outcome="recovery_code_accepted"} 1"#), "{metrics}");
}

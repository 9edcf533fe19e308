//! Limits that hold under attack (README, "Limits under attack"): guesses
//! sent all at once, floods from one address, other people's guesses against
//! an owner, races between a login and a password change, floods of
//! rejected requests, and cookies planted beside the real one.

use std::sync::Arc;

use axum::http::{Request, StatusCode, header};
use jsonwebtoken::{EncodingKey, Header};
use latchkey::Auth;
use latchkey::store::{NewUser, PasswordChange};
use serde_json::json;
use tokio::task::JoinSet;

use crate::helpers::*;

const REFRESH_COOKIE: &str = "__Host-refresh_token";
const DEVICE_COOKIE: &str = "__Host-device";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// `POST /login` over a real socket, as from `forwarded_for` (the server
/// trusts its loopback peer as a proxy); the status and the error code.
async fn login_over_socket(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    password: &str,
    forwarded_for: &str,
) -> (StatusCode, String) {
    let response = client
        .post(url)
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .expect("request reaches the server");
    let status = StatusCode::from_u16(response.status().as_u16()).expect("status");
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or_default().to_owned())
}

/// Sends `requests` at once; returns each answer's status and error code.
async fn all_at_once<F, Fut>(requests: usize, send: F) -> Vec<(StatusCode, String)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (StatusCode, String)> + Send + 'static,
{
    let mut set = JoinSet::new();
    for i in 0..requests {
        set.spawn(send(i));
    }
    let mut answers = Vec::new();
    while let Some(answer) = set.join_next().await {
        answers.push(answer.expect("request task"));
    }
    answers
}

fn count(answers: &[(StatusCode, String)], status: StatusCode) -> usize {
    answers.iter().filter(|(s, _)| *s == status).count()
}

/// Every answer is one of `allowed`.
fn assert_only(answers: &[(StatusCode, String)], allowed: &[StatusCode]) {
    for (status, code) in answers {
        assert!(allowed.contains(status), "unexpected {status} {code}");
    }
}

/// A login through the router as from `forwarded_for` (the harness's peer
/// is trusted as a proxy in these tests), with extra cookies.
fn login_request(username: &str, password: &str, forwarded_for: &str, cookie: Option<&str>) -> Request<axum::body::Body> {
    let mut request = Request::post("/login")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-forwarded-for", forwarded_for);
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request
        .body(
            json!({ "username": username, "password": password })
                .to_string()
                .into(),
        )
        .unwrap()
}

fn set_cookie(response: &TestResponse, name: &str) -> Option<String> {
    response
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

// ---------------------------------------------------------------------------
// Reserve before work: requests at the same instant never verify more than
// the allowance.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_wrong_passwords_at_once_for_one_account_verify_only_the_pair_allowance() {
    let app = test_app!(&[("TRUSTED_PROXIES", "127.0.0.1")]);
    app.add_user("ann", PASSWORD).await;
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/login");
    let before = app.auth.hasher().verifications();

    let answers = all_at_once(40, |_| {
        let (client, url) = (client.clone(), url.clone());
        async move { login_over_socket(&client, &url, "ann", "wrong guess!", "198.51.100.7").await }
    })
    .await;

    assert_eq!(app.auth.hasher().verifications() - before, 5, "THROTTLE_LOGIN_PAIR");
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 5);
    assert_only(
        &answers,
        &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_guesses_at_once_from_one_address_verify_only_the_address_allowance() {
    let app = test_app!(&[("TRUSTED_PROXIES", "127.0.0.1")]);
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/login");
    let before = app.auth.hasher().verifications();

    let answers = all_at_once(200, |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            login_over_socket(&client, &url, &format!("user{i}"), "wrong guess!", "198.51.100.7")
                .await
        }
    })
    .await;

    assert_eq!(app.auth.hasher().verifications() - before, 30, "THROTTLE_LOGIN_ADDRESS");
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 30);
    assert_only(
        &answers,
        &[StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS],
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_wrong_current_passwords_at_once_verify_only_the_pair_allowance() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/password");
    let before = app.auth.hasher().verifications();

    let answers = all_at_once(50, |_| {
        let (client, url, access) = (client.clone(), url.clone(), access.clone());
        async move {
            let response = client
                .post(&url)
                .bearer_auth(&access)
                .json(&json!({ "current_password": "wrong guess!", "new_password": NEW_PASSWORD }))
                .send()
                .await
                .expect("request reaches the server");
            (
                StatusCode::from_u16(response.status().as_u16()).unwrap(),
                String::new(),
            )
        }
    })
    .await;

    assert_eq!(app.auth.hasher().verifications() - before, 5);
    assert_eq!(count(&answers, StatusCode::FORBIDDEN), 5, "wrong_current_password");
    assert_only(&answers, &[StatusCode::FORBIDDEN, StatusCode::TOO_MANY_REQUESTS]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forty_sign_ups_at_once_from_one_address_create_only_the_allowance() {
    let app = test_app!(&[("TRUSTED_PROXIES", "127.0.0.1")]);
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();
    let url = server.url("/register");

    let answers = all_at_once(40, |i| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .post(&url)
                .header("x-forwarded-for", "198.51.100.7")
                .json(&json!({ "username": format!("bot{i}"), "password": PASSWORD }))
                .send()
                .await
                .expect("request reaches the server");
            (
                StatusCode::from_u16(response.status().as_u16()).unwrap(),
                String::new(),
            )
        }
    })
    .await;

    assert_eq!(count(&answers, StatusCode::CREATED), 10, "THROTTLE_REGISTER_ADDRESS");
    assert_only(&answers, &[StatusCode::CREATED, StatusCode::TOO_MANY_REQUESTS]);
    let mut created = 0;
    for i in 0..40 {
        if app.store.user_by_name(&format!("bot{i}")).await.unwrap().is_some() {
            created += 1;
        }
    }
    assert_eq!(created, 10);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wrong_guesses_split_across_two_instances_verify_only_the_allowance_in_all() {
    let app = test_app!(&[("TRUSTED_PROXIES", "127.0.0.1")]);
    app.add_user("ann", PASSWORD).await;
    // A second instance: its own process state (hasher, admission), the same database.
    let config = config_from(&app.vars).unwrap();
    let other_store = TestStore::open(&config.database).await;
    let other = Auth::with_clock(config, other_store.shared(), Arc::new(app.clock.clone())).expect("secrets set");
    let servers = [
        TestServer::start(app.auth.clone()).await,
        TestServer::start(other.clone()).await,
    ];
    let urls: Vec<String> = servers.iter().map(|s| s.url("/login")).collect();
    let client = reqwest::Client::new();
    let before = app.auth.hasher().verifications() + other.hasher().verifications();

    let answers = all_at_once(40, |i| {
        let (client, url) = (client.clone(), urls[i % 2].clone());
        async move { login_over_socket(&client, &url, "ann", "wrong guess!", "198.51.100.7").await }
    })
    .await;

    let verified = app.auth.hasher().verifications() + other.hasher().verifications() - before;
    assert_eq!(verified, 5, "THROTTLE_LOGIN_PAIR across instances");
    assert_eq!(count(&answers, StatusCode::UNAUTHORIZED), 5);
    for server in servers {
        server.stop().await;
    }
    other_store.close().await;
}

// ---------------------------------------------------------------------------
// Bounded hashing.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flooding_address_holds_at_most_one_place_per_hashing_thread() {
    let app = Arc::new(test_app!(&[
        ("TRUSTED_PROXIES", "203.0.113.7"),
        ("THROTTLE_LOGIN_ADDRESS", "1000"),
        ("THROTTLE_LOGIN_ACCOUNT", "1000"),
        ("THROTTLE_LOGIN_PAIR", "1000"),
    ]));
    app.add_user("ann", PASSWORD).await;
    let places = app.auth.hasher().threads();
    // Unknown users are checked against the dummy hash: make it before holding.
    app.auth.hasher().warm_up().await.unwrap();
    let hold = app.auth.hasher().hold();

    let mut flood = JoinSet::new();
    for i in 0..50 {
        let app = app.clone();
        flood.spawn(async move {
            app.send(login_request(&format!("victim{i}"), "wrong guess!", "198.51.100.7", None))
                .await
                .status
        });
    }
    wait_for_hash_queue(&app.auth, places).await;
    let owner = {
        let app = app.clone();
        tokio::spawn(async move { app.send(login_request("ann", PASSWORD, "203.0.113.9", None)).await })
    };
    // The owner's check is queued right behind the flood's few.
    wait_for_hash_queue(&app.auth, places + 1).await;
    assert_eq!(
        app.auth.hasher().pending(),
        places + 1,
        "the flood queued more than one check per hashing thread"
    );

    drop(hold);
    assert_eq!(owner.await.unwrap().status, StatusCode::OK);
    while let Some(status) = flood.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_hashing_queue_answers_server_busy_with_retry_after() {
    let app = Arc::new(test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]));
    let capacity = app.auth.hasher().capacity();
    app.auth.hasher().warm_up().await.unwrap();
    let hold = app.auth.hasher().hold();

    let mut logins = JoinSet::new();
    for i in 0..capacity + 5 {
        let app = app.clone();
        // Every login from its own address and for its own account.
        logins.spawn(async move {
            app.send(login_request(&format!("user{i}"), "wrong guess!", &format!("198.51.{}.{}", i / 200, i % 200 + 1), None))
                .await
        });
    }
    // While the queue is full and held, the overflow is answered at once.
    for _ in 0..5 {
        let busy = logins.join_next().await.unwrap().unwrap();
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.error_code(), "server_busy");
        assert_eq!(busy.header("retry-after"), Some("1"));
    }
    assert_eq!(app.auth.hasher().pending(), capacity);
    drop(hold);
    while let Some(login) = logins.join_next().await {
        assert_eq!(login.unwrap().status, StatusCode::UNAUTHORIZED);
    }
}

// ---------------------------------------------------------------------------
// Device cookies: other people's guesses never lock the owner out.

#[tokio::test]
async fn guesses_from_many_addresses_do_not_lock_out_the_owner_on_a_known_device() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
    app.add_user("ann", PASSWORD).await;
    let first = app.send(login_request("ann", PASSWORD, "203.0.113.9", None)).await;
    assert_eq!(first.status, StatusCode::OK);
    let device = set_cookie(&first, DEVICE_COOKIE).expect("a device cookie after login");
    let device_cookie = format!("{DEVICE_COOKIE}={device}");

    // 55 wrong guesses over 11 addresses: past the account's allowance (50).
    for address in 0..11 {
        for _ in 0..5 {
            let guess = app
                .send(login_request("ann", "wrong guess!", &format!("198.51.100.{address}"), None))
                .await;
            assert!(
                [StatusCode::UNAUTHORIZED, StatusCode::TOO_MANY_REQUESTS].contains(&guess.status),
                "{}",
                guess.status
            );
        }
    }
    let stranger = app.send(login_request("ann", PASSWORD, "192.0.2.1", None)).await;
    assert_eq!(stranger.status, StatusCode::TOO_MANY_REQUESTS, "no device cookie: the account lockout applies");

    let owner = app
        .send(login_request("ann", PASSWORD, "203.0.113.9", Some(&device_cookie)))
        .await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.text());
}

#[tokio::test]
async fn a_device_cookie_is_judged_by_its_own_failures_and_only_for_its_account() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let first = app.send(login_request("ann", PASSWORD, "203.0.113.9", None)).await;
    let device_cookie = format!("{DEVICE_COOKIE}={}", set_cookie(&first, DEVICE_COOKIE).unwrap());

    for _ in 0..5 {
        let guess = app
            .send(login_request("ann", "wrong guess!", "203.0.113.9", Some(&device_cookie)))
            .await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let locked = app
        .send(login_request("ann", PASSWORD, "203.0.113.9", Some(&device_cookie)))
        .await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "the device's own allowance is spent");

    // Ann's device cookie says nothing about bob: his login is judged as any other.
    let bob = app
        .send(login_request("bob", PASSWORD, "203.0.113.10", Some(&device_cookie)))
        .await;
    assert_eq!(bob.status, StatusCode::OK);
}

/// `n` device cookies of ann's, from `n` logins without one, as someone who
/// could sign in would stockpile them (oldest first); and the last login.
async fn stockpile_device_cookies(app: &TestApp, n: usize) -> (Vec<String>, TestResponse) {
    let mut cookies = Vec::new();
    let mut last = None;
    for _ in 0..n {
        app.advance(1);
        let login = app.send(login_request("ann", PASSWORD, "203.0.113.9", None)).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text());
        cookies.push(format!("{DEVICE_COOKIE}={}", set_cookie(&login, DEVICE_COOKIE).unwrap()));
        last = Some(login);
    }
    (cookies, last.unwrap())
}

/// Wrong guesses at ann's password from one address, taking the cookies in
/// turn, until the first `429`: how many were checked (at most `limit`).
async fn guesses_before_refusal(app: &TestApp, cookies: &[String], limit: usize) -> usize {
    for i in 0..limit {
        let cookie = cookies.get(i % cookies.len().max(1)).map(String::as_str);
        let guess = app.send(login_request("ann", "wrong guess!", "198.51.100.77", cookie)).await;
        match guess.status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => return i,
            other => panic!("guess {i}: {other} {}", guess.text()),
        }
    }
    limit
}

#[tokio::test]
async fn stockpiled_device_cookies_buy_nothing_once_the_password_changes() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
    app.add_user("ann", PASSWORD).await;
    let (cookies, last) = stockpile_device_cookies(&app, 12).await;

    // The owner's remedy: a new password.
    let changed = app
        .send(
            Request::post("/password")
                .header(header::AUTHORIZATION, format!("Bearer {}", last.access_token()))
                .header(header::CONTENT_TYPE, "application/json")
                .body(json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }).to_string().into())
                .unwrap(),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());

    // Twelve cookies issued before the change: judged as no cookie at all,
    // so the pair limit (5) holds, not 12 devices' worth of guesses.
    assert_eq!(guesses_before_refusal(&app, &cookies, 60).await, 5);
}

#[tokio::test]
async fn an_operator_reset_or_a_disable_ends_the_exemption_too() {
    for action in ["none", "reset", "mailed reset", "disable"] {
        let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
        let ann = app.add_user("ann", PASSWORD).await;
        let (cookies, _) = stockpile_device_cookies(&app, 1).await;
        match action {
            "reset" => {
                let hash = app.store.user_by_id(ann.id).await.unwrap().unwrap().password_hash;
                app.store.set_password_hash(ann.id, &hash, START).await.unwrap();
            }
            "mailed reset" => {
                // A reset link (README, "Account recovery") from the
                // development outbox, used to set the same password again.
                app.auth.set_email(&ann, "ann@example.com", true).await.unwrap();
                app.auth.forgot_password("ann", &latchkey::ClientInfo::default());
                app.auth.settled().await;
                assert_eq!(app.auth.deliver_mail().await.unwrap(), 1);
                let mails = outbox_mails(std::path::Path::new(&app.vars["MAIL_OUTBOX_DIR"]));
                let token = crate::helpers::smtp::link_token(mails.last().unwrap());
                let reset = app
                    .send(
                        Request::post("/password/reset")
                            .header(header::CONTENT_TYPE, "application/json")
                            .body(json!({ "token": token, "password": PASSWORD }).to_string().into())
                            .unwrap(),
                    )
                    .await;
                assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.text());
            }
            "disable" => {
                app.store.disable_user(ann.id, START).await.unwrap();
                assert!(app.store.enable_user(ann.id).await.unwrap());
            }
            _ => {}
        }
        // Spend the allowance of one address without a cookie; then the
        // right password with the cookie: a device that counts gets in.
        assert_eq!(guesses_before_refusal(&app, &[], 20).await, 5, "{action}");
        let with_cookie = app
            .send(login_request("ann", PASSWORD, "198.51.100.77", Some(&cookies[0])))
            .await;
        let expected = if action == "none" { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
        assert_eq!(with_cookie.status, expected, "{action}: {}", with_cookie.text());
    }
}

#[tokio::test]
async fn a_thief_holding_the_session_busy_cannot_hide_it_from_reuse_detection() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let owner = app.login("ann", PASSWORD).await.refresh_token();
    // The thief refreshes the stolen copy first, then keeps at it until the
    // session's refresh limit refuses.
    let mut thief = app.refresh(&owner).await.refresh_token();
    app.advance(11); // past REFRESH_REUSE_GRACE: the owner's token is now a copy
    loop {
        let answer = app.refresh(&thief).await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        thief = answer.refresh_token();
    }
    // The owner's next refresh is refused by the limit no more than any
    // reuse is: the session ends, for the thief too.
    let owner_answer = app.refresh(&owner).await;
    assert_eq!(owner_answer.status, StatusCode::UNAUTHORIZED, "{}", owner_answer.text());
    assert_eq!(owner_answer.error_code(), "refresh_token_reused");
    app.advance(60);
    assert_eq!(app.refresh(&thief).await.error_code(), "invalid_refresh_token");
}

#[tokio::test]
async fn an_account_keeps_its_ten_most_recent_devices() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
    app.add_user("ann", PASSWORD).await;
    let (cookies, _) = stockpile_device_cookies(&app, 11).await;
    // Spend the pair allowance of one address, without a cookie.
    assert_eq!(guesses_before_refusal(&app, &[], 20).await, 5);
    let with = |cookie: &str| login_request("ann", PASSWORD, "198.51.100.77", Some(cookie));
    // The oldest device was pushed out by the eleventh: no exemption.
    let oldest = app.send(with(&cookies[0])).await;
    assert_eq!(oldest.status, StatusCode::TOO_MANY_REQUESTS, "{}", oldest.text());
    // The ten most recent still count.
    for cookie in &cookies[1..] {
        let login = app.send(with(cookie)).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    }
}

#[tokio::test]
async fn device_holders_together_meet_an_account_wide_limit() {
    // The devices' shared allowance is twice the account's: 10 here.
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7"), ("THROTTLE_LOGIN_ACCOUNT", "5")]);
    app.add_user("ann", PASSWORD).await;
    let (cookies, _) = stockpile_device_cookies(&app, 3).await;
    // Three devices of five guesses each would be 15.
    assert_eq!(guesses_before_refusal(&app, &cookies, 30).await, 10);
}

// ---------------------------------------------------------------------------
// Credential changes win every race: a login held at its password check
// while the credentials change must not leave a session.

/// Starts ann's login and holds it at its password check; returns the
/// pending login and the guard holding it.
async fn login_held_at_its_password_check(
    app: &Arc<TestApp>,
    password: &'static str,
) -> (
    tokio::task::JoinHandle<TestResponse>,
    latchkey::testing::HoldGuard,
) {
    let hold = app.auth.hasher().hold();
    let pending = {
        let app = app.clone();
        tokio::spawn(async move { app.login("ann", password).await })
    };
    wait_for_hash_queue(&app.auth, 1).await;
    (pending, hold)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_checked_the_old_password_and_finishes_after_a_change_gets_401_and_no_session() {
    let app = Arc::new(test_app!());
    let ann = app.add_user("ann", PASSWORD).await;
    let (login, hold) = login_held_at_its_password_check(&app, PASSWORD).await;

    let new_hash = bcrypt::hash(NEW_PASSWORD, 4).unwrap();
    let changed = app
        .store
        .change_password(PasswordChange {
            user_id: ann.id,
            verified_hash: &ann.password_hash,
            new_hash: &new_hash,
            keep_session: None,
            now: START,
        })
        .await
        .unwrap();
    assert_eq!(changed, Some(0));
    drop(hold);

    let login = login.await.unwrap();
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.text());
    assert!(set_cookie(&login, REFRESH_COOKIE).is_none());
    assert!(app.store.active_sessions(ann.id, START).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_that_finishes_after_the_account_is_disabled_gets_401_and_no_session() {
    let app = Arc::new(test_app!());
    let ann = app.add_user("ann", PASSWORD).await;
    let (login, hold) = login_held_at_its_password_check(&app, PASSWORD).await;

    app.auth.disable_user(&ann).await.unwrap();
    drop(hold);

    let login = login.await.unwrap();
    assert_eq!(login.status, StatusCode::UNAUTHORIZED);
    assert!(app.store.active_sessions(ann.id, START).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hash_upgrade_never_writes_the_old_password_over_a_new_one() {
    // Stored at cost 4, configured at 5: the login upgrades the hash.
    let app = Arc::new(test_app!(&[("BCRYPT_COST", "5")]));
    let old_hash = bcrypt::hash(PASSWORD, 4).unwrap();
    let ann = app
        .store
        .create_user(
            NewUser {
                username: "ann",
                password_hash: &old_hash,
                role: "user",
                email: None,
            },
            START,
        )
        .await
        .unwrap();
    let (login, hold) = login_held_at_its_password_check(&app, PASSWORD).await;

    let new_hash = bcrypt::hash(NEW_PASSWORD, 4).unwrap();
    app.store
        .change_password(PasswordChange {
            user_id: ann.id,
            verified_hash: &old_hash,
            new_hash: &new_hash,
            keep_session: None,
            now: START,
        })
        .await
        .unwrap();
    drop(hold);
    assert_eq!(login.await.unwrap().status, StatusCode::UNAUTHORIZED);

    let stored = app.store.user_by_id(ann.id).await.unwrap().unwrap();
    assert_eq!(stored.password_hash, new_hash, "the upgrade overwrote the new password");
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("ann", NEW_PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_session_created_before_a_password_change_can_no_longer_rotate() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let ann = app.store.user_by_name("ann").await.unwrap().unwrap();
    app.store
        .set_password_hash(ann.id, &bcrypt::hash(NEW_PASSWORD, 4).unwrap(), START)
        .await
        .unwrap();
    let refused = app.refresh(&refresh).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "invalid_refresh_token");
}

// ---------------------------------------------------------------------------
// Rejected requests cost little.

/// The audit rows of `kind`, after the counts of the minute are written.
async fn rows_of(app: &TestApp, kind: &str) -> Vec<latchkey::store::AuditEvent> {
    app.auth.flush_audit(true).await;
    audit_events(&*app.store)
        .await
        .into_iter()
        .filter(|e| e.kind == kind)
        .collect()
}

#[tokio::test]
async fn a_thousand_cross_origin_refreshes_leave_one_row_counting_a_thousand() {
    let app = test_app!();
    for _ in 0..1000 {
        let refused = app
            .send(
                Request::post("/token")
                    .header(header::ORIGIN, "https://evil.example")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
    }
    let rows = rows_of(&app, "origin_rejected").await;
    assert!(rows.len() <= 2, "{} rows", rows.len());
    assert_eq!(rows.iter().map(|e| e.count).sum::<i64>(), 1000);
}

#[tokio::test]
async fn a_thousand_throttled_logins_and_sign_ups_leave_a_row_each_counting_them() {
    let app = test_app!(&[
        ("THROTTLE_LOGIN_PAIR", "1"),
        ("THROTTLE_REGISTER_ADDRESS", "1"),
    ]);
    app.add_user("ann", PASSWORD).await;
    assert_eq!(app.login("ann", "wrong guess!").await.status, StatusCode::UNAUTHORIZED);
    let register = |i: usize| {
        json_post(
            "/register",
            &json!({ "username": format!("bot{i}"), "password": PASSWORD }),
        )
    };
    assert_eq!(app.send(register(0)).await.status, StatusCode::CREATED);
    for i in 1..=1000 {
        assert_eq!(app.login("ann", "wrong guess!").await.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(app.send(register(i)).await.status, StatusCode::TOO_MANY_REQUESTS);
    }
    for kind in ["login_throttled", "registration_throttled"] {
        let rows = rows_of(&app, kind).await;
        assert!(rows.len() <= 2, "{kind}: {} rows", rows.len());
        assert_eq!(rows.iter().map(|e| e.count).sum::<i64>(), 1000, "{kind}");
    }
}

#[tokio::test]
async fn counts_of_rejections_are_kept_per_address_and_minute() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.7")]);
    let cross_origin = |address: &str| {
        Request::post("/logout")
            .header(header::ORIGIN, "https://evil.example")
            .header("x-forwarded-for", address)
            .body(axum::body::Body::empty())
            .unwrap()
    };
    for _ in 0..3 {
        app.send(cross_origin("198.51.100.1")).await;
        app.send(cross_origin("198.51.100.2")).await;
    }
    app.advance(60);
    app.send(cross_origin("198.51.100.1")).await;
    let mut rows: Vec<_> = rows_of(&app, "origin_rejected")
        .await
        .into_iter()
        .map(|e| (e.ip.unwrap(), e.at, e.count))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("198.51.100.1".to_owned(), START, 3),
            ("198.51.100.1".to_owned(), START + 60, 1),
            ("198.51.100.2".to_owned(), START, 3),
        ]
    );
}

// ---------------------------------------------------------------------------
// Sessions per user, planted cookies, expired refresh tokens, IPv6.

#[tokio::test]
async fn a_login_beyond_max_sessions_per_user_ends_the_least_recently_used_session() {
    let app = test_app!(&[("MAX_SESSIONS_PER_USER", "3")]);
    app.add_user("ann", PASSWORD).await;
    let mut cookies = Vec::new();
    for _ in 0..3 {
        cookies.push(app.login("ann", PASSWORD).await.refresh_token());
        app.advance(1);
    }
    // The first session is used again; the second is now the least recent.
    cookies[0] = app.refresh(&cookies[0]).await.refresh_token();
    app.advance(1);
    let fourth = app.login("ann", PASSWORD).await;
    assert_eq!(fourth.status, StatusCode::OK);

    let evicted = app.refresh(&cookies[1]).await;
    assert_eq!(evicted.status, StatusCode::UNAUTHORIZED);
    for live in [&cookies[0], &cookies[2], &fourth.refresh_token()] {
        assert_eq!(app.refresh(live).await.status, StatusCode::OK);
    }
    let access = fourth.access_token();
    let listed = app.get_with_bearer("/sessions", &access).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(app.event_kinds().await.contains(&"session_evicted".to_owned()));
}

#[tokio::test]
async fn a_login_after_the_cap_was_lowered_ends_and_audits_each_session_beyond_it() {
    let app = test_app!(&[("MAX_SESSIONS_PER_USER", "40")]);
    app.add_user("ann", PASSWORD).await;
    let mut cookies = Vec::new();
    for _ in 0..30 {
        cookies.push(app.login("ann", PASSWORD).await.refresh_token());
        app.advance(1);
    }
    // The operator lowers the cap: the next login keeps itself and the
    // four most recently used, and ends the other 26, each on record.
    let lowered = app.restarted(&[("MAX_SESSIONS_PER_USER", "5")]);
    let body = json!({ "username": "ann", "password": PASSWORD });
    let login = call(&lowered, json_post("/login", &body)).await;
    assert_eq!(login.status, StatusCode::OK);

    let evicted: Vec<_> = audit_events(&*app.store)
        .await
        .into_iter()
        .filter(|e| e.kind == "session_evicted")
        .collect();
    assert_eq!(evicted.len(), 26);
    let ids: std::collections::HashSet<_> =
        evicted.iter().map(|e| e.session_id.clone()).collect();
    assert_eq!(ids.len(), 26, "one event per session");
    assert!(evicted.iter().all(|e| e.username.as_deref() == Some("ann") && e.count == 1));
    for ended in &cookies[..26] {
        assert_eq!(app.refresh(ended).await.status, StatusCode::UNAUTHORIZED);
    }
    for kept in &cookies[26..] {
        assert_eq!(app.refresh(kept).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn logout_with_several_refresh_cookies_ends_every_genuine_session_among_them() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let first = app.login("ann", PASSWORD).await.refresh_token();
    let second = app.login("ann", PASSWORD).await.refresh_token();
    let response = app
        .send(
            Request::post("/logout")
                .header(
                    header::COOKIE,
                    format!("{REFRESH_COOKIE}=forged; {REFRESH_COOKIE}={first}; {REFRESH_COOKIE}={second}"),
                )
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status, StatusCode::NO_CONTENT);
    response.assert_cookie_cleared();
    for token in [first, second] {
        assert_eq!(app.refresh(&token).await.status, StatusCode::UNAUTHORIZED);
    }
}

/// A refresh token for `sid` at `generation`, signed with the test secret,
/// expiring at `exp`.
fn refresh_token(app: &TestApp, sid: &str, sub: &str, generation: i64, exp: i64) -> String {
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("latchkey-rt+jwt".into());
    let claims = json!({
        "iss": "latchkey", "aud": "latchkey:refresh", "sub": sub, "sid": sid,
        "gen": generation, "iat": START - 10, "exp": exp,
    });
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_secret(app.vars["JWT_REFRESH_SECRET"].as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn a_refresh_token_past_its_own_expiry_is_never_exchanged() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let real = login.refresh_token();
    let access = login.access_token();
    let me = app.get_with_bearer("/me", &access).await.json();
    let sid = me["session_id"].as_str().unwrap().to_owned();
    let sub = me["user"]["id"].as_str().unwrap().to_owned();

    // The current chain position, but an `exp` already past.
    let expired = refresh_token(&app, &sid, &sub, 0, START - 1);
    let refused = app.refresh(&expired).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "invalid_refresh_token");
    // Refusing it ended nothing: the genuine cookie still rotates.
    assert_eq!(app.refresh(&real).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ipv6_clients_of_one_64_share_one_address_allowance() {
    let app = test_app!(&[
        ("TRUSTED_PROXIES", "203.0.113.7"),
        ("THROTTLE_LOGIN_ADDRESS", "3"),
    ]);
    for i in 0..3 {
        let guess = app
            .send(login_request(&format!("user{i}"), "wrong guess!", &format!("2001:db8:7:7::{i:x}"), None))
            .await;
        assert_eq!(guess.status, StatusCode::UNAUTHORIZED);
    }
    let next = app
        .send(login_request("user9", "wrong guess!", "2001:db8:7:7:ffff::1", None))
        .await;
    assert_eq!(next.status, StatusCode::TOO_MANY_REQUESTS);
    let elsewhere = app
        .send(login_request("user9", "wrong guess!", "2001:db8:7:8::1", None))
        .await;
    assert_eq!(elsewhere.status, StatusCode::UNAUTHORIZED);
}

//! Account recovery and verified addresses (README, "Account recovery"),
//! through a real SMTP server (aiosmtpd, STARTTLS with a certificate made by
//! the test): the tests read each delivered mail, follow its link, and check
//! what it may and may not do.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::smtp::{SmtpServer, header, link_token};
use crate::helpers::*;

const NEW_PASSWORD: &str = "a brand new passphrase";

/// An app of the suite's store whose mail goes to `smtp` over STARTTLS.
macro_rules! mail_app {
    ($smtp:expr) => {
        mail_app!($smtp, &[])
    };
    ($smtp:expr, $more:expr) => {{
        let vars = $smtp.starttls_vars();
        let mut overrides: Vec<(&str, &str)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        overrides.push(("PUBLIC_ORIGIN", "https://auth.example.com"));
        overrides.extend_from_slice($more);
        Arc::new(test_app!(&overrides))
    }};
}

/// Sends what is due, after the work requests left behind; the mails the
/// relay holds.
async fn deliver(app: &TestApp, smtp: &SmtpServer) -> Vec<String> {
    app.auth.settled().await;
    app.auth.deliver_mail().await.expect("the store answers");
    smtp.delivered()
}

/// `ann`, signed up with `ann@example.com`, verified by its mailed link.
async fn ann_with_verified_address(app: &TestApp, smtp: &SmtpServer) {
    let body = json!({ "username": "ann", "password": PASSWORD, "email": "Ann@Example.com" });
    let created = app.send(json_post("/register", &body)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let mails = deliver(app, smtp).await;
    let mail = mails.last().expect("a verification mail");
    assert_eq!(header(mail, "To"), Some("ann@example.com"));
    let verified = verify(app, &link_token(mail)).await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.text());
}

async fn forgot(app: &TestApp, login: &str) -> TestResponse {
    app.send(json_post("/password/forgot", &json!({ "login": login })))
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> TestResponse {
    let body = json!({ "token": token, "password": password });
    app.send(json_post("/password/reset", &body)).await
}

async fn verify(app: &TestApp, token: &str) -> TestResponse {
    app.send(json_post("/email/verify", &json!({ "token": token })))
        .await
}

/// `PUT /me/email` with `access`.
async fn change_email(app: &TestApp, access: &str, email: &str) -> TestResponse {
    let mut request = bearer(Method::PUT, "/me/email", access);
    *request.body_mut() = axum::body::Body::from(json!({ "email": email }).to_string());
    request.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        "application/json".parse().unwrap(),
    );
    app.send(request).await
}

fn mails_to<'a>(mails: &'a [String], to: &str) -> Vec<&'a String> {
    mails
        .iter()
        .filter(|m| header(m, "To") == Some(to))
        .collect()
}

#[tokio::test]
async fn a_reset_link_sets_a_new_password_once_and_ends_every_session() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    let first = app.login("ann", PASSWORD).await;
    let second = app.login("ann", PASSWORD).await;

    let asked = forgot(&app, "ANN@example.com").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text());
    let mails = deliver(&app, &smtp).await;
    let mail = mails.last().unwrap();
    assert_eq!(header(mail, "Subject"), Some("Reset your latchkey password"));
    assert!(mail.contains("multipart/alternative"), "{mail}");
    // The link points at PUBLIC_ORIGIN, with its token in the fragment.
    assert!(
        mail.replace("=\r\n", "")
            .contains("https://auth.example.com/password/reset#token=3D"),
        "{mail}"
    );
    let token = link_token(mail);
    assert!(token.len() >= 22, "at least 128 bits: {token}");

    // A weak password is refused, and the link still works.
    let weak = reset(&app, &token, "password").await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(weak.error_code(), "weak_password");
    let done = reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::NO_CONTENT, "{}", done.text());
    assert!(done.refresh_cookie().is_none(), "a reset signs nobody in");

    // Every session ended: refresh cookies and access tokens alike.
    for login in [&first, &second] {
        let refreshed = app.refresh(&login.refresh_token()).await;
        assert_eq!(refreshed.status, StatusCode::UNAUTHORIZED);
        let me = app.get_with_bearer("/me", &login.access_token()).await;
        assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.login("ann", NEW_PASSWORD).await.status, StatusCode::OK);

    // Used once: unknown, used and expired answer alike.
    let again = reset(&app, &token, "another fine passphrase").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error_code(), "invalid_token");
    let made_up = reset(&app, "not-a-token-anybody-sent", "another fine passphrase").await;
    assert_eq!(made_up.status, StatusCode::BAD_REQUEST);
    assert_eq!(made_up.error_code(), "invalid_token");
    assert_eq!(made_up.json()["message"], again.json()["message"]);

    // Counted as README "Metrics" says: two mails queued and sent (the
    // verification, the reset), none failed, none waiting.
    let metrics = app.auth.metrics_text();
    for line in [
        "latchkey_mail_queued_total{kind=\"password_reset\"} 1",
        "latchkey_mail_queued_total{kind=\"email_verification\"} 1",
        "latchkey_mail_sent_total{kind=\"password_reset\"} 1",
        "latchkey_mail_failed_total{kind=\"password_reset\"} 0",
        "latchkey_mail_queue_age_seconds 0",
    ] {
        assert!(metrics.contains(line), "{line} in:\n{metrics}");
    }

    app.auth.flush_audit(true).await;
    let kinds = app.event_kinds().await;
    for kind in [
        "email_verified",
        "password_reset_requested",
        "mail_sent",
        "password_reset",
    ] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

#[tokio::test]
async fn the_store_keeps_no_usable_link() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    app.auth.settled().await;
    // Queued, not sent: what the store holds is an id and a hash.
    let queued = app.auth.unsent_mail(10).await.unwrap();
    assert_eq!(queued.len(), 1);
    let link_id = queued[0].link_id.clone().expect("a link");
    let mails = deliver(&app, &smtp).await;
    let token = link_token(mails.last().unwrap());
    assert!(token.starts_with(&link_id), "the token is rebuilt from its id");
    assert_ne!(token, link_id);
    // Sent: nothing of the mail is left.
    assert!(app.auth.unsent_mail(10).await.unwrap().is_empty());
    // Neither the token nor what rebuilds it (the link's id, with the key)
    // is left in any row of any table.
    let rows = every_row(&app).await;
    for row in &rows {
        assert!(!row.contains(&token), "the token is in {row}");
        assert!(!row.contains(&link_id), "the link's id is in {row}");
    }
}

#[tokio::test]
async fn a_reset_link_runs_out_and_a_password_change_ends_it() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    forgot(&app, "ann").await;
    let mails = deliver(&app, &smtp).await;
    let resets = mails_to(&mails, "ann@example.com");
    let (old, newer) = (
        link_token(resets[resets.len() - 2]),
        link_token(resets[resets.len() - 1]),
    );

    // Past RESET_TOKEN_TTL (1800 s): as unknown.
    app.advance(1801);
    let expired = reset(&app, &old, NEW_PASSWORD).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert_eq!(expired.error_code(), "invalid_token");

    // A fresh one dies with a password change.
    app.advance(3600);
    forgot(&app, "ann").await;
    let mails = deliver(&app, &smtp).await;
    let fresh = link_token(mails.last().unwrap());
    assert_ne!(fresh, newer);
    let login = app.login("ann", PASSWORD).await;
    let changed = app
        .change_password(&login.access_token(), PASSWORD, NEW_PASSWORD)
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    let dead = reset(&app, &fresh, "another fine passphrase").await;
    assert_eq!(dead.error_code(), "invalid_token");
}

/// Unknown, known without a verified address, known with one, and over
/// the allowance: the same status, body and headers, and no time apart.
#[tokio::test]
async fn asking_for_a_reset_tells_nothing_about_the_account() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    app.add_user("bob", PASSWORD).await;
    // carl has used up his hourly allowance.
    let body = json!({ "username": "carl", "password": PASSWORD, "email": "carl@example.com" });
    app.send(json_post("/register", &body)).await;
    deliver(&app, &smtp).await;
    let carl = app.auth.user_named("carl").await.unwrap().unwrap();
    app.auth
        .set_email(&carl, "carl@example.com", true)
        .await
        .unwrap();
    for _ in 0..3 {
        forgot(&app, "carl").await;
    }
    let before = deliver(&app, &smtp).await.len();

    let names = ["nobody-at-all", "bob", "ann", "carl"];
    let comparable = |r: &TestResponse| {
        let mut headers: Vec<String> = r
            .headers
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
            .map(|(name, value)| format!("{name}: {value:?}"))
            .collect();
        headers.sort();
        (r.status, r.text(), headers)
    };
    let first = comparable(&forgot(&app, names[0]).await);
    assert_eq!(first.0, StatusCode::ACCEPTED);
    // Rounds alternate the names, so that a machine's drift falls on all.
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..60 {
        for (i, name) in names.iter().enumerate() {
            app.auth.settled().await;
            let started = Instant::now();
            let answer = forgot(&app, name).await;
            times[i].push(started.elapsed());
            assert_eq!(comparable(&answer), first, "{name}");
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2].as_secs_f64()
        })
        .collect();
    let (fastest, slowest) = medians
        .iter()
        .fold((f64::MAX, 0.0_f64), |(lo, hi), m| (lo.min(*m), hi.max(*m)));
    // The work is after the answer: the answers take alike, whatever the
    // name. A lookup, a bcrypt or a mail queued before answering would be
    // many times the rest.
    assert!(
        slowest / fastest < 2.0,
        "median answer times by name {names:?}: {medians:?}"
    );
    // Only ann, who may, got mail: carl stayed over his allowance.
    let mails = deliver(&app, &smtp).await;
    assert!(mails.len() > before);
    let after: Vec<_> = mails[before..].iter().map(|m| header(m, "To")).collect();
    assert!(
        after.iter().all(|to| *to == Some("ann@example.com")),
        "{after:?}"
    );
    // ann's allowance of reset links (MAIL_PER_HOUR, 3); this client's (30
    // an hour) is spent long before the rounds end.
    assert_eq!(after.len(), 3, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_requests_at_the_same_instant_send_at_most_the_allowance() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    let before = smtp.delivered().len();
    let asked = awaited((0..50).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { forgot(&app, "ann").await.status })
    }))
    .await;
    assert!(asked.iter().all(|s| *s == StatusCode::ACCEPTED), "{asked:?}");
    let mails = deliver(&app, &smtp).await;
    // MAIL_PER_HOUR is 3 reset links an hour for the account.
    assert_eq!(mails.len() - before, 3, "{} mails", mails.len() - before);
}

/// What each task came to, in order.
async fn awaited<T>(tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_token_used_twice_at_the_same_instant_works_once() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    let token = link_token(deliver(&app, &smtp).await.last().unwrap());

    // Both pass the link check and wait on the hasher; released together,
    // both reach the store's one use of the link.
    let hold = app.auth.hasher().hold();
    let uses: Vec<_> = ["first passphrase here", "second passphrase here"]
        .into_iter()
        .map(|password| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { reset(&app, &token, password).await })
        })
        .collect();
    wait_for_hash_queue(&app.auth, 2).await;
    drop(hold);
    let mut statuses = Vec::new();
    for used in uses {
        let answer = used.await.unwrap();
        let code = if answer.status == StatusCode::NO_CONTENT {
            String::new()
        } else {
            answer.error_code()
        };
        statuses.push((answer.status, code));
    }
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (StatusCode::NO_CONTENT, String::new()),
            (StatusCode::BAD_REQUEST, "invalid_token".to_owned()),
        ]
    );
    let signed_in = [
        app.login("ann", "first passphrase here").await.status,
        app.login("ann", "second passphrase here").await.status,
    ];
    assert_eq!(
        signed_in.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{signed_in:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_racing_a_reset_with_the_old_password_leaves_no_session() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    let token = link_token(deliver(&app, &smtp).await.last().unwrap());
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();

    // The login has the old password checked, and waits on the hasher…
    let hold = app.auth.hasher().hold();
    let login = {
        let app = app.clone();
        tokio::spawn(async move { app.login("ann", PASSWORD).await })
    };
    wait_for_hash_queue(&app.auth, 1).await;
    // …while the reset lands (its own hash made outside the held pool).
    let new_hash = bcrypt::hash(NEW_PASSWORD, 4).unwrap();
    let hash: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(token.as_bytes()).into();
    let (_, ended) = app
        .store
        .use_reset_link(&hash, &new_hash, START)
        .await
        .unwrap()
        .expect("the link works");
    assert_eq!(ended, 0);
    drop(hold);

    let login = login.await.unwrap();
    assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{}", login.text());
    assert!(login.refresh_cookie().is_none());
    assert!(app.store.active_sessions(ann.id, START).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_address_is_verified_by_its_link_and_a_new_one_replaces_it_only_then() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "a verified address signs in");
    let access = login.access_token();
    let me = app.get_with_bearer("/me", &access).await.json();
    assert_eq!(me["email_verified"], true);

    let asked = change_email(&app, &access, "Ann@Example.org").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.text());
    let mails = deliver(&app, &smtp).await;
    let link = mails_to(&mails, "ann@example.org");
    assert_eq!(link.len(), 1);
    // Not the account's until verified: the old one still signs in.
    let me = app.get_with_bearer("/me", &access).await.json();
    assert_eq!(me["email"], "ann@example.com");

    let verified = verify(&app, &link_token(link[0])).await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT, "{}", verified.text());
    let me = app.get_with_bearer("/me", &access).await.json();
    assert_eq!(me["email"], "ann@example.org");
    assert_eq!(me["email_verified"], true);
    assert_eq!(app.login("ann@example.org", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The old address is told, and carries no link.
    let mails = deliver(&app, &smtp).await;
    let notices: Vec<_> = mails_to(&mails, "ann@example.com")
        .into_iter()
        .filter(|m| header(m, "Subject") == Some("Your latchkey account has a new email address"))
        .collect();
    assert_eq!(notices.len(), 1);
    assert!(!notices[0].contains("#token"));

    // Twice: as unknown.
    let again = verify(&app, &link_token(link[0])).await;
    assert_eq!(again.error_code(), "invalid_token");

    // Past REAUTH_MAX_AGE the change needs the password again.
    app.advance(601);
    let refused = change_email(&app, &access, "ann@example.net").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "insufficient_user_authentication");
}

#[tokio::test]
async fn a_newer_address_to_verify_supersedes_the_older_link() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    let body = json!({ "username": "ann", "password": PASSWORD, "email": "ann@example.com" });
    app.send(json_post("/register", &body)).await;
    let first = link_token(deliver(&app, &smtp).await.last().unwrap());
    let login = app.login("ann", PASSWORD).await;
    let resent = app
        .send(bearer(
            Method::POST,
            "/me/email/verification",
            &login.access_token(),
        ))
        .await;
    assert_eq!(resent.status, StatusCode::ACCEPTED, "{}", resent.text());
    let second = link_token(deliver(&app, &smtp).await.last().unwrap());
    assert_eq!(verify(&app, &first).await.error_code(), "invalid_token");
    assert_eq!(verify(&app, &second).await.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn without_a_mail_transport_recovery_is_not_there() {
    let app = test_app!(&[("APP_ENV", "production"), ("COOKIE_SECURE", "true")]);
    let access = app.signed_in_ann().await.access_token();
    for (method, path) in [
        ("GET", "/password/forgot"),
        ("POST", "/password/forgot"),
        ("GET", "/password/reset"),
        ("POST", "/password/reset"),
        ("GET", "/email/verify"),
        ("POST", "/email/verify"),
        ("PUT", "/me/email"),
        ("POST", "/me/email/verification"),
        ("GET", "/dev/outbox"),
    ] {
        let answer = app
            .send(
                axum::http::Request::builder()
                    .method(method)
                    .uri(path)
                    .header("authorization", format!("Bearer {access}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from("{}"))
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let login_page = app
        .send(
            axum::http::Request::get("/login")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    assert!(!login_page.text().contains("Forgot your password?"));
}

#[tokio::test]
async fn a_password_reset_or_change_ends_a_pending_address_change() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    // Someone in ann's session asks to move her account to their address…
    let login = app.login("ann", PASSWORD).await;
    let asked = change_email(&app, &login.access_token(), "mallory@example.net").await;
    assert_eq!(asked.status, StatusCode::ACCEPTED);
    let mails = deliver(&app, &smtp).await;
    let takeover = link_token(mails_to(&mails, "mallory@example.net")[0]);
    // …and ann resets her password: the pending change dies with it.
    forgot(&app, "ann").await;
    let mails = deliver(&app, &smtp).await;
    let reset_token = link_token(mails.last().unwrap());
    assert_eq!(reset(&app, &reset_token, NEW_PASSWORD).await.status, StatusCode::NO_CONTENT);
    let refused = verify(&app, &takeover).await;
    assert_eq!(refused.error_code(), "invalid_token");
    let me = app.login("ann", NEW_PASSWORD).await;
    let me = app.get_with_bearer("/me", &me.access_token()).await.json();
    assert_eq!(me["email"], "ann@example.com");
}

#[tokio::test]
async fn a_new_verified_address_ends_reset_links_sent_to_the_old_one() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    let old_link = link_token(deliver(&app, &smtp).await.last().unwrap());
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    let login = app.login("ann", PASSWORD).await;
    change_email(&app, &login.access_token(), "ann@example.org").await;
    let mails = deliver(&app, &smtp).await;
    let verified = verify(&app, &link_token(mails_to(&mails, "ann@example.org")[0])).await;
    assert_eq!(verified.status, StatusCode::NO_CONTENT);
    assert_eq!(reset(&app, &old_link, NEW_PASSWORD).await.error_code(), "invalid_token");
    // Disabling ends a fresh one too.
    forgot(&app, "ann").await;
    let fresh = link_token(deliver(&app, &smtp).await.last().unwrap());
    app.auth.disable_user(&ann).await.unwrap();
    app.auth.enable_user(&ann).await.unwrap();
    assert_eq!(reset(&app, &fresh, NEW_PASSWORD).await.error_code(), "invalid_token");
    // So does an operator's new address for the account.
    app.advance(3600);
    forgot(&app, "ann").await;
    let before_operator = link_token(deliver(&app, &smtp).await.last().unwrap());
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth.set_email(&ann, "ann@example.net", true).await.unwrap();
    assert_eq!(
        reset(&app, &before_operator, NEW_PASSWORD).await.error_code(),
        "invalid_token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reset_links_used_at_the_same_instant_set_one_password() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    forgot(&app, "ann").await;
    let mails = deliver(&app, &smtp).await;
    let tokens: Vec<String> = mails[mails.len() - 2..].iter().map(|m| link_token(m)).collect();
    assert_ne!(tokens[0], tokens[1]);
    let hold = app.auth.hasher().hold();
    let uses: Vec<_> = tokens
        .iter()
        .zip(["first passphrase here", "second passphrase here"])
        .map(|(token, password)| {
            let (app, token) = (app.clone(), token.clone());
            tokio::spawn(async move { reset(&app, &token, password).await.status })
        })
        .collect();
    wait_for_hash_queue(&app.auth, 2).await;
    drop(hold);
    let mut statuses = Vec::new();
    for used in uses {
        statuses.push(used.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST]);
}

#[tokio::test]
async fn an_erased_account_leaves_no_mail_and_no_address_behind() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let app = mail_app!(smtp);
    ann_with_verified_address(&app, &smtp).await;
    forgot(&app, "ann").await;
    app.auth.settled().await;
    assert_eq!(app.auth.unsent_mail(10).await.unwrap().len(), 1);
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth.delete_user(&ann).await.unwrap();
    assert!(app.auth.unsent_mail(10).await.unwrap().is_empty());
    app.auth.flush_audit(true).await;
    let rows = every_row(&app).await;
    let left: Vec<_> = rows
        .iter()
        .filter(|r| r.contains("ann@example.com") || r.contains(&format!("mail-reset:{}", ann.id)))
        .collect();
    assert!(left.is_empty(), "{left:#?}");
}

#[tokio::test]
async fn the_outbox_page_is_for_this_machine_only() {
    let app = test_app!();
    // The test router's client is 203.0.113.7.
    let page = app
        .send(axum::http::Request::get("/dev/outbox").body(axum::body::Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
}

//! The canary test: run the real binary with debug logging, drive every flow
//! over real HTTP, then search everything it wrote (stderr, stdout, the audit
//! trail, the database files) for passwords, tokens, secrets and the values
//! of `Cookie` and `Authorization` headers. None may appear.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use latchkey::store::SqliteStore;
use serde_json::{Value, json};

use crate::helpers::process::{ChildServer, strip_ansi};
use crate::helpers::{audit_events, form_body};

const CANARY_PASSWORD: &str = "canary-PW-5f3a9c";
const CANARY_WRONG: &str = "canary-PW-5f3a9c-wrong";
const CANARY_FORM_WRONG: &str = "canary-PW-5f3a9c-form";
const CANARY_SECOND_USER: &str = "canary-PW-77e1b0-second";
const CANARY_WEAK: &str = "cnry-7b"; // too short: refused at registration
const CANARY_NEW_PASSWORD: &str = "canary-PW-new-4d2a19";
const CANARY_WRONG_CURRENT: &str = "canary-PW-wrong-current-90c3";
const CANARY_COOKIE: &str = "canary-cookie-value-8b2c41";
const CANARY_BEARER: &str = "canary-bearer-token-3e1d90";
const CANARY_BOGUS_REFRESH: &str = "canary-refresh-value-7d4e55";
const ACCESS_SECRET: &str = "canary-access-secret-e2c4a6f80b1d3e5f7a9c";
const REFRESH_SECRET: &str = "canary-refresh-secret-1f3e5d7c9b0a2e4d6c8b";

/// Tokens seen in responses, to search for afterwards.
#[derive(Default)]
struct Seen {
    tokens: Vec<String>,
}

impl Seen {
    fn access(&mut self, body: &Value) -> String {
        let token = body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned();
        self.tokens.push(token.clone());
        token
    }

    /// The refresh token a response sets, if any (empty values are clearings).
    /// A device cookie it sets is kept to search for too.
    fn refresh(&mut self, response: &reqwest::Response) -> Option<String> {
        let device = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
            .find(|c| c.name() == "__Host-device")
            .map(|c| c.value().to_owned());
        self.tokens.extend(device);
        let token = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
            .find(|c| c.name() == "__Host-refresh_token")
            .map(|c| c.value().to_owned())
            .filter(|v| !v.is_empty())?;
        self.tokens.push(token.clone());
        Some(token)
    }
}

fn refresh_cookie(token: &str) -> String {
    format!("__Host-refresh_token={token}; theme=dark; tracking={CANARY_COOKIE}")
}

/// A form `POST /login` as canary-user, going on to `/app`.
async fn form_login(
    http: &reqwest::Client,
    server: &ChildServer,
    password: &str,
) -> reqwest::Response {
    let pairs = [
        ("username", "canary-user"),
        ("password", password),
        ("next", "/app"),
    ];
    http.post(server.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&pairs))
        .send()
        .await
        .unwrap()
}

async fn drive_every_flow(server: &ChildServer) -> Seen {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut seen = Seen::default();
    let status = |r: &reqwest::Response| r.status().as_u16();

    let health = http.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(status(&health), 200);

    // Registration: a good one, a duplicate, a weak one.
    for (username, password, expected) in [
        ("canary-user", CANARY_PASSWORD, 201),
        ("canary-user", CANARY_PASSWORD, 409),
        ("canary-weak", CANARY_WEAK, 422),
        ("canary-second", CANARY_SECOND_USER, 201),
    ] {
        let r = http
            .post(server.url("/register"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(status(&r), expected, "register {username}");
    }

    // Failed logins: JSON and form, known and unknown user.
    for (username, password) in [("canary-user", CANARY_WRONG), ("nobody-here", CANARY_WRONG)] {
        let r = http
            .post(server.url("/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(status(&r), 401);
    }
    let r = form_login(&http, server, CANARY_FORM_WRONG).await;
    assert_eq!(status(&r), 401);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains(CANARY_FORM_WRONG),
        "the form never echoes it"
    );

    // Login, and every use of the session.
    let r = http
        .post(server.url("/login"))
        .header("user-agent", "canary-test-agent/1.0")
        .json(&json!({ "username": "canary-user", "password": CANARY_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    let first_refresh = seen.refresh(&r).expect("refresh cookie");
    let access = seen.access(&r.json().await.unwrap());

    for path in ["/protected", "/me", "/sessions"] {
        let r = http
            .get(server.url(path))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(status(&r), 200, "{path}");
    }
    let r = http
        .get(server.url("/protected"))
        .bearer_auth(CANARY_BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 401);
    let r = http
        .get(server.url("/protected"))
        .header("authorization", format!("Basic {CANARY_BEARER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 401);

    let r = http
        .post(server.url("/token"))
        .header("cookie", refresh_cookie(&first_refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    let second_refresh = seen.refresh(&r).expect("rotated cookie");
    let access = seen.access(&r.json().await.unwrap());

    let r = http
        .post(server.url("/token"))
        .header("cookie", refresh_cookie(CANARY_BOGUS_REFRESH))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 401);

    // The first token again, past the grace period (0 here): reuse.
    let r = http
        .post(server.url("/token"))
        .header("cookie", refresh_cookie(&first_refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 401);
    let r = http
        .get(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    // The session was revoked: its access token no longer lists anything.
    assert_eq!(status(&r), 401);
    let _ = second_refresh;

    // A form login, a logout.
    let r = form_login(&http, server, CANARY_PASSWORD).await;
    assert_eq!(status(&r), 303);
    let form_refresh = seen.refresh(&r).expect("form login cookie");
    let r = http
        .post(server.url("/token"))
        .header("cookie", refresh_cookie(&form_refresh))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    let rotated = seen.refresh(&r).expect("rotated");
    seen.access(&r.json().await.unwrap());
    let r = http
        .post(server.url("/logout"))
        .header("cookie", refresh_cookie(&rotated))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 204);

    // A refused origin, carrying a live cookie.
    let r = http
        .post(server.url("/login"))
        .json(&json!({ "username": "canary-user", "password": CANARY_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    let live = seen.refresh(&r).unwrap();
    let access = seen.access(&r.json().await.unwrap());
    let r = http
        .post(server.url("/token"))
        .header("origin", "https://evil.example")
        .header("cookie", refresh_cookie(&live))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 403);

    // Several sessions, one revoked, then all of them.
    let mut others = Vec::new();
    for _ in 0..2 {
        let r = http
            .post(server.url("/login"))
            .json(&json!({ "username": "canary-user", "password": CANARY_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(status(&r), 200);
        seen.refresh(&r).unwrap();
        others.push(seen.access(&r.json().await.unwrap()));
    }
    let sessions: Value = http
        .get(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_id = sessions
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .expect("another session")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .delete(server.url(&format!("/sessions/{other_id}")))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 204);
    // From a session that is still live (the one revoked above may have
    // been either of the others).
    let r = http
        .delete(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 204);
    let r = http
        .post(server.url("/token"))
        .header("cookie", refresh_cookie(&live))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 401, "logged out everywhere");

    // The second user signs in too.
    let r = http
        .post(server.url("/login"))
        .json(&json!({ "username": "canary-second", "password": CANARY_SECOND_USER }))
        .send()
        .await
        .unwrap();
    assert_eq!(status(&r), 200);
    seen.refresh(&r).unwrap();
    let body: Value = r.json().await.unwrap();
    seen.access(&body);

    // And changes the password: once with a wrong current one, then properly.
    let second_access = body["access_token"].as_str().unwrap().to_owned();
    for (current, expected) in [(CANARY_WRONG_CURRENT, 403), (CANARY_SECOND_USER, 204)] {
        let r = http
            .post(server.url("/password"))
            .bearer_auth(&second_access)
            .json(&json!({ "current_password": current, "new_password": CANARY_NEW_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(status(&r), expected);
    }

    seen
}

/// Every forbidden value, named for the failure message.
fn forbidden(seen: &Seen) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = [
        ("password", CANARY_PASSWORD),
        ("wrong password", CANARY_WRONG),
        ("wrong form password", CANARY_FORM_WRONG),
        ("second user's password", CANARY_SECOND_USER),
        ("weak password", CANARY_WEAK),
        ("new password", CANARY_NEW_PASSWORD),
        ("wrong current password", CANARY_WRONG_CURRENT),
        ("Cookie value", CANARY_COOKIE),
        ("Authorization value", CANARY_BEARER),
        ("bogus refresh cookie", CANARY_BOGUS_REFRESH),
        ("JWT_SECRET", ACCESS_SECRET),
        ("JWT_REFRESH_SECRET", REFRESH_SECRET),
    ]
    .into_iter()
    .map(|(what, value)| (what.to_owned(), value.to_owned()))
    .collect();
    for (i, token) in seen.tokens.iter().enumerate() {
        values.push((format!("token #{i}"), token.clone()));
        // A token's signature alone is as bad as the whole token.
        let signature = token.rsplit('.').next().unwrap_or_default();
        if signature.len() >= 20 {
            values.push((format!("signature of token #{i}"), signature.to_owned()));
        }
    }
    values
}

fn assert_absent(place: &str, text: &str, values: &[(String, String)]) {
    for (what, value) in values {
        if let Some(at) = text.find(value.as_str()) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            let context: String = text[start..].chars().take(400).collect();
            panic!("the {what} appears in {place}:\n…{context}…");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_or_the_audit_trail() {
    canary_run("text").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_json_logs_and_every_request_line_names_its_request() {
    let logs = canary_run("json").await;
    let mut request_lines = 0;
    let mut access_lines = 0;
    let mut ids = std::collections::HashSet::new();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let spans = entry["spans"].as_array().cloned().unwrap_or_default();
        // `latchkey::access` at debug: one line per answer, in its request.
        if entry["target"] == "latchkey::access" {
            access_lines += 1;
            assert!(entry["fields"]["status"].is_u64(), "a status on {line}");
            assert!(spans.iter().any(|s| s["name"] == "request"), "{line}");
        }
        if let Some(request) = spans.iter().find(|s| s["name"] == "request") {
            request_lines += 1;
            let id = request["request_id"].as_str().unwrap_or_default();
            assert!(id.len() > 8 && id != "-", "a request id on {line}");
            ids.insert(id.to_owned());
        }
    }
    assert!(request_lines > 50, "{request_lines} lines inside requests");
    assert!(access_lines > 20, "{access_lines} access-log lines");
    // One id per request, not one per process.
    assert!(ids.len() > 20, "{} distinct request ids", ids.len());
}

/// Drives every flow against the binary logging in `format`; checks that no
/// secret appears anywhere it wrote, and returns its stderr.
async fn canary_run(format: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("canary.db");
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", format!("sqlite://{}", db.display())),
        ("BIND", "127.0.0.1:0".to_owned()),
        ("RUST_LOG", "debug,sqlx=debug".to_owned()),
        ("NO_COLOR", "1".to_owned()),
        ("JWT_SECRET", ACCESS_SECRET.to_owned()),
        ("JWT_REFRESH_SECRET", REFRESH_SECRET.to_owned()),
        ("BCRYPT_COST", "4".to_owned()),
        ("COOKIE_SECURE", "true".to_owned()),
        ("REFRESH_REUSE_GRACE", "0".to_owned()),
        ("LOG_FORMAT", format.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let server = ChildServer::start(&vars, dir.path());
    let seen = drive_every_flow(&server).await;
    let (stderr, stdout) = server.stop();

    // The logs are real: debug output, the SQL layer, and audit lines for
    // the flows above. Otherwise finding nothing would prove nothing.
    let logs = format!("{stderr}\n{stdout}");
    let plain = strip_ansi(&logs);
    for expected in [
        "latchkey listening",
        "DEBUG",
        "sqlx",
        "login_failed",
        "login_succeeded",
        "user_registered",
        "refresh_token_reused",
        "origin_rejected",
        "logout",
        "session_revoked",
        "sessions_revoked_all",
    ] {
        assert!(
            plain.contains(expected),
            "no {expected:?} in the logs:\n{plain}"
        );
    }
    assert!(seen.tokens.len() >= 10, "{} tokens", seen.tokens.len());

    assert!(
        plain.contains("canary-user"),
        "identifiers are logged, so the search looks at the right text"
    );
    if std::env::var_os("LATCHKEY_SHOW_CANARY_LOGS").is_some() {
        eprintln!("{plain}");
    }

    let values = forbidden(&seen);
    assert_absent("the logs", &logs, &values);
    assert_absent("the logs (plain)", &plain, &values);

    // The database files, byte for byte (the WAL too): bcrypt hashes only.
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", db.display());
        if let Ok(bytes) = std::fs::read(&path) {
            assert_absent(&path, &String::from_utf8_lossy(&bytes), &values);
        }
    }

    let store = SqliteStore::open(&db).await.unwrap();
    let events = audit_events(&store).await;
    store.close().await;
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    for expected in [
        "user_registered",
        "login_failed",
        "login_succeeded",
        "refresh_token_reused",
        "logout",
        "origin_rejected",
        "session_revoked",
        "sessions_revoked_all",
        "password_change_failed",
        "password_changed",
    ] {
        assert!(
            kinds.contains(&expected),
            "no {expected} event in {kinds:?}"
        );
    }
    for event in &events {
        assert_absent(
            &format!("the audit event {event:?}"),
            &format!("{event:?}"),
            &values,
        );
    }
    // Over a real socket every event knows its client.
    assert!(
        events.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1")),
        "{events:#?}"
    );
    stderr
}

/// A flood of refused requests from one address logs its first refusal and
/// one line counting the rest, not a line each (README, "Limits under attack").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_cross_origin_requests_logs_a_line_for_the_first_and_one_for_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flood.db");
    let vars: HashMap<String, String> = [
        ("DATABASE_URL", format!("sqlite://{}", db.display())),
        ("BIND", "127.0.0.1:0".to_owned()),
        ("RUST_LOG", "latchkey=info".to_owned()),
        ("NO_COLOR", "1".to_owned()),
        ("JWT_SECRET", ACCESS_SECRET.to_owned()),
        ("JWT_REFRESH_SECRET", REFRESH_SECRET.to_owned()),
        ("BCRYPT_COST", "4".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let server = ChildServer::start(&vars, dir.path());
    let client = reqwest::Client::new();
    for _ in 0..500 {
        let response = client
            .post(server.url("/token"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
    }
    // SIGTERM: the counts still in memory are written out at shutdown.
    let mut server = server;
    server.terminate();
    assert!(
        server.wait_exit(Duration::from_secs(20)).is_some(),
        "no exit after SIGTERM"
    );
    let (stderr, _) = server.stop();
    let lines = stderr
        .lines()
        .filter(|l| l.contains("origin_rejected") || l.contains("repeated events"))
        .count();
    assert!(
        (1..=4).contains(&lines),
        "{lines} log lines for 500 refusals:\n{stderr}"
    );

    let store = SqliteStore::open(&db).await.unwrap();
    let rows: Vec<_> = audit_events(&store)
        .await
        .into_iter()
        .filter(|e| e.kind == "origin_rejected")
        .collect();
    assert!(rows.len() <= 2, "{} rows", rows.len());
    assert_eq!(rows.iter().map(|e| e.count).sum::<i64>(), 500);
    store.close().await;
}

//! The metrics (README, "Metrics"): scripted traffic with every outcome,
//! read back as exact counts from a real metrics listener over HTTP, and
//! `promtool check metrics` on that scrape; the binary serving them on a
//! listener of its own, never on the public one, and stopping it with its
//! shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::json;

use crate::helpers::process::ChildServer;
use crate::helpers::*;

const COOKIE_NAME: &str = "__Host-refresh_token";
const NEW_PASSWORD: &str = "a brand new passphrase";
const REFRESH_TTL: i64 = 3600;

/// `latchkey::metrics_router` on a port-0 socket of its own.
struct MetricsListener(TestServer);

impl MetricsListener {
    async fn start(auth: latchkey::Auth) -> Self {
        Self(TestServer::serving(latchkey::metrics_router(auth), None).await)
    }

    async fn scrape(&self) -> String {
        scrape(&self.0.url("/metrics")).await
    }

    async fn stop(self) {
        self.0.stop().await;
    }
}

/// `GET url`, which must answer in Prometheus' text format.
async fn scrape(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        latchkey::METRICS_CONTENT_TYPE
    );
    response.text().await.unwrap()
}

/// The value of the series written exactly as `series` (name and labels).
fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{scrape}"))
}

/// Each `(label value, count)` of the one-label counter `name`, exactly.
fn assert_counts(scrape: &str, name: &str, label: &str, expected: &[(&str, u64)]) {
    for (value_of_label, count) in expected {
        let series = format!("{name}{{{label}=\"{value_of_label}\"}}");
        assert_eq!(value(scrape, &series), *count as f64, "{series}");
    }
}

fn http_requests(scrape: &str, route: &str, status: u16) -> f64 {
    value(
        scrape,
        &format!("latchkey_http_requests_total{{route=\"{route}\",status=\"{status}\"}}"),
    )
}

/// `promtool check metrics` on `scrape`. Where promtool is missing the check
/// is skipped with a notice, except under `CI=true` (`.ci/run` installs
/// Debian's `prometheus` package for it).
fn assert_promtool_clean(scrape: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(!ci, "CI=true but promtool is not installed");
            let _ = writeln!(
                std::io::stderr(),
                "notice: promtool is not installed; `promtool check metrics` skipped"
            );
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

/// `POST /login` with a refresh cookie the browser already holds.
fn login_with_cookie(username: &str, refresh: &str) -> Request<Body> {
    let mut request = json_post(
        "/login",
        &json!({ "username": username, "password": PASSWORD }),
    );
    request.headers_mut().insert(
        header::COOKIE,
        format!("{COOKIE_NAME}={refresh}").parse().unwrap(),
    );
    request
}

async fn logged_in(app: &TestApp, username: &str) -> TestResponse {
    let response = app.login(username, PASSWORD).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response
}

async fn session_id(app: &TestApp, access: &str) -> String {
    let me = app.get_with_bearer("/me", access).await;
    me.json()["session_id"].as_str().unwrap().to_owned()
}

fn register(username: &str, password: &str) -> Request<Body> {
    json_post(
        "/register",
        &json!({ "username": username, "password": password }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_traffic_reads_back_as_exact_counts_from_the_metrics_listener() {
    let app = test_app!(&[
        ("THROTTLE_LOGIN_PAIR", "2"),
        ("THROTTLE_REGISTER_ADDRESS", "4"),
        ("MAX_SESSIONS_PER_USER", "3"),
        ("JWT_REFRESH_EXPIRATION", &REFRESH_TTL.to_string()),
    ]);
    let metrics = MetricsListener::start(app.auth.clone()).await;
    // Every bcrypt job the script causes, each timed once.
    let mut hashed = 0;

    let ann = app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let cat = app.add_user("cat", PASSWORD).await;
    app.add_user("dan", PASSWORD).await;
    hashed += 4;

    // Logins: every outcome.
    let ann_first = logged_in(&app, "ann").await;
    hashed += 1;
    for _ in 0..2 {
        assert_eq!(app.login("bob", "wrong guess!").await.status, StatusCode::UNAUTHORIZED);
        hashed += 1;
    }
    // THROTTLE_LOGIN_PAIR=2: the third is refused before any check.
    assert_eq!(app.login("bob", "wrong guess!").await.status, StatusCode::TOO_MANY_REQUESTS);
    // An unknown user: the dummy hash is made, then checked against.
    assert_eq!(app.login("nobody", "wrong guess!").await.status, StatusCode::UNAUTHORIZED);
    hashed += 2;
    assert_eq!(app.login("ann", "").await.status, StatusCode::BAD_REQUEST);
    // Busy: the hashing queue held and full, a login is refused at once.
    let capacity = app.auth.hasher().capacity();
    let hold = app.auth.hasher().hold();
    let fillers: Vec<_> = (0..capacity)
        .map(|_| {
            let hasher = app.auth.hasher().clone();
            tokio::spawn(async move { hasher.hash("filling the queue").await })
        })
        .collect();
    wait_for_hash_queue(&app.auth, capacity).await;
    let busy = app.login("cat", PASSWORD).await;
    assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE, "{}", busy.text());
    // The audit trail says so too: the two agree on every refusal.
    assert!(app.event_kinds().await.contains(&"login_busy".to_owned()));
    drop(hold);
    for filler in fillers {
        filler.await.unwrap().unwrap();
    }
    hashed += capacity;

    // Refreshes: rotated, grace, reused, invalid, missing (expired below).
    let first_token = ann_first.refresh_token();
    assert_eq!(app.refresh(&first_token).await.status, StatusCode::OK);
    assert_eq!(app.refresh(&first_token).await.status, StatusCode::OK, "grace");
    app.advance(secs(app.auth.config().tokens.reuse_grace) + 1);
    let reused = app.refresh(&first_token).await;
    assert_eq!(reused.error_code(), "refresh_token_reused");
    assert_eq!(app.refresh("not-a-token").await.error_code(), "invalid_refresh_token");
    let missing = app.send(Request::post("/token").body(Body::empty()).unwrap()).await;
    assert_eq!(missing.error_code(), "missing_refresh_token");

    // Revocations, one reason after another.
    let dan_1 = logged_in(&app, "dan").await;
    assert_eq!(app.logout(&dan_1.refresh_token()).await.status, StatusCode::NO_CONTENT);
    let dan_2 = logged_in(&app, "dan").await;
    let dan_3 = app.send(login_with_cookie("dan", &dan_2.refresh_token())).await;
    assert_eq!(dan_3.status, StatusCode::OK, "replaces dan_2");
    let dan_4 = logged_in(&app, "dan").await;
    let dan_4_id = session_id(&app, &dan_4.access_token()).await;
    let one = app
        .delete_with_bearer(&format!("/sessions/{dan_4_id}"), &dan_3.access_token())
        .await;
    assert_eq!(one.status, StatusCode::NO_CONTENT);
    logged_in(&app, "dan").await;
    // Ends dan_3 and the fifth: two sessions, one count of 2.
    let all = app.delete_with_bearer("/sessions", &dan_3.access_token()).await;
    assert_eq!(all.status, StatusCode::NO_CONTENT);
    hashed += 5;

    logged_in(&app, "ann").await;
    let ann_3 = logged_in(&app, "ann").await;
    hashed += 2;
    let change = app
        .send(
            Request::post("/password")
                .header(header::AUTHORIZATION, format!("Bearer {}", ann_3.access_token()))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD })
                        .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(change.status, StatusCode::NO_CONTENT, "{}", change.text());
    // The current password checked (as a login's, but not a login), the new one hashed.
    hashed += 2;

    // MAX_SESSIONS_PER_USER=3: cat's fourth login ends the first.
    for _ in 0..4 {
        logged_in(&app, "cat").await;
    }
    hashed += 4;
    // The operator's way in (as `latchkey user …`), through the same core.
    assert_eq!(app.auth.revoke_user_sessions(&cat, None).await.unwrap(), 3);
    assert_eq!(app.auth.disable_user(&ann).await.unwrap(), 1);

    // Sign-ups: THROTTLE_REGISTER_ADDRESS=4, every attempt counted.
    assert_eq!(app.send(register("eve", PASSWORD)).await.status, StatusCode::CREATED);
    assert_eq!(app.send(register("eve", PASSWORD)).await.status, StatusCode::CONFLICT);
    hashed += 2;
    assert_eq!(
        app.send(register("fay", "password")).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(app.send(register("bad name!", PASSWORD)).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.send(register("gus", PASSWORD)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Expired: eve's session left unused past JWT_REFRESH_EXPIRATION.
    let eve = logged_in(&app, "eve").await;
    hashed += 1;
    app.advance(REFRESH_TTL + 1);
    assert_eq!(app.refresh(&eve.refresh_token()).await.error_code(), "invalid_refresh_token");

    // The public router has no /metrics: any unmatched path, one label.
    let public = app
        .send(Request::builder().method(Method::GET).uri("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(public.status, StatusCode::NOT_FOUND);

    let scrape = metrics.scrape().await;
    assert_counts(
        &scrape,
        "latchkey_logins_total",
        "outcome",
        &[
            // ann 3, dan 5, cat 4, eve 1.
            ("succeeded", 13),
            ("failed", 3),
            ("throttled", 1),
            ("busy", 1),
            ("invalid", 1),
            ("error", 0),
        ],
    );
    assert_counts(
        &scrape,
        "latchkey_refreshes_total",
        "outcome",
        &[
            ("rotated", 1),
            ("grace", 1),
            ("reused", 1),
            ("invalid", 1),
            ("expired", 1),
            ("missing", 1),
            ("error", 0),
        ],
    );
    assert_counts(
        &scrape,
        "latchkey_sessions_revoked_total",
        "reason",
        &[
            ("refresh_token_reused", 1),
            ("logout", 1),
            ("replaced_by_login", 1),
            ("revoked_by_user", 1),
            ("revoked_everywhere", 2),
            ("password_changed", 1),
            ("session_evicted", 1),
            ("revoked_by_operator", 3),
            ("user_disabled", 1),
            ("password_reset", 0),
        ],
    );
    assert_counts(
        &scrape,
        "latchkey_registrations_total",
        "outcome",
        &[
            ("succeeded", 1),
            ("username_taken", 1),
            ("weak_password", 1),
            ("invalid", 1),
            ("throttled", 1),
            ("closed", 0),
            ("busy", 0),
            ("error", 0),
        ],
    );

    // By route template, never the path as sent.
    assert_eq!(http_requests(&scrape, "/login", 200), 13.0);
    assert_eq!(http_requests(&scrape, "/login", 401), 3.0);
    assert_eq!(http_requests(&scrape, "/login", 429), 1.0);
    assert_eq!(http_requests(&scrape, "/login", 503), 1.0);
    assert_eq!(http_requests(&scrape, "/login", 400), 1.0);
    assert_eq!(http_requests(&scrape, "/token", 200), 2.0);
    assert_eq!(http_requests(&scrape, "/token", 401), 4.0);
    assert_eq!(http_requests(&scrape, "/sessions/{id}", 204), 1.0);
    assert_eq!(http_requests(&scrape, "unmatched", 404), 1.0);
    assert!(!scrape.contains(&dan_4_id), "a raw path in a label");
    assert_eq!(
        value(
            &scrape,
            "latchkey_http_request_duration_seconds_count{route=\"/token\"}"
        ),
        6.0
    );
    assert_eq!(
        value(
            &scrape,
            "latchkey_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/token\"}"
        ),
        6.0
    );

    assert_eq!(
        value(&scrape, "latchkey_password_hash_duration_seconds_count"),
        hashed as f64
    );
    assert_eq!(value(&scrape, "latchkey_password_hash_queue_depth"), 0.0);
    assert_eq!(
        value(&scrape, "latchkey_password_hash_queue_capacity"),
        capacity as f64
    );

    // Rotations go through the group commit on both stores: the three that
    // tried the compare-and-set (rotated, grace, reused), one batch each.
    let batches = 3.0;
    assert_eq!(value(&scrape, "latchkey_group_commit_batch_size_count"), batches);
    assert_eq!(value(&scrape, "latchkey_group_commit_batch_size_sum"), batches);
    assert_eq!(
        value(&scrape, "latchkey_group_commit_duration_seconds_count"),
        batches
    );
    let (max, file) = match super::STORE {
        StoreKind::Sqlite => (8.0, "SQLite file"),
        StoreKind::Postgres => (10.0, "PostgreSQL"),
    };
    assert_eq!(value(&scrape, "latchkey_db_connections_max"), max, "{file}");
    let in_use = value(&scrape, "latchkey_db_connections{state=\"in_use\"}");
    let idle = value(&scrape, "latchkey_db_connections{state=\"idle\"}");
    assert!(in_use >= 0.0 && idle >= 1.0 && in_use + idle <= max, "{in_use} {idle}");

    assert_eq!(
        value(
            &scrape,
            &format!(
                "latchkey_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        1.0
    );

    assert_promtool_clean(&scrape);
    metrics.stop().await;
}

/// The address of the child's "metrics listening" line, once it is written
/// (just after "latchkey listening", which `ChildServer::start` waits for).
fn metrics_address(server: &ChildServer) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = server.stderr();
        let address = log
            .lines()
            .find(|line| line.contains("metrics listening"))
            .and_then(|line| line.split("address=").nth(1))
            .and_then(|rest| rest.split_whitespace().next());
        if let Some(address) = address {
            return address.to_owned();
        }
        assert!(Instant::now() < deadline, "no metrics address in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_binary_serves_metrics_on_a_listener_of_its_own_and_stops_it_on_shutdown() {
    let app = test_app!();
    let mut vars = app.vars.clone();
    for (key, value) in [
        ("BIND", "127.0.0.1:0"),
        ("METRICS_BIND", "127.0.0.1:0"),
        ("RUST_LOG", "latchkey=info"),
        ("NO_COLOR", "1"),
    ] {
        vars.insert(key.into(), value.into());
    }
    let mut server = ChildServer::start(&vars, app.dir.path());
    let metrics_url = format!("http://{}/metrics", metrics_address(&server));

    let http = reqwest::Client::new();
    let account = json!({ "username": "ann", "password": PASSWORD });
    let registered = http.post(server.url("/register")).json(&account).send().await.unwrap();
    assert_eq!(registered.status(), 201);
    let login = http.post(server.url("/login")).json(&account).send().await.unwrap();
    assert_eq!(login.status(), 200);
    let public = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404, "never on the public listener");

    let scrape = scrape(&metrics_url).await;
    assert_counts(&scrape, "latchkey_logins_total", "outcome", &[("succeeded", 1)]);
    assert_counts(&scrape, "latchkey_registrations_total", "outcome", &[("succeeded", 1)]);
    assert_eq!(http_requests(&scrape, "/login", 200), 1.0);
    assert_eq!(http_requests(&scrape, "unmatched", 404), 1.0);

    // Stopped with the server: the process exits, which it would not while
    // the metrics listener still ran.
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(20))
        .expect("latchkey exits after SIGTERM");
    assert!(status.success(), "{status}");
    assert!(reqwest::get(&metrics_url).await.is_err(), "the metrics listener is closed");
}

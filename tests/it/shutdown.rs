//! Graceful shutdown of the real binary: on SIGTERM it stops accepting, lets
//! a request in flight finish, and gives up after `SHUTDOWN_TIMEOUT`.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, Executor, SqliteConnection};
use tempfile::TempDir;

use crate::helpers::process::ChildServer;
use crate::helpers::{PASSWORD, test_vars};

fn vars(dir: &TempDir, shutdown_timeout: &str) -> HashMap<String, String> {
    with_delay(dir, shutdown_timeout, "0")
}

fn with_delay(dir: &TempDir, shutdown_timeout: &str, delay: &str) -> HashMap<String, String> {
    test_vars(
        dir,
        &[
            ("BIND", "127.0.0.1:0"),
            ("RUST_LOG", "latchkey=info"),
            ("SHUTDOWN_TIMEOUT", shutdown_timeout),
            ("SHUTDOWN_DELAY", delay),
        ],
    )
}

/// Registers and signs in `ann`; returns the refresh cookie's `name=value`.
async fn signed_in(http: &reqwest::Client, server: &ChildServer) -> String {
    let account = serde_json::json!({ "username": "ann", "password": PASSWORD });
    let registered = http
        .post(server.url("/register"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let login = http
        .post(server.url("/login"))
        .json(&account)
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"].to_str().unwrap();
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Takes SQLite's write lock, so the server's next write waits for it.
async fn hold_write_lock(db: &Path) -> SqliteConnection {
    let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display())).unwrap();
    let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
    conn.execute("BEGIN IMMEDIATE").await.unwrap();
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_in_flight_refresh_finish_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(&vars(&dir, "10"), dir.path());
    let http = reqwest::Client::new();
    let cookie = signed_in(&http, &server).await;

    let mut lock = hold_write_lock(&dir.path().join("latchkey.db")).await;
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = server.url("/token");
        async move { http.post(url).header("cookie", cookie).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();

    // New connections are refused while the rotation still waits.
    let addr = server.url("").trim_start_matches("http://").to_owned();
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(&addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "still accepting after SIGTERM");
    assert!(
        !in_flight.is_finished(),
        "the refresh was waiting on the lock"
    );

    conn_commit(&mut lock).await;
    let response = in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("__Host-refresh_token=ey")
    );
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after draining");
    assert!(status.success(), "{status}\n{}", server.stderr());
}

/// With `SHUTDOWN_DELAY`, SIGTERM first turns `/readyz` to `503` while the
/// listener stays open and a request in flight finishes; then the listener
/// closes and the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_unavailable_while_requests_in_flight_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(&with_delay(&dir, "10", "2"), dir.path());
    let http = reqwest::Client::new();
    let cookie = signed_in(&http, &server).await;
    assert_eq!(
        http.get(server.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let mut lock = hold_write_lock(&dir.path().join("latchkey.db")).await;
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = server.url("/token");
        async move { http.post(url).header("cookie", cookie).send().await }
    });
    server.terminate();

    // A fresh client (new connections) sees readiness fail, liveness hold.
    let mut not_ready = None;
    for _ in 0..200 {
        let probe = reqwest::Client::new();
        let ready = probe.get(server.url("/readyz")).send().await.unwrap();
        if ready.status() == 503 {
            not_ready = Some(ready.json::<serde_json::Value>().await.unwrap());
            let live = probe.get(server.url("/livez")).send().await.unwrap();
            assert_eq!(live.status(), 200);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = not_ready.expect("/readyz turned 503 after SIGTERM");
    assert_eq!(body["error"], "shutting_down");
    assert!(!in_flight.is_finished(), "the refresh waits on the lock");

    conn_commit(&mut lock).await;
    let response = in_flight.await.unwrap().expect("answered");
    assert_eq!(response.status(), 200);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the delay and the drain");
    assert!(status.success(), "{status}\n{}", server.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_waiting_for_requests_after_shutdown_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::start(&vars(&dir, "1"), dir.path());
    let http = reqwest::Client::new();
    let cookie = signed_in(&http, &server).await;

    let mut lock = hold_write_lock(&dir.path().join("latchkey.db")).await;
    let in_flight = tokio::spawn({
        let http = http.clone();
        let url = server.url("/token");
        async move { http.post(url).header("cookie", cookie).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();

    // The request would wait for the lock up to SQLite's 5 s busy timeout;
    // the process leaves after its 1 s shutdown timeout instead.
    let status = server.wait_exit(Duration::from_secs(4));
    conn_commit(&mut lock).await;
    let status = status.expect("exited while the request was still stuck");
    assert!(status.success(), "{status}");
    assert!(
        server.stderr().contains("shutdown timeout"),
        "{}",
        server.stderr()
    );
    let answer = in_flight.await.unwrap();
    assert!(
        answer.is_err(),
        "the stuck request was cut off, not answered: {answer:?}"
    );
}

async fn conn_commit(conn: &mut SqliteConnection) {
    conn.execute("COMMIT").await.unwrap();
}

//! Test helpers named by intent. Every `TestApp` has its own SQLite file in a
//! fresh temporary directory and its own clock, which tests move by hand.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cookie::Cookie;
use http_body_util::BodyExt;
use latchkey::clock::ManualClock;
use latchkey::config::Config;
use latchkey::store::{SqliteStore, User};
use latchkey::{AppState, build_app};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// A fixed, realistic starting time (2026-01-01T00:00:00Z).
pub const START: i64 = 1_767_225_600;
pub const PASSWORD: &str = "correct horse battery";
pub const CLIENT_ADDR: ([u8; 4], u16) = ([203, 0, 113, 7], 40_000);

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub clock: ManualClock,
    pub store: Arc<SqliteStore>,
    pub dir: TempDir,
}

/// The settings every test starts from; `overrides` replace or add to them.
pub fn test_vars(dir: &TempDir, overrides: &[(&str, &str)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = [
        ("JWT_SECRET", "test-access-secret-0123456789abcdefghijkl"),
        (
            "JWT_REFRESH_SECRET",
            "test-refresh-secret-0123456789abcdefghijk",
        ),
        ("BCRYPT_COST", "4"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let db = dir.path().join("latchkey.db");
    vars.insert("DATABASE_URL".into(), format!("sqlite://{}", db.display()));
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

pub fn config_from(
    vars: &HashMap<String, String>,
) -> Result<Config, latchkey::config::ConfigError> {
    Config::from_lookup(|k| vars.get(k).cloned())
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_from(&test_vars(&dir, overrides)).expect("valid test config");
        let path = config
            .database
            .sqlite_path()
            .expect("sqlite file")
            .to_owned();
        let store = Arc::new(SqliteStore::open(&path).await.expect("open store"));
        let clock = ManualClock::starting_at(START);
        let state = AppState::with_clock(config, store.clone(), Arc::new(clock.clone()));
        let router = build_app(state.clone()).layer(MockConnectInfo(SocketAddr::from(CLIENT_ADDR)));
        Self {
            router,
            state,
            clock,
            store,
            dir,
        }
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible router");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Creates a user directly through the account code (as `latchkey user add` does).
    pub async fn add_user(&self, username: &str, password: &str) -> User {
        latchkey::auth::credentials::create_account(
            self.state.store.as_ref(),
            &self.state.hasher,
            username,
            password,
            "user",
            START,
        )
        .await
        .expect("create user")
    }

    pub async fn login(&self, username: &str, password: &str) -> TestResponse {
        self.send(json_post(
            "/login",
            &serde_json::json!({ "username": username, "password": password }),
        ))
        .await
    }

    /// Adds `ann` and signs her in; returns the login response.
    pub async fn signed_in_ann(&self) -> TestResponse {
        self.add_user("ann", PASSWORD).await;
        let response = self.login("ann", PASSWORD).await;
        assert_eq!(
            response.status,
            StatusCode::OK,
            "login failed: {}",
            response.text()
        );
        response
    }

    /// `POST /token` presenting `refresh` as the refresh cookie.
    pub async fn refresh(&self, refresh: &str) -> TestResponse {
        self.send(
            Request::post("/token")
                .header(header::COOKIE, format!("__Host-refresh_token={refresh}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn logout(&self, refresh: &str) -> TestResponse {
        self.send(
            Request::post("/logout")
                .header(header::COOKIE, format!("__Host-refresh_token={refresh}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    pub async fn get_with_bearer(&self, path: &str, access: &str) -> TestResponse {
        self.send(bearer(Method::GET, path, access)).await
    }

    pub async fn delete_with_bearer(&self, path: &str, access: &str) -> TestResponse {
        self.send(bearer(Method::DELETE, path, access)).await
    }

    /// Kinds of the audit events recorded so far, oldest first.
    pub async fn event_kinds(&self) -> Vec<String> {
        let mut events = self.state.store.recent_events(1000).await.expect("events");
        events.reverse();
        events.into_iter().map(|e| e.kind).collect()
    }
}

pub fn json_post(path: &str, body: &Value) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

pub fn form_post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

pub fn bearer(method: Method, path: &str, access: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .body(Body::empty())
        .expect("request")
}

#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error code of a JSON error body, after checking its shape.
    pub fn error_code(&self) -> String {
        let body = self.json();
        assert!(body["message"].is_string(), "error without message: {body}");
        body["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code: {body}"))
            .to_owned()
    }

    pub fn access_token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// The refresh cookie this response sets, parsed from `Set-Cookie`.
    pub fn refresh_cookie(&self) -> Option<Cookie<'static>> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| Cookie::parse(v.to_owned()).ok())
            .find(|c| c.name().ends_with("refresh_token"))
    }

    /// The refresh token value this response sets (panics when none is set).
    pub fn refresh_token(&self) -> String {
        let cookie = self.refresh_cookie().expect("a refresh cookie");
        assert!(
            !cookie.value().is_empty(),
            "the cookie was cleared, not set"
        );
        cookie.value().to_owned()
    }

    pub fn max_age(&self) -> i64 {
        self.refresh_cookie()
            .and_then(|c| c.max_age())
            .expect("Max-Age")
            .whole_seconds()
    }

    pub fn assert_cookie_cleared(&self) {
        let cookie = self.refresh_cookie().expect("a clearing cookie");
        assert_eq!(cookie.name(), "__Host-refresh_token");
        assert_eq!(cookie.value(), "");
        assert_eq!(cookie.path(), Some("/"));
        assert_eq!(cookie.max_age().map(|d| d.whole_seconds()), Some(0));
    }

    pub fn assert_no_store(&self) {
        assert_eq!(
            self.header("cache-control"),
            Some("no-store"),
            "Cache-Control"
        );
        assert_eq!(self.header("pragma"), Some("no-cache"), "Pragma");
    }
}

/// A real server on a port-0 socket, for tests where the transport matters.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(latchkey::serve(listener, build_app(state), async {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server");
        }
    }
}

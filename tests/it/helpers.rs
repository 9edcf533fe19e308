//! Test helpers named by intent. Every `TestApp` has its own store (a SQLite
//! file in a fresh temporary directory, or a fresh PostgreSQL database) and
//! its own clock, which tests move by hand.

#![allow(dead_code)]

mod database;
pub mod process;
pub mod smtp;
pub mod totp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use cookie::Cookie;
use http_body_util::BodyExt;
use latchkey::clock::ManualClock;
use latchkey::config::{Config, Database};
use latchkey::store::{AuditEvent, PostgresStore, SqliteStore, Store, User};
use latchkey::{Auth, router};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub use database::TestDatabase;

/// A fixed, realistic starting time (2026-01-01T00:00:00Z).
pub const START: i64 = 1_767_225_600;
pub const PASSWORD: &str = "correct horse battery";
pub const CLIENT_ADDR: ([u8; 4], u16) = ([203, 0, 113, 7], 40_000);

/// The store a suite runs on: `sqlite.rs` and `postgres.rs` each stamp the
/// behaviour suite with one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

/// The app of the enclosing suite's store (`STORE` of `sqlite.rs` or
/// `postgres.rs`), configured with the optional overrides. Where that store is
/// not available (PostgreSQL without `TEST_DATABASE_URL`), it returns from the
/// test after a notice: the test is skipped.
macro_rules! test_app {
    () => {
        test_app!(&[])
    };
    ($overrides:expr) => {
        match $crate::helpers::TestApp::on(super::STORE, $overrides).await {
            Some(app) => app,
            None => return,
        }
    };
}

pub struct TestApp {
    pub router: Router,
    pub auth: Auth,
    pub clock: ManualClock,
    pub store: TestStore,
    pub dir: TempDir,
    /// The settings the app was configured with (`DATABASE_URL` names its store).
    pub vars: HashMap<String, String>,
    /// Last, so the database goes after everything that uses it.
    database: Option<TestDatabase>,
}

/// The app's store, concrete so that tests can close it; otherwise a `Store`.
#[derive(Clone)]
pub enum TestStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl TestStore {
    pub async fn open(database: &Database) -> Self {
        match database {
            Database::SqliteFile(path) => {
                Self::Sqlite(Arc::new(SqliteStore::open(path).await.expect("open store")))
            }
            Database::Postgres(url) => Self::Postgres(Arc::new(
                PostgresStore::connect(url).await.expect("open store"),
            )),
            _ => panic!("tests use a SQLite file or PostgreSQL"),
        }
    }

    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(store) => store.clone(),
            Self::Postgres(store) => store.clone(),
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(store) => store.close().await,
            Self::Postgres(store) => store.close().await,
        }
    }
}

impl Deref for TestStore {
    type Target = dyn Store;

    fn deref(&self) -> &Self::Target {
        match self {
            Self::Sqlite(store) => store.as_ref(),
            Self::Postgres(store) => store.as_ref(),
        }
    }
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
    // Development writes mail here unless a test names a relay.
    let outbox = dir.path().join("outbox");
    vars.insert("MAIL_OUTBOX_DIR".into(), outbox.display().to_string());
    for (k, v) in overrides {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    vars
}

/// The configuration `vars` give, as the binary reads it: parsed, then
/// development secrets supplied where none are set.
pub fn config_from(
    vars: &HashMap<String, String>,
) -> Result<Config, latchkey::config::ConfigError> {
    Config::from_lookup(|k| vars.get(k).cloned()).and_then(Config::with_development_secrets)
}

impl TestApp {
    /// An app on SQLite, for tests outside the two-store suite. In the suite's
    /// files use `test_app!`, or the `postgres::` copy runs on SQLite too.
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    /// An app on SQLite with `overrides`, for tests outside the suite.
    pub async fn with(overrides: &[(&str, &str)]) -> Self {
        Self::on(StoreKind::Sqlite, overrides)
            .await
            .expect("SQLite is always there")
    }

    /// An app on `store`, or `None` when that store is not available here
    /// (PostgreSQL without `TEST_DATABASE_URL`; see `TestDatabase::create`).
    pub async fn on(store: StoreKind, overrides: &[(&str, &str)]) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = test_vars(&dir, overrides);
        let database = match store {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(TestDatabase::create().await?),
        };
        if let Some(database) = &database {
            vars.insert("DATABASE_URL".into(), database.url.clone());
        }
        let config = config_from(&vars).expect("valid test config");
        let store = TestStore::open(&config.database).await;
        let clock = ManualClock::starting_at(START);
        let auth =
            Auth::with_clock(config, store.shared(), Arc::new(clock.clone())).expect("secrets set");
        let router = router(auth.clone()).layer(MockConnectInfo(SocketAddr::from(CLIENT_ADDR)));
        Some(Self {
            router,
            auth,
            clock,
            store,
            dir,
            vars,
            database,
        })
    }

    pub fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    /// This app's service restarted with `changes` to its settings, over
    /// the same store and clock, as the `Auth` itself.
    pub fn restarted_auth(&self, changes: &[(&str, &str)]) -> Auth {
        let mut vars = self.vars.clone();
        for (k, v) in changes {
            vars.insert((*k).into(), (*v).into());
        }
        Auth::with_clock(
            config_from(&vars).expect("valid test config"),
            self.store.shared(),
            Arc::new(self.clock.clone()),
        )
        .expect("secrets set")
    }

    /// As [`TestApp::restarted_auth`], its router.
    pub fn restarted(&self, changes: &[(&str, &str)]) -> Router {
        router_of(&self.restarted_auth(changes))
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        call(&self.router, request).await
    }

    /// Creates a user through the core, as `latchkey user add` does.
    pub async fn add_user(&self, username: &str, password: &str) -> User {
        self.auth
            .create_user(username, password, "user")
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

    /// `POST /register` in JSON.
    pub async fn register(&self, username: &str, password: &str) -> TestResponse {
        self.send(json_post(
            "/register",
            &serde_json::json!({ "username": username, "password": password }),
        ))
        .await
    }

    /// `POST /password` with the bearer token `access`.
    pub async fn change_password(&self, access: &str, current: &str, new: &str) -> TestResponse {
        let body = serde_json::json!({ "current_password": current, "new_password": new });
        let mut request = json_post("/password", &body);
        let value = format!("Bearer {access}").parse().expect("a header value");
        request.headers_mut().insert(header::AUTHORIZATION, value);
        self.send(request).await
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

    /// Runs the `latchkey` binary with `args` against this app's database and
    /// settings, `stdin` on its standard input.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .env_clear()
            .envs(&self.vars)
            .current_dir(self.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run latchkey");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("latchkey output")
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
    /// The kinds of the audit events so far, oldest first, one per event
    /// (an aggregated row counts as many as it stands for).
    pub async fn event_kinds(&self) -> Vec<String> {
        self.auth.flush_audit(true).await;
        audit_events(&*self.store)
            .await
            .into_iter()
            .flat_map(|e| std::iter::repeat_n(e.kind, usize::try_from(e.count).unwrap_or(1)))
            .collect()
    }
}

/// Every audit event in `store`, oldest first.
pub async fn audit_events(store: &dyn Store) -> Vec<AuditEvent> {
    store
        .events(None, i64::MIN, i64::MAX)
        .await
        .expect("events")
}

/// `pairs` as a browser's form sends them: percent-encoding everything but
/// unreserved characters.
pub fn form_body(pairs: &[(&str, &str)]) -> String {
    let encode = |value: &str| -> String {
        value
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    char::from(b).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `request` through `router`, with the whole answer read.
pub async fn call(router: &Router, request: Request<Body>) -> TestResponse {
    let response = router
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

/// A real server on a port-0 socket, for tests where the transport matters:
/// `latchkey::serve` with its default limits, for latchkey's router or any
/// other (`serving`), over TLS when given one.
pub struct TestServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// latchkey's API and pages for `auth`.
    pub async fn start(auth: Auth) -> Self {
        Self::serving(router(auth), None).await
    }

    /// `app` (latchkey's router, its metrics router, or a site of a test's
    /// own), over TLS with `tls`.
    pub async fn serving(app: Router, tls: Option<latchkey::Tls>) -> Self {
        Self::serving_at(SocketAddr::from(([127, 0, 0, 1], 0)), app, tls).await
    }

    /// As [`TestServer::serving`], on `address` (a test that must know its
    /// origin before the app is built: `PUBLIC_ORIGIN`).
    pub async fn serving_at(address: SocketAddr, app: Router, tls: Option<latchkey::Tls>) -> Self {
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let limits = latchkey::ServeLimits::default();
            latchkey::serve(listener, app, limits, tls.as_ref(), async {
                let _ = rx.await;
            })
            .await
        });
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

/// Polls until the hashing queue holds `jobs` (the hasher is held, so it
/// only grows); fails after a generous bound rather than hanging.
pub async fn wait_for_hash_queue(auth: &Auth, jobs: usize) {
    for _ in 0..2000 {
        if auth.hasher().pending() >= jobs {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!(
        "the hashing queue never reached {jobs} jobs (it has {})",
        auth.hasher().pending()
    );
}

/// A configured duration in whole seconds, as the settings are written.
pub fn secs(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_secs()).expect("a sane duration")
}

/// Every row of every table of the app's store, as text, one line per row.
pub async fn every_row(app: &TestApp) -> Vec<String> {
    let url = &app.vars["DATABASE_URL"];
    let mut rows = Vec::new();
    if url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::TEXT FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for table in tables {
            let sql = format!("SELECT t::TEXT FROM \"{table}\" t");
            let texts: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.extend(texts.into_iter().map(|t| format!("{table}: {t}")));
        }
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let tables: Vec<String> =
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table'")
                .fetch_all(&pool)
                .await
                .unwrap();
        for table in tables {
            let columns: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT name FROM pragma_table_info('{table}')"
            )))
            .fetch_all(&pool)
            .await
            .unwrap();
            let row = columns
                .iter()
                .map(|c| format!("quote(\"{c}\")"))
                .collect::<Vec<_>>()
                .join(" || ' | ' || ");
            let sql = format!("SELECT {row} FROM \"{table}\"");
            let texts: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&pool)
                .await
                .unwrap();
            rows.extend(texts.into_iter().flatten().map(|t| format!("{table}: {t}")));
        }
        pool.close().await;
    }
    rows
}

/// The mails in a development outbox folder (`MAIL_OUTBOX_DIR`), oldest first.
pub fn outbox_mails(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// `auth`'s router, as a test app's: every request from `CLIENT_ADDR`.
pub fn router_of(auth: &Auth) -> Router {
    router(auth.clone()).layer(MockConnectInfo(SocketAddr::from(CLIENT_ADDR)))
}

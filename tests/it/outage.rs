//! When the database goes away (README, "When the database goes away"):
//! PostgreSQL reached through a TCP proxy that the test cuts and restores,
//! and SQLite locked by another connection, with requests in flight. Every
//! request that needs the database answers `503 unavailable` with
//! `Retry-After`, within a bounded wait, never `500`; service resumes by
//! itself; no session is lost or left half-rotated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latchkey::Auth;
use latchkey::clock::ManualClock;
use latchkey::store::{PostgresStore, SqliteStore, Store};
use serde_json::json;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

use crate::helpers::process;
use crate::helpers::*;

const CLIENTS: usize = 6;

/// A TCP proxy in front of PostgreSQL. `cut` closes every connection through
/// it and refuses new ones (each is accepted and closed at once) until
/// `restore`: to latchkey, the database has gone away.
struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    links: Arc<Mutex<JoinSet<()>>>,
}

impl TcpProxy {
    async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let (accepting_cut, accepting_links) = (cut.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if accepting_cut.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                accepting_links.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { addr, cut, links }
    }

    async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        // Aborting a link drops both of its sockets.
        self.links.lock().await.abort_all();
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// A client of the cookie flow: its user and its newest refresh token.
#[derive(Debug, Clone)]
struct Client {
    name: String,
    refresh: String,
    refreshed: u32,
}

/// `POST /token`: the status, the `Retry-After`, and the new token on `200`.
async fn post_token(
    http: &reqwest::Client,
    url: &str,
    refresh: &str,
) -> (u16, Option<String>, Option<String>) {
    let response = http
        .post(url)
        .header("cookie", format!("__Host-refresh_token={refresh}"))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry_after, refresh_cookie(&response))
}

fn refresh_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| cookie::Cookie::parse(v.to_str().ok()?.to_owned()).ok())
        .find(|c| c.name() == "__Host-refresh_token")
        .map(|c| c.value().to_owned())
}

/// Every client refreshes in a loop until `stop`, keeping the newest token
/// it was given; a `503` keeps the token it has. Any other answer fails.
async fn refresh_until(
    http: reqwest::Client,
    url: String,
    mut client: Client,
    stop: Arc<AtomicBool>,
    unavailable: Arc<std::sync::atomic::AtomicUsize>,
) -> Client {
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let (status, retry_after, token) = post_token(&http, &url, &client.refresh).await;
        match status {
            200 => {
                client.refresh = token.expect("a rotated cookie");
                client.refreshed += 1;
            }
            503 => {
                assert_eq!(retry_after.as_deref(), Some("5"), "{}", client.name);
                unavailable.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("{}: {other} during the outage test", client.name),
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "a bounded wait"
        );
    }
    client
}

/// The outage, on `auth` served over a real socket: clients refreshing, the
/// database taken away by `down` and given back by `up`, and every client
/// carrying on afterwards from the token it holds. `reads_fail`: reads fail
/// too (a lost server), not only writes (a held lock), so `/readyz` says so.
async fn outage<D, U>(auth: Auth, store: Arc<dyn Store>, reads_fail: bool, down: D, up: U)
where
    D: AsyncFnOnce(),
    U: AsyncFnOnce(),
{
    let server = TestServer::start(auth.clone()).await;
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let name = format!("client{i}");
        auth.create_user(&name, PASSWORD, "user").await.unwrap();
        let login = http
            .post(server.url("/login"))
            .json(&json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), 200);
        let refresh = refresh_cookie(&login).expect("a refresh cookie");
        clients.push(Client {
            name,
            refresh,
            refreshed: 0,
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let unavailable = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut running = JoinSet::new();
    for client in clients {
        running.spawn(refresh_until(
            http.clone(),
            server.url("/token"),
            client,
            stop.clone(),
            unavailable.clone(),
        ));
    }
    // Requests in flight when the database goes away.
    tokio::time::sleep(Duration::from_millis(300)).await;
    down().await;

    // While it is away: a login and readiness answer 503 too, in bounded time.
    let started = Instant::now();
    let login = http
        .post(server.url("/login"))
        .json(&json!({ "username": "client0", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 503);
    assert_eq!(login.headers()["retry-after"], "5");
    let body: serde_json::Value = login.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    assert!(started.elapsed() < Duration::from_secs(15));
    if reads_fail {
        let ready = http.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while unavailable.load(Ordering::SeqCst) < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "the refreshing clients met the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Back: no restart, every client goes on from the token it holds.
    up().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "ready again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut clients = Vec::new();
    while let Some(joined) = running.join_next().await {
        clients.push(joined.expect("client task"));
    }
    let mut generations = HashMap::new();
    for client in &clients {
        let (status, _, token) = post_token(&http, &server.url("/token"), &client.refresh).await;
        assert_eq!(status, 200, "{} carries on after the outage", client.name);
        let token = token.unwrap();
        let (status, _, _) = post_token(&http, &server.url("/token"), &token).await;
        assert_eq!(status, 200, "{}: its chain moves on", client.name);
        let user = store.user_by_name(&client.name).await.unwrap().unwrap();
        let sessions = store.active_sessions(user.id, START).await.unwrap();
        assert_eq!(sessions.len(), 1, "{}: one live session", client.name);
        generations.insert(
            client.name.clone(),
            (client.refreshed, sessions[0].generation),
        );
    }
    for (name, (refreshed, generation)) in &generations {
        // Every answered rotation is stored, and the two after the outage: a
        // rotation whose answer the outage cut off was committed whole, and
        // its client's next refresh got the grace answer (rotation rule 2).
        assert_eq!(
            *generation,
            i64::from(*refreshed) + 2,
            "{name}: {refreshed} answered before, two after"
        );
    }
    let events = audit_events(&*store).await;
    assert!(
        events.iter().all(|e| e.kind != "refresh_token_reused"),
        "no session was taken for a thief's"
    );
    server.stop().await;
}

fn auth_over(store: Arc<dyn Store>, url: &str, dir: &tempfile::TempDir) -> Auth {
    let vars = test_vars(
        dir,
        &[
            ("DATABASE_URL", url),
            ("MAX_REFRESHES_PER_MINUTE", "1000000"),
        ],
    );
    let config = config_from(&vars).unwrap();
    Auth::with_clock(config, store, Arc::new(ManualClock::starting_at(START))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_off_behind_a_proxy_answers_503_and_recovers_by_itself() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    // Through the proxy: `postgres://user@127.0.0.1:5432/db` → the proxy's port.
    let url = url::Url::parse(&database.url).unwrap();
    let target: SocketAddr = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
        .parse()
        .unwrap();
    let proxy = Arc::new(TcpProxy::start(target).await);
    let mut through = url.clone();
    through.set_port(Some(proxy.addr.port())).unwrap();
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(through.as_str()).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let auth = auth_over(store.clone(), through.as_str(), &dir);
    let (down, up) = (proxy.clone(), proxy.clone());
    outage(
        auth,
        store,
        true,
        async move || down.cut().await,
        async move || up.restore(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_locked_by_another_process_answers_503_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let url = format!("sqlite://{}", path.display());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).await.unwrap());
    let auth = auth_over(store.clone(), &url, &dir);
    // Another program holding the write lock: every write waits out the
    // busy timeout, then fails.
    let holder = Arc::new(Mutex::new(None::<sqlx::SqliteConnection>));
    let (down, up) = (holder.clone(), holder.clone());
    let locked_url = url.clone();
    outage(
        auth,
        store,
        false,
        async move || {
            let mut connection = sqlx::SqliteConnection::connect(&locked_url).await.unwrap();
            sqlx::raw_sql("BEGIN EXCLUSIVE")
                .execute(&mut connection)
                .await
                .unwrap();
            *down.lock().await = Some(connection);
        },
        async move || {
            let mut connection = up.lock().await.take().unwrap();
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut connection)
                .await
                .unwrap();
            connection.close().await.unwrap();
        },
    )
    .await;
}

/// The binary's log across an outage: one warning when it begins, and no
/// error however many requests it refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_logged_once_not_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let url = format!("sqlite://{}", path.display());
    let mut vars = test_vars(&dir, &[("DATABASE_URL", &url)]);
    vars.insert("BIND".into(), "127.0.0.1:0".into());
    vars.insert("RUST_LOG".into(), "latchkey=info".into());
    vars.insert("NO_COLOR".into(), "1".into());
    let server = process::ChildServer::start(&vars, dir.path());
    let http = reqwest::Client::new();
    let mut refresh_tokens = Vec::new();
    for i in 0..4 {
        let name = format!("user{i}");
        let register = http
            .post(server.url("/register"))
            .json(&json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(register.status(), 201, "{}", register.text().await.unwrap());
        let login = http
            .post(server.url("/login"))
            .json(&json!({ "username": name, "password": PASSWORD }))
            .send()
            .await
            .unwrap();
        refresh_tokens.push(refresh_cookie(&login).unwrap());
    }

    let mut holder = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut refused = JoinSet::new();
    for token in refresh_tokens.clone() {
        let (http, url) = (http.clone(), server.url("/token"));
        refused.spawn(async move { post_token(&http, &url, &token).await.0 });
    }
    while let Some(status) = refused.join_next().await {
        assert_eq!(status.unwrap(), 503);
    }
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    holder.close().await.unwrap();
    for token in &refresh_tokens {
        assert_eq!(post_token(&http, &server.url("/token"), token).await.0, 200);
    }

    let (log, _) = server.stop();
    let count = |needle: &str| log.lines().filter(|line| line.contains(needle)).count();
    assert_eq!(count("the database does not answer"), 1, "{log}");
    assert_eq!(count("ERROR"), 0, "{log}");
}

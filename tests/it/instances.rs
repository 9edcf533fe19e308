//! Several instances, one truth: two or three real latchkey servers, each with
//! its own connection pool, on port-0 sockets in this process, sharing one
//! database and one hand-moved clock. A rotation, a logout, a revocation or a
//! detected reuse on one instance holds on every other at once, and concurrent
//! refreshes spread over the instances never fork the chain (README,
//! "Rotation rules").
//!
//! Every test runs on PostgreSQL (a fresh database per test from
//! `TEST_DATABASE_URL`; skipped with a notice without it, failing under
//! `CI=true`) and on SQLite (several pools on one file: several processes on
//! one machine).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use latchkey::Auth;
use latchkey::clock::ManualClock;
use latchkey::store::{Session, User};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{
    PASSWORD, START, StoreKind, TestDatabase, TestServer, TestStore, audit_events, config_from,
    secs, test_vars,
};

const COOKIE_NAME: &str = "__Host-refresh_token";
/// `REFRESH_REUSE_GRACE` of the test configuration (the default).
const GRACE: i64 = 10;

/// One latchkey: its own pool over the shared database, its own server.
struct Instance {
    auth: Auth,
    store: TestStore,
    server: TestServer,
}

/// Instances over one database and one clock, and an HTTP client for them.
struct Cluster {
    instances: Vec<Instance>,
    clock: ManualClock,
    http: reqwest::Client,
    _dir: TempDir,
    /// Last, so the database goes after every pool that uses it.
    _database: Option<TestDatabase>,
}

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    /// The value of the refresh cookie the response sets (empty: a clearing one).
    cookie: Option<String>,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let cookie = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
            .find(|c| c.name() == COOKIE_NAME)
            .map(|c| c.value().to_owned());
        let body = response.text().await.expect("response body");
        Self {
            status,
            body,
            cookie,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn access_token(&self) -> String {
        self.json()["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token: {}", self.body))
            .to_owned()
    }

    /// The refresh token this 200 sets (not a clearing cookie).
    fn refresh_token(&self) -> String {
        assert_eq!(self.status, 200, "expected 200: {}", self.body);
        let token = self.cookie.clone().expect("a refresh cookie");
        assert!(!token.is_empty(), "a set cookie, not a clearing one");
        token
    }

    /// A `401 <code>` that tells the browser to forget the cookie.
    fn assert_refused(&self, code: &str) {
        assert_eq!(self.status, 401, "expected 401 {code}, got: {}", self.body);
        assert_eq!(self.json()["error"], code, "{}", self.body);
        assert_eq!(
            self.cookie.as_deref(),
            Some(""),
            "the refusal clears the cookie"
        );
    }
}

/// A signed-in client: its tokens and the session they belong to.
struct SignedIn {
    access: String,
    refresh: String,
    sid: String,
}

impl Cluster {
    /// `count` instances over one fresh database of `kind`, or `None` when
    /// that store is not available here (PostgreSQL without `TEST_DATABASE_URL`).
    async fn start(kind: StoreKind, count: usize) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars = test_vars(&dir, &[]);
        let database = match kind {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(TestDatabase::create().await?),
        };
        if let Some(database) = &database {
            vars.insert("DATABASE_URL".into(), database.url.clone());
        }
        let clock = ManualClock::starting_at(START);
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            let config = config_from(&vars).expect("valid test config");
            assert_eq!(secs(config.tokens.reuse_grace), GRACE);
            // A pool of its own, as a separate process would have.
            let store = TestStore::open(&config.database).await;
            let auth = Auth::with_clock(config, store.shared(), Arc::new(clock.clone()))
                .expect("secrets set");
            let server = TestServer::start(auth.clone()).await;
            instances.push(Instance {
                auth,
                store,
                server,
            });
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        Some(Self {
            instances,
            clock,
            http,
            _dir: dir,
            _database: database,
        })
    }

    fn url(&self, instance: usize, path: &str) -> String {
        self.instances[instance].server.url(path)
    }

    fn advance(&self, seconds: i64) {
        self.clock.advance(seconds);
    }

    fn clock_now(&self) -> i64 {
        latchkey::clock::Clock::now(&self.clock)
    }

    /// Stops every server and closes every pool.
    async fn stop(self) {
        for instance in self.instances {
            instance.server.stop().await;
            instance.store.close().await;
        }
    }

    async fn add_user(&self, username: &str) -> User {
        self.instances[0]
            .auth
            .create_user(username, PASSWORD, "user")
            .await
            .expect("create user")
    }

    /// Signs `username` in on `instance`; the session id is read on another one.
    async fn login(&self, instance: usize, username: &str) -> SignedIn {
        let response = self
            .http
            .post(self.url(instance, "/login"))
            .json(&json!({ "username": username, "password": PASSWORD }))
            .send()
            .await
            .expect("login reaches the server");
        let reply = Reply::read(response).await;
        assert_eq!(reply.status, 200, "login failed: {}", reply.body);
        let access = reply.access_token();
        let refresh = reply.refresh_token();
        let other = (instance + 1) % self.instances.len();
        let me = self
            .bearer(other, reqwest::Method::GET, "/me", &access)
            .await;
        assert_eq!(me.status, 200, "/me on another instance: {}", me.body);
        let sid = me.json()["session_id"]
            .as_str()
            .expect("session_id")
            .to_owned();
        SignedIn {
            access,
            refresh,
            sid,
        }
    }

    /// `POST /token` on `instance` presenting `refresh`.
    async fn token(&self, instance: usize, refresh: &str) -> Reply {
        let response = self
            .http
            .post(self.url(instance, "/token"))
            .header("cookie", format!("{COOKIE_NAME}={refresh}"))
            .send()
            .await
            .expect("request reaches the server");
        Reply::read(response).await
    }

    /// A `/token` call that must rotate (or take the grace path); the new token.
    async fn rotate(&self, instance: usize, refresh: &str) -> String {
        let reply = self.token(instance, refresh).await;
        assert_eq!(
            reply.status, 200,
            "refresh on instance {instance} refused: {}",
            reply.body
        );
        reply.refresh_token()
    }

    async fn logout(&self, instance: usize, refresh: &str) -> Reply {
        let response = self
            .http
            .post(self.url(instance, "/logout"))
            .header("cookie", format!("{COOKIE_NAME}={refresh}"))
            .send()
            .await
            .expect("request reaches the server");
        Reply::read(response).await
    }

    async fn bearer(
        &self,
        instance: usize,
        method: reqwest::Method,
        path: &str,
        access: &str,
    ) -> Reply {
        let response = self
            .http
            .request(method, self.url(instance, path))
            .bearer_auth(access)
            .send()
            .await
            .expect("request reaches the server");
        Reply::read(response).await
    }

    /// The session row as instance `instance`'s pool reads it.
    async fn session(&self, instance: usize, sid: &str) -> Session {
        self.instances[instance]
            .store
            .session(sid)
            .await
            .expect("store answers")
            .expect("session row exists")
    }

    /// The session as every instance sees it; they must agree.
    async fn session_everywhere(&self, sid: &str) -> Session {
        let first = self.session(0, sid).await;
        for i in 1..self.instances.len() {
            assert_eq!(
                self.session(i, sid).await,
                first,
                "instance {i} sees another session row"
            );
        }
        first
    }

    async fn event_kinds(&self) -> Vec<String> {
        audit_events(&*self.instances[0].store)
            .await
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Ids of `user`'s active sessions as `GET /sessions` on `instance` lists them.
    async fn listed_sessions(&self, instance: usize, access: &str) -> Vec<String> {
        let reply = self
            .bearer(instance, reqwest::Method::GET, "/sessions", access)
            .await;
        assert_eq!(reply.status, 200, "/sessions: {}", reply.body);
        let mut ids: Vec<String> = reply
            .json()
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    }
}

/// Starts a cluster or skips the test (PostgreSQL without `TEST_DATABASE_URL`).
macro_rules! cluster {
    ($kind:expr, $count:expr) => {
        match Cluster::start($kind, $count).await {
            Some(cluster) => cluster,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// Rule 3 across instances.

async fn reuse_on_another_instance_after_the_grace_window_kills_the_session_on_every_instance(
    kind: StoreKind,
) {
    let c = cluster!(kind, 2);
    c.add_user("ann").await;
    let ann = c.login(0, "ann").await;

    let refresh1 = c.rotate(0, &ann.refresh).await;
    assert_eq!(c.session_everywhere(&ann.sid).await.generation, 1);

    // The thief replays the old token on the other instance, too late for grace.
    c.advance(GRACE + 1);
    let replay = c.token(1, &ann.refresh).await;
    replay.assert_refused("refresh_token_reused");

    let session = c.session_everywhere(&ann.sid).await;
    assert!(session.revoked_at.is_some(), "the session is revoked");
    assert_eq!(
        session.revoked_reason.as_deref(),
        Some("refresh_token_reused")
    );
    assert!(
        c.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned()),
        "reuse is recorded once for all instances: {:?}",
        c.event_kinds().await
    );

    // The legitimate holder's newest token is dead on both instances.
    c.token(0, &refresh1)
        .await
        .assert_refused("invalid_refresh_token");
    c.token(1, &refresh1)
        .await
        .assert_refused("invalid_refresh_token");
    let user = c.instances[1]
        .store
        .user_by_name("ann")
        .await
        .unwrap()
        .unwrap();
    assert!(
        c.instances[1]
            .store
            .active_sessions(user.id, c.clock_now())
            .await
            .unwrap()
            .is_empty(),
        "no live session is left"
    );
    c.stop().await;
}

// Rule 2 across instances: the other instance honours the grace window.
async fn the_token_just_rotated_away_on_one_instance_gets_the_current_cookie_on_another(
    kind: StoreKind,
) {
    let c = cluster!(kind, 2);
    c.add_user("ann").await;
    let ann = c.login(0, "ann").await;

    let refresh1 = c.rotate(0, &ann.refresh).await;
    c.advance(GRACE - 1);
    let late = c.token(1, &ann.refresh).await;
    assert_eq!(
        late.refresh_token(),
        refresh1,
        "the other instance hands back the session's current token, byte for byte"
    );
    let session = c.session_everywhere(&ann.sid).await;
    assert_eq!(session.generation, 1, "the chain did not advance");
    assert_eq!(session.revoked_at, None);

    // The current token goes on rotating, on either instance.
    let refresh2 = c.rotate(1, &refresh1).await;
    let refresh3 = c.rotate(0, &refresh2).await;
    assert_ne!(refresh3, refresh2);
    assert_eq!(c.session_everywhere(&ann.sid).await.generation, 3);
    c.stop().await;
}

// ---------------------------------------------------------------------------
// Logout and revocation across instances.

async fn logout_on_one_instance_kills_the_cookie_on_the_others(kind: StoreKind) {
    let c = cluster!(kind, 2);
    c.add_user("ann").await;
    let ann = c.login(0, "ann").await;
    // Alive on B first, so the refusal below is the logout's doing.
    let refresh1 = c.rotate(1, &ann.refresh).await;

    let logout = c.logout(0, &refresh1).await;
    assert_eq!(logout.status, 204, "{}", logout.body);
    assert_eq!(
        logout.cookie.as_deref(),
        Some(""),
        "logout clears the cookie"
    );

    c.token(1, &refresh1)
        .await
        .assert_refused("invalid_refresh_token");
    c.token(0, &refresh1)
        .await
        .assert_refused("invalid_refresh_token");
    let session = c.session_everywhere(&ann.sid).await;
    assert!(session.revoked_at.is_some());
    assert_eq!(session.revoked_reason.as_deref(), Some("logout"));
    c.stop().await;
}

async fn revoking_a_session_on_one_instance_kills_it_on_the_others(kind: StoreKind) {
    let c = cluster!(kind, 2);
    c.add_user("ann").await;
    let on_a = c.login(0, "ann").await;
    let on_b = c.login(1, "ann").await;

    let revoke = c
        .bearer(
            1,
            reqwest::Method::DELETE,
            &format!("/sessions/{}", on_a.sid),
            &on_b.access,
        )
        .await;
    assert_eq!(revoke.status, 204, "{}", revoke.body);

    c.token(0, &on_a.refresh)
        .await
        .assert_refused("invalid_refresh_token");
    assert_eq!(
        c.listed_sessions(0, &on_b.access).await,
        vec![on_b.sid.clone()]
    );
    c.rotate(0, &on_b.refresh).await;
    c.stop().await;
}

async fn log_out_everywhere_on_one_instance_kills_sessions_created_on_the_others(kind: StoreKind) {
    let c = cluster!(kind, 3);
    c.add_user("ann").await;
    c.add_user("bob").await;
    // Ann signs in on every instance (twice on A); Bob on A.
    let ann_a1 = c.login(0, "ann").await;
    let ann_a2 = c.login(0, "ann").await;
    let ann_c = c.login(2, "ann").await;
    let ann_b = c.login(1, "ann").await;
    let bob = c.login(0, "bob").await;
    let mut all = vec![
        ann_a1.sid.clone(),
        ann_a2.sid.clone(),
        ann_b.sid.clone(),
        ann_c.sid.clone(),
    ];
    all.sort();
    for i in 0..3 {
        assert_eq!(c.listed_sessions(i, &ann_b.access).await, all);
    }

    let everywhere = c
        .bearer(1, reqwest::Method::DELETE, "/sessions", &ann_b.access)
        .await;
    assert_eq!(everywhere.status, 204, "{}", everywhere.body);

    for ann in [&ann_a1, &ann_a2, &ann_c, &ann_b] {
        for i in 0..3 {
            c.token(i, &ann.refresh)
                .await
                .assert_refused("invalid_refresh_token");
        }
        let session = c.session_everywhere(&ann.sid).await;
        assert_eq!(
            session.revoked_reason.as_deref(),
            Some("revoked_everywhere")
        );
    }
    // Her access token belonged to one of them: every instance now refuses
    // it for account actions (README, "How sessions work").
    for i in 0..3 {
        let refused = c
            .bearer(i, reqwest::Method::GET, "/sessions", &ann_b.access)
            .await;
        assert_eq!(refused.status, 401, "{}", refused.body);
    }
    // Bob's session, on the instance that created it and elsewhere, lives on.
    let bob1 = c.rotate(0, &bob.refresh).await;
    let bob2 = c.rotate(2, &bob1).await;
    c.rotate(1, &bob2).await;
    assert_eq!(c.session_everywhere(&bob.sid).await.revoked_at, None);
    c.stop().await;
}

// ---------------------------------------------------------------------------
// Rule 4 across instances.

async fn sixty_four_concurrent_refreshes_spread_over_the_instances_leave_one_live_chain(
    kind: StoreKind,
) {
    const CALLS: usize = 64;
    let count = match kind {
        StoreKind::Sqlite => 2,
        StoreKind::Postgres => 3,
    };
    let c = cluster!(kind, count);
    let ann_user = c.add_user("ann").await;
    let ann = c.login(0, "ann").await;

    let barrier = Arc::new(tokio::sync::Barrier::new(CALLS));
    let mut calls = tokio::task::JoinSet::new();
    for call in 0..CALLS {
        // Round-robin over the instances, as a load balancer would.
        let instance = call % count;
        let url = c.url(instance, "/token");
        let http = c.http.clone();
        let cookie = format!("{COOKIE_NAME}={}", ann.refresh);
        let barrier = barrier.clone();
        calls.spawn(async move {
            barrier.wait().await;
            let response = http
                .post(&url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("request reaches the server");
            (instance, Reply::read(response).await)
        });
    }
    let mut replies = Vec::with_capacity(CALLS);
    while let Some(joined) = calls.join_next().await {
        replies.push(joined.expect("task"));
    }

    assert_eq!(replies.len(), CALLS);
    for (instance, reply) in &replies {
        assert_eq!(
            reply.status, 200,
            "every concurrent caller succeeds (instance {instance}): {}",
            reply.body
        );
    }
    let first = replies[0].1.refresh_token();
    assert_ne!(first, ann.refresh);
    for (instance, reply) in &replies {
        assert_eq!(
            reply.refresh_token(),
            first,
            "instance {instance} handed out another refresh token: two chains"
        );
    }
    let session = c.session_everywhere(&ann.sid).await;
    assert_eq!(session.generation, 1, "exactly one rotation happened");
    assert_eq!(session.revoked_at, None);
    assert!(
        !c.event_kinds()
            .await
            .contains(&"refresh_token_reused".to_owned()),
        "racing callers are not reuse"
    );
    // Every access token handed out works on every instance.
    for (n, (_, reply)) in replies.iter().enumerate() {
        let protected = c
            .bearer(
                n % count,
                reqwest::Method::GET,
                "/protected",
                &reply.access_token(),
            )
            .await;
        assert_eq!(protected.status, 200, "{}", protected.body);
    }

    // The one chain continues: it rotates on another instance, and its
    // previous token (within grace) answers with the new one everywhere.
    let next = c.rotate(count - 1, &first).await;
    assert_ne!(next, first);
    assert_eq!(c.session_everywhere(&ann.sid).await.generation, 2);
    for i in 0..count {
        assert_eq!(c.rotate(i, &first).await, next, "instance {i}");
    }
    let after = c.rotate(0, &next).await;
    assert_ne!(after, next);
    let session = c.session_everywhere(&ann.sid).await;
    assert_eq!(session.generation, 3);
    assert_eq!(session.revoked_at, None);
    let live = c.instances[count - 1]
        .store
        .active_sessions(ann_user.id, c.clock_now())
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "exactly one live session: {live:?}");
    assert_eq!(live[0].id, ann.sid);
    c.stop().await;
}

/// Stamps each scenario above once per store: `instances::sqlite::…` and
/// `instances::postgres::…`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use crate::helpers::StoreKind;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(StoreKind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            use crate::helpers::StoreKind;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(StoreKind::Postgres).await;
                }
            )*
        }
    };
}

on_both_stores!(
    reuse_on_another_instance_after_the_grace_window_kills_the_session_on_every_instance,
    the_token_just_rotated_away_on_one_instance_gets_the_current_cookie_on_another,
    logout_on_one_instance_kills_the_cookie_on_the_others,
    revoking_a_session_on_one_instance_kills_it_on_the_others,
    log_out_everywhere_on_one_instance_kills_sessions_created_on_the_others,
    sixty_four_concurrent_refreshes_spread_over_the_instances_leave_one_live_chain,
);

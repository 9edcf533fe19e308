//! Rotation latency against the number of stored sessions (README, "Rotation
//! cost does not grow with stored sessions"): does a refresh cost the same
//! with a thousand sessions in the store as with a million?
//!
//! For each store and each session count it creates a fresh database (SQLite:
//! a file in a temporary directory; PostgreSQL: a database created on the
//! server of `--database-url`, dropped at the end), opens it through
//! latchkey's own store so the migrations apply, bulk-seeds the sessions with
//! plain SQL, starts latchkey on it in-process on a port-0 socket, and signs a
//! few users in over HTTP. Then it measures, one call at a time:
//!
//! - `POST /token` over HTTP/1.1 keep-alive on loopback, each signed-in client
//!   presenting its latest refresh cookie (the whole path: cookie, JWT check,
//!   store, new JWTs, response);
//! - `store.rotate_session` alone on those same sessions (the database's share);
//! - `store.rotate_session` on seeded sessions picked at random from the whole
//!   table (rows whose pages nobody touched lately).
//!
//! The session counts of one store are measured in interleaved rounds, so
//! whatever else the machine does in the meantime lands on all of them alike.
//! It prints the query plans of the statements a rotation runs and the depth
//! of the B-trees they descend, then one Markdown table.
//!
//! ```text
//! cargo run --release --example rotation_latency -- \
//!     --store sqlite,postgres --sessions 1000,1000000
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::{Parser, ValueEnum};
use latchkey::store::{PostgresStore, SqliteStore, Store};
use latchkey::{Auth, Config};
use reqwest::header::{COOKIE, SET_COOKIE};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Parser)]
#[command(about = "Rotation latency with N stored sessions, per store")]
struct Args {
    /// Stores to measure, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [StoreKind::Sqlite, StoreKind::Postgres])]
    store: Vec<StoreKind>,
    /// Stored-session counts to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000_u64, 1_000_000])]
    sessions: Vec<u64>,
    /// A PostgreSQL server to create (and drop) the databases on; the
    /// database it names is only used to connect.
    #[arg(
        long,
        env = "ROTATION_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Measured rotations per measurement (after the warm-up).
    #[arg(long, default_value_t = 2_000)]
    rotations: usize,
    /// Unmeasured rotations before each measurement.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Rounds the measured rotations are split into, interleaving the
    /// session counts (finely: on a busy machine, load comes and goes within
    /// seconds).
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    /// Signed-in clients taking turns at `POST /token`.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Users the seeded sessions are spread over.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Seeded sessions the random-row measurement picks from.
    #[arg(long, default_value_t = 10_000)]
    sample: u64,
    /// Where the SQLite databases are created (a disk, not a tmpfs, or
    /// `synchronous=FULL` costs nothing). Default: the system temp dir.
    #[arg(long)]
    sqlite_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    fn label(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Http,
    StoreSame,
    StoreRandom,
}

impl Measure {
    const ALL: [Measure; 3] = [Measure::Http, Measure::StoreSame, Measure::StoreRandom];

    fn label(self) -> &'static str {
        match self {
            Measure::Http => "`POST /token` over HTTP",
            Measure::StoreSame => "`rotate_session`, same sessions",
            Measure::StoreRandom => "`rotate_session`, random rows",
        }
    }
}

/// The latencies of one measurement.
struct Stats {
    sorted: Vec<Duration>,
}

impl Stats {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self { sorted: samples }
    }

    /// Nearest-rank percentile, in microseconds.
    fn percentile(&self, p: f64) -> f64 {
        if self.sorted.is_empty() {
            return f64::NAN;
        }
        let rank = (p / 100.0 * self.sorted.len() as f64).ceil() as usize;
        micros(self.sorted[rank.clamp(1, self.sorted.len()) - 1])
    }

    fn mean(&self) -> f64 {
        let total: Duration = self.sorted.iter().sum();
        micros(total) / self.sorted.len().max(1) as f64
    }

    /// One at a time, so throughput is the inverse of the mean.
    fn per_second(&self) -> f64 {
        1e6 / self.mean()
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One store at one session count, measured.
struct Run {
    store: StoreKind,
    sessions: u64,
    seeded: Seeded,
    results: Vec<(Measure, Stats)>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.rotations > 0, "--rotations must be at least 1");
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.users > 0, "--users must be at least 1");
    ensure!(args.sample > 0, "--sample must be at least 1");
    let mut counts = args.sessions.clone();
    counts.sort_unstable();
    counts.dedup();
    ensure!(
        counts.first().is_some_and(|&n| n > 0),
        "--sessions must be at least 1"
    );

    let load_before = load_average();
    let mut runs = Vec::new();
    for &store in &args.store {
        let mut benches = Vec::new();
        let outcome = tokio::select! {
            outcome = measure_store(&args, store, &counts, &mut benches) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        };
        // Every prepared database goes, whatever happened. (One whose
        // preparation ctrl-c cuts short may stay: `latchkey_rotation_*`.)
        for bench in benches {
            let sessions = bench.sessions;
            match bench.finish().await {
                Ok(run) => runs.push(run),
                Err(e) => eprintln!(
                    "warning: tearing down {} with {sessions} sessions: {e:#}",
                    store.label()
                ),
            }
        }
        outcome.with_context(|| store.label())?;
    }
    print_report(&args, &runs, &load_before, &load_average()).await;
    Ok(())
}

/// Prepares one bench per count, warms each up, then measures them in
/// interleaved rounds (the order reversed every other round).
async fn measure_store(
    args: &Args,
    store: StoreKind,
    counts: &[u64],
    benches: &mut Vec<Bench>,
) -> Result<()> {
    for &n in counts {
        eprintln!("== {}: {n} stored sessions", store.label());
        let bench = Bench::prepare(args, store, n)
            .await
            .with_context(|| format!("preparing {n} sessions"))?;
        benches.push(bench);
    }
    for bench in benches.iter_mut() {
        bench.round(args.warmup, false).await?;
    }
    let per_round = args.rotations.div_ceil(args.rounds);
    for round in 0..args.rounds {
        eprintln!("   round {} of {}", round + 1, args.rounds);
        let mut order: Vec<&mut Bench> = benches.iter_mut().collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for bench in order {
            bench.round(per_round, true).await?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// One store at one session count: a seeded database with latchkey serving it.

/// A throwaway database.
enum Scratch {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl Scratch {
    /// Creates an empty database; returns it and its `DATABASE_URL`.
    async fn create(args: &Args, kind: StoreKind) -> Result<(Self, String)> {
        match kind {
            StoreKind::Sqlite => {
                let parent = args.sqlite_dir.clone().unwrap_or_else(std::env::temp_dir);
                let dir = tempfile::Builder::new()
                    .prefix("latchkey-rotation-")
                    .tempdir_in(&parent)
                    .with_context(|| format!("a temporary directory in {}", parent.display()))?;
                let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
                Ok((Scratch::Sqlite(dir), url))
            }
            StoreKind::Postgres => {
                let mut suffix = [0u8; 6];
                getrandom::fill(&mut suffix).map_err(|e| anyhow!("random: {e}"))?;
                let hex: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
                let name = format!("latchkey_rotation_{hex}");
                let mut admin = PgConnection::connect(&args.database_url)
                    .await
                    .with_context(|| format!("connecting to {}", args.database_url))?;
                sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut admin)
                    .await?;
                let _ = admin.close().await;
                let mut url = url::Url::parse(&args.database_url)?;
                url.set_path(&format!("/{name}"));
                let scratch = Scratch::Postgres {
                    admin_url: args.database_url.clone(),
                    name,
                };
                Ok((scratch, url.into()))
            }
        }
    }

    async fn remove(self) -> Result<()> {
        match self {
            Scratch::Sqlite(dir) => Ok(dir.close()?),
            Scratch::Postgres { admin_url, name } => {
                let mut admin = PgConnection::connect(&admin_url).await?;
                // FORCE ends whatever connection is still open on it.
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .with_context(|| format!("dropping database {name}"))?;
                let _ = admin.close().await;
                Ok(())
            }
        }
    }
}

/// The store as opened, kept concrete so it can be closed.
enum Opened {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Opened {
    fn store(&self) -> Arc<dyn Store> {
        match self {
            Opened::Sqlite(s) => s.clone(),
            Opened::Postgres(s) => s.clone(),
        }
    }

    async fn close(&self) {
        match self {
            Opened::Sqlite(s) => s.close().await,
            Opened::Postgres(s) => s.close().await,
        }
    }
}

/// What seeding left: how long it took, how big the database is, and the
/// query plans and index depths found in it.
struct Seeded {
    time: Duration,
    size_bytes: u64,
    notes: String,
}

struct Bench {
    kind: StoreKind,
    sessions: u64,
    url: String,
    scratch: Scratch,
    live: Live,
}

/// Everything running against one database.
struct Live {
    opened: Opened,
    store: Arc<dyn Store>,
    seeded: Seeded,
    state: Auth,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    http: reqwest::Client,
    token_url: String,
    /// Each signed-in client's latest refresh cookie.
    cookies: Vec<String>,
    turn: usize,
    /// Seeded sessions from all over the table, with their generations.
    sample: Vec<(String, i64)>,
    rng: u64,
    samples: [Vec<Duration>; 3],
}

const PASSWORD: &str = "rotation-latency-password";

impl Bench {
    async fn prepare(args: &Args, kind: StoreKind, sessions: u64) -> Result<Self> {
        let (scratch, url) = Scratch::create(args, kind).await?;
        match Live::start(args, kind, sessions, &url).await {
            Ok(live) => Ok(Self {
                kind,
                sessions,
                url,
                scratch,
                live,
            }),
            Err(e) => {
                if let Err(r) = scratch.remove().await {
                    eprintln!("warning: {r:#}");
                }
                Err(e)
            }
        }
    }

    /// `count` rotations of each kind; kept only when `keep` (else a warm-up).
    async fn round(&mut self, count: usize, keep: bool) -> Result<()> {
        let live = &mut self.live;
        let http = live.http_rotations(count).await?;
        let same = live.same_rotations(count).await?;
        let random = live.random_rotations(count).await?;
        if keep {
            for (kept, new) in live.samples.iter_mut().zip([http, same, random]) {
                kept.extend(new);
            }
        }
        Ok(())
    }

    /// Stops the server, closes the store, removes the database.
    async fn finish(self) -> Result<Run> {
        let Bench {
            kind,
            sessions,
            url,
            scratch,
            mut live,
        } = self;
        drop(live.http);
        let _ = live.stop.send(());
        let stopped = tokio::time::timeout(Duration::from_secs(10), live.server).await;
        live.opened.close().await;
        drop(live.store);
        if kind == StoreKind::Postgres {
            // The store's connections are closed, so their statistics are in.
            match hot_updates(&url).await {
                Ok((updates, hot)) => {
                    let _ = writeln!(
                        live.seeded.notes,
                        "Rotations during the run: {updates} row updates, {hot} of them HOT \
                         (heap-only: no index entry written)"
                    );
                }
                Err(e) => eprintln!("warning: no update statistics: {e:#}"),
            }
        }
        scratch.remove().await?;
        match stopped {
            Ok(joined) => joined??,
            Err(_) => bail!("the server did not stop within 10 s"),
        }
        let [http, same, random] = live.samples;
        Ok(Run {
            store: kind,
            sessions,
            seeded: live.seeded,
            results: vec![
                (Measure::Http, Stats::new(http)),
                (Measure::StoreSame, Stats::new(same)),
                (Measure::StoreRandom, Stats::new(random)),
            ],
        })
    }
}

impl Live {
    async fn start(args: &Args, kind: StoreKind, n: u64, url: &str) -> Result<Self> {
        let (opened, seeded, sample) = match kind {
            StoreKind::Sqlite => {
                let path = PathBuf::from(url.trim_start_matches("sqlite://"));
                let store = Arc::new(SqliteStore::open(&path).await?);
                let (seeded, sample) = seed_sqlite(args, n, &path).await?;
                (Opened::Sqlite(store), seeded, sample)
            }
            StoreKind::Postgres => {
                let store = Arc::new(PostgresStore::connect(url).await?);
                let (seeded, sample) = seed_postgres(args, n, url).await?;
                (Opened::Postgres(store), seeded, sample)
            }
        };
        let store = opened.store();

        let settings = [
            ("DATABASE_URL", url),
            (
                "JWT_SECRET",
                "rotation-latency-access-secret-0123456789abcdef",
            ),
            (
                "JWT_REFRESH_SECRET",
                "rotation-latency-refresh-secret-0123456789abcdef",
            ),
            ("BCRYPT_COST", "4"),
        ];
        let config = Config::from_lookup(|key| {
            settings
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        })?;
        let state = Auth::new(config, store.clone())?;

        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(latchkey::serve(
            listener,
            latchkey::router(state.clone()),
            latchkey::ServeLimits::default(),
            None,
            async {
                let _ = stopped.await;
            },
        ));
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;

        let mut cookies = Vec::new();
        for i in 0..args.clients {
            let username = format!("rotation-client-{i}");
            state
                .create_user(&username, PASSWORD, "user")
                .await
                .map_err(|e| anyhow!("{e}"))?;
            let response = http
                .post(format!("{base}/login"))
                .json(&serde_json::json!({ "username": username, "password": PASSWORD }))
                .send()
                .await?;
            let status = response.status();
            let cookie = refresh_cookie(&response, state.refresh_cookie_name());
            let body = response.text().await?;
            ensure!(status == 200, "login of {username}: {status} {body}");
            cookies.push(cookie.context("the login set no refresh cookie")?);
        }

        Ok(Self {
            opened,
            store,
            seeded,
            state,
            stop,
            server,
            http,
            token_url: format!("{base}/token"),
            cookies,
            turn: 0,
            sample,
            rng: 0x9e37_79b9_7f4a_7c15,
            samples: Default::default(),
        })
    }

    /// `POST /token` with the clients' latest cookies in turn.
    async fn http_rotations(&mut self, count: usize) -> Result<Vec<Duration>> {
        let name = self.state.refresh_cookie_name();
        let mut took = Vec::with_capacity(count);
        for _ in 0..count {
            let client = self.turn % self.cookies.len();
            self.turn += 1;
            let started = Instant::now();
            let response = self
                .http
                .post(&self.token_url)
                .header(COOKIE, format!("{name}={}", self.cookies[client]))
                .send()
                .await?;
            let status = response.status();
            let cookie = refresh_cookie(&response, name);
            let body = response.bytes().await?;
            took.push(started.elapsed());
            ensure!(
                status == 200,
                "POST /token: {status} {}",
                String::from_utf8_lossy(&body)
            );
            self.cookies[client] = cookie.context("POST /token set no refresh cookie")?;
        }
        Ok(took)
    }

    /// `rotate_session` on the clients' sessions, continuing their chains;
    /// each client gets the cookie of its new generation (untimed), so HTTP
    /// carries on where this left off.
    async fn same_rotations(&mut self, count: usize) -> Result<Vec<Duration>> {
        let ttl = idle(self.state.config());
        let mut took = Vec::with_capacity(count);
        for _ in 0..count {
            let client = self.turn % self.cookies.len();
            self.turn += 1;
            let claims = self
                .state
                .token_keys()
                .verify_refresh(&self.cookies[client])
                .map_err(|e| anyhow!("a client's cookie does not verify: {e:?}"))?;
            let now = unix_now();
            let started = Instant::now();
            let rotated = self
                .store
                .rotate_session(&claims.sid, claims.generation, now, ttl)
                .await?;
            took.push(started.elapsed());
            let rotated = rotated.context("a rotation of a client's session lost")?;
            self.cookies[client] = self.state.token_keys().issue_refresh(&rotated.session)?;
        }
        Ok(took)
    }

    /// `rotate_session` on seeded sessions drawn at random (xorshift, fixed seed).
    async fn random_rotations(&mut self, count: usize) -> Result<Vec<Duration>> {
        let ttl = idle(self.state.config());
        let mut took = Vec::with_capacity(count);
        for _ in 0..count {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let pick = (self.rng % self.sample.len() as u64) as usize;
            let (id, generation) = &mut self.sample[pick];
            let now = unix_now();
            let started = Instant::now();
            let rotated = self.store.rotate_session(id, *generation, now, ttl).await?;
            took.push(started.elapsed());
            *generation = rotated
                .with_context(|| format!("the rotation of seeded session {id} lost"))?
                .session
                .generation;
        }
        Ok(took)
    }
}

fn refresh_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------
// The statements a rotation runs, as `src/store/{sqlite,postgres}.rs` write
// them (`rotate_session`, `session`, `user_by_id`), for their query plans.
// Keep them in step with the store.

macro_rules! session_columns {
    () => {
        "id, user_id, generation, rotated_at, created_at, last_used_at, idle_expires_at, \
         absolute_expires_at, revoked_at, revoked_reason, user_agent, ip"
    };
}

const SQLITE_PLANS: [(&str, &str); 3] = [
    (
        "rotation (UPDATE … RETURNING)",
        concat!(
            "EXPLAIN QUERY PLAN UPDATE sessions SET generation = generation + 1, rotated_at = ?1, \
                 last_used_at = ?1, idle_expires_at = MIN(?1 + ?2, absolute_expires_at) \
             WHERE id = ?3 AND generation = ?4 AND revoked_at IS NULL \
                 AND idle_expires_at > ?1 AND absolute_expires_at > ?1 \
             RETURNING ",
            session_columns!()
        ),
    ),
    (
        "session lookup",
        concat!(
            "EXPLAIN QUERY PLAN SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = ?3"
        ),
    ),
    (
        "user by id (the rotation reads it in the same statement)",
        "EXPLAIN QUERY PLAN SELECT id, username, password_hash, role, created_at, disabled_at \
         FROM users WHERE id = ?5",
    ),
];

// `ANALYZE` runs the statement, so the plans show the pages each one touched
// (`Buffers:`); the rotation's is rolled back.
const POSTGRES_PLANS: [(&str, &str); 3] = [
    (
        "rotation (UPDATE … RETURNING)",
        concat!(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) \
             UPDATE sessions SET generation = generation + 1, rotated_at = $1, last_used_at = $1, \
                 idle_expires_at = LEAST($1 + $2, absolute_expires_at) \
             WHERE id = $3 AND generation = $4 AND revoked_at IS NULL \
                 AND idle_expires_at > $1 AND absolute_expires_at > $1 \
             RETURNING ",
            session_columns!()
        ),
    ),
    (
        "session lookup",
        concat!(
            "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) SELECT ",
            session_columns!(),
            " FROM sessions WHERE id = $1"
        ),
    ),
    (
        "user by id (the rotation reads it in the same statement)",
        "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY OFF) \
         SELECT id, username, password_hash, role, created_at, disabled_at \
         FROM users WHERE id = $1",
    ),
];

// ---------------------------------------------------------------------------
// Seeding. Sessions are live, spread over `users` users, with created times
// over the last 20 days and ids in a random order, as real ones arrive.

/// Rows per INSERT statement.
const SEED_BATCH: u64 = 200_000;
const DAY: i64 = 86_400;
const SEED_USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 \
    (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

const SQLITE_SEED_USERS: &str = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < ?1) \
     INSERT INTO users (username, password_hash, role, created_at, updated_at) \
     SELECT 'seed-user-' || g, '!', 'user', ?2, ?2 FROM s";

// Ids: 43 random characters, like latchkey's (hex here, base64url there).
const SQLITE_SEED_SESSIONS: &str = "WITH RECURSIVE s(g) AS (SELECT ?1 UNION ALL SELECT g + 1 FROM s WHERE g + 1 < ?2) \
     INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
         idle_expires_at, absolute_expires_at, user_agent, ip) \
     SELECT substr(lower(hex(randomblob(22))), 1, 43), ?3 + g % ?4, g % 97, c, c, c, \
         ?5 + 86400, c + 2592000, ?6, \
         '10.' || (g / 65536 % 256) || '.' || (g / 256 % 256) || '.' || (g % 256) \
     FROM (SELECT g, ?5 - g * 7919 % 1728000 AS c FROM s)";

const POSTGRES_SEED_USERS: &str = "INSERT INTO users (username, password_hash, role, created_at, updated_at) \
     SELECT 'seed-user-' || g, '!', 'user', $2, $2 FROM generate_series(1, $1::bigint) AS g";

// Ids: SHA-256 of a counter in base64url, 43 characters exactly like latchkey's.
const POSTGRES_SEED_SESSIONS: &str = "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, last_used_at, \
         idle_expires_at, absolute_expires_at, user_agent, ip) \
     SELECT rtrim(translate(encode(sha256(convert_to('seed:' || g, 'UTF8')), 'base64'), '+/', '-_'), '='), \
         $3 + g % $4, g % 97, c, c, c, $5 + 86400, c + 2592000, $6, \
         '10.' || (g / 65536 % 256) || '.' || (g / 256 % 256) || '.' || (g % 256) \
     FROM (SELECT g, $5 - g * 7919 % 1728000 AS c \
           FROM generate_series($1::bigint, $2::bigint - 1) AS g) AS s";

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn batches(n: u64) -> impl Iterator<Item = (i64, i64)> {
    (0..n)
        .step_by(SEED_BATCH as usize)
        .map(move |start| (start as i64, (start + SEED_BATCH).min(n) as i64))
}

/// Seeds the SQLite file the store has opened and migrated; returns the
/// sample of seeded sessions for the random-row measurement.
async fn seed_sqlite(
    args: &Args,
    n: u64,
    path: &std::path::Path,
) -> Result<(Seeded, Vec<(String, i64)>)> {
    // Seeding needs no durability: its own connection, no fsync, and a cache
    // that holds the whole database, so one transaction writes each page once.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Off)
        .busy_timeout(Duration::from_secs(30))
        .pragma("cache_size", "-1048576");
    let mut conn = SqliteConnection::connect_with(&options).await?;

    let started = Instant::now();
    let now = unix_now();
    let mut tx = conn.begin().await?;
    sqlx::query(SQLITE_SEED_USERS)
        .bind(args.users as i64)
        .bind(now - 30 * DAY)
        .execute(&mut *tx)
        .await?;
    let first_user: i64 = sqlx::query_scalar("SELECT MIN(id) FROM users")
        .fetch_one(&mut *tx)
        .await?;
    // The secondary indexes go before the rows and are built after them, from
    // their own definitions (the primary key's cannot go: it grows as rows
    // arrive, in random order, as in real life).
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master \
         WHERE type = 'index' AND tbl_name = 'sessions' AND sql IS NOT NULL",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (name, _) in &indexes {
        let name = name.replace('"', "\"\"");
        sqlx::raw_sql(AssertSqlSafe(format!("DROP INDEX \"{name}\"")))
            .execute(&mut *tx)
            .await?;
    }
    for (start, end) in batches(n) {
        sqlx::query(SQLITE_SEED_SESSIONS)
            .bind(start)
            .bind(end)
            .bind(first_user)
            .bind(args.users as i64)
            .bind(now)
            .bind(SEED_USER_AGENT)
            .execute(&mut *tx)
            .await?;
    }
    let inserted = started.elapsed();
    for (_, sql) in indexes {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    let indexed = started.elapsed();
    sqlx::query("ANALYZE").execute(&mut conn).await?;
    // Leave nothing of the seeding in the WAL for measured commits to checkpoint.
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await?;
    ensure!(busy == 0, "the WAL checkpoint after seeding was blocked");
    let time = started.elapsed();
    eprintln!(
        "   seeded in {:.1} s (inserts {:.1} s, index builds and commit {:.1} s, ANALYZE and \
         checkpoint {:.1} s)",
        time.as_secs_f64(),
        inserted.as_secs_f64(),
        (indexed - inserted).as_secs_f64(),
        (time - indexed).as_secs_f64()
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&mut conn)
        .await?;
    ensure!(stored as u64 == n, "seeded {stored} sessions, wanted {n}");

    let sample: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, generation FROM sessions ORDER BY random() LIMIT ?1")
            .bind(args.sample as i64)
            .fetch_all(&mut conn)
            .await?;
    let (probe, generation) = sample.first().cloned().context("no seeded session")?;

    let mut notes = String::new();
    for (name, sql) in SQLITE_PLANS {
        let rows: Vec<(i64, i64, i64, String)> = sqlx::query_as(sql)
            .bind(now)
            .bind(DAY)
            .bind(&probe)
            .bind(generation)
            .bind(first_user)
            .fetch_all(&mut conn)
            .await?;
        let _ = writeln!(notes, "{name}:");
        for (_, _, _, detail) in rows {
            let _ = writeln!(notes, "    {detail}");
        }
    }
    let indexes: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sessions' \
         ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await?;
    let _ = writeln!(notes, "Indexes on sessions:");
    for (name, sql) in indexes {
        let _ = writeln!(
            notes,
            "    {}",
            sql.unwrap_or_else(|| format!("{name} (the PRIMARY KEY's)"))
        );
    }
    // dbstat names each page by its path from the root: "/", "/000/", "/000/01a/"…
    let depths: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT name, MAX(LENGTH(path) - LENGTH(REPLACE(path, '/', ''))), COUNT(*) FROM dbstat \
         WHERE name IN ('sessions', 'sqlite_autoindex_sessions_1', 'users') \
         GROUP BY name ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await?;
    let _ = writeln!(
        notes,
        "B-tree depth (a lookup by id descends the autoindex, then the table by rowid):"
    );
    for (name, levels, pages) in depths {
        let _ = writeln!(notes, "    {name}: {levels} levels, {pages} pages");
    }
    conn.close().await?;
    let size_bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok((
        Seeded {
            time,
            size_bytes,
            notes,
        },
        sample,
    ))
}

/// Seeds the PostgreSQL database the store has opened and migrated; returns
/// the sample of seeded sessions for the random-row measurement.
async fn seed_postgres(args: &Args, n: u64, url: &str) -> Result<(Seeded, Vec<(String, i64)>)> {
    let mut conn = PgConnection::connect(url).await?;
    // Seeding needs no durability (its commits need not wait for the WAL
    // flush) and no foreign-key triggers (its user ids exist by construction,
    // checked below).
    for sql in [
        "SET synchronous_commit = off",
        "SET session_replication_role = replica",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
    }

    let started = Instant::now();
    let now = unix_now();
    sqlx::query(POSTGRES_SEED_USERS)
        .bind(args.users as i64)
        .bind(now - 30 * DAY)
        .execute(&mut conn)
        .await?;
    let first_user: i64 = sqlx::query_scalar("SELECT MIN(id) FROM users")
        .fetch_one(&mut conn)
        .await?;
    // As a bulk load does: the indexes go before the rows and are built after
    // them (at a million rows, three times faster than growing them row by
    // row), from their own definitions read back from the catalog.
    let recreate = drop_session_indexes(&mut conn).await?;
    for (start, end) in batches(n) {
        sqlx::query(POSTGRES_SEED_SESSIONS)
            .bind(start)
            .bind(end)
            .bind(first_user)
            .bind(args.users as i64)
            .bind(now)
            .bind(SEED_USER_AGENT)
            .execute(&mut conn)
            .await?;
    }
    let inserted = started.elapsed();
    for sql in recreate {
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
    }
    let indexed = started.elapsed();
    sqlx::raw_sql("SET session_replication_role = DEFAULT")
        .execute(&mut conn)
        .await?;
    let orphans: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE NOT EXISTS \
         (SELECT 1 FROM users WHERE users.id = sessions.user_id)",
    )
    .fetch_one(&mut conn)
    .await?;
    ensure!(orphans == 0, "{orphans} seeded sessions name no user");
    // The state a long-lived table is in: statistics, a visibility map, and
    // no checkpoint of the seeding's WAL pending during the measurement.
    // One statement per call: several would share a transaction, which
    // VACUUM refuses.
    for sql in [
        "VACUUM (ANALYZE) users",
        "VACUUM (ANALYZE) sessions",
        "CHECKPOINT",
    ] {
        sqlx::raw_sql(sql).execute(&mut conn).await?;
    }
    let time = started.elapsed();
    eprintln!(
        "   seeded in {:.1} s (inserts {:.1} s, index builds {:.1} s, checks, VACUUM ANALYZE \
         and CHECKPOINT {:.1} s)",
        time.as_secs_f64(),
        inserted.as_secs_f64(),
        (indexed - inserted).as_secs_f64(),
        (time - indexed).as_secs_f64()
    );
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(&mut conn)
        .await?;
    ensure!(stored as u64 == n, "seeded {stored} sessions, wanted {n}");

    let sample: Vec<(String, i64)> =
        sqlx::query_as("SELECT id, generation FROM sessions ORDER BY random() LIMIT $1")
            .bind(args.sample as i64)
            .fetch_all(&mut conn)
            .await?;
    let (probe, generation) = sample.first().cloned().context("no seeded session")?;

    let mut notes = String::new();
    for (i, (name, sql)) in POSTGRES_PLANS.into_iter().enumerate() {
        let query = sqlx::query_scalar::<_, String>(sql);
        let query = match i {
            0 => query.bind(now).bind(DAY).bind(&probe).bind(generation),
            1 => query.bind(&probe),
            _ => query.bind(first_user),
        };
        let mut tx = conn.begin().await?;
        let lines = query.fetch_all(&mut *tx).await?;
        tx.rollback().await?;
        let _ = writeln!(notes, "{name}:");
        for line in lines {
            let _ = writeln!(notes, "    {line}");
        }
    }
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'sessions' ORDER BY indexname",
    )
    .fetch_all(&mut conn)
    .await?;
    let _ = writeln!(notes, "Indexes on sessions:");
    for index in indexes {
        let _ = writeln!(notes, "    {index}");
    }
    let _ = writeln!(notes, "B-tree depth (levels a lookup descends):");
    match btree_levels(&mut conn).await {
        Ok(levels) => {
            for (index, levels, pages) in levels {
                let _ = writeln!(notes, "    {index}: {levels} levels, {pages} pages");
            }
        }
        Err(e) => {
            let _ = writeln!(notes, "    unknown (pageinspect: {e})");
        }
    }
    let size_bytes: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok((
        Seeded {
            time,
            size_bytes: size_bytes as u64,
            notes,
        },
        sample,
    ))
}

/// Drops the indexes of `sessions`, its primary key included, and returns
/// the statements that create them again as the catalog defines them.
async fn drop_session_indexes(conn: &mut PgConnection) -> Result<Vec<String>> {
    // An index behind a constraint (the primary key) goes with its constraint.
    let constraints: Vec<(String, String)> = sqlx::query_as(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = 'sessions'::regclass AND contype IN ('p', 'u', 'x')",
    )
    .fetch_all(&mut *conn)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
         WHERE i.indrelid = 'sessions'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
             WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid)",
    )
    .fetch_all(&mut *conn)
    .await?;
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let mut recreate = Vec::new();
    for (name, definition) in constraints {
        let name = quote(&name);
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER TABLE sessions DROP CONSTRAINT {name}"
        )))
        .execute(&mut *conn)
        .await?;
        recreate.push(format!(
            "ALTER TABLE sessions ADD CONSTRAINT {name} {definition}"
        ));
    }
    for (name, definition) in indexes {
        // `regclass::text` comes quoted where the name needs it.
        sqlx::raw_sql(AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut *conn)
            .await?;
        recreate.push(definition);
    }
    Ok(recreate)
}

/// Updates of `sessions` so far, and how many of them were HOT.
async fn hot_updates(url: &str) -> Result<(i64, i64)> {
    let mut conn = PgConnection::connect(url).await?;
    let counts = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'sessions'",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(counts)
}

/// Levels of the primary-key indexes, from `pageinspect` (created in this
/// throwaway database only): a B-tree's root sits at `level`, its leaves at 0.
async fn btree_levels(conn: &mut PgConnection) -> Result<Vec<(String, i64, i64)>> {
    sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .execute(&mut *conn)
        .await?;
    Ok(sqlx::query_as(
        "SELECT i, (SELECT level FROM bt_metap(i))::bigint + 1, \
             pg_relation_size(i::regclass) / current_setting('block_size')::bigint \
         FROM unnest(ARRAY['sessions_pkey', 'users_pkey']) AS i",
    )
    .fetch_all(&mut *conn)
    .await?)
}

// ---------------------------------------------------------------------------
// The report

async fn print_report(args: &Args, runs: &[Run], load_before: &str, load_after: &str) {
    let per_round = args.rotations.div_ceil(args.rounds);
    println!("# Rotation latency against stored sessions\n");
    println!("{}\n", machine().await);
    println!(
        "Each figure: {} rotations one at a time ({} rounds of {per_round}, the session counts \
         interleaved, after {} unmeasured). `POST /token`: {} signed-in clients take turns, \
         each with its latest cookie, over HTTP/1.1 keep-alive on loopback to latchkey in the \
         same process. `rotate_session`: the store call alone, on those clients' sessions, or on \
         rows drawn at random from {} seeded sessions. Seeded sessions are live and spread over \
         {} users. SQLite: WAL, `synchronous=FULL`, file in {}. PostgreSQL: {}. Load average \
         before: {load_before}; after: {load_after}.\n",
        per_round * args.rounds,
        args.rounds,
        args.warmup,
        args.clients,
        args.sample,
        args.users,
        args.sqlite_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir)
            .display(),
        postgres_version(args).await,
    );

    let fewest = runs.iter().map(|r| r.sessions).min().unwrap_or(0);
    println!(
        "| store | stored sessions | measured | p50 µs | p90 µs | p99 µs | mean µs | rotations/s | \
         p50 ÷ p50 at {0} | mean ÷ mean at {0} |",
        thousands(fewest)
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for &store in &args.store {
        for measure in Measure::ALL {
            let rows: Vec<(u64, &Stats)> = runs
                .iter()
                .filter(|r| r.store == store)
                .filter_map(|r| {
                    r.results
                        .iter()
                        .find(|(m, _)| *m == measure)
                        .map(|(_, s)| (r.sessions, s))
                })
                .collect();
            let baseline = rows.iter().find(|(n, _)| *n == fewest).map(|(_, s)| *s);
            for (sessions, stats) in &rows {
                let ratio = |f: fn(&Stats) -> f64| {
                    baseline.map_or(String::new(), |b| format!("{:.2}×", f(stats) / f(b)))
                };
                println!(
                    "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} |",
                    store.label(),
                    thousands(*sessions),
                    measure.label(),
                    stats.percentile(50.0),
                    stats.percentile(90.0),
                    stats.percentile(99.0),
                    stats.mean(),
                    stats.per_second(),
                    ratio(|s| s.percentile(50.0)),
                    ratio(Stats::mean),
                );
            }
        }
    }

    println!("\n## Query plans and index depth\n");
    for run in runs {
        println!(
            "### {}, {} stored sessions (seeded in {:.1} s, database {:.0} MB)\n",
            run.store.label(),
            thousands(run.sessions),
            run.seeded.time.as_secs_f64(),
            run.seeded.size_bytes as f64 / 1e6
        );
        println!("```text\n{}```\n", run.seeded.notes);
    }
}

/// The 1, 5 and 15 minute load averages, as the kernel reports them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

async fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // The bundled library's version, asked of an in-memory database.
    let sqlite = async {
        let mut conn = SqliteConnection::connect("sqlite::memory:").await?;
        let v: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<_, anyhow::Error>(v)
    }
    .await
    .unwrap_or_else(|e| format!("unknown ({e})"));
    format!(
        "Machine: {cpu}, {cores} cores, {} {}; SQLite {sqlite}.",
        std::env::consts::OS,
        std::env::consts::ARCH,
    )
}

async fn postgres_version(args: &Args) -> String {
    if !args.store.contains(&StoreKind::Postgres) {
        return "not measured".into();
    }
    let version = async {
        let mut conn = PgConnection::connect(&args.database_url).await?;
        let v: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        let sync: String = sqlx::query_scalar("SHOW synchronous_commit")
            .fetch_one(&mut conn)
            .await?;
        let buffers: String = sqlx::query_scalar("SHOW shared_buffers")
            .fetch_one(&mut conn)
            .await?;
        conn.close().await?;
        Ok::<_, anyhow::Error>(format!(
            "{v} on 127.0.0.1, `synchronous_commit={sync}`, `shared_buffers={buffers}`"
        ))
    };
    version
        .await
        .unwrap_or_else(|e| format!("version unknown ({e})"))
}

/// The idle timeouts rotations slide by, as latchkey's own refresh has them.
fn idle(config: &latchkey::Config) -> latchkey::store::IdleTimeouts {
    let seconds = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    latchkey::store::IdleTimeouts {
        remembered: seconds(config.tokens.refresh_ttl),
        not_remembered: seconds(config.tokens.refresh_ttl_not_remembered),
    }
}

//! The `login flood` scenario: how long the account's owner waits to sign in
//! while one other address floods latchkey with concurrent wrong guesses,
//! as a ratio to the owner's idle login measured in the same run, on the
//! same server (goal: p50 at most 3× the idle one).
//!
//! The server runs on a database of its own with `TRUSTED_PROXIES=127.0.0.1`,
//! so that the two streams, both from this load generator on loopback, count
//! as two clients: the flood sends `X-Forwarded-For: 198.51.100.7`, the owner
//! `X-Forwarded-For: 203.0.113.9`. First the owner signs in alone, one login
//! after another, for the usual warm-up and measured window. Then `--flood-guessers`
//! connections (200) each send wrong guesses back to back, and after the
//! warm-up the owner signs in again, one login after another, each timed to
//! its answer however long that takes.
//!
//! The flood's answers are counted by status, apart from the owner's: `401`
//! (a guess latchkey verified), `429` (throttled) and `503` (refused busy) are
//! what a flood should get; anything else, or a broken connection, is an
//! error. The throttle limits are raised only as far as the flood needs to
//! keep guessing through the whole scenario at the hashing rate (the
//! concurrent guessers plus one core's bcrypt verifications per second over
//! the scenario): what is measured is how latchkey shares its hashing, not
//! the throttle cutting the flood off after 30 guesses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use hyper::Method;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use tokio::task::JoinSet;

use crate::http::{Conn, Reply};
use crate::load::Window;
use crate::report::{Row, Target};
use crate::server::{Launch, Server};
use crate::setup;
use crate::stats::{Figures, Latencies, millis};

/// The owner's address, and the flood's (documentation ranges, RFC 5737).
const OWNER_ADDRESS: HeaderValue = HeaderValue::from_static("203.0.113.9");
const FLOOD_ADDRESS: HeaderValue = HeaderValue::from_static("198.51.100.7");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The account the flood guesses at when it is not the owner's.
const OTHER_ACCOUNT: &str = "flood-target";
/// The owner's logins give up after this long without an answer.
const OWNER_PATIENCE: Duration = Duration::from_secs(120);

/// Whose password the flood guesses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloodTarget {
    /// Another account than the owner's.
    Other,
    /// The owner's own account.
    Owner,
}

pub struct Settings {
    pub guessers: usize,
    pub target: FloodTarget,
    pub warmup: Duration,
    pub duration: Duration,
    /// One core's bcrypt verifications per second at the server's cost.
    pub bcrypt_per_second: f64,
}

/// What the scenario measured.
pub struct LoginFlood {
    /// The owner signing in alone.
    pub idle: Figures,
    /// The owner signing in during the flood.
    pub flooded: Figures,
    /// The owner's logins during the flood that got no answer in time.
    pub owner_unanswered: u64,
    /// The flood's answers; its `errors` are the unexpected ones.
    pub flood: Figures,
    /// The flood's answers by status.
    pub flood_statuses: BTreeMap<u16, u64>,
    /// The throttle limits the server ran with.
    pub limit: u64,
    pub guessers: usize,
    pub target: FloodTarget,
}

/// Runs the scenario on a server of its own (database `login-flood.db` in `dir`).
pub async fn run(
    latchkey: &Path,
    base_env: &[(String, String)],
    dir: &Path,
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    settings: &Settings,
) -> Result<LoginFlood> {
    let scenario = settings.warmup + settings.duration;
    let limit = settings.guessers as u64
        + (settings.bcrypt_per_second * scenario.as_secs_f64()).ceil() as u64;
    let database = format!("sqlite://{}", dir.join("login-flood.db").display());
    let mut env = base_env.to_vec();
    for (key, value) in [
        ("DATABASE_URL", database),
        ("TRUSTED_PROXIES", "127.0.0.1".to_owned()),
        ("THROTTLE_LOGIN_PAIR", limit.to_string()),
        ("THROTTLE_LOGIN_ADDRESS", limit.to_string()),
        ("THROTTLE_LOGIN_ACCOUNT", limit.to_string()),
    ] {
        env.push((key.to_owned(), value));
    }
    setup::add_user(latchkey, &env).await?;
    let (server, _) = launch(latchkey, env, "latchkey-login-flood")
        .start()
        .await?;
    let result = measure(&server, settings).await;
    server.stop().await?;
    let (idle, flooded, owner_unanswered, flood, flood_statuses) = result?;
    Ok(LoginFlood {
        idle,
        flooded,
        owner_unanswered,
        flood,
        flood_statuses,
        limit,
        guessers: settings.guessers,
        target: settings.target,
    })
}

type Measured = (Figures, Figures, u64, Figures, BTreeMap<u16, u64>);

async fn measure(server: &Server, settings: &Settings) -> Result<Measured> {
    let guessed = match settings.target {
        FloodTarget::Other => {
            register(server.addr, OTHER_ACCOUNT).await?;
            OTHER_ACCOUNT
        }
        FloodTarget::Owner => setup::USERNAME,
    };

    eprintln!("login flood: the owner alone");
    server.reset_peak_memory()?;
    let window = Window::after(settings.warmup, settings.duration);
    let mut conn = Conn::open(server.addr).await?;
    let mut idle = Owner::default();
    let mut measuring = None;
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        if measuring.is_none() && sent >= window.start {
            measuring = Some((sent, server.cpu_time()?));
        }
        let result = owner_login(&mut conn).await;
        if measuring.is_some() {
            idle.record(result, sent.elapsed());
        }
    }
    let cpu = match measuring {
        Some((since, before)) => share(server.cpu_time()? - before, since.elapsed()),
        None => 0.0,
    };
    let idle = idle.figures(cpu, server.peak_memory_mib()?, settings.duration);

    eprintln!(
        "login flood: the owner while {} connections guess at {guessed}",
        settings.guessers
    );
    server.reset_peak_memory()?;
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let body = Bytes::from(
        serde_json::json!({ "username": guessed, "password": "a wrong guess" }).to_string(),
    );
    let mut guessers = JoinSet::new();
    for _ in 0..settings.guessers {
        let conn = Conn::open(server.addr).await?;
        guessers.spawn(guess(conn, body.clone(), stop.clone(), tally.clone()));
    }
    let flood_started = Instant::now();
    tokio::time::sleep(settings.warmup).await;
    let before = server.cpu_time()?;
    let owner_started = Instant::now();
    let mut flooded = Owner::default();
    let mut conn = Conn::open(server.addr).await?;
    while owner_started.elapsed() < settings.duration {
        let sent = Instant::now();
        match tokio::time::timeout(OWNER_PATIENCE, owner_login(&mut conn)).await {
            Ok(result) => flooded.record(result, sent.elapsed()),
            Err(_) => {
                flooded.unanswered += 1;
                break;
            }
        }
    }
    let owner_time = owner_started.elapsed();
    let cpu = share(server.cpu_time()? - before, owner_time);
    stop.store(true, Ordering::Relaxed);
    let flood_time = flood_started.elapsed();
    // Guesses still queued in the server would keep their connections busy
    // for as long as it takes to hash them; the server is stopped next anyway.
    guessers.abort_all();
    while guessers.join_next().await.is_some() {}
    let memory = server.peak_memory_mib()?;
    let unanswered = flooded.unanswered;
    let flooded = flooded.figures(cpu, memory, owner_time);

    let mut tally = std::mem::take(&mut *tally.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    for e in &tally.first_errors {
        eprintln!("  flood error: {e}");
    }
    let answered = tally.latencies.count();
    let flood = Figures {
        requests_per_second: answered as f64 / flood_time.as_secs_f64(),
        p50: tally.latencies.quantile(0.50),
        p99: tally.latencies.quantile(0.99),
        errors: tally.unexpected,
        server_cpu: cpu,
        peak_rss_mib: memory,
    };
    eprintln!(
        "  flood: {answered} answers in {:.1} s ({}), {} unexpected",
        flood_time.as_secs_f64(),
        statuses(&tally.statuses),
        tally.unexpected
    );
    Ok((idle, flooded, unanswered, flood, tally.statuses))
}

/// The owner's logins in one phase.
#[derive(Default)]
struct Owner {
    latencies: Latencies,
    errors: u64,
    unanswered: u64,
}

impl Owner {
    fn record(&mut self, result: Result<(), String>, latency: Duration) {
        match result {
            Ok(()) => self.latencies.push(latency),
            Err(e) => {
                if self.errors < 5 {
                    eprintln!("  owner error: {e}");
                }
                self.errors += 1;
            }
        }
    }

    fn figures(mut self, cpu: f64, memory: f64, length: Duration) -> Figures {
        let figures = Figures {
            requests_per_second: self.latencies.count() as f64 / length.as_secs_f64(),
            p50: self.latencies.quantile(0.50),
            p99: self.latencies.quantile(0.99),
            errors: self.errors + self.unanswered,
            server_cpu: cpu,
            peak_rss_mib: memory,
        };
        eprintln!(
            "  owner: {} logins, p50 {}, p99 {}, {} errors, server CPU {:.0}%",
            self.latencies.count(),
            millis(figures.p50),
            millis(figures.p99),
            figures.errors,
            cpu * 100.0
        );
        figures
    }
}

/// The owner's own login, from the owner's address; anything but a 200 is an error.
async fn owner_login(conn: &mut Conn) -> Result<(), String> {
    if conn.is_closed() {
        *conn = Conn::open(conn.addr())
            .await
            .map_err(|e| format!("{e:#}"))?;
    }
    let reply = conn
        .send(
            Method::POST,
            "/login",
            &[("content-type", &JSON), ("x-forwarded-for", &OWNER_ADDRESS)],
            setup::login_body(),
        )
        .await
        .map_err(|e| format!("{e:#}"))?;
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        ))
    }
}

/// The flood's answers so far.
#[derive(Default)]
struct Tally {
    latencies: Latencies,
    statuses: BTreeMap<u16, u64>,
    unexpected: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        self.unexpected += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(e);
        }
    }

    fn record(&mut self, result: Result<Reply>, latency: Duration) {
        match result {
            Ok(reply) => {
                let status = reply.status.as_u16();
                self.latencies.push(latency);
                *self.statuses.entry(status).or_default() += 1;
                if !matches!(status, 401 | 429 | 503) {
                    self.error(format!(
                        "{}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    ));
                }
            }
            Err(e) => self.error(format!("{e:#}")),
        }
    }
}

/// One guesser: wrong guesses back to back until `stop`.
async fn guess(mut conn: Conn, body: Bytes, stop: Arc<AtomicBool>, tally: Arc<Mutex<Tally>>) {
    while !stop.load(Ordering::Relaxed) {
        let sent = Instant::now();
        let result = conn
            .send(
                Method::POST,
                "/login",
                &[("content-type", &JSON), ("x-forwarded-for", &FLOOD_ADDRESS)],
                body.clone(),
            )
            .await;
        match tally.lock() {
            Ok(mut tally) => tally.record(result, sent.elapsed()),
            Err(_) => return,
        }
        if conn.is_closed() {
            match Conn::open(conn.addr()).await {
                Ok(fresh) => conn = fresh,
                Err(_) => return,
            }
        }
    }
}

/// Creates the account the flood guesses at, through `POST /register`.
async fn register(addr: SocketAddr, username: &str) -> Result<()> {
    let mut conn = Conn::open(addr).await?;
    let body = serde_json::json!({ "username": username, "password": "the target's own password" });
    let reply = conn
        .send(
            Method::POST,
            "/register",
            &[("content-type", &JSON)],
            Bytes::from(body.to_string()),
        )
        .await
        .context("registering the flood's target")?;
    if !reply.status.is_success() {
        bail!(
            "registering {username}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    Ok(())
}

fn share(used: Duration, of: Duration) -> f64 {
    used.as_secs_f64() / of.as_secs_f64()
}

/// `401 ×12, 429 ×3400`.
fn statuses(statuses: &BTreeMap<u16, u64>) -> String {
    if statuses.is_empty() {
        return "none".into();
    }
    statuses
        .iter()
        .map(|(status, n)| format!("{status} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl LoginFlood {
    pub fn rows(&self) -> Vec<Row> {
        vec![
            Row {
                scenario: "login flood: owner alone",
                server: "latchkey".into(),
                figures: self.idle.clone(),
                ratio: None,
            },
            Row {
                scenario: "login flood: owner",
                server: "latchkey".into(),
                figures: self.flooded.clone(),
                ratio: None,
            },
            Row {
                scenario: "login flood: guesses",
                server: "latchkey".into(),
                figures: self.flood.clone(),
                ratio: None,
            },
        ]
    }

    pub fn targets(&self) -> Vec<Target> {
        let ratio = self.flooded.p50.as_secs_f64() / self.idle.p50.as_secs_f64();
        let answered = self.flooded.p50 > Duration::ZERO && self.idle.p50 > Duration::ZERO;
        let owner = if self.owner_unanswered > 0 {
            format!(
                "an owner's login got no answer within {} s",
                OWNER_PATIENCE.as_secs()
            )
        } else if !answered {
            "no owner login succeeded".to_owned()
        } else {
            format!(
                "{ratio:.1}× ({} vs {} alone), {} errors",
                millis(self.flooded.p50),
                millis(self.idle.p50),
                self.flooded.errors
            )
        };
        let whose = match self.target {
            FloodTarget::Other => "another account",
            FloodTarget::Owner => "the owner's account",
        };
        vec![
            Target {
                what: "owner's login during a login flood",
                goal: "p50 ≤ 3× the owner's login alone".into(),
                measured: owner,
                met: Some(
                    answered
                        && self.owner_unanswered == 0
                        && self.flooded.errors == 0
                        && ratio <= 3.0,
                ),
            },
            Target {
                what: "login flood: the guesses' answers",
                goal: "401, 429 or 503 only".into(),
                measured: format!(
                    "{} connections from one address at {whose}, throttle limits {}: {}; {} unexpected",
                    self.guessers,
                    self.limit,
                    statuses(&self.flood_statuses),
                    self.flood.errors
                ),
                met: None,
            },
        ]
    }
}

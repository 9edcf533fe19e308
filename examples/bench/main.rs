//! The benchmark (README, "The benchmark"): drives a running latchkey over
//! real HTTP on loopback and prints, per scenario, requests per second, p50
//! and p99 latency, errors, and the server's CPU share and peak memory, each
//! judged as a ratio to a reference measured in the same run:
//!
//! - `protected`: `GET /protected` with a valid Bearer token on 64 keep-alive
//!   connections, against latchkey and against the ceiling (`examples/ceiling.rs`,
//!   the same token check in a bare axum route), once per access-token
//!   algorithm (`--algorithms`): latchkey started with that
//!   `ACCESS_TOKEN_ALGORITHM`, the ceiling checking the same one (with
//!   `EdDSA` and `ES256`, with the keys that latchkey publishes);
//! - the cost of one access-token check per algorithm, alone, in this
//!   process (`verify.rs`);
//! - `refresh`: 64 signed-in clients, each looping `POST /token` with its own
//!   latest cookie, on SQLite (durable: `synchronous=FULL`) and PostgreSQL;
//! - `login`: `POST /login` in a loop, against one core's bcrypt verifications
//!   per second at the same cost, measured here;
//! - `mixed`: the `protected` stream while a login flood saturates hashing;
//! - `slow clients`: the `protected` stream while 1,000 connections dribble
//!   request heads (a slowloris, `slow.rs`, run by a process of its own), in
//!   rounds alternating with its control: the same slow clients aimed at a
//!   sink (a second latchkey on this load generator's CPU), so that both
//!   arms carry the same disturbance and only its target differs;
//! - start-up to listening on an existing database;
//! - `login flood`: the owner's login while another address floods wrong
//!   guesses, against the owner's login alone (`login_flood.rs`).
//!
//! Every scenario but `protected`'s other algorithms runs on latchkey's
//! default, `HS256`.
//!
//! Run it with `bash bench/run.sh`: it builds everything in release mode and
//! pins the servers to CPU 0 and this load generator to CPU 1 (`taskset`);
//! the slow clients' process shares CPU 1 (`slow.rs` says why).

mod cost;
mod http;
mod load;
mod login_flood;
mod report;
mod scale;
mod server;
mod setup;
mod slow;
mod stats;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use hyper::header::HeaderValue;
use latchkey::config::AccessAlgorithm;

use load::{Outcome, Window, Work};
use report::{Check, Checks, Row, Target};
use server::{Launch, Server};
use stats::{Figures, millis};

#[derive(Debug, Parser)]
#[command(about = "latchkey's benchmark; run it through bench/run.sh")]
struct Args {
    /// The latchkey binary (default: next to this one, target/release/latchkey).
    #[arg(long)]
    latchkey: Option<PathBuf>,
    /// The ceiling binary (default: target/release/examples/ceiling).
    #[arg(long)]
    ceiling: Option<PathBuf>,
    /// The CPU the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Seconds of load before measuring starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured per scenario.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Rounds the `protected` measurements of the ceiling and latchkey are
    /// split into, alternating, so that a shared machine's noise falls on both.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Keep-alive connections (and signed-in clients for `refresh`).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections sending logins in `login` and `mixed`.
    #[arg(long, default_value_t = 4)]
    login_connections: usize,
    /// BCRYPT_COST of the server, and of the reference hashing.
    #[arg(long, default_value_t = 12)]
    bcrypt_cost: u32,
    /// Sessions stored before the server starts.
    #[arg(long, default_value_t = 10_000)]
    sessions: u64,
    /// Sessions stored in `scale`, whose `refresh` is measured against the
    /// same with 10,000.
    #[arg(long, default_value_t = 1_000_000)]
    many_sessions: u64,
    /// Times latchkey is restarted to measure start-up.
    #[arg(long, default_value_t = 5)]
    startups: usize,
    /// A PostgreSQL server to create (and drop) the benchmark's database on.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Skip the PostgreSQL `refresh` scenario.
    #[arg(long)]
    no_postgres: bool,
    /// Slow clients dribbling request heads in `slow clients`.
    #[arg(long, default_value_t = 1000)]
    slow_connections: usize,
    /// Seconds between a slow client's header lines.
    #[arg(long, default_value_t = 3.0)]
    slow_every: f64,
    /// Seconds over which the slow clients open before measuring starts:
    /// latchkey's default `HEADER_READ_TIMEOUT`, so that the server is
    /// closing (and the clients reopening) them steadily by then.
    #[arg(long, default_value_t = 10.0)]
    slow_ramp: f64,
    /// The CPU the slow clients' process is pinned to, instead of this load
    /// generator's (`slow.rs` says why it shares it by default).
    #[arg(long)]
    slow_cpu: Option<usize>,
    /// Run only `slow clients` (a smoke run of it).
    #[arg(long)]
    slow_clients_only: bool,
    /// Be the slow clients' process, against this address (`slow.rs`).
    #[arg(long, hide = true)]
    slow_clients_at: Option<SocketAddr>,
    /// Also write the results here (Markdown); not with `--only`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Connections sending wrong guesses in `login flood`, from one address.
    #[arg(long, default_value_t = 200)]
    flood_guessers: usize,
    /// Whose account the `login flood` guesses at.
    #[arg(long, value_enum, default_value_t = login_flood::FloodTarget::Other)]
    flood_target: login_flood::FloodTarget,
    /// Run this scenario alone (a partial run: printed, never written to `--out`).
    #[arg(long, value_enum)]
    only: Option<Only>,
    /// The access-token algorithms `protected` and the check costs are
    /// measured with, comma-separated. HS256 is needed for a whole run: the
    /// other scenarios run on it and `mixed` is judged against its
    /// `protected`.
    #[arg(
        long,
        value_delimiter = ',',
        value_parser = algorithm,
        default_value = "HS256,EdDSA,ES256"
    )]
    algorithms: Vec<AccessAlgorithm>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// The owner's login during a login flood.
    LoginFlood,
    /// `protected` with each of `--algorithms`, and the check costs.
    Protected,
    /// `protected` with metrics on (`METRICS_BIND`) and off, alternating.
    Metrics,
    /// `protected` and `refresh` over TLS and over plain HTTP, alternating.
    Tls,
    /// `refresh` on SQLite and on PostgreSQL (unless `--no-postgres`), each
    /// alternating with the ceiling's `protected`.
    Refresh,
    /// `refresh` on SQLite with `--many-sessions` stored against 10,000.
    Scale,
    /// The cost table: CPU and heap allocations per answer.
    Cost,
}

/// An `ACCESS_TOKEN_ALGORITHM` value, spelt as latchkey reads it.
fn algorithm(name: &str) -> Result<AccessAlgorithm, String> {
    [
        AccessAlgorithm::Hs256,
        AccessAlgorithm::EdDsa,
        AccessAlgorithm::Es256,
    ]
    .into_iter()
    .find(|a| a.name() == name.trim())
    .ok_or_else(|| "expected HS256, EdDSA or ES256".to_owned())
}

impl Args {
    fn slow(&self) -> slow::Settings {
        slow::Settings {
            count: self.slow_connections,
            every: Duration::from_secs_f64(self.slow_every),
            ramp: Duration::from_secs_f64(self.slow_ramp),
        }
    }

    /// `--algorithms` in the order given, each once.
    fn algorithms(&self) -> Vec<AccessAlgorithm> {
        let mut algorithms: Vec<AccessAlgorithm> = Vec::new();
        for a in &self.algorithms {
            if !algorithms.contains(a) {
                algorithms.push(*a);
            }
        }
        algorithms
    }

    fn window(&self) -> Window {
        Window::after(
            Duration::from_secs_f64(self.warmup),
            Duration::from_secs_f64(self.duration),
        )
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    // Room for every connection this process opens.
    let wanted = match args.slow_clients_at {
        Some(_) => args.slow_connections + 64,
        None => args.connections + args.login_connections + args.flood_guessers + 64,
    };
    let fits = latchkey::testing::fit_open_file_limit(wanted);
    anyhow::ensure!(
        fits >= wanted,
        "the open-file limit leaves room for {fits} connections of the {wanted} needed"
    );
    // One thread: the load generator gets one core, as the server does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.slow_clients_at {
        Some(addr) => runtime.block_on(slow::serve(addr, args.slow())),
        None => runtime.block_on(run(args)),
    }
}

async fn run(args: Args) -> Result<()> {
    let algorithms = args.algorithms();
    ensure!(
        args.only.is_some()
            || args.slow_clients_only
            || algorithms.contains(&AccessAlgorithm::Hs256),
        "--algorithms must include HS256 for a whole run: the other scenarios run on it \
         and `mixed` is judged against its `protected` (--only protected measures any of them)"
    );
    let here = std::env::current_exe()?;
    let examples = here.parent().context("no directory")?;
    let latchkey = args
        .latchkey
        .clone()
        .unwrap_or_else(|| examples.parent().unwrap_or(examples).join("latchkey"));
    let ceiling = args
        .ceiling
        .clone()
        .unwrap_or_else(|| examples.join("ceiling"));
    let dir = tempfile::tempdir()?;
    let secrets = [
        ("JWT_SECRET".to_owned(), latchkey::testing::token(32)),
        (
            "JWT_REFRESH_SECRET".to_owned(),
            latchkey::testing::token(32),
        ),
        ("BCRYPT_COST".to_owned(), args.bcrypt_cost.to_string()),
        // Every client signs in to the one account, 64 for `refresh` and 48
        // more for `TLS`: at the default of 50 the later logins would end
        // the earlier clients' sessions, whose refreshes then fail.
        ("MAX_SESSIONS_PER_USER".to_owned(), "1000".to_owned()),
        // Each client refreshes its session as fast as the server answers,
        // far past the per-session limit a browser needs.
        ("MAX_REFRESHES_PER_MINUTE".to_owned(), "1000000".to_owned()),
    ];
    let sqlite_url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let sqlite_env = with(&secrets, "DATABASE_URL", &sqlite_url);
    let launch = |program: &Path, env: Vec<(String, String)>, name: &str| Launch {
        program: program.to_owned(),
        env,
        cpu: args.server_cpu,
        log: server::log_file(dir.path(), name),
    };
    let flood = |bcrypt_per_second: f64| login_flood::Settings {
        guessers: args.flood_guessers,
        target: args.flood_target,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        bcrypt_per_second,
    };

    if args.only == Some(Only::LoginFlood) {
        let bcrypt_per_second = bcrypt_rate(args.bcrypt_cost)?;
        let flooded = login_flood::run(
            &latchkey,
            &secrets,
            dir.path(),
            &launch,
            &flood(bcrypt_per_second),
        )
        .await?;
        let machine = machine(&args, dir.path(), Some(bcrypt_per_second))?;
        println!(
            "{}",
            report::render(&machine, &flooded.rows(), None, &flooded.targets())
        );
        if let Some(out) = &args.out {
            eprintln!("--only: a partial run, not written to {}", out.display());
        }
        return Ok(());
    }

    if args.only == Some(Only::Scale) {
        let scaled = measure_scale(&args, &latchkey, &secrets, dir.path(), &launch).await?;
        let (rows, targets) = scale_report(&args, &scaled);
        println!("{}", report::render(&[], &rows, None, &targets));
        return Ok(());
    }

    eprintln!("preparing: one account, {} stored sessions", args.sessions);
    setup::add_user(&latchkey, &sqlite_env).await?;
    setup::seed_sessions(&sqlite_url, args.sessions).await?;
    let programs = [latchkey.as_path(), ceiling.as_path()];

    if args.only == Some(Only::Protected) {
        let mut measured = Vec::with_capacity(algorithms.len());
        for &algorithm in &algorithms {
            measured.push(protected_with(&args, algorithm, programs, &sqlite_env, &launch).await?);
        }
        eprintln!("checks: one access-token check per algorithm, in this process");
        let checks = check_costs(&measured).await?;
        let machine = machine(&args, dir.path(), None)?;
        let rows = protected_rows(&measured);
        println!("{}", report::render(&machine, &rows, Some(&checks), &[]));
        if let Some(out) = &args.out {
            eprintln!("--only: a partial run, not written to {}", out.display());
        }
        return Ok(());
    }

    let latchkey_sqlite = launch(&latchkey, sqlite_env.clone(), "latchkey-sqlite");
    let (ceiling_server, _) = launch(&ceiling, secrets.to_vec(), "ceiling")
        .start()
        .await?;
    let (server, _) = latchkey_sqlite.start().await?;
    eprintln!("signing in {} clients", args.connections);
    let clients = setup::sign_in(server.addr, args.connections).await?;
    let bearer = clients[0].bearer.clone();
    let protected = |n: usize| protected_work(&bearer, n);
    if args.only == Some(Only::Tls) {
        let tls = measure_tls(
            &args,
            &latchkey,
            &sqlite_env,
            &launch,
            &server,
            &bearer,
            dir.path(),
        )
        .await?;
        server.stop().await?;
        ceiling_server.stop().await?;
        println!("{}", report::render(&[], &tls.rows(), None, &[]));
        return Ok(());
    }
    if args.only == Some(Only::Refresh) {
        eprintln!("refresh: latchkey on SQLite, alternating with the ceiling");
        let [ceiling, sqlite] = measure_alternating(
            &args,
            [&ceiling_server, &server],
            [protected(args.connections), refresh_work(&clients)],
        )
        .await?;
        server.stop().await?;
        let mut rows = vec![
            Row {
                scenario: "refresh",
                server: "ceiling (protected)".into(),
                ratio: None,
                figures: ceiling.clone(),
            },
            Row {
                scenario: "refresh",
                server: "latchkey, SQLite".into(),
                ratio: Some((
                    sqlite.requests_per_second / ceiling.requests_per_second,
                    "of ceiling",
                )),
                figures: sqlite,
            },
        ];
        if !args.no_postgres {
            eprintln!("refresh: latchkey on PostgreSQL, alternating with the ceiling");
            let ceiling_work = (&ceiling_server, protected(args.connections));
            let ([ceiling, pg], pinned) =
                postgres_refresh(&args, &latchkey, &secrets, &launch, ceiling_work).await?;
            rows.push(Row {
                scenario: "refresh",
                server: postgres_label(pinned),
                ratio: Some((
                    pg.requests_per_second / ceiling.requests_per_second,
                    "of ceiling",
                )),
                figures: pg,
            });
        }
        ceiling_server.stop().await?;
        println!("{}", report::render(&[], &rows, None, &[]));
        return Ok(());
    }
    if args.only == Some(Only::Cost) {
        eprintln!("cost: protected on both, refresh on latchkey, alternating");
        let [ceiling, protected, refresh] = measure_alternating(
            &args,
            [&ceiling_server, &server, &server],
            [
                protected(args.connections),
                protected(args.connections),
                refresh_work(&clients),
            ],
        )
        .await?;
        server.stop().await?;
        ceiling_server.stop().await?;
        let counted = examples.join("counted");
        let costs = measure_costs(
            &counted,
            &launch,
            &sqlite_env,
            &secrets,
            &bearer,
            [&ceiling, &protected, &refresh],
        )
        .await?;
        println!("{}", cost::render(&costs));
        return Ok(());
    }
    if args.only == Some(Only::Metrics) {
        let metrics = measure_metrics(&args, &latchkey, &sqlite_env, &launch, &bearer).await?;
        server.stop().await?;
        ceiling_server.stop().await?;
        let (rows, target) = metrics.report();
        println!("{}", report::render(&[], &rows, None, &[target]));
        return Ok(());
    }
    if args.slow_clients_only {
        eprintln!(
            "slow clients only: protected with slow clients at a sink and at latchkey, alternating"
        );
        let slow = slow_clients_with_control(
            &args,
            &latchkey,
            &sqlite_env,
            &launch,
            &server,
            protected(args.connections),
        )
        .await?;
        server.stop().await?;
        ceiling_server.stop().await?;
        let (rows, target) = slow.report(&args);
        let table = report::render(&[], &rows, None, &[target]);
        println!("{table}");
        return Ok(());
    }
    let logins = |n: usize| -> Vec<Work> {
        (0..n)
            .map(|_| Work::Login {
                body: setup::login_body(),
            })
            .collect()
    };

    eprintln!(
        "bcrypt: one core's verifications per second at cost {}",
        args.bcrypt_cost
    );
    let bcrypt_per_second = bcrypt_rate(args.bcrypt_cost)?;

    eprintln!(
        "protected (HS256): ceiling and latchkey, {} alternating rounds",
        args.rounds
    );
    let [ceiling_protected, latchkey_protected] = measure_alternating(
        &args,
        [&ceiling_server, &server],
        [protected(args.connections), protected(args.connections)],
    )
    .await?;
    let mut measured = vec![Protected {
        algorithm: AccessAlgorithm::Hs256,
        ceiling: ceiling_protected.clone(),
        latchkey: latchkey_protected.clone(),
        bearer: bearer.clone(),
        env: sqlite_env.clone(),
    }];
    let metrics = measure_metrics(&args, &latchkey, &sqlite_env, &launch, &bearer).await?;
    let tls = measure_tls(
        &args,
        &latchkey,
        &sqlite_env,
        &launch,
        &server,
        &bearer,
        dir.path(),
    )
    .await?;
    // Each with a latchkey and a ceiling of its own; the two above stay
    // idle meanwhile.
    for &algorithm in algorithms.iter().filter(|a| a.is_asymmetric()) {
        measured.push(protected_with(&args, algorithm, programs, &sqlite_env, &launch).await?);
    }
    eprintln!("checks: one access-token check per algorithm, in this process");
    let checks = check_costs(&measured).await?;
    eprintln!("refresh: latchkey on SQLite, alternating with the ceiling");
    let [ceiling_refresh, refresh_sqlite] = measure_alternating(
        &args,
        [&ceiling_server, &server],
        [protected(args.connections), refresh_work(&clients)],
    )
    .await?;
    let scaled = measure_scale(&args, &latchkey, &secrets, dir.path(), &launch).await?;
    let costs = measure_costs(
        &examples.join("counted"),
        &launch,
        &sqlite_env,
        &secrets,
        &bearer,
        [&ceiling_protected, &latchkey_protected, &refresh_sqlite],
    )
    .await?;
    eprintln!("login: latchkey");
    let login = measure(&args, &server, logins(args.login_connections)).await?;
    eprintln!("mixed: protected while logins flood");
    let (mixed_protected, mixed_login) = measure_mixed(
        &args,
        &server,
        protected(args.connections),
        logins(args.login_connections),
    )
    .await?;
    eprintln!(
        "slow clients: protected while {} connections dribble headers at a sink, then at latchkey, alternating",
        args.slow_connections
    );
    let slow = slow_clients_with_control(
        &args,
        &latchkey,
        &sqlite_env,
        &launch,
        &server,
        protected(args.connections),
    )
    .await?;
    server.stop().await?;

    eprintln!(
        "start-up: {} restarts on the existing database",
        args.startups
    );
    let mut startups = Vec::new();
    for _ in 0..args.startups {
        let (server, ready) = latchkey_sqlite.start().await?;
        startups.push(ready);
        server.stop().await?;
    }
    startups.sort();

    eprintln!("login flood: the owner's login while another address guesses");
    let flooded = login_flood::run(
        &latchkey,
        &secrets,
        dir.path(),
        &launch,
        &flood(bcrypt_per_second),
    )
    .await?;

    let refresh_postgres = if args.no_postgres {
        None
    } else {
        eprintln!("refresh: latchkey on PostgreSQL, alternating with the ceiling");
        Some(
            postgres_refresh(
                &args,
                &latchkey,
                &secrets,
                &launch,
                (&ceiling_server, protected(args.connections)),
            )
            .await?,
        )
    };
    ceiling_server.stop().await?;

    // Each latchkey figure against the ceiling of its own alternating rounds.
    let ratio_to =
        |f: &Figures, ceiling: &Figures| f.requests_per_second / ceiling.requests_per_second;
    let of_ceiling = |f: &Figures, ceiling: &Figures| Some((ratio_to(f, ceiling), "of ceiling"));
    let mut rows = protected_rows(&measured);
    rows.push(Row {
        scenario: "refresh",
        server: "latchkey, SQLite".into(),
        ratio: of_ceiling(&refresh_sqlite, &ceiling_refresh),
        figures: refresh_sqlite.clone(),
    });
    if let Some(([ceiling, pg], pinned)) = &refresh_postgres {
        rows.push(Row {
            scenario: "refresh",
            server: postgres_label(*pinned),
            ratio: of_ceiling(pg, ceiling),
            figures: pg.clone(),
        });
    }
    rows.push(Row {
        scenario: "login",
        server: "latchkey".into(),
        ratio: Some((login.requests_per_second / bcrypt_per_second, "of bcrypt/s")),
        figures: login.clone(),
    });
    rows.push(Row {
        scenario: "mixed: protected",
        server: "latchkey".into(),
        ratio: Some((
            mixed_protected.requests_per_second / latchkey_protected.requests_per_second,
            "of solo",
        )),
        figures: mixed_protected.clone(),
    });
    rows.push(Row {
        scenario: "mixed: login",
        server: "latchkey".into(),
        ratio: Some((
            mixed_login.requests_per_second / bcrypt_per_second,
            "of bcrypt/s",
        )),
        figures: mixed_login,
    });
    rows.extend(flooded.rows());
    let (slow_rows, slow_target) = slow.report(&args);
    rows.extend(slow_rows);
    let (metrics_rows, metrics_target) = metrics.report();
    rows.extend(metrics_rows);
    rows.extend(tls.rows());
    let (scale_rows, scale_targets) = scale_report(&args, &scaled);
    rows.extend(scale_rows);

    let protected_ratio = ratio_to(&latchkey_protected, &ceiling_protected);
    let p99_ratio = latchkey_protected.p99.as_secs_f64() / ceiling_protected.p99.as_secs_f64();
    let refresh_ratio = ratio_to(&refresh_sqlite, &ceiling_refresh);
    let login_ratio = login.requests_per_second / bcrypt_per_second;
    let mixed_ratio = mixed_protected.requests_per_second / latchkey_protected.requests_per_second;
    let median_startup = startups
        .get(startups.len() / 2)
        .copied()
        .unwrap_or_default();
    let mut targets = vec![
        Target {
            what: "protected (HS256) throughput",
            goal: "≥ 90% of ceiling".into(),
            measured: percent(protected_ratio),
            met: Some(protected_ratio >= 0.90),
        },
        Target {
            what: "protected (HS256) p99",
            goal: "≤ 1.5× ceiling's".into(),
            measured: format!(
                "{:.2}× ({} vs {})",
                p99_ratio,
                millis(latchkey_protected.p99),
                millis(ceiling_protected.p99)
            ),
            met: Some(p99_ratio <= 1.5),
        },
        Target {
            what: "refresh, SQLite, durable",
            goal: "≥ 30% of ceiling, 0 errors".into(),
            measured: format!(
                "{} ({:.0} req/s; the ceiling's {:.0} in the same rounds), {} errors",
                percent(refresh_ratio),
                refresh_sqlite.requests_per_second,
                ceiling_refresh.requests_per_second,
                refresh_sqlite.errors
            ),
            met: Some(refresh_ratio >= 0.30 && refresh_sqlite.errors == 0),
        },
    ];
    if let Some(([ceiling, pg], _)) = &refresh_postgres {
        targets.push(Target {
            what: "refresh, PostgreSQL",
            goal: "≥ 15% of ceiling, 0 errors".into(),
            measured: format!(
                "{:.0} req/s ({} of the ceiling's {:.0} in the same rounds), {} errors",
                pg.requests_per_second,
                percent(ratio_to(pg, ceiling)),
                ceiling.requests_per_second,
                pg.errors
            ),
            met: Some(ratio_to(pg, ceiling) >= 0.15 && pg.errors == 0),
        });
    }
    targets.extend([
        Target {
            what: "login",
            goal: format!(
                "≥ 90% of bcrypt/s ({bcrypt_per_second:.2}/s at cost {})",
                args.bcrypt_cost
            ),
            measured: format!(
                "{:.2}/s = {}",
                login.requests_per_second,
                percent(login_ratio)
            ),
            met: Some(login_ratio >= 0.90),
        },
        Target {
            what: "mixed: protected throughput",
            goal: "≥ 40% of solo".into(),
            measured: percent(mixed_ratio),
            met: Some(mixed_ratio >= 0.40),
        },
        Target {
            what: "mixed: protected p99",
            goal: "< 20 ms".into(),
            measured: millis(mixed_protected.p99),
            met: Some(mixed_protected.p99 < Duration::from_millis(20)),
        },
        slow_target,
        metrics_target,
        Target {
            what: "memory during refresh",
            goal: format!("< 40 MB resident with {} stored sessions", args.sessions),
            measured: format!("{:.1} MiB", refresh_sqlite.peak_rss_mib),
            met: Some(refresh_sqlite.peak_rss_mib * 1.048_576 < 40.0),
        },
        Target {
            what: "start-up to listening",
            goal: "< 200 ms on an existing database".into(),
            measured: format!(
                "median {} of {} (max {})",
                millis(median_startup),
                startups.len(),
                millis(startups.last().copied().unwrap_or_default())
            ),
            met: Some(median_startup < Duration::from_millis(200)),
        },
    ]);
    targets.extend(flooded.targets());
    targets.extend(scale_targets);

    let machine = machine(&args, dir.path(), Some(bcrypt_per_second))?;
    let mut table = report::render(&machine, &rows, Some(&checks), &targets);
    table.push_str(&cost::render(&costs));
    println!("{table}");
    if let Some(out) = &args.out {
        std::fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

/// `protected` on latchkey with metrics on and off.
struct MetricsCost {
    on: Figures,
    off: Figures,
}

/// `protected` on a second latchkey over the same database with
/// `METRICS_BIND` set (the HTTP layer counting every answer; README,
/// "Metrics"), alternating with `server`, which runs without it.
async fn measure_metrics(
    args: &Args,
    latchkey: &Path,
    env: &[(String, String)],
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    bearer: &HeaderValue,
) -> Result<MetricsCost> {
    eprintln!(
        "metrics: protected with METRICS_BIND set and unset, {} alternating rounds",
        args.rounds * 3
    );
    let on_env = with(env, "METRICS_BIND", "127.0.0.1:0");
    let (metered, _) = launch(latchkey, on_env, "latchkey-metrics").start().await?;
    // Two fresh processes with the same past: the long-running one has
    // signed clients in and rotated, and one process against another
    // swung by 10% on this machine when only one of them was fresh.
    let (unmetered, _) = launch(latchkey, env.to_vec(), "latchkey-no-metrics")
        .start()
        .await?;
    // Three times the rounds, each shorter: the two arms differ by a few
    // percent, which longer rounds leave to the machine's drift.
    let [on, off] = measure_alternating_in(
        args,
        args.rounds * 3,
        args.duration,
        [&metered, &unmetered],
        [
            protected_work(bearer, args.connections),
            protected_work(bearer, args.connections),
        ],
    )
    .await?;
    metered.stop().await?;
    unmetered.stop().await?;
    Ok(MetricsCost { on, off })
}

impl MetricsCost {
    fn report(self) -> (Vec<Row>, Target) {
        let ratio = self.on.requests_per_second / self.off.requests_per_second;
        let target = Target {
            what: "metrics on: protected throughput",
            goal: "≥ 97% of metrics off".into(),
            measured: format!(
                "{} ({:.0} vs {:.0} req/s, in alternating rounds)",
                percent(ratio),
                self.on.requests_per_second,
                self.off.requests_per_second
            ),
            met: Some(ratio >= 0.97),
        };
        let rows = vec![
            Row {
                scenario: "metrics: protected",
                server: "latchkey, metrics off".into(),
                figures: self.off,
                ratio: None,
            },
            Row {
                scenario: "metrics: protected",
                server: "latchkey, metrics on".into(),
                figures: self.on,
                ratio: Some((ratio, "of off")),
            },
        ];
        (rows, target)
    }
}

/// `protected` and `refresh` over plain HTTP and over TLS.
struct TlsCost {
    protected: [Figures; 2],
    refresh: [Figures; 2],
}

/// A second latchkey over the same database serving HTTPS (README, "TLS")
/// with a self-signed certificate the load generator trusts, alternating
/// rounds with `server` over plain HTTP: `protected` with `bearer`, then
/// `refresh` with 24 clients signed in on each.
async fn measure_tls(
    args: &Args,
    latchkey: &Path,
    env: &[(String, String)],
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    server: &Server,
    bearer: &HeaderValue,
    dir: &Path,
) -> Result<TlsCost> {
    eprintln!(
        "tls: protected and refresh over TLS and plain HTTP, {} alternating rounds",
        args.rounds
    );
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    let (cert_file, key_file) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    std::fs::write(&cert_file, cert.pem())?;
    std::fs::write(&key_file, signing_key.serialize_pem())?;
    let tls_env = with(
        &with(env, "TLS_CERT_FILE", &cert_file.to_string_lossy()),
        "TLS_KEY_FILE",
        &key_file.to_string_lossy(),
    );
    let (secure, _) = launch(latchkey, tls_env, "latchkey-tls").start().await?;
    http::serve_tls_at(secure.addr, cert.der().clone())?;
    let protected = measure_alternating(
        args,
        [server, &secure],
        [
            protected_work(bearer, args.connections),
            protected_work(bearer, args.connections),
        ],
    )
    .await?;
    let refresh_of = |clients: Vec<setup::SignedIn>| -> Vec<Work> {
        clients
            .into_iter()
            .map(|c| Work::Refresh { cookie: c.cookie })
            .collect()
    };
    // Few enough that both sets stay within MAX_SESSIONS_PER_USER beside
    // the `refresh` scenario's clients.
    let clients = args.connections.min(24);
    let plain_clients = setup::sign_in(server.addr, clients).await?;
    let tls_clients = setup::sign_in(secure.addr, clients).await?;
    let refresh = measure_alternating(
        args,
        [server, &secure],
        [refresh_of(plain_clients), refresh_of(tls_clients)],
    )
    .await?;
    secure.stop().await?;
    Ok(TlsCost { protected, refresh })
}

impl TlsCost {
    fn rows(self) -> Vec<Row> {
        let mut rows = Vec::with_capacity(4);
        for (scenario, [plain, tls]) in [
            ("TLS: protected", self.protected),
            ("TLS: refresh", self.refresh),
        ] {
            let ratio = tls.requests_per_second / plain.requests_per_second;
            rows.push(Row {
                scenario,
                server: "latchkey, plain HTTP".into(),
                figures: plain,
                ratio: None,
            });
            rows.push(Row {
                scenario,
                server: "latchkey, TLS".into(),
                figures: tls,
                ratio: Some((ratio, "of plain")),
            });
        }
        rows
    }
}

/// Each signed-in client refreshing its session with its latest cookie.
fn refresh_work(clients: &[setup::SignedIn]) -> Vec<Work> {
    clients
        .iter()
        .map(|c| Work::Refresh {
            cookie: c.cookie.clone(),
        })
        .collect()
}

/// `GET /protected` with `bearer` on `n` connections.
fn protected_work(bearer: &HeaderValue, n: usize) -> Vec<Work> {
    (0..n)
        .map(|_| Work::Protected {
            path: "/protected",
            bearer: bearer.clone(),
        })
        .collect()
}

/// `protected` with one access-token algorithm.
struct Protected {
    algorithm: AccessAlgorithm,
    ceiling: Figures,
    latchkey: Figures,
    /// The token it was measured with.
    bearer: HeaderValue,
    /// The environment of the latchkey that issued it.
    env: Vec<(String, String)>,
}

/// `protected` with `algorithm`: `latchkey` started on the benchmark's
/// database with that `ACCESS_TOKEN_ALGORITHM`, and the `ceiling` checking
/// the same algorithm, in alternating rounds.
/// With `EdDSA` and `ES256` the ceiling reads that latchkey's JWKS, as a
/// service holding no secret would.
async fn protected_with(
    args: &Args,
    algorithm: AccessAlgorithm,
    [latchkey, ceiling]: [&Path; 2],
    database_env: &[(String, String)],
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
) -> Result<Protected> {
    let name = algorithm.name();
    eprintln!(
        "protected ({name}): ceiling and latchkey, {} alternating rounds",
        args.rounds
    );
    let env = with(database_env, "ACCESS_TOKEN_ALGORITHM", name);
    let (server, _) = launch(latchkey, env.clone(), &format!("latchkey-{name}"))
        .start()
        .await?;
    // The first token latchkey signs makes the first key (README, "Signing
    // keys"), so it is published before the ceiling reads the set.
    let bearer = setup::sign_in(server.addr, 1)
        .await?
        .into_iter()
        .next()
        .context("no client signed in")?
        .bearer;
    let ceiling_env = if algorithm.is_asymmetric() {
        let jwks = format!("http://{}/.well-known/jwks.json", server.addr);
        with(&env, "JWKS_URL", &jwks)
    } else {
        env.clone()
    };
    let (ceiling, _) = launch(ceiling, ceiling_env, &format!("ceiling-{name}"))
        .start()
        .await?;
    let [ceiling_figures, latchkey_figures] = measure_alternating(
        args,
        [&ceiling, &server],
        [
            protected_work(&bearer, args.connections),
            protected_work(&bearer, args.connections),
        ],
    )
    .await?;
    ceiling.stop().await?;
    server.stop().await?;
    Ok(Protected {
        algorithm,
        ceiling: ceiling_figures,
        latchkey: latchkey_figures,
        bearer,
        env,
    })
}

/// The rows of `protected`, two per algorithm.
fn protected_rows(measured: &[Protected]) -> Vec<Row> {
    let mut rows = Vec::with_capacity(measured.len() * 2);
    for m in measured {
        let scenario = match m.algorithm {
            AccessAlgorithm::Hs256 => "protected (HS256)",
            AccessAlgorithm::EdDsa => "protected (EdDSA)",
            AccessAlgorithm::Es256 => "protected (ES256)",
            _ => "protected (another algorithm)",
        };
        let ratio = m.latchkey.requests_per_second / m.ceiling.requests_per_second;
        rows.push(Row {
            scenario,
            server: "ceiling".into(),
            figures: m.ceiling.clone(),
            ratio: None,
        });
        rows.push(Row {
            scenario,
            server: "latchkey".into(),
            figures: m.latchkey.clone(),
            ratio: Some((ratio, "of ceiling")),
        });
    }
    rows
}

/// One access-token check per algorithm of `measured`, in this process
/// (`verify.rs`), beside the CPU each server spent per `/protected` answer.
async fn check_costs(measured: &[Protected]) -> Result<Checks> {
    let mut verifiers = Vec::with_capacity(measured.len());
    for m in measured {
        let token = m
            .bearer
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .context("the bearer is no Bearer token")?;
        verifiers.push(verify::Verifier::open(m.algorithm, &m.env, token).await?);
    }
    let costs = verify::costs(&verifiers).await;
    for v in verifiers {
        v.close().await;
    }
    let rows = measured
        .iter()
        .zip(costs?)
        .map(|(m, cost)| Check {
            algorithm: m.algorithm.name(),
            check: cost,
            latchkey_cpu: cpu_per_answer(&m.latchkey),
            ceiling_cpu: cpu_per_answer(&m.ceiling),
        })
        .collect();
    Ok(Checks {
        how: format!(
            "One access-token check (latchkey's `Auth::verify_access`: key by `kid`, signature, \
             claims), alone, in the load generator's process on its CPU: {} checks per algorithm \
             in {} rounds taking turns, the median round's mean. Beside it, the CPU each server \
             spent per answer in the `protected` rounds above (its CPU share over its req/s).",
            verify::CHECKS,
            verify::ROUNDS
        ),
        rows,
    })
}

/// The CPU time a server spent per answer in `f`'s window.
fn cpu_per_answer(f: &Figures) -> Duration {
    if f.requests_per_second > 0.0 {
        Duration::from_secs_f64(f.server_cpu / f.requests_per_second)
    } else {
        Duration::ZERO
    }
}

/// The PostgreSQL `refresh` row's server: whether the database shared the
/// servers' CPU or ran wherever the kernel put it.
fn postgres_label(pinned: bool) -> String {
    if pinned {
        "latchkey, PostgreSQL pinned with it".into()
    } else {
        "latchkey, PostgreSQL (not pinned)".into()
    }
}

/// `refresh` with `--many-sessions` stored against 10,000, each on a
/// latchkey and a database of its own, in alternating rounds.
async fn measure_scale(
    args: &Args,
    latchkey: &Path,
    secrets: &[(String, String)],
    dir: &Path,
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
) -> Result<[Figures; 2]> {
    eprintln!(
        "scale: refresh with {} stored sessions and with {}, alternating",
        scale::FEW,
        args.many_sessions
    );
    let few = scale::server_with(latchkey, secrets, dir, launch, scale::FEW, args.connections);
    let (few, few_work) = few.await?;
    let many = scale::server_with(
        latchkey,
        secrets,
        dir,
        launch,
        args.many_sessions,
        args.connections,
    );
    let (many, many_work) = many.await?;
    let figures = measure_alternating(args, [&few, &many], [few_work, many_work]).await;
    few.stop().await?;
    many.stop().await?;
    figures
}

/// The rows and targets of `scale`: throughput at many stored sessions
/// against few, and memory at both.
fn scale_report(args: &Args, [few, many]: &[Figures; 2]) -> (Vec<Row>, Vec<Target>) {
    let ratio = many.requests_per_second / few.requests_per_second;
    let rows = vec![
        Row {
            scenario: "scale: refresh",
            server: format!("latchkey, SQLite, {} stored sessions", scale::FEW),
            ratio: None,
            figures: few.clone(),
        },
        Row {
            scenario: "scale: refresh",
            server: format!("latchkey, SQLite, {} stored sessions", args.many_sessions),
            ratio: Some((ratio, "of 10,000")),
            figures: many.clone(),
        },
    ];
    let peak = few.peak_rss_mib.max(many.peak_rss_mib);
    let targets = vec![
        Target {
            what: "refresh with many stored sessions",
            goal: format!(
                "≥ 90% of the rate with {}, {} stored",
                scale::FEW,
                args.many_sessions
            ),
            measured: format!(
                "{} ({:.0} vs {:.0} req/s), {} errors",
                percent(ratio),
                many.requests_per_second,
                few.requests_per_second,
                few.errors + many.errors
            ),
            met: Some(ratio >= 0.90 && few.errors + many.errors == 0),
        },
        Target {
            what: "memory with many stored sessions",
            goal: "< 40 MiB resident at both".into(),
            measured: format!(
                "{:.1} MiB with {}, {:.1} MiB with {}",
                few.peak_rss_mib,
                scale::FEW,
                many.peak_rss_mib,
                args.many_sessions
            ),
            met: Some(peak < 40.0),
        },
    ];
    (rows, targets)
}

/// The cost table's rows: `timed` (the ceiling's and latchkey's `protected`,
/// latchkey's `refresh`) give the CPU per answer; `counted` (the counting
/// build of both) the allocations.
async fn measure_costs(
    counted: &Path,
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    latchkey_env: &[(String, String)],
    ceiling_env: &[(String, String)],
    bearer: &HeaderValue,
    [ceiling, protected, refresh]: [&Figures; 3],
) -> Result<Vec<cost::Cost>> {
    eprintln!("cost: allocations per answer, counted");
    let counted_ceiling = cost::Counted::new(
        launch(counted, ceiling_env.to_vec(), "counted-ceiling"),
        true,
    );
    let counted_latchkey = cost::Counted::new(
        launch(counted, latchkey_env.to_vec(), "counted-latchkey"),
        false,
    );
    let one = |bearer: &HeaderValue| {
        let work = protected_work(bearer, 1);
        move |_| async move { Ok(work) }
    };
    let ceiling_allocations = counted_ceiling.per_answer(one(bearer)).await?;
    let protected_allocations = counted_latchkey.per_answer(one(bearer)).await?;
    let refresh_allocations = counted_latchkey
        .per_answer(|addr| async move { Ok(refresh_work(&setup::sign_in(addr, 4).await?)) })
        .await?;
    Ok(vec![
        cost::Cost::new("protected (HS256)", "ceiling", ceiling, ceiling_allocations),
        cost::Cost::new(
            "protected (HS256)",
            "latchkey",
            protected,
            protected_allocations,
        ),
        cost::Cost::new("refresh", "latchkey, SQLite", refresh, refresh_allocations),
    ])
}

/// The PostgreSQL `refresh` scenario, on a database of its own.
async fn postgres_refresh(
    args: &Args,
    latchkey: &Path,
    secrets: &[(String, String)],
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    (ceiling, ceiling_work): (&Server, Vec<Work>),
) -> Result<([Figures; 2], bool)> {
    let name = format!("latchkey_bench_{}", std::process::id());
    let url = setup::create_postgres_database(&args.database_url, &name).await?;
    let result = async {
        let env = with(secrets, "DATABASE_URL", &url);
        setup::add_user(latchkey, &env).await?;
        setup::seed_sessions(&url, args.sessions).await?;
        let (server, _) = launch(latchkey, env, "latchkey-postgres").start().await?;
        // With the server it serves, on one core, as on a machine of one.
        let pinned = match setup::pin_postgres(&url, args.server_cpu).await {
            Ok(pids) => Some(pids),
            Err(e) => {
                eprintln!("PostgreSQL left unpinned: {e:#}");
                None
            }
        };
        let clients = setup::sign_in(server.addr, args.connections).await?;
        let work = clients
            .iter()
            .map(|c| Work::Refresh {
                cookie: c.cookie.clone(),
            })
            .collect();
        let figures = measure_alternating(args, [ceiling, &server], [ceiling_work, work]).await;
        if let Some(pids) = &pinned {
            setup::unpin(pids)?;
        }
        server.stop().await?;
        Ok((figures?, pinned.is_some()))
    }
    .await;
    setup::drop_postgres_database(&args.database_url, &name).await?;
    result
}

/// Runs `work` against `server` for one window and sums it up.
async fn measure(args: &Args, server: &Server, work: Vec<Work>) -> Result<Figures> {
    server.reset_peak_memory()?;
    let window = args.window();
    let (driven, cpu) = tokio::join!(
        load::drive(server.addr, work, window),
        server_cpu(server, window)
    );
    figures(server, driven?.0, cpu?, window.length())
}

/// `work[i]` against `servers[i]`, each in turn, `--rounds` times over, each
/// round a share of `--duration` after a short warm-up; the figures of all
/// rounds together. Work carries on from round to round (refresh chains keep
/// their latest cookies). Peak memory is the highest of the rounds.
async fn measure_alternating<const N: usize>(
    args: &Args,
    servers: [&Server; N],
    work: [Vec<Work>; N],
) -> Result<[Figures; N]> {
    measure_alternating_in(args, args.rounds, args.duration, servers, work).await
}

/// As [`measure_alternating`], in `rounds` rounds over `duration` seconds.
async fn measure_alternating_in<const N: usize>(
    args: &Args,
    rounds: usize,
    duration: f64,
    servers: [&Server; N],
    mut work: [Vec<Work>; N],
) -> Result<[Figures; N]> {
    let rounds = rounds.max(1);
    let slice = Duration::from_secs_f64(duration / rounds as f64);
    let warmup = Duration::from_secs_f64((args.warmup / rounds as f64).max(0.5));
    let mut outcomes: [Outcome; N] = std::array::from_fn(|_| Outcome::default());
    let mut cpu = [0.0; N];
    let mut peak = [0.0_f64; N];
    for _ in 0..rounds {
        for (i, server) in servers.iter().enumerate() {
            let (outcome, used, memory) = round(server, &mut work[i], warmup, slice).await?;
            outcomes[i].merge(outcome);
            cpu[i] += used / rounds as f64;
            peak[i] = peak[i].max(memory);
        }
    }
    let mut figures: [Figures; N] = std::array::from_fn(|_| Figures::default());
    for (i, outcome) in outcomes.into_iter().enumerate() {
        figures[i] = self::figures(servers[i], outcome, cpu[i], slice * rounds as u32)?;
        figures[i].peak_rss_mib = peak[i];
    }
    Ok(figures)
}

/// One round of `work` against `server`: its outcome (the work carries on
/// where it ended), the server's CPU share and its peak memory in MiB.
async fn round(
    server: &Server,
    work: &mut Vec<Work>,
    warmup: Duration,
    slice: Duration,
) -> Result<(Outcome, f64, f64)> {
    server.reset_peak_memory()?;
    let window = Window::after(warmup, slice);
    let (driven, used) = tokio::join!(
        load::drive(server.addr, std::mem::take(work), window),
        server_cpu(server, window)
    );
    let (outcome, ended) = driven?;
    *work = ended;
    Ok((outcome, used?, server.peak_memory_mib()?))
}

/// `protected` while slow clients dribble request heads at a sink (the
/// control), and `protected` while they dribble request
/// heads, each with its figures, the slow connections the server closed per
/// second (each reopened at once by its client), and the share of a core the
/// slow clients' own process used meanwhile.
struct SlowClients {
    solo: Figures,
    slowed: Figures,
    closed_per_second: f64,
    slow_process_cpu: f64,
}

/// The CPU this load generator is pinned to (the first it may use).
fn generator_cpu() -> Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .and_then(|list| {
            let first = list.trim().split([',', '-']).next()?;
            first.parse().ok()
        })
        .context("no Cpus_allowed_list in /proc/self/status")
}

/// `slow clients` with its control: a second latchkey over the same
/// database, pinned to this load generator's CPU, is the sink the slow
/// clients are aimed at in the control rounds, so that both arms carry the
/// slow clients' process (and the closing and reopening of its connections)
/// on the generator's CPU, and only the target of the attack differs.
async fn slow_clients_with_control(
    args: &Args,
    latchkey: &Path,
    env: &[(String, String)],
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    server: &Server,
    work: Vec<Work>,
) -> Result<SlowClients> {
    let sink = Launch {
        cpu: generator_cpu()?,
        ..launch(latchkey, env.to_vec(), "latchkey-sink")
    };
    let (sink, _) = sink.start().await?;
    let measured = measure_slow_clients(args, server, &sink, work).await;
    sink.stop().await?;
    measured
}

/// `work` against `server` in `--rounds` pairs of rounds, each after
/// `--slow-ramp` seconds of opening `--slow-connections` slow clients (in
/// their own process, started for the round and ended after it, which closes
/// them before the next): in the first of a pair aimed at `sink`, in the
/// second at `server`.
async fn measure_slow_clients(
    args: &Args,
    server: &Server,
    sink: &Server,
    mut work: Vec<Work>,
) -> Result<SlowClients> {
    let rounds = args.rounds.max(1);
    let slice = Duration::from_secs_f64(args.duration / rounds as f64);
    let warmup = Duration::from_secs_f64((args.warmup / rounds as f64).max(0.5));
    let settings = args.slow();
    let mut outcomes = [Outcome::default(), Outcome::default()];
    let mut cpu = [0.0; 2];
    let mut peak = [0.0_f64; 2];
    let (mut closed, mut slowed_for, mut slow_cpu) = (0, Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        let control = slow::SlowClients::start(sink.addr, settings, args.slow_cpu).await?;
        let measured = round(server, &mut work, settings.ramp + warmup, slice).await;
        control.stop().await?;
        let (outcome, used, memory) = measured?;
        outcomes[0].merge(outcome);
        cpu[0] += used / rounds as f64;
        peak[0] = peak[0].max(memory);

        let mut slow = slow::SlowClients::start(server.addr, settings, args.slow_cpu).await?;
        let ramp = settings.ramp;
        let window = Window::after(ramp + warmup, slice);
        // The slow connections the server closes inside the measured window,
        // and the CPU the slow clients' process uses meanwhile.
        let closing = async {
            tokio::time::sleep_until(window.start.into()).await;
            let before = (slow.reopened().await?, slow.cpu_time()?);
            tokio::time::sleep_until(window.end.into()).await;
            anyhow::Ok((
                slow.reopened().await? - before.0,
                slow.cpu_time()? - before.1,
            ))
        };
        let (measured, inside) =
            tokio::join!(round(server, &mut work, ramp + warmup, slice), closing);
        let (outcome, used, memory) = measured?;
        let (closed_inside, cpu_inside) = inside?;
        closed += closed_inside;
        slow_cpu += cpu_inside;
        slowed_for += slice;
        slow.stop().await?;
        outcomes[1].merge(outcome);
        cpu[1] += used / rounds as f64;
        peak[1] = peak[1].max(memory);
    }
    let [solo, slowed] = outcomes;
    let mut solo = figures(server, solo, cpu[0], slice * rounds as u32)?;
    solo.peak_rss_mib = peak[0];
    let mut slowed = figures(server, slowed, cpu[1], slice * rounds as u32)?;
    slowed.peak_rss_mib = peak[1];
    let slowed_for = slowed_for.as_secs_f64().max(f64::EPSILON);
    Ok(SlowClients {
        solo,
        slowed,
        closed_per_second: closed as f64 / slowed_for,
        slow_process_cpu: slow_cpu.as_secs_f64() / slowed_for,
    })
}

impl SlowClients {
    fn report(self, args: &Args) -> (Vec<Row>, Target) {
        let ratio = self.slowed.requests_per_second / self.solo.requests_per_second;
        let target = Target {
            what: "protected while slow clients dribble headers",
            goal: format!(
                "≥ 90% of the control, {} slow clients",
                args.slow_connections
            ),
            measured: format!(
                "{} ({:.0} vs {:.0} req/s with the slow clients aimed at a sink on the load \
                 generator's CPU, in alternating rounds); the server closed {:.0} \
                 slow connections a second, each reopened; the slow clients' process used \
                 {:.1}% of a core; peak RSS {:.1} MiB vs {:.1} MiB",
                percent(ratio),
                self.slowed.requests_per_second,
                self.solo.requests_per_second,
                self.closed_per_second,
                self.slow_process_cpu * 100.0,
                self.slowed.peak_rss_mib,
                self.solo.peak_rss_mib
            ),
            met: Some(ratio >= 0.90),
        };
        let rows = vec![
            Row {
                scenario: "slow clients: protected, control",
                server: format!("latchkey, {} slow clients at a sink", args.slow_connections),
                figures: self.solo,
                ratio: None,
            },
            Row {
                scenario: "slow clients: protected",
                server: format!("latchkey, {} slow clients", args.slow_connections),
                ratio: Some((ratio, "of control")),
                figures: self.slowed,
            },
        ];
        (rows, target)
    }
}

/// Two streams at once in one window; the figures of each, the server's
/// CPU and memory being those of the whole.
async fn measure_mixed(
    args: &Args,
    server: &Server,
    first: Vec<Work>,
    second: Vec<Work>,
) -> Result<(Figures, Figures)> {
    server.reset_peak_memory()?;
    let window = args.window();
    let (a, b, cpu) = tokio::join!(
        load::drive(server.addr, first, window),
        load::drive(server.addr, second, window),
        server_cpu(server, window)
    );
    let cpu = cpu?;
    Ok((
        figures(server, a?.0, cpu, window.length())?,
        figures(server, b?.0, cpu, window.length())?,
    ))
}

/// The share of one core the server used inside `window`.
async fn server_cpu(server: &Server, window: Window) -> Result<f64> {
    tokio::time::sleep_until(window.start.into()).await;
    let before = server.cpu_time()?;
    tokio::time::sleep_until(window.end.into()).await;
    let used = server.cpu_time()? - before;
    Ok(used.as_secs_f64() / window.length().as_secs_f64())
}

fn figures(server: &Server, mut outcome: Outcome, cpu: f64, length: Duration) -> Result<Figures> {
    for e in &outcome.first_errors {
        eprintln!("  error: {e}");
    }
    let figures = Figures {
        requests_per_second: outcome.latencies.count() as f64 / length.as_secs_f64(),
        p50: outcome.latencies.quantile(0.50),
        p99: outcome.latencies.quantile(0.99),
        errors: outcome.errors,
        server_cpu: cpu,
        peak_rss_mib: server.peak_memory_mib()?,
    };
    eprintln!(
        "  {:.0} req/s, p50 {}, p99 {}, {} errors, server CPU {:.0}%",
        figures.requests_per_second,
        millis(figures.p50),
        millis(figures.p99),
        figures.errors,
        figures.server_cpu * 100.0
    );
    Ok(figures)
}

/// One core's bcrypt verifications per second at `cost` (this thread, on the
/// load generator's core, with nothing else running).
fn bcrypt_rate(cost: u32) -> Result<f64> {
    let hash = bcrypt::hash(setup::PASSWORD, cost)?;
    let started = Instant::now();
    let mut done = 0_u32;
    while done < 8 || started.elapsed() < Duration::from_secs(3) {
        anyhow::ensure!(bcrypt::verify(setup::PASSWORD, &hash)?, "bcrypt disagrees");
        done += 1;
    }
    Ok(f64::from(done) / started.elapsed().as_secs_f64())
}

/// What the figures were measured on.
fn machine(args: &Args, dir: &Path, bcrypt: Option<f64>) -> Result<Vec<(String, String)>> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let online = read("/sys/devices/system/cpu/online");
    let memory = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown".into(),
            |kib| format!("{:.0} GiB", kib / 1_048_576.0),
        );
    let kernel = read("/proc/sys/kernel/osrelease");
    let pinned = read("/proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let date = time::OffsetDateTime::now_utc().date();
    Ok(vec![
        ("date".into(), format!("{date}, commit {commit}")),
        (
            "machine".into(),
            format!(
                "{model}; CPUs online {} ({cpus} usable by the load generator, pinned to {pinned}); {memory}; Linux {}",
                online.trim(),
                kernel.trim()
            ),
        ),
        (
            "pinning".into(),
            format!(
                "servers on CPU {}, load generator on CPU {pinned}, slow clients' process on CPU {} \
                 (PostgreSQL, during its `refresh`, on the servers' CPU where the benchmark may \
                 pin it: its row says)",
                args.server_cpu,
                args.slow_cpu
                    .map_or_else(|| pinned.clone(), |cpu| cpu.to_string())
            ),
        ),
        (
            "disk".into(),
            format!(
                "fdatasync of 4 KiB: {} (median of 200)",
                millis(fsync_latency(dir)?)
            ),
        ),
        (
            "load".into(),
            format!(
                "{} keep-alive connections ({} for logins), {} s warm-up, {} s measured per scenario (`protected` with each of {} and each `refresh` in {} rounds alternating with the ceiling, which checks the same algorithm; `slow clients` in as many alternating with its control, the slow clients aimed at a second latchkey on the load generator's CPU; `metrics` in three times as many, shorter; every other scenario on HS256); BCRYPT_COST {}{}; {} stored sessions; {} slow clients, a header line every {} s, opened over {} s",
                args.connections,
                args.login_connections,
                args.warmup,
                args.duration,
                args.algorithms()
                    .iter()
                    .map(|a| a.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                args.rounds,
                args.bcrypt_cost,
                bcrypt.map_or_else(String::new, |rate| format!(
                    " ({rate:.2} verifications/s on one core)"
                )),
                args.sessions,
                args.slow_connections,
                args.slow_every,
                args.slow_ramp
            ),
        ),
    ])
}

/// How long the disk takes to make a small write durable: what one
/// `synchronous=FULL` commit costs at least.
fn fsync_latency(dir: &Path) -> Result<Duration> {
    use std::io::Write as _;
    let mut file = std::fs::File::create(dir.join("fsync-probe"))?;
    let block = [0_u8; 4096];
    let mut samples = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

fn with(base: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    let mut env = base.to_vec();
    env.push((key.to_owned(), value.to_owned()));
    env
}

fn percent(ratio: f64) -> String {
    format!("{:.0}%", ratio * 100.0)
}

//! The cost of one answer (README, "Cost per answer"): the CPU time a server
//! spent per answer in the timed rounds, beside the heap allocations it made
//! per answer, counted by the same server built with a counting allocator
//! (`examples/counted.rs`) under a light load of its own. A counted server
//! runs far slower, so only its counts are kept, never its timings.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::load::{self, Window, Work};
use crate::server::{Launch, free_port};
use crate::stats::Figures;

/// Connections of the counting load: few, so that the requests still in
/// flight when it stops (counted, not answered in time) are a rounding error.
const CONNECTIONS: usize = 4;
const WARMUP: Duration = Duration::from_secs(1);
const COUNTED: Duration = Duration::from_secs(3);

/// Heap allocations and bytes allocated per answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocations {
    pub count: f64,
    pub bytes: f64,
}

/// One row of the cost table.
pub struct Cost {
    pub scenario: &'static str,
    pub server: &'static str,
    pub cpu: Duration,
    pub allocations: Allocations,
}

impl Cost {
    /// `figures`' CPU per answer beside `allocations`.
    pub fn new(
        scenario: &'static str,
        server: &'static str,
        figures: &Figures,
        allocations: Allocations,
    ) -> Self {
        let cpu = if figures.requests_per_second > 0.0 {
            Duration::from_secs_f64(figures.server_cpu / figures.requests_per_second)
        } else {
            Duration::ZERO
        };
        Self {
            scenario,
            server,
            cpu,
            allocations,
        }
    }
}

/// A server built with the counting allocator: `launch` names
/// `examples/counted`; `ceiling` picks the ceiling over latchkey.
pub struct Counted {
    launch: Launch,
}

impl Counted {
    pub fn new(mut launch: Launch, ceiling: bool) -> Self {
        if ceiling {
            launch.env.push(("COUNTED".into(), "ceiling".into()));
        }
        Self { launch }
    }

    /// Starts it, runs `setup` against its address to make the work (a
    /// sign-in, say), then counts the allocations per answer of that work.
    pub async fn per_answer<F, Fut>(&self, setup: F) -> Result<Allocations>
    where
        F: FnOnce(SocketAddr) -> Fut,
        Fut: Future<Output = Result<Vec<Work>>>,
    {
        let reports = free_port()?;
        let mut launch = self.launch.clone();
        launch
            .env
            .push(("ALLOCATIONS_BIND".into(), reports.to_string()));
        let (server, _) = launch.start().await?;
        let counted = async {
            let work: Vec<Work> = setup(server.addr)
                .await?
                .into_iter()
                .cycle()
                .take(CONNECTIONS)
                .collect();
            // Caches filled, every path taken once, before counting.
            let (_, work) =
                load::drive(server.addr, work, Window::after(WARMUP, Duration::ZERO)).await?;
            let before = totals(reports).await?;
            let (outcome, _) =
                load::drive(server.addr, work, Window::after(Duration::ZERO, COUNTED)).await?;
            let after = totals(reports).await?;
            ensure!(
                outcome.errors == 0,
                "counted run failed: {:?}",
                outcome.first_errors
            );
            let answers = outcome.latencies.count().max(1) as f64;
            Ok(Allocations {
                count: (after.0 - before.0) as f64 / answers,
                bytes: (after.1 - before.1) as f64 / answers,
            })
        }
        .await;
        server.stop().await?;
        counted
    }
}

/// The counted server's totals so far: allocations and bytes.
async fn totals(at: SocketAddr) -> Result<(u64, u64)> {
    let mut line = String::new();
    TcpStream::connect(at)
        .await
        .context("the counted server's report")?
        .read_to_string(&mut line)
        .await?;
    let mut numbers = line.split_whitespace().map(str::parse::<u64>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(count)), Some(Ok(bytes))) => Ok((count, bytes)),
        _ => anyhow::bail!("the counted server reported {line:?}"),
    }
}

/// The cost table, with a line saying how it was measured.
pub fn render(costs: &[Cost]) -> String {
    let mut out = format!(
        "\nThe cost of one answer: the server's CPU time per answer in the timed rounds above, \
         and the heap allocations it made per answer, counted by the same server built with \
         dhat's counting allocator (`examples/counted.rs`) over {} s of {CONNECTIONS} \
         keep-alive connections after {} s of warm-up.\n\n\
         | scenario | server | CPU per answer | allocations per answer | bytes allocated per answer |\n\
         |---|---|---:|---:|---:|\n",
        COUNTED.as_secs(),
        WARMUP.as_secs()
    );
    for c in costs {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} µs | {:.1} | {:.0} |",
            c.scenario,
            c.server,
            c.cpu.as_secs_f64() * 1e6,
            c.allocations.count,
            c.allocations.bytes,
        );
    }
    out
}

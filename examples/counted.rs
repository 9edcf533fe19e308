//! latchkey or the ceiling with every heap allocation counted, for the
//! benchmark's cost table (README, "Cost per answer"). The very same servers
//! (`latchkey serve` through its own command line, or `examples/ceiling.rs`),
//! only with dhat's counting allocator in place of the system's: the counts
//! are exact, the speed is not, so the benchmark takes its timings from the
//! uncounted binaries and only the counts from this one.
//!
//! `COUNTED=ceiling` runs the ceiling; anything else runs latchkey with this
//! program's arguments. `ALLOCATIONS_BIND` names a loopback address where
//! each connection is answered with one line, `<allocations> <bytes>`: the
//! totals since start-up. The load comes from another process, so only the
//! server's own allocations are counted. `DHAT_OUT` names a file to write
//! dhat's whole profile to when the server stops (README, "Cost per answer").

use std::io::Write as _;
use std::net::TcpListener;
use std::process::ExitCode;

use clap::Parser;
use latchkey::cli::{self, Cli};

#[path = "ceiling.rs"]
mod ceiling;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    // Testing mode: the totals are readable while it runs, and nothing is
    // written out at exit. With `DHAT_OUT`, also every allocation site,
    // written there at exit for dhat's viewer (`dh_view.html`).
    let _profiler = match std::env::var_os("DHAT_OUT") {
        Some(out) => dhat::Profiler::builder().file_name(out).build(),
        None => dhat::Profiler::builder().testing().build(),
    };
    if let Some(bind) = std::env::var("ALLOCATIONS_BIND")
        .ok()
        .filter(|b| !b.is_empty())
    {
        match TcpListener::bind(&bind) {
            Ok(listener) => {
                std::thread::spawn(move || report(&listener));
            }
            Err(e) => {
                eprintln!("ALLOCATIONS_BIND {bind}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if std::env::var("COUNTED").as_deref() == Ok("ceiling") {
        match ceiling::main() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{e:#}");
                ExitCode::FAILURE
            }
        }
    } else {
        cli::main(Cli::parse())
    }
}

/// Answers each connection with the totals so far, then closes it.
fn report(listener: &TcpListener) {
    for mut stream in listener.incoming().flatten() {
        let stats = dhat::HeapStats::get();
        let _ = writeln!(stream, "{} {}", stats.total_blocks, stats.total_bytes);
    }
}

//! The results as Markdown: the machine, one row of figures per scenario,
//! the cost of an access-token check per algorithm, and one row per target
//! (README, "The benchmark"), each with the ratio it is judged by.

use std::fmt::Write as _;
use std::time::Duration;

use crate::stats::{Figures, millis};

/// A scenario's figures with the name it goes by in the table.
pub struct Row {
    pub scenario: &'static str,
    pub server: String,
    pub figures: Figures,
    /// The ratio this row is judged by, and to what (`of ceiling`, …).
    pub ratio: Option<(f64, &'static str)>,
}

pub struct Target {
    pub what: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: Option<bool>,
}

/// One access-token algorithm: what a check costs alone, and what a
/// `/protected` answer cost each server with it.
pub struct Check {
    pub algorithm: &'static str,
    pub check: Duration,
    pub latchkey_cpu: Duration,
    pub ceiling_cpu: Duration,
}

/// The per-algorithm table, with a line saying how it was measured.
pub struct Checks {
    pub how: String,
    pub rows: Vec<Check>,
}

pub fn render(
    machine: &[(String, String)],
    rows: &[Row],
    checks: Option<&Checks>,
    targets: &[Target],
) -> String {
    let mut out = String::new();
    for (key, value) in machine {
        let _ = writeln!(out, "- {key}: {value}");
    }
    out.push('\n');
    out.push_str(
        "| scenario | server | req/s | ratio | p50 | p99 | errors | server CPU | peak RSS |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for row in rows {
        let f = &row.figures;
        let ratio = row
            .ratio
            .map_or_else(String::new, |(r, of)| format!("{:.0}% {of}", r * 100.0));
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} | {} | {} | {} | {:.0}% | {:.1} MiB |",
            row.scenario,
            row.server,
            f.requests_per_second,
            ratio,
            millis(f.p50),
            millis(f.p99),
            f.errors,
            f.server_cpu * 100.0,
            f.peak_rss_mib,
        );
    }
    if let Some(checks) = checks {
        render_checks(&mut out, checks);
    }
    if targets.is_empty() {
        return out;
    }
    out.push_str("\n| target | goal | measured | met |\n|---|---|---|---|\n");
    for t in targets {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "(reported)",
        };
        let _ = writeln!(out, "| {} | {} | {} | {met} |", t.what, t.goal, t.measured);
    }
    out
}

fn render_checks(out: &mut String, checks: &Checks) {
    let _ = writeln!(out, "\n{}\n", checks.how);
    out.push_str(
        "| algorithm | one check | × HS256 | latchkey CPU per `/protected` | ceiling CPU per `/protected` |\n\
         |---|---:|---:|---:|---:|\n",
    );
    let hs256 = checks
        .rows
        .iter()
        .find(|c| c.algorithm == "HS256")
        .map(|c| c.check.as_secs_f64());
    for c in &checks.rows {
        let times = hs256
            .filter(|&base| base > 0.0)
            .map_or_else(String::new, |base| {
                format!("{:.1}×", c.check.as_secs_f64() / base)
            });
        let _ = writeln!(
            out,
            "| {} | {} | {times} | {} | {} |",
            c.algorithm,
            micros(c.check),
            micros(c.latchkey_cpu),
            micros(c.ceiling_cpu),
        );
    }
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

//! The results as Markdown: the machine, one row of figures per scenario and
//! one row per target (README, "The benchmark"), each with the ratio it is
//! judged by.

use std::fmt::Write as _;

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

pub fn render(machine: &[(String, String)], rows: &[Row], targets: &[Target]) -> String {
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

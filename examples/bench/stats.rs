//! Latency samples and what the table reports of them.

use std::time::Duration;

/// Every answer's latency in a window (a few hundred thousand at most, so
/// exact percentiles from the sorted samples rather than a histogram).
#[derive(Debug, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, latency: Duration) {
        self.0.push(latency);
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len() as u64
    }

    /// The `q` quantile (0.5, 0.99) by the nearest-rank method.
    pub fn quantile(&mut self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.sort_unstable();
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

/// One scenario's row of figures.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub requests_per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: u64,
    /// Share of one core the server used in the window.
    pub server_cpu: f64,
    /// The server's peak resident memory during the scenario, in MiB.
    pub peak_rss_mib: f64,
}

pub fn millis(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

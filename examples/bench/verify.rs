//! What one access-token check costs with each algorithm, apart from
//! everything else a request costs: latchkey's own `Auth::verify_access`
//! (the `kid`'s key, the signature, then `typ`, issuer, audience and expiry:
//! README, "Tokens"), called in this process on the load generator's CPU
//! with a token a latchkey of that algorithm issued in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use latchkey::config::AccessAlgorithm;
use latchkey::{Auth, Config};

/// Rounds of [`PER_ROUND`] checks per algorithm, the algorithms taking turns
/// in each round so that the machine's drift from minute to minute falls on
/// all of them alike.
pub const ROUNDS: usize = 8;
const PER_ROUND: u32 = 500;
/// Checks before measuring: the keys loaded, the caches warm.
const WARM_UP: u32 = 100;

/// A token and the service that checks it, configured as the server that
/// issued it.
pub struct Verifier {
    algorithm: AccessAlgorithm,
    auth: Auth,
    token: String,
}

impl Verifier {
    /// latchkey's service on the server's configuration `env` (its store
    /// holds the published keys), to check `token`.
    pub async fn open(
        algorithm: AccessAlgorithm,
        env: &[(String, String)],
        token: &str,
    ) -> Result<Self> {
        let config = Config::from_lookup(|key| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })?;
        let auth = Auth::open(config).await?;
        let verifier = Self {
            algorithm,
            auth,
            token: token.to_owned(),
        };
        verifier.check().await?;
        Ok(verifier)
    }

    async fn check(&self) -> Result<()> {
        let claims = self.auth.verify_access(&self.token).await;
        ensure!(
            claims.is_ok(),
            "{}: latchkey refused its own token: {:?}",
            self.algorithm.name(),
            claims.err()
        );
        Ok(())
    }

    /// How long `n` checks took.
    async fn time(&self, n: u32) -> Result<Duration> {
        let started = Instant::now();
        for _ in 0..n {
            let claims = self.auth.verify_access(&self.token).await;
            ensure!(claims.is_ok(), "{}: a check failed", self.algorithm.name());
            let _ = std::hint::black_box(claims);
        }
        Ok(started.elapsed())
    }

    pub async fn close(self) {
        self.auth.close().await;
    }
}

/// How many checks each algorithm gets.
pub const CHECKS: usize = ROUNDS * PER_ROUND as usize;

/// Each verifier's time per check, in the order given: the median of the
/// rounds' means.
pub async fn costs(verifiers: &[Verifier]) -> Result<Vec<Duration>> {
    for v in verifiers {
        v.time(WARM_UP).await?;
    }
    let mut rounds: Vec<Vec<Duration>> = vec![Vec::with_capacity(ROUNDS); verifiers.len()];
    for _ in 0..ROUNDS {
        for (v, times) in verifiers.iter().zip(&mut rounds) {
            times.push(v.time(PER_ROUND).await? / PER_ROUND);
        }
    }
    rounds
        .into_iter()
        .map(|mut times| {
            times.sort();
            times.get(times.len() / 2).copied().context("no rounds")
        })
        .collect()
}

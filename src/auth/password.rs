//! Password hashing with bcrypt, always on its own bounded, lower-priority
//! threads (`hash_pool.rs`), so hashing can never starve the async workers
//! that check tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::OnceCell;

use crate::auth::hash_pool::HashPool;
pub use crate::auth::hash_pool::{Busy, HoldGuard};

/// bcrypt reads at most 72 bytes; longer passwords are refused, never truncated.
pub const MAX_PASSWORD_BYTES: usize = 72;
pub const MIN_PASSWORD_BYTES: usize = 8;

#[derive(Clone)]
pub struct Hasher {
    cost: u32,
    threads: HashPool,
    /// A hash of nothing anyone knows, verified for unknown usernames so their
    /// answer takes as long as a wrong password.
    dummy: Arc<OnceCell<String>>,
    /// bcrypt verifications run so far: the work a login cost, countable
    /// where its time is too noisy to compare.
    verified: Arc<AtomicU64>,
}

impl Hasher {
    pub fn new(cost: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            cost,
            threads: HashPool::new(cores),
            dummy: Arc::new(OnceCell::new()),
            verified: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Holds the hashing threads: checks queue up and none starts until the
    /// guard is dropped (tests use it to hold a login at its password check).
    pub fn hold(&self) -> HoldGuard {
        self.threads.hold()
    }

    /// Hash jobs that may be queued or running at once; past it, `Busy`.
    pub fn capacity(&self) -> usize {
        self.threads.capacity()
    }

    /// Hash jobs queued or running now.
    pub fn pending(&self) -> usize {
        self.threads.pending()
    }

    /// Callers check the length first (`MAX_PASSWORD_BYTES`): bcrypt's own
    /// non-truncating variants also count a NUL terminator, refusing 72 bytes.
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            password.len() <= MAX_PASSWORD_BYTES,
            "password longer than bcrypt reads"
        );
        let cost = self.cost;
        let password = password.to_owned();
        self.threads
            .run(move || Ok(bcrypt::hash(password, cost)?))
            .await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// there is no user, so both cases cost the same. Never true without a hash.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let password = password.to_owned();
        let verified = self.verified.clone();
        let ok = self
            .threads
            .run(move || {
                verified.fetch_add(1, Ordering::Relaxed);
                Ok(bcrypt::verify(password, &hash).unwrap_or(false))
            })
            .await?;
        Ok(ok && real)
    }

    /// How many bcrypt verifications this hasher has run.
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    /// True when `hash` was made with a lower cost than configured.
    pub fn needs_upgrade(&self, hash: &str) -> bool {
        // Modular crypt format: `$2b$12$...`.
        hash.split('$')
            .nth(2)
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|c| c < self.cost)
    }

    /// Computes the dummy hash ahead of the first unknown-user login, so that
    /// login is not slower than the others.
    pub async fn warm_up(&self) -> anyhow::Result<()> {
        self.dummy_hash().await.map(drop)
    }

    async fn dummy_hash(&self) -> anyhow::Result<String> {
        self.dummy
            .get_or_try_init(|| async {
                let secret = crate::random::token(24);
                self.hash(&secret).await
            })
            .await
            .cloned()
    }
}

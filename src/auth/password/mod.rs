//! Password hashing with bcrypt, always on its own bounded, lower-priority
//! threads (`hash_pool.rs`), so hashing can never starve the async workers
//! that check tokens.
//!
//! Stored hashes come in two formats (README "Passwords and login"):
//!
//! - `$latchkey-v1$2b$12$…`, made today: bcrypt of the base64 HMAC-SHA-256 of
//!   the NFKC-normalised password. The MAC is 44 characters whatever the
//!   password's length, so bcrypt's 72-byte limit never cuts or refuses a
//!   password, and it holds no NUL byte.
//! - `$2b$12$…`, made before: bcrypt of the password as typed, at most 72
//!   bytes. Still verified, and [`Hasher::needs_upgrade`] asks for it to be
//!   replaced at the next successful login.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OnceCell;

mod hash_pool;
pub(crate) mod policy;

use prometheus_client::metrics::histogram::Histogram;

use crate::auth::password::hash_pool::HashPool;
pub use crate::auth::password::hash_pool::{HashError, HoldGuard};
use crate::auth::password::policy::NormalizedPassword;

/// Marks a hash of the current format. Never starts a plain bcrypt hash
/// (`$2a$`, `$2b$`, `$2x$`, `$2y$`), so the two cannot be mistaken.
const PREHASHED_MARKER: &str = "$latchkey-v1";

/// The HMAC key of the pre-hash. Not a secret (a leaked database plus this
/// constant gives nothing a plain bcrypt hash would not): it separates this
/// use of SHA-256 from any other, and its version changes with the format.
const PREHASH_KEY: &[u8] = b"latchkey password prehash v1";

/// bcrypt reads at most this many bytes. Only a plain (old-format) hash can
/// meet a longer password, and then it is a mismatch, never a truncation.
const BCRYPT_MAX_BYTES: usize = 72;

/// Hashes and verifies passwords with bcrypt on its own threads; clones
/// share them.
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

/// The buckets of `latchkey_password_hash_duration_seconds` (README,
/// "Metrics"): one bcrypt hash or verification, from `BCRYPT_COST=4` (about a
/// millisecond) through the default 12 (about a quarter of a second) to the
/// costs where one takes seconds. The hasher fills the histogram and the
/// metrics registry only reads it, so it is made here, below both.
const HASH_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl Hasher {
    /// A hasher making new hashes at bcrypt cost `cost` (`BCRYPT_COST`).
    pub fn new(cost: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            cost,
            threads: HashPool::new(cores, Histogram::new(HASH_SECONDS)),
            dummy: Arc::new(OnceCell::new()),
            verified: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The bcrypt cost of new hashes.
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Holds the hashing threads: checks queue up and none starts until the
    /// guard is dropped (tests use it to hold a login at its password check).
    pub fn hold(&self) -> HoldGuard {
        self.threads.hold()
    }

    /// Hashing threads (one per core this process may run on).
    pub fn threads(&self) -> usize {
        self.threads.threads()
    }

    /// Hash jobs that may be queued or running at once; past it,
    /// [`HashError::Busy`].
    pub fn capacity(&self) -> usize {
        self.threads.capacity()
    }

    /// Hash jobs queued or running now.
    pub fn pending(&self) -> usize {
        self.threads.pending()
    }

    /// How long each hash and verification took on its thread.
    pub(crate) fn durations(&self) -> prometheus_client::metrics::histogram::Histogram {
        self.threads.durations()
    }

    /// Hashes `password` in the current format. The length rules are the
    /// caller's (`policy::check`); any length hashes correctly.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let cost = self.cost;
        let password = NormalizedPassword::new(password);
        self.threads
            .run(move || {
                let bcrypt = bcrypt::hash(prehash(&password)?, cost)?;
                Ok(format!("{PREHASHED_MARKER}{bcrypt}"))
            })
            .await
    }

    /// Verifies `password` against `hash`, or against the dummy hash when
    /// there is no user, so both cases cost the same. Never true without a hash.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> Result<bool, HashError> {
        let (hash, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.to_owned();
        let verified = self.verified.clone();
        let ok = self
            .threads
            .run(move || {
                verified.fetch_add(1, Ordering::Relaxed);
                Ok(match StoredHash::parse(&hash) {
                    StoredHash::Prehashed(bcrypt) => {
                        let mac = prehash(&NormalizedPassword::new(&password))?;
                        bcrypt::verify(mac, bcrypt).unwrap_or(false)
                    }
                    // The same bcrypt work either way; bcrypt would compare
                    // only the first 72 bytes of a longer password.
                    StoredHash::Plain(bcrypt) => {
                        bcrypt::verify(&password, bcrypt).unwrap_or(false)
                            && password.len() <= BCRYPT_MAX_BYTES
                    }
                })
            })
            .await?;
        Ok(ok && real)
    }

    /// How many bcrypt verifications this hasher has run.
    pub fn verifications(&self) -> u64 {
        self.verified.load(Ordering::Relaxed)
    }

    /// True when `hash` is of the old format (plain bcrypt), or was made
    /// with a lower cost than configured: the next successful login replaces it.
    pub fn needs_upgrade(&self, hash: &str) -> bool {
        match StoredHash::parse(hash) {
            StoredHash::Plain(_) => true,
            // Modular crypt format: `$2b$12$...`.
            StoredHash::Prehashed(bcrypt) => bcrypt
                .split('$')
                .nth(2)
                .and_then(|c| c.parse::<u32>().ok())
                .is_some_and(|c| c < self.cost),
        }
    }

    /// Computes the dummy hash ahead of the first unknown-user login, so that
    /// login is not slower than the others.
    pub async fn warm_up(&self) -> Result<(), HashError> {
        self.dummy_hash().await.map(drop)
    }

    async fn dummy_hash(&self) -> Result<String, HashError> {
        self.dummy
            .get_or_try_init(|| async {
                let secret = crate::random::token(24);
                self.hash(&secret).await
            })
            .await
            .cloned()
    }
}

/// A stored hash, by format; each holds the bcrypt string inside.
enum StoredHash<'a> {
    Prehashed(&'a str),
    Plain(&'a str),
}

impl<'a> StoredHash<'a> {
    fn parse(hash: &'a str) -> Self {
        match hash.strip_prefix(PREHASHED_MARKER) {
            Some(bcrypt) => Self::Prehashed(bcrypt),
            None => Self::Plain(hash),
        }
    }
}

/// What bcrypt is given in the current format: HMAC-SHA-256 of the
/// normalised password under [`PREHASH_KEY`], in standard base64 (44 bytes).
fn prehash(password: &NormalizedPassword) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(PREHASH_KEY)?;
    mac.update(password.as_str().as_bytes());
    Ok(STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PRECOMPOSED: &str = "caf\u{e9} au lait";
    const DECOMPOSED: &str = "cafe\u{301} au lait";

    #[test]
    fn the_prehash_is_44_characters_whatever_the_password() {
        for password in ["", "short", &"long".repeat(1_000)] {
            let mac = prehash(&NormalizedPassword::new(password)).unwrap();
            assert_eq!(mac.len(), 44, "{password:?}");
            assert!(!mac.contains('\0'));
        }
    }

    #[tokio::test]
    async fn a_new_hash_is_marked_and_matches_every_form_of_the_password() {
        let hasher = Hasher::new(4);

        let hash = hasher.hash(PRECOMPOSED).await.unwrap();

        assert!(hash.starts_with("$latchkey-v1$2b$04$"), "{hash}");
        assert!(hasher.verify(PRECOMPOSED, Some(&hash)).await.unwrap());
        assert!(hasher.verify(DECOMPOSED, Some(&hash)).await.unwrap());
        assert!(!hasher.verify("cafe au lait", Some(&hash)).await.unwrap());
        assert!(!hasher.needs_upgrade(&hash));
        assert!(Hasher::new(5).needs_upgrade(&hash), "a cheaper cost");
    }

    #[tokio::test]
    async fn a_plain_bcrypt_hash_still_verifies_and_asks_for_an_upgrade() {
        let hasher = Hasher::new(4);
        let plain = bcrypt::hash(PRECOMPOSED, 4).unwrap();

        assert!(hasher.verify(PRECOMPOSED, Some(&plain)).await.unwrap());
        assert!(!hasher.verify("not it at all", Some(&plain)).await.unwrap());
        assert!(hasher.needs_upgrade(&plain), "the old format, at full cost");
    }

    #[tokio::test]
    async fn no_password_is_cut_at_72_bytes_in_either_format() {
        let hasher = Hasher::new(4);
        let first_72 = "p".repeat(72);
        let one = format!("{first_72}{}", "a".repeat(28));
        let other = format!("{first_72}{}", "b".repeat(28));

        let new = hasher.hash(&one).await.unwrap();
        assert!(hasher.verify(&one, Some(&new)).await.unwrap());
        assert!(!hasher.verify(&other, Some(&new)).await.unwrap());

        let plain = bcrypt::hash(&first_72, 4).unwrap();
        assert!(hasher.verify(&first_72, Some(&plain)).await.unwrap());
        assert!(
            !hasher.verify(&one, Some(&plain)).await.unwrap(),
            "bcrypt alone would compare the first 72 bytes and agree"
        );
    }

    #[tokio::test]
    async fn an_unknown_user_costs_one_verification_of_a_current_format_hash() {
        let hasher = Hasher::new(4);

        let ok = hasher.verify(PRECOMPOSED, None).await.unwrap();

        assert!(!ok);
        assert_eq!(hasher.verifications(), 1);
        let dummy = hasher.dummy.get().unwrap();
        assert!(dummy.starts_with(PREHASHED_MARKER), "{dummy}");
    }
}

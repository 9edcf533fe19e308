//! Access-token signing keys: the public half of each, and the times its life
//! follows from (README, "Signing keys").

use async_trait::async_trait;

use super::StoreResult;

/// One signing key as stored. The private half is never stored; see
/// `auth::signing_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// The JWS algorithm it signs with (`EdDSA`, `ES256`).
    pub algorithm: String,
    /// Its place among the keys of its algorithm: 1, 2, 3…
    pub seq: i64,
    /// The key id tokens name it by (`kid`).
    pub kid: String,
    /// The public key, base64url: Ed25519's 32 bytes, or P-256's SEC1
    /// uncompressed point.
    pub public_key: String,
    /// When it was created, and so published. Unix seconds.
    pub created_at: i64,
    /// When it starts signing. Unix seconds.
    pub signs_from: i64,
    /// When `latchkey keys revoke` withdrew it: from then on it neither
    /// signs, verifies nor is published. Unix seconds.
    pub revoked_at: Option<i64>,
}

/// The signing keys, oldest first. Rows are only ever added and deleted.
#[async_trait]
pub trait SigningKeys: Send + Sync {
    /// Every key of `algorithm`, by `seq`.
    async fn signing_keys(&self, algorithm: &str) -> StoreResult<Vec<StoredKey>>;
    /// Adds `key`, unless its `(algorithm, seq)` is taken: another instance
    /// rotated first. True when added.
    async fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool>;
    /// Marks the key `kid` revoked at `now`; false when there is no such
    /// key or it was revoked already.
    async fn revoke_signing_key(&self, kid: &str, now: i64) -> StoreResult<bool>;
    /// Deletes the keys of `algorithm` before `seq`: keys no verifier can
    /// meet any more.
    async fn delete_signing_keys_before(&self, algorithm: &str, seq: i64) -> StoreResult<u64>;
}

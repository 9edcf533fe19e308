//! Access-token signing keys (README, "Signing keys").
//!
//! With `HS256` the keys are `JWT_SECRET` and `JWT_SECRET_PREVIOUS`, fixed
//! at start. With `EdDSA` or `ES256` they are a ring kept in the store,
//! shared by every instance, and each key's life follows from its times
//! alone, so instances that read the same rows agree on it at every moment:
//!
//! - **published** from `created_at`: it is in the JWKS, not yet signing;
//! - **signing** from `signs_from`: `JWKS_MAX_AGE` after every instance
//!   has published it (each reloads within `reload_every`), so every
//!   verifier's cached key set already has it;
//! - **retired** from its successor's `signs_from`: still published, so
//!   the tokens it signed keep verifying;
//! - **removed** `JWT_EXPIRATION + JWKS_MAX_AGE` after that, when no token
//!   it signed is unexpired and no verifier's cache needs it (housekeeping
//!   then deletes the row).
//!
//! Only the public half of a key is stored. The private half is derived
//! from `JWT_REFRESH_SECRET` (which only latchkey instances hold) and the
//! key's id: a leaked database alone yields no key that signs. After that
//! secret changes, keys derived from the old one go on signing while it is
//! `JWT_REFRESH_SECRET_PREVIOUS`.
//!
//! When no stored key can sign under the secrets this instance holds (the
//! refresh secret changed with no `JWT_REFRESH_SECRET_PREVIOUS`, as after a
//! leak, or the signing key was revoked), the next token issued makes a fresh
//! key that signs at once, as the first key does, and the event is logged at
//! warn: sign-in never stops for want of a key. Verifiers meet its `kid`
//! before their cached key set has it and refetch the set, as for any unknown
//! `kid`. No key is ever derived from a secret that derives a revoked key: that
//! secret has leaked, and the instance answers `503` until it is given a new
//! one.
//!
//! `latchkey keys revoke KID` withdraws a key for good: it no longer signs,
//! verifies or is published, and no key older than it signs again. Each
//! instance drops it at its next reload, at once on `SIGHUP`.
//!
//! Each instance reloads the ring from the store at least every
//! `JWKS_MAX_AGE` (and at most every minute), on the first request after
//! that, so a key added by another instance or by `latchkey keys rotate`
//! is known everywhere before it signs. Rotation by interval happens at
//! that reload too; two instances rotating at once both try the same next
//! `seq`, and the store keeps only one.

use std::sync::{Arc, RwLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use hmac::{Hmac, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use sha2::Sha256;

use super::key_set::{KeySet, PublicJwk, TokenKey};
use crate::auth::{ApiError, Auth};
use crate::clock::seconds;
use crate::config::{AccessAlgorithm, ConfigError, Secret, TokenSettings};
use crate::random;
use crate::store::{Store, StoreError, StoredKey};

/// Where a key is in its life at one moment (see the module's comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyState {
    /// Published, not yet signing.
    Published,
    /// Signing new tokens.
    Signing,
    /// No longer signing, still published.
    Retired,
    /// No longer published; housekeeping deletes it.
    Removed,
    /// A configured secret that only verifies (`JWT_SECRET_PREVIOUS`).
    VerifyOnly,
    /// Withdrawn by `latchkey keys revoke`: neither signs, verifies nor is
    /// published.
    Revoked,
}

impl KeyState {
    /// The word `latchkey keys list` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Signing => "signing",
            Self::Retired => "retired",
            Self::Removed => "removed",
            Self::VerifyOnly => "verify-only",
            Self::Revoked => "revoked",
        }
    }
}

/// One access-token key and its life, for `latchkey keys list`. Times are
/// Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The `kid` tokens name it by.
    pub kid: String,
    /// The JWS algorithm.
    pub algorithm: &'static str,
    /// Its state now.
    pub state: KeyState,
    /// When it was published; `None` for a configured secret.
    pub created_at: Option<i64>,
    /// When it begins (or began) to sign.
    pub signs_from: Option<i64>,
    /// When it stops (or stopped) signing, once a successor exists.
    pub retires_at: Option<i64>,
    /// When it leaves the JWKS, once a successor exists.
    pub removed_at: Option<i64>,
    /// Whether this instance holds the secret it is derived from.
    pub can_sign: bool,
}

/// What `latchkey keys rotate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRotation {
    /// A new key is published and signs from `signs_from`.
    Added {
        /// The new key's id.
        kid: String,
        /// When it begins to sign, Unix seconds.
        signs_from: i64,
    },
    /// A key already waits to sign; no second one is made.
    AlreadyPending {
        /// The waiting key's id.
        kid: String,
        /// When it begins to sign, Unix seconds.
        signs_from: i64,
    },
    /// `HS256`: the key is `JWT_SECRET`, changed through the environment.
    ConfiguredSecret,
}

/// What `latchkey keys revoke` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyRevocation {
    /// The key no longer signs, verifies or is published.
    Revoked {
        /// The key this process would sign with now; `None` when none can
        /// (the revoked key was signing): the next token an instance issues
        /// makes a fresh one, unless its `JWT_REFRESH_SECRET` derives a
        /// revoked key.
        signing: Option<String>,
    },
    /// No key has that id, or it was revoked already.
    Unknown,
    /// `HS256`: the key is `JWT_SECRET`, changed through the environment.
    ConfiguredSecret,
}

/// The keys of access tokens: fixed secrets, or the ring in the store.
pub(crate) enum AccessKeys {
    Fixed(Arc<KeySet>),
    Ring(Ring),
}

impl AccessKeys {
    pub(crate) fn new(tokens: &TokenSettings) -> Result<Self, ConfigError> {
        if !tokens.algorithm.is_asymmetric() {
            let keys = KeySet::hmac(
                tokens.access_secret()?,
                tokens.previous_access_secret.as_ref(),
            );
            return Ok(Self::Fixed(Arc::new(keys)));
        }
        let roots = std::iter::once(tokens.refresh_secret()?.clone())
            .chain(tokens.previous_refresh_secret.clone())
            .collect();
        let max_age = seconds(tokens.jwks_max_age);
        Ok(Self::Ring(Ring {
            algorithm: tokens.algorithm,
            roots,
            max_age,
            retired_for: seconds(tokens.access_ttl) + max_age,
            interval: tokens.key_rotation_interval.map(seconds),
            reload_every: reload_every(max_age),
            loaded: RwLock::new(None),
            reloading: tokio::sync::Mutex::new(()),
        }))
    }
}

/// The asymmetric keys in the store, as last loaded.
pub(crate) struct Ring {
    algorithm: AccessAlgorithm,
    /// `JWT_REFRESH_SECRET`, then `JWT_REFRESH_SECRET_PREVIOUS`.
    roots: Vec<Secret>,
    /// `JWKS_MAX_AGE`, seconds.
    max_age: i64,
    /// How long a retired key stays published: an access token's lifetime
    /// plus `JWKS_MAX_AGE`.
    retired_for: i64,
    /// `KEY_ROTATION_INTERVAL`, seconds.
    interval: Option<i64>,
    /// How long an instance goes on with the keys it loaded.
    reload_every: i64,
    loaded: RwLock<Option<Loaded>>,
    /// One reload at a time; the others wait for its result.
    reloading: tokio::sync::Mutex<()>,
}

/// How long an instance signs and verifies with the keys it loaded before it
/// asks the store again: `JWKS_MAX_AGE`, but at least a second (the store is
/// not asked on every request) and at most a minute (a rotation by another
/// instance is seen soon).
pub(crate) fn reload_every(max_age: i64) -> i64 {
    max_age.clamp(1, 60)
}

struct Loaded {
    at: i64,
    keys: Arc<KeySet>,
    stored: Vec<StoredKey>,
}

impl Auth {
    /// The access-token keys at this moment, reloading the ring from the
    /// store when it is due (see the module's comment).
    pub(crate) async fn access_keys(&self) -> Result<Arc<KeySet>, ApiError> {
        match &self.inner.access_keys {
            AccessKeys::Fixed(keys) => Ok(keys.clone()),
            AccessKeys::Ring(ring) => ring.current(self.store(), self.now()).await,
        }
    }

    /// Starts a rotation (`latchkey keys rotate`): a new key is published
    /// now and signs once every instance and every verifier's cache has it
    /// (`JWKS_MAX_AGE` plus the reload period, at most a minute, later); the key it replaces stays
    /// published until the tokens it signed have expired. If a key is
    /// already waiting to sign, it is the answer and no other is made.
    pub async fn rotate_keys(&self) -> Result<KeyRotation, ApiError> {
        let AccessKeys::Ring(ring) = &self.inner.access_keys else {
            return Ok(KeyRotation::ConfiguredSecret);
        };
        let _one_at_a_time = ring.reloading.lock().await;
        let now = self.now();
        let store = self.store();
        let stored = store.signing_keys(ring.algorithm.name()).await?;
        let rotation = match stored.last() {
            Some(last) if last.signs_from > now => KeyRotation::AlreadyPending {
                kid: last.kid.clone(),
                signs_from: last.signs_from,
            },
            _ => {
                let signs_from = if stored.is_empty() {
                    now
                } else {
                    now + ring.lead()
                };
                match ring.add(store, &stored, now, signs_from).await? {
                    Some(kid) => KeyRotation::Added { kid, signs_from },
                    // Another instance added one this very moment.
                    None => {
                        let stored = store.signing_keys(ring.algorithm.name()).await?;
                        let last = stored.last().ok_or(ApiError::Unavailable)?;
                        KeyRotation::AlreadyPending {
                            kid: last.kid.clone(),
                            signs_from: last.signs_from,
                        }
                    }
                }
            }
        };
        ring.reload(store, now).await?;
        Ok(rotation)
    }

    /// Withdraws the key `kid` at once (`latchkey keys revoke`, README,
    /// "After a leak"): tokens naming it stop verifying here and it leaves
    /// the JWKS. Other instances follow at their next reload (at once on
    /// `SIGHUP`); if it was signing, the next token issued makes a fresh key.
    pub async fn revoke_key(&self, kid: &str) -> Result<KeyRevocation, ApiError> {
        let AccessKeys::Ring(ring) = &self.inner.access_keys else {
            return Ok(KeyRevocation::ConfiguredSecret);
        };
        let _one_at_a_time = ring.reloading.lock().await;
        let now = self.now();
        if !self.store().revoke_signing_key(kid, now).await? {
            return Ok(KeyRevocation::Unknown);
        }
        tracing::warn!(kid = %kid, "signing key revoked");
        let keys = ring.reload(self.store(), now).await?;
        Ok(KeyRevocation::Revoked {
            signing: keys.signer(now).map(|(kid, _)| kid.to_owned()),
        })
    }

    /// Reloads the access-token keys from the store now, rather than at the
    /// next due reload (on `SIGHUP`, after a revocation elsewhere).
    pub(crate) async fn reload_keys(&self) -> Result<(), ApiError> {
        if let AccessKeys::Ring(ring) = &self.inner.access_keys {
            let _one_at_a_time = ring.reloading.lock().await;
            ring.reload(self.store(), self.now()).await?;
        }
        Ok(())
    }

    /// The access-token keys, once they hold a key that signs at `now`:
    /// taken before a session is created or rotated, so that no commit is
    /// left without the token it was for. When none can sign under this
    /// instance's secrets, the keys are reloaded (another instance may have
    /// made one), and failing that a fresh key is made that signs at once
    /// (see the module's comment). Only here, where a token is about to be
    /// issued: the CLI, with whatever secrets it was given, never makes one.
    pub(crate) async fn signing_access_keys(&self, now: i64) -> Result<Arc<KeySet>, ApiError> {
        let keys = self.access_keys().await?;
        if keys.signer(now).is_some() {
            return Ok(keys);
        }
        let AccessKeys::Ring(ring) = &self.inner.access_keys else {
            return Err(ApiError::Unavailable);
        };
        let _one_at_a_time = ring.reloading.lock().await;
        let keys = ring.reload(self.store(), now).await?;
        if keys.signer(now).is_some() {
            return Ok(keys);
        }
        tracing::warn!(
            "no signing key can sign under JWT_REFRESH_SECRET (it changed without \
             JWT_REFRESH_SECRET_PREVIOUS, or the signing key was revoked): a new key signs at once"
        );
        let stored = ring.stored();
        if let Err(e) = ring.add(self.store(), &stored, now, now).await {
            let cause = format!("{:#}", anyhow::Error::from(e));
            tracing::error!(error = cause, "no signing key: tokens cannot be issued");
            return Err(ApiError::Unavailable);
        }
        let keys = ring.reload(self.store(), now).await?;
        keys.signer(now)
            .map(|_| keys.clone())
            .ok_or(ApiError::Unavailable)
    }

    /// Every access-token key and where it is in its life now (`latchkey
    /// keys list`), oldest first.
    pub async fn signing_keys(&self) -> Result<Vec<KeyInfo>, ApiError> {
        let now = self.now();
        let AccessKeys::Ring(ring) = &self.inner.access_keys else {
            let keys = self.access_keys().await?;
            let n = keys.keys().len();
            return Ok(keys
                .keys()
                .iter()
                .enumerate()
                .map(|(i, k)| KeyInfo {
                    kid: k.kid.clone(),
                    algorithm: AccessAlgorithm::Hs256.name(),
                    state: if i + 1 == n {
                        KeyState::Signing
                    } else {
                        KeyState::VerifyOnly
                    },
                    created_at: None,
                    signs_from: None,
                    retires_at: None,
                    removed_at: None,
                    can_sign: k.encoding.is_some(),
                })
                .collect());
        };
        ring.reload(self.store(), now).await?;
        let keys = ring.current(self.store(), now).await?;
        let stored = ring.stored();
        Ok(stored
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let retires_at = stored.get(i + 1).map(|next| next.signs_from);
                let removed_at = retires_at.map(|at| at + ring.retired_for);
                let state = if s.revoked_at.is_some() {
                    KeyState::Revoked
                } else if removed_at.is_some_and(|at| at <= now) {
                    KeyState::Removed
                } else if retires_at.is_some_and(|at| at <= now) {
                    KeyState::Retired
                } else if s.signs_from <= now {
                    KeyState::Signing
                } else {
                    KeyState::Published
                };
                KeyInfo {
                    kid: s.kid.clone(),
                    algorithm: ring.algorithm.name(),
                    state,
                    created_at: Some(s.created_at),
                    signs_from: Some(s.signs_from),
                    retires_at,
                    removed_at,
                    can_sign: keys
                        .keys()
                        .iter()
                        .any(|k| k.kid == s.kid && k.encoding.is_some()),
                }
            })
            .collect())
    }

    /// The public keys a verifier may meet now: the one signing, one
    /// waiting to, and retired ones whose tokens may still be unexpired.
    /// Empty with `HS256`, whose key is a secret.
    pub async fn jwks(&self) -> Result<Vec<PublicJwk>, ApiError> {
        let now = self.now();
        let keys = self.access_keys().await?;
        Ok(keys
            .keys()
            .iter()
            .filter(|k| now < k.verifies_until)
            .filter_map(|k| k.public.clone())
            .collect())
    }

    /// Deletes keys no verifier can meet any more; housekeeping.
    pub(crate) async fn sweep_keys(&self) -> Result<u64, StoreError> {
        let AccessKeys::Ring(ring) = &self.inner.access_keys else {
            return Ok(0);
        };
        let now = self.now();
        let algorithm = ring.algorithm.name();
        let stored = self.store().signing_keys(algorithm).await?;
        // The first key still published: its successor (if any) has not
        // been signing for `retired_for` yet.
        let first_kept = stored
            .windows(2)
            .find(|pair| now < pair[1].signs_from + ring.retired_for)
            .map_or(stored.last(), |pair| Some(&pair[0]));
        match first_kept {
            Some(key) => {
                self.store()
                    .delete_signing_keys_before(algorithm, key.seq)
                    .await
            }
            None => Ok(0),
        }
    }
}

impl Ring {
    /// The keys as loaded, reloading first when `reload_every` has passed
    /// since the last load (or the clock went back). One request reloads;
    /// the others wait for it only when the keys they have could be missing
    /// one that signs.
    async fn current(&self, store: &dyn Store, now: i64) -> Result<Arc<KeySet>, ApiError> {
        if let Some(keys) = self.fresh(now, self.reload_every) {
            return Ok(keys);
        }
        let _one_at_a_time = match self.reloading.try_lock() {
            Ok(guard) => guard,
            Err(_) => match self.fresh(now, self.lead()) {
                // While another request reloads, the others go on with the
                // keys known: a key added since they were loaded cannot sign
                // before `lead` has passed since then. So a slow store holds
                // up one request per period, not all of them.
                Some(keys) => return Ok(keys),
                None => self.reloading.lock().await,
            },
        };
        if let Some(keys) = self.fresh(now, self.reload_every) {
            return Ok(keys);
        }
        if let Some(signs_from) = self.due(now) {
            let stored = self.stored();
            if let Err(e) = self.add(store, &stored, now, signs_from).await {
                tracing::error!(error = %e, "could not add the next signing key");
            }
        }
        match self.reload(store, now).await {
            Ok(keys) => Ok(keys),
            Err(e) => {
                // Tokens keep being signed and verified with the keys known,
                // and the store is asked again after `reload_every`, not on
                // every request while it is down.
                let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
                match loaded.as_mut() {
                    Some(stale) => {
                        if matches!(e, ApiError::Unavailable) {
                            // The store logs an outage once, when it begins.
                            tracing::debug!("could not reload the signing keys");
                        } else {
                            tracing::warn!(error = %e, "could not reload the signing keys");
                        }
                        stale.at = now;
                        Ok(stale.keys.clone())
                    }
                    None => Err(e),
                }
            }
        }
    }

    /// The keys, if loaded less than `within` ago.
    fn fresh(&self, now: i64, within: i64) -> Option<Arc<KeySet>> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let loaded = loaded.as_ref()?;
        (loaded.at <= now && now < loaded.at + within).then(|| loaded.keys.clone())
    }

    fn stored(&self) -> Vec<StoredKey> {
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        loaded
            .as_ref()
            .map(|l| l.stored.clone())
            .unwrap_or_default()
    }

    /// When the next key should sign, if it is time to make it: the
    /// interval of the key signing now ends within [`Ring::lead`] and none
    /// is waiting. (With no key yet, `reload` makes the first, which signs
    /// at once: no verifier can have cached a set it is missing from.)
    fn due(&self, now: i64) -> Option<i64> {
        let stored = self.stored();
        let last = stored.last()?;
        let interval = self.interval?;
        let ends = last.signs_from + interval;
        (last.signs_from <= now && now >= ends - self.lead()).then(|| ends.max(now + self.lead()))
    }

    /// How long after its creation a new key may sign: every instance has
    /// reloaded and published it, and then every verifier's cache has
    /// expired once.
    fn lead(&self) -> i64 {
        self.reload_every + self.max_age
    }

    /// Loads the keys from the store (making the first one if there is
    /// none) and keeps them as the current set.
    async fn reload(&self, store: &dyn Store, now: i64) -> Result<Arc<KeySet>, ApiError> {
        let algorithm = self.algorithm.name();
        let mut stored = store.signing_keys(algorithm).await?;
        if stored.is_empty() {
            self.add(store, &stored, now, now).await?;
            stored = store.signing_keys(algorithm).await?;
        }
        let keys = Arc::new(self.key_set(&stored));
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Some(Loaded {
            at: now,
            keys: keys.clone(),
            stored,
        });
        Ok(keys)
    }

    /// Makes and stores a key that signs from `signs_from`, next after
    /// `stored`. `None` when another instance stored one first. Refused when
    /// `JWT_REFRESH_SECRET` derives a revoked key: it has leaked, and a key
    /// derived from it would be the thief's too.
    async fn add(
        &self,
        store: &dyn Store,
        stored: &[StoredKey],
        now: i64,
        signs_from: i64,
    ) -> Result<Option<String>, ApiError> {
        let root = self.roots.first().ok_or(ApiError::Unavailable)?;
        if let Some(revoked) = stored.iter().find(|s| {
            s.revoked_at.is_some()
                && URL_SAFE_NO_PAD.decode(&s.public_key).is_ok_and(|public| {
                    derive(root, self.algorithm, &s.kid).is_some_and(|d| d.public == public)
                })
        }) {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "JWT_REFRESH_SECRET derives the revoked key {}: it has leaked, so no new key is \
                 derived from it; set a new JWT_REFRESH_SECRET (README, \"After a leak\")",
                revoked.kid
            )));
        }
        // A P-256 scalar outside the group (odds about 2^-32) is no key; a
        // new id derives another.
        let (kid, public) = std::iter::repeat_with(|| random::token(12))
            .take(8)
            .find_map(|kid| Some((kid.clone(), derive(root, self.algorithm, &kid)?.public)))
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("could not derive a signing key")))?;
        let key = StoredKey {
            algorithm: self.algorithm.name().to_owned(),
            seq: stored.last().map_or(1, |last| last.seq + 1),
            kid: kid.clone(),
            public_key: URL_SAFE_NO_PAD.encode(&public),
            created_at: now,
            signs_from,
            revoked_at: None,
        };
        if store.add_signing_key(&key).await? {
            tracing::info!(kid = %kid, signs_from, "signing key added");
            Ok(Some(kid))
        } else {
            Ok(None)
        }
    }

    /// The keys of `stored`, with the private half of each this instance can
    /// derive and how long each is accepted.
    fn key_set(&self, stored: &[StoredKey]) -> KeySet {
        let keys = stored
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let public = URL_SAFE_NO_PAD.decode(&s.public_key).ok()?;
                let jwk = public_jwk(self.algorithm, &s.kid, &public)?;
                let decoding = match &jwk.y {
                    Some(y) => DecodingKey::from_ec_components(&jwk.x, y).ok()?,
                    None => DecodingKey::from_ed_components(&jwk.x).ok()?,
                };
                let revoked = s.revoked_at.is_some();
                // Only a root that derives the stored public key signs with it.
                let encoding = self.roots.iter().filter(|_| !revoked).find_map(|root| {
                    let derived = derive(root, self.algorithm, &s.kid)?;
                    (derived.public == public).then_some(derived.encoding)
                });
                let verifies_until = match stored.get(i + 1) {
                    _ if revoked => i64::MIN,
                    Some(next) => next.signs_from + self.retired_for,
                    None => i64::MAX,
                };
                Some(TokenKey {
                    kid: s.kid.clone(),
                    signs_from: s.signs_from,
                    verifies_until,
                    encoding,
                    decoding,
                    public: (!revoked).then_some(jwk),
                    revoked,
                })
            })
            .collect();
        KeySet::published(self.algorithm, keys, self.retired_for - self.max_age)
    }
}

struct Derived {
    encoding: EncodingKey,
    /// Ed25519's 32 bytes, or P-256's SEC1 uncompressed point.
    public: Vec<u8>,
}

/// The private key `kid` names, derived from `root`: HMAC-SHA256 of the
/// algorithm and the id under the secret is the Ed25519 seed or the P-256
/// scalar. The label keeps it apart from every other use of the secret (a
/// JWT's signing input is base64url, which has no NUL).
fn derive(root: &Secret, algorithm: AccessAlgorithm, kid: &str) -> Option<Derived> {
    let mut mac = Hmac::<Sha256>::new_from_slice(root.expose()).ok()?;
    mac.update(b"latchkey signing key\0");
    mac.update(algorithm.name().as_bytes());
    mac.update(b"\0");
    mac.update(kid.as_bytes());
    let seed: [u8; 32] = mac.finalize().into_bytes().into();
    match algorithm {
        AccessAlgorithm::EdDsa => {
            let key = ed25519_dalek::SigningKey::from_bytes(&seed);
            let der = key.to_pkcs8_der().ok()?;
            Some(Derived {
                encoding: EncodingKey::from_ed_der(der.as_bytes()),
                public: key.verifying_key().to_bytes().to_vec(),
            })
        }
        AccessAlgorithm::Es256 => {
            let key = p256::SecretKey::from_bytes(&seed.into()).ok()?;
            let der = p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).ok()?;
            Some(Derived {
                encoding: EncodingKey::from_ec_der(der.as_bytes()),
                public: key.public_key().to_encoded_point(false).as_bytes().to_vec(),
            })
        }
        AccessAlgorithm::Hs256 => None,
    }
}

/// The JWK of a stored public key; `None` if the bytes are not one.
fn public_jwk(algorithm: AccessAlgorithm, kid: &str, public: &[u8]) -> Option<PublicJwk> {
    let (kty, crv, x, y) = match algorithm {
        AccessAlgorithm::EdDsa if public.len() == 32 => ("OKP", "Ed25519", public, None),
        // SEC1 uncompressed: 0x04, then x and y, 32 bytes each.
        AccessAlgorithm::Es256 if public.len() == 65 && public[0] == 4 => {
            ("EC", "P-256", &public[1..33], Some(&public[33..]))
        }
        _ => return None,
    };
    Some(PublicJwk {
        kty: kty.into(),
        crv: crv.into(),
        x: URL_SAFE_NO_PAD.encode(x),
        y: y.map(|y| URL_SAFE_NO_PAD.encode(y)),
        kid: kid.to_owned(),
        alg: algorithm.name().into(),
        use_: "sig".into(),
    })
}

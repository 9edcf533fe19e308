//! Key material as tokens are signed and checked with it: one key a token
//! may name ([`TokenKey`]), the keys of one kind of token at one moment
//! ([`KeySet`]), and what verifiers are shown of a key ([`PublicJwk`]).
//! Below both `tokens.rs` (which signs and checks with a set) and `ring.rs`
//! (which builds the asymmetric sets from the store).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Serialize;
use sha2::Sha256;

use crate::config::{AccessAlgorithm, Secret};

/// A public key as verifiers see it in the JWKS (RFC 7517 §4, RFC 8037 §2
/// for Ed25519, RFC 7518 §6.2 for P-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PublicJwk {
    /// `OKP` (Ed25519) or `EC` (P-256).
    pub kty: String,
    /// `Ed25519` or `P-256`.
    pub crv: String,
    /// The public key (Ed25519), or its x coordinate (P-256), base64url.
    pub x: String,
    /// P-256's y coordinate, base64url.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The id tokens signed by this key carry in their `kid` header.
    pub kid: String,
    /// `EdDSA` or `ES256`.
    pub alg: String,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub use_: String,
}

/// One key a token may name in its `kid`.
pub struct TokenKey {
    /// The key id.
    pub(crate) kid: String,
    /// From when it signs (Unix seconds); `i64::MIN` for a configured secret.
    pub(crate) signs_from: i64,
    /// Until when tokens naming it are accepted (Unix seconds).
    pub(crate) verifies_until: i64,
    /// The private half; `None` when this instance cannot sign with it (a
    /// `*_PREVIOUS` secret, a key derived from a secret it does not hold).
    pub(crate) encoding: Option<EncodingKey>,
    pub(crate) decoding: DecodingKey,
    /// What verifiers are shown; `None` for a secret, which is never shown.
    pub(crate) public: Option<PublicJwk>,
    /// Withdrawn by `latchkey keys revoke`: it neither signs nor verifies,
    /// and no key older than it signs again.
    pub(crate) revoked: bool,
}

/// The keys of one kind of token at one moment, oldest first.
pub struct KeySet {
    pub(super) algorithm: Algorithm,
    keys: Vec<TokenKey>,
    /// A token without `kid` is tried against the newest key: tokens issued
    /// before latchkey named its keys stay valid across the upgrade.
    kidless_allowed: bool,
    /// How long a key must go on verifying for it to sign: a token's life.
    sign_margin: i64,
}

impl KeySet {
    /// `current` signs, `previous` (when set) still verifies: the HMAC keys
    /// of one secret and its predecessor.
    pub(crate) fn hmac(current: &Secret, previous: Option<&Secret>) -> Self {
        let key = |secret: &Secret, signs: bool| TokenKey {
            kid: hmac_kid(secret),
            signs_from: i64::MIN,
            verifies_until: i64::MAX,
            encoding: signs.then(|| EncodingKey::from_secret(secret.expose())),
            decoding: DecodingKey::from_secret(secret.expose()),
            public: None,
            revoked: false,
        };
        let mut keys: Vec<TokenKey> = previous.map(|p| key(p, false)).into_iter().collect();
        keys.push(key(current, true));
        Self {
            algorithm: Algorithm::HS256,
            keys,
            kidless_allowed: true,
            sign_margin: 0,
        }
    }

    /// Published keys of an asymmetric algorithm, oldest first; a key signs
    /// only while it will verify for `token_life` seconds more.
    pub(crate) fn published(
        algorithm: AccessAlgorithm,
        keys: Vec<TokenKey>,
        token_life: i64,
    ) -> Self {
        Self {
            algorithm: jws_algorithm(algorithm),
            keys,
            kidless_allowed: false,
            sign_margin: token_life,
        }
    }

    /// The key that signs at `now`: the newest that has begun to, falling
    /// back to an older one when this instance cannot derive it (another
    /// instance already signs with a newer secret), but never past a revoked
    /// key, and never to one that stops verifying before its tokens expire.
    /// Before the first key's time it is the first key: a request that read
    /// the clock just before the first key was made still gets a token.
    pub(crate) fn signer(&self, now: i64) -> Option<(&str, &EncodingKey)> {
        let in_use = self
            .keys
            .iter()
            .rposition(|k| k.signs_from <= now)
            .unwrap_or(0);
        self.keys
            .get(..=in_use)?
            .iter()
            .rev()
            .take_while(|k| !k.revoked)
            .filter(|k| k.verifies_until.saturating_sub(self.sign_margin) >= now)
            .find_map(|k| Some((k.kid.as_str(), k.encoding.as_ref()?)))
    }

    /// The key named `kid` if tokens naming it are accepted at `now`.
    pub(super) fn verifier(&self, kid: Option<&str>, now: i64) -> Option<&DecodingKey> {
        let key = match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid)?,
            None if self.kidless_allowed => self.keys.last()?,
            None => return None,
        };
        (now < key.verifies_until).then_some(&key.decoding)
    }

    /// Every key, oldest first.
    pub(crate) fn keys(&self) -> &[TokenKey] {
        &self.keys
    }
}

/// The `kid` of an HMAC secret: a digest that names it without revealing it.
fn hmac_kid(secret: &Secret) -> String {
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose()).expect("HMAC takes any key");
    mac.update(b"latchkey key id");
    let digest = mac.finalize().into_bytes();
    format!("hs-{}", URL_SAFE_NO_PAD.encode(&digest[..12]))
}

pub(crate) fn jws_algorithm(algorithm: AccessAlgorithm) -> Algorithm {
    match algorithm {
        AccessAlgorithm::Hs256 => Algorithm::HS256,
        AccessAlgorithm::EdDsa => Algorithm::EdDSA,
        AccessAlgorithm::Es256 => Algorithm::ES256,
    }
}

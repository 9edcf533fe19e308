//! Tokens, sessions and the secrets that sign them (README, "Tokens",
//! "Signing keys" and "Rotation rules").

use std::time::Duration;

use super::{ConfigError, Lookup, Secret, invalid};

/// Shortest HMAC key accepted, in bytes (HS256 wants at least its output size).
pub(crate) const MIN_SECRET_BYTES: usize = 32;

/// Longest `REFRESH_REUSE_GRACE` accepted.
pub(crate) const MAX_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(60);

/// The JWS algorithm of access tokens (`ACCESS_TOKEN_ALGORITHM`; README,
/// "Signing keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessAlgorithm {
    /// `HS256`, the default: HMAC with `JWT_SECRET`, which every verifier
    /// must hold.
    Hs256,
    /// `EdDSA` (Ed25519): verifiers need only the published public keys.
    EdDsa,
    /// `ES256` (ECDSA on P-256): as `EdDSA`, for verifiers without Ed25519.
    Es256,
}

impl AccessAlgorithm {
    /// The JWS name (RFC 7518 §3.1, RFC 8037 §3.1), as in `alg` headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// Signed with a private key whose public half is published.
    pub fn is_asymmetric(self) -> bool {
        self != Self::Hs256
    }
}

/// Tokens and sessions (README, "Tokens" and "Rotation rules").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenSettings {
    /// How access tokens are signed (`ACCESS_TOKEN_ALGORITHM`).
    pub algorithm: AccessAlgorithm,
    /// The HMAC key of `HS256` access tokens (`JWT_SECRET`). `None` only in
    /// development, until [`Config::with_development_secrets`](super::Config::with_development_secrets) supplies it,
    /// or with an asymmetric algorithm, which does not use it.
    pub access_secret: Option<Secret>,
    /// The HMAC key of refresh tokens and device cookies, and the root the
    /// private signing keys are derived from (`JWT_REFRESH_SECRET`); `None`
    /// only in development, as `access_secret`.
    pub refresh_secret: Option<Secret>,
    /// A former `JWT_SECRET`, still accepted on `HS256` access tokens
    /// (`JWT_SECRET_PREVIOUS`).
    pub previous_access_secret: Option<Secret>,
    /// A former `JWT_REFRESH_SECRET`, still accepted on refresh tokens and
    /// device cookies and still deriving the signing keys it made
    /// (`JWT_REFRESH_SECRET_PREVIOUS`).
    pub previous_refresh_secret: Option<Secret>,
    /// How long verifiers may cache the published keys; a new key is
    /// published at least this long before it signs (`JWKS_MAX_AGE`).
    pub jwks_max_age: Duration,
    /// How long a signing key signs before the next one takes over; `None`
    /// rotates only on `latchkey keys rotate` (`KEY_ROTATION_INTERVAL`).
    pub key_rotation_interval: Option<Duration>,
    /// True when the secrets were generated for development rather than configured.
    pub generated_secrets: bool,
    /// Access-token lifetime (`JWT_EXPIRATION`).
    pub access_ttl: Duration,
    /// Refresh-token lifetime: a session unused this long ends
    /// (`JWT_REFRESH_EXPIRATION`).
    pub refresh_ttl: Duration,
    /// The same for a session signed in without "Keep me signed in"
    /// (`SESSION_IDLE_TIMEOUT_NO_REMEMBER`), never longer than `refresh_ttl`.
    pub refresh_ttl_not_remembered: Duration,
    /// How recent a password check an action that asks for one accepts
    /// (`REAUTH_MAX_AGE`; README, "Step-up: a recent password").
    pub reauth_max_age: Duration,
    /// Longest life of a session, however much it is used (`SESSION_MAX_LIFETIME`).
    pub session_lifetime: Duration,
    /// How long the previous refresh token is still honoured (`REFRESH_REUSE_GRACE`).
    pub reuse_grace: Duration,
    /// Refreshes one session may make a minute, all at once if need be, on
    /// one instance (`MAX_REFRESHES_PER_MINUTE`; README, "Rotation rules").
    pub max_refreshes_per_minute: i64,
    /// `iss` of every token (`JWT_ISSUER`).
    pub issuer: String,
    /// `aud` of access tokens (`JWT_AUDIENCE`).
    pub audience: String,
}

pub(super) fn parse(
    get: &Lookup<impl Fn(&str) -> Option<String>>,
    production: bool,
    public_origin: Option<&str>,
) -> Result<TokenSettings, ConfigError> {
    let access_ttl = get.seconds("JWT_EXPIRATION", 1)?;
    let refresh_ttl = get.seconds("JWT_REFRESH_EXPIRATION", 1)?;
    let session_lifetime = get.seconds("SESSION_MAX_LIFETIME", 1)?;
    // "Keep me signed in" unticked ends the session sooner, never later.
    let refresh_ttl_not_remembered = get
        .seconds("SESSION_IDLE_TIMEOUT_NO_REMEMBER", 1)?
        .min(refresh_ttl);
    let reauth_max_age = get.seconds("REAUTH_MAX_AGE", 1)?;
    let reuse_grace = get.seconds("REFRESH_REUSE_GRACE", 0)?;
    // The grace window covers two tabs refreshing at once or a response
    // lost on the way: seconds. For as long as it lasts a copied token
    // still works, so a long one turns reuse detection off (README,
    // "Rotation rules").
    if reuse_grace > MAX_REFRESH_REUSE_GRACE {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            format!(
                "must be at most {} seconds (a longer grace lets a copied refresh token \
                 through unnoticed)",
                MAX_REFRESH_REUSE_GRACE.as_secs()
            ),
        ));
    }
    if reuse_grace >= refresh_ttl {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            "must be shorter than JWT_REFRESH_EXPIRATION",
        ));
    }
    if reuse_grace >= refresh_ttl_not_remembered {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            "must be shorter than SESSION_IDLE_TIMEOUT_NO_REMEMBER",
        ));
    }
    let algorithm = match get.get("ACCESS_TOKEN_ALGORITHM").as_deref() {
        None | Some("HS256") => AccessAlgorithm::Hs256,
        Some("EdDSA") => AccessAlgorithm::EdDsa,
        Some("ES256") => AccessAlgorithm::Es256,
        Some(_) => {
            return Err(invalid(
                "ACCESS_TOKEN_ALGORITHM",
                "must be `HS256`, `EdDSA` or `ES256`",
            ));
        }
    };
    let access_secret = get.get("JWT_SECRET").map(Secret);
    let refresh_secret = get.get("JWT_REFRESH_SECRET").map(Secret);
    if production {
        let mut required = vec![("JWT_REFRESH_SECRET", &refresh_secret)];
        if !algorithm.is_asymmetric() {
            required.insert(0, ("JWT_SECRET", &access_secret));
        }
        for (name, secret) in required {
            if secret.is_none() {
                return Err(invalid(name, "is required in production"));
            }
        }
    }
    let jwks_max_age = get.seconds("JWKS_MAX_AGE", 0)?;
    let key_rotation_interval =
        Some(get.seconds("KEY_ROTATION_INTERVAL", 0)?).filter(|interval| !interval.is_zero());
    // A new key waits JWKS_MAX_AGE and up to a minute more before it signs
    // (README, "Signing keys"): a shorter interval would make the next key
    // before the last one ever signed.
    if key_rotation_interval
        .is_some_and(|interval| interval <= jwks_max_age + Duration::from_secs(60))
    {
        return Err(invalid(
            "KEY_ROTATION_INTERVAL",
            "must be longer than JWKS_MAX_AGE plus a minute (or 0, to rotate only by hand)",
        ));
    }
    // Verifiers discover keys from the issuer (OpenID Connect Discovery
    // 1.0 §4), so it is this service's URL when there is one.
    let issuer = get
        .given("JWT_ISSUER")
        .or_else(|| public_origin.map(str::to_owned))
        .unwrap_or_else(|| "latchkey".into());
    if production && algorithm.is_asymmetric() && !issuer.starts_with("https://") {
        return Err(invalid(
            "JWT_ISSUER",
            "must be an https:// URL with ACCESS_TOKEN_ALGORITHM EdDSA or ES256 in production \
             (set it or PUBLIC_ORIGIN): verifiers find the keys from it",
        ));
    }
    let tokens = TokenSettings {
        algorithm,
        access_secret,
        refresh_secret,
        previous_access_secret: get.get("JWT_SECRET_PREVIOUS").map(Secret),
        previous_refresh_secret: get.get("JWT_REFRESH_SECRET_PREVIOUS").map(Secret),
        jwks_max_age,
        key_rotation_interval,
        generated_secrets: false,
        access_ttl,
        refresh_ttl,
        refresh_ttl_not_remembered,
        reauth_max_age,
        session_lifetime,
        reuse_grace,
        max_refreshes_per_minute: get.number("MAX_REFRESHES_PER_MINUTE", 1)?,
        issuer,
        audience: get.get("JWT_AUDIENCE").unwrap_or_default(),
    };
    tokens.check_secrets()?;
    Ok(tokens)
}

fn secret_set<'a>(
    secret: &'a Option<Secret>,
    name: &'static str,
) -> Result<&'a Secret, ConfigError> {
    secret.as_ref().ok_or_else(|| {
        invalid(
            name,
            "is not set (in development, Config::with_development_secrets supplies it)",
        )
    })
}

impl TokenSettings {
    /// Each secret set is long enough, and the two differ.
    pub(crate) fn check_secrets(&self) -> Result<(), ConfigError> {
        for (name, secret) in [
            ("JWT_SECRET", &self.access_secret),
            ("JWT_REFRESH_SECRET", &self.refresh_secret),
            ("JWT_SECRET_PREVIOUS", &self.previous_access_secret),
            ("JWT_REFRESH_SECRET_PREVIOUS", &self.previous_refresh_secret),
        ] {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().len() < MIN_SECRET_BYTES)
            {
                return Err(invalid(
                    name,
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
        }
        if self.access_secret.is_some() && self.access_secret == self.refresh_secret {
            return Err(invalid("JWT_REFRESH_SECRET", "must differ from JWT_SECRET"));
        }
        Ok(())
    }

    /// `JWT_REFRESH_SECRET`, or an error naming it when it is missing
    /// (development secrets not loaded).
    pub(crate) fn refresh_secret(&self) -> Result<&Secret, ConfigError> {
        secret_set(&self.refresh_secret, "JWT_REFRESH_SECRET")
    }

    /// `JWT_SECRET`, or an error naming it when it is missing.
    pub(crate) fn access_secret(&self) -> Result<&Secret, ConfigError> {
        secret_set(&self.access_secret, "JWT_SECRET")
    }
}

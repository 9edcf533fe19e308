//! Access and refresh tokens: JWTs with distinct keys, `typ` headers and
//! audiences, so neither can ever pass for the other. Refresh tokens and
//! device cookies are HS256 under `JWT_REFRESH_SECRET`; access tokens are
//! signed as `ACCESS_TOKEN_ALGORITHM` says, by the keys of a [`KeySet`]
//! (`ring.rs`). Every token names its key in `kid`.
//!
//! Expiry is checked against the injected clock rather than by jsonwebtoken,
//! so every time decision in latchkey comes from one place. jsonwebtoken
//! checks every signature; the few claims rules latchkey's own tokens need
//! are checked here, on the one parse of their claims (README, "Tokens").

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};

use super::key_set::{KeySet, jws_algorithm};
use crate::auth::ApiError;
use crate::clock::seconds;
use crate::config::{ConfigError, TokenSettings};
use crate::random;
use crate::store::{Session, User};

pub const ACCESS_TYP: &str = "at+jwt";
pub const REFRESH_TYP: &str = "latchkey-rt+jwt";
pub const DEVICE_TYP: &str = "latchkey-device+jwt";
/// How long a device cookie vouches for its browser: a year, renewed at
/// every successful login.
pub const DEVICE_LIFETIME: i64 = 365 * 86_400;

/// Claims of an access token (RFC 9068 names where they exist; README,
/// "Tokens").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    /// Issuer: `JWT_ISSUER`.
    pub iss: String,
    /// Audience: `JWT_AUDIENCE`.
    pub aud: String,
    /// The user id, as a string.
    pub sub: String,
    /// The user's name.
    pub username: String,
    /// The user's role.
    pub role: String,
    /// The session the token belongs to.
    pub sid: String,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// Expires at, Unix seconds.
    pub exp: i64,
    /// A unique id of this token.
    pub jti: String,
    /// When the password was last verified for this session, Unix seconds
    /// (RFC 9068 §2.2.1): its login or latest re-authentication, carried
    /// unchanged by rotation. A token issued before latchkey carried it
    /// reads as 0, long ago.
    #[serde(default)]
    pub auth_time: i64,
    /// How the user proved who they are for this session (RFC 8176):
    /// `["pwd"]` for a password. Carried unchanged by rotation; a token
    /// issued before latchkey carried it reads as none.
    #[serde(default)]
    pub amr: Vec<String>,
}

impl AccessClaims {
    /// The user id of `sub`; a token whose `sub` is not one is invalid.
    pub fn user_id(&self) -> Result<i64, ApiError> {
        self.sub.parse().map_err(|_| ApiError::InvalidToken)
    }

    /// Whether the session proved a second factor: its `amr` has a method
    /// beside the password (RFC 8176 §2: `otp`, and a key's `hwk` or `swk`).
    pub fn used_second_factor(&self) -> bool {
        crate::auth::second_factor::proves_second_factor(self.amr.iter().map(String::as_str))
    }
}

/// Claims of a refresh token: the session and its place in the rotation chain.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefreshClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    /// The chain position this token stands for.
    #[serde(rename = "gen")]
    pub generation: i64,
    pub iat: i64,
    pub exp: i64,
}

/// Claims of a device cookie: this browser once signed in to this account
/// (OWASP: "Slow down online guessing attacks with device cookies").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceClaims {
    pub iss: String,
    pub aud: String,
    /// The account, as a user id.
    pub sub: String,
    /// A random id: the device's own failure counter is keyed by it.
    pub did: String,
    pub iat: i64,
    pub exp: i64,
}

/// The checks of latchkey's tokens, and the keys of refresh tokens and
/// device cookies. Access tokens are signed and checked with the [`KeySet`]
/// the caller passes (`Auth::access_keys`): asymmetric keys change while
/// the service runs.
pub struct TokenKeys {
    refresh: KeySet,
    access_rules: Rules,
    refresh_rules: Rules,
    device_rules: Rules,
    issuer: String,
    access_audience: String,
    refresh_audience: String,
    device_audience: String,
    access_ttl: i64,
}

/// Why a token was refused. Callers answer all of them the same way; the
/// variant is for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed or wrongly signed token")]
    Invalid,
    #[error("token of the wrong type")]
    WrongType,
    #[error("expired token")]
    Expired,
}

impl TokenKeys {
    /// The checks of `tokens`; an error when the refresh secret is missing.
    pub fn new(tokens: &TokenSettings) -> Result<Self, ConfigError> {
        let refresh = KeySet::hmac(
            tokens.refresh_secret()?,
            tokens.previous_refresh_secret.as_ref(),
        );
        let issuer = tokens.issuer.clone();
        let access_audience = tokens.audience.clone();
        let refresh_audience = format!("{}:refresh", tokens.audience);
        // Signed with the refresh key; its own `typ` and audience keep it
        // from passing for a refresh token, and the reverse.
        let device_audience = format!("{}:device", tokens.audience);
        let access = jws_algorithm(tokens.algorithm);
        Ok(Self {
            refresh,
            access_rules: Rules::new(access, Some(&issuer), &access_audience),
            // Only latchkey reads its refresh tokens and device cookies, and
            // the refresh secret's signature is what makes them its own; so
            // a changed `JWT_ISSUER` does not end every session.
            refresh_rules: Rules::new(Algorithm::HS256, None, &refresh_audience),
            device_rules: Rules::new(Algorithm::HS256, None, &device_audience),
            issuer,
            access_audience,
            refresh_audience,
            device_audience,
            access_ttl: seconds(tokens.access_ttl),
        })
    }

    /// Access-token lifetime, in seconds (`JWT_EXPIRATION`).
    pub fn access_ttl(&self) -> i64 {
        self.access_ttl
    }

    /// A fresh access token for this user and session, signed by the key of
    /// `keys` in use at `now`.
    pub fn issue_access(
        &self,
        keys: &KeySet,
        user: &User,
        session: &Session,
        now: i64,
    ) -> anyhow::Result<String> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.access_audience.clone(),
            sub: user.id.to_string(),
            username: user.username.clone(),
            role: user.role.clone(),
            sid: session.id.clone(),
            iat: now,
            exp: now + self.access_ttl,
            jti: random::token(16),
            auth_time: session.auth_time,
            amr: session.amr.split_whitespace().map(str::to_owned).collect(),
        };
        sign(ACCESS_TYP, &claims, keys, now)
    }

    /// The refresh token for the session's current chain position. It is a
    /// pure function of the stored session and the refresh secret: signing
    /// it again gives the same token, which is how the grace path hands back
    /// the current cookie.
    pub fn issue_refresh(&self, session: &Session) -> anyhow::Result<String> {
        let claims = RefreshClaims {
            iss: self.issuer.clone(),
            aud: self.refresh_audience.clone(),
            sub: session.user_id.to_string(),
            sid: session.id.clone(),
            generation: session.generation,
            iat: session.rotated_at,
            exp: session.idle_expires_at,
        };
        sign(REFRESH_TYP, &claims, &self.refresh, session.rotated_at)
    }

    /// Checks signature (by a key of `keys` accepted at `now`), type,
    /// issuer and audience, and that the token has not expired at `now`
    /// (Unix seconds).
    pub fn verify_access(
        &self,
        keys: &KeySet,
        token: &str,
        now: i64,
    ) -> Result<AccessClaims, TokenError> {
        verify_unexpired(token, (ACCESS_TYP, keys, &self.access_rules), now)
    }

    /// Checks signature, type and audience. Expiry is left to the caller:
    /// an expired token still names the session to log out of.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        verify(
            token,
            (REFRESH_TYP, &self.refresh, &self.refresh_rules),
            // Secrets are accepted whatever the time.
            0,
        )
    }
}

impl TokenKeys {
    /// The device cookie's value for this account and device id.
    pub fn issue_device(&self, user_id: i64, device_id: &str, now: i64) -> anyhow::Result<String> {
        let claims = DeviceClaims {
            iss: self.issuer.clone(),
            aud: self.device_audience.clone(),
            sub: user_id.to_string(),
            did: device_id.to_owned(),
            iat: now,
            exp: now + DEVICE_LIFETIME,
        };
        sign(DEVICE_TYP, &claims, &self.refresh, now)
    }

    /// A genuine, unexpired device cookie's claims.
    pub fn verify_device(&self, token: &str, now: i64) -> Result<DeviceClaims, TokenError> {
        let v = (DEVICE_TYP, &self.refresh, &self.device_rules);
        verify_unexpired(token, v, now)
    }
}

/// The registered claims latchkey checks itself (RFC 7519 §4.1): every
/// one of its tokens has them, so a token without one does not parse.
trait Registered {
    fn iss(&self) -> &str;
    fn aud(&self) -> &str;
    /// Expires at, Unix seconds; checked against the injected clock.
    fn exp(&self) -> i64;
}

macro_rules! registered {
    ($($claims:ty),*) => {$(
        impl Registered for $claims {
            fn iss(&self) -> &str {
                &self.iss
            }
            fn aud(&self) -> &str {
                &self.aud
            }
            fn exp(&self) -> i64 {
                self.exp
            }
        }
    )*};
}
registered!(AccessClaims, RefreshClaims, DeviceClaims);

/// What a token is checked against: its `typ`, its keys, its claims' rules.
type Checks<'a> = (&'a str, &'a KeySet, &'a Rules);

/// The claims rules of one kind of token: the one algorithm it may be
/// signed with (RFC 8725 §3.1), its issuer when it is checked, its audience.
struct Rules {
    algorithm: Algorithm,
    issuer: Option<String>,
    audience: String,
}

impl Rules {
    fn new(algorithm: Algorithm, issuer: Option<&str>, audience: &str) -> Self {
        Self {
            algorithm,
            issuer: issuer.map(str::to_owned),
            audience: audience.to_owned(),
        }
    }
}

/// As [`verify`], and refused once `exp` is not in the future.
fn verify_unexpired<T: serde::de::DeserializeOwned + Registered>(
    token: &str,
    checks: Checks<'_>,
    now: i64,
) -> Result<T, TokenError> {
    let claims: T = verify(token, checks, now)?;
    if claims.exp() <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Signs `claims` as a token of type `typ` with the key of `keys` in use at
/// `now`, named in `kid`.
fn sign(typ: &str, claims: &impl Serialize, keys: &KeySet, now: i64) -> anyhow::Result<String> {
    let (kid, key) = keys
        .signer(now)
        .ok_or_else(|| anyhow::anyhow!("no signing key this instance can use"))?;
    let mut header = Header::new(keys.algorithm);
    header.typ = Some(typ.to_owned());
    header.kid = Some(kid.to_owned());
    Ok(jsonwebtoken::encode(&header, claims, key)?)
}

/// Checks a token against `checks`. Its header decides nothing but which of
/// latchkey's own keys to try: the algorithm must be the one configured
/// (RFC 8725 §3.1), and a header that offers a key or a place to fetch one
/// (`jwk`, `jku`, `x5u`, `x5c`) is refused outright (RFC 8725 §3.10), as is
/// one with extensions latchkey cannot honour (`crit`, RFC 7515 §4.1.11).
///
/// Each part is decoded once: jsonwebtoken's `decode` reads the header twice
/// and the claims twice (once for its own rules), which was a fifth of the
/// CPU of a `/protected` answer. The signature is still jsonwebtoken's to
/// check, over the header and claims exactly as sent (RFC 7515 §5.2).
fn verify<T: serde::de::DeserializeOwned + Registered>(
    token: &str,
    (typ, keys, rules): Checks<'_>,
    now: i64,
) -> Result<T, TokenError> {
    // header.claims.signature, split as jsonwebtoken splits it: a token of
    // more parts leaves a `.` in the header, which then fails to decode.
    let (message, signature) = token.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let (_, claims) = message.rsplit_once('.').ok_or(TokenError::Invalid)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
    let offers_key = header.jwk.is_some()
        || header.jku.is_some()
        || header.x5u.is_some()
        || header.x5c.is_some()
        || header.crit.is_some();
    if header.alg != rules.algorithm || header.alg != keys.algorithm || offers_key {
        return Err(TokenError::Invalid);
    }
    let key = keys
        .verifier(header.kid.as_deref(), now)
        .ok_or(TokenError::Invalid)?;
    let genuine = jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, rules.algorithm)
        .map_err(|_| TokenError::Invalid)?;
    if !genuine {
        return Err(TokenError::Invalid);
    }
    let claims = URL_SAFE_NO_PAD
        .decode(claims)
        .map_err(|_| TokenError::Invalid)?;
    let claims: T = serde_json::from_slice(&claims).map_err(|_| TokenError::Invalid)?;
    let issuer_ok = rules.issuer.as_deref().is_none_or(|i| claims.iss() == i);
    if !issuer_ok || claims.aud() != rules.audience {
        return Err(TokenError::Invalid);
    }
    // `typ` is compared case-insensitively (RFC 7515 §4.1.9), but exactly otherwise.
    match header.typ {
        Some(t) if t.eq_ignore_ascii_case(typ) => Ok(claims),
        _ => Err(TokenError::WrongType),
    }
}

//! Access and refresh tokens: HS256 JWTs with distinct keys, `typ` headers and
//! audiences, so neither can ever pass for the other. Keys and validation
//! rules are built once at start.
//!
//! Expiry is checked against the injected clock rather than by jsonwebtoken,
//! so every time decision in latchkey comes from one place.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

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
const ALGORITHM: Algorithm = Algorithm::HS256;

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
}

impl AccessClaims {
    /// The user id of `sub`; a token whose `sub` is not one is invalid.
    pub fn user_id(&self) -> Result<i64, ApiError> {
        self.sub.parse().map_err(|_| ApiError::InvalidToken)
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

/// The keys and checks of latchkey's tokens: signs and verifies access
/// tokens, refresh tokens and device cookies.
pub struct TokenKeys {
    access_encoding: EncodingKey,
    access_decoding: DecodingKey,
    refresh_encoding: EncodingKey,
    refresh_decoding: DecodingKey,
    access_validation: Validation,
    refresh_validation: Validation,
    device_validation: Validation,
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
    /// The keys of `tokens`; an error when a secret is missing.
    pub fn new(tokens: &TokenSettings) -> Result<Self, ConfigError> {
        let (access, refresh) = tokens.secrets()?;
        let issuer = tokens.issuer.clone();
        let access_audience = tokens.audience.clone();
        let refresh_audience = format!("{}:refresh", tokens.audience);
        // Signed with the refresh key; its own `typ` and audience keep it
        // from passing for a refresh token, and the reverse.
        let device_audience = format!("{}:device", tokens.audience);
        Ok(Self {
            access_encoding: EncodingKey::from_secret(access.expose()),
            access_decoding: DecodingKey::from_secret(access.expose()),
            refresh_encoding: EncodingKey::from_secret(refresh.expose()),
            refresh_decoding: DecodingKey::from_secret(refresh.expose()),
            access_validation: validation(&issuer, &access_audience),
            refresh_validation: validation(&issuer, &refresh_audience),
            device_validation: validation(&issuer, &device_audience),
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

    /// A fresh access token for this user and session.
    pub fn issue_access(&self, user: &User, session_id: &str, now: i64) -> anyhow::Result<String> {
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.access_audience.clone(),
            sub: user.id.to_string(),
            username: user.username.clone(),
            role: user.role.clone(),
            sid: session_id.to_owned(),
            iat: now,
            exp: now + self.access_ttl,
            jti: random::token(16),
        };
        Ok(jsonwebtoken::encode(
            &header(ACCESS_TYP),
            &claims,
            &self.access_encoding,
        )?)
    }

    /// The refresh token for the session's current chain position. It is a
    /// pure function of the stored session: signing it again gives the same
    /// token, which is how the grace path hands back the current cookie.
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
        Ok(jsonwebtoken::encode(
            &header(REFRESH_TYP),
            &claims,
            &self.refresh_encoding,
        )?)
    }

    /// Checks signature, type, issuer and audience, and that the token has
    /// not expired at `now` (Unix seconds).
    pub fn verify_access(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = verify(
            token,
            ACCESS_TYP,
            &self.access_decoding,
            &self.access_validation,
        )?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }

    /// Checks signature, type, issuer and audience. Expiry is left to the
    /// caller: an expired token still names the session to log out of.
    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        verify(
            token,
            REFRESH_TYP,
            &self.refresh_decoding,
            &self.refresh_validation,
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
        Ok(jsonwebtoken::encode(
            &header(DEVICE_TYP),
            &claims,
            &self.refresh_encoding,
        )?)
    }

    /// A genuine, unexpired device cookie's claims.
    pub fn verify_device(&self, token: &str, now: i64) -> Result<DeviceClaims, TokenError> {
        let claims: DeviceClaims = verify(
            token,
            DEVICE_TYP,
            &self.refresh_decoding,
            &self.device_validation,
        )?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

fn header(typ: &str) -> Header {
    let mut header = Header::new(ALGORITHM);
    header.typ = Some(typ.to_owned());
    header
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut v = Validation::new(ALGORITHM);
    v.algorithms = vec![ALGORITHM];
    v.set_issuer(&[issuer]);
    v.set_audience(&[audience]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    v.validate_exp = false;
    v.leeway = 0;
    v
}

fn verify<T: serde::de::DeserializeOwned>(
    token: &str,
    typ: &str,
    key: &DecodingKey,
    validation: &Validation,
) -> Result<T, TokenError> {
    let data =
        jsonwebtoken::decode::<T>(token, key, validation).map_err(|_| TokenError::Invalid)?;
    // `typ` is compared case-insensitively (RFC 7515 §4.1.9), but exactly otherwise.
    match data.header.typ {
        Some(t) if t.eq_ignore_ascii_case(typ) => Ok(data.claims),
        _ => Err(TokenError::WrongType),
    }
}

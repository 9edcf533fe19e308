//! The ceiling the benchmark (`examples/bench`) measures latchkey against: the
//! least a server can do to answer `GET /protected`. One axum route, one
//! access-token check with latchkey's rules (algorithm pinned, issuer,
//! audience, `typ`, expiry), a small JSON body; no other layers, no logging,
//! no database. latchkey's figures are read as ratios to this one, measured
//! in the same run on the same core.
//!
//! Reads `BIND`, `ACCESS_TOKEN_ALGORITHM`, `JWT_SECRET`, `JWT_ISSUER` and
//! `JWT_AUDIENCE` as latchkey does. With `HS256` it checks the signature
//! with `JWT_SECRET`. With `EdDSA` or `ES256` it checks it with the public
//! key the token's `kid` names, from the key set at `JWKS_URL` (latchkey's
//! `/.well-known/jwks.json`), as a service that holds no secret would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

struct Keys {
    verifier: Verifier,
    validation: Validation,
}

/// What signatures are checked with.
enum Verifier {
    /// `HS256`: the one secret, whatever the token's `kid`.
    Secret(DecodingKey),
    /// `EdDSA`, `ES256`: the published keys by their `kid`.
    Published(Vec<(String, DecodingKey)>),
}

impl Keys {
    /// The key `token` is to be checked with; `None` if no key is known by
    /// the `kid` it names.
    fn for_token(&self, token: &str) -> Option<&DecodingKey> {
        match &self.verifier {
            Verifier::Secret(key) => Some(key),
            Verifier::Published(keys) => {
                let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
                keys.iter().find(|(k, _)| *k == kid).map(|(_, key)| key)
            }
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    username: String,
    exp: i64,
}

#[derive(Serialize)]
struct Answer {
    sub: String,
    username: String,
}

struct Verified(Claims);

impl FromRequestParts<Arc<Keys>> for Verified {
    type Rejection = StatusCode;

    async fn from_request_parts(parts: &mut Parts, keys: &Arc<Keys>) -> Result<Self, StatusCode> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(StatusCode::UNAUTHORIZED)?;
        let key = keys.for_token(token).ok_or(StatusCode::UNAUTHORIZED)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &keys.validation)
            .map_err(|_| StatusCode::UNAUTHORIZED)?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs().cast_signed());
        let typ_ok = data
            .header
            .typ
            .is_some_and(|t| t.eq_ignore_ascii_case("at+jwt"));
        if !typ_ok || data.claims.exp <= now {
            return Err(StatusCode::UNAUTHORIZED);
        }
        Ok(Self(data.claims))
    }
}

async fn protected(Verified(claims): Verified, State(_): State<Arc<Keys>>) -> Json<Answer> {
    Json(Answer {
        sub: claims.sub,
        username: claims.username,
    })
}

/// The keys of the JWK set at `url` that have a `kid`, ready to verify with.
/// Fetched once: no key is added while a benchmark runs (latchkey publishes
/// a new one `JWKS_MAX_AGE` before it signs, and rotates only after
/// `KEY_ROTATION_INTERVAL`), and a verifier that caches the set for
/// `JWKS_MAX_AGE` fetches it once in minutes, nothing per request.
async fn published_keys(url: &str) -> Result<Vec<(String, DecodingKey)>> {
    // Straight to latchkey on loopback, whatever proxy the environment names.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let set: JwkSet = client
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("fetching JWKS_URL {url}"))?
        .json()
        .await
        .with_context(|| format!("reading the key set at {url}"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).with_context(|| format!("the key {kid}"))?;
        keys.push((kid, key));
    }
    ensure!(
        !keys.is_empty(),
        "the key set at {url} has no key with a kid"
    );
    Ok(keys)
}

#[tokio::main]
pub async fn main() -> Result<()> {
    // Empty counts as unset, as latchkey's configuration has it.
    let setting = |name: &str| {
        std::env::var(name)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let var = |name: &str, default: &str| setting(name).unwrap_or_else(|| default.into());
    let bind: SocketAddr = var("BIND", "127.0.0.1:3001")
        .parse()
        .context("BIND must be an address such as 127.0.0.1:3001")?;
    let (algorithm, verifier) = match setting("ACCESS_TOKEN_ALGORITHM").as_deref() {
        None | Some("HS256") => {
            let secret = setting("JWT_SECRET").context("JWT_SECRET is required with HS256")?;
            let key = DecodingKey::from_secret(secret.as_bytes());
            (Algorithm::HS256, Verifier::Secret(key))
        }
        Some(name @ ("EdDSA" | "ES256")) => {
            let url =
                setting("JWKS_URL").with_context(|| format!("JWKS_URL is required with {name}"))?;
            let algorithm = if name == "EdDSA" {
                Algorithm::EdDSA
            } else {
                Algorithm::ES256
            };
            (algorithm, Verifier::Published(published_keys(&url).await?))
        }
        Some(other) => {
            bail!("ACCESS_TOKEN_ALGORITHM must be `HS256`, `EdDSA` or `ES256`, not `{other}`")
        }
    };
    // Only the configured algorithm (RFC 8725 §3.1); jsonwebtoken also
    // refuses a key of another family than the token's `alg`.
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[var("JWT_ISSUER", "latchkey")]);
    validation.set_audience(&[var("JWT_AUDIENCE", "latchkey")]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.leeway = 0;
    let keys = Arc::new(Keys {
        verifier,
        validation,
    });
    let app = Router::new()
        .route("/protected", get(protected))
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

//! The ceiling the benchmark (`examples/bench`) measures latchkey against: the
//! least a server can do to answer `GET /protected`. One axum route, one HS256
//! check with latchkey's rules (algorithm pinned, issuer, audience, `typ`,
//! expiry), a small JSON body; no other layers, no logging, no database.
//! latchkey's figures are read as ratios to this one, measured in the same run
//! on the same core.
//!
//! Reads `BIND`, `JWT_SECRET`, `JWT_ISSUER` and `JWT_AUDIENCE` as latchkey does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

struct Keys {
    decoding: DecodingKey,
    validation: Validation,
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
        let data = jsonwebtoken::decode::<Claims>(token, &keys.decoding, &keys.validation)
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

#[tokio::main]
async fn main() -> Result<()> {
    let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let secret = std::env::var("JWT_SECRET").context("JWT_SECRET is required")?;
    let bind: SocketAddr = var("BIND", "127.0.0.1:3001")
        .parse()
        .context("BIND must be an address such as 127.0.0.1:3001")?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_issuer(&[var("JWT_ISSUER", "latchkey")]);
    validation.set_audience(&[var("JWT_AUDIENCE", "latchkey")]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.leeway = 0;
    let keys = Arc::new(Keys {
        decoding: DecodingKey::from_secret(secret.as_bytes()),
        validation,
    });
    let app = Router::new()
        .route("/protected", get(protected))
        .with_state(keys);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

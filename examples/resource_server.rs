//! A resource server: another axum service that accepts latchkey's access
//! tokens by checking them against the public keys latchkey publishes, and
//! holds no secret of latchkey's (README, "Verifying tokens in other
//! services"). With latchkey on `LATCHKEY_ORIGIN`:
//!
//! ```text
//! cargo run --example resource_server
//! curl -H "Authorization: Bearer $ACCESS_TOKEN" http://127.0.0.1:3001/whoami
//! ```
//!
//! It is built on `jsonwebtoken` and `reqwest` alone, not on a JWT middleware
//! crate: of those that work with axum 0.8, none both refetches the key set
//! for an unknown `kid` under a rate limit and honours the key set's
//! `max-age`, the two rules that let latchkey rotate its keys without logging
//! anyone out.
//!
//! `reqwest` is built here without TLS, which suits latchkey on loopback or a
//! private network; a JWKS URL on `https://` needs one of reqwest's TLS
//! features.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

/// How long a key set stays fresh when its answer names no `max-age`:
/// latchkey's default `JWKS_MAX_AGE`.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);

/// The longest a key set stays fresh whatever its `max-age` says, so that a
/// withdrawn key stops verifying within a day even behind a misconfigured
/// proxy.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The least time between two fetches of the key set. Tokens naming unknown
/// `kid`s cost nothing to make, so without this floor anyone could turn the
/// resource server into a load generator against latchkey.
pub const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// The claims this service uses; the rest of latchkey's (README, "Tokens")
/// are checked by `Validation` or not needed here.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub username: String,
    pub role: String,
}

/// Checks access tokens: signature by a key of the JWKS, algorithm, `typ`,
/// `iss`, `aud` and `exp`.
pub struct Verifier {
    algorithm: Algorithm,
    validation: Validation,
    keys: KeyCache,
}

impl Verifier {
    /// Refuses any algorithm but the two latchkey signs with: a verifier that
    /// took its algorithm from the token would accept HS256 tokens "signed"
    /// with the public key (RFC 8725, section 3.1).
    pub fn new(
        jwks_url: &str,
        issuer: &str,
        audience: &str,
        algorithm: Algorithm,
    ) -> anyhow::Result<Self> {
        if !matches!(algorithm, Algorithm::EdDSA | Algorithm::ES256) {
            bail!("latchkey signs access tokens with EdDSA or ES256, not {algorithm:?}");
        }
        let url = reqwest::Url::parse(jwks_url).with_context(|| format!("JWKS URL {jwks_url}"))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => tracing::warn!(
                %url,
                "fetching signing keys over plain HTTP: anyone on the path can substitute them"
            ),
            other => bail!("JWKS URL {jwks_url}: scheme {other} is neither http nor https"),
        }
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .context("HTTP client for the JWKS")?;

        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // As latchkey's own check (README, "Tokens"): access tokens are short
        // and clocks are synchronised, so an expired token is refused at once.
        validation.leeway = 0;

        Ok(Self {
            algorithm,
            validation,
            keys: KeyCache {
                url,
                client,
                algorithm,
                min_refetch: MIN_REFETCH_INTERVAL,
                state: RwLock::default(),
                fetching: tokio::sync::Mutex::new(()),
            },
        })
    }

    /// Sets the floor between two fetches of the key set (default
    /// [`MIN_REFETCH_INTERVAL`]); a fresh set's `max-age` counts as at least
    /// this long. Tests shorten it to see a rotation within a second.
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.keys.min_refetch = interval;
        self
    }

    /// Fetches the key set ahead of the first request. A failure is only
    /// logged: latchkey may start after this service, and the first token
    /// after the refetch floor tries again.
    pub async fn prefetch(&self) {
        self.keys.refetch().await;
    }

    /// The token's claims, once everything about it has been checked.
    pub async fn verify(&self, token: &str) -> Result<Claims, Refusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Refusal::InvalidToken)?;
        // Both checked before looking for the key, so that a token of the
        // wrong kind costs no fetch. `alg: none` does not even parse.
        if header.alg != self.algorithm {
            return Err(Refusal::InvalidToken);
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(Refusal::InvalidToken);
        }
        let kid = header.kid.ok_or(Refusal::InvalidToken)?;
        let key = self.keys.key(&kid).await.ok_or(Refusal::InvalidToken)?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| Refusal::InvalidToken)
    }
}

/// RFC 9068, section 4: a resource server must refuse a JWT whose `typ` is
/// not `at+jwt`, so that an ID token or a refresh token of the same issuer
/// cannot pass for an access token. RFC 7515, section 4.1.9: the media type
/// compares without case, and its `application/` prefix may be left out.
fn is_access_token_type(typ: &str) -> bool {
    let subtype = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    subtype.eq_ignore_ascii_case("at+jwt")
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The verification keys of the JWKS by `kid`, refetched when the set goes
/// stale (`max-age`) or a token names a `kid` the set lacks (a rotation), but
/// never twice within `min_refetch`.
struct KeyCache {
    url: reqwest::Url,
    client: reqwest::Client,
    algorithm: Algorithm,
    min_refetch: Duration,
    state: RwLock<KeySet>,
    /// One fetch at a time: requests that find the set stale together wait
    /// for that fetch instead of each making their own.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, Arc<DecodingKey>>,
    /// When the keys above go stale; `None` until a fetch succeeds.
    stale_at: Option<Instant>,
    /// The last fetch, whether it succeeded or not: the floor counts from it,
    /// so an unreachable latchkey is not asked again on every request either.
    attempted_at: Option<Instant>,
}

impl KeySet {
    fn may_fetch(&self, now: Instant, floor: Duration) -> bool {
        self.attempted_at
            .is_none_or(|at| now.saturating_duration_since(at) >= floor)
    }
}

impl KeyCache {
    async fn key(&self, kid: &str) -> Option<Arc<DecodingKey>> {
        let now = Instant::now();
        let (cached, fresh, may_fetch) = {
            let set = self.read();
            (
                set.by_kid.get(kid).cloned(),
                set.stale_at.is_some_and(|at| now < at),
                set.may_fetch(now, self.min_refetch),
            )
        };
        if (cached.is_some() && fresh) || !may_fetch {
            // A stale key still verifies while fetches are held off (or
            // failing): latchkey being briefly unreachable should not log
            // everyone out.
            return cached;
        }
        self.refetch().await;
        self.read().by_kid.get(kid).cloned()
    }

    async fn refetch(&self) {
        let _one_at_a_time = self.fetching.lock().await;
        // The request that held the lock before may just have fetched.
        if !self.read().may_fetch(Instant::now(), self.min_refetch) {
            return;
        }
        let fetched = self.fetch().await;
        let now = Instant::now();
        let mut set = self.write();
        set.attempted_at = Some(now);
        match fetched {
            Ok((by_kid, max_age)) => {
                set.by_kid = by_kid;
                set.stale_at = Some(now + max_age);
            }
            Err(error) => tracing::warn!(
                url = %self.url,
                error = format!("{error:#}"),
                "could not fetch the JWKS; keeping the keys already known"
            ),
        }
    }

    async fn fetch(&self) -> anyhow::Result<(HashMap<String, Arc<DecodingKey>>, Duration)> {
        let response = self
            .client
            .get(self.url.clone())
            .send()
            .await?
            .error_for_status()?;
        let max_age = max_age(response.headers())
            .unwrap_or(DEFAULT_MAX_AGE)
            .clamp(self.min_refetch, LONGEST_MAX_AGE.max(self.min_refetch));
        let document: JwksDocument = response.json().await?;
        let by_kid = document
            .keys
            .into_iter()
            // Read key by key: one key this verifier cannot parse (another
            // type, an algorithm name it does not know) must not hide the rest.
            .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
            .filter_map(|jwk| self.usable(&jwk))
            .collect();
        Ok((by_kid, max_age))
    }

    /// The key with its `kid`, if it can verify tokens of this algorithm.
    fn usable(&self, jwk: &Jwk) -> Option<(String, Arc<DecodingKey>)> {
        let common = &jwk.common;
        // RFC 7517, section 4.2: a key published for encryption is not one to
        // check signatures with.
        if common
            .public_key_use
            .as_ref()
            .is_some_and(|usage| *usage != PublicKeyUse::Signature)
        {
            return None;
        }
        // RFC 7517, section 4.4: a key bound to another algorithm never
        // verifies this one.
        if common
            .key_algorithm
            .is_some_and(|alg| alg != KeyAlgorithm::from(self.algorithm))
        {
            return None;
        }
        let fits = match (&jwk.algorithm, self.algorithm) {
            (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
                okp.curve == EllipticCurve::Ed25519
            }
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
                ec.curve == EllipticCurve::P256
            }
            _ => false,
        };
        if !fits {
            return None;
        }
        let kid = common.key_id.clone()?;
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some((kid, Arc::new(key)))
    }

    // The locks are never held across an await; a panic while holding one
    // leaves a map that is still whole, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, KeySet> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, KeySet> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<Value>,
}

/// The `max-age` of the answer's `Cache-Control` (RFC 9111, section
/// 5.2.2.1); `no-store` and `no-cache` count as zero.
fn max_age(headers: &HeaderMap) -> Option<Duration> {
    let mut found = None;
    let directives = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for directive in directives {
        let (name, argument) = match directive.split_once('=') {
            Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("no-store") || name.eq_ignore_ascii_case("no-cache") {
            return Some(Duration::ZERO);
        }
        if name.eq_ignore_ascii_case("max-age")
            && let Some(seconds) = argument.and_then(|a| a.parse::<u64>().ok())
        {
            found = Some(Duration::from_secs(seconds));
        }
    }
    found
}

/// Why a request's token was not accepted, answered in latchkey's own error
/// shape (README, "Errors and headers") with the `WWW-Authenticate` of RFC
/// 6750, section 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Unauthenticated,
    /// More than one `Authorization` header: which one counts is ambiguous.
    InvalidRequest,
    /// A token that is malformed, wrongly signed, of another type, issuer
    /// or audience, or expired; one answer for all, as latchkey gives.
    InvalidToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, challenge, error, message) = match self {
            Self::Unauthenticated => (
                StatusCode::UNAUTHORIZED,
                "Bearer",
                "unauthenticated",
                "an access token is required",
            ),
            Self::InvalidRequest => (
                StatusCode::BAD_REQUEST,
                "Bearer error=\"invalid_request\"",
                "invalid_request",
                "more than one Authorization header",
            ),
            Self::InvalidToken => (
                StatusCode::UNAUTHORIZED,
                "Bearer error=\"invalid_token\"",
                "invalid_token",
                "the access token is invalid or expired",
            ),
        };
        (
            status,
            [
                (header::WWW_AUTHENTICATE, challenge),
                (header::CACHE_CONTROL, "no-store"),
            ],
            Json(json!({ "error": error, "message": message })),
        )
            .into_response()
    }
}

/// The verified claims of the request's bearer token.
pub struct Caller(pub Claims);

impl<S> FromRequestParts<S> for Caller
where
    Arc<Verifier>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        let token = bearer_token(&parts.headers)?;
        let verifier = Arc::<Verifier>::from_ref(state);
        verifier.verify(token).await.map(Caller)
    }
}

/// RFC 6750, section 2.1, read only from the header (never a query string),
/// as latchkey reads it.
fn bearer_token(headers: &HeaderMap) -> Result<&str, Refusal> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Refusal::Unauthenticated)?;
    if values.next().is_some() {
        return Err(Refusal::InvalidRequest);
    }
    let value = value.to_str().map_err(|_| Refusal::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(Refusal::Unauthenticated)?;
    // RFC 9110, section 11.1: the scheme compares without case.
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(Refusal::Unauthenticated);
    }
    match token.trim() {
        "" => Err(Refusal::InvalidToken),
        token => Ok(token),
    }
}

/// The service's routes around a verifier.
pub fn router(verifier: Verifier) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .with_state(Arc::new(verifier))
}

/// The service, checking tokens against the key set at `jwks_url`; the key
/// set is fetched once ahead of the first request.
pub async fn app(
    jwks_url: &str,
    issuer: &str,
    audience: &str,
    algorithm: Algorithm,
) -> anyhow::Result<Router> {
    let verifier = Verifier::new(jwks_url, issuer, audience, algorithm)?;
    verifier.prefetch().await;
    Ok(router(verifier))
}

async fn whoami(Caller(claims): Caller) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(json!({
            "sub": claims.sub,
            "username": claims.username,
            "role": claims.role,
        })),
    )
        .into_response()
}

/// A setting as latchkey reads its own (README, "Configuration"): trimmed,
/// and empty counts as unset.
fn setting(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let origin = setting("LATCHKEY_ORIGIN").unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let origin = origin.trim_end_matches('/');
    // latchkey's issuer defaults to its public origin; where this service
    // reaches latchkey at another address than browsers do, set JWT_ISSUER.
    let issuer = setting("JWT_ISSUER").unwrap_or_else(|| origin.to_owned());
    let audience = setting("JWT_AUDIENCE").unwrap_or_else(|| "latchkey".into());
    let algorithm: Algorithm = setting("JWT_ALGORITHM")
        .as_deref()
        .unwrap_or("EdDSA")
        .parse()
        .context("JWT_ALGORITHM")?;

    let jwks_url = format!("{origin}/.well-known/jwks.json");
    let app = app(&jwks_url, &issuer, &audience, algorithm).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    tracing::info!(%jwks_url, %issuer, %audience, "resource server on http://127.0.0.1:3001");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

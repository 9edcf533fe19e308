//! `examples/resource_server.rs`, a service that checks latchkey's access
//! tokens against the published key set and holds no secret (README,
//! "Verifying tokens in other services"). Here the key set comes from a
//! stand-in for latchkey's `/.well-known/jwks.json` that signs with published
//! test keys. The assertions on the service take only its address and a
//! token, so they hold whoever issued the token.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header, get_current_timestamp};
use latchkey::{Auth, KeyRotation};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, StoreKind, TestApp, TestServer, config_from};

#[path = "../../examples/resource_server.rs"]
#[allow(dead_code)]
mod example;

/// Not the stand-in's address: the issuer is a name that tokens carry, and a
/// service may reach latchkey at another address than browsers do.
const ISSUER: &str = "https://auth.example.com";
const AUDIENCE: &str = "latchkey";

// Published test keys, good for tests and nothing else.
/// RFC 8032, section 7.1, TEST 1 (secret key).
const ED25519_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// RFC 8032, section 7.1, TEST 2 (secret key).
const OTHER_ED25519_SEED: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
/// RFC 7515, appendix A.3 (`d`, base64url).
const P256_D: &str = "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI";
/// RFC 6979, appendix A.2.5 (`x`, hex).
const OTHER_P256_D: &str = "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721";

fn from_hex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A private key with its `kid`, as an issuer holds it.
struct Signer {
    algorithm: Algorithm,
    key: EncodingKey,
    kid: String,
}

impl Signer {
    fn ed25519(seed: &[u8], kid: &str) -> Self {
        // RFC 8410, section 7: the 32-byte seed in a PKCS #8 v1 wrapper.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(seed);
        Self {
            algorithm: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(&der),
            kid: kid.into(),
        }
    }

    fn p256(d: &[u8], kid: &str) -> Self {
        // RFC 5208's PKCS #8 around RFC 5915's ECPrivateKey on P-256, without
        // the optional public key.
        let mut der = vec![
            0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
            0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27,
            0x30, 0x25, 0x02, 0x01, 0x01, 0x04, 0x20,
        ];
        der.extend_from_slice(d);
        Self {
            algorithm: Algorithm::ES256,
            key: EncodingKey::from_ec_der(&der),
            kid: kid.into(),
        }
    }

    fn issuer_ed25519(kid: &str) -> Self {
        Self::ed25519(&from_hex(ED25519_SEED), kid)
    }

    fn issuer_p256(kid: &str) -> Self {
        Self::p256(&URL_SAFE_NO_PAD.decode(P256_D).unwrap(), kid)
    }

    /// The public half, as latchkey's JWKS lists it.
    fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        serde_json::to_value(jwk).unwrap()
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some("at+jwt"), &self.kid, claims)
    }

    fn sign_as(&self, typ: Option<&str>, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.typ = typ.map(str::to_owned);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

/// The claims of a good access token, as latchkey issues them (README, "Tokens").
fn claims() -> Value {
    let now = get_current_timestamp();
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "42",
        "username": "ann",
        "role": "user",
        "sid": "c2Vzc2lvbg",
        "iat": now,
        "exp": now + 900,
        "jti": "dG9rZW4",
    })
}

fn claims_with(field: &str, value: Value) -> Value {
    let mut claims = claims();
    claims[field] = value;
    claims
}

fn claims_without(field: &str) -> Value {
    let mut claims = claims();
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn expected() -> Value {
    json!({ "sub": "42", "username": "ann", "role": "user" })
}

/// Serves `router` on a free loopback port; the base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}")
}

/// A stand-in for latchkey's key set endpoint, whose keys the test changes
/// and whose fetches it counts.
struct KeySet {
    base: String,
    state: Arc<KeySetState>,
}

struct KeySetState {
    keys: Mutex<Vec<Value>>,
    max_age: u64,
    failing: AtomicBool,
    fetches: AtomicUsize,
}

impl KeySet {
    async fn start(keys: Vec<Value>, max_age: u64) -> Self {
        let state = Arc::new(KeySetState {
            keys: Mutex::new(keys),
            max_age,
            failing: AtomicBool::new(false),
            fetches: AtomicUsize::new(0),
        });
        let router = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(state.clone());
        Self {
            base: serve(router).await,
            state,
        }
    }

    fn url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.base)
    }

    fn publish(&self, keys: Vec<Value>) {
        *self.state.keys.lock().unwrap() = keys;
    }

    fn fail(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// A resource server on this key set, fetching at most every `floor`.
    async fn resource_server(&self, algorithm: Algorithm, floor: Duration) -> String {
        let verifier = example::Verifier::new(&self.url(), ISSUER, AUDIENCE, algorithm)
            .unwrap()
            .min_refetch_interval(floor);
        verifier.prefetch().await;
        serve(example::router(verifier)).await
    }
}

async fn jwks(State(state): State<Arc<KeySetState>>) -> Response {
    state.fetches.fetch_add(1, Ordering::SeqCst);
    if state.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = state.keys.lock().unwrap().clone();
    (
        [(
            header::CACHE_CONTROL,
            format!("public, max-age={}", state.max_age),
        )],
        Json(json!({ "keys": keys })),
    )
        .into_response()
}

// --- Assertions on any resource server built from the example -------------

/// `GET /whoami` with `token` as the bearer token.
async fn whoami(base: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{base}/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The service at `base` accepts `token` and answers its claims.
async fn assert_accepted(base: &str, token: &str, expected: &Value) {
    let response = whoami(base, token).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(&body, expected);
}

/// The service at `base` refuses `token` as RFC 6750, section 3.1 says, and
/// in latchkey's error shape.
async fn assert_refused(base: &str, token: &str) {
    let response = whoami(base, token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token}");
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer error=\"invalid_token\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");
}

/// What the service at `base` must do given `token`, a good access token for
/// `expected`: answer it, and refuse every forgery that can be made from it
/// without the issuer's key. Nothing here depends on the issuer, so latchkey
/// itself can stand behind `token`.
async fn assert_checks_tokens(base: &str, token: &str, expected: &Value) {
    assert_accepted(base, token, expected).await;

    let client = reqwest::Client::new();
    let url = format!("{base}/whoami");
    let no_token = client.get(&url).send().await.unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(no_token.headers()[header::WWW_AUTHENTICATE], "Bearer");
    let other_scheme = client
        .get(&url)
        .basic_auth("ann", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_scheme.status(), StatusCode::UNAUTHORIZED);
    let two_tokens = client
        .get(&url)
        .bearer_auth(token)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(two_tokens.status(), StatusCode::BAD_REQUEST);

    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        panic!("not a JWS: {token}");
    };
    let original: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let kid = original["kid"].as_str().unwrap();
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());

    let unsecured = encode(&json!({ "alg": "none", "typ": "at+jwt", "kid": kid }));
    let mut raised = claims.clone();
    raised["role"] = json!("admin");
    // The stranger holds a key of the right algorithm that is not in the set.
    let stranger = match original["alg"].as_str() {
        Some("ES256") => Signer::p256(&from_hex(OTHER_P256_D), kid),
        _ => Signer::ed25519(&from_hex(OTHER_ED25519_SEED), kid),
    };
    let mut hmac = Header::new(Algorithm::HS256);
    hmac.typ = Some("at+jwt".into());
    hmac.kid = Some(kid.into());
    let hs256 =
        jsonwebtoken::encode(&hmac, &claims, &EncodingKey::from_secret(kid.as_bytes())).unwrap();

    let forgeries = [
        // RFC 8725, section 2.1: unsecured, with and without the old signature.
        format!("{unsecured}.{payload}."),
        format!("{unsecured}.{payload}.{signature}"),
        // RFC 8725, section 2.1: a MAC keyed with something public.
        hs256,
        // The claims changed under the original signature.
        format!("{header}.{}.{signature}", encode(&raised)),
        // No signature at all, and someone else's.
        format!("{header}.{payload}."),
        stranger.sign_as(Some("at+jwt"), kid, &claims),
        stranger.sign_as(Some("at+jwt"), "a-kid-nobody-published", &claims),
        // Not a JWT.
        "not-a-token".to_owned(),
    ];
    for forgery in &forgeries {
        assert_refused(base, forgery).await;
    }
}

// --- The example against the stand-in --------------------------------------

#[tokio::test]
async fn the_example_checks_eddsa_tokens_against_the_key_set() {
    let issuer = Signer::issuer_ed25519("key-1");
    let key_set = KeySet::start(vec![issuer.jwk()], 300).await;
    let app = example::app(&key_set.url(), ISSUER, AUDIENCE, Algorithm::EdDSA)
        .await
        .unwrap();
    let base = serve(app).await;

    assert_checks_tokens(&base, &issuer.sign(&claims()), &expected()).await;
    // RFC 7515, section 4.1.9: the media type's long form is the same type.
    assert_accepted(
        &base,
        &issuer.sign_as(Some("application/AT+JWT"), "key-1", &claims()),
        &expected(),
    )
    .await;

    // Signed with the issuer's own key, and still refused.
    let now = get_current_timestamp();
    for token in [
        issuer.sign(&claims_with("aud", json!("another-service"))),
        issuer.sign(&claims_with("iss", json!("https://evil.example.com"))),
        issuer.sign(&claims_with("exp", json!(now - 1))),
        issuer.sign(&claims_without("exp")),
        issuer.sign(&claims_without("sub")),
        // RFC 9068, section 4: an ID token or a refresh token is not an
        // access token, whoever signed it.
        issuer.sign_as(Some("JWT"), "key-1", &claims()),
        issuer.sign_as(Some("latchkey-rt+jwt"), "key-1", &claims()),
        issuer.sign_as(None, "key-1", &claims()),
    ] {
        assert_refused(&base, &token).await;
    }

    // All of it on the key set fetched at start: the unknown `kid`s above
    // came within the refetch floor.
    assert_eq!(key_set.fetches(), 1);
}

#[tokio::test]
async fn the_example_checks_es256_tokens_and_refuses_the_other_algorithm() {
    let issuer = Signer::issuer_p256("ec-1");
    let eddsa = Signer::issuer_ed25519("ed-1");
    let key_set = KeySet::start(vec![issuer.jwk(), eddsa.jwk()], 300).await;
    let es256_server = key_set
        .resource_server(Algorithm::ES256, example::MIN_REFETCH_INTERVAL)
        .await;
    let eddsa_server = key_set
        .resource_server(Algorithm::EdDSA, example::MIN_REFETCH_INTERVAL)
        .await;

    let es256 = issuer.sign(&claims());
    assert_checks_tokens(&es256_server, &es256, &expected()).await;
    // Keys of both kinds are in the set; each service takes its own only.
    assert_refused(&es256_server, &eddsa.sign(&claims())).await;
    assert_refused(&eddsa_server, &es256).await;
    assert_accepted(&eddsa_server, &eddsa.sign(&claims()), &expected()).await;
}

#[tokio::test]
async fn a_new_key_is_fetched_on_its_first_token_and_unknown_kids_are_rate_limited() {
    let floor = Duration::from_secs(1);
    let old = Signer::issuer_ed25519("old");
    let new = Signer::ed25519(&from_hex(OTHER_ED25519_SEED), "new");
    let key_set = KeySet::start(vec![old.jwk()], 300).await;
    let base = key_set.resource_server(Algorithm::EdDSA, floor).await;
    assert_accepted(&base, &old.sign(&claims()), &expected()).await;
    assert_eq!(key_set.fetches(), 1);

    // latchkey publishes its next key, then signs with it.
    key_set.publish(vec![old.jwk(), new.jwk()]);
    tokio::time::sleep(floor).await;
    assert_accepted(&base, &new.sign(&claims()), &expected()).await;
    assert_accepted(&base, &old.sign(&claims()), &expected()).await;
    assert_eq!(key_set.fetches(), 2);

    // Tokens naming unknown keys cost no fetch within the floor, and one
    // fetch for all of them after it.
    let unknown = |i: usize| new.sign_as(Some("at+jwt"), &format!("unknown-{i}"), &claims());
    for i in 0..5 {
        assert_refused(&base, &unknown(i)).await;
    }
    assert_eq!(key_set.fetches(), 2);
    tokio::time::sleep(floor).await;
    for i in 5..10 {
        assert_refused(&base, &unknown(i)).await;
    }
    assert_eq!(key_set.fetches(), 3);
}

#[tokio::test]
async fn a_withdrawn_key_verifies_until_the_key_set_goes_stale() {
    let max_age = 2;
    let old = Signer::issuer_ed25519("old");
    let new = Signer::ed25519(&from_hex(OTHER_ED25519_SEED), "new");
    let key_set = KeySet::start(vec![old.jwk()], max_age).await;
    let base = key_set
        .resource_server(Algorithm::EdDSA, Duration::from_millis(100))
        .await;

    key_set.publish(vec![new.jwk()]);
    // Cached for `max-age`: the withdrawal is not seen yet.
    assert_accepted(&base, &old.sign(&claims()), &expected()).await;
    assert_eq!(key_set.fetches(), 1);

    tokio::time::sleep(Duration::from_millis(max_age * 1000 + 200)).await;
    assert_refused(&base, &old.sign(&claims())).await;
    assert_eq!(key_set.fetches(), 2);
    assert_accepted(&base, &new.sign(&claims()), &expected()).await;
}

#[tokio::test]
async fn the_known_keys_still_verify_while_the_key_set_cannot_be_fetched() {
    let issuer = Signer::issuer_ed25519("key-1");
    let key_set = KeySet::start(vec![issuer.jwk()], 1).await;
    let base = key_set
        .resource_server(Algorithm::EdDSA, Duration::from_millis(100))
        .await;

    key_set.fail(true);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_accepted(&base, &issuer.sign(&claims()), &expected()).await;
    assert_eq!(
        key_set.fetches(),
        2,
        "the stale set was refetched, and failed"
    );

    key_set.fail(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_accepted(&base, &issuer.sign(&claims()), &expected()).await;
    assert_eq!(key_set.fetches(), 3);
}

#[tokio::test]
async fn the_example_refuses_other_algorithms_and_other_schemes() {
    for algorithm in [Algorithm::HS256, Algorithm::RS256] {
        assert!(
            example::Verifier::new("http://127.0.0.1:1/jwks", ISSUER, AUDIENCE, algorithm).is_err()
        );
    }
    assert!(
        example::Verifier::new(
            "ftp://auth.example.com/jwks.json",
            ISSUER,
            AUDIENCE,
            Algorithm::EdDSA
        )
        .is_err()
    );
    assert!(example::Verifier::new("not a url", ISSUER, AUDIENCE, Algorithm::EdDSA).is_err());
}

// --- The example against latchkey itself ------------------------------------

/// An access token from latchkey at `server`, by logging in over HTTP.
async fn log_in(server: &TestServer) -> String {
    let response = reqwest::Client::new()
        .post(server.url("/login"))
        .json(&json!({ "username": "ann", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// latchkey's EdDSA and ES256 tokens pass the example's every check, from
/// the key set latchkey serves, and across a rotation of latchkey's keys.
async fn the_example_verifies_latchkeys_tokens(kind: StoreKind) {
    for (name, algorithm) in [("EdDSA", Algorithm::EdDSA), ("ES256", Algorithm::ES256)] {
        // JWKS_MAX_AGE 1: a new key signs two seconds after a rotation.
        let overrides = [("ACCESS_TOKEN_ALGORITHM", name), ("JWKS_MAX_AGE", "1")];
        let Some(app) = TestApp::on(kind, &overrides).await else {
            return;
        };
        // On the system clock: the example checks `exp` against it.
        let auth = Auth::new(config_from(&app.vars).unwrap(), app.store.shared()).unwrap();
        let latchkey = TestServer::start(auth.clone()).await;
        let user = auth.create_user("ann", PASSWORD, "user").await.unwrap();
        let expected = json!({ "sub": user.id.to_string(), "username": "ann", "role": "user" });
        let first = log_in(&latchkey).await;

        let verifier = example::Verifier::new(
            &latchkey.url("/.well-known/jwks.json"),
            "latchkey",
            "latchkey",
            algorithm,
        )
        .unwrap()
        .min_refetch_interval(Duration::from_millis(200));
        verifier.prefetch().await;
        let base = serve(example::router(verifier)).await;
        assert_checks_tokens(&base, &first, &expected).await;

        let KeyRotation::Added { kid, signs_from } = auth.rotate_keys().await.unwrap() else {
            panic!("a key is added");
        };
        // The new key signs at a known second; wait for it on the clock.
        let wait = signs_from - get_current_timestamp().cast_signed() + 1;
        tokio::time::sleep(Duration::from_secs(wait.max(0).unsigned_abs())).await;
        let second = log_in(&latchkey).await;
        assert_eq!(kid_of(&second), kid, "{name}: the new key signs");
        assert_accepted(&base, &second, &expected).await;
        assert_accepted(&base, &first, &expected).await;
        latchkey.stop().await;
    }
}

#[tokio::test]
async fn the_example_verifies_latchkeys_tokens_on_sqlite() {
    the_example_verifies_latchkeys_tokens(StoreKind::Sqlite).await;
}

#[tokio::test]
async fn the_example_verifies_latchkeys_tokens_on_postgres() {
    the_example_verifies_latchkeys_tokens(StoreKind::Postgres).await;
}

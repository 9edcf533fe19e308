//! Signing keys (README, "Signing keys"): asymmetric access tokens verified
//! from the published key set, keys that rotate without signing anyone
//! out, secrets that change with a restart, and tokens that try to choose
//! their own key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use latchkey::clock::Clock;
use latchkey::{Auth, KeyRotation, KeyState};
use serde_json::{Value, json};

use crate::helpers::*;

const ALGORITHMS: [&str; 3] = ["HS256", "EdDSA", "ES256"];

/// The JSON of a JWT's header.
fn header_of(token: &str) -> Value {
    let segment = token.split('.').next().expect("JWT header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

fn kid_of(token: &str) -> String {
    header_of(token)["kid"]
        .as_str()
        .expect("every token names its key")
        .to_owned()
}

fn claims_of(token: &str) -> Value {
    let segment = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).expect("base64url")).expect("JSON")
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

async fn jwks(router: &axum::Router) -> JwkSet {
    let response = call(router, get("/.well-known/jwks.json")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    serde_json::from_str(&response.text()).expect("a JWK set")
}

fn kids(set: &JwkSet) -> HashSet<String> {
    set.keys
        .iter()
        .map(|k| k.common.key_id.clone().expect("every key has a kid"))
        .collect()
}

/// Verifies `token` as a stranger would: the key set and nothing else.
fn verify_with(set: &JwkSet, token: &str, alg: Algorithm) -> Result<Value, String> {
    let kid = kid_of(token);
    let jwk = set.find(&kid).ok_or(format!("kid {kid} not published"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&["latchkey"]);
    validation.set_issuer(&["latchkey"]);
    // The tests' clock is not the system's: expiry is latchkey's to judge.
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| e.to_string())
}

async fn protected(router: &axum::Router, access: &str) -> StatusCode {
    call(router, bearer(Method::GET, "/protected", access))
        .await
        .status
}

#[tokio::test]
async fn eddsa_and_es256_tokens_verify_against_the_served_jwks() {
    for (alg, algorithm, kty) in [
        ("EdDSA", Algorithm::EdDSA, "OKP"),
        ("ES256", Algorithm::ES256, "EC"),
    ] {
        let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", alg)]);
        let access = app.signed_in_ann().await.access_token();
        let head = header_of(&access);
        assert_eq!(head["alg"], alg);
        assert_eq!(head["typ"], "at+jwt");

        let response = call(&app.router, get("/.well-known/jwks.json")).await;
        assert_eq!(
            response.header("cache-control"),
            Some("public, max-age=300"),
            "verifiers may cache the key set for JWKS_MAX_AGE"
        );
        assert_eq!(response.header("pragma"), None);
        let set: JwkSet = serde_json::from_str(&response.text()).unwrap();
        let raw: Value = serde_json::from_str(&response.text()).unwrap();
        for key in raw["keys"].as_array().unwrap() {
            assert_eq!(key["kty"], kty);
            assert_eq!(key["alg"], alg);
            assert_eq!(key["use"], "sig");
            assert!(key.get("d").is_none(), "no private part: {key}");
        }
        let claims = verify_with(&set, &access, algorithm).expect("verifies from the JWKS alone");
        assert_eq!(claims["username"], "ann");
        assert_eq!(protected(&app.router, &access).await, StatusCode::OK);
    }
}

#[tokio::test]
async fn hs256_publishes_no_key_and_its_tokens_name_the_secret() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    assert_eq!(header_of(&access)["alg"], "HS256");
    assert!(kid_of(&access).starts_with("hs-"));
    let refresh = app.login("ann", PASSWORD).await.refresh_token();
    assert!(kid_of(&refresh).starts_with("hs-"));
    assert_ne!(kid_of(&access), kid_of(&refresh), "two secrets, two ids");
    assert!(jwks(&app.router).await.keys.is_empty(), "a secret is never shown");
}

#[tokio::test]
async fn the_openid_configuration_names_the_issuer_and_the_key_set() {
    let app = test_app!(&[
        ("ACCESS_TOKEN_ALGORITHM", "EdDSA"),
        ("PUBLIC_ORIGIN", "https://auth.example.com"),
    ]);
    let response = call(&app.router, get("/.well-known/openid-configuration")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(
        response.json(),
        json!({
            "issuer": "https://auth.example.com",
            "jwks_uri": "https://auth.example.com/.well-known/jwks.json",
        }),
        "the issuer defaults to PUBLIC_ORIGIN, and nothing untrue is claimed"
    );
    let access = app.signed_in_ann().await.access_token();
    assert_eq!(claims_of(&access)["iss"], "https://auth.example.com");
}

/// The discovery document as a client addressing latchkey as `host` gets it.
async fn discovery(app: &TestApp, host: &str) -> TestResponse {
    let request = Request::get("/.well-known/openid-configuration")
        .header(header::HOST, host)
        .body(Body::empty())
        .unwrap();
    call(&app.router, request).await
}

#[tokio::test]
async fn the_host_header_never_names_the_keys_in_a_cached_answer() {
    // Development: built from `Host`, and never cached.
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    let answer = discovery(&app, "attacker.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert_eq!(
        answer.json()["jwks_uri"],
        "http://attacker.example/.well-known/jwks.json"
    );

    // Production with neither `PUBLIC_ORIGIN` nor a URL issuer: no answer
    // (HS256, the only algorithm production allows that way).
    let app = test_app!(&[("APP_ENV", "production")]);
    let answer = discovery(&app, "attacker.example").await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.error_code(), "not_found");

    // A URL issuer names the origin, whatever `Host` says, and is cacheable.
    let app = test_app!(&[
        ("APP_ENV", "production"),
        ("ACCESS_TOKEN_ALGORITHM", "ES256"),
        ("JWT_ISSUER", "https://login.example.com/auth"),
    ]);
    let answer = discovery(&app, "attacker.example").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(
        answer.json(),
        json!({
            "issuer": "https://login.example.com/auth",
            "jwks_uri": "https://login.example.com/.well-known/jwks.json",
        })
    );
}

/// Tokens that try to pick their key: each must be refused in every mode.
#[tokio::test]
async fn tokens_that_choose_their_own_key_are_refused_in_every_mode() {
    for alg in ALGORITHMS {
        let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", alg)]);
        let genuine = app.signed_in_ann().await.access_token();
        let refresh = app.login("ann", PASSWORD).await.refresh_token();
        assert_eq!(protected(&app.router, &genuine).await, StatusCode::OK);
        let claims = claims_of(&genuine);
        let kid = kid_of(&genuine);
        let set = jwks(&app.router).await;
        let attacker = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let attacker_der = {
            use ed25519_dalek::pkcs8::EncodePrivateKey;
            attacker.to_pkcs8_der().unwrap().as_bytes().to_vec()
        };
        let attacker_x = URL_SAFE_NO_PAD.encode(attacker.verifying_key().to_bytes());
        let hs = |header: Header, secret: &[u8]| {
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
        };
        let ed = |header: Header| {
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&attacker_der))
                .unwrap()
        };
        let header = |alg: Algorithm, kid: Option<&str>| {
            let mut h = Header::new(alg);
            h.typ = Some("at+jwt".into());
            h.kid = kid.map(str::to_owned);
            h
        };

        let mut forgeries: Vec<(String, String)> = Vec::new();
        // HS256 keyed with the published public key, in each form a
        // confused verifier might use (RFC 8725 §2.1).
        if let Some(jwk) = set.keys.first() {
            let jwk_json = serde_json::to_string(jwk).unwrap();
            let x = serde_json::to_value(jwk).unwrap()["x"]
                .as_str()
                .unwrap()
                .to_owned();
            let x_bytes = URL_SAFE_NO_PAD.decode(&x).unwrap();
            for (what, secret) in [
                ("the JWK", jwk_json.into_bytes()),
                ("x, base64url", x.into_bytes()),
                ("x, raw", x_bytes),
            ] {
                forgeries.push((
                    format!("HS256 keyed with {what}"),
                    hs(header(Algorithm::HS256, Some(&kid)), &secret),
                ));
            }
        }
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "at+jwt", "kid": kid}).to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
        );
        forgeries.push(("alg none".into(), none));
        // A kid that names a key of another kind, a URL or a path.
        let refresh_kid = kid_of(&refresh);
        forgeries.push((
            "kid of the refresh secret, signed with it".into(),
            hs(
                header(Algorithm::HS256, Some(&refresh_kid)),
                b"test-refresh-secret-0123456789abcdefghijk",
            ),
        ));
        for bad_kid in ["https://attacker.example/jwks.json", "../../../dev/null", ""] {
            forgeries.push((
                format!("kid {bad_kid:?}"),
                ed(header(Algorithm::EdDSA, Some(bad_kid))),
            ));
        }
        // The attacker's own key, offered in the header or by URL (RFC 8725 §3.10).
        let mut with_jwk = header(Algorithm::EdDSA, Some(&kid));
        with_jwk.jwk = Some(
            serde_json::from_value(json!({"kty": "OKP", "crv": "Ed25519", "x": attacker_x}))
                .unwrap(),
        );
        forgeries.push(("embedded jwk".into(), ed(with_jwk)));
        let mut with_jku = header(Algorithm::EdDSA, Some(&kid));
        with_jku.jku = Some("https://attacker.example/jwks.json".into());
        forgeries.push(("jku".into(), ed(with_jku)));
        if alg == "HS256" {
            // Even correctly signed, a token that offers a key is refused.
            let mut h = header(Algorithm::HS256, Some(&kid));
            h.jku = Some("https://attacker.example/jwks.json".into());
            forgeries.push((
                "genuine HS256 with jku".into(),
                hs(h, b"test-access-secret-0123456789abcdefghijkl"),
            ));
        }
        for (what, token) in forgeries {
            assert_eq!(
                protected(&app.router, &token).await,
                StatusCode::UNAUTHORIZED,
                "{alg}: {what}"
            );
        }
    }
}

/// Two instances over one store and one clock, as in production: each
/// signs and verifies, and both are asked the same questions at each step.
struct Pair {
    apps: Vec<(Auth, axum::Router)>,
    clock: latchkey::clock::ManualClock,
    _first: TestApp,
}

impl Pair {
    async fn start(kind: StoreKind, overrides: &[(&str, &str)]) -> Option<Self> {
        let first = TestApp::on(kind, overrides).await?;
        let config = config_from(&first.vars).unwrap();
        // A pool of its own, as a separate process would have.
        let store = TestStore::open(&config.database).await;
        let second = Auth::with_clock(config, store.shared(), Arc::new(first.clock.clone()))
            .expect("secrets set");
        let second_router = latchkey::router(second.clone()).layer(
            axum::extract::connect_info::MockConnectInfo(std::net::SocketAddr::from(CLIENT_ADDR)),
        );
        Some(Self {
            apps: vec![
                (first.auth.clone(), first.router.clone()),
                (second, second_router),
            ],
            clock: first.clock.clone(),
            _first: first,
        })
    }
}

/// A session's refresh cookie, rotated on instance `i`: the new access
/// token and refresh token.
async fn rotate(router: &axum::Router, refresh: &str) -> (String, String) {
    let response = call(
        router,
        Request::post("/token")
            .header(header::COOKIE, format!("__Host-refresh_token={refresh}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    (response.access_token(), response.refresh_token())
}

#[tokio::test]
async fn rotation_keeps_every_token_valid_and_both_instances_agree() {
    const MAX_AGE: i64 = 300;
    const TTL: i64 = 900;
    const INTERVAL: i64 = 3600;
    const STEP: i64 = 50;
    let Some(pair) = Pair::start(
        super::STORE,
        &[
            ("ACCESS_TOKEN_ALGORITHM", "EdDSA"),
            ("JWKS_MAX_AGE", "300"),
            ("JWT_EXPIRATION", "900"),
            ("KEY_ROTATION_INTERVAL", "3600"),
            ("JWT_REFRESH_EXPIRATION", "100000"),
        ],
    )
    .await
    else {
        return;
    };
    pair.apps[0]
        .0
        .create_user("ann", PASSWORD, "user")
        .await
        .unwrap();
    let login = call(
        &pair.apps[0].1,
        json_post("/login", &json!({"username": "ann", "password": PASSWORD})),
    )
    .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let mut refresh = login.refresh_token();
    let start = pair.clock.now();

    // Every access token issued, with when it was issued.
    let mut issued: Vec<(i64, String)> = vec![(start, login.access_token())];
    // When each kid was first seen in a JWKS, and first seen on a token.
    let mut first_published: HashMap<String, i64> = HashMap::new();
    let mut first_signed: HashMap<String, i64> = HashMap::new();

    // Three intervals: two automatic rotations, and a manual one in between.
    let end = start + 3 * INTERVAL + TTL + 2 * MAX_AGE;
    let mut manual_done = false;
    while pair.clock.now() < end {
        let now = pair.clock.now();
        let mut kids_now = Vec::new();
        let mut published_now = Vec::new();
        for (i, (_, router)) in pair.apps.iter().enumerate() {
            let set = jwks(router).await;
            // The session rotates on each instance in turn: no chain breaks.
            let (access, next) = rotate(router, &refresh).await;
            refresh = next;
            let kid = kid_of(&access);
            first_signed.entry(kid.clone()).or_insert(now);
            kids_now.push(kid);
            published_now.push(kids(&set));
            issued.push((now, access));
            // Every unexpired token ever issued verifies, on this instance
            // and from its key set.
            for (at, token) in &issued {
                if now < at + TTL {
                    assert_eq!(
                        protected(router, token).await,
                        StatusCode::OK,
                        "instance {i} at +{}: token of +{} ({})",
                        now - start,
                        at - start,
                        kid_of(token)
                    );
                    verify_with(&set, token, Algorithm::EdDSA).unwrap_or_else(|e| {
                        panic!("JWKS at +{}: token of +{}: {e}", now - start, at - start)
                    });
                }
            }
        }
        assert_eq!(kids_now[0], kids_now[1], "the instances sign alike at +{}", now - start);
        // A key counts as published once every instance publishes it.
        for kid in published_now[0].intersection(&published_now[1]) {
            first_published.entry(kid.clone()).or_insert(now);
        }
        if !manual_done && now >= start + INTERVAL + INTERVAL / 2 {
            // By hand, as `latchkey keys rotate` does, on one instance.
            assert!(matches!(
                pair.apps[1].0.rotate_keys().await.unwrap(),
                KeyRotation::Added { .. }
            ));
            manual_done = true;
        }
        pair.clock.advance(STEP);
    }

    assert!(
        first_signed.len() >= 4,
        "the first key, two rotations by interval and one by hand: {first_signed:?}"
    );
    let first_kid = kid_of(&issued[0].1);
    for (kid, signed) in &first_signed {
        if *kid == first_kid {
            continue;
        }
        let published = first_published[kid];
        assert!(
            signed - published >= MAX_AGE,
            "{kid} was published at +{} and signed at +{}",
            published - start,
            signed - start
        );
    }
    // Long after the last rotation, only the key in use (and perhaps a
    // retired one still within its time) is published; the first is gone.
    let last = kids(&jwks(&pair.apps[0].1).await);
    assert!(!last.contains(&first_kid), "the first key was removed");
}

#[tokio::test]
async fn a_manual_rotation_publishes_first_and_a_second_one_waits_for_it() {
    // An instance reloads the keys every JWKS_MAX_AGE, at most every minute.
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "ES256"), ("JWKS_MAX_AGE", "120")]);
    let before = app.signed_in_ann().await.access_token();
    let KeyRotation::Added { kid, signs_from } = app.auth.rotate_keys().await.unwrap() else {
        panic!("a key is added");
    };
    assert_eq!(signs_from, app.clock.now() + 60 + 120);
    assert_eq!(
        app.auth.rotate_keys().await.unwrap(),
        KeyRotation::AlreadyPending {
            kid: kid.clone(),
            signs_from
        },
        "one waiting key at a time"
    );
    assert!(kids(&jwks(&app.router).await).contains(&kid), "published at once");
    app.advance(179);
    assert_ne!(kid_of(&app.login("ann", PASSWORD).await.access_token()), kid);
    app.advance(1);
    assert_eq!(kid_of(&app.login("ann", PASSWORD).await.access_token()), kid);
    assert_eq!(protected(&app.router, &before).await, StatusCode::OK);

    let states: Vec<KeyState> = app
        .auth
        .signing_keys()
        .await
        .unwrap()
        .iter()
        .map(|k| k.state)
        .collect();
    assert_eq!(states, [KeyState::Retired, KeyState::Signing]);
}

#[tokio::test]
async fn the_database_alone_holds_no_key_that_signs() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    app.signed_in_ann().await;
    let stored = app.store.signing_keys("EdDSA").await.unwrap();
    assert_eq!(stored.len(), 1);
    // Only the public key is kept: 32 bytes, the JWK's `x`.
    assert_eq!(
        URL_SAFE_NO_PAD.decode(&stored[0].public_key).unwrap().len(),
        32
    );
    assert!(app.auth.signing_keys().await.unwrap()[0].can_sign);

    // The same rows under another refresh secret (the database without the
    // secret): the key is known, published and verifies, but cannot sign.
    let mut vars = app.vars.clone();
    vars.insert(
        "JWT_REFRESH_SECRET".into(),
        "another-refresh-secret-0123456789abcdefgh".into(),
    );
    let other = Auth::with_clock(
        config_from(&vars).unwrap(),
        app.store.shared(),
        Arc::new(app.clock.clone()),
    )
    .unwrap();
    let keys = other.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "listing makes no key");
    assert!(!keys[0].can_sign, "a key derives only from its secret");
}

const NEW_REFRESH_SECRET: &str = "new-refresh-secret-0123456789abcdefghijkl";
const NEW_ACCESS_SECRET: &str = "new-access-secret-0123456789abcdefghijklm";

#[tokio::test]
async fn changing_the_refresh_secret_with_the_old_one_as_previous_loses_no_session() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    let old_refresh = app.vars["JWT_REFRESH_SECRET"].clone();
    let ann = app.signed_in_ann().await;
    let access = ann.access_token();
    let first = ann.refresh_token();
    let (_, current) = rotate(&app.router, &first).await;
    // A second session, rotated only after the change.
    let bob_first = {
        app.add_user("bob", PASSWORD).await;
        app.login("bob", PASSWORD).await.refresh_token()
    };

    let router = app.restarted(
        
        &[
            ("JWT_REFRESH_SECRET", NEW_REFRESH_SECRET),
            ("JWT_REFRESH_SECRET_PREVIOUS", &old_refresh),
        ],
    );
    // The signing key was derived from the old secret and still signs.
    assert_eq!(protected(&router, &access).await, StatusCode::OK);
    let (new_access, rotated) = rotate(&router, &current).await;
    assert_eq!(kid_of(&new_access), kid_of(&access));
    assert_ne!(kid_of(&rotated), kid_of(&current), "re-signed under the new secret");
    let (_, _) = rotate(&router, &bob_first).await;
    let (_, _) = rotate(&router, &rotated).await;

    // Reuse detection holds for a token signed under the old secret.
    app.advance(60);
    let reused = call(
        &router,
        Request::post("/token")
            .header(header::COOKIE, format!("__Host-refresh_token={first}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reused.error_code(), "refresh_token_reused");
}

#[tokio::test]
async fn without_the_previous_secret_old_tokens_are_refused() {
    let app = test_app!();
    let ann = app.signed_in_ann().await;
    let router = app.restarted(
        
        &[
            ("JWT_REFRESH_SECRET", NEW_REFRESH_SECRET),
            ("JWT_SECRET", NEW_ACCESS_SECRET),
        ],
    );
    assert_eq!(
        protected(&router, &ann.access_token()).await,
        StatusCode::UNAUTHORIZED
    );
    let refused = call(
        &router,
        Request::post("/token")
            .header(
                header::COOKIE,
                format!("__Host-refresh_token={}", ann.refresh_token()),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn changing_jwt_secret_with_the_old_one_as_previous_keeps_access_tokens_valid() {
    let app = test_app!();
    let old_access = app.vars["JWT_SECRET"].clone();
    let ann = app.signed_in_ann().await;
    let router = app.restarted(
        
        &[
            ("JWT_SECRET", NEW_ACCESS_SECRET),
            ("JWT_SECRET_PREVIOUS", &old_access),
        ],
    );
    assert_eq!(protected(&router, &ann.access_token()).await, StatusCode::OK);
    let (fresh, _) = rotate(&router, &ann.refresh_token()).await;
    assert_ne!(kid_of(&fresh), kid_of(&ann.access_token()));
    assert_eq!(protected(&router, &fresh).await, StatusCode::OK);
}

#[tokio::test]
async fn housekeeping_deletes_keys_no_verifier_can_meet() {
    let app = test_app!(&[
        ("ACCESS_TOKEN_ALGORITHM", "EdDSA"),
        ("JWKS_MAX_AGE", "60"),
        ("JWT_EXPIRATION", "600"),
    ]);
    app.signed_in_ann().await;
    app.auth.rotate_keys().await.unwrap();
    app.advance(120);
    app.auth.rotate_keys().await.unwrap();
    app.advance(120);
    let (_, stop) = tokio::sync::watch::channel(false);
    // Both older keys retired; neither is past its time yet.
    assert_eq!(app.auth.sweep(&stop).await.unwrap().signing_keys, 0);
    app.advance(600 + 60);
    let swept = app.auth.sweep(&stop).await.unwrap();
    assert_eq!(swept.signing_keys, 2);
    assert_eq!(app.store.signing_keys("EdDSA").await.unwrap().len(), 1);
    assert_eq!(jwks(&app.router).await.keys.len(), 1);
}

#[tokio::test]
async fn the_keys_commands_list_and_rotate() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    let first = kid_of(&app.signed_in_ann().await.access_token());
    let rotated = app.cli(&["keys", "rotate"], "");
    assert!(rotated.status.success(), "{rotated:?}");
    let out = String::from_utf8_lossy(&rotated.stdout).to_string();
    assert!(out.starts_with("added key "), "{out}");
    let listed = app.cli(&["keys", "list"], "");
    assert!(listed.status.success(), "{listed:?}");
    let list = String::from_utf8_lossy(&listed.stdout).to_string();
    let line_of = |kid: &str| {
        list.lines()
            .find(|l| l.starts_with(kid))
            .unwrap_or_else(|| panic!("{kid} in {list}"))
            .to_owned()
    };
    assert!(line_of(&first).contains(" signing "), "{list}");
    assert_eq!(list.lines().count(), 3, "a heading and two keys: {list}");
    assert!(list.contains(" published "), "{list}");

    let hs = test_app!();
    let refused = hs.cli(&["keys", "rotate"], "");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("JWT_SECRET_PREVIOUS"));
}


#[tokio::test]
async fn with_the_store_down_the_known_keys_keep_signing_and_verifying() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    let access = app.signed_in_ann().await.access_token();
    let before = jwks(&app.router).await;
    app.store.close().await;
    // Past the reload: the store is asked, does not answer, and the keys
    // already known stand (asked again only after the next period).
    app.advance(120);
    assert_eq!(protected(&app.router, &access).await, StatusCode::OK);
    assert_eq!(kids(&jwks(&app.router).await), kids(&before));
}

#[tokio::test]
async fn instances_starting_at_once_make_one_first_key() {
    let Some(pair) = Pair::start(super::STORE, &[("ACCESS_TOKEN_ALGORITHM", "ES256")]).await
    else {
        return;
    };
    let mut requests = tokio::task::JoinSet::new();
    for i in 0..40 {
        let router = pair.apps[i % 2].1.clone();
        requests.spawn(async move { kids(&jwks(&router).await) });
    }
    let answers = requests.join_all().await;
    let stored = pair.apps[0].0.signing_keys().await.unwrap();
    assert_eq!(stored.len(), 1, "{stored:?}");
    for answer in answers {
        assert_eq!(answer, HashSet::from([stored[0].kid.clone()]));
    }
}

/// A request reads the clock before the first key exists and signs after it
/// was made (with the real clock, the second can turn in between): it gets
/// a token from that key, not a `500`.
#[tokio::test]
async fn a_token_issued_at_a_time_before_the_first_key_is_signed_by_it() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "ES256")]);
    app.add_user("ann", PASSWORD).await;
    app.advance(5);
    let first = kids(&jwks(&app.router).await);
    app.advance(-5);
    let login = app.login("ann", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(HashSet::from([kid_of(&login.access_token())]), first);
}


async fn log_in(router: &axum::Router, username: &str) -> TestResponse {
    call(
        router,
        json_post("/login", &json!({ "username": username, "password": PASSWORD })),
    )
    .await
}

#[tokio::test]
async fn a_changed_refresh_secret_never_breaks_sign_in_and_leaves_no_stray_session() {
    for alg in ["EdDSA", "ES256"] {
        let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", alg)]);
        let old = app.signed_in_ann().await.access_token();
        // After a leak: a new secret, and no previous one.
        let auth = app.restarted_auth(&[("JWT_REFRESH_SECRET", NEW_REFRESH_SECRET)]);
        let router = router_of(&auth);
        for _ in 0..3 {
            let login = log_in(&router, "ann").await;
            assert_eq!(login.status, StatusCode::OK, "{alg}: {}", login.text());
            let access = login.access_token();
            assert_ne!(kid_of(&access), kid_of(&old), "{alg}: a fresh key signs");
            let set = jwks(&router).await;
            let algorithm = if alg == "EdDSA" { Algorithm::EdDSA } else { Algorithm::ES256 };
            verify_with(&set, &access, algorithm).expect("the fresh key is published at once");
            let (_, _) = rotate(&router, &login.refresh_token()).await;
        }
        // One session per login that answered, none that no client received.
        let ann = app.store.user_by_name("ann").await.unwrap().unwrap();
        let live = app.store.active_sessions(ann.id, START).await.unwrap();
        assert_eq!(live.len(), 4, "{alg}");
        let keys = auth.signing_keys().await.unwrap();
        assert_eq!(keys.len(), 2, "{alg}: one fresh key, made once: {keys:?}");
        assert!(!keys[0].can_sign && keys[1].can_sign, "{alg}: {keys:?}");
    }
}

#[tokio::test]
async fn a_revoked_key_stops_verifying_and_leaves_the_jwks_at_once() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    let ann = app.signed_in_ann().await;
    let old = ann.access_token();
    let kid = kid_of(&old);
    assert_eq!(protected(&app.router, &old).await, StatusCode::OK);

    let revoked = app.auth.revoke_key(&kid).await.unwrap();
    assert_eq!(revoked, latchkey::KeyRevocation::Revoked { signing: None });
    assert_eq!(protected(&app.router, &old).await, StatusCode::UNAUTHORIZED);
    assert!(!kids(&jwks(&app.router).await).contains(&kid));
    assert_eq!(
        app.auth.revoke_key(&kid).await.unwrap(),
        latchkey::KeyRevocation::Unknown,
        "revoked once"
    );

    // The secret that derives it has leaked: no key is derived from it again,
    // and nothing is written for a token that cannot be signed.
    let sid = claims_of(&old)["sid"].as_str().unwrap().to_owned();
    let refused = call(
        &app.router,
        Request::post("/token")
            .header(header::COOKIE, format!("__Host-refresh_token={}", ann.refresh_token()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text());
    assert_eq!(app.store.session(&sid).await.unwrap().unwrap().generation, 0);
    assert_eq!(app.auth.signing_keys().await.unwrap().len(), 1, "no key from a leaked secret");
    // A login meets the same refusal before it writes anything: no session
    // that no client received.
    let user = app.auth.user_named("ann").await.unwrap().unwrap();
    let now = latchkey::clock::Clock::now(&app.clock);
    let before = app.store.active_sessions(user.id, now).await.unwrap().len();
    let login = log_in(&app.router, "ann").await;
    assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE, "{}", login.text());
    assert_eq!(app.store.active_sessions(user.id, now).await.unwrap().len(), before);

    // Under a new secret a fresh key signs at once.
    let auth = app.restarted_auth(&[("JWT_REFRESH_SECRET", NEW_REFRESH_SECRET)]);
    let login = log_in(&router_of(&auth), "ann").await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let fresh = kid_of(&login.access_token());
    let states: Vec<(String, KeyState)> = auth
        .signing_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert_eq!(states, [(kid.clone(), KeyState::Revoked), (fresh, KeyState::Signing)]);

    // An instance that starts now never loads the revoked key.
    assert_eq!(protected(&router_of(&auth), &old).await, StatusCode::UNAUTHORIZED);
}

/// README, "After a leak", step by step, with the binary: a new refresh
/// secret, a restart, `latchkey keys revoke` for every key the new secret
/// cannot sign with, and `SIGHUP`.
#[tokio::test]
async fn the_after_a_leak_procedure_works_as_written() {
    let app = test_app!(&[("ACCESS_TOKEN_ALGORITHM", "EdDSA")]);
    app.add_user("ann", PASSWORD).await;
    let http = reqwest::Client::new();
    let login = |server: &process::ChildServer| {
        let request = http
            .post(server.url("/login"))
            .json(&json!({ "username": "ann", "password": PASSWORD }));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            response.json::<Value>().await.unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let protected = |server: &process::ChildServer, token: &str| {
        let request = http.get(server.url("/protected")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let mut vars = app.vars.clone();
    vars.insert("BIND".into(), "127.0.0.1:0".into());
    vars.insert("COOKIE_SECURE".into(), "false".into());
    let server = process::ChildServer::start(&vars, app.dir.path());
    let leaked = login(&server).await;
    let _ = server.stop();

    // Steps 1 and 2: a new secret, no previous one, every instance restarted.
    vars.insert("JWT_REFRESH_SECRET".into(), NEW_REFRESH_SECRET.into());
    let server = process::ChildServer::start(&vars, app.dir.path());
    let fresh = login(&server).await;
    assert_ne!(kid_of(&fresh), kid_of(&leaked));
    assert!(
        server.stderr().contains("a new key signs at once"),
        "{}",
        server.stderr()
    );

    // Step 3: revoke every key this secret cannot sign with.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(args)
            .env_clear()
            .envs(&vars)
            .current_dir(app.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{args:?}: {output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = cli(&["keys", "list"]);
    let stale: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains("cannot sign"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(stale, [kid_of(&leaked).as_str()], "{listed}");
    for kid in stale {
        cli(&["keys", "revoke", kid]);
    }

    // Step 4: SIGHUP; the leaked key's tokens are refused from then on.
    server.hang_up();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while protected(&server, &leaked).await != 401 {
        assert!(std::time::Instant::now() < deadline, "{}", server.stderr());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(protected(&server, &fresh).await, 200);
    let set: JwkSet = http
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kids(&set), HashSet::from([kid_of(&fresh)]));
    assert_eq!(protected(&server, &login(&server).await).await, 200);
}

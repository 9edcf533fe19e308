//! Access and refresh tokens: their shape, and forged or confused tokens.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::*;

const ACCESS_SECRET: &str = "test-access-secret-0123456789abcdefghijkl";
const REFRESH_SECRET: &str = "test-refresh-secret-0123456789abcdefghijk";

/// The test secrets, read from the harness so the two can never drift apart.
fn secrets() -> (String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = test_vars(&dir, &[]);
    let access = vars["JWT_SECRET"].clone();
    let refresh = vars["JWT_REFRESH_SECRET"].clone();
    assert_eq!(access, ACCESS_SECRET);
    assert_eq!(refresh, REFRESH_SECRET);
    (access, refresh)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JSON of one dot-separated part of a JWT (0: header, 1: payload).
fn part(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("JWT segment");
    let bytes = URL_SAFE_NO_PAD.decode(segment).expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON segment")
}

/// A JWT signed with `secret` using `alg`, with the given `typ` header.
fn sign(alg: Algorithm, typ: Option<&str>, claims: &Value, secret: &str) -> String {
    let mut header = Header::new(alg);
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("encode")
}

/// An unsigned token: `alg: none` and an empty signature.
fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn with(claims: &Value, key: &str, value: Value) -> Value {
    let mut claims = claims.clone();
    claims[key] = value;
    claims
}

fn get_with_authorization(path: &str, authorization: &str) -> Request<Body> {
    Request::get(path)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .expect("request")
}

/// 401, JSON `invalid_token`, and an RFC 6750 challenge naming the error.
fn assert_invalid_token(response: &TestResponse, what: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        response.text()
    );
    assert_eq!(response.error_code(), "invalid_token", "{what}");
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{what}: {challenge:?}"
    );
    response.assert_no_store();
}

/// 401 with a bare `Bearer` challenge: no token was (usably) sent.
fn assert_bare_challenge(response: &TestResponse, what: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        response.text()
    );
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
    assert!(challenge.contains("realm="), "{what}: {challenge:?}");
    assert!(!challenge.contains("error="), "{what}: {challenge:?}");
    assert!(response.json()["error"].is_string(), "{what}: JSON error");
}

async fn assert_refresh_refused(app: &TestApp, token: &str, what: &str) {
    let response = app.refresh(token).await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        response.text()
    );
    assert_eq!(response.error_code(), "invalid_refresh_token", "{what}");
    response.assert_cookie_cleared();
}

// ---------------------------------------------------------------------------
// Genuine access tokens.

#[tokio::test]
async fn a_valid_access_token_opens_protected_and_me() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let access = app.login("ann", PASSWORD).await.access_token();
    let expected_user = json!({ "id": ann.id.to_string(), "username": "ann", "role": "user" });

    let protected = app.get_with_bearer("/protected", &access).await;
    assert_eq!(protected.status, StatusCode::OK, "{}", protected.text());
    protected.assert_no_store();
    let body = protected.json();
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(body["user"], expected_user);

    let me = app.get_with_bearer("/me", &access).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    me.assert_no_store();
    let body = me.json();
    assert_eq!(body["user"], expected_user);
    let sid = body["session_id"].as_str().expect("session_id");
    assert_eq!(sid, part(&access, 1)["sid"], "the token's session");

    // The scheme name is case-insensitive (RFC 7235 §2.1).
    let lower = app
        .send(get_with_authorization(
            "/protected",
            &format!("bearer {access}"),
        ))
        .await;
    assert_eq!(lower.status, StatusCode::OK, "{}", lower.text());
}

#[tokio::test]
async fn the_access_token_is_an_hs256_at_jwt_with_the_documented_claims() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let access = app.login("ann", PASSWORD).await.access_token();
    let other = app.login("ann", PASSWORD).await.access_token();

    assert_eq!(access.split('.').count(), 3);
    let header = part(&access, 0);
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["alg"], "HS256", "{header}");

    let claims = part(&access, 1);
    assert!(
        claims["iss"].as_str().is_some_and(|s| !s.is_empty()),
        "{claims}"
    );
    assert!(
        claims["aud"].is_string() || claims["aud"].is_array(),
        "{claims}"
    );
    assert_eq!(
        claims["sub"],
        ann.id.to_string(),
        "sub is the id as a string"
    );
    assert_eq!(claims["username"], "ann");
    assert_eq!(claims["role"], "user");
    let sid = claims["sid"].as_str().expect("sid");
    // 128 bits in base64url take at least 22 characters.
    assert!(sid.len() >= 22, "session id too short: {sid}");
    assert_eq!(claims["iat"], START);
    assert_eq!(claims["exp"], START + 900);
    let jti = claims["jti"].as_str().expect("jti");
    assert!(!jti.is_empty());

    let other_claims = part(&other, 1);
    assert_ne!(other_claims["jti"], claims["jti"], "jti is unique");
    assert_ne!(other_claims["sid"], claims["sid"], "one session per login");
}

// ---------------------------------------------------------------------------
// Forged and confused access tokens.

#[tokio::test]
async fn a_resigned_copy_of_a_genuine_access_token_is_accepted_so_the_forgeries_below_are_fair() {
    let (access_secret, _) = secrets();
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let claims = part(&access, 1);

    let resigned = sign(Algorithm::HS256, Some("at+jwt"), &claims, &access_secret);
    let response = app.get_with_bearer("/protected", &resigned).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn access_tokens_with_another_algorithm_are_rejected() {
    let (access_secret, _) = secrets();
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let claims = part(&access, 1);

    let cases = [
        (
            "alg none",
            unsigned(&json!({ "alg": "none", "typ": "at+jwt" }), &claims),
        ),
        (
            "alg None",
            unsigned(&json!({ "alg": "None", "typ": "at+jwt" }), &claims),
        ),
        (
            "HS384 with JWT_SECRET",
            sign(Algorithm::HS384, Some("at+jwt"), &claims, &access_secret),
        ),
        (
            "HS512 with JWT_SECRET",
            sign(Algorithm::HS512, Some("at+jwt"), &claims, &access_secret),
        ),
    ];
    for (what, token) in &cases {
        let response = app.get_with_bearer("/protected", token).await;
        assert_invalid_token(&response, what);
    }
}

#[tokio::test]
async fn access_tokens_with_the_wrong_audience_issuer_or_type_are_rejected() {
    let (access_secret, _) = secrets();
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    let refresh_typ = part(&login.refresh_token(), 0)["typ"]
        .as_str()
        .expect("refresh typ")
        .to_owned();
    let claims = part(&access, 1);
    let hs256 =
        |typ: Option<&str>, claims: &Value| sign(Algorithm::HS256, typ, claims, &access_secret);

    let cases = [
        (
            "wrong aud",
            hs256(Some("at+jwt"), &with(&claims, "aud", json!("someone-else"))),
        ),
        (
            "refresh aud",
            hs256(
                Some("at+jwt"),
                &with(
                    &claims,
                    "aud",
                    json!(format!(
                        "{}:refresh",
                        claims["aud"].as_str().unwrap_or_default()
                    )),
                ),
            ),
        ),
        (
            "wrong iss",
            hs256(
                Some("at+jwt"),
                &with(&claims, "iss", json!("https://evil.example")),
            ),
        ),
        ("typ JWT", hs256(Some("JWT"), &claims)),
        ("no typ", hs256(None, &claims)),
        ("refresh typ", hs256(Some(&refresh_typ), &claims)),
        (
            "aud in an array",
            hs256(
                Some("at+jwt"),
                &with(&claims, "aud", json!([claims["aud"].clone()])),
            ),
        ),
    ];
    let mut cases = cases.to_vec();
    // Each registered claim latchkey needs, missing in turn (RFC 7519 §4.1).
    for claim in ["iss", "aud", "sub", "exp", "iat"] {
        let mut without = claims.clone();
        without.as_object_mut().expect("claims").remove(claim);
        cases.push((claim, hs256(Some("at+jwt"), &without)));
    }
    // A fourth part: whatever the split, never a valid token.
    cases.push(("four parts", format!("{access}.{}", b64(b"{}"))));
    cases.push(("two parts", access.rsplit_once('.').expect("parts").0.to_owned()));
    for (what, token) in &cases {
        let response = app.get_with_bearer("/protected", token).await;
        assert_invalid_token(&response, what);
    }
}

#[tokio::test]
async fn a_tampered_access_token_is_rejected() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let segments: Vec<&str> = access.split('.').collect();
    let claims = with(&part(&access, 1), "role", json!("admin"));
    let tampered = format!(
        "{}.{}.{}",
        segments[0],
        b64(claims.to_string().as_bytes()),
        segments[2]
    );

    let response = app.get_with_bearer("/protected", &tampered).await;
    assert_invalid_token(&response, "role changed, signature kept");
}

#[tokio::test]
async fn an_expired_access_token_is_rejected() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    app.advance(899);
    let response = app.get_with_bearer("/protected", &access).await;
    assert_eq!(response.status, StatusCode::OK, "valid until exp");

    app.advance(1);
    let response = app.get_with_bearer("/protected", &access).await;
    assert_invalid_token(&response, "expired");
    let response = app.get_with_bearer("/me", &access).await;
    assert_invalid_token(&response, "expired, /me");
}

#[tokio::test]
async fn refresh_tokens_and_tokens_signed_with_the_refresh_secret_are_not_access_tokens() {
    let (_, refresh_secret) = secrets();
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    let refresh = login.refresh_token();
    let claims = part(&access, 1);

    let cases = [
        ("the refresh token", refresh.clone()),
        (
            "access claims signed with JWT_REFRESH_SECRET",
            sign(Algorithm::HS256, Some("at+jwt"), &claims, &refresh_secret),
        ),
    ];
    for (what, token) in &cases {
        let response = app.get_with_bearer("/protected", token).await;
        assert_invalid_token(&response, what);
    }
}

#[tokio::test]
async fn garbage_bearer_tokens_are_rejected() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let four_segments = format!("{access}.AAAA");

    for (what, token) in [
        ("abc", "abc"),
        ("a.b.c", "a.b.c"),
        ("four segments", four_segments.as_str()),
        ("empty JSON parts", "e30.e30.e30"),
    ] {
        let response = app.get_with_bearer("/protected", token).await;
        assert_invalid_token(&response, what);
    }
}

#[tokio::test]
async fn an_empty_bearer_token_is_an_invalid_token_without_trailing_space() {
    let app = test_app!();
    app.signed_in_ann().await;

    let response = app
        .send(get_with_authorization("/protected", "Bearer"))
        .await;
    assert_invalid_token(&response, "Authorization: Bearer");
}

#[tokio::test]
async fn an_empty_bearer_token_is_an_invalid_token() {
    let app = test_app!();
    app.signed_in_ann().await;

    let response = app.get_with_bearer("/protected", "").await;
    assert_invalid_token(&response, "Authorization: `Bearer ` (empty token)");
}

// ---------------------------------------------------------------------------
// Where the access token may come from.

#[tokio::test]
async fn without_an_authorization_header_the_challenge_names_no_error() {
    let app = test_app!();
    app.signed_in_ann().await;

    let response = app
        .send(
            Request::get("/protected")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_bare_challenge(&response, "no Authorization");
    response.assert_no_store();

    let me = app
        .send(Request::get("/me").body(Body::empty()).expect("request"))
        .await;
    assert_bare_challenge(&me, "no Authorization, /me");
}

#[tokio::test]
async fn a_basic_authorization_header_is_not_accepted() {
    let app = test_app!();
    app.signed_in_ann().await;

    let response = app
        .send(get_with_authorization("/protected", "Basic YW5uOnB3"))
        .await;
    assert_eq!(
        response.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        response.text()
    );
    let challenge = response.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
}

#[tokio::test]
async fn the_access_token_is_not_read_from_a_query_string_or_a_cookie() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    let query = app
        .send(
            Request::get(format!("/protected?access_token={access}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_bare_challenge(&query, "query string");

    for cookie in [
        format!("access_token={access}"),
        format!("__Host-access_token={access}"),
        format!("__Host-refresh_token={access}"),
    ] {
        let response = app
            .send(
                Request::get("/protected")
                    .header(header::COOKIE, cookie.clone())
                    .body(Body::empty())
                    .expect("request"),
            )
            .await;
        let name = cookie.split('=').next().unwrap_or_default().to_owned();
        assert_bare_challenge(&response, &format!("cookie {name}"));
    }
}

// ---------------------------------------------------------------------------
// Forged and confused refresh tokens.

#[tokio::test]
async fn an_access_token_is_never_accepted_as_the_refresh_cookie() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();

    assert_refresh_refused(&app, &access, "access token as refresh cookie").await;

    // Nothing happened to the session.
    let response = app.refresh(&login.refresh_token()).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn forged_refresh_tokens_are_refused_and_harm_no_session() {
    let (access_secret, refresh_secret) = secrets();
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let header = part(&refresh, 0);
    let claims = part(&refresh, 1);
    let refresh_typ = header["typ"].as_str().expect("refresh typ").to_owned();
    assert!(
        !refresh_typ.eq_ignore_ascii_case("at+jwt"),
        "refresh and access tokens have distinct types"
    );

    let cases = [
        (
            "typ at+jwt, refresh secret",
            sign(Algorithm::HS256, Some("at+jwt"), &claims, &refresh_secret),
        ),
        (
            "typ JWT, refresh secret",
            sign(Algorithm::HS256, Some("JWT"), &claims, &refresh_secret),
        ),
        (
            "no typ, refresh secret",
            sign(Algorithm::HS256, None, &claims, &refresh_secret),
        ),
        (
            "signed with JWT_SECRET",
            sign(
                Algorithm::HS256,
                Some(&refresh_typ),
                &claims,
                &access_secret,
            ),
        ),
        (
            "HS512 with the refresh secret",
            sign(
                Algorithm::HS512,
                Some(&refresh_typ),
                &claims,
                &refresh_secret,
            ),
        ),
        (
            "alg none",
            unsigned(&json!({ "alg": "none", "typ": refresh_typ }), &claims),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::HS256,
                Some(&refresh_typ),
                &with(&claims, "aud", json!("someone-else")),
                &refresh_secret,
            ),
        ),
    ];
    for (what, token) in &cases {
        assert_refresh_refused(&app, token, what).await;
    }

    // The forgeries changed nothing; a faithful re-signing (the control that
    // shows the forgeries differ only where they claim to) still works.
    let control = sign(
        Algorithm::HS256,
        Some(&refresh_typ),
        &claims,
        &refresh_secret,
    );
    let response = app.refresh(&control).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

// ---------------------------------------------------------------------------
// Statelessness.

#[tokio::test]
async fn access_tokens_stay_valid_after_logout_until_they_expire() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();

    let logout = app.logout(&login.refresh_token()).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);

    let response = app.get_with_bearer("/protected", &access).await;
    assert_eq!(
        response.status,
        StatusCode::OK,
        "stateless: still valid after logout: {}",
        response.text()
    );

    app.advance(900);
    let response = app.get_with_bearer("/protected", &access).await;
    assert_invalid_token(&response, "expired after logout");
}

//! Every endpoint of the README's "Endpoints": the success, each listed
//! failure, and the headers a browser or client relies on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use latchkey::store::NewUser;
use serde_json::{Value, json};

use crate::helpers::*;

/// The host name the "browser" addresses the service by in origin tests.
const HOST: &str = "latchkey.test";
const EVIL: &str = "https://evil.example";
const SPA: &str = "https://spa.example";

fn cookie(refresh: &str) -> String {
    format!("__Host-refresh_token={refresh}")
}

/// Percent-encodes everything but unreserved characters, as a browser's form would.
fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn login_form(username: &str, password: &str, next: Option<&str>) -> String {
    let mut body = format!("username={}&password={}", enc(username), enc(password));
    if let Some(next) = next {
        body.push_str(&format!("&next={}", enc(next)));
    }
    body
}

/// A form `POST /login` with extra headers (name, value).
fn form_login_request(body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder =
        Request::post("/login").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// An empty-bodied request with headers (name, value).
fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

fn assert_no_store_on(what: &str, response: &TestResponse) {
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "Cache-Control on {what} ({})",
        response.status
    );
    assert_eq!(
        response.header("pragma"),
        Some("no-cache"),
        "Pragma on {what} ({})",
        response.status
    );
}

async fn register(app: &TestApp, username: &str, password: &str) -> TestResponse {
    app.send(json_post(
        "/register",
        &json!({ "username": username, "password": password }),
    ))
    .await
}

/// Signs `username` in (creating the account) with a `User-Agent`.
async fn login_with_agent(app: &TestApp, username: &str, agent: &str) -> TestResponse {
    let mut request = json_post(
        "/login",
        &json!({ "username": username, "password": PASSWORD }),
    );
    request
        .headers_mut()
        .insert(header::USER_AGENT, agent.parse().unwrap());
    let response = app.send(request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response
}

async fn sessions_of(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.get_with_bearer("/sessions", access).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.json().as_array().expect("a JSON array").clone()
}

async fn session_id_of(app: &TestApp, login: &TestResponse) -> Value {
    let me = app
        .get_with_bearer("/me", &login.access_token())
        .await
        .json();
    me["session_id"].clone()
}

/// The audit events so far, newest first.
async fn events(app: &TestApp) -> Vec<latchkey::store::AuditEvent> {
    let mut events = audit_events(&*app.store).await;
    events.reverse();
    events
}

// ---------------------------------------------------------------- POST /login (form)

#[tokio::test]
async fn form_login_redirects_to_the_requested_page_with_a_working_refresh_cookie() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let response = app
        .send(form_post(
            "/login",
            &login_form("ann", PASSWORD, Some("/somewhere")),
        ))
        .await;

    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    assert_eq!(response.header("location"), Some("/somewhere"));
    let cookie = response.refresh_cookie().expect("refresh cookie");
    assert_eq!(cookie.name(), "__Host-refresh_token");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_no_store_on("form login", &response);
    let refreshed = app.refresh(&response.refresh_token()).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.text());
}

#[tokio::test]
async fn form_login_never_redirects_to_another_site() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    for next in [
        Some("//evil.com"),
        Some("/\\evil.com"),
        Some("https://evil.com"),
        Some("http://evil.com/app"),
        Some("evil.com"),
        Some("/\t/evil.com"),
        None,
    ] {
        let response = app
            .send(form_post("/login", &login_form("ann", PASSWORD, next)))
            .await;
        assert_eq!(response.status, StatusCode::SEE_OTHER, "next={next:?}");
        assert_eq!(response.header("location"), Some("/app"), "next={next:?}");
        assert!(response.refresh_cookie().is_some(), "next={next:?}");
    }
}

#[tokio::test]
async fn failed_form_login_shows_the_login_form_again_with_an_error() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let response = app
        .send(form_post(
            "/login",
            &login_form("ann", "not the password", Some("/somewhere")),
        ))
        .await;

    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{:?}",
        response.header("content-type")
    );
    let html = response.text();
    assert!(html.contains(r#"action="/login""#), "{html}");
    assert!(html.contains(r#"name="username""#), "{html}");
    assert!(html.contains(r#"name="password""#), "{html}");
    assert!(html.contains("Wrong username or password"), "{html}");
    assert!(
        html.contains(r#"value="/somewhere""#),
        "the next page survives: {html}"
    );
    assert!(
        !html.contains("not the password"),
        "the password is never echoed"
    );
    assert!(response.refresh_cookie().is_none());
    assert_no_store_on("failed form login", &response);
}

#[tokio::test]
async fn logging_in_again_ends_the_session_of_the_cookie_sent_along() {
    let app = test_app!();
    let first = app.signed_in_ann().await.refresh_token();

    let mut again = json_post(
        "/login",
        &json!({ "username": "ann", "password": PASSWORD }),
    );
    again
        .headers_mut()
        .insert(header::COOKIE, cookie(&first).parse().unwrap());
    let second = app.send(again).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    let second = second.refresh_token();

    let old = app.refresh(&first).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "{}", old.text());
    let new = app.refresh(&second).await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.text());
    assert!(
        app.event_kinds()
            .await
            .contains(&"replaced_by_login".to_owned())
    );
}

#[tokio::test]
async fn form_login_also_ends_the_session_of_the_cookie_sent_along() {
    let app = test_app!();
    let first = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(form_login_request(
            &login_form("ann", PASSWORD, None),
            &[("cookie", &cookie(&first))],
        ))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER);

    assert_eq!(app.refresh(&first).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_failed_login_leaves_the_cookie_session_alone() {
    let app = test_app!();
    let first = app.signed_in_ann().await.refresh_token();

    let mut wrong = json_post(
        "/login",
        &json!({ "username": "ann", "password": "not the password" }),
    );
    wrong
        .headers_mut()
        .insert(header::COOKIE, cookie(&first).parse().unwrap());
    assert_eq!(app.send(wrong).await.status, StatusCode::UNAUTHORIZED);

    assert_eq!(app.refresh(&first).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------- no-store everywhere

#[tokio::test]
async fn credential_endpoints_are_never_cached_on_success_or_failure() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    assert_no_store_on("login 200", &login);
    let access = login.access_token();
    let refresh = login.refresh_token();

    assert_no_store_on("login 401", &app.login("ann", "wrong password").await);
    assert_no_store_on(
        "login 400",
        &app.send(json_post("/login", &json!({ "username": "ann" })))
            .await,
    );
    assert_no_store_on(
        "login 415",
        &app.send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from("ann"))
                .unwrap(),
        )
        .await,
    );
    assert_no_store_on(
        "login 413",
        &app.send(json_post(
            "/login",
            &json!({ "username": "ann", "password": "x".repeat(5000) }),
        ))
        .await,
    );
    assert_no_store_on(
        "form login 401",
        &app.send(form_post("/login", &login_form("ann", "wrong pw!", None)))
            .await,
    );

    let rotated = app.refresh(&refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    assert_no_store_on("token 200", &rotated);
    assert_no_store_on(
        "token 401 missing",
        &app.send(request(Method::POST, "/token", &[])).await,
    );
    assert_no_store_on("token 401 invalid", &app.refresh("garbage").await);
    assert_no_store_on(
        "token 403",
        &app.send(request(
            Method::POST,
            "/token",
            &[
                ("origin", EVIL),
                ("cookie", &cookie(&rotated.refresh_token())),
            ],
        ))
        .await,
    );

    assert_no_store_on("me 200", &app.get_with_bearer("/me", &access).await);
    assert_no_store_on("me 401", &app.get_with_bearer("/me", "garbage").await);
    assert_no_store_on(
        "me 401 no token",
        &app.send(request(Method::GET, "/me", &[])).await,
    );
    assert_no_store_on(
        "protected 200",
        &app.get_with_bearer("/protected", &access).await,
    );
    assert_no_store_on(
        "sessions 200",
        &app.get_with_bearer("/sessions", &access).await,
    );
    assert_no_store_on(
        "sessions 401",
        &app.get_with_bearer("/sessions", "garbage").await,
    );
    assert_no_store_on(
        "delete session 404",
        &app.delete_with_bearer("/sessions/nope", &access).await,
    );

    assert_no_store_on(
        "logout 403",
        &app.send(request(Method::POST, "/logout", &[("origin", EVIL)]))
            .await,
    );
    assert_no_store_on("logout 204", &app.logout(&rotated.refresh_token()).await);
}

// ---------------------------------------------------------------- POST /logout

#[tokio::test]
async fn logout_clears_the_cookie_and_ends_the_session() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app.logout(&refresh).await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert!(response.body.is_empty());
    response.assert_cookie_cleared();
    let after = app.refresh(&refresh).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    assert!(app.event_kinds().await.contains(&"logout".to_owned()));
}

#[tokio::test]
async fn logout_without_a_cookie_still_succeeds() {
    let app = test_app!();

    let response = app.send(request(Method::POST, "/logout", &[])).await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    response.assert_cookie_cleared();
}

#[tokio::test]
async fn logout_from_the_html_form_redirects_to_the_login_page() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(
            Request::post("/logout")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie(&refresh))
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location"), Some("/login"));
    response.assert_cookie_cleared();
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_access_token_stays_valid_after_logout_until_it_expires() {
    // Documented: access tokens are stateless (README, "Tokens").
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    assert_eq!(
        app.logout(&login.refresh_token()).await.status,
        StatusCode::NO_CONTENT
    );

    assert_eq!(
        app.get_with_bearer("/protected", &access).await.status,
        StatusCode::OK
    );
    app.advance(900);
    assert_eq!(
        app.get_with_bearer("/protected", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logging_out_with_a_superseded_cookie_still_ends_the_session() {
    let app = test_app!();
    let old = app.signed_in_ann().await.refresh_token();
    app.advance(60);
    let current = app.refresh(&old).await.refresh_token();

    let response = app.logout(&old).await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(app.refresh(&current).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logging_out_with_an_expired_cookie_still_succeeds() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    app.advance(86_401);

    let response = app.logout(&refresh).await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    response.assert_cookie_cleared();
}

#[tokio::test]
async fn get_and_head_on_logout_and_token_are_refused_with_405_and_an_allow_header() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    for path in ["/logout", "/token"] {
        let head = app
            .send(request(
                Method::HEAD,
                path,
                &[("cookie", &cookie(&refresh))],
            ))
            .await;
        assert_eq!(head.status, StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
        assert!(head.refresh_cookie().is_none(), "HEAD {path}");

        let response = app
            .send(request(Method::GET, path, &[("cookie", &cookie(&refresh))]))
            .await;
        assert_eq!(response.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
        assert_eq!(response.error_code(), "method_not_allowed", "{path}");
        assert_no_store_on(&format!("GET {path}"), &response);
        let allow = response.header("allow").unwrap_or_default();
        assert!(allow.contains("POST"), "{path}: Allow: {allow:?}");
        assert!(response.refresh_cookie().is_none(), "{path}");
    }
    // Nothing changed: the session still works.
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::OK);
}

// ---------------------------------------------------------------- cross-site protection

#[tokio::test]
async fn a_foreign_origin_cannot_refresh_log_out_or_post_the_login_form() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let with_cookie = cookie(&refresh);
    let headers = [("origin", EVIL), ("cookie", with_cookie.as_str())];

    let token = app.send(request(Method::POST, "/token", &headers)).await;
    let logout = app.send(request(Method::POST, "/logout", &headers)).await;
    let login = app
        .send(form_login_request(
            &login_form("ann", PASSWORD, None),
            &headers,
        ))
        .await;

    for (what, response) in [("token", &token), ("logout", &logout), ("login", &login)] {
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(response.error_code(), "forbidden_origin", "{what}");
        assert!(
            response.refresh_cookie().is_none(),
            "{what}: no cookie change"
        );
    }
    let rejected = app
        .event_kinds()
        .await
        .into_iter()
        .filter(|k| k == "origin_rejected")
        .count();
    assert_eq!(rejected, 3);
    // None of them touched the session.
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_origin_rejected_event_names_the_origin() {
    let app = test_app!();

    app.send(request(Method::POST, "/token", &[("origin", EVIL)]))
        .await;

    let event = events(&app)
        .await
        .into_iter()
        .find(|e| e.kind == "origin_rejected")
        .expect("an origin_rejected event");
    assert!(
        event.detail.as_deref().unwrap_or_default().contains(EVIL),
        "{event:?}"
    );
}

#[tokio::test]
async fn the_origin_rejected_event_names_the_client_address() {
    let app = test_app!();

    app.send(request(Method::POST, "/token", &[("origin", EVIL)]))
        .await;

    let event = events(&app)
        .await
        .into_iter()
        .find(|e| e.kind == "origin_rejected")
        .expect("an origin_rejected event");
    assert_eq!(event.ip.as_deref(), Some("203.0.113.7"));
}

#[tokio::test]
async fn a_cross_site_fetch_without_origin_is_refused() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let with_cookie = cookie(&refresh);
    let headers = [
        ("sec-fetch-site", "cross-site"),
        ("cookie", with_cookie.as_str()),
    ];

    let token = app.send(request(Method::POST, "/token", &headers)).await;
    let logout = app.send(request(Method::POST, "/logout", &headers)).await;
    let login = app
        .send(form_login_request(
            &login_form("ann", PASSWORD, None),
            &headers,
        ))
        .await;

    for (what, response) in [("token", &token), ("logout", &logout), ("login", &login)] {
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{what}");
        assert_eq!(response.error_code(), "forbidden_origin", "{what}");
    }
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn an_opaque_null_origin_is_refused() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(request(
            Method::POST,
            "/token",
            &[
                ("origin", "null"),
                ("host", HOST),
                ("cookie", &cookie(&refresh)),
            ],
        ))
        .await;

    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "forbidden_origin");
}

#[tokio::test]
async fn the_same_origin_may_refresh_log_in_and_log_out() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let origin = format!("http://{HOST}");
    let browser = [
        ("host", HOST),
        ("origin", origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ];
    let with_cookie = |refresh: &str| {
        let mut headers: Vec<(&str, String)> =
            browser.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        headers.push(("cookie", cookie(refresh)));
        headers
    };

    let headers = with_cookie(&refresh);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let token = app.send(request(Method::POST, "/token", &headers)).await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.text());
    let rotated = token.refresh_token();

    let login = app
        .send(form_login_request(
            &login_form("ann", PASSWORD, Some("/app")),
            &browser,
        ))
        .await;
    assert_eq!(login.status, StatusCode::SEE_OTHER, "{}", login.text());
    assert_eq!(login.header("location"), Some("/app"));

    let headers = with_cookie(&rotated);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let logout = app.send(request(Method::POST, "/logout", &headers)).await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text());
    assert_eq!(app.refresh(&rotated).await.status, StatusCode::UNAUTHORIZED);
}

/// `/token`, with a fresh session of ann's, to a plain-HTTP latchkey
/// addressed as `host`, with `extra` headers.
async fn refresh_from(app: &TestApp, host: &str, extra: &[(&str, &str)]) -> TestResponse {
    if app.store.user_by_name("ann").await.unwrap().is_none() {
        app.add_user("ann", PASSWORD).await;
    }
    let refresh = app.login("ann", PASSWORD).await.refresh_token();
    let cookie = cookie(&refresh);
    let mut headers = vec![("host", host), ("cookie", cookie.as_str())];
    headers.extend_from_slice(extra);
    app.send(request(Method::POST, "/token", &headers)).await
}

#[tokio::test]
async fn the_same_host_over_another_scheme_is_another_origin() {
    let app = test_app!();
    // Served over plain HTTP, so `https://` is not this origin (RFC 6454 §4).
    let response = refresh_from(&app, HOST, &[("origin", &format!("https://{HOST}"))]).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "forbidden_origin");

    // Behind a proxy that ends TLS, `PUBLIC_ORIGIN` names the origin browsers see.
    let public = format!("https://{HOST}");
    let app = test_app!(&[("PUBLIC_ORIGIN", public.as_str())]);
    let response = refresh_from(&app, HOST, &[("origin", &public)]).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let response = refresh_from(&app, HOST, &[("origin", &format!("http://{HOST}"))]).await;
    assert_eq!(response.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_origin_with_a_second_port_is_refused() {
    let app = test_app!();
    let host = format!("{HOST}:3000");
    for origin in [
        format!("http://{HOST}:3000:80"),
        format!("http://{HOST}:80:3000"),
        format!("http://{HOST}:+3000"),
    ] {
        let response = refresh_from(&app, &host, &[("origin", &origin)]).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{origin}");
    }
    let own = format!("http://{HOST}:3000");
    let response = refresh_from(&app, &host, &[("origin", &own)]).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn several_origin_headers_are_refused_even_when_one_is_ours() {
    let app = test_app!();
    let own = format!("http://{HOST}");
    for pair in [[own.as_str(), EVIL], [EVIL, own.as_str()], [own.as_str(), own.as_str()]] {
        let response = refresh_from(
            &app,
            HOST,
            &[("origin", pair[0]), ("origin", pair[1])],
        )
        .await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{pair:?}");
        assert_eq!(response.error_code(), "forbidden_origin");
    }
}

#[tokio::test]
async fn fetch_metadata_is_read_whatever_its_case() {
    let app = test_app!();
    for value in ["cross-site", "Cross-Site", "CROSS-SITE"] {
        let response = refresh_from(&app, HOST, &[("sec-fetch-site", value)]).await;
        assert_eq!(response.status, StatusCode::FORBIDDEN, "{value}");
    }
    let response = refresh_from(&app, HOST, &[("sec-fetch-site", "Same-Origin")]).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

#[tokio::test]
async fn the_same_host_on_another_port_is_another_origin() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(request(
            Method::POST,
            "/token",
            &[
                ("host", HOST),
                ("origin", &format!("http://{HOST}:8080")),
                ("cookie", &cookie(&refresh)),
            ],
        ))
        .await;

    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "forbidden_origin");
}

#[tokio::test]
async fn an_allowed_cors_origin_may_refresh_and_sees_its_origin_echoed() {
    let app = test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(request(
            Method::POST,
            "/token",
            &[
                ("host", HOST),
                ("origin", SPA),
                ("cookie", &cookie(&refresh)),
            ],
        ))
        .await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("access-control-allow-origin"), Some(SPA));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    let vary: Vec<String> = response
        .headers
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("origin")),
        "a shared cache must not serve one origin's answer to another: {vary:?}"
    );

    let logout = app
        .send(request(
            Method::POST,
            "/logout",
            &[
                ("host", HOST),
                ("origin", SPA),
                ("cookie", &cookie(&response.refresh_token())),
            ],
        ))
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT, "{}", logout.text());
}

#[tokio::test]
async fn an_allowed_cors_origin_may_post_the_login_form() {
    let app = test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);
    app.add_user("ann", PASSWORD).await;

    let response = app
        .send(form_login_request(
            &login_form("ann", PASSWORD, None),
            &[("host", HOST), ("origin", SPA)],
        ))
        .await;

    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
}

#[tokio::test]
async fn a_cors_preflight_from_an_allowed_origin_is_answered_with_credentials() {
    let app = test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);

    let response = app
        .send(request(
            Method::OPTIONS,
            "/token",
            &[
                ("host", HOST),
                ("origin", SPA),
                ("access-control-request-method", "POST"),
            ],
        ))
        .await;

    assert!(
        response.status.is_success(),
        "{} {}",
        response.status,
        response.text()
    );
    assert_eq!(response.header("access-control-allow-origin"), Some(SPA));
    assert_eq!(
        response.header("access-control-allow-credentials"),
        Some("true")
    );
    let methods = response
        .header("access-control-allow-methods")
        .unwrap_or_default();
    assert!(methods.contains("POST"), "{methods:?}");
}

#[tokio::test]
async fn a_cors_preflight_from_an_unlisted_origin_gets_no_allow_origin() {
    let app = test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);

    let response = app
        .send(request(
            Method::OPTIONS,
            "/token",
            &[
                ("host", HOST),
                ("origin", EVIL),
                ("access-control-request-method", "POST"),
            ],
        ))
        .await;

    assert_eq!(response.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn an_unlisted_origin_is_refused_even_when_cors_is_configured() {
    let app = test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(request(
            Method::POST,
            "/token",
            &[
                ("host", HOST),
                ("origin", EVIL),
                ("cookie", &cookie(&refresh)),
            ],
        ))
        .await;

    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "forbidden_origin");
    assert_eq!(response.header("access-control-allow-origin"), None);
}

// ---------------------------------------------------------------- /protected and /me

#[tokio::test]
async fn protected_answers_with_the_token_holder() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let access = app.login("ann", PASSWORD).await.access_token();

    let response = app.get_with_bearer("/protected", &access).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(
        body["user"],
        json!({ "id": ann.id.to_string(), "username": "ann", "role": "user" })
    );
}

#[tokio::test]
async fn me_answers_with_the_user_and_the_current_session() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let access = app.login("ann", PASSWORD).await.access_token();

    let response = app.get_with_bearer("/me", &access).await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(
        body["user"],
        json!({ "id": ann.id.to_string(), "username": "ann", "role": "user" })
    );
    let sessions = sessions_of(&app, &access).await;
    let current = sessions
        .iter()
        .find(|s| s["current"] == true)
        .expect("a current session");
    assert_eq!(body["session_id"], current["id"]);
}

#[tokio::test]
async fn bearer_endpoints_without_a_token_ask_for_one() {
    let app = test_app!();

    for (method, path) in [
        (Method::GET, "/protected"),
        (Method::GET, "/me"),
        (Method::GET, "/sessions"),
        (Method::DELETE, "/sessions"),
        (Method::DELETE, "/sessions/abc"),
    ] {
        let response = app.send(request(method.clone(), path, &[])).await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{path}: {challenge:?}");
        assert!(
            !challenge.contains("error="),
            "{path}: no error code without a token (RFC 6750 §3.1): {challenge:?}"
        );
        response.error_code();
        assert_no_store_on(path, &response);
    }
}

#[tokio::test]
async fn bearer_endpoints_with_a_bad_or_expired_token_say_invalid_token() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    app.advance(900);

    for token in [access.as_str(), "not-a-jwt"] {
        for (method, path) in [
            (Method::GET, "/protected"),
            (Method::GET, "/me"),
            (Method::GET, "/sessions"),
            (Method::DELETE, "/sessions"),
        ] {
            let response = app.send(bearer(method.clone(), path, token)).await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            let challenge = response.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge:?}");
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{challenge:?}"
            );
            assert_eq!(response.error_code(), "invalid_token");
        }
    }
}

#[tokio::test]
async fn an_access_token_works_until_just_before_it_expires() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    app.advance(899);
    assert_eq!(
        app.get_with_bearer("/protected", &access).await.status,
        StatusCode::OK
    );
    app.advance(1);
    assert_eq!(
        app.get_with_bearer("/protected", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_refresh_token_is_not_accepted_as_an_access_token() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app.get_with_bearer("/protected", &refresh).await;

    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.error_code(), "invalid_token");
}

// ---------------------------------------------------------------- /sessions

#[tokio::test]
async fn sessions_lists_each_sign_in_with_its_device_and_marks_the_current_one() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    login_with_agent(&app, "ann", "LaptopBrowser/1.0").await;
    app.advance(60);
    let phone = login_with_agent(&app, "ann", "PhoneBrowser/2.0").await;

    let sessions = sessions_of(&app, &phone.access_token()).await;

    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in &sessions {
        for field in [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(s.get(field).is_some(), "missing {field}: {s}");
        }
        assert!(s["id"].as_str().is_some_and(|id| id.len() >= 22), "{s}");
    }
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(
        current.len(),
        1,
        "exactly one current session: {sessions:?}"
    );
    assert_eq!(current[0]["user_agent"], "PhoneBrowser/2.0");
    assert_eq!(current[0]["created_at"], "2026-01-01T00:01:00Z");
    assert_eq!(current[0]["last_used_at"], "2026-01-01T00:01:00Z");
    assert_eq!(current[0]["expires_at"], "2026-01-02T00:01:00Z");
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    assert_eq!(other["user_agent"], "LaptopBrowser/1.0");
    assert_eq!(other["created_at"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn sessions_show_the_client_address_of_each_sign_in() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    let sessions = sessions_of(&app, &access).await;

    assert_eq!(sessions[0]["ip"], "203.0.113.7");
}

#[tokio::test]
async fn sessions_over_a_real_socket_show_the_peer_address() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();

    let login = client
        .post(server.url("/login"))
        .json(&json!({ "username": "ann", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let access = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = client
        .get(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.stop().await;

    assert_eq!(sessions[0]["ip"], "127.0.0.1", "{sessions}");
}

#[tokio::test]
async fn sessions_shows_neither_ended_sessions_nor_other_users_sessions() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ended = app.login("ann", PASSWORD).await.refresh_token();
    app.login("bob", PASSWORD).await;
    let ann = app.login("ann", PASSWORD).await;
    assert_eq!(app.logout(&ended).await.status, StatusCode::NO_CONTENT);

    let sessions = sessions_of(&app, &ann.access_token()).await;

    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["current"], true);
}

#[tokio::test]
async fn revoking_one_session_ends_it_and_keeps_the_others() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let laptop = login_with_agent(&app, "ann", "LaptopBrowser/1.0").await;
    let phone = login_with_agent(&app, "ann", "PhoneBrowser/2.0").await;
    let access = phone.access_token();
    let laptop_id = sessions_of(&app, &access)
        .await
        .into_iter()
        .find(|s| s["user_agent"] == "LaptopBrowser/1.0")
        .expect("laptop session")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = app
        .delete_with_bearer(&format!("/sessions/{laptop_id}"), &access)
        .await;

    assert_eq!(
        response.status,
        StatusCode::NO_CONTENT,
        "{}",
        response.text()
    );
    assert_eq!(
        app.refresh(&laptop.refresh_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&phone.refresh_token()).await.status,
        StatusCode::OK
    );
    let remaining = sessions_of(&app, &access).await;
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0]["id"], laptop_id.as_str());
    assert!(
        app.event_kinds()
            .await
            .contains(&"session_revoked".to_owned())
    );
}

#[tokio::test]
async fn a_refresh_moves_the_sessions_last_use() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    app.advance(120);

    let refreshed = app.refresh(&login.refresh_token()).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let sessions = sessions_of(&app, &refreshed.access_token()).await;

    assert_eq!(sessions[0]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(sessions[0]["last_used_at"], "2026-01-01T00:02:00Z");
    assert_eq!(
        sessions[0]["expires_at"], "2026-01-02T00:02:00Z",
        "the idle expiry slid"
    );
}

#[tokio::test]
async fn a_session_listed_expires_at_its_absolute_end_when_that_comes_first() {
    let app = test_app!(&[("SESSION_MAX_LIFETIME", "3600")]);
    let access = app.signed_in_ann().await.access_token();

    let sessions = sessions_of(&app, &access).await;

    assert_eq!(sessions[0]["expires_at"], "2026-01-01T01:00:00Z");
}

#[tokio::test]
async fn sessions_that_ran_out_of_idle_time_are_not_listed() {
    let app = test_app!();
    let stale = app.signed_in_ann().await.refresh_token();
    app.advance(86_400);

    let fresh = app.login("ann", PASSWORD).await.access_token();
    let sessions = sessions_of(&app, &fresh).await;

    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(app.refresh(&stale).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoking_the_current_session_by_id_ends_it() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    let me = app.get_with_bearer("/me", &access).await.json();
    let id = me["session_id"].as_str().unwrap();

    let response = app
        .delete_with_bearer(&format!("/sessions/{id}"), &access)
        .await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.refresh(&login.refresh_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn another_users_session_or_an_unknown_id_cannot_be_revoked() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ann = app.login("ann", PASSWORD).await.access_token();
    let bob = app.login("bob", PASSWORD).await;
    let bob_session = sessions_of(&app, &bob.access_token()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let theirs = app
        .delete_with_bearer(&format!("/sessions/{bob_session}"), &ann)
        .await;
    let unknown = app
        .delete_with_bearer("/sessions/no-such-session-id", &ann)
        .await;

    for (what, response) in [("another user's", &theirs), ("unknown", &unknown)] {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{what}");
        assert_eq!(response.error_code(), "not_found", "{what}");
    }
    assert_eq!(theirs.body, unknown.body, "no hint that the id exists");
    assert_eq!(
        app.refresh(&bob.refresh_token()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoking_an_already_revoked_session_is_not_found() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let first = app.login("ann", PASSWORD).await;
    let second = app.login("ann", PASSWORD).await.access_token();
    let id = sessions_of(&app, &first.access_token())
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/sessions/{id}");

    assert_eq!(
        app.delete_with_bearer(&path, &second).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_with_bearer(&path, &second).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session_of_the_caller_only() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ann_one = app.login("ann", PASSWORD).await;
    let ann_two = app.login("ann", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;

    let response = app
        .delete_with_bearer("/sessions", &ann_two.access_token())
        .await;

    assert_eq!(
        response.status,
        StatusCode::NO_CONTENT,
        "{}",
        response.text()
    );
    for (what, login) in [("first", &ann_one), ("current", &ann_two)] {
        let after = app.refresh(&login.refresh_token()).await;
        assert_eq!(
            after.status,
            StatusCode::UNAUTHORIZED,
            "ann's {what} session"
        );
    }
    assert_eq!(
        app.refresh(&bob.refresh_token()).await.status,
        StatusCode::OK,
        "bob is not affected"
    );
    assert!(
        app.event_kinds()
            .await
            .contains(&"sessions_revoked_all".to_owned())
    );
}

// ---------------------------------------------------------------- POST /register

#[tokio::test]
async fn registering_creates_an_account_that_can_sign_in() {
    let app = test_app!();

    let response = register(&app, "carol", PASSWORD).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let body = response.json();
    assert_eq!(body["username"], "carol");
    let id = body["id"].as_str().expect("id is a string");
    assert!(id.parse::<i64>().is_ok(), "{id}");
    let login = app.login("carol", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let me = app
        .get_with_bearer("/me", &login.access_token())
        .await
        .json();
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["role"], "user");
    assert!(
        app.event_kinds()
            .await
            .contains(&"user_registered".to_owned())
    );
}

#[tokio::test]
async fn registering_a_taken_username_is_a_conflict() {
    let app = test_app!();
    assert_eq!(
        register(&app, "carol", PASSWORD).await.status,
        StatusCode::CREATED
    );

    let again = register(&app, "carol", "another password").await;

    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "username_taken");
    // The first password still works, the second does not.
    assert_eq!(app.login("carol", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(
        app.login("carol", "another password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn usernames_are_case_insensitive() {
    let app = test_app!();
    assert_eq!(
        register(&app, "ann", PASSWORD).await.status,
        StatusCode::CREATED
    );

    let upper = register(&app, "Ann", PASSWORD).await;

    assert_eq!(upper.status, StatusCode::CONFLICT);
    assert_eq!(upper.error_code(), "username_taken");
    assert_eq!(app.login("ANN", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn passwords_outside_8_to_256_characters_are_too_weak() {
    let app = test_app!();

    for (name, password) in [("seven", "x".repeat(7)), ("toolong", "x".repeat(257))] {
        let response = register(&app, name, &password).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{} characters",
            password.len()
        );
        assert_eq!(response.error_code(), "weak_password");
        assert_eq!(
            app.login(name, &password).await.status,
            StatusCode::UNAUTHORIZED,
            "no account was made"
        );
    }
}

#[tokio::test]
async fn a_password_of_exactly_8_characters_is_accepted() {
    let app = test_app!();
    // Eight of one letter (`xxxxxxxx`) is on the common list.
    let password = "tq7-wv2k";

    let response = register(&app, "eight", password).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(app.login("eight", password).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_password_of_more_than_72_bytes_is_accepted() {
    let app = test_app!();
    // 200 bytes in 100 characters: the limit is characters, and bcrypt's
    // 72 bytes no longer limit anyone.
    let password = "é".repeat(100);
    assert_eq!(password.len(), 200);

    let response = register(&app, "twohundred", &password).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(
        app.login("twohundred", &password).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_account_with_a_72_byte_password_can_sign_in() {
    let app = test_app!();
    let password = "q".repeat(72);
    let hash = bcrypt::hash(&password, 4).unwrap();
    app.store
        .create_user(
            NewUser {
                username: "gina",
                password_hash: &hash,
                role: "user",
            },
            START,
        )
        .await
        .unwrap();

    assert_eq!(app.login("gina", &password).await.status, StatusCode::OK);
}

#[tokio::test]
async fn registration_can_be_closed() {
    let app = test_app!(&[("REGISTRATION_OPEN", "false")]);

    let response = register(&app, "carol", PASSWORD).await;

    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "registration_closed");
    assert_eq!(
        app.login("carol", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_sign_up_form_leads_to_the_login_page_with_a_notice() {
    let app = test_app!();

    let response = app
        .send(form_post(
            "/register",
            &format!("username=carol&password={}", enc(PASSWORD)),
        ))
        .await;

    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    let location = response.header("location").unwrap().to_owned();
    assert!(location.starts_with("/login"), "{location}");
    let page = app.send(request(Method::GET, &location, &[])).await;
    assert!(
        page.text().contains("Your account is ready"),
        "{}",
        page.text()
    );
    assert_eq!(app.login("carol", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_sign_up_form_shows_the_form_again_with_the_reason() {
    let app = test_app!();
    app.add_user("carol", PASSWORD).await;

    let taken = app
        .send(form_post(
            "/register",
            &format!("username=carol&password={}", enc(PASSWORD)),
        ))
        .await;
    let weak = app
        .send(form_post("/register", "username=dave&password=short"))
        .await;

    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(
        taken.text().contains("That username is taken"),
        "{}",
        taken.text()
    );
    assert!(taken.text().contains(r#"action="/register""#));
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.text().contains("Passwords must be at least 8 characters long."),
        "{}",
        weak.text()
    );
    assert!(
        !weak.text().contains("short\""),
        "the password is not echoed"
    );
}

#[tokio::test]
async fn with_registration_closed_the_sign_up_page_offers_no_form() {
    let app = test_app!(&[("REGISTRATION_OPEN", "false")]);

    let page = app.send(request(Method::GET, "/register", &[])).await;
    let index = app.send(request(Method::GET, "/", &[])).await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.text().contains(r#"action="/register""#),
        "{}",
        page.text()
    );
    assert!(page.text().contains("closed"), "{}", page.text());
    assert!(
        !index.text().contains(r#"href="/register""#),
        "{}",
        index.text()
    );
}

// ---------------------------------------------------------------- the audit trail

#[tokio::test]
async fn an_event_carries_the_time_and_the_request_id_of_its_response() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.advance(42);

    let response = app.login("ann", "not the password").await;

    let request_id = response.header("x-request-id").expect("x-request-id");
    let event = events(&app).await.into_iter().next().expect("an event");
    assert_eq!(event.kind, "login_failed");
    assert_eq!(event.at, START + 42);
    assert_eq!(event.request_id.as_deref(), Some(request_id));
}

#[tokio::test]
async fn a_client_request_id_is_echoed_and_recorded() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let mut login = json_post(
        "/login",
        &json!({ "username": "ann", "password": "not the password" }),
    );
    login
        .headers_mut()
        .insert("x-request-id", "client-chosen-id-1".parse().unwrap());

    let response = app.send(login).await;

    assert_eq!(response.header("x-request-id"), Some("client-chosen-id-1"));
    let event = events(&app).await.into_iter().next().unwrap();
    assert_eq!(event.request_id.as_deref(), Some("client-chosen-id-1"));
}

/// A failed login as `username` carrying `ids` as its `x-request-id`
/// headers: the id the response names, and the one its audit event recorded.
async fn failed_login_with_request_ids(
    app: &TestApp,
    username: &str,
    ids: &[HeaderValue],
) -> (String, Option<String>) {
    let mut login = json_post(
        "/login",
        &json!({ "username": username, "password": "not the password" }),
    );
    for id in ids {
        login.headers_mut().append("x-request-id", id.clone());
    }
    let response = app.send(login).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let answered = response.header("x-request-id").expect("x-request-id");
    let event = events(app).await.into_iter().next().expect("an event");
    assert_eq!(event.kind, "login_failed");
    assert_eq!(event.username.as_deref(), Some(username));
    (answered.to_owned(), event.request_id)
}

#[tokio::test]
async fn an_unsafe_or_overlong_client_request_id_is_replaced_by_latchkeys_own() {
    let app = test_app!();
    let unsafe_ids = [
        HeaderValue::from_static("has spaces in it"),
        HeaderValue::from_static("quote\"d"),
        HeaderValue::from_static("user=admin;ip=1.2.3.4"),
        HeaderValue::from_static("tab\tinside"),
        HeaderValue::from_bytes(b"obs-text-\xe2\x80\xae").unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        HeaderValue::from_str(&"a".repeat(65)).unwrap(),
    ];
    // A name per attempt, so that no attempt is throttled.
    for (n, id) in unsafe_ids.into_iter().enumerate() {
        let name = format!("user{n}");
        let (answered, recorded) =
            failed_login_with_request_ids(&app, &name, std::slice::from_ref(&id)).await;
        assert_ne!(answered.as_bytes(), id.as_bytes());
        assert!(
            !answered.is_empty()
                && answered.len() <= 64
                && answered
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
            "{id:?} answered as {answered:?}"
        );
        assert_eq!(recorded.as_deref(), Some(answered.as_str()), "{id:?}");
    }

    // Two ids, each safe on its own: which would a log line mean? Neither.
    let both = [
        HeaderValue::from_static("first-id"),
        HeaderValue::from_static("second-id"),
    ];
    let (answered, recorded) = failed_login_with_request_ids(&app, "twice", &both).await;
    assert!(!answered.ends_with("-id"), "{answered}");
    assert_eq!(recorded.as_deref(), Some(answered.as_str()));
}

#[tokio::test]
async fn a_short_client_request_id_of_safe_characters_is_kept() {
    let app = test_app!();
    let longest = "a1".repeat(32);
    let uuid = "3f2c9a1e-8d4b-4c7e-9f10-2b6a5d7e8c91";
    for (n, id) in ["Req-1.2_3:abc", uuid, &longest].into_iter().enumerate() {
        let name = format!("user{n}");
        let sent = [HeaderValue::from_str(id).unwrap()];
        let (answered, recorded) = failed_login_with_request_ids(&app, &name, &sent).await;
        assert_eq!(answered, id);
        assert_eq!(recorded.as_deref(), Some(id));
    }
}

#[tokio::test]
async fn logout_and_revocations_name_the_user_and_session() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let one = app.login("ann", PASSWORD).await;
    let two = app.login("ann", PASSWORD).await;
    let one_sid = session_id_of(&app, &one).await;
    let two_sid = session_id_of(&app, &two).await;

    app.logout(&one.refresh_token()).await;
    app.delete_with_bearer(
        &format!("/sessions/{}", two_sid.as_str().unwrap()),
        &two.access_token(),
    )
    .await;

    let all = events(&app).await;
    let logout = all
        .iter()
        .find(|e| e.kind == "logout")
        .expect("logout event");
    assert_eq!(logout.user_id, Some(ann.id));
    assert_eq!(logout.session_id.as_deref(), one_sid.as_str());
    let revoked = all
        .iter()
        .find(|e| e.kind == "session_revoked")
        .expect("session_revoked event");
    assert_eq!(revoked.user_id, Some(ann.id));
    assert_eq!(revoked.session_id.as_deref(), two_sid.as_str());
}

#[tokio::test]
async fn the_login_event_names_the_session_it_started() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let sid = app.get_with_bearer("/me", &access).await.json()["session_id"].clone();

    let event = events(&app)
        .await
        .into_iter()
        .find(|e| e.kind == "login_succeeded")
        .expect("login_succeeded event");

    assert_eq!(event.session_id.as_deref(), sid.as_str());
}

// ---------------------------------------------------------------- /healthz

#[tokio::test]
async fn healthz_is_up_while_the_store_answers() {
    let app = test_app!();

    let response = app.send(request(Method::GET, "/healthz", &[])).await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["status"], "ok");
}

#[tokio::test]
async fn healthz_is_unavailable_when_the_store_is_closed() {
    let app = test_app!();
    app.store.close().await;

    let response = app.send(request(Method::GET, "/healthz", &[])).await;

    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.error_code(), "unavailable");
}

// ------------------------------------------------------- /livez, /readyz

#[tokio::test]
async fn readyz_turns_unavailable_when_draining_begins_while_the_rest_serves() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    for path in ["/livez", "/readyz"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        assert_eq!(response.json()["status"], "ok");
    }

    app.auth.begin_draining();

    let ready = app.send(request(Method::GET, "/readyz", &[])).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "shutting_down");
    ready.assert_no_store();
    for path in ["/livez", "/healthz"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
    }
    let protected = app.get_with_bearer("/protected", &access).await;
    assert_eq!(protected.status, StatusCode::OK, "still serving");
}

#[tokio::test]
async fn readyz_is_unavailable_and_livez_up_when_the_store_is_closed() {
    let app = test_app!();
    app.store.close().await;

    let ready = app.send(request(Method::GET, "/readyz", &[])).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.error_code(), "unavailable");
    let live = app.send(request(Method::GET, "/livez", &[])).await;
    assert_eq!(live.status, StatusCode::OK, "the process still serves");
}

// ---------------------------------------------------------------- pages

fn assert_page_headers(path: &str, response: &TestResponse) {
    assert_eq!(response.status, StatusCode::OK, "{path}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{path}: {:?}",
        response.header("content-type")
    );
    let csp = response
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{path}: no Content-Security-Policy"));
    for directive in [
        "default-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.contains(directive),
            "{path}: CSP lacks {directive}: {csp}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("unsafe-eval"), "{path}: {csp}");
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(response.header("x-frame-options"), Some("DENY"));
    assert_eq!(response.header("referrer-policy"), Some("same-origin"));
}

/// Every `<script` tag in `html` loads a file; none carries inline code.
fn assert_no_inline_script(path: &str, html: &str) {
    for (i, _) in html.match_indices("<script") {
        let tag_end = html[i..].find('>').map(|e| i + e).expect("closed tag");
        let tag = &html[i..=tag_end];
        assert!(tag.contains("src="), "{path}: inline script {tag}");
        let rest = &html[tag_end + 1..];
        assert!(
            rest.trim_start().starts_with("</script>"),
            "{path}: script with a body after {tag}"
        );
    }
    assert!(!html.contains("javascript:"), "{path}");
    assert!(!html.contains(" onclick="), "{path}");
}

#[tokio::test]
async fn pages_carry_the_security_headers() {
    let app = test_app!();

    for path in ["/", "/login", "/register"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_page_headers(path, &response);
        assert_no_inline_script(path, &response.text());
    }
}

#[tokio::test]
async fn the_home_page_links_to_the_demo_and_sign_up() {
    let app = test_app!();

    let html = app.send(request(Method::GET, "/", &[])).await.text();

    assert!(html.contains(r#"href="/app""#), "{html}");
    assert!(html.contains(r#"href="/login""#), "{html}");
    assert!(html.contains(r#"href="/register""#), "{html}");
}

#[tokio::test]
async fn the_demo_page_carries_the_security_headers_and_loads_its_script_from_a_file() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(request(
            Method::GET,
            "/app",
            &[("cookie", &cookie(&refresh))],
        ))
        .await;

    assert_page_headers("/app", &response);
    let html = response.text();
    assert!(html.contains(r#"src="/static/app.js""#), "{html}");
    assert_no_inline_script("/app", &html);
}

#[tokio::test]
async fn the_login_page_has_a_form_that_works_without_javascript() {
    let app = test_app!();

    let html = app
        .send(request(Method::GET, "/login?next=/app/settings", &[]))
        .await
        .text();

    assert!(html.contains(r#"method="post""#), "{html}");
    assert!(html.contains(r#"action="/login""#), "{html}");
    assert!(html.contains(r#"name="username""#), "{html}");
    assert!(html.contains(r#"name="password""#), "{html}");
    assert!(html.contains(r#"type="password""#), "{html}");
    assert!(
        html.contains(r#"name="next" value="/app/settings""#),
        "{html}"
    );
    assert_no_inline_script("/login", &html);
}

#[tokio::test]
async fn the_login_page_does_not_carry_a_foreign_next_into_its_form() {
    let app = test_app!();

    let html = app
        .send(request(Method::GET, "/login?next=//evil.com", &[]))
        .await
        .text();

    assert!(!html.contains("evil.com"), "{html}");
    assert!(html.contains(r#"name="next" value="/app""#), "{html}");
}

#[tokio::test]
async fn the_demo_without_a_cookie_sends_the_browser_to_sign_in() {
    let app = test_app!();

    let response = app.send(request(Method::GET, "/app", &[])).await;

    assert_eq!(response.status, StatusCode::SEE_OTHER);
    assert_eq!(response.header("location"), Some("/login?next=/app"));
}

#[tokio::test]
async fn static_files_are_served_with_their_content_types() {
    let app = test_app!();

    for (path, expected) in [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::OK, "{path}");
        let content_type = response.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with(expected), "{path}: {content_type}");
        assert!(!response.body.is_empty(), "{path}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    }
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = test_app!();

    for path in ["/nope", "/static/nope.js", "/static/../Cargo.toml"] {
        let response = app.send(request(Method::GET, path, &[])).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(response.error_code(), "not_found", "{path}");
    }
}

// ---------------------------------------------------------------- accounts made elsewhere

#[tokio::test]
async fn a_user_added_with_the_cli_can_sign_in_with_their_role() {
    let app = test_app!();

    let output = app.cli(
        &["user", "add", "bob", "--role", "admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("bob"), "{stdout}");
    assert!(!stdout.contains(PASSWORD), "{stdout}");

    let login = app.login("bob", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let me = app
        .get_with_bearer("/me", &login.access_token())
        .await
        .json();
    assert_eq!(me["user"]["username"], "bob");
    assert_eq!(me["user"]["role"], "admin");
}

#[tokio::test]
async fn the_cli_refuses_a_weak_password_and_creates_nobody() {
    let app = test_app!();

    let output = app.cli(&["user", "add", "bob"], "short\n");

    assert!(!output.status.success());
    assert!(!String::from_utf8_lossy(&output.stderr).is_empty());
    assert!(app.store.user_by_name("bob").await.unwrap().is_none());
}

#[tokio::test]
async fn a_cheaper_stored_hash_is_upgraded_at_the_next_sign_in() {
    let app = test_app!(&[("BCRYPT_COST", "5")]);
    let old_hash = bcrypt::hash(PASSWORD, 4).unwrap();
    assert!(old_hash.starts_with("$2b$04$"), "{old_hash}");
    app.store
        .create_user(
            NewUser {
                username: "dana",
                password_hash: &old_hash,
                role: "user",
            },
            START,
        )
        .await
        .unwrap();

    let login = app.login("dana", PASSWORD).await;

    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let stored = app.store.user_by_name("dana").await.unwrap().unwrap();
    assert!(
        stored.password_hash.starts_with("$latchkey-v1$2b$05$"),
        "{}",
        stored.password_hash
    );
    assert_eq!(app.login("dana", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_sign_in_does_not_touch_a_cheaper_stored_hash() {
    let app = test_app!(&[("BCRYPT_COST", "5")]);
    let old_hash = bcrypt::hash(PASSWORD, 4).unwrap();
    app.store
        .create_user(
            NewUser {
                username: "dana",
                password_hash: &old_hash,
                role: "user",
            },
            START,
        )
        .await
        .unwrap();

    assert_eq!(
        app.login("dana", "not the password").await.status,
        StatusCode::UNAUTHORIZED
    );

    let stored = app.store.user_by_name("dana").await.unwrap().unwrap();
    assert_eq!(stored.password_hash, old_hash);
}

#[tokio::test]
async fn a_password_longer_than_72_bytes_is_refused_not_truncated() {
    // bcrypt reads only 72 bytes: a 100-byte password that starts with the
    // real one would pass if the server truncated.
    let app = test_app!();
    let real: String = "p".repeat(60) + "0123456789AB";
    assert_eq!(real.len(), 72);
    let hash = bcrypt::hash(&real, 4).unwrap();
    app.store
        .create_user(
            NewUser {
                username: "erin",
                password_hash: &hash,
                role: "user",
            },
            START,
        )
        .await
        .unwrap();
    let longer = format!("{real}{}", "z".repeat(28));
    assert_eq!(longer.len(), 100);
    assert!(
        bcrypt::verify(&longer, &hash).unwrap(),
        "a truncating check would let it in"
    );

    let response = app.login("erin", &longer).await;

    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    assert_eq!(response.error_code(), "invalid_credentials");
    assert!(response.refresh_cookie().is_none());
}

//! The cross-site check (README, "Cross-site protection
//! and CORS"): scheme, host and port,
//! fetch metadata, and the CORS origins.

use super::*;

/// A foreign `Origin`, or none with `Sec-Fetch-Site: cross-site`: every
/// endpoint the cookie works on refuses, records why, and leaves the session
/// alone.
#[tokio::test]
async fn a_foreign_page_cannot_refresh_log_out_or_post_the_login_form() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();
    let with_cookie = cookie(&refresh);
    for foreign in [("origin", EVIL), ("sec-fetch-site", "cross-site")] {
        let headers = [foreign, ("cookie", with_cookie.as_str())];
        let token = app.send(request(Method::POST, "/token", &headers)).await;
        let logout = app.send(request(Method::POST, "/logout", &headers)).await;
        let form = login_form("ann", PASSWORD, None);
        let login = app.send(form_login_request(&form, &headers)).await;

        for (what, response) in [("token", &token), ("logout", &logout), ("login", &login)] {
            assert_eq!(response.status, StatusCode::FORBIDDEN, "{what} {foreign:?}");
            assert_eq!(response.error_code(), "forbidden_origin", "{what}");
            assert!(
                response.refresh_cookie().is_none(),
                "{what}: no cookie change"
            );
        }
    }
    let rejected = app
        .event_kinds()
        .await
        .into_iter()
        .filter(|k| k == "origin_rejected")
        .count();
    assert_eq!(rejected, 6);
    // Counted per address and minute, on a record that names the origin
    // and the client's address.
    let first = events(&app)
        .await
        .into_iter()
        .find(|e| e.kind == "origin_rejected")
        .expect("an origin_rejected event");
    assert!(
        first.detail.as_deref().unwrap_or_default().contains(EVIL),
        "{first:?}"
    );
    assert_eq!(first.ip.as_deref(), Some("203.0.113.7"));
    // None of them touched the session.
    assert_eq!(app.refresh(&refresh).await.status, StatusCode::OK);
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

/// A case of the origin check: what it shows, the app, the `Host` it is
/// addressed as, the request's headers, and the status expected.
type Case<'a> = (&'a str, &'a TestApp, &'a str, Vec<(&'a str, &'a str)>, u16);

/// Origins compared as RFC 6454 tuples: scheme, host and port. Each case is
/// `/token` with a fresh session, to a plain-HTTP latchkey (as configured
/// plainly, with `PUBLIC_ORIGIN` or with `CORS_ALLOWED_ORIGINS`) addressed
/// as `host`, with `headers`.
#[tokio::test]
async fn the_origin_check_compares_scheme_host_and_port() {
    let own = format!("http://{HOST}");
    let own_3000 = format!("http://{HOST}:3000");
    let https = format!("https://{HOST}");
    let host_3000 = format!("{HOST}:3000");
    let [port_8080, second_port, second_port_first, signed_port] =
        ["8080", "3000:80", "80:3000", "+3000"].map(|port| format!("http://{HOST}:{port}"));
    let plain = &test_app!();
    let public = &test_app!(&[("PUBLIC_ORIGIN", https.as_str())]);
    let cors = &test_app!(&[("CORS_ALLOWED_ORIGINS", SPA)]);
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("its own origin", plain, HOST, vec![("origin", &own)], 200),
        ("no origin: not a browser", plain, HOST, vec![], 200),
        ("an opaque origin", plain, HOST, vec![("origin", "null")], 403),
        // Served over plain HTTP, `https://` is another scheme.
        ("another scheme", plain, HOST, vec![("origin", &https)], 403),
        // Behind a proxy that ends TLS, `PUBLIC_ORIGIN` names the origin
        // browsers see.
        ("PUBLIC_ORIGIN", public, HOST, vec![("origin", &https)], 200),
        ("not PUBLIC_ORIGIN", public, HOST, vec![("origin", &own)], 403),
        ("another port", plain, HOST, vec![("origin", &port_8080)], 403),
        ("its own port", plain, &host_3000, vec![("origin", &own_3000)], 200),
        ("a second port", plain, &host_3000, vec![("origin", &second_port)], 403),
        ("a second port first", plain, &host_3000, vec![("origin", &second_port_first)], 403),
        ("a signed port", plain, &host_3000, vec![("origin", &signed_port)], 403),
        ("ours, then another", plain, HOST, vec![("origin", &own), ("origin", EVIL)], 403),
        ("another, then ours", plain, HOST, vec![("origin", EVIL), ("origin", &own)], 403),
        ("ours twice", plain, HOST, vec![("origin", &own), ("origin", &own)], 403),
        ("cross-site", plain, HOST, vec![("sec-fetch-site", "cross-site")], 403),
        ("Cross-Site", plain, HOST, vec![("sec-fetch-site", "Cross-Site")], 403),
        ("CROSS-SITE", plain, HOST, vec![("sec-fetch-site", "CROSS-SITE")], 403),
        ("Same-Origin", plain, HOST, vec![("sec-fetch-site", "Same-Origin")], 200),
        ("a listed CORS origin", cors, HOST, vec![("origin", SPA)], 200),
        ("an unlisted origin beside CORS", cors, HOST, vec![("origin", EVIL)], 403),
    ];
    for (case, app, host, headers, status) in cases {
        let response = refresh_from(app, host, &headers).await;
        assert_eq!(response.status, status, "{case}: {}", response.text());
        if status == 403 {
            assert_eq!(response.error_code(), "forbidden_origin", "{case}");
            assert_eq!(response.header("access-control-allow-origin"), None, "{case}");
        }
    }
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


//! Bad input of every kind gets the right 4xx in the JSON error shape
//! `{"error","message"}`, never a 5xx and never a crash.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::{Body, Bytes, HttpBody};
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::json;

use crate::helpers::*;

const ENDPOINTS: [&str; 2] = ["/login", "/register"];

fn raw_post(path: &str, content_type: Option<&str>, body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::post(path);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body.into()).unwrap()
}

fn json_body(path: &str, body: &str) -> Request<Body> {
    raw_post(path, Some("application/json"), body.to_owned())
}

/// Checks status and code, and that the body is the JSON error shape.
fn assert_error(what: &str, response: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(
        response.status,
        status,
        "{what}: {}",
        response.text().chars().take(300).collect::<String>()
    );
    assert_eq!(response.error_code(), code, "{what}");
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{what}: {:?}",
        response.header("content-type")
    );
}

/// A 4xx in the JSON error shape, whatever the exact code.
fn assert_client_error(what: &str, response: &TestResponse) {
    assert!(
        response.status.is_client_error(),
        "{what}: {} {}",
        response.status,
        response.text().chars().take(300).collect::<String>()
    );
    response.error_code();
}

#[tokio::test]
async fn malformed_json_is_an_invalid_request() {
    let app = test_app!();

    for path in ENDPOINTS {
        for body in [
            r#"{"username": "ann", "password": "#,
            "not json at all",
            "",
            r#"{"username": "ann", "password": "x",}"#,
            "[]",
            "null",
        ] {
            let response = app.send(json_body(path, body)).await;
            assert_error(
                &format!("{path} {body:?}"),
                &response,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            );
        }
    }
}

#[tokio::test]
async fn json_that_is_not_utf8_is_an_invalid_request() {
    let app = test_app!();

    for path in ENDPOINTS {
        let body = Bytes::from_static(b"{\"username\": \"\xff\xfe\", \"password\": \"x\"}");
        let response = app
            .send(raw_post(path, Some("application/json"), body))
            .await;
        assert_error(path, &response, StatusCode::BAD_REQUEST, "invalid_request");
    }
}

#[tokio::test]
async fn json_missing_a_field_is_an_invalid_request() {
    let app = test_app!();

    for path in ENDPOINTS {
        for body in [
            json!({}),
            json!({ "username": "ann" }),
            json!({ "password": PASSWORD }),
            json!({ "user": "ann", "pass": PASSWORD }),
        ] {
            let response = app.send(json_post(path, &body)).await;
            assert_error(
                &format!("{path} {body}"),
                &response,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            );
        }
    }
}

#[tokio::test]
async fn json_with_wrong_types_is_an_invalid_request() {
    let app = test_app!();

    for path in ENDPOINTS {
        for body in [
            json!({ "username": 1, "password": true }),
            json!({ "username": "ann", "password": 12_345_678 }),
            json!({ "username": ["ann"], "password": PASSWORD }),
            json!({ "username": null, "password": null }),
            json!({ "username": { "$ne": "" }, "password": PASSWORD }),
        ] {
            let response = app.send(json_post(path, &body)).await;
            assert_error(
                &format!("{path} {body}"),
                &response,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            );
        }
    }
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_a_crash() {
    let app = test_app!();
    let depth = 1_500;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let body = format!(r#"{{"username": {nested}, "password": "x"}}"#);
    assert!(body.len() < 4096, "stays under the size limit");

    for path in ENDPOINTS {
        let response = app.send(json_body(path, &body)).await;
        assert_client_error(path, &response);
    }
    // Still serving.
    assert_eq!(app.signed_in_ann().await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_is_neither_json_nor_a_form_is_an_unsupported_media_type() {
    let app = test_app!();
    let body = json!({ "username": "ann", "password": PASSWORD }).to_string();

    for path in ENDPOINTS {
        for content_type in [
            Some("text/plain"),
            Some("multipart/form-data; boundary=x"),
            Some("application/xml"),
            Some("application/jsonx"),
            None,
        ] {
            let response = app.send(raw_post(path, content_type, body.clone())).await;
            assert_error(
                &format!("{path} {content_type:?}"),
                &response,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            );
        }
    }
}

#[tokio::test]
async fn json_with_a_charset_parameter_is_accepted() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let response = app
        .send(raw_post(
            "/login",
            Some("application/json; charset=utf-8"),
            json!({ "username": "ann", "password": PASSWORD }).to_string(),
        ))
        .await;

    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
}

fn oversized_json() -> String {
    json!({ "username": "ann", "password": "x".repeat(5_000) }).to_string()
}

#[tokio::test]
async fn a_body_over_4_kib_with_a_content_length_is_too_large() {
    let app = test_app!();
    let body = oversized_json();

    for path in ENDPOINTS {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body.clone()))
            .unwrap();
        let response = app.send(request).await;
        assert_error(
            path,
            &response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );
    }
}

#[tokio::test]
async fn a_streamed_body_over_4_kib_without_a_length_is_too_large() {
    let app = test_app!();
    let body = oversized_json().into_bytes();

    for path in ENDPOINTS {
        // A body whose length is not known up front (as with chunked
        // transfer encoding): the limit must hold while reading, not only
        // when a length is announced.
        let unsized_body = Full::new(Bytes::from(body.clone())).map_frame(|frame| frame);
        assert!(unsized_body.size_hint().exact().is_none());
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::new(unsized_body))
            .unwrap();
        assert!(request.headers().get(header::CONTENT_LENGTH).is_none());
        let response = app.send(request).await;
        assert_error(
            path,
            &response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );
    }
}

#[tokio::test]
async fn a_form_body_over_4_kib_is_too_large() {
    let app = test_app!();
    let body = format!("username=ann&password={}", "x".repeat(5_000));

    let response = app.send(form_post("/login", &body)).await;

    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn a_10_kb_password_is_too_large() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let password = "p".repeat(10_000);

    for path in ENDPOINTS {
        let response = app
            .send(json_post(
                path,
                &json!({ "username": "ann", "password": password }),
            ))
            .await;
        assert_error(
            path,
            &response,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        );
    }
}

#[tokio::test]
async fn a_300_character_password_fails_login_and_is_too_long_to_register() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let password = "p".repeat(300);

    let login = app.login("ann", &password).await;
    assert_error(
        "login",
        &login,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    );

    let register = app
        .send(json_post(
            "/register",
            &json!({ "username": "carol", "password": password }),
        ))
        .await;
    assert_error(
        "register",
        &register,
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak_password",
    );
}

#[tokio::test]
async fn garbage_cookies_at_token_are_a_401_not_a_crash() {
    let app = test_app!();
    let long = format!("__Host-refresh_token={}", "A".repeat(8_000));
    let cookies: Vec<HeaderValue> = vec![
        HeaderValue::from_static(";;;"),
        HeaderValue::from_static("="),
        HeaderValue::from_static("__Host-refresh_token="),
        HeaderValue::from_static("__Host-refresh_token"),
        HeaderValue::from_static("__Host-refresh_token=\"\""),
        HeaderValue::from_static("__Host-refresh_token=a.b.c"),
        HeaderValue::from_static("__Host-refresh_token=..."),
        HeaderValue::from_static("__Host-refresh_token=%00%ff"),
        HeaderValue::from_static("refresh_token=abc"),
        HeaderValue::from_str(&long).unwrap(),
        HeaderValue::from_bytes(b"__Host-refresh_token=\xff\xfe\xfd").unwrap(),
    ];

    for value in cookies {
        let what = format!("Cookie: {:.60}", String::from_utf8_lossy(value.as_bytes()));
        let response = app
            .send(
                Request::post("/token")
                    .header(header::COOKIE, value.clone())
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        let code = response.error_code();
        assert!(
            code == "missing_refresh_token" || code == "invalid_refresh_token",
            "{what}: {code}"
        );
        assert!(
            response
                .refresh_cookie()
                .is_none_or(|c| c.value().is_empty()),
            "{what}: never sets a usable cookie"
        );
    }
}

#[tokio::test]
async fn two_refresh_cookies_are_refused_and_cleared() {
    let app = test_app!();
    let refresh = app.signed_in_ann().await.refresh_token();

    let response = app
        .send(
            Request::post("/token")
                .header(
                    header::COOKIE,
                    format!("__Host-refresh_token={refresh}; __Host-refresh_token=planted"),
                )
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    assert_error(
        "two cookies",
        &response,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    );
    response.assert_cookie_cleared();
}

#[tokio::test]
async fn garbage_cookies_at_logout_still_log_out() {
    let app = test_app!();

    for value in [
        ";;;",
        "=",
        "__Host-refresh_token=",
        "__Host-refresh_token=x.y.z",
    ] {
        let response = app
            .send(
                Request::post("/logout")
                    .header(header::COOKIE, value)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status, StatusCode::NO_CONTENT, "{value}");
        response.assert_cookie_cleared();
    }
}

#[tokio::test]
async fn garbage_authorization_headers_are_a_401() {
    let app = test_app!();
    let huge = format!("Bearer {}", "a".repeat(8_192));
    let values: Vec<HeaderValue> = vec![
        HeaderValue::from_static("Bearer"),
        HeaderValue::from_static("Bearer "),
        HeaderValue::from_static("Bearer a b c"),
        HeaderValue::from_static("Bearer a.b.c"),
        HeaderValue::from_static("Bearer ..."),
        HeaderValue::from_static("Bearer eyJhbGciOiJub25lIn0.e30."),
        HeaderValue::from_static("Basic YW5uOmNvcnJlY3QgaG9yc2UgYmF0dGVyeQ=="),
        HeaderValue::from_static("Token abc"),
        HeaderValue::from_static(""),
        HeaderValue::from_str(&huge).unwrap(),
        HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap(),
    ];

    for value in values {
        let what = format!(
            "Authorization: {:.40}",
            String::from_utf8_lossy(value.as_bytes())
        );
        for path in ["/protected", "/me", "/sessions"] {
            let response = app
                .send(
                    Request::get(path)
                        .header(header::AUTHORIZATION, value.clone())
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what} {path}");
            response.error_code();
            assert!(
                response
                    .header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{what} {path}"
            );
        }
    }
}

#[tokio::test]
async fn two_authorization_headers_are_refused() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    let response = app
        .send(
            Request::get("/protected")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .header(header::AUTHORIZATION, "Bearer other")
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    assert_client_error("two Authorization headers", &response);
}

#[tokio::test]
async fn an_access_token_in_the_query_string_or_a_cookie_is_ignored() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    let in_query = app
        .send(
            Request::get(format!("/protected?access_token={access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let in_cookie = app
        .send(
            Request::get("/protected")
                .header(header::COOKIE, format!("access_token={access}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;

    for (what, response) in [("query", &in_query), ("cookie", &in_cookie)] {
        assert_eq!(response.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(response.error_code(), "unauthenticated", "{what}");
    }
}

#[tokio::test]
async fn non_ascii_usernames_are_refused_at_registration() {
    let app = test_app!();

    for username in [
        "ännä",
        "用户",
        "аdmin", // Cyrillic а
        "admin\u{200b}",
        "ad min",
        "ann\u{0000}",
        "",
        "   ",
        "İstanbul",
        "💥",
    ] {
        let response = app
            .send(json_post(
                "/register",
                &json!({ "username": username, "password": PASSWORD }),
            ))
            .await;
        assert_error(
            &format!("{username:?}"),
            &response,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn a_username_longer_than_64_characters_is_refused() {
    let app = test_app!();

    let response = app
        .send(json_post(
            "/register",
            &json!({ "username": "a".repeat(65), "password": PASSWORD }),
        ))
        .await;

    assert_error(
        "65 chars",
        &response,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
}

#[tokio::test]
async fn a_look_alike_of_an_existing_username_cannot_be_registered() {
    // U+212A KELVIN SIGN lower-cases to an ASCII `k`.
    let app = test_app!();
    app.add_user("kim", PASSWORD).await;

    let response = app
        .send(json_post(
            "/register",
            &json!({ "username": "\u{212A}im", "password": "another password" }),
        ))
        .await;

    assert_client_error("Kelvin-sign kim", &response);
    assert_eq!(
        app.login("kim", "another password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn login_with_an_empty_username_or_password_is_an_invalid_request() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    for (username, password) in [("", PASSWORD), ("   ", PASSWORD), ("ann", "")] {
        let response = app.login(username, password).await;
        assert_error(
            &format!("{username:?}/{password:?}"),
            &response,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        );
    }
}

#[tokio::test]
async fn a_form_missing_a_field_is_an_invalid_request() {
    let app = test_app!();

    for body in ["username=ann", "password=x", "", "username=ann&password"] {
        let response = app.send(form_post("/login", body)).await;
        assert!(
            response.status.is_client_error(),
            "{body:?}: {}",
            response.status
        );
        assert!(response.refresh_cookie().is_none(), "{body:?}");
    }
}

#[tokio::test]
async fn unknown_methods_on_api_endpoints_are_a_json_405() {
    let app = test_app!();

    for (method, path) in [
        (Method::PUT, "/login"),
        (Method::DELETE, "/token"),
        (Method::PATCH, "/register"),
        (Method::POST, "/me"),
        (Method::POST, "/sessions"),
    ] {
        let response = app
            .send(
                Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_error(
            &format!("{method} {path}"),
            &response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        );
    }
}

#[tokio::test]
async fn garbage_query_strings_on_pages_are_never_a_5xx() {
    let app = test_app!();

    for uri in [
        "/login?next=a&next=b",
        "/login?next=%ZZ",
        "/login?next=%00",
        "/login?registered",
        "/login?next[]=x",
        "/?x=%FF%FE",
        "/register?username=%3Cscript%3E",
        "/login?next=/%3Cscript%3E",
    ] {
        let response = app
            .send(Request::get(uri).body(Body::empty()).unwrap())
            .await;
        assert!(
            response.status.is_success() || response.status.is_client_error(),
            "{uri}: {}",
            response.status
        );
        assert!(!response.text().contains("<script>"), "{uri}: reflected");
    }
}

#[tokio::test]
async fn control_characters_in_a_username_are_a_failed_login_not_a_store_error() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    for name in ["ann\u{0}", "\u{0}", "ann\u{7}\u{1b}[31m", "a\u{0}b"] {
        let login = app
            .send(json_post(
                "/login",
                &serde_json::json!({ "username": name, "password": PASSWORD }),
            ))
            .await;
        assert_eq!(login.status, StatusCode::UNAUTHORIZED, "{name:?}: {}", login.text());
        assert_eq!(login.error_code(), "invalid_credentials");
    }
    let events = audit_events(&*app.store).await;
    assert!(
        events
            .iter()
            .filter_map(|e| e.username.as_deref())
            .all(|u| !u.chars().any(char::is_control)),
        "{events:?}"
    );
}

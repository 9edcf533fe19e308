//! The pages and static files: security headers, no inline script, forms that
//! work without JavaScript.

use super::*;

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

//! `POST /logout`: the cookie cleared and the session ended, by JSON or by
//! form.

use super::*;

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

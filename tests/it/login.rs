//! `POST /login`, JSON and form.

use axum::http::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn login_returns_an_access_token_and_sets_the_refresh_cookie() {
    let app = TestApp::new().await;
    let response = app.signed_in_ann().await;

    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert!(
        body.get("refresh_token").is_none(),
        "the refresh token is only ever in the cookie"
    );
    response.assert_no_store();

    let cookie = response.refresh_cookie().expect("refresh cookie");
    assert_eq!(cookie.name(), "__Host-refresh_token");
    assert_eq!(cookie.http_only(), Some(true));
    assert_eq!(cookie.secure(), Some(true));
    assert_eq!(cookie.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(cookie.path(), Some("/"));
    assert_eq!(cookie.domain(), None);
    assert_eq!(response.max_age(), 86_400);
}

#[tokio::test]
async fn unknown_user_and_wrong_password_get_identical_answers() {
    let app = TestApp::new().await;
    app.add_user("ann", PASSWORD).await;

    let wrong_password = app.login("ann", "not the password").await;
    let unknown_user = app.login("nobody", "not the password").await;

    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.body, unknown_user.body);
    assert_eq!(wrong_password.error_code(), "invalid_credentials");
    assert!(wrong_password.refresh_cookie().is_none());
}

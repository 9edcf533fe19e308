//! `GET /protected` and `GET /me`: the bearer token, its challenges and its
//! expiry.

use super::*;

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

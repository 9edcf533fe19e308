//! `Cache-Control: no-store` on every credential endpoint, whatever the answer.

use super::*;

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

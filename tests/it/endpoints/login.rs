//! `POST /login` as a form: where it leads, and the session of the cookie sent
//! along.

use super::*;

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

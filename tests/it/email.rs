//! Email addresses on accounts (README, "Email addresses"): given at sign-up,
//! shown by `GET /me`, set by the operator; a verified one signs in in place
//! of the username, under the account's own throttle counters.

use axum::http::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// `POST /register` with an email address.
async fn register_with_email(app: &TestApp, username: &str, email: &str) -> TestResponse {
    let body = json!({ "username": username, "password": PASSWORD, "email": email });
    app.send(json_post("/register", &body)).await
}

async fn me(app: &TestApp, login: &TestResponse) -> serde_json::Value {
    let me = app.get_with_bearer("/me", &login.access_token()).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.text());
    me.json()
}

/// Marks `username`'s address verified, as `latchkey user set-email
/// --verified` does.
async fn verify(app: &TestApp, username: &str, email: &str) {
    let user = app.auth.user_named(username).await.unwrap().unwrap();
    app.auth.set_email(&user, email, true).await.unwrap();
}

#[tokio::test]
async fn an_address_given_at_sign_up_is_kept_lower_cased_and_unverified() {
    let app = test_app!();
    let created = register_with_email(&app, "ann", "  Ann@Example.COM ").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());

    let me = me(&app, &app.login("ann", PASSWORD).await).await;
    assert_eq!(me["email"], "ann@example.com");
    assert_eq!(me["email_verified"], false);

    // Without one (or with a blank field), both say so.
    register_with_email(&app, "bob", " ").await;
    let me = self::me(&app, &app.login("bob", PASSWORD).await).await;
    assert_eq!(me["email"], json!(null));
    assert_eq!(me["email_verified"], false);
}

#[tokio::test]
async fn a_malformed_address_is_refused_and_creates_nobody() {
    let app = test_app!();
    for bad in [
        "ann",
        "ann@localhost",
        "Ann <ann@example.com>",
        "ann@[127.0.0.1]",
        "ann@example..com",
        "ü@example.com",
    ] {
        let refused = register_with_email(&app, "ann", bad).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(refused.error_code(), "invalid_request", "{bad}");
    }
    assert!(app.store.user_by_name("ann").await.unwrap().is_none());
}

/// Registration is no address oracle: an address named by another account,
/// verified or not, is accepted alike, unverified.
#[tokio::test]
async fn an_address_another_account_uses_is_accepted_alike() {
    let app = test_app!();
    register_with_email(&app, "ann", "ann@example.com").await;
    verify(&app, "ann", "ann@example.com").await;
    for name in ["mallory", "eve"] {
        let created = register_with_email(&app, name, "ANN@example.com").await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    }
    let mallory = app.store.user_by_name("mallory").await.unwrap().unwrap();
    assert_eq!(mallory.email.as_deref(), Some("ann@example.com"));
    assert!(!mallory.email_verified);

    // An address that is another account's username is verified nowhere:
    // it would take that account's logins.
    app.add_user("bob@example.com", PASSWORD).await;
    let refused = app
        .auth
        .set_email(&mallory, "bob@example.com", true)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("username"), "{refused}");

    // And it is verified on one account only.
    let refused = app
        .auth
        .set_email(&mallory, "ann@example.com", true)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "invalid_request");
    assert!(refused.to_string().contains("another account"), "{refused}");
}

#[tokio::test]
async fn a_verified_address_signs_in_in_place_of_the_username() {
    let app = test_app!();
    register_with_email(&app, "ann", "ann@example.com").await;

    // Unverified, it names nobody.
    let refused = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "invalid_credentials");

    verify(&app, "ann", "ann@example.com").await;
    for typed in ["ann@example.com", "Ann@Example.com"] {
        let login = app.login(typed, PASSWORD).await;
        assert_eq!(login.status, StatusCode::OK, "{typed}: {}", login.text());
        let me = me(&app, &login).await;
        assert_eq!(me["user"]["username"], "ann");
        assert_eq!(me["email_verified"], true);
    }
    let wrong = app.login("ann@example.com", "not the password").await;
    assert_eq!(wrong.error_code(), "invalid_credentials");
}

/// A username shaped like someone's address, taken after they verified it,
/// does not catch their logins: the verified address wins.
#[tokio::test]
async fn a_username_shaped_like_a_verified_address_does_not_intercept_it() {
    let app = test_app!();
    register_with_email(&app, "ann", "ann@example.com").await;
    verify(&app, "ann", "ann@example.com").await;
    // Registration is no oracle: the name is free as a username.
    app.add_user("ann@example.com", "mallory's own password").await;

    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(me(&app, &login).await["user"]["username"], "ann");
    let refused = app
        .login("ann@example.com", "mallory's own password")
        .await;
    assert_eq!(refused.error_code(), "invalid_credentials");
}

/// One account, one set of counters: wrong passwords typed with the
/// address throttle the username too.
#[tokio::test]
async fn the_address_and_the_username_share_the_accounts_throttle() {
    let app = test_app!(&[("THROTTLE_LOGIN_PAIR", "3")]);
    register_with_email(&app, "ann", "ann@example.com").await;
    verify(&app, "ann", "ann@example.com").await;
    for _ in 0..3 {
        let wrong = app.login("ann@example.com", "not the password").await;
        assert_eq!(wrong.error_code(), "invalid_credentials");
    }
    let throttled = app.login("ann", "not the password").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(throttled.error_code(), "too_many_attempts");
}

#[tokio::test]
async fn the_cli_sets_an_address_verified_or_not() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;

    let output = app.cli(&["user", "set-email", "ann", "Ann@Example.com"], "");
    assert!(output.status.success(), "{output:?}");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("ann@example.com (not verified)"), "{said}");

    let output = app.cli(
        &["user", "set-email", "ann", "ann@example.com", "--verified"],
        "",
    );
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("(verified)"),
        "{output:?}"
    );
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );

    let refused = app.cli(&["user", "set-email", "ann", "not-an-address"], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("email address"),
        "{refused:?}"
    );
}

//! Accounts made outside the API (the CLI, an older hash cost) signing in.

use super::*;

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
                email: None,
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
                email: None,
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
                email: None,
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

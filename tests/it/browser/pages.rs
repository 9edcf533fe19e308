//! The demo pages in Chromium: signing in, the cookie as the browser holds
//! it, staying signed in by refreshing, and pages free of console errors.

use std::time::Duration;

use super::*;

const PW: &str = "browser-pass-1";

#[tokio::test]
async fn signing_up_and_in_through_the_forms_lands_on_app_with_the_protected_answer() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    let client = browser.context().await;

    client.goto(&app.url("/register")).await.unwrap();
    fill(&client, "username", "dora").await;
    fill(&client, "password", PW).await;
    submit(&client).await;
    wait_until(
        Duration::from_secs(5),
        "the sign-in page after sign-up",
        || async { path(&client).await == "/login" },
    )
    .await;

    sign_in(&client, &app, "dora", PW).await;
    assert!(signed_in_as(&client, "dora").await);
    let protected: Value = serde_json::from_str(&text(&client, "protected").await).unwrap();
    assert_eq!(protected["user"]["username"], "dora");
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_login_form_works_with_javascript_disabled() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;
    let client = browser.context_without_javascript().await;

    client.goto(&app.url("/app")).await.unwrap();
    assert_eq!(
        path(&client).await,
        "/login",
        "no cookie: /app sends you to sign in"
    );
    fill(&client, "username", "ann").await;
    fill(&client, "password", "wrong-password").await;
    submit(&client).await;
    // The form posts and a new page loads: wait for it rather than read
    // the old one.
    wait_until(
        Duration::from_secs(5),
        "the login page again, with its error",
        || async {
            text(&client, "form-error")
                .await
                .contains("Wrong username or password")
        },
    )
    .await;

    fill(&client, "password", PW).await;
    submit(&client).await;
    wait_until(
        Duration::from_secs(5),
        "signed in and sent on to next=/app",
        || async { path(&client).await == "/app" },
    )
    .await;
    let cookies = client.get_all_cookies().await.unwrap();
    assert!(cookies.iter().any(|c| c.name() == "__Host-refresh_token"));
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_refresh_cookie_is_httponly_secure_strict_and_out_of_reach_of_scripts() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;

    let cookies = client.get_all_cookies().await.unwrap();
    let refresh = cookies
        .iter()
        .find(|c| c.name() == "__Host-refresh_token")
        .expect("the browser holds the refresh cookie");
    assert_eq!(refresh.http_only(), Some(true));
    assert_eq!(refresh.secure(), Some(true));
    assert_eq!(refresh.same_site(), Some(cookie::SameSite::Strict));
    assert_eq!(refresh.path(), Some("/"));

    let seen = run_js(
        &client,
        "return { cookie: document.cookie, \
                  local: JSON.stringify(Object.entries(localStorage)), \
                  session: JSON.stringify(Object.entries(sessionStorage)) };",
    )
    .await;
    assert!(
        !seen["cookie"].as_str().unwrap().contains("refresh_token"),
        "{seen}"
    );
    for store in ["local", "session"] {
        let contents = seen[store].as_str().unwrap();
        assert!(
            !contents.contains("eyJ"),
            "no token in {store}Storage: {contents}"
        );
    }
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_pages_render_without_console_errors_or_csp_violations() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;

    for page in ["/", "/login", "/register", "/login?next=/app&registered=1"] {
        client.goto(&app.url(page)).await.unwrap();
        let problems = console_problems(&client).await;
        assert!(problems.is_empty(), "{page}: {problems:?}");
    }
    sign_in(&client, &app, "ann", PW).await;
    wait_until(Duration::from_secs(5), "the sessions list", || async {
        text(&client, "sessions").await.contains("this device")
    })
    .await;
    let problems = console_problems(&client).await;
    assert!(problems.is_empty(), "/app: {problems:?}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn app_stays_signed_in_for_fifteen_seconds_by_refreshing_a_three_second_token() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[("JWT_EXPIRATION", "3")]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;
    let sid = session_of(&app, "ann").await;

    tokio::time::sleep(Duration::from_secs(15)).await;

    assert!(
        signed_in_as(&client, "ann").await,
        "still on /app, signed in"
    );
    let session = app.store.session(&sid).await.unwrap().unwrap();
    assert!(session.revoked_at.is_none(), "never mistaken for reuse");
    // One rotation per ~2.25 s of a 3 s token: at least five in 15 s.
    assert!(
        session.generation >= 5,
        "refreshed {} times",
        session.generation
    );
    // The access token now in use was issued within the last 3 seconds.
    call_protected(&client, "ann", Duration::from_secs(3)).await;
    assert!(console_problems(&client).await.is_empty());
    client.close().await.unwrap();
}

#[tokio::test]
async fn app_stays_signed_in_across_a_signing_key_rotation() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    // A one-second JWKS lifetime: the new key signs two seconds after
    // `keys rotate` (README, "Signing keys"); three-second tokens.
    let app = Latchkey::start(&[
        ("ACCESS_TOKEN_ALGORITHM", "EdDSA"),
        ("JWKS_MAX_AGE", "1"),
        ("JWT_EXPIRATION", "3"),
    ])
    .await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;
    let sid = session_of(&app, "ann").await;

    let rotated = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["keys", "rotate"])
        .env_clear()
        .envs(&app.vars)
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{rotated:?}");
    let keys = app.auth.signing_keys().await.unwrap();
    let new_key = keys.last().unwrap();
    let signs_from = new_key.signs_from.unwrap();

    // Past the switch, and long enough for tokens of both keys to be used.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(
        signed_in_as(&client, "ann").await,
        "still on /app, signed in"
    );
    let session = app.store.session(&sid).await.unwrap().unwrap();
    assert!(session.revoked_at.is_none(), "no sign-out");
    assert!(
        session.rotated_at >= signs_from,
        "the page took a token signed by the new key ({} < {})",
        session.rotated_at,
        signs_from
    );
    let keys = app.auth.signing_keys().await.unwrap();
    assert_eq!(keys.last().unwrap().state, latchkey::KeyState::Signing);
    call_protected(&client, "ann", Duration::from_secs(5)).await;
    assert!(console_problems(&client).await.is_empty());
    client.close().await.unwrap();
}

#[tokio::test]
async fn reloading_app_keeps_the_session() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;

    for _ in 0..3 {
        client.refresh().await.unwrap();
        wait_until(
            Duration::from_secs(5),
            "/app signed in after reload",
            || async { signed_in_as(&client, "ann").await },
        )
        .await;
    }
    client.close().await.unwrap();
}

/// The id of the user's only live session.
pub async fn session_of(app: &Latchkey, username: &str) -> String {
    let user = app.store.user_by_name(username).await.unwrap().unwrap();
    let now = latchkey::clock::Clock::now(&latchkey::clock::SystemClock);
    let live = app.store.active_sessions(user.id, now).await.unwrap();
    assert_eq!(live.len(), 1, "one live session");
    live[0].id.clone()
}

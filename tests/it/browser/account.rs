//! The account's controls in the browser: "Keep me signed in" on the login
//! form, and deleting the account from `/app` through the step-up prompt.

use std::sync::Arc;
use std::time::Duration;

use cookie::Expiration;
use fantoccini::{Client, Locator};

use super::*;

const PW: &str = "browser-pass-3";

async fn visible(client: &Client, id: &str) -> bool {
    match client.find(Locator::Id(id)).await {
        Ok(element) => element.is_displayed().await.unwrap_or(false),
        Err(_) => false,
    }
}

/// The refresh cookie's expiry as the browser holds it: `None` for a
/// session cookie, which the browser forgets when it closes.
async fn refresh_cookie_expiry(client: &Client) -> Option<Expiration> {
    let cookies = client.get_all_cookies().await.unwrap();
    let refresh = cookies
        .iter()
        .find(|c| c.name() == "__Host-refresh_token")
        .expect("the browser holds the refresh cookie");
    refresh
        .expires()
        .filter(|e| matches!(e, Expiration::DateTime(_)))
}

/// The device cookie as the browser holds it.
async fn device_cookie(client: &Client) -> cookie::Cookie<'static> {
    client
        .get_all_cookies()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.name() == "__Host-device")
        .expect("the device cookie")
}

#[tokio::test]
async fn without_keep_me_signed_in_the_browser_holds_a_session_cookie_across_rotations() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;

    let shared_computer = browser.context().await;
    sign_in_remembering(&shared_computer, &app, "ann", PW, false).await;
    assert_eq!(refresh_cookie_expiry(&shared_computer).await, None);
    let device = device_cookie(&shared_computer).await;
    assert!(
        !matches!(device.expires(), Some(Expiration::DateTime(_))),
        "the device cookie goes with the browser too"
    );
    wait_until(Duration::from_secs(5), "the sessions list", || async {
        text(&shared_computer, "sessions")
            .await
            .contains("until the browser closes")
    })
    .await;
    // A rotation keeps it a session cookie.
    click(&shared_computer, "refresh-now").await;
    call_protected(&shared_computer, "ann", Duration::from_secs(5)).await;
    let sid = super::pages::session_of(&app, "ann").await;
    let session = app.store.session(&sid).await.unwrap().unwrap();
    assert!(session.generation >= 1, "rotated");
    assert!(!session.remember);
    assert_eq!(refresh_cookie_expiry(&shared_computer).await, None);
    shared_computer.close().await.unwrap();

    let own_laptop = browser.context().await;
    sign_in_remembering(&own_laptop, &app, "ann", PW, true).await;
    assert!(
        refresh_cookie_expiry(&own_laptop).await.is_some(),
        "kept signed in: the cookie outlives the browser"
    );
    let device = device_cookie(&own_laptop).await;
    assert!(matches!(device.expires(), Some(Expiration::DateTime(_))));
    own_laptop.close().await.unwrap();
}

#[tokio::test]
async fn deleting_the_account_from_app_asks_for_the_password_again_when_it_is_stale() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let clock = clock_at_real_now();
    let app = Latchkey::start_with_clock(&[], Arc::new(clock.clone())).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;

    // Ten minutes and a second later (as the server sees it), the access
    // token is still valid but the password was entered too long ago.
    clock.advance(601);
    click(&client, "delete-account").await;
    click(&client, "delete-for-good").await;
    wait_until(Duration::from_secs(5), "the step-up prompt", || async {
        visible(&client, "step-up").await
    })
    .await;
    assert!(
        text(&client, "step-up-reason")
            .await
            .contains("more than 10 minutes ago"),
        "{}",
        text(&client, "step-up-reason").await
    );
    assert!(
        app.auth.user_named("ann").await.unwrap().is_some(),
        "not yet"
    );

    // A wrong password: said so, and nothing deleted.
    let password = client.find(Locator::Id("step-up-password")).await.unwrap();
    password.send_keys("not my password").await.unwrap();
    click(&client, "step-up-submit").await;
    wait_until(Duration::from_secs(5), "the error", || async {
        visible(&client, "delete-error").await
    })
    .await;
    assert!(app.auth.user_named("ann").await.unwrap().is_some());

    // The right one: re-authenticated, then deleted, and signed out.
    password.send_keys(PW).await.unwrap();
    click(&client, "step-up-submit").await;
    wait_until(Duration::from_secs(10), "the account deleted", || async {
        text(&client, "status")
            .await
            .contains("Your account has been deleted")
            || path(&client).await == "/login"
    })
    .await;
    assert!(app.auth.user_named("ann").await.unwrap().is_none(), "gone");
    wait_until(
        Duration::from_secs(5),
        "back at the sign-in page",
        || async { path(&client).await == "/login" },
    )
    .await;
    let cookies = client.get_all_cookies().await.unwrap();
    assert!(
        !cookies.iter().any(|c| c.name() == "__Host-refresh_token"),
        "the refresh cookie is cleared: {cookies:?}"
    );
    let problems = console_problems(&client).await;
    assert!(
        problems.iter().all(|p| p.contains("401")),
        "only the expected refusals: {problems:?}"
    );
    client.close().await.unwrap();
}

/// README, "Second factor", in Chromium: TOTP turned on from `/app` (the
/// secret read off the page, the code computed by the tests' own RFC 6238),
/// then a sign-in with the password and a code, and one with the password
/// and a recovery code.
#[tokio::test]
async fn a_second_factor_is_turned_on_from_app_and_asked_for_at_sign_in() {
    use crate::helpers::totp::totp_code;
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let clock = clock_at_real_now();
    let now = || latchkey::clock::Clock::now(&clock);
    let app = Latchkey::start_with_clock(&[], Arc::new(clock.clone())).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;

    click(&client, "totp-enroll").await;
    // 160 bits in base32: 32 characters.
    wait_until(
        Duration::from_secs(10),
        "the secret on the page",
        || async {
            visible(&client, "totp-confirm-form").await
                && text(&client, "totp-secret").await.len() == 32
        },
    )
    .await;
    let secret = text(&client, "totp-secret").await;
    let qr = client
        .find(Locator::Id("totp-qr"))
        .await
        .unwrap()
        .attr("src")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(qr.starts_with("data:image/svg+xml"), "{qr}");
    fill(&client, "totp-code", &totp_code(&secret, now())).await;
    click(&client, "totp-confirm").await;
    wait_until(Duration::from_secs(5), "the recovery codes", || async {
        client
            .find_all(Locator::Css("#totp-codes li"))
            .await
            .map(|l| l.len())
            .unwrap_or(0)
            == 10
    })
    .await;
    let first_code = client
        .find(Locator::Css("#totp-codes li"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    click(&client, "logout").await;
    wait_until(Duration::from_secs(5), "/login", || async {
        path(&client).await == "/login"
    })
    .await;

    // The password, then a code of the next step.
    clock.advance(30);
    password_then_second_step(&client, &app).await;
    fill(&client, "code", &totp_code(&secret, now())).await;
    submit(&client).await;
    wait_until(Duration::from_secs(10), "/app, signed in", || async {
        signed_in_as(&client, "ann").await
    })
    .await;
    click(&client, "logout").await;
    wait_until(Duration::from_secs(5), "/login", || async {
        path(&client).await == "/login"
    })
    .await;

    // No phone: a recovery code.
    password_then_second_step(&client, &app).await;
    fill(&client, "recovery_code", &first_code).await;
    submit(&client).await;
    wait_until(Duration::from_secs(10), "/app, signed in again", || async {
        signed_in_as(&client, "ann").await
    })
    .await;
    client.close().await.unwrap();
}

/// The login form with ann's password, up to the page asking for a code.
async fn password_then_second_step(client: &fantoccini::Client, app: &Latchkey) {
    client.goto(&app.url("/login")).await.unwrap();
    fill(client, "username", "ann").await;
    fill(client, "password", PW).await;
    submit(client).await;
    wait_until(
        Duration::from_secs(5),
        "the page asking for a code",
        || async {
            client
                .source()
                .await
                .unwrap_or_default()
                .contains("One more step")
        },
    )
    .await;
}

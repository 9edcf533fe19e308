//! Sessions across tabs and browsers: concurrent refreshes in two tabs, log
//! out, and log out everywhere.

use std::time::Duration;

use fantoccini::Locator;

use super::pages::session_of;
use super::*;
use crate::helpers::audit_events;

const PW: &str = "browser-pass-2";

#[tokio::test]
async fn two_tabs_refreshing_at_the_same_moment_repeatedly_both_stay_signed_in() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[("JWT_EXPIRATION", "3")]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;
    let sid = session_of(&app, "ann").await;
    let first = client.window().await.unwrap();
    let second = client.new_window(true).await.unwrap().handle;
    client.switch_to_window(second.clone()).await.unwrap();
    client.goto(&app.url("/app")).await.unwrap();
    wait_until(
        Duration::from_secs(5),
        "the second tab signed in",
        || async { signed_in_as(&client, "ann").await },
    )
    .await;

    // Both tabs press "Refresh now" at the same instants, ten times over,
    // on top of their own timers refreshing the 3-second token.
    let start = run_js(&client, "return Date.now() + 1500;").await;
    let plan = "const [at, rounds] = arguments; \
                for (let i = 0; i < rounds; i++) { \
                  setTimeout(() => document.getElementById('refresh-now').click(), at - Date.now() + i * 600); \
                }";
    for window in [&first, &second] {
        client.switch_to_window(window.clone()).await.unwrap();
        client
            .execute(plan, vec![start.clone(), json!(10)])
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500 + 10 * 600 + 2500)).await;

    for window in [first, second] {
        client.switch_to_window(window).await.unwrap();
        call_protected(&client, "ann", Duration::from_secs(5)).await;
    }
    let session = app.store.session(&sid).await.unwrap().unwrap();
    assert!(
        session.revoked_at.is_none(),
        "concurrent refreshes are never reuse"
    );
    let events = audit_events(app.store.as_ref()).await;
    assert!(!events.iter().any(|e| e.kind == "refresh_token_reused"));
    client.close().await.unwrap();
}

#[tokio::test]
async fn log_out_ends_the_session_and_app_then_leads_to_login() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;
    let sid = session_of(&app, "ann").await;

    click(&client, "logout").await;
    wait_until(Duration::from_secs(5), "the sign-in page", || async {
        path(&client).await == "/login"
    })
    .await;
    let session = app.store.session(&sid).await.unwrap().unwrap();
    assert!(
        session.revoked_at.is_some(),
        "the session ended on the server"
    );
    assert!(
        !client
            .get_all_cookies()
            .await
            .unwrap()
            .iter()
            .any(|c| c.name() == "__Host-refresh_token"),
        "the cookie is gone"
    );

    client.goto(&app.url("/app")).await.unwrap();
    wait_until(Duration::from_secs(5), "/app to lead to /login", || async {
        path(&client).await == "/login"
    })
    .await;
    client.close().await.unwrap();
}

#[tokio::test]
async fn log_out_everywhere_ends_the_session_in_another_browser_too() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[("JWT_EXPIRATION", "3")]).await;
    app.add_user("ann", PW).await;
    let laptop = browser.context().await;
    let phone = browser.context().await;
    sign_in(&laptop, &app, "ann", PW).await;
    sign_in(&phone, &app, "ann", PW).await;
    wait_until(Duration::from_secs(5), "both sessions listed", || async {
        laptop
            .find_all(Locator::Css("li.session"))
            .await
            .map(|l| l.len())
            .unwrap_or(0)
            == 2
    })
    .await;

    click(&laptop, "logout-everywhere").await;
    wait_until(Duration::from_secs(5), "the laptop at /login", || async {
        path(&laptop).await == "/login"
    })
    .await;
    // The phone finds out at its next refresh, within one 3-second token.
    wait_until(Duration::from_secs(10), "the phone at /login", || async {
        path(&phone).await == "/login"
    })
    .await;
    let user = app.store.user_by_name("ann").await.unwrap().unwrap();
    let live = app
        .store
        .active_sessions(
            user.id,
            latchkey::clock::Clock::now(&latchkey::clock::SystemClock),
        )
        .await
        .unwrap();
    assert!(live.is_empty(), "no session left: {live:?}");
    laptop.close().await.unwrap();
    phone.close().await.unwrap();
}

#[tokio::test]
async fn revoking_another_device_from_the_sessions_list_signs_it_out() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = Latchkey::start(&[("JWT_EXPIRATION", "3")]).await;
    app.add_user("ann", PW).await;
    let laptop = browser.context().await;
    let phone = browser.context().await;
    sign_in(&phone, &app, "ann", PW).await;
    sign_in(&laptop, &app, "ann", PW).await;
    wait_until(Duration::from_secs(5), "both sessions listed", || async {
        laptop
            .find_all(Locator::Css("li.session"))
            .await
            .map(|l| l.len())
            .unwrap_or(0)
            == 2
    })
    .await;

    // The entry that is not "this device" is the phone.
    let entries = laptop.find_all(Locator::Css("li.session")).await.unwrap();
    let mut revoked = false;
    for entry in entries {
        if !entry.text().await.unwrap().contains("this device") {
            entry
                .find(Locator::Css("button"))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            revoked = true;
        }
    }
    assert!(revoked);
    wait_until(Duration::from_secs(10), "the phone at /login", || async {
        path(&phone).await == "/login"
    })
    .await;
    wait_until(Duration::from_secs(5), "one session listed", || async {
        laptop
            .find_all(Locator::Css("li.session"))
            .await
            .map(|l| l.len())
            .unwrap_or(0)
            == 1
    })
    .await;
    assert!(
        signed_in_as(&laptop, "ann").await,
        "the laptop stays signed in"
    );
    laptop.close().await.unwrap();
    phone.close().await.unwrap();
}

//! A forgotten password in the browser, as `cargo run` shows it with no mail
//! server: "Forgot your password?" on the login page, the mail opened from
//! `/dev/outbox`, a new password set from its link, the old session gone
//! from another window, and a sign-in with the new password (README,
//! "Account recovery").

use std::time::Duration;

use fantoccini::Locator;

use super::*;
use crate::helpers::smtp::free_port;

const PW: &str = "browser-pass-7";
const NEW_PW: &str = "a browser's new passphrase";

#[tokio::test]
async fn a_forgotten_password_is_reset_from_the_development_outbox() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let port = free_port().to_string();
    let bind = format!("127.0.0.1:{port}");
    let origin = format!("http://127.0.0.1:{port}");
    let app = Latchkey::start(&[
        ("BIND", &bind),
        ("PUBLIC_ORIGIN", &origin),
        ("JWT_EXPIRATION", "3"),
    ])
    .await;
    app.add_user("ann", PW).await;
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth
        .set_email(&ann, "ann@example.com", true)
        .await
        .unwrap();

    // Signed in on one computer…
    let laptop = browser.context().await;
    sign_in(&laptop, &app, "ann", PW).await;

    // …and forgotten on another.
    let phone = browser.context().await;
    phone.goto(&app.url("/login")).await.unwrap();
    phone
        .find(Locator::LinkText("Forgot your password?"))
        .await
        .expect("the link on the login page")
        .click()
        .await
        .unwrap();
    wait_until(Duration::from_secs(5), "the forgot page", || async {
        path(&phone).await == "/password/forgot"
    })
    .await;
    fill(&phone, "login", "ann@example.com").await;
    submit(&phone).await;
    wait_until(Duration::from_secs(5), "the answer", || async {
        phone
            .source()
            .await
            .unwrap_or_default()
            .contains("is on its way")
    })
    .await;

    // The worker's step (the binary runs it in the background).
    app.auth.settled().await;
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 1);

    phone.goto(&app.url("/dev/outbox")).await.unwrap();
    let page = phone.source().await.unwrap();
    assert!(page.contains("ann@example.com"), "{page}");
    assert!(page.contains("Reset your latchkey password"), "{page}");
    phone
        .find(Locator::Css("table.outbox a"))
        .await
        .expect("the mail's link")
        .click()
        .await
        .unwrap();
    wait_until(
        Duration::from_secs(5),
        "the reset page, its token read",
        || async {
            path(&phone).await == "/password/reset"
                && run_js(&phone, "return document.getElementById('token').value")
                    .await
                    .as_str()
                    .is_some_and(|t| t.len() > 40)
        },
    )
    .await;
    // The token left the address bar (and so the history).
    let address = phone.current_url().await.unwrap();
    assert_eq!(address.fragment(), None, "{address}");

    fill(&phone, "password", NEW_PW).await;
    submit(&phone).await;
    wait_until(
        Duration::from_secs(5),
        "the reset to be confirmed",
        || async {
            phone
                .source()
                .await
                .unwrap_or_default()
                .contains("Your password is changed")
        },
    )
    .await;

    // The laptop's session is gone: its next refresh finds out.
    wait_until(Duration::from_secs(10), "the laptop at /login", || async {
        path(&laptop).await == "/login"
    })
    .await;

    // The new password signs in; the page linked to /login says so.
    phone
        .find(Locator::LinkText("Sign in"))
        .await
        .expect("a link to sign in")
        .click()
        .await
        .unwrap();
    sign_in(&phone, &app, "ann", NEW_PW).await;
    assert!(console_problems(&phone).await.is_empty());
    laptop.close().await.unwrap();
    phone.close().await.unwrap();
}

/// The mails in the development outbox, oldest first.
fn outbox(app: &Latchkey) -> Vec<String> {
    crate::helpers::outbox_mails(std::path::Path::new(&app.vars["MAIL_OUTBOX_DIR"]))
}

const ASK: &str = r#"
const [latchkey, login, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  const auth = createClient({ baseUrl: latchkey });
  try {
    done({ asked: await auth.forgotPassword(login) });
  } catch (error) {
    done({ error: String(error) });
  }
});
"#;

const USE: &str = r#"
const [latchkey, token, password, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  const auth = createClient({ baseUrl: latchkey });
  const report = {};
  try {
    report.reset = await auth.resetPassword(token, password);
    try {
      await auth.resetPassword(token, password);
    } catch (error) {
      report.again = { code: error.code, status: error.status };
    }
    try {
      await auth.verifyEmail('no-such-link');
    } catch (error) {
      report.bogus = { code: error.code, status: error.status };
    }
    await auth.login('ann', password);
    report.changed = await auth.changeEmail('ann@example.org');
  } catch (error) {
    report.error = String(error);
  }
  done(report);
});
"#;

#[tokio::test]
async fn an_spa_resets_a_password_and_changes_the_address_through_the_client() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let spa = super::spa::spa_site().await;
    let spa_origin = format!("http://{spa}");
    let app = Latchkey::start(&[("CORS_ALLOWED_ORIGINS", &spa_origin)]).await;
    app.add_user("ann", PW).await;
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth
        .set_email(&ann, "ann@example.com", true)
        .await
        .unwrap();
    let client = browser.context().await;
    client.goto(&format!("{spa_origin}/")).await.unwrap();

    let asked = client
        .execute_async(ASK, vec![json!(app.origin()), json!("ann@example.com")])
        .await
        .unwrap();
    assert_eq!(asked["asked"], true, "{asked}");
    app.auth.settled().await;
    app.auth.deliver_mail().await.unwrap();
    let mails = outbox(&app);
    let token = crate::helpers::smtp::link_token(mails.last().expect("the reset mail"));

    let report = client
        .execute_async(USE, vec![json!(app.origin()), json!(token), json!(NEW_PW)])
        .await
        .unwrap();
    assert_eq!(report["reset"], true, "{report}");
    assert_eq!(report["again"]["code"], "invalid_token", "{report}");
    assert_eq!(report["again"]["status"], 400, "{report}");
    assert_eq!(report["bogus"]["code"], "invalid_token", "{report}");
    assert_eq!(report["changed"], true, "PUT crosses origins: {report}");
    app.auth.settled().await;
    app.auth.deliver_mail().await.unwrap();
    let mails = outbox(&app);
    assert!(
        mails.last().unwrap().contains("To: ann@example.org"),
        "the verification link went to the new address"
    );
    let problems = console_problems(&client).await;
    // The refused calls are logged by the browser as failed requests.
    assert!(problems.iter().all(|p| p.contains("400")), "{problems:?}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn the_demo_page_changes_the_address_asking_for_the_password_once_it_is_old() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let clock = clock_at_real_now();
    let app = Latchkey::start_with_clock(&[], std::sync::Arc::new(clock.clone())).await;
    app.add_user("ann", PW).await;
    let ann = app.auth.user_named("ann").await.unwrap().unwrap();
    app.auth
        .set_email(&ann, "ann@example.com", true)
        .await
        .unwrap();
    let client = browser.context().await;
    sign_in(&client, &app, "ann", PW).await;
    wait_until(Duration::from_secs(5), "the address on /app", || async {
        text(&client, "email-current")
            .await
            .contains("ann@example.com (verified")
    })
    .await;

    // Signed in a moment ago: no password needed again.
    fill(&client, "email-new", "ann@example.org").await;
    click(&client, "email-submit").await;
    wait_until(
        Duration::from_secs(5),
        "the link to be on its way",
        || async {
            text(&client, "email-sent")
                .await
                .contains("A link is on its way to ann@example.org")
        },
    )
    .await;
    app.auth.settled().await;
    app.auth.deliver_mail().await.unwrap();
    let mails = outbox(&app);
    assert!(
        mails.last().unwrap().contains("To: ann@example.org"),
        "the verification link went to the new address"
    );
    // Until it is used, the account keeps its address.
    let me = app.auth.user_named("ann").await.unwrap().unwrap();
    assert_eq!(me.email.as_deref(), Some("ann@example.com"));

    // Past REAUTH_MAX_AGE the page asks for the password, then sends.
    clock.advance(601);
    let new_address = client.find(Locator::Id("email-new")).await.unwrap();
    new_address.clear().await.unwrap();
    new_address.send_keys("ann@example.net").await.unwrap();
    click(&client, "email-submit").await;
    wait_until(
        Duration::from_secs(5),
        "the password to be asked for",
        || async {
            text(&client, "email-error")
                .await
                .contains("enter your password again")
        },
    )
    .await;
    fill(&client, "email-password", PW).await;
    click(&client, "email-submit").await;
    wait_until(Duration::from_secs(5), "the second link", || async {
        text(&client, "email-sent")
            .await
            .contains("A link is on its way to ann@example.net")
    })
    .await;
    // The step-up challenge is a refused request the browser logs.
    let problems = console_problems(&client).await;
    assert!(problems.iter().all(|p| p.contains("401")), "{problems:?}");
    client.close().await.unwrap();
}

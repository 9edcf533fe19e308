//! An SPA on another origin using latchkey with `credentials: 'include'`
//! through the browser client, `static/latchkey.js`.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;

use super::*;

const PW: &str = "browser-pass-3";

/// A static site on its own port: another origin on the same site as
/// latchkey (127.0.0.1), as an SPA deployed beside its auth service is.
async fn spa_site() -> SocketAddr {
    let site = Router::new()
        .route(
            "/",
            get(|| async {
                axum::response::Html(
                    "<!doctype html><title>SPA</title><link rel=icon href=\"data:,\"><h1>SPA</h1>",
                )
            }),
        )
        .route(
            "/latchkey.js",
            get(|| async {
                (
                    [(CONTENT_TYPE, "text/javascript")],
                    include_str!("../../../static/latchkey.js"),
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, site).await });
    addr
}

/// Signs in from the SPA, calls `/protected`, then, as a freshly loaded page
/// would, resumes from the cookie alone through `/token` and calls again.
const SCENARIO: &str = r#"
const [latchkey, username, password, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  const report = {};
  try {
    const auth = createClient({ baseUrl: latchkey });
    await auth.login(username, password);
    report.loggedIn = true;
    const first = await auth.fetch(latchkey + '/protected');
    report.protected = { status: first.status, body: await first.json() };
    const reloaded = createClient({ baseUrl: latchkey });
    report.resumed = await reloaded.resume();
    const second = await reloaded.fetch(latchkey + '/protected');
    report.afterRefresh = { status: second.status, body: await second.json() };
  } catch (error) {
    report.error = String(error);
  }
  try {
    const raw = await fetch(latchkey + '/token', { method: 'POST', credentials: 'include' });
    report.rawToken = raw.status;
  } catch (error) {
    report.rawTokenError = String(error);
  }
  done(report);
});
"#;

#[tokio::test]
async fn an_spa_on_an_allowed_origin_signs_in_refreshes_and_calls_the_api() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let spa = spa_site().await;
    let spa_origin = format!("http://{spa}");
    let app = Latchkey::start(&[("CORS_ALLOWED_ORIGINS", &spa_origin)]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;

    client.goto(&format!("{spa_origin}/")).await.unwrap();
    let report = client
        .execute_async(SCENARIO, vec![json!(app.origin()), json!("ann"), json!(PW)])
        .await
        .unwrap();

    assert!(report.get("error").is_none(), "{report}");
    assert_eq!(report["protected"]["status"], 200, "{report}");
    assert_eq!(report["protected"]["body"]["user"]["username"], "ann");
    assert_eq!(
        report["resumed"], true,
        "the cookie works from the SPA's origin: {report}"
    );
    assert_eq!(report["afterRefresh"]["status"], 200, "{report}");
    assert_eq!(report["rawToken"], 200, "{report}");
    let user = app.state.store.user_by_name("ann").await.unwrap().unwrap();
    let live = app
        .state
        .store
        .active_sessions(user.id, app.state.clock.now())
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert!(
        live[0].generation >= 2,
        "the SPA rotated the cookie through /token"
    );
    let problems = console_problems(&client).await;
    assert!(problems.is_empty(), "{problems:?}");
    client.close().await.unwrap();
}

#[tokio::test]
async fn an_spa_on_an_unlisted_origin_cannot_sign_in_or_refresh() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let allowed = spa_site().await;
    let stranger = spa_site().await;
    let app = Latchkey::start(&[("CORS_ALLOWED_ORIGINS", &format!("http://{allowed}"))]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;

    client.goto(&format!("http://{stranger}/")).await.unwrap();
    let report = client
        .execute_async(SCENARIO, vec![json!(app.origin()), json!("ann"), json!(PW)])
        .await
        .unwrap();

    assert!(report.get("loggedIn").is_none(), "{report}");
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{report}"
    );
    assert!(
        report.get("rawToken").is_none(),
        "CORS hides every answer: {report}"
    );
    let user = app.state.store.user_by_name("ann").await.unwrap().unwrap();
    let live = app
        .state
        .store
        .active_sessions(user.id, app.state.clock.now())
        .await
        .unwrap();
    assert!(live.is_empty(), "no session was started");
    client.close().await.unwrap();
}

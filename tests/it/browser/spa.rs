//! An SPA on another origin using latchkey with `credentials: 'include'`
//! through the browser client, `static/latchkey.js`, and where that client
//! sends the access token.

use std::net::SocketAddr;

use axum::Router;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::routing::get;
use tower_http::cors::{Any, CorsLayer};

use super::*;

const PW: &str = "browser-pass-3";

/// A static site on its own port: another origin on the same site as
/// latchkey (127.0.0.1), as an SPA deployed beside its auth service is.
pub(super) async fn spa_site() -> SocketAddr {
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
    let user = app.store.user_by_name("ann").await.unwrap().unwrap();
    let live = app
        .store
        .active_sessions(
            user.id,
            latchkey::clock::Clock::now(&latchkey::clock::SystemClock),
        )
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
    let user = app.store.user_by_name("ann").await.unwrap().unwrap();
    let live = app
        .store
        .active_sessions(
            user.id,
            latchkey::clock::Clock::now(&latchkey::clock::SystemClock),
        )
        .await
        .unwrap();
    assert!(live.is_empty(), "no session was started");
    client.close().await.unwrap();
}

/// What an API server was sent: each request's path and `Authorization`.
type Received = Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>;

/// An API server on an origin of its own that records the `Authorization`
/// header of every request and lets any page read its answers (CORS without
/// credentials, `Authorization` allowed). `/denied` answers 401, as an API
/// refusing the token would.
async fn api_site() -> (SocketAddr, Received) {
    let received = Received::default();
    let record = received.clone();
    let site = Router::new()
        .fallback(move |uri: Uri, headers: HeaderMap| {
            let record = record.clone();
            async move {
                let authorization = headers
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                record
                    .lock()
                    .unwrap()
                    .push((uri.path().to_owned(), authorization));
                if uri.path() == "/denied" {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                }
            }
        })
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET])
                .allow_headers([AUTHORIZATION]),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, site).await });
    (addr, received)
}

/// Signs in, then calls latchkey, a listed API origin and an unlisted one
/// through `auth.fetch`, reporting each status.
const TOKEN_ROUTING: &str = r#"
const [latchkey, api, stranger, username, password, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  const report = {};
  try {
    const auth = createClient({ baseUrl: latchkey, apiOrigins: [api] });
    await auth.login(username, password);
    report.own = (await auth.fetch(latchkey + '/protected')).status;
    report.listed = (await auth.fetch(api + '/orders')).status;
    report.unlisted = (await auth.fetch(stranger + '/pixel')).status;
    report.unlistedDenied = (await auth.fetch(new URL('/denied', stranger))).status;
  } catch (error) {
    report.error = String(error);
  }
  done(report);
});
"#;

#[tokio::test]
async fn the_client_sends_the_access_token_only_to_latchkey_and_the_listed_api_origins() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let spa = spa_site().await;
    let spa_origin = format!("http://{spa}");
    let (api, api_received) = api_site().await;
    let (stranger, stranger_received) = api_site().await;
    let app = Latchkey::start(&[("CORS_ALLOWED_ORIGINS", &spa_origin)]).await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;

    client.goto(&format!("{spa_origin}/")).await.unwrap();
    let report = client
        .execute_async(
            TOKEN_ROUTING,
            vec![
                json!(app.origin()),
                json!(format!("http://{api}")),
                json!(format!("http://{stranger}")),
                json!("ann"),
                json!(PW),
            ],
        )
        .await
        .unwrap();

    assert!(report.get("error").is_none(), "{report}");
    assert_eq!(report["own"], 200, "latchkey got the token: {report}");
    assert_eq!(report["listed"], 200, "{report}");
    assert_eq!(report["unlisted"], 200, "{report}");
    assert_eq!(report["unlistedDenied"], 401, "{report}");
    let api_received = api_received.lock().unwrap().clone();
    assert_eq!(api_received.len(), 1, "{api_received:?}");
    assert_eq!(api_received[0].0, "/orders");
    assert!(
        api_received[0]
            .1
            .as_deref()
            .is_some_and(|a| a.starts_with("Bearer ey")),
        "the listed origin got the token: {api_received:?}"
    );
    let stranger_received = stranger_received.lock().unwrap().clone();
    assert_eq!(
        stranger_received,
        vec![("/pixel".to_owned(), None), ("/denied".to_owned(), None)],
        "no token for an unlisted origin, and no refresh and retry on its 401"
    );
    client.close().await.unwrap();
}

/// Step 1 of the step-up scenario: sign in, keep the client on `window`.
const STEP_UP_SIGN_IN: &str = r#"
const [latchkey, username, password, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  try {
    window.auth = createClient({ baseUrl: latchkey });
    window.ended = [];
    window.auth.onSessionEnd((reason) => window.ended.push(reason));
    await window.auth.login(username, password);
    done({ authTime: window.auth.user.auth_time });
  } catch (error) {
    done({ error: String(error) });
  }
});
"#;

/// Step 2, once the password has grown stale: delete (refused with the
/// step-up challenge), a wrong password, the right one, delete again.
const STEP_UP_DELETE: &str = r#"
const [password, done] = arguments;
(async () => {
  const report = {};
  const attempt = async (what) => {
    try {
      return { ok: await what() };
    } catch (error) {
      return { code: error.code, status: error.status, maxAge: error.maxAge };
    }
  };
  report.stale = await attempt(() => window.auth.deleteAccount());
  report.wrong = await attempt(() => window.auth.reauthenticate('not my password'));
  report.right = await attempt(() => window.auth.reauthenticate(password));
  report.authTime = window.auth.user.auth_time;
  report.deleted = await attempt(() => window.auth.deleteAccount());
  report.ended = window.ended;
  done(report);
})();
"#;

#[tokio::test]
async fn an_spa_on_another_origin_reads_the_step_up_challenge_and_answers_it() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let spa = spa_site().await;
    let spa_origin = format!("http://{spa}");
    let clock = latchkey::clock::ManualClock::starting_at(latchkey::clock::Clock::now(
        &latchkey::clock::SystemClock,
    ));
    let app = Latchkey::start_with_clock(
        &[("CORS_ALLOWED_ORIGINS", &spa_origin)],
        Arc::new(clock.clone()),
    )
    .await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    client.goto(&format!("{spa_origin}/")).await.unwrap();

    let signed_in = client
        .execute_async(
            STEP_UP_SIGN_IN,
            vec![json!(app.origin()), json!("ann"), json!(PW)],
        )
        .await
        .unwrap();
    assert!(signed_in.get("error").is_none(), "{signed_in}");
    let login_time = signed_in["authTime"].as_i64().expect("auth_time");

    // Eleven minutes later, as the server sees it: the token is still valid,
    // the password no longer recent.
    clock.advance(660);
    let report = client
        .execute_async(STEP_UP_DELETE, vec![json!(PW)])
        .await
        .unwrap();
    // Read across origins only because latchkey exposes WWW-Authenticate.
    assert_eq!(
        report["stale"],
        json!({ "code": "insufficient_user_authentication", "status": 401, "maxAge": 600 }),
        "{report}"
    );
    assert_eq!(report["wrong"]["code"], "invalid_credentials", "{report}");
    assert_eq!(report["right"]["ok"], true, "{report}");
    assert_eq!(report["authTime"], login_time + 660, "{report}");
    assert_eq!(report["deleted"]["ok"], true, "{report}");
    assert_eq!(report["ended"], json!(["account_deleted"]), "{report}");
    assert!(app.store.user_by_name("ann").await.unwrap().is_none());
    client.close().await.unwrap();
}

/// Refreshes past `MAX_REFRESHES_PER_MINUTE` (2 here): the client reports the
/// `429` with its `Retry-After`, and asks nothing more of the server until
/// then.
const REFRESH_LOOP: &str = r#"
const [latchkey, username, password, done] = arguments;
import('/latchkey.js').then(async ({ createClient }) => {
  const report = { answers: [] };
  try {
    const auth = createClient({ baseUrl: latchkey });
    await auth.login(username, password);
    for (let i = 0; i < 4; i++) {
      try {
        await auth.refresh();
        report.answers.push('ok');
      } catch (error) {
        report.answers.push({ status: error.status, code: error.code, retryAfter: error.retryAfter });
      }
    }
    report.signedIn = auth.user !== null;
  } catch (error) {
    report.error = String(error);
  }
  done(report);
});
"#;

#[tokio::test]
async fn the_client_waits_out_the_refresh_limit() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let spa = spa_site().await;
    let spa_origin = format!("http://{spa}");
    // Held, so the wait is exactly half a minute: a real second ticking over
    // between the refreshes would make it 29.
    let clock = latchkey::clock::ManualClock::starting_at(latchkey::clock::Clock::now(
        &latchkey::clock::SystemClock,
    ));
    let app = Latchkey::start_with_clock(
        &[
            ("CORS_ALLOWED_ORIGINS", &spa_origin),
            ("MAX_REFRESHES_PER_MINUTE", "2"),
        ],
        Arc::new(clock.clone()),
    )
    .await;
    app.add_user("ann", PW).await;
    let client = browser.context().await;
    client.goto(&format!("{spa_origin}/")).await.unwrap();
    let report = client
        .execute_async(
            REFRESH_LOOP,
            vec![json!(app.origin()), json!("ann"), json!(PW)],
        )
        .await
        .unwrap();

    assert!(report.get("error").is_none(), "{report}");
    let refused = json!({ "status": 429, "code": "too_many_attempts", "retryAfter": 30 });
    assert_eq!(report["answers"][0], "ok", "{report}");
    assert_eq!(report["answers"][1], "ok", "{report}");
    // Read across origins: `Retry-After` is an exposed header.
    assert_eq!(report["answers"][2], refused, "{report}");
    assert_eq!(report["answers"][3]["status"], 429, "{report}");
    assert_eq!(
        report["signedIn"], true,
        "the session is not ended: {report}"
    );
    // The fourth never reached the server.
    let metrics = app.auth.metrics_text();
    assert!(
        metrics.contains(r#"latchkey_refreshes_total{outcome="throttled"} 1"#),
        "{metrics}"
    );
    client.close().await.unwrap();
}

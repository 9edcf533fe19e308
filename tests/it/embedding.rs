//! latchkey as a library: the router of `examples/embed.rs` itself, with
//! latchkey nested under `/auth` beside the application's own routes
//! (README, "Embedding").

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use latchkey::Auth;
use latchkey::clock::ManualClock;
use serde_json::json;

use crate::helpers::*;

#[path = "../../examples/embed.rs"]
#[allow(dead_code)]
mod example;

struct Embedded {
    router: Router,
    clock: ManualClock,
    // Kept so the database outlives the router.
    _app: TestApp,
}

async fn embedded() -> Embedded {
    let app = TestApp::new().await;
    let config = config_from(&app.vars).unwrap();
    let clock = ManualClock::starting_at(START);
    let auth = Auth::with_clock(config, app.store.shared(), Arc::new(clock.clone())).unwrap();
    auth.create_user("ann", PASSWORD, "user").await.unwrap();
    let router = example::app(auth).layer(MockConnectInfo(SocketAddr::from(CLIENT_ADDR)));
    Embedded {
        router,
        clock,
        _app: app,
    }
}

impl Embedded {
    async fn send(&self, request: Request<Body>) -> TestResponse {
        call(&self.router, request).await
    }
}

#[tokio::test]
async fn the_app_logs_in_under_auth_and_its_strict_route_refuses_after_logout() {
    let app = embedded().await;
    let login = app
        .send(json_post(
            "/auth/login",
            &json!({ "username": "ann", "password": PASSWORD }),
        ))
        .await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let access = login.access_token();
    let refresh = login.refresh_token();
    // `__Host-` cookies must have `Path=/`, wherever latchkey is mounted.
    assert_eq!(login.refresh_cookie().unwrap().path(), Some("/"));

    let hello = app.send(bearer(Method::GET, "/hello", &access)).await;
    assert_eq!(hello.status, StatusCode::OK);
    assert_eq!(hello.json()["message"], "Hello, ann!");
    let account = app.send(bearer(Method::GET, "/account", &access)).await;
    assert_eq!(account.status, StatusCode::OK);
    assert_eq!(account.json()["user"], "ann");
    assert_eq!(
        app.send(Request::get("/hello").body(Body::empty()).unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    let logout = app
        .send(
            Request::post("/auth/logout")
                .header(header::COOKIE, format!("__Host-refresh_token={refresh}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);

    let refused = app.send(bearer(Method::GET, "/account", &access)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "invalid_token");
    // The plain extractor still takes the unexpired token: it is stateless.
    let still = app.send(bearer(Method::GET, "/hello", &access)).await;
    assert_eq!(still.status, StatusCode::OK);
}

#[tokio::test]
async fn pages_and_redirects_follow_the_prefix() {
    let app = embedded().await;

    let demo = app
        .send(Request::get("/auth/app").body(Body::empty()).unwrap())
        .await;
    assert_eq!(demo.status, StatusCode::SEE_OTHER);
    assert_eq!(demo.header("location"), Some("/auth/login?next=/auth/app"));

    let page = app
        .send(Request::get("/auth/login").body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.text();
    assert!(html.contains(r#"action="/auth/login""#), "{html}");
    assert!(html.contains(r#"href="/auth/static/style.css""#), "{html}");
    assert!(html.contains(r#"value="/auth/app""#), "{html}");
    assert!(!html.contains(r#"href="/login""#), "{html}");

    let signed_in = app
        .send(form_post(
            "/auth/login",
            &format!("username=ann&password={}", PASSWORD.replace(' ', "+")),
        ))
        .await;
    assert_eq!(
        signed_in.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_in.text()
    );
    assert_eq!(signed_in.header("location"), Some("/auth/app"));

    let style = app
        .send(
            Request::get("/auth/static/style.css")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(style.status, StatusCode::OK);
}

#[tokio::test]
async fn the_apps_step_up_route_wants_its_own_recent_password_and_latchkey_gives_it() {
    let app = embedded().await;
    let login = app
        .send(json_post(
            "/auth/login",
            &json!({ "username": "ann", "password": PASSWORD }),
        ))
        .await;
    let access = login.access_token();
    let payout = |token: &str| {
        Request::post("/payout")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(app.send(payout(&access)).await.status, StatusCode::OK);

    // Its own five minutes, not latchkey's REAUTH_MAX_AGE (ten).
    app.clock.advance(301);
    let refused = app.send(payout(&access)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.error_code(), "insufficient_user_authentication");
    let challenge = refused.header("www-authenticate").unwrap();
    assert!(challenge.ends_with(", max_age=300"), "{challenge}");

    let fresh = app
        .send(
            Request::post("/auth/reauthenticate")
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({ "password": PASSWORD }).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text());
    let paid = app.send(payout(&fresh.access_token())).await;
    assert_eq!(paid.status, StatusCode::OK);
    assert_eq!(paid.json()["paid_out_to"], "ann");

    // And the session must still be live.
    let logout = Request::post("/auth/logout")
        .header(
            header::COOKIE,
            format!("__Host-refresh_token={}", login.refresh_token()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(logout).await.status, StatusCode::NO_CONTENT);
    let ended = app.send(payout(&fresh.access_token())).await;
    assert_eq!(ended.error_code(), "invalid_token");
}

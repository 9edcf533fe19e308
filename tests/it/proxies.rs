//! `TRUSTED_PROXIES`: forwarded client addresses are believed only from a
//! trusted peer (the test harness's peer is 203.0.113.7).

use axum::http::{Request, StatusCode, header};

use crate::helpers::*;

async fn login_via(app: &TestApp, forwarded_for: &str, password: &str) -> TestResponse {
    app.send(
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", forwarded_for)
            .body(
                serde_json::json!({ "username": "ann", "password": password })
                    .to_string()
                    .into(),
            )
            .unwrap(),
    )
    .await
}

async fn session_ips(app: &TestApp, access: &str) -> Vec<String> {
    let listed = app.get_with_bearer("/sessions", access).await.json();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["ip"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let login = login_via(&app, "198.51.100.4", PASSWORD).await;
    assert_eq!(
        session_ips(&app, &login.access_token()).await,
        ["203.0.113.7"]
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_address_is_recorded() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.0/24")]);
    app.add_user("ann", PASSWORD).await;
    // The client tried to forge its address; the proxy appended the real one.
    let login = login_via(&app, "6.6.6.6, 198.51.100.4", PASSWORD).await;
    assert_eq!(
        session_ips(&app, &login.access_token()).await,
        ["198.51.100.4"]
    );
    let events = audit_events(&*app.store).await;
    let newest = events.last().expect("an event");
    assert_eq!(newest.ip.as_deref(), Some("198.51.100.4"));
}

#[tokio::test]
async fn spoofed_forwarded_addresses_do_not_escape_throttling() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    // From one untrusted peer, a new made-up address on every attempt.
    let mut last = StatusCode::OK;
    for i in 0..8 {
        last = login_via(&app, &format!("192.0.2.{i}"), "wrong password")
            .await
            .status;
    }
    assert_eq!(
        last,
        StatusCode::TOO_MANY_REQUESTS,
        "the peer's own address is throttled"
    );
}

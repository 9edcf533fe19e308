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

/// A login as nginx forwards it with the README's recipe, had it not cleared
/// `Forwarded`: the proxy's `X-Forwarded-For` naming the real client, and the
/// client's own `Forwarded` passed through untouched.
async fn login_through_nginx(
    app: &TestApp,
    username: &str,
    real_client: &str,
    claimed: &str,
    password: &str,
) -> TestResponse {
    app.send(
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-forwarded-for", real_client)
            .header("forwarded", format!("for={claimed}"))
            .body(
                serde_json::json!({ "username": username, "password": password })
                    .to_string()
                    .into(),
            )
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn a_clients_own_forwarded_header_buys_no_guesses_behind_a_proxy() {
    let app = test_app!(&[("TRUSTED_PROXIES", "203.0.113.0/24")]);
    app.add_user("ann", PASSWORD).await;
    // A new made-up `Forwarded` address on every guess, from one real client.
    let mut refused_at = None;
    for i in 0..12 {
        let claimed = format!("198.51.100.{i}");
        let answer =
            login_through_nginx(&app, "ann", "192.0.2.50", &claimed, "wrong password").await;
        if answer.status == StatusCode::TOO_MANY_REQUESTS {
            refused_at = Some(i);
            break;
        }
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(refused_at, Some(5), "the real client's pair limit (5) holds");
    for event in audit_events(&*app.store).await {
        assert_eq!(event.ip.as_deref(), Some("192.0.2.50"), "{event:?}");
    }
}

#[tokio::test]
async fn a_sprayer_naming_new_forwarded_addresses_meets_the_address_limit() {
    let app = test_app!(&[
        ("TRUSTED_PROXIES", "203.0.113.0/24"),
        ("THROTTLE_LOGIN_ADDRESS", "10"),
    ]);
    // One guess at each of many accounts, a new `Forwarded` address each time.
    let mut answered = Vec::new();
    for i in 0..14 {
        let user = format!("user{i}");
        let claimed = format!("198.51.100.{i}");
        answered.push(
            login_through_nginx(&app, &user, "192.0.2.50", &claimed, "wrong password")
                .await
                .status,
        );
    }
    assert_eq!(answered[..10], [StatusCode::UNAUTHORIZED; 10]);
    assert!(
        answered[10..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{answered:?}"
    );
}

#[tokio::test]
async fn the_configured_header_alone_names_the_client() {
    for (header_name, expected) in [
        ("forwarded", "198.51.100.9"),
        ("x-forwarded-for", "192.0.2.50"),
        ("x-real-ip", "192.0.2.77"),
    ] {
        let app = test_app!(&[
            ("TRUSTED_PROXIES", "203.0.113.0/24"),
            ("TRUSTED_PROXY_HEADER", header_name),
        ]);
        app.add_user("ann", PASSWORD).await;
        let login = app
            .send(
                Request::post("/login")
                    .header(header::CONTENT_TYPE, "application/json")
                    .header("x-forwarded-for", "192.0.2.50")
                    .header("forwarded", "for=198.51.100.9")
                    .header("x-real-ip", "192.0.2.77")
                    .body(
                        serde_json::json!({ "username": "ann", "password": PASSWORD })
                            .to_string()
                            .into(),
                    )
                    .unwrap(),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{header_name}");
        assert_eq!(
            session_ips(&app, &login.access_token()).await,
            [expected],
            "{header_name}"
        );
    }
}

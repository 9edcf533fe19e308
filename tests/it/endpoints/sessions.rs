//! `GET /sessions`, `DELETE /sessions/{id}` and `POST /logout-all`.

use super::*;

#[tokio::test]
async fn sessions_lists_each_sign_in_with_its_device_and_marks_the_current_one() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    login_with_agent(&app, "ann", "LaptopBrowser/1.0").await;
    app.advance(60);
    let phone = login_with_agent(&app, "ann", "PhoneBrowser/2.0").await;

    let sessions = sessions_of(&app, &phone.access_token()).await;

    assert_eq!(sessions.len(), 2, "{sessions:?}");
    for s in &sessions {
        for field in [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(s.get(field).is_some(), "missing {field}: {s}");
        }
        assert!(s["id"].as_str().is_some_and(|id| id.len() >= 22), "{s}");
    }
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(
        current.len(),
        1,
        "exactly one current session: {sessions:?}"
    );
    assert_eq!(current[0]["user_agent"], "PhoneBrowser/2.0");
    assert_eq!(current[0]["created_at"], "2026-01-01T00:01:00Z");
    assert_eq!(current[0]["last_used_at"], "2026-01-01T00:01:00Z");
    assert_eq!(current[0]["expires_at"], "2026-01-02T00:01:00Z");
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("the other session");
    assert_eq!(other["user_agent"], "LaptopBrowser/1.0");
    assert_eq!(other["created_at"], "2026-01-01T00:00:00Z");
}

#[tokio::test]
async fn sessions_show_the_client_address_of_each_sign_in() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    let sessions = sessions_of(&app, &access).await;

    assert_eq!(sessions[0]["ip"], "203.0.113.7");
}

#[tokio::test]
async fn sessions_over_a_real_socket_show_the_peer_address() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let server = TestServer::start(app.auth.clone()).await;
    let client = reqwest::Client::new();

    let login = client
        .post(server.url("/login"))
        .json(&json!({ "username": "ann", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let access = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let sessions: Value = client
        .get(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.stop().await;

    assert_eq!(sessions[0]["ip"], "127.0.0.1", "{sessions}");
}

#[tokio::test]
async fn sessions_shows_neither_ended_sessions_nor_other_users_sessions() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ended = app.login("ann", PASSWORD).await.refresh_token();
    app.login("bob", PASSWORD).await;
    let ann = app.login("ann", PASSWORD).await;
    assert_eq!(app.logout(&ended).await.status, StatusCode::NO_CONTENT);

    let sessions = sessions_of(&app, &ann.access_token()).await;

    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["current"], true);
}

#[tokio::test]
async fn revoking_one_session_ends_it_and_keeps_the_others() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let laptop = login_with_agent(&app, "ann", "LaptopBrowser/1.0").await;
    let phone = login_with_agent(&app, "ann", "PhoneBrowser/2.0").await;
    let access = phone.access_token();
    let laptop_id = sessions_of(&app, &access)
        .await
        .into_iter()
        .find(|s| s["user_agent"] == "LaptopBrowser/1.0")
        .expect("laptop session")["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let response = app
        .delete_with_bearer(&format!("/sessions/{laptop_id}"), &access)
        .await;

    assert_eq!(
        response.status,
        StatusCode::NO_CONTENT,
        "{}",
        response.text()
    );
    assert_eq!(
        app.refresh(&laptop.refresh_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&phone.refresh_token()).await.status,
        StatusCode::OK
    );
    let remaining = sessions_of(&app, &access).await;
    assert_eq!(remaining.len(), 1);
    assert_ne!(remaining[0]["id"], laptop_id.as_str());
    assert!(
        app.event_kinds()
            .await
            .contains(&"session_revoked".to_owned())
    );
}

#[tokio::test]
async fn a_refresh_moves_the_sessions_last_use() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    app.advance(120);

    let refreshed = app.refresh(&login.refresh_token()).await;
    assert_eq!(refreshed.status, StatusCode::OK);
    let sessions = sessions_of(&app, &refreshed.access_token()).await;

    assert_eq!(sessions[0]["created_at"], "2026-01-01T00:00:00Z");
    assert_eq!(sessions[0]["last_used_at"], "2026-01-01T00:02:00Z");
    assert_eq!(
        sessions[0]["expires_at"], "2026-01-02T00:02:00Z",
        "the idle expiry slid"
    );
}

#[tokio::test]
async fn a_session_listed_expires_at_its_absolute_end_when_that_comes_first() {
    let app = test_app!(&[("SESSION_MAX_LIFETIME", "3600")]);
    let access = app.signed_in_ann().await.access_token();

    let sessions = sessions_of(&app, &access).await;

    assert_eq!(sessions[0]["expires_at"], "2026-01-01T01:00:00Z");
}

#[tokio::test]
async fn sessions_that_ran_out_of_idle_time_are_not_listed() {
    let app = test_app!();
    let stale = app.signed_in_ann().await.refresh_token();
    app.advance(86_400);

    let fresh = app.login("ann", PASSWORD).await.access_token();
    let sessions = sessions_of(&app, &fresh).await;

    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(app.refresh(&stale).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revoking_the_current_session_by_id_ends_it() {
    let app = test_app!();
    let login = app.signed_in_ann().await;
    let access = login.access_token();
    let me = app.get_with_bearer("/me", &access).await.json();
    let id = me["session_id"].as_str().unwrap();

    let response = app
        .delete_with_bearer(&format!("/sessions/{id}"), &access)
        .await;

    assert_eq!(response.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.refresh(&login.refresh_token()).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn another_users_session_or_an_unknown_id_cannot_be_revoked() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ann = app.login("ann", PASSWORD).await.access_token();
    let bob = app.login("bob", PASSWORD).await;
    let bob_session = sessions_of(&app, &bob.access_token()).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let theirs = app
        .delete_with_bearer(&format!("/sessions/{bob_session}"), &ann)
        .await;
    let unknown = app
        .delete_with_bearer("/sessions/no-such-session-id", &ann)
        .await;

    for (what, response) in [("another user's", &theirs), ("unknown", &unknown)] {
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{what}");
        assert_eq!(response.error_code(), "not_found", "{what}");
    }
    assert_eq!(theirs.body, unknown.body, "no hint that the id exists");
    assert_eq!(
        app.refresh(&bob.refresh_token()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn revoking_an_already_revoked_session_is_not_found() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let first = app.login("ann", PASSWORD).await;
    let second = app.login("ann", PASSWORD).await.access_token();
    let id = sessions_of(&app, &first.access_token())
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/sessions/{id}");

    assert_eq!(
        app.delete_with_bearer(&path, &second).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete_with_bearer(&path, &second).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session_of_the_caller_only() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.add_user("bob", PASSWORD).await;
    let ann_one = app.login("ann", PASSWORD).await;
    let ann_two = app.login("ann", PASSWORD).await;
    let bob = app.login("bob", PASSWORD).await;

    let response = app
        .delete_with_bearer("/sessions", &ann_two.access_token())
        .await;

    assert_eq!(
        response.status,
        StatusCode::NO_CONTENT,
        "{}",
        response.text()
    );
    for (what, login) in [("first", &ann_one), ("current", &ann_two)] {
        let after = app.refresh(&login.refresh_token()).await;
        assert_eq!(
            after.status,
            StatusCode::UNAUTHORIZED,
            "ann's {what} session"
        );
    }
    assert_eq!(
        app.refresh(&bob.refresh_token()).await.status,
        StatusCode::OK,
        "bob is not affected"
    );
    assert!(
        app.event_kinds()
            .await
            .contains(&"sessions_revoked_all".to_owned())
    );
}

//! The audit trail as requests leave it: times, request ids, users and
//! sessions.

use super::*;

#[tokio::test]
async fn an_event_carries_the_time_and_the_request_id_of_its_response() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    app.advance(42);

    let response = app.login("ann", "not the password").await;

    let request_id = response.header("x-request-id").expect("x-request-id");
    let event = events(&app).await.into_iter().next().expect("an event");
    assert_eq!(event.kind, "login_failed");
    assert_eq!(event.at, START + 42);
    assert_eq!(event.request_id.as_deref(), Some(request_id));
}

#[tokio::test]
async fn a_client_request_id_is_echoed_and_recorded() {
    let app = test_app!();
    app.add_user("ann", PASSWORD).await;
    let mut login = json_post(
        "/login",
        &json!({ "username": "ann", "password": "not the password" }),
    );
    login
        .headers_mut()
        .insert("x-request-id", "client-chosen-id-1".parse().unwrap());

    let response = app.send(login).await;

    assert_eq!(response.header("x-request-id"), Some("client-chosen-id-1"));
    let event = events(&app).await.into_iter().next().unwrap();
    assert_eq!(event.request_id.as_deref(), Some("client-chosen-id-1"));
}

/// A failed login as `username` carrying `ids` as its `x-request-id`
/// headers: the id the response names, and the one its audit event recorded.
async fn failed_login_with_request_ids(
    app: &TestApp,
    username: &str,
    ids: &[HeaderValue],
) -> (String, Option<String>) {
    let mut login = json_post(
        "/login",
        &json!({ "username": username, "password": "not the password" }),
    );
    for id in ids {
        login.headers_mut().append("x-request-id", id.clone());
    }
    let response = app.send(login).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);
    let answered = response.header("x-request-id").expect("x-request-id");
    let event = events(app).await.into_iter().next().expect("an event");
    assert_eq!(event.kind, "login_failed");
    assert_eq!(event.username.as_deref(), Some(username));
    (answered.to_owned(), event.request_id)
}

#[tokio::test]
async fn an_unsafe_or_overlong_client_request_id_is_replaced_by_latchkeys_own() {
    let app = test_app!();
    let unsafe_ids = [
        HeaderValue::from_static("has spaces in it"),
        HeaderValue::from_static("quote\"d"),
        HeaderValue::from_static("user=admin;ip=1.2.3.4"),
        HeaderValue::from_static("tab\tinside"),
        HeaderValue::from_bytes(b"obs-text-\xe2\x80\xae").unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"a".repeat(200)).unwrap(),
        HeaderValue::from_str(&"a".repeat(65)).unwrap(),
    ];
    // A name per attempt, so that no attempt is throttled.
    for (n, id) in unsafe_ids.into_iter().enumerate() {
        let name = format!("user{n}");
        let (answered, recorded) =
            failed_login_with_request_ids(&app, &name, std::slice::from_ref(&id)).await;
        assert_ne!(answered.as_bytes(), id.as_bytes());
        assert!(
            !answered.is_empty()
                && answered.len() <= 64
                && answered
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c)),
            "{id:?} answered as {answered:?}"
        );
        assert_eq!(recorded.as_deref(), Some(answered.as_str()), "{id:?}");
    }

    // Two ids, each safe on its own: which would a log line mean? Neither.
    let both = [
        HeaderValue::from_static("first-id"),
        HeaderValue::from_static("second-id"),
    ];
    let (answered, recorded) = failed_login_with_request_ids(&app, "twice", &both).await;
    assert!(!answered.ends_with("-id"), "{answered}");
    assert_eq!(recorded.as_deref(), Some(answered.as_str()));
}

#[tokio::test]
async fn a_short_client_request_id_of_safe_characters_is_kept() {
    let app = test_app!();
    let longest = "a1".repeat(32);
    let uuid = "3f2c9a1e-8d4b-4c7e-9f10-2b6a5d7e8c91";
    for (n, id) in ["Req-1.2_3:abc", uuid, &longest].into_iter().enumerate() {
        let name = format!("user{n}");
        let sent = [HeaderValue::from_str(id).unwrap()];
        let (answered, recorded) = failed_login_with_request_ids(&app, &name, &sent).await;
        assert_eq!(answered, id);
        assert_eq!(recorded.as_deref(), Some(id));
    }
}

#[tokio::test]
async fn logout_and_revocations_name_the_user_and_session() {
    let app = test_app!();
    let ann = app.add_user("ann", PASSWORD).await;
    let one = app.login("ann", PASSWORD).await;
    let two = app.login("ann", PASSWORD).await;
    let one_sid = session_id_of(&app, &one).await;
    let two_sid = session_id_of(&app, &two).await;

    app.logout(&one.refresh_token()).await;
    app.delete_with_bearer(
        &format!("/sessions/{}", two_sid.as_str().unwrap()),
        &two.access_token(),
    )
    .await;

    let all = events(&app).await;
    let logout = all
        .iter()
        .find(|e| e.kind == "logout")
        .expect("logout event");
    assert_eq!(logout.user_id, Some(ann.id));
    assert_eq!(logout.session_id.as_deref(), one_sid.as_str());
    let revoked = all
        .iter()
        .find(|e| e.kind == "session_revoked")
        .expect("session_revoked event");
    assert_eq!(revoked.user_id, Some(ann.id));
    assert_eq!(revoked.session_id.as_deref(), two_sid.as_str());
}

#[tokio::test]
async fn the_login_event_names_the_session_it_started() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();
    let sid = app.get_with_bearer("/me", &access).await.json()["session_id"].clone();

    let event = events(&app)
        .await
        .into_iter()
        .find(|e| e.kind == "login_succeeded")
        .expect("login_succeeded event");

    assert_eq!(event.session_id.as_deref(), sid.as_str());
}

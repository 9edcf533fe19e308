//! `POST /register`, in JSON and as the sign-up form.

use super::*;

#[tokio::test]
async fn registering_creates_an_account_that_can_sign_in() {
    let app = test_app!();

    let response = app.register("carol", PASSWORD).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let body = response.json();
    assert_eq!(body["username"], "carol");
    let id = body["id"].as_str().expect("id is a string");
    assert!(id.parse::<i64>().is_ok(), "{id}");
    let login = app.login("carol", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let me = app
        .get_with_bearer("/me", &login.access_token())
        .await
        .json();
    assert_eq!(me["user"]["id"], id);
    assert_eq!(me["user"]["role"], "user");
    assert!(
        app.event_kinds()
            .await
            .contains(&"user_registered".to_owned())
    );
}

#[tokio::test]
async fn registering_a_taken_username_is_a_conflict() {
    let app = test_app!();
    assert_eq!(
        app.register("carol", PASSWORD).await.status,
        StatusCode::CREATED
    );

    let again = app.register("carol", "another password").await;

    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "username_taken");
    // The first password still works, the second does not.
    assert_eq!(app.login("carol", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(
        app.login("carol", "another password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn usernames_are_case_insensitive() {
    let app = test_app!();
    assert_eq!(
        app.register("ann", PASSWORD).await.status,
        StatusCode::CREATED
    );

    let upper = app.register("Ann", PASSWORD).await;

    assert_eq!(upper.status, StatusCode::CONFLICT);
    assert_eq!(upper.error_code(), "username_taken");
    assert_eq!(app.login("ANN", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn passwords_outside_8_to_256_characters_are_too_weak() {
    let app = test_app!();

    for (name, password) in [("seven", "x".repeat(7)), ("toolong", "x".repeat(257))] {
        let response = app.register(name, &password).await;
        assert_eq!(
            response.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{} characters",
            password.len()
        );
        assert_eq!(response.error_code(), "weak_password");
        assert_eq!(
            app.login(name, &password).await.status,
            StatusCode::UNAUTHORIZED,
            "no account was made"
        );
    }
}

#[tokio::test]
async fn a_password_of_exactly_8_characters_is_accepted() {
    let app = test_app!();
    // Eight of one letter (`xxxxxxxx`) is on the common list.
    let password = "tq7-wv2k";

    let response = app.register("eight", password).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(app.login("eight", password).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_password_of_more_than_72_bytes_is_accepted() {
    let app = test_app!();
    // 200 bytes in 100 characters: the limit is characters, and bcrypt's
    // 72 bytes no longer limit anyone.
    let password = "é".repeat(100);
    assert_eq!(password.len(), 200);

    let response = app.register("twohundred", &password).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(
        app.login("twohundred", &password).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_account_with_a_72_byte_password_can_sign_in() {
    let app = test_app!();
    let password = "q".repeat(72);
    let hash = bcrypt::hash(&password, 4).unwrap();
    app.store
        .create_user(
            NewUser {
                username: "gina",
                password_hash: &hash,
                role: "user",
                email: None,
            },
            START,
        )
        .await
        .unwrap();

    assert_eq!(app.login("gina", &password).await.status, StatusCode::OK);
}

#[tokio::test]
async fn registration_can_be_closed() {
    let app = test_app!(&[("REGISTRATION_OPEN", "false")]);

    let response = app.register("carol", PASSWORD).await;

    assert_eq!(response.status, StatusCode::FORBIDDEN);
    assert_eq!(response.error_code(), "registration_closed");
    assert_eq!(
        app.login("carol", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_sign_up_form_leads_to_the_login_page_with_a_notice() {
    let app = test_app!();

    let response = app
        .send(form_post(
            "/register",
            &form_body(&[("username", "carol"), ("password", PASSWORD)]),
        ))
        .await;

    assert_eq!(
        response.status,
        StatusCode::SEE_OTHER,
        "{}",
        response.text()
    );
    let location = response.header("location").unwrap().to_owned();
    assert!(location.starts_with("/login"), "{location}");
    let page = app.send(request(Method::GET, &location, &[])).await;
    assert!(
        page.text().contains("Your account is ready"),
        "{}",
        page.text()
    );
    assert_eq!(app.login("carol", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_failed_sign_up_form_shows_the_form_again_with_the_reason() {
    let app = test_app!();
    app.add_user("carol", PASSWORD).await;

    let taken = app
        .send(form_post(
            "/register",
            &form_body(&[("username", "carol"), ("password", PASSWORD)]),
        ))
        .await;
    let weak = app
        .send(form_post("/register", "username=dave&password=short"))
        .await;

    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(
        taken.text().contains("That username is taken"),
        "{}",
        taken.text()
    );
    assert!(taken.text().contains(r#"action="/register""#));
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.text().contains("Passwords must be at least 8 characters long."),
        "{}",
        weak.text()
    );
    assert!(
        !weak.text().contains("short\""),
        "the password is not echoed"
    );
}

#[tokio::test]
async fn with_registration_closed_the_sign_up_page_offers_no_form() {
    let app = test_app!(&[("REGISTRATION_OPEN", "false")]);

    let page = app.send(request(Method::GET, "/register", &[])).await;
    let index = app.send(request(Method::GET, "/", &[])).await;

    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.text().contains(r#"action="/register""#),
        "{}",
        page.text()
    );
    assert!(page.text().contains("closed"), "{}", page.text());
    assert!(
        !index.text().contains(r#"href="/register""#),
        "{}",
        index.text()
    );
}

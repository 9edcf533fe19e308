//! Password rules and storage (README "Passwords and login"): 8 to 256
//! characters of any script, counted as code points after NFKC; the most
//! common passwords refused, with the reason; one password however its accents
//! were typed; and bcrypt's 72-byte limit neither refusing nor truncating.

use axum::body::Body;
use axum::http::{Request, StatusCode};

use crate::helpers::*;

/// 25 characters, 75 bytes of UTF-8: over bcrypt's 72.
const CHINESE_PASSPHRASE: &str = "我们在春天的早晨一起去山上看日出然后一起回家吃早饭";
const PRECOMPOSED: &str = "caf\u{e9} cr\u{e8}me br\u{fb}l\u{e9}e";
const DECOMPOSED: &str = "cafe\u{301} cre\u{300}me bru\u{302}le\u{301}e";

/// A `422 weak_password` whose message gives `reason`.
fn assert_weak(what: &str, response: &TestResponse, reason: &str) {
    assert_eq!(
        response.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {}",
        response.text()
    );
    assert_eq!(response.error_code(), "weak_password", "{what}");
    let message = response.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains(reason), "{what}: {message}");
}

async fn stored_hash(app: &TestApp, username: &str) -> String {
    app.store
        .user_by_name(username)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

#[tokio::test]
async fn two_emoji_are_too_short_though_they_make_8_bytes() {
    let app = test_app!();
    let password = "😀😀";
    assert_eq!(password.len(), 8);

    let response = app.register("emoji", password).await;

    assert_weak("two emoji", &response, "at least 8 characters");
    assert_eq!(
        app.login("emoji", password).await.status,
        StatusCode::UNAUTHORIZED,
        "no account was made"
    );
}

#[tokio::test]
async fn the_most_common_passwords_are_refused_whatever_their_case() {
    let app = test_app!();

    for password in ["password", "12345678", "qwertyuiop", "password1", "PassWord1"] {
        let response = app.register("common", password).await;
        assert_weak(password, &response, "most common");
    }
    assert!(app.store.user_by_name("common").await.unwrap().is_none());
}

#[tokio::test]
async fn a_25_character_chinese_passphrase_registers_and_signs_in() {
    let app = test_app!();
    assert_eq!(CHINESE_PASSPHRASE.chars().count(), 25);
    assert_eq!(CHINESE_PASSPHRASE.len(), 75);

    let response = app.register("mei", CHINESE_PASSPHRASE).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let login = app.login("mei", CHINESE_PASSPHRASE).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(
        app.login("mei", &CHINESE_PASSPHRASE[..72]).await.status,
        StatusCode::UNAUTHORIZED,
        "its first 24 characters are not enough"
    );
}

#[tokio::test]
async fn a_password_of_256_characters_is_accepted_and_one_of_257_refused() {
    let app = test_app!();
    // Three bytes each: 768 and 771 bytes.
    let longest = "鍵".repeat(256);
    let too_long = "鍵".repeat(257);

    let accepted = app.register("longest", &longest).await;
    let refused = app.register("toolong", &too_long).await;

    assert_eq!(accepted.status, StatusCode::CREATED, "{}", accepted.text());
    assert_eq!(app.login("longest", &longest).await.status, StatusCode::OK);
    assert_weak("257 characters", &refused, "at most 256 characters");
}

#[tokio::test]
async fn a_password_registered_with_precomposed_accents_signs_in_typed_decomposed() {
    let app = test_app!();
    assert_ne!(PRECOMPOSED, DECOMPOSED);

    let response = app.register("zoe", PRECOMPOSED).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    let login = app.login("zoe", DECOMPOSED).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    assert_eq!(app.login("zoe", PRECOMPOSED).await.status, StatusCode::OK);
    assert_eq!(
        app.login("zoe", "cafe creme brulee").await.status,
        StatusCode::UNAUTHORIZED,
        "accents still count"
    );
}

#[tokio::test]
async fn a_plain_bcrypt_hash_signs_in_and_is_replaced_by_the_current_format() {
    let app = test_app!();
    let user = app.add_user("dana", PASSWORD).await;
    let plain = bcrypt::hash(PASSWORD, 4).unwrap();
    app.store
        .set_password_hash(user.id, &plain, START)
        .await
        .unwrap();

    let login = app.login("dana", PASSWORD).await;

    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let upgraded = stored_hash(&app, "dana").await;
    assert!(upgraded.starts_with("$latchkey-v1$2b$04$"), "{upgraded}");
    assert_eq!(app.login("dana", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(
        app.login("dana", "not the password").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_password_over_72_bytes_is_not_matched_by_another_sharing_its_first_72() {
    let app = test_app!();
    let first_72 = "p".repeat(60) + "0123456789AB";
    let password = format!("{first_72}{}", "y".repeat(28));
    let impostor = format!("{first_72}{}", "z".repeat(28));
    assert_eq!(password.len(), 100);

    let response = app.register("erin", &password).await;

    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(
        app.login("erin", &impostor).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("erin", &first_72).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login("erin", &password).await.status, StatusCode::OK);
}

#[tokio::test]
async fn changing_the_password_applies_the_same_rules() {
    let app = test_app!();
    let access = app.signed_in_ann().await.access_token();

    for (new, reason) in [
        ("😀😀".to_owned(), "at least 8 characters"),
        ("Password1".to_owned(), "most common"),
        ("鍵".repeat(257), "at most 256 characters"),
    ] {
        let response = app.change_password(&access, PASSWORD, &new).await;
        assert_weak(&new, &response, reason);
    }
    assert_eq!(app.login("ann", PASSWORD).await.status, StatusCode::OK);

    let changed = app.change_password(&access, PASSWORD, CHINESE_PASSPHRASE).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    assert_eq!(
        app.login("ann", CHINESE_PASSPHRASE).await.status,
        StatusCode::OK
    );

    let changed = app.change_password(&access, CHINESE_PASSPHRASE, PRECOMPOSED).await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.text());
    assert_eq!(app.login("ann", DECOMPOSED).await.status, StatusCode::OK);
}

#[tokio::test]
async fn the_description_states_the_password_rules() {
    let app = test_app!();

    let doc = app
        .send(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .json();

    let schemas = &doc["components"]["schemas"];
    for (schema, field) in [("NewAccount", "password"), ("PasswordChange", "new_password")] {
        let rules = &schemas[schema]["properties"][field];
        assert_eq!(rules["minLength"], 8, "{schema}.{field}: {rules}");
        assert_eq!(rules["maxLength"], 256, "{schema}.{field}: {rules}");
        let description = rules["description"].as_str().unwrap_or_default();
        assert!(description.contains("NFKC"), "{schema}.{field}: {description}");
        assert!(description.contains("common"), "{schema}.{field}: {description}");
    }
    for path in ["/register", "/password"] {
        let refusal = &doc["paths"][path]["post"]["responses"]["422"]["description"];
        assert!(
            refusal.as_str().unwrap_or_default().contains("most common"),
            "{path}: {refusal}"
        );
    }
}

//! `GET /openapi.json`: every route is described and every described
//! operation is routed, and real responses fit their description (status,
//! content type, required headers, body shape). schemathesis fuzzes the same
//! description in CI (`.ci/schemathesis.sh`); this is the quick check.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, TestResponse, bearer, form_post, json_post};

/// Every operation latchkey routes (README, "Endpoints" and "Pages and
/// assets", and this description).
const OPERATIONS: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/login"),
    ("post", "/login"),
    ("get", "/register"),
    ("post", "/register"),
    ("get", "/app"),
    ("post", "/token"),
    ("post", "/logout"),
    ("post", "/password"),
    ("post", "/reauthenticate"),
    ("get", "/protected"),
    ("get", "/me"),
    ("delete", "/me"),
    ("get", "/sessions"),
    ("delete", "/sessions"),
    ("delete", "/sessions/{id}"),
    ("get", "/healthz"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/static/{file}"),
    ("get", "/openapi.json"),
    ("get", "/.well-known/jwks.json"),
    ("get", "/.well-known/openid-configuration"),
    ("get", "/password/forgot"),
    ("post", "/password/forgot"),
    ("get", "/password/reset"),
    ("post", "/password/reset"),
    ("put", "/me/email"),
    ("post", "/me/email/verification"),
    ("get", "/email/verify"),
    ("post", "/email/verify"),
    ("get", "/dev/outbox"),
    ("post", "/login/second-factor"),
    ("post", "/me/totp"),
    ("delete", "/me/totp"),
    ("post", "/me/totp/confirm"),
    ("post", "/me/recovery-codes"),
];

const METHODS: &[&str] = &["get", "post", "put", "patch", "delete"];

async fn description(app: &TestApp) -> Value {
    let response = app.send(get("/openapi.json")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), Some("application/json"));
    response.json()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

fn described_operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if METHODS.contains(&method.as_str()) {
                operations.insert((method.clone(), path.clone()));
            }
        }
    }
    operations
}

/// A concrete path for a templated one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "no-such-session")
        .replace("{file}", "style.css")
}

#[tokio::test]
async fn the_description_names_every_routed_operation_and_nothing_else() {
    let app = TestApp::new().await;
    let doc = description(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");

    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(described_operations(&doc), expected);

    // Described operations are routed; other methods on those paths are
    // refused with 405 (so nothing routed is left undescribed).
    let access = app.signed_in_ann().await.access_token();
    for path in doc["paths"].as_object().expect("paths").keys() {
        for method in METHODS {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(concrete(path))
                .header(header::AUTHORIZATION, format!("Bearer {access}"))
                .body(Body::empty())
                .expect("request");
            let status = app.send(request).await.status;
            if expected.contains(&((*method).to_owned(), path.clone())) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                // `/dev/outbox` is `404` to another machine, as this client is.
                if !path.contains('{') && path != "/dev/outbox" {
                    assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
                }
            } else {
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is routed but not described"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_description_declares_its_security_schemes_and_the_error_shape() {
    let app = TestApp::new().await;
    let doc = description(&app).await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
    assert_eq!(schemes["refresh_cookie"]["type"], "apiKey");
    assert_eq!(schemes["refresh_cookie"]["in"], "cookie");
    assert_eq!(schemes["refresh_cookie"]["name"], "__Host-refresh_token");

    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error", "message"]));
    let codes = error["properties"]["error"]["enum"]
        .as_array()
        .expect("error codes");
    for code in [
        "invalid_credentials",
        "refresh_token_reused",
        "too_many_attempts",
    ] {
        assert!(codes.contains(&json!(code)), "{code}");
    }

    for (method, path) in [
        ("get", "/me"),
        ("post", "/password"),
        ("delete", "/sessions"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"],
            json!([{ "bearer": [] }]),
            "{method} {path}"
        );
    }
    assert_eq!(
        doc["paths"]["/token"]["post"]["security"],
        json!([{ "refresh_cookie": [] }])
    );
}

#[tokio::test]
async fn without_secure_cookies_the_description_names_the_plain_cookie() {
    let app = TestApp::with(&[("COOKIE_SECURE", "false")]).await;
    let doc = description(&app).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["refresh_cookie"]["name"],
        "refresh_token"
    );
}

/// Refusals are described by the codes they send: each code a refusal's
/// description names in backticks is one `ErrorBody.error` can be.
#[tokio::test]
async fn refusals_name_only_real_error_codes() {
    let app = TestApp::new().await;
    let doc = description(&app).await;
    let codes = doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"]
        .as_array()
        .expect("error codes")
        .clone();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let responses = operation["responses"].as_object().into_iter().flatten();
            for (status, response) in responses.filter(|(status, _)| status.as_str() >= "400") {
                let text = response["description"].as_str().unwrap_or_default();
                let named = text.split('`').skip(1).step_by(2);
                for word in named.filter(|w| {
                    !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                }) {
                    assert!(
                        codes.contains(&json!(word)),
                        "{method} {path} -> {status}: `{word}` is no error code"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn real_responses_fit_their_description() {
    let app = TestApp::with(&[("THROTTLE_LOGIN_PAIR", "1"), ("REGISTRATION_OPEN", "true")]).await;
    let doc = description(&app).await;
    let check = |method: &str, path: &str, response: &TestResponse| {
        conforms(&doc, method, path, response);
    };

    // Pages and assets.
    for path in ["/", "/login?next=/app&registered=1", "/register", "/app"] {
        let response = app.send(get(path)).await;
        check("get", path.split('?').next().unwrap_or(path), &response);
    }
    check(
        "get",
        "/static/{file}",
        &app.send(get("/static/latchkey.js")).await,
    );
    check(
        "get",
        "/static/{file}",
        &app.send(get("/static/nothing.js")).await,
    );
    check("get", "/static/{file}", &app.send(get("/static/%FF")).await);
    check("get", "/healthz", &app.send(get("/healthz")).await);
    check(
        "get",
        "/openapi.json",
        &app.send(get("/openapi.json")).await,
    );

    // Signing up.
    let account = json!({ "username": "ann", "password": PASSWORD });
    let created = app.send(json_post("/register", &account)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    check("post", "/register", &created);
    check(
        "post",
        "/register",
        &app.send(json_post("/register", &account)).await,
    );
    let weak = json!({ "username": "bob", "password": "short" });
    check(
        "post",
        "/register",
        &app.send(json_post("/register", &weak)).await,
    );
    let bad_name = json!({ "username": "a b", "password": PASSWORD });
    check(
        "post",
        "/register",
        &app.send(json_post("/register", &bad_name)).await,
    );
    let form = app
        .send(form_post("/register", "username=cat&password=short"))
        .await;
    assert_eq!(form.status, StatusCode::UNPROCESSABLE_ENTITY);
    check("post", "/register", &form);
    check(
        "post",
        "/register",
        &app.send(form_post(
            "/register",
            "username=cat&password=long+enough+now",
        ))
        .await,
    );

    // Signing in: JSON and form, right and wrong (throttled at the end).
    let login = app.login("ann", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK);
    check("post", "/login", &login);
    let access = login.access_token();
    let refresh = login.refresh_token();
    check(
        "post",
        "/login",
        &app.send(form_post(
            "/login",
            "username=cat&password=long+enough+now&next=/me",
        ))
        .await,
    );
    check(
        "post",
        "/login",
        &app.send(json_post("/login", &json!({ "username": "" })))
            .await,
    );
    let unsupported = Request::post("/login")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("hello"))
        .expect("request");
    check("post", "/login", &app.send(unsupported).await);
    let big = json!({ "username": "ann", "password": "x".repeat(8 * 1024) });
    check("post", "/login", &app.send(json_post("/login", &big)).await);

    // The Bearer endpoints, with and without a good token.
    for (method, path) in [
        (Method::GET, "/protected"),
        (Method::GET, "/me"),
        (Method::GET, "/sessions"),
    ] {
        let name = method.as_str().to_lowercase();
        check(
            &name,
            path,
            &app.send(bearer(method.clone(), path, &access)).await,
        );
        check(
            &name,
            path,
            &app.send(bearer(method.clone(), path, "forged")).await,
        );
        check(&name, path, &app.send(get(path)).await);
    }
    let other = app.login("ann", PASSWORD).await.access_token();
    let other_sid = app.get_with_bearer("/me", &other).await.json()["session_id"]
        .as_str()
        .expect("session id")
        .to_owned();
    let revoked = app
        .delete_with_bearer(&format!("/sessions/{other_sid}"), &access)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    check("delete", "/sessions/{id}", &revoked);
    check(
        "delete",
        "/sessions/{id}",
        &app.delete_with_bearer("/sessions/no-such-session", &access)
            .await,
    );
    check(
        "delete",
        "/sessions/{id}",
        &app.delete_with_bearer("/sessions/%FF", &access).await,
    );
    let change = |current: &str, new: &str| {
        let mut request = json_post(
            "/password",
            &json!({ "current_password": current, "new_password": new }),
        );
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {access}").parse().expect("header"),
        );
        request
    };
    check(
        "post",
        "/password",
        &app.send(change("nope", "a new password")).await,
    );
    check(
        "post",
        "/password",
        &app.send(change(PASSWORD, "short")).await,
    );
    check(
        "post",
        "/password",
        &app.send(change(PASSWORD, "a new password")).await,
    );

    // The refresh cookie.
    let rotated = app.refresh(&refresh).await;
    assert_eq!(rotated.status, StatusCode::OK);
    check("post", "/token", &rotated);
    check("post", "/token", &app.refresh("forged").await);
    check(
        "post",
        "/token",
        &app.send(
            Request::post("/token")
                .body(Body::empty())
                .expect("request"),
        )
        .await,
    );
    let foreign = Request::post("/token")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .expect("request");
    check("post", "/token", &app.send(foreign).await);
    check(
        "post",
        "/logout",
        &app.logout(&rotated.refresh_token()).await,
    );
    check("post", "/logout", &app.send(form_post("/logout", "")).await);
    // Step-up and deleting the account: another account's session, whose
    // password check grows stale.
    let reauthenticate = |token: &str, password: &str| {
        let mut request = json_post("/reauthenticate", &json!({ "password": password }));
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
        request
    };
    app.add_user("dee", PASSWORD).await;
    let dee = app.login("dee", PASSWORD).await.access_token();
    app.advance(601);
    let stale = app.delete_with_bearer("/me", &dee).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED);
    check("delete", "/me", &stale);
    let fresh = app.send(reauthenticate(&dee, PASSWORD)).await;
    assert_eq!(fresh.status, StatusCode::OK);
    check("post", "/reauthenticate", &fresh);
    let wrong = app.send(reauthenticate(&dee, "nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    check("post", "/reauthenticate", &wrong);
    let deleted = app.delete_with_bearer("/me", &fresh.access_token()).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    check("delete", "/me", &deleted);
    check("delete", "/me", &app.delete_with_bearer("/me", &dee).await);

    check(
        "delete",
        "/sessions",
        &app.delete_with_bearer("/sessions", &access).await,
    );

    // Wrong passwords until throttled (one free attempt here).
    let wrong = app.login("cat", "wrong password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    check("post", "/login", &wrong);
    let throttled = app.login("cat", "wrong password").await;
    assert_eq!(throttled.status, StatusCode::TOO_MANY_REQUESTS);
    check("post", "/login", &throttled);
    let throttled_form = app
        .send(form_post("/login", "username=cat&password=wrong+password"))
        .await;
    assert_eq!(throttled_form.status, StatusCode::TOO_MANY_REQUESTS);
    check("post", "/login", &throttled_form);
}

/// Checks `response` against the description of `method path`: a described
/// status, a described content type, every required header with its `const`,
/// and a JSON body of the described shape.
fn conforms(doc: &Value, method: &str, path: &str, response: &TestResponse) {
    let label = format!("{} {path} -> {}", method.to_uppercase(), response.status);
    let operation = &doc["paths"][path][method];
    assert!(operation.is_object(), "{label}: not described");
    let described = &operation["responses"][response.status.as_str()];
    assert!(described.is_object(), "{label}: status not described");

    let content_type = response
        .header("content-type")
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
    match (content_type, described["content"].as_object()) {
        (None, None) => assert!(response.body.is_empty(), "{label}: body without content"),
        (Some(ct), Some(content)) => {
            let media = content
                .get(&ct)
                .unwrap_or_else(|| panic!("{label}: content type {ct} not described"));
            if ct == "application/json" {
                matches(doc, &media["schema"], &response.json(), &label);
            }
        }
        (ct, content) => panic!("{label}: content type {ct:?}, described {content:?}"),
    }

    for (name, header) in described["headers"].as_object().into_iter().flatten() {
        if header["required"] != true {
            continue;
        }
        let value = response
            .header(name)
            .unwrap_or_else(|| panic!("{label}: no {name} header"));
        if let Some(expected) = header["schema"]["const"].as_str() {
            assert_eq!(value, expected, "{label}: {name}");
        }
        if header["schema"]["type"] == "integer" {
            assert!(value.parse::<u64>().is_ok(), "{label}: {name}: {value}");
        }
    }
}

/// A small JSON Schema check: `$ref`, `type`, `required`, `properties`,
/// `items`, `enum`, `const` and `minimum`, which is all the description uses
/// for bodies (and `pattern` / `format`, left to schemathesis).
fn matches(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(reference) = schema["$ref"].as_str() {
        let target = doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("{at}: dangling {reference}"));
        return matches(doc, target, value, at);
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        assert!(fits, "{at}: {value} is not {types:?}");
    }
    if let Some(allowed) = schema["enum"].as_array() {
        assert!(allowed.contains(value), "{at}: {value} not in {allowed:?}");
    }
    if !schema["const"].is_null() {
        assert_eq!(value, &schema["const"], "{at}");
    }
    if let (Some(minimum), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
        assert!(n >= minimum, "{at}: {n} < {minimum}");
    }
    for name in schema["required"].as_array().into_iter().flatten() {
        let name = name.as_str().expect("property name");
        assert!(value.get(name).is_some(), "{at}: no {name} in {value}");
    }
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        if let Some(field) = value.get(name) {
            matches(doc, property, field, &format!("{at}.{name}"));
        }
    }
    if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
        for (i, item) in values.iter().enumerate() {
            matches(doc, items, item, &format!("{at}[{i}]"));
        }
    }
}

/// A request for `method path` that gets as far as the database: a Bearer
/// token, the refresh cookie and a body of the operation's fields.
fn reaching_the_store(method: &str, path: &str, access: &str, refresh: &str) -> Request<Body> {
    let body = match (method, path) {
        ("post", "/login" | "/register") => json!({ "username": "bob", "password": PASSWORD }),
        ("post", "/password") => {
            json!({ "current_password": PASSWORD, "new_password": "another passphrase 9" })
        }
        ("post", "/reauthenticate") => json!({ "password": PASSWORD }),
        _ => Value::Null,
    };
    let mut request = Request::builder()
        .method(Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap())
        .uri(concrete(path))
        .header(header::AUTHORIZATION, format!("Bearer {access}"))
        .header(header::COOKIE, format!("__Host-refresh_token={refresh}"));
    if body.is_null() {
        return request.body(Body::empty()).unwrap();
    }
    request = request.header(header::CONTENT_TYPE, "application/json");
    request.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn with_the_database_gone_every_operation_answers_as_described() {
    for algorithm in ["HS256", "EdDSA"] {
        let app = TestApp::with(&[("ACCESS_TOKEN_ALGORITHM", algorithm)]).await;
        let doc = description(&app).await;
        let login = app.signed_in_ann().await;
        let (access, refresh) = (login.access_token(), login.refresh_token());
        app.store.close().await;
        let mut unavailable = BTreeSet::new();
        for (method, path) in OPERATIONS {
            let answer = app
                .send(reaching_the_store(method, path, &access, &refresh))
                .await;
            assert!(
                answer.status.as_u16() < 500 || answer.status == StatusCode::SERVICE_UNAVAILABLE,
                "{algorithm} {method} {path}: {} {}",
                answer.status,
                answer.text()
            );
            if answer.status != StatusCode::SERVICE_UNAVAILABLE {
                continue;
            }
            assert_eq!(answer.error_code(), "unavailable", "{method} {path}");
            assert_eq!(answer.header("retry-after"), Some("5"), "{method} {path}");
            let described = &doc["paths"][path][method]["responses"]["503"];
            assert!(
                described["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("`unavailable`")),
                "{method} {path}: {described}"
            );
            assert!(
                described["headers"].get("retry-after").is_some(),
                "{method} {path}"
            );
            unavailable.insert(format!("{method} {path}"));
        }
        // Each that needs the database says so, whatever its answer before.
        for needed in [
            "post /login",
            "post /register",
            "post /token",
            "post /logout",
            "post /password",
            "post /reauthenticate",
            "get /me",
            "get /sessions",
            "delete /sessions",
            "get /healthz",
            "get /readyz",
        ] {
            assert!(
                unavailable.contains(needed),
                "{algorithm}: {needed} in {unavailable:?}"
            );
        }
    }
}

//! Every endpoint of the README's "Endpoints": the success, each listed
//! failure, and the headers a browser or client relies on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use latchkey::store::NewUser;
use serde_json::{Value, json};

use crate::helpers::*;

/// The store `test_app!` opens in the tests below.
use super::STORE;

mod login;
mod caching;
mod logout;
mod origin;
mod me;
mod sessions;
mod register;
mod audit;
mod health;
mod pages;
mod accounts_elsewhere;

/// The host name the "browser" addresses the service by in origin tests.
const HOST: &str = "latchkey.test";
const EVIL: &str = "https://evil.example";
const SPA: &str = "https://spa.example";

fn cookie(refresh: &str) -> String {
    format!("__Host-refresh_token={refresh}")
}

fn login_form(username: &str, password: &str, next: Option<&str>) -> String {
    let mut pairs = vec![("username", username), ("password", password)];
    pairs.extend(next.map(|next| ("next", next)));
    form_body(&pairs)
}

/// A form `POST /login` with extra headers (name, value).
fn form_login_request(body: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder =
        Request::post("/login").header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

/// An empty-bodied request with headers (name, value).
fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

fn assert_no_store_on(what: &str, response: &TestResponse) {
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "Cache-Control on {what} ({})",
        response.status
    );
    assert_eq!(
        response.header("pragma"),
        Some("no-cache"),
        "Pragma on {what} ({})",
        response.status
    );
}

/// Signs `username` in (creating the account) with a `User-Agent`.
async fn login_with_agent(app: &TestApp, username: &str, agent: &str) -> TestResponse {
    let mut request = json_post(
        "/login",
        &json!({ "username": username, "password": PASSWORD }),
    );
    request
        .headers_mut()
        .insert(header::USER_AGENT, agent.parse().unwrap());
    let response = app.send(request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response
}

async fn sessions_of(app: &TestApp, access: &str) -> Vec<Value> {
    let response = app.get_with_bearer("/sessions", access).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    response.json().as_array().expect("a JSON array").clone()
}

async fn session_id_of(app: &TestApp, login: &TestResponse) -> Value {
    let me = app
        .get_with_bearer("/me", &login.access_token())
        .await
        .json();
    me["session_id"].clone()
}

/// The audit events so far, newest first.
async fn events(app: &TestApp) -> Vec<latchkey::store::AuditEvent> {
    let mut events = audit_events(&*app.store).await;
    events.reverse();
    events
}

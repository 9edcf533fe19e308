//! The server-rendered demo pages. Scripts live in `static/`, never inline.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{ApiError, Auth, BrowserCookies, Presented};
use crate::routes::extract::Base;
use crate::routes::second_factor::Enrolment;

pub(crate) fn router() -> OpenApiRouter<Auth> {
    OpenApiRouter::new()
        .routes(routes!(index))
        .routes(routes!(login))
        .routes(routes!(register))
        .routes(routes!(app))
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage<'a> {
    base: &'a str,
    registration_open: bool,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    base: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    next: &'a str,
    username: &'a str,
    /// Whether "Keep me signed in" is ticked: by default, and as the
    /// failed attempt had it.
    remember: bool,
    registration_open: bool,
    /// Whether "Forgot your password?" leads anywhere: latchkey sends mail.
    recovery: bool,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage<'a> {
    base: &'a str,
    error: Option<&'a str>,
    username: &'a str,
    registration_open: bool,
}

#[derive(Template)]
#[template(path = "second_factor.html")]
struct SecondFactorPage<'a> {
    base: &'a str,
    next: &'a str,
    error: Option<&'a str>,
    /// A factor to set up first (`SECOND_FACTOR_REQUIRED_ROLES`).
    enrolment: Option<&'a Enrolment>,
}

#[derive(Template)]
#[template(path = "recovery_codes.html")]
struct RecoveryCodesPage<'a> {
    base: &'a str,
    next: &'a str,
    codes: &'a [String],
}

#[derive(Template)]
#[template(path = "app.html")]
struct AppPage<'a> {
    base: &'a str,
    /// Whether the email section shows: latchkey sends mail.
    mail: bool,
}

pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed to render");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Where to go after signing in: a same-origin path, or the demo page. Anything
/// that a browser could read as another host (`//host`, `/\host`, `https://…`)
/// is refused (an open redirect otherwise), and so is anything but visible
/// ASCII (a `Location` header carries nothing else; percent-encode the rest).
pub fn safe_next(base: &Base, next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() <= 512
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => base.to("/app"),
    }
}

/// What a form shows for a refusal: plain words, never internals.
pub(crate) fn form_message(e: &ApiError) -> String {
    match e {
        ApiError::InvalidCredentials => "Wrong username or password.".to_owned(),
        ApiError::InvalidRequest(_) | ApiError::WeakPassword(_) => {
            let m = e.to_string();
            let mut chars = m.chars();
            let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
            format!("{}{}.", first.unwrap_or_default(), chars.as_str())
        }
        ApiError::TooManyAttempts { retry_after } => {
            format!("Too many attempts. Try again in {retry_after} seconds.")
        }
        ApiError::ServerBusy { retry_after } => {
            format!("The server is busy. Try again in {retry_after} seconds.")
        }
        ApiError::UsernameTaken => "That username is taken.".to_owned(),
        ApiError::RegistrationClosed => "Registration is closed.".to_owned(),
        ApiError::InvalidCode => {
            "That code is wrong or was used, or the sign-in has expired.".to_owned()
        }
        ApiError::SecondFactorLocked => "Too many wrong codes: codes are no longer accepted. \
            Use a recovery code, or ask the people who run this service to reset your second factor."
            .to_owned(),
        ApiError::InvalidLink => {
            "This link is unknown, used or expired. Ask for a new one.".to_owned()
        }
        _ => "Something went wrong. Please try again.".to_owned(),
    }
}

/// The form again, with the refusal's status and header (`Retry-After` when
/// throttled).
pub(crate) fn refused(mut page: Response, e: &ApiError) -> Response {
    if let Some((name, value)) = super::error::header(e) {
        page.headers_mut().insert(name, value);
    }
    page
}

pub fn login_failed(
    auth: &Auth,
    base: &Base,
    e: &ApiError,
    next: &str,
    username: &str,
    remember: bool,
) -> Response {
    let page = LoginPage {
        base: &base.0,
        error: Some(&form_message(e)),
        notice: None,
        next,
        username,
        remember,
        registration_open: auth.config().accounts.registration_open,
        recovery: auth.config().mail.sends(),
    };
    refused(render(super::error::status(e), &page), e)
}

/// The login's second step: a code or a recovery code (README, "Second
/// factor"). `401`: nobody is signed in yet.
pub fn second_factor_page(
    base: &Base,
    next: &str,
    enrolment: Option<&Enrolment>,
    error: Option<&str>,
) -> Response {
    let page = SecondFactorPage {
        base: &base.0,
        next,
        error,
        enrolment,
    };
    render(StatusCode::UNAUTHORIZED, &page)
}

/// Signed in by setting a second factor up: its recovery codes, shown this
/// once, and the way on.
pub fn recovery_codes_page(base: &Base, next: &str, codes: &[String]) -> Response {
    let page = RecoveryCodesPage {
        base: &base.0,
        next,
        codes,
    };
    render(StatusCode::OK, &page)
}

pub fn second_factor_failed(
    base: &Base,
    next: &str,
    enrolment: Option<&Enrolment>,
    e: &ApiError,
) -> Response {
    let mut page = second_factor_page(base, next, enrolment, Some(&form_message(e)));
    *page.status_mut() = super::error::status(e);
    refused(page, e)
}

pub fn register_failed(auth: &Auth, base: &Base, e: &ApiError, username: &str) -> Response {
    let page = RegisterPage {
        base: &base.0,
        error: Some(&form_message(e)),
        username,
        registration_open: auth.config().accounts.registration_open,
    };
    refused(render(super::error::status(e), &page), e)
}

/// What this is, with links to the demo.
#[utoipa::path(
    get, path = "/", tag = "pages", operation_id = "home_page",
    responses((status = 200, description = "The home page", body = String, content_type = "text/html"))
)]
async fn index(State(auth): State<Auth>, base: Base) -> Response {
    render(
        StatusCode::OK,
        &IndexPage {
            base: &base.0,
            registration_open: auth.config().accounts.registration_open,
        },
    )
}

/// The sign-in form; it works without JavaScript.
#[utoipa::path(
    get, path = "/login", tag = "pages", operation_id = "login_page",
    params(
        ("next" = Option<String>, Query, description = "Where to go after signing in; only same-origin paths are honoured"),
        ("registered" = Option<String>, Query, description = "Present after a sign-up: the form says the account is ready"),
    ),
    responses((status = 200, description = "The sign-in page", body = String, content_type = "text/html"))
)]
// Read leniently (a map, last value wins): a hand-edited query string should
// still show the sign-in form.
async fn login(
    State(auth): State<Auth>,
    base: Base,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let notice = q
        .contains_key("registered")
        .then_some("Your account is ready. Sign in to continue.");
    render(
        StatusCode::OK,
        &LoginPage {
            base: &base.0,
            error: None,
            notice,
            next: &safe_next(&base, q.get("next").map(String::as_str)),
            username: "",
            remember: true,
            registration_open: auth.config().accounts.registration_open,
            recovery: auth.config().mail.sends(),
        },
    )
}

/// The sign-up form (it says so when registration is closed).
#[utoipa::path(
    get, path = "/register", tag = "pages", operation_id = "register_page",
    responses((status = 200, description = "The sign-up page", body = String, content_type = "text/html"))
)]
async fn register(State(auth): State<Auth>, base: Base) -> Response {
    render(
        StatusCode::OK,
        &RegisterPage {
            base: &base.0,
            error: None,
            username: "",
            registration_open: auth.config().accounts.registration_open,
        },
    )
}

/// The demo: the access token, its refresh, the sessions list. It needs a
/// refresh cookie to start from; without one, sign in first (this also works
/// with JavaScript disabled).
#[utoipa::path(
    get, path = "/app", tag = "pages", operation_id = "app_page",
    security((), ("refresh_cookie" = [])),
    responses(
        (status = 200, description = "The demo page (a refresh cookie was sent)", body = String, content_type = "text/html"),
        (status = 303, description = "No refresh cookie: sign in first",
            headers(("location" = String, description = "`/login?next=/app`"))),
    )
)]
async fn app(State(auth): State<Auth>, cookies: BrowserCookies, base: Base) -> Response {
    match cookies.refresh {
        Presented::None => {
            Redirect::to(&base.to(&format!("/login?next={}", base.to("/app")))).into_response()
        }
        _ => render(
            StatusCode::OK,
            &AppPage {
                base: &base.0,
                mail: auth.config().mail.sends(),
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;
    use crate::routes::extract::Base;

    #[test]
    fn next_keeps_same_origin_paths_only() {
        for ok in ["/app", "/", "/a/b?c=d#e", "/caf%C3%A9"] {
            assert_eq!(safe_next(&Base::default(), Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "evil.example",
            "javascript:alert(1)",
            "/caf\u{e9}",
            "/a\r\nSet-Cookie: x=y",
            "/a b",
            "",
        ] {
            assert_eq!(safe_next(&Base::default(), Some(bad)), "/app", "{bad:?}");
        }
        assert_eq!(safe_next(&Base::default(), None), "/app");
        let nested = Base("/auth".to_owned());
        assert_eq!(safe_next(&nested, None), "/auth/app");
    }
}

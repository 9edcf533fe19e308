//! The refresh cookie: the only place its name and attributes are decided, for
//! setting and for clearing alike (same name, same path, or nothing is removed).

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::Cookie;
use cookie::time::Duration;

use crate::config::{Config, SameSite};

pub const SECURE_NAME: &str = "__Host-refresh_token";
pub const PLAIN_NAME: &str = "refresh_token";

#[derive(Debug, Clone)]
pub struct RefreshCookies {
    name: &'static str,
    secure: bool,
    same_site: cookie::SameSite,
}

/// What the request carried under the refresh cookie's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    None,
    One(String),
    /// Several cookies of that name (a planted cookie, or a path mix-up):
    /// there is no telling which one is genuine, so none is trusted.
    Ambiguous,
}

impl RefreshCookies {
    pub fn new(config: &Config) -> Self {
        Self {
            // `__Host-` makes the browser insist on Secure, Path=/ and no Domain,
            // so a sibling subdomain cannot plant or overwrite the cookie.
            name: if config.cookie_secure {
                SECURE_NAME
            } else {
                PLAIN_NAME
            },
            secure: config.cookie_secure,
            same_site: match config.cookie_samesite {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            },
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The cookie carrying `token`, living `max_age` seconds.
    pub fn set(&self, token: String, max_age: i64) -> Cookie<'static> {
        self.base(token)
            .max_age(Duration::seconds(max_age.max(0)))
            .build()
    }

    /// The cookie that makes the browser forget the refresh token.
    pub fn clear(&self) -> Cookie<'static> {
        self.base(String::new()).max_age(Duration::ZERO).build()
    }

    fn base(&self, value: String) -> cookie::CookieBuilder<'static> {
        Cookie::build((self.name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path("/")
    }

    /// Reads the refresh cookie from the `Cookie` headers of a request.
    pub fn presented(&self, headers: &HeaderMap) -> Presented {
        let mut found = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name.trim() == self.name).then(|| value.trim().trim_matches('"').to_owned())
            });
        match (found.next(), found.next()) {
            (None, _) => Presented::None,
            (Some(v), None) if !v.is_empty() => Presented::One(v),
            (Some(_), None) => Presented::None,
            (Some(_), Some(_)) => Presented::Ambiguous,
        }
    }
}

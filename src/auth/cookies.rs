//! The refresh cookie and the device cookie: the only place their names and
//! attributes are decided, for setting and for clearing alike (same name,
//! same path, or nothing is removed).

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use cookie::Cookie;
use cookie::time::Duration;

use crate::config::{Config, SameSite};

pub const SECURE_NAME: &str = "__Host-refresh_token";
pub const PLAIN_NAME: &str = "refresh_token";
pub const DEVICE_SECURE_NAME: &str = "__Host-device";
pub const DEVICE_PLAIN_NAME: &str = "device";
pub const MFA_SECURE_NAME: &str = "__Host-mfa";
pub const MFA_PLAIN_NAME: &str = "mfa";

/// Seconds a login may wait for its second factor (README, "Second factor").
pub const MFA_LIFETIME: i64 = 300;

/// How latchkey's cookies are named and flagged (`COOKIE_SECURE`,
/// `COOKIE_SAMESITE`; README, "The refresh cookie").
#[derive(Debug, Clone)]
pub struct CookiePolicy {
    name: &'static str,
    device_name: &'static str,
    mfa_name: &'static str,
    secure: bool,
    same_site: cookie::SameSite,
}

/// The cookies latchkey reads from a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrowserCookies {
    /// What came under the refresh cookie's name.
    pub refresh: Presented,
    /// Every device cookie (README, "Passwords and login"), genuine or not:
    /// each is checked against the account it is presented for.
    pub devices: Vec<String>,
    /// A login waiting for its second factor (`__Host-mfa`).
    pub pending_login: Option<String>,
}

/// Cookies for the browser to store or forget: the one thing the HTTP layer
/// turns into `Set-Cookie` headers.
#[derive(Debug, Clone, Default)]
pub struct SetCookies(pub Vec<Cookie<'static>>);

/// What the request carried under the refresh cookie's name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Presented {
    /// No refresh cookie.
    #[default]
    None,
    /// Exactly one.
    One(String),
    /// Several cookies of that name (a planted cookie, or a path mix-up):
    /// there is no telling which one is genuine, so none is trusted to
    /// sign in with; logging out ends every genuine one among them.
    Ambiguous(Vec<String>),
}

impl Presented {
    /// Every value presented, genuine or not.
    pub fn all(self) -> Vec<String> {
        match self {
            Self::None => Vec::new(),
            Self::One(v) => vec![v],
            Self::Ambiguous(vs) => vs,
        }
    }
}

impl CookiePolicy {
    pub fn new(config: &Config) -> Self {
        Self {
            // `__Host-` makes the browser insist on Secure, Path=/ and no Domain,
            // so a sibling subdomain cannot plant or overwrite the cookie.
            name: if config.cookies.secure {
                SECURE_NAME
            } else {
                PLAIN_NAME
            },
            device_name: if config.cookies.secure {
                DEVICE_SECURE_NAME
            } else {
                DEVICE_PLAIN_NAME
            },
            mfa_name: if config.cookies.secure {
                MFA_SECURE_NAME
            } else {
                MFA_PLAIN_NAME
            },
            secure: config.cookies.secure,
            same_site: match config.cookies.same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            },
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The cookie carrying `token`, living `max_age` seconds; without one,
    /// a session cookie, which the browser forgets when it closes (RFC 6265
    /// §5.3: no `Max-Age` and no `Expires`).
    pub fn set(&self, token: String, max_age: Option<i64>) -> Cookie<'static> {
        let cookie = self.base(token);
        match max_age {
            Some(seconds) => cookie.max_age(Duration::seconds(seconds.max(0))).build(),
            None => cookie.build(),
        }
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

    /// The device cookie for `token` (see `auth/credentials/throttle.rs`), as protected
    /// as the refresh cookie: as long-lived as the token, or, after a login
    /// without "Keep me signed in" (a shared computer), forgotten with the
    /// browser like that login's refresh cookie.
    pub fn device(&self, token: String, remember: bool) -> Cookie<'static> {
        let cookie = self.device_base(token);
        if remember {
            cookie
                .max_age(Duration::seconds(
                    crate::auth::keys::tokens::DEVICE_LIFETIME,
                ))
                .build()
        } else {
            cookie.build()
        }
    }

    /// The cookie that makes the browser forget its device cookie.
    pub fn clear_device(&self) -> Cookie<'static> {
        self.device_base(String::new())
            .max_age(Duration::ZERO)
            .build()
    }

    fn device_base(&self, value: String) -> cookie::CookieBuilder<'static> {
        Cookie::build((self.device_name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path("/")
    }

    /// The cookie that ties a login's second step to its password check:
    /// at most [`MFA_LIFETIME`] seconds, and `SameSite=Strict` whatever
    /// `COOKIE_SAMESITE` says, since only latchkey's own page or client
    /// completes a login.
    pub fn mfa(&self, value: String) -> Cookie<'static> {
        self.mfa_base(value)
            .max_age(Duration::seconds(MFA_LIFETIME))
            .build()
    }

    /// The cookie that makes the browser forget a pending login.
    pub fn clear_mfa(&self) -> Cookie<'static> {
        self.mfa_base(String::new()).max_age(Duration::ZERO).build()
    }

    fn mfa_base(&self, value: String) -> cookie::CookieBuilder<'static> {
        Cookie::build((self.mfa_name, value))
            .http_only(true)
            .secure(self.secure)
            .same_site(cookie::SameSite::Strict)
            .path("/")
    }

    /// Reads latchkey's cookies from the `Cookie` headers of a request.
    pub fn read(&self, headers: &HeaderMap) -> BrowserCookies {
        BrowserCookies {
            refresh: self.presented(headers),
            devices: self.devices(headers),
            pending_login: values(headers, self.mfa_name).find(|v| !v.is_empty()),
        }
    }

    /// Reads the refresh cookie from the `Cookie` headers of a request.
    pub fn presented(&self, headers: &HeaderMap) -> Presented {
        let mut found = values(headers, self.name).filter(|v| !v.is_empty());
        match (found.next(), found.next()) {
            (None, _) => Presented::None,
            (Some(v), None) => Presented::One(v),
            (Some(a), Some(b)) => Presented::Ambiguous([a, b].into_iter().chain(found).collect()),
        }
    }

    /// Every device cookie the request carries (a shared browser may hold
    /// more than one under the same name only through a planted cookie; the
    /// caller checks each).
    pub fn devices(&self, headers: &HeaderMap) -> Vec<String> {
        values(headers, self.device_name)
            .filter(|v| !v.is_empty())
            .take(4)
            .collect()
    }
}

fn values<'h>(headers: &'h HeaderMap, name: &'h str) -> impl Iterator<Item = String> + 'h {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (n, value) = pair.trim().split_once('=')?;
            (n.trim() == name).then(|| value.trim().trim_matches('"').to_owned())
        })
}

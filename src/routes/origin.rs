//! Cross-site request protection for the cookie endpoints (`/token`,
//! `/logout`, the login form): the refresh cookie must only be usable from
//! this service's own origin or an explicitly allowed one (OWASP CSRF cheat
//! sheet: verifying origin with standard headers, plus Fetch Metadata).

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Uri};

use crate::auth::{ApiError, Auth, ClientInfo};
use crate::config::Config;

/// Present in a handler's arguments: the request came from an allowed origin.
#[derive(Debug, Clone, Copy)]
pub struct AllowedOrigin;

impl<S> FromRequestParts<S> for AllowedOrigin
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = Auth::from_ref(state);
        if is_allowed(auth.config(), parts) {
            return Ok(Self);
        }
        let client = ClientInfo::from_request_parts(parts, state)
            .await
            .unwrap_or_default();
        let origin = parts
            .headers
            .get(ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(|o| o.chars().take(200).collect::<String>());
        let detail = format!(
            "{} {} origin={}",
            parts.method,
            parts.uri.path(),
            origin.as_deref().unwrap_or("-")
        );
        Err(auth.origin_rejected(&client, detail).await)
    }
}

pub fn is_allowed(config: &Config, parts: &Parts) -> bool {
    let headers = &parts.headers;
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (Some(origin), None) => origin,
        // A browser sends one `Origin` (RFC 6454 §7.3); several are a forgery
        // or a confused proxy, and there is no telling which one to judge.
        (Some(_), Some(_)) => return false,
        (None, _) => {
            // No Origin: a non-browser client, or an old browser on a
            // same-origin GET-like navigation. Fetch Metadata still betrays
            // a cross-site request (its values are tokens, compared as such).
            return headers
                .get("sec-fetch-site")
                .is_none_or(|v| !v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        }
    };
    let Some(origin) = origin.to_str().ok().map(str::to_ascii_lowercase) else {
        return false;
    };
    if config.origins.cors_allowed.contains(&origin) {
        return true;
    }
    if let Some(own) = &config.origins.public_origin {
        return *own == origin;
    }
    // Without a configured public origin, our own origin is the scheme this
    // server speaks and the host and port the browser addressed it by
    // (HTTP/1.1's `Host`, or HTTP/2's `:authority`). Behind a proxy that ends
    // TLS the scheme differs: that is what `PUBLIC_ORIGIN` is for.
    match (
        Tuple::parse_origin(&origin),
        addressed_host(headers, &parts.uri),
    ) {
        (Some(theirs), Some(host)) => {
            Tuple::parse(own_scheme(config), host).is_some_and(|ours| ours == theirs)
        }
        _ => false,
    }
}

/// The scheme this server speaks: `https` with `TLS_CERT_FILE`, else `http`.
pub(crate) fn own_scheme(config: &Config) -> &'static str {
    if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    }
}

/// The host (and port) the request was addressed to: HTTP/1.1 names it in
/// `Host`, HTTP/2 in the `:authority` of the URI (RFC 9113 §8.3.1). The
/// client's to write: never to be cached for anyone else.
pub(crate) fn addressed_host<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
}

/// An origin's scheme, host and port (RFC 6454 §4), the default port
/// filled in, so `https://a.example` and `https://a.example:443` agree.
#[derive(Debug, PartialEq, Eq)]
struct Tuple {
    scheme: &'static str,
    host: String,
    port: u16,
}

impl Tuple {
    /// `scheme://host[:port]` and nothing more.
    fn parse_origin(origin: &str) -> Option<Self> {
        let (scheme, authority) = origin.split_once("://")?;
        let scheme = match scheme {
            "http" => "http",
            "https" => "https",
            _ => return None,
        };
        Self::parse(scheme, authority)
    }

    /// `host[:port]` under `scheme`: one port at most, all digits, and a
    /// host that is a name or a bracketed IPv6 address.
    fn parse(scheme: &'static str, authority: &str) -> Option<Self> {
        let authority: axum::http::uri::Authority = authority.parse().ok()?;
        // `Authority` takes userinfo (`user@host`), which no origin has.
        if authority.as_str().contains('@') {
            return None;
        }
        // `Authority` reads `host:port` leniently (a port that is no number
        // is "no port"); an origin's port is digits or nothing.
        let host = authority.host();
        let port = match authority.as_str()[host.len()..].strip_prefix(':') {
            None if authority.as_str().len() == host.len() => {
                if scheme == "https" {
                    443
                } else {
                    80
                }
            }
            Some(digits) if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => {
                digits.parse().ok()?
            }
            _ => return None,
        };
        Some(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Tuple;

    #[test]
    fn origins_are_compared_by_scheme_host_and_port() {
        let ours = |authority| Tuple::parse("http", authority);
        assert_eq!(
            Tuple::parse_origin("http://a.example"),
            ours("a.example:80")
        );
        assert_eq!(Tuple::parse_origin("http://[::1]:3000"), ours("[::1]:3000"));
        assert_ne!(
            Tuple::parse_origin("https://a.example:80"),
            ours("a.example")
        );
        assert_ne!(
            Tuple::parse_origin("http://a.example:8080"),
            ours("a.example")
        );
        for malformed in [
            "http://a.example:3000:80",
            "http://a.example:80:80",
            "http://user@a.example",
            "http://a.example:port",
            "http://",
            "ftp://a.example",
            "a.example",
        ] {
            assert_eq!(Tuple::parse_origin(malformed), None, "{malformed}");
        }
    }
}

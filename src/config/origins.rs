//! Who may call with credentials, and who the client is (README,
//! "Cross-site protection and CORS", "Several instances behind a reverse
//! proxy").

use std::net::IpAddr;

use ipnet::IpNet;

use super::{ConfigError, Lookup, invalid};

/// Who may call with credentials, and who the client is (README,
/// "Cross-site protection and CORS", "Several instances behind a reverse proxy").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OriginSettings {
    /// Exact origins (`scheme://host[:port]`) allowed to call with
    /// credentials (`CORS_ALLOWED_ORIGINS`).
    pub cors_allowed: Vec<String>,
    /// The origin browsers see this service at; when unset it is taken from
    /// `Host` (`PUBLIC_ORIGIN`).
    pub public_origin: Option<String>,
    /// Peers whose forwarding header names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// The one forwarding header those peers set (`TRUSTED_PROXY_HEADER`);
    /// every other is ignored, whoever sends it.
    pub proxy_header: ProxyHeader,
}

/// The header a trusted reverse proxy names the client in
/// (`TRUSTED_PROXY_HEADER`; README, "Several instances behind a reverse
/// proxy"). Only one is read: a proxy passes on the others untouched, so
/// they say whatever the client wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `x-forwarded-for`, the default: a list of hops, the proxy's appended
    /// last (nginx's `$proxy_add_x_forwarded_for`, HAProxy's `option
    /// forwardfor`, most cloud load balancers).
    XForwardedFor,
    /// `forwarded` (RFC 7239): its `for=` parameters, read as hops.
    Forwarded,
    /// `x-real-ip`: one address, set (not appended) by the proxy.
    XRealIp,
}

impl ProxyHeader {
    /// The header's name, lower-cased as `TRUSTED_PROXY_HEADER` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
        }
    }
}

pub(super) fn parse(
    get: &Lookup<impl Fn(&str) -> Option<String>>,
) -> Result<OriginSettings, ConfigError> {
    let cors_allowed = match get.get("CORS_ALLOWED_ORIGINS") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|o| {
                parse_origin(o).ok_or_else(|| {
                    invalid(
                        "CORS_ALLOWED_ORIGINS",
                        format!("`{o}` is not an origin such as https://app.example.com"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let public_origin = get
        .get("PUBLIC_ORIGIN")
        .map(|o| {
            parse_origin(&o).ok_or_else(|| {
                invalid(
                    "PUBLIC_ORIGIN",
                    "must be an origin such as https://auth.example.com",
                )
            })
        })
        .transpose()?;
    let trusted_proxies = match get.get("TRUSTED_PROXIES") {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|p| {
                p.parse::<IpNet>()
                    .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        invalid(
                            "TRUSTED_PROXIES",
                            format!("`{p}` is not an address or CIDR such as 10.0.0.0/8"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let proxy_header = match get
        .get("TRUSTED_PROXY_HEADER")
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("x-forwarded-for") => ProxyHeader::XForwardedFor,
        Some("forwarded") => ProxyHeader::Forwarded,
        Some("x-real-ip") => ProxyHeader::XRealIp,
        Some(_) => {
            return Err(invalid(
                "TRUSTED_PROXY_HEADER",
                "must be `x-forwarded-for`, `forwarded` or `x-real-ip`",
            ));
        }
    };
    Ok(OriginSettings {
        cors_allowed,
        public_origin,
        trusted_proxies,
        proxy_header,
    })
}

/// Accepts `scheme://host[:port]` with an http(s) scheme and nothing after it;
/// returns it as browsers send `Origin` (RFC 6454 §6.2): lower-cased, without
/// a trailing slash, and without the scheme's default port.
pub(crate) fn parse_origin(value: &str) -> Option<String> {
    let value = value.trim().trim_end_matches('/').to_ascii_lowercase();
    let (authority, default_port) = match value.strip_prefix("https://") {
        Some(authority) => (authority, ":443"),
        None => (value.strip_prefix("http://")?, ":80"),
    };
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !valid {
        return None;
    }
    Some(
        value
            .strip_suffix(default_port)
            .unwrap_or(&value)
            .to_owned(),
    )
}

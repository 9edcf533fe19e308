//! Configuration: read once at start from the environment (and `.env`, loaded by
//! `main`), validated, and never read again. Built on a lookup function so tests
//! pass a map instead of mutating the process environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dev_secrets;
use crate::server::ServeLimits;

/// Shortest HMAC key accepted, in bytes (HS256 wants at least its output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest `REFRESH_REUSE_GRACE` accepted, in seconds.
pub const MAX_REFRESH_REUSE_GRACE: i64 = 60;

/// `REQUEST_TIMEOUT` unless configured: a login waiting its turn for a
/// bcrypt thread under load still makes it, a stalled body does not linger.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest `MAX_CONNECTIONS` accepted: Linux's default ceiling on open files
/// per process (`fs.nr_open`).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the store lives, parsed from `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created if missing).
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database; gone when the process ends.
    SqliteMemory,
    /// A PostgreSQL URL, shared by several instances.
    Postgres(String),
}

// A PostgreSQL URL may carry a password: `Debug` shows it as `[redacted]`.
impl fmt::Debug for Database {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SqliteFile(path) => f.debug_tuple("SqliteFile").field(path).finish(),
            Self::SqliteMemory => f.write_str("SqliteMemory"),
            Self::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&redact_password(url))
                .finish(),
        }
    }
}

/// `postgres://user:secret@host/db` becomes `postgres://user:[redacted]@host/db`.
pub fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Failures (for sign-ups: attempts) allowed per counter before back-off
/// begins; see `auth::throttle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// One account from one address.
    pub login_pair: i64,
    /// One address, any account.
    pub login_address: i64,
    /// One account, any address.
    pub login_account: i64,
    /// Sign-ups from one address per hour.
    pub register_address: i64,
    /// The longest back-off, seconds.
    pub max_delay: i64,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub env: AppEnv,
    pub jwt_secret: Secret,
    pub jwt_refresh_secret: Secret,
    /// Access-token lifetime, seconds.
    pub jwt_expiration: i64,
    /// Refresh-token lifetime (idle timeout), seconds.
    pub jwt_refresh_expiration: i64,
    /// Absolute session lifetime, seconds.
    pub session_max_lifetime: i64,
    /// Seconds during which the previous refresh token is still honoured.
    pub refresh_reuse_grace: i64,
    pub database: Database,
    pub bind: SocketAddr,
    pub cookie_secure: bool,
    pub cookie_samesite: SameSite,
    /// Exact origins (`scheme://host[:port]`) allowed to call with credentials.
    pub cors_allowed_origins: Vec<String>,
    pub bcrypt_cost: u32,
    pub registration_open: bool,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// The origin browsers see this service at; when unset it is taken from `Host`.
    pub public_origin: Option<String>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// A connection must deliver a complete request head within this long.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Reading a request's body and answering it must finish within this long.
    pub request_timeout: Duration,
    /// Most connections open at once (see `server::ServeLimits`).
    pub max_connections: usize,
    /// How often expired sessions, old audit events and stale throttle
    /// counters are deleted.
    pub housekeeping_interval: Duration,
    /// Audit events older than this many seconds are deleted.
    pub audit_retention: i64,
    /// Live sessions a user may have; a login beyond it ends the least
    /// recently used one.
    pub max_sessions_per_user: i64,
    pub throttle: ThrottlePolicy,
    pub log_format: LogFormat,
    /// True when the secrets were generated for development rather than configured.
    pub generated_secrets: bool,
}

/// One invalid setting, named so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads configuration through `lookup`; empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let env = match get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(_) => return Err(invalid("APP_ENV", "must be `development` or `production`")),
        };
        let production = env == AppEnv::Production;

        let jwt_expiration = number(&get, "JWT_EXPIRATION", 900, 1)?;
        let jwt_refresh_expiration = number(&get, "JWT_REFRESH_EXPIRATION", 86_400, 1)?;
        let session_max_lifetime = number(&get, "SESSION_MAX_LIFETIME", 2_592_000, 1)?;
        let refresh_reuse_grace = number(&get, "REFRESH_REUSE_GRACE", 10, 0)?;
        // The grace window covers two tabs refreshing at once or a response
        // lost on the way: seconds. For as long as it lasts a copied token
        // still works, so a long one turns reuse detection off (README,
        // "Rotation, grace and reuse detection").
        if refresh_reuse_grace > MAX_REFRESH_REUSE_GRACE {
            return Err(invalid(
                "REFRESH_REUSE_GRACE",
                format!(
                    "must be at most {MAX_REFRESH_REUSE_GRACE} seconds (a longer grace lets a \
                     copied refresh token through unnoticed)"
                ),
            ));
        }
        if refresh_reuse_grace >= jwt_refresh_expiration {
            return Err(invalid(
                "REFRESH_REUSE_GRACE",
                "must be shorter than JWT_REFRESH_EXPIRATION",
            ));
        }

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://latchkey.db".into());
        let database = parse_database_url(&database_url)?;

        let bind = match get("BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(v) => v
                .parse()
                .map_err(|_| invalid("BIND", "must be an address such as 127.0.0.1:3000"))?,
        };

        let cookie_secure = boolean(&get, "COOKIE_SECURE", true)?;
        let cookie_samesite = match get("COOKIE_SAMESITE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("strict") => SameSite::Strict,
            Some("lax") => SameSite::Lax,
            Some("none") => SameSite::None,
            Some(_) => {
                return Err(invalid(
                    "COOKIE_SAMESITE",
                    "must be `strict`, `lax` or `none`",
                ));
            }
        };
        if cookie_samesite == SameSite::None && !cookie_secure {
            return Err(invalid(
                "COOKIE_SAMESITE",
                "`none` requires COOKIE_SECURE=true (browsers drop such cookies otherwise)",
            ));
        }
        if production && !cookie_secure {
            return Err(invalid("COOKIE_SECURE", "must be true in production"));
        }

        let cors_allowed_origins = match get("CORS_ALLOWED_ORIGINS") {
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
        let public_origin = get("PUBLIC_ORIGIN")
            .map(|o| {
                parse_origin(&o).ok_or_else(|| {
                    invalid(
                        "PUBLIC_ORIGIN",
                        "must be an origin such as https://auth.example.com",
                    )
                })
            })
            .transpose()?;

        let trusted_proxies = match get("TRUSTED_PROXIES") {
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

        let shutdown_timeout = number(&get, "SHUTDOWN_TIMEOUT", 10, 0)?;
        let limits = ServeLimits::DEFAULT;
        let header_read_timeout = seconds(&get, "HEADER_READ_TIMEOUT", limits.header_read_timeout)?;
        let idle_timeout = seconds(&get, "IDLE_TIMEOUT", limits.idle_timeout)?;
        let request_timeout = seconds(&get, "REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)?;
        let max_connections = match get("MAX_CONNECTIONS") {
            None => limits.max_connections,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "MAX_CONNECTIONS",
                        format!("must be a whole number from 1 to {MAX_CONNECTIONS_LIMIT}"),
                    )
                })?,
        };
        let housekeeping_interval = number(&get, "HOUSEKEEPING_INTERVAL", 300, 1)?;
        let audit_retention = number(&get, "AUDIT_RETENTION", 90 * 86_400, 1)?;
        let max_sessions_per_user = number(&get, "MAX_SESSIONS_PER_USER", 50, 1)?;

        let throttle = ThrottlePolicy {
            login_pair: number(&get, "THROTTLE_LOGIN_PAIR", 5, 1)?,
            login_address: number(&get, "THROTTLE_LOGIN_ADDRESS", 30, 1)?,
            login_account: number(&get, "THROTTLE_LOGIN_ACCOUNT", 50, 1)?,
            register_address: number(&get, "THROTTLE_REGISTER_ADDRESS", 10, 1)?,
            max_delay: number(&get, "THROTTLE_MAX_DELAY", 900, 1)?,
        };

        let log_format = match get("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(invalid("LOG_FORMAT", "must be `text` or `json`")),
        };

        let bcrypt_cost = match get("BCRYPT_COST") {
            None => 12,
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|c| (4..=31).contains(c))
                .ok_or_else(|| invalid("BCRYPT_COST", "must be a whole number from 4 to 31"))?,
        };
        let registration_open = boolean(&get, "REGISTRATION_OPEN", !production)?;
        let jwt_issuer = get("JWT_ISSUER").unwrap_or_else(|| "latchkey".into());
        let jwt_audience = get("JWT_AUDIENCE").unwrap_or_else(|| "latchkey".into());

        let configured = (
            get("JWT_SECRET").map(Secret),
            get("JWT_REFRESH_SECRET").map(Secret),
        );
        let (jwt_secret, jwt_refresh_secret, generated_secrets) = match configured {
            (Some(a), Some(r)) => (a, r, false),
            (access, _) if production => {
                let missing = if access.is_none() {
                    "JWT_SECRET"
                } else {
                    "JWT_REFRESH_SECRET"
                };
                return Err(invalid(missing, "is required in production"));
            }
            (access, refresh) => {
                let path = dev_secrets::path_for(&database);
                let stored = dev_secrets::load_or_create(&path).map_err(|e| {
                    invalid(
                        "JWT_SECRET",
                        format!("cannot keep development secrets in {}: {e}", path.display()),
                    )
                })?;
                (
                    access.unwrap_or(stored.access),
                    refresh.unwrap_or(stored.refresh),
                    true,
                )
            }
        };
        for (name, secret) in [
            ("JWT_SECRET", &jwt_secret),
            ("JWT_REFRESH_SECRET", &jwt_refresh_secret),
        ] {
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(invalid(
                    name,
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
        }
        if jwt_secret == jwt_refresh_secret {
            return Err(invalid("JWT_REFRESH_SECRET", "must differ from JWT_SECRET"));
        }

        Ok(Self {
            env,
            jwt_secret,
            jwt_refresh_secret,
            jwt_expiration,
            jwt_refresh_expiration,
            session_max_lifetime,
            refresh_reuse_grace,
            database,
            bind,
            cookie_secure,
            cookie_samesite,
            cors_allowed_origins,
            bcrypt_cost,
            registration_open,
            jwt_issuer,
            jwt_audience,
            public_origin,
            trusted_proxies,
            shutdown_timeout: Duration::from_secs(shutdown_timeout.unsigned_abs()),
            header_read_timeout,
            idle_timeout,
            request_timeout,
            max_connections,
            housekeeping_interval: Duration::from_secs(housekeeping_interval.unsigned_abs()),
            audit_retention,
            max_sessions_per_user,
            throttle,
            log_format,
            generated_secrets,
        })
    }
}

/// A whole number from `min` up to ten years' worth of seconds (seconds or counts).
fn number(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: i64,
    min: i64,
) -> Result<i64, ConfigError> {
    // Ten years: anything longer is a typo, and keeps `now + value` far from overflow.
    const MAX: i64 = 10 * 365 * 86_400;
    match get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=MAX).contains(n))
            .ok_or_else(|| invalid(name, format!("must be a whole number from {min} to {MAX}"))),
    }
}

/// A whole number of seconds, at least one (a zero timeout would close
/// everything at once), as a duration.
fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let default = i64::try_from(default.as_secs()).unwrap_or(i64::MAX);
    let value = number(get, name, default, 1)?;
    Ok(Duration::from_secs(value.unsigned_abs()))
}

fn boolean(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match get(name).map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(_) => Err(invalid(name, "must be `true` or `false`")),
    }
}

fn parse_database_url(url: &str) -> Result<Database, ConfigError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Database::Postgres(url.to_owned()));
    }
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Err(invalid(
            "DATABASE_URL",
            "must start with sqlite:// or postgres://",
        ));
    };
    let path = rest.split('?').next().unwrap_or_default();
    match path {
        "" => Err(invalid(
            "DATABASE_URL",
            "names no SQLite file (use sqlite://latchkey.db)",
        )),
        ":memory:" => Ok(Database::SqliteMemory),
        p => Ok(Database::SqliteFile(PathBuf::from(p))),
    }
}

/// Accepts `scheme://host[:port]` with an http(s) scheme and nothing after it;
/// returns it lower-cased without a trailing slash, as browsers send `Origin`.
pub fn parse_origin(value: &str) -> Option<String> {
    let value = value.trim().trim_end_matches('/').to_ascii_lowercase();
    let authority = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))?;
    let valid = !authority.is_empty()
        && authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    valid.then_some(value)
}

impl Database {
    /// The directory a SQLite file lives in, for files kept beside it.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Database::SqliteFile(p) => Some(p),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Config, parse_origin};
    use crate::server::ServeLimits;

    /// A valid configuration (no files: configured secrets, an in-memory
    /// database) with `extra` on top.
    fn config(extra: &[(&str, &str)]) -> Result<Config, super::ConfigError> {
        let base = [
            ("JWT_SECRET", "unit-access-secret-0123456789abcdefghijklm"),
            (
                "JWT_REFRESH_SECRET",
                "unit-refresh-secret-0123456789abcdefghijk",
            ),
            ("DATABASE_URL", "sqlite::memory:"),
        ];
        Config::from_lookup(|key| {
            extra
                .iter()
                .chain(base.iter())
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    #[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
    fn connection_limits_default_to_the_serve_defaults_and_are_read() {
        let defaults = config(&[]).unwrap();
        assert_eq!(ServeLimits::from_config(&defaults), ServeLimits::default());
        assert_eq!(defaults.request_timeout, Duration::from_secs(30));

        let set = config(&[
            ("HEADER_READ_TIMEOUT", "5"),
            ("IDLE_TIMEOUT", "120"),
            ("REQUEST_TIMEOUT", "7"),
            ("MAX_CONNECTIONS", "100"),
        ])
        .unwrap();
        assert_eq!(
            ServeLimits::from_config(&set),
            ServeLimits {
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(120),
                max_connections: 100,
            }
        );
        assert_eq!(set.request_timeout, Duration::from_secs(7));
    }

    #[test]
    #[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
    fn zero_negative_or_unreadable_connection_limits_are_refused() {
        for variable in [
            "HEADER_READ_TIMEOUT",
            "IDLE_TIMEOUT",
            "REQUEST_TIMEOUT",
            "MAX_CONNECTIONS",
        ] {
            for bad in ["0", "-1", "ten", "1.5", "99999999999999"] {
                let refused = config(&[(variable, bad)]).unwrap_err();
                assert_eq!(refused.variable, variable, "{variable}={bad}");
            }
        }
    }

    #[test]
    fn database_urls_never_show_their_password_in_debug() {
        let db = super::Database::Postgres("postgres://app:hunter22@db:5432/latchkey".into());
        let shown = format!("{db:?}");
        assert!(!shown.contains("hunter22"), "{shown}");
        assert!(
            shown.contains("postgres://app:[redacted]@db:5432/latchkey"),
            "{shown}"
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        assert_eq!(
            parse_origin("https://App.Example.com/").as_deref(),
            Some("https://app.example.com")
        );
        assert_eq!(
            parse_origin("http://localhost:5173").as_deref(),
            Some("http://localhost:5173")
        );
        for bad in [
            "*",
            "null",
            "app.example.com",
            "https://",
            "https://a.com/path",
            "ftp://a.com",
        ] {
            assert_eq!(parse_origin(bad), None, "{bad}");
        }
    }
}

//! Configuration: read once at start from the environment (and `.env`, loaded by
//! the CLI), validated, and never read again. Built on a lookup function so tests
//! pass a map instead of mutating the process environment. Parsing touches no
//! file: development secrets are loaded by `dev_secrets.rs`, a step of its own.

mod mail;
mod origins;
mod server;
mod settings;
mod tokens;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use mail::{MailSettings, MailTransport};
pub use origins::{OriginSettings, ProxyHeader};
pub use server::{ServeLimits, ServerSettings, TlsSettings};
pub(crate) use settings::Lookup;
pub(crate) use settings::default_log_filter;
pub use tokens::{AccessAlgorithm, TokenSettings};

/// The deployment (`APP_ENV`), which decides what must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AppEnv {
    /// `development`, the default: secrets may be left unset (development
    /// secrets are generated), registration is open unless configured
    /// otherwise, and `COOKIE_SECURE=false` is allowed.
    Development,
    /// `production`: `JWT_REFRESH_SECRET`, `JWT_SECRET` (with `HS256`
    /// access tokens) and `COOKIE_SECURE=true` are required, and registration is closed unless
    /// configured otherwise.
    Production,
}

/// How log lines are written to stderr (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// `text`, the default: human-readable lines.
    Text,
    /// `json`: one JSON object per line, carrying the request's span (and so
    /// its request id).
    Json,
}

/// The `SameSite` attribute of latchkey's cookies (`COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SameSite {
    /// `strict`, the default.
    Strict,
    /// `lax`.
    Lax,
    /// `none`; requires `COOKIE_SECURE=true`.
    None,
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret's bytes, to key an HMAC with.
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
#[non_exhaustive]
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
/// Everything from the first `:` after the user to the *last* `@` is
/// redacted: a user name may hold an `@` (SMTP logins are often addresses)
/// and a careless password a `/` or an `@`, so this errs towards hiding
/// more, never less.
pub(crate) fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
        None => url.to_owned(),
    }
}

/// Failures (for sign-ups: attempts) allowed per counter before back-off
/// begins (README, "Passwords and login").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottlePolicy {
    /// One account from one address (`THROTTLE_LOGIN_PAIR`).
    pub login_pair: i64,
    /// One address, any account (`THROTTLE_LOGIN_ADDRESS`).
    pub login_address: i64,
    /// One account, any address (`THROTTLE_LOGIN_ACCOUNT`).
    pub login_account: i64,
    /// Sign-ups from one address per window (`THROTTLE_REGISTER_ADDRESS`).
    pub register_address: i64,
    /// The longest back-off (`THROTTLE_MAX_DELAY`).
    pub max_delay: Duration,
}

/// The refresh and device cookies' attributes (README, "The refresh cookie").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CookieSettings {
    /// `Secure` and the `__Host-` prefix (`COOKIE_SECURE`).
    pub secure: bool,
    /// `SameSite` (`COOKIE_SAMESITE`).
    pub same_site: SameSite,
}

/// Accounts and passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccountSettings {
    /// Whether anyone may sign up (`REGISTRATION_OPEN`).
    pub registration_open: bool,
    /// bcrypt's cost for new hashes (`BCRYPT_COST`).
    pub bcrypt_cost: u32,
    /// Live sessions a user may have; a login beyond it ends the least
    /// recently used one (`MAX_SESSIONS_PER_USER`).
    pub max_sessions_per_user: i64,
    /// Roles whose accounts must have a second factor
    /// (`SECOND_FACTOR_REQUIRED_ROLES`; README, "Second factor").
    pub second_factor_required_roles: Vec<String>,
}

impl AccountSettings {
    /// Whether accounts of `role` must have a second factor.
    pub fn second_factor_required(&self, role: &str) -> bool {
        self.second_factor_required_roles.iter().any(|r| r == role)
    }
}

/// Deleting what can never be used again (README, "Housekeeping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HousekeepingSettings {
    /// How often (`HOUSEKEEPING_INTERVAL`).
    pub interval: Duration,
    /// Audit events older than this are deleted (`AUDIT_RETENTION`).
    pub audit_retention: Duration,
}

/// Everything latchkey is configured with, grouped by concern. Parsing it
/// reads variables and validates them, nothing more; development secrets
/// are a separate step ([`Config::with_development_secrets`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// `APP_ENV`.
    pub env: AppEnv,
    /// `DATABASE_URL`.
    pub database: Database,
    /// Tokens and sessions.
    pub tokens: TokenSettings,
    /// Cookie attributes.
    pub cookies: CookieSettings,
    /// Allowed origins and trusted proxies.
    pub origins: OriginSettings,
    /// Accounts and passwords.
    pub accounts: AccountSettings,
    /// Guessing limits.
    pub throttle: ThrottlePolicy,
    /// The listening socket and its limits.
    pub server: ServerSettings,
    /// Housekeeping.
    pub housekeeping: HousekeepingSettings,
    /// `LOG_FORMAT`.
    pub log_format: LogFormat,
    /// How mail is sent.
    pub mail: MailSettings,
}

/// One invalid setting, named so the operator knows what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong with it.
    pub message: String,
}

pub(crate) fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
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
        let get = Lookup(lookup);

        let env = match get.get("APP_ENV").as_deref() {
            None | Some("development") => AppEnv::Development,
            Some("production") => AppEnv::Production,
            Some(_) => return Err(invalid("APP_ENV", "must be `development` or `production`")),
        };
        let production = env == AppEnv::Production;

        let database_url = get.get("DATABASE_URL").unwrap_or_default();
        let database = parse_database_url(&database_url)?;
        let origins = origins::parse(&get)?;
        let tokens = tokens::parse(&get, production, origins.public_origin.as_deref())?;
        let cookies = cookies(&get, production)?;
        let accounts = AccountSettings {
            // Given, or as the deployment says (no default of its own).
            registration_open: match get.given("REGISTRATION_OPEN") {
                None => !production,
                Some(_) => get.flag("REGISTRATION_OPEN")?,
            },
            bcrypt_cost: get
                .get("BCRYPT_COST")
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|c| (4..=31).contains(c))
                .ok_or_else(|| invalid("BCRYPT_COST", "must be a whole number from 4 to 31"))?,
            max_sessions_per_user: get.number("MAX_SESSIONS_PER_USER", 1)?,
            second_factor_required_roles: get
                .get("SECOND_FACTOR_REQUIRED_ROLES")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let throttle = ThrottlePolicy {
            login_pair: get.number("THROTTLE_LOGIN_PAIR", 1)?,
            login_address: get.number("THROTTLE_LOGIN_ADDRESS", 1)?,
            login_account: get.number("THROTTLE_LOGIN_ACCOUNT", 1)?,
            register_address: get.number("THROTTLE_REGISTER_ADDRESS", 1)?,
            max_delay: get.seconds("THROTTLE_MAX_DELAY", 1)?,
        };
        let server = server::parse(&get)?;
        let housekeeping = HousekeepingSettings {
            interval: get.seconds("HOUSEKEEPING_INTERVAL", 1)?,
            audit_retention: get.seconds("AUDIT_RETENTION", 1)?,
        };
        let log_format = match get
            .get("LOG_FORMAT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(invalid("LOG_FORMAT", "must be `text` or `json`")),
        };

        let mail = mail::parse(
            &get,
            production,
            origins.public_origin.as_deref(),
            server.bind,
        )?;

        Ok(Self {
            env,
            database,
            tokens,
            cookies,
            origins,
            accounts,
            throttle,
            server,
            housekeeping,
            log_format,
            mail,
        })
    }
}

fn cookies(
    get: &Lookup<impl Fn(&str) -> Option<String>>,
    production: bool,
) -> Result<CookieSettings, ConfigError> {
    let secure = get.flag("COOKIE_SECURE")?;
    let same_site = match get
        .get("COOKIE_SAMESITE")
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
    if same_site == SameSite::None && !secure {
        return Err(invalid(
            "COOKIE_SAMESITE",
            "`none` requires COOKIE_SECURE=true (browsers drop such cookies otherwise)",
        ));
    }
    if production && !secure {
        return Err(invalid("COOKIE_SECURE", "must be true in production"));
    }
    Ok(CookieSettings { secure, same_site })
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

    use super::origins::parse_origin;
    use super::{Config, ServeLimits};

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
        // `ServeLimits::default` agrees with config/settings.rs.
        assert_eq!(defaults.server.limits, ServeLimits::default());
        assert_eq!(defaults.server.request_timeout, Duration::from_secs(30));

        let set = config(&[
            ("HEADER_READ_TIMEOUT", "5"),
            ("IDLE_TIMEOUT", "120"),
            ("REQUEST_TIMEOUT", "7"),
            ("MAX_CONNECTIONS", "100"),
        ])
        .unwrap();
        assert_eq!(
            set.server.limits,
            ServeLimits {
                header_read_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(120),
                max_connections: 100,
            }
        );
        assert_eq!(set.server.request_timeout, Duration::from_secs(7));
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
    #[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
    fn the_defaults_that_follow_from_other_settings() {
        let development = config(&[]).unwrap();
        assert!(development.accounts.registration_open);
        assert_eq!(development.tokens.issuer, "latchkey");
        let production = config(&[("APP_ENV", "production")]).unwrap();
        assert!(
            !production.accounts.registration_open,
            "closed unless opened"
        );
        let public = config(&[("PUBLIC_ORIGIN", "https://auth.example.com")]).unwrap();
        assert_eq!(public.tokens.issuer, "https://auth.example.com");
        // Two years, as hstspreload.org asks.
        let tls = config(&[("TLS_CERT_FILE", "c.pem"), ("TLS_KEY_FILE", "k.pem")]).unwrap();
        assert_eq!(
            tls.server.tls.unwrap().hsts_max_age,
            Duration::from_secs(63_072_000)
        );
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
        for (url, shown) in [
            (
                "smtps://no-reply@example.com:hunter22@smtp.example.com:465",
                "smtps://no-reply@example.com:[redacted]@smtp.example.com:465",
            ),
            ("smtps://u:hun@ter22@h:465", "smtps://u:[redacted]@h:465"),
            ("smtps://u:hun/ter22@h:465", "smtps://u:[redacted]@h:465"),
            ("smtp://127.0.0.1:25", "smtp://127.0.0.1:25"),
        ] {
            assert_eq!(super::redact_password(url), shown);
        }
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
        // As browsers send it: no default port.
        assert_eq!(
            parse_origin("https://auth.example.com:443").as_deref(),
            Some("https://auth.example.com")
        );
        assert_eq!(
            parse_origin("http://auth.example.com:80/").as_deref(),
            Some("http://auth.example.com")
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

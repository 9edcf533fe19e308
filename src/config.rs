//! Configuration: read once at start from the environment (and `.env`, loaded by
//! the CLI), validated, and never read again. Built on a lookup function so tests
//! pass a map instead of mutating the process environment. Parsing touches no
//! file: development secrets are loaded by `dev_secrets.rs`, a step of its own.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Shortest HMAC key accepted, in bytes (HS256 wants at least its output size).
pub const MIN_SECRET_BYTES: usize = 32;

/// Longest `REFRESH_REUSE_GRACE` accepted.
pub const MAX_REFRESH_REUSE_GRACE: Duration = Duration::from_secs(60);

/// `REQUEST_TIMEOUT` unless configured: a login waiting its turn for a
/// bcrypt thread under load still makes it, a stalled body does not linger.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest `MAX_CONNECTIONS` accepted: Linux's default ceiling on open files
/// per process (`fs.nr_open`).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// The deployment (`APP_ENV`), which decides what must be configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
pub enum LogFormat {
    /// `text`, the default: human-readable lines.
    Text,
    /// `json`: one JSON object per line, carrying the request's span (and so
    /// its request id).
    Json,
}

/// The `SameSite` attribute of latchkey's cookies (`COOKIE_SAMESITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// begins (README, "Passwords and login").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// The JWS algorithm of access tokens (`ACCESS_TOKEN_ALGORITHM`; README,
/// "Signing keys").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessAlgorithm {
    /// `HS256`, the default: HMAC with `JWT_SECRET`, which every verifier
    /// must hold.
    Hs256,
    /// `EdDSA` (Ed25519): verifiers need only the published public keys.
    EdDsa,
    /// `ES256` (ECDSA on P-256): as `EdDSA`, for verifiers without Ed25519.
    Es256,
}

impl AccessAlgorithm {
    /// The JWS name (RFC 7518 §3.1, RFC 8037 §3.1), as in `alg` headers.
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::EdDsa => "EdDSA",
            Self::Es256 => "ES256",
        }
    }

    /// Signed with a private key whose public half is published.
    pub fn is_asymmetric(self) -> bool {
        self != Self::Hs256
    }
}

/// Tokens and sessions (README, "Tokens" and "Rotation rules").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// How access tokens are signed (`ACCESS_TOKEN_ALGORITHM`).
    pub algorithm: AccessAlgorithm,
    /// The HMAC key of `HS256` access tokens (`JWT_SECRET`). `None` only in
    /// development, until [`Config::with_development_secrets`] supplies it,
    /// or with an asymmetric algorithm, which does not use it.
    pub access_secret: Option<Secret>,
    /// The HMAC key of refresh tokens and device cookies, and the root the
    /// private signing keys are derived from (`JWT_REFRESH_SECRET`); `None`
    /// only in development, as `access_secret`.
    pub refresh_secret: Option<Secret>,
    /// A former `JWT_SECRET`, still accepted on `HS256` access tokens
    /// (`JWT_SECRET_PREVIOUS`).
    pub previous_access_secret: Option<Secret>,
    /// A former `JWT_REFRESH_SECRET`, still accepted on refresh tokens and
    /// device cookies and still deriving the signing keys it made
    /// (`JWT_REFRESH_SECRET_PREVIOUS`).
    pub previous_refresh_secret: Option<Secret>,
    /// How long verifiers may cache the published keys; a new key is
    /// published at least this long before it signs (`JWKS_MAX_AGE`).
    pub jwks_max_age: Duration,
    /// How long a signing key signs before the next one takes over; `None`
    /// rotates only on `latchkey keys rotate` (`KEY_ROTATION_INTERVAL`).
    pub key_rotation_interval: Option<Duration>,
    /// True when the secrets were generated for development rather than configured.
    pub generated_secrets: bool,
    /// Access-token lifetime (`JWT_EXPIRATION`).
    pub access_ttl: Duration,
    /// Refresh-token lifetime: a session unused this long ends
    /// (`JWT_REFRESH_EXPIRATION`).
    pub refresh_ttl: Duration,
    /// The same for a session signed in without "Keep me signed in"
    /// (`SESSION_IDLE_TIMEOUT_NO_REMEMBER`), never longer than `refresh_ttl`.
    pub refresh_ttl_not_remembered: Duration,
    /// How recent a password check an action that asks for one accepts
    /// (`REAUTH_MAX_AGE`; README, "Step-up: a recent password").
    pub reauth_max_age: Duration,
    /// Longest life of a session, however much it is used (`SESSION_MAX_LIFETIME`).
    pub session_lifetime: Duration,
    /// How long the previous refresh token is still honoured (`REFRESH_REUSE_GRACE`).
    pub reuse_grace: Duration,
    /// Refreshes one session may make a minute, all at once if need be, on
    /// one instance (`MAX_REFRESHES_PER_MINUTE`; README, "Rotation rules").
    pub max_refreshes_per_minute: i64,
    /// `iss` of every token (`JWT_ISSUER`).
    pub issuer: String,
    /// `aud` of access tokens (`JWT_AUDIENCE`).
    pub audience: String,
}

/// The refresh and device cookies' attributes (README, "The refresh cookie").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieSettings {
    /// `Secure` and the `__Host-` prefix (`COOKIE_SECURE`).
    pub secure: bool,
    /// `SameSite` (`COOKIE_SAMESITE`).
    pub same_site: SameSite,
}

/// Who may call with credentials, and who the client is (README,
/// "Cross-site protection and CORS", "Several instances behind a reverse proxy").
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// Accounts and passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountSettings {
    /// Whether anyone may sign up (`REGISTRATION_OPEN`).
    pub registration_open: bool,
    /// bcrypt's cost for new hashes (`BCRYPT_COST`).
    pub bcrypt_cost: u32,
    /// Live sessions a user may have; a login beyond it ends the least
    /// recently used one (`MAX_SESSIONS_PER_USER`).
    pub max_sessions_per_user: i64,
}

/// The listening socket and what each connection may take (README,
/// "Limits under attack").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// `BIND`.
    pub bind: SocketAddr,
    /// HTTPS on `BIND` (`TLS_CERT_FILE`, `TLS_KEY_FILE`); `None` serves
    /// plain HTTP.
    pub tls: Option<TlsSettings>,
    /// The connection limits (`HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`,
    /// `MAX_CONNECTIONS`).
    pub limits: ServeLimits,
    /// Reading a request's body and answering it must finish within this
    /// long (`REQUEST_TIMEOUT`).
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after a shutdown
    /// signal (`SHUTDOWN_TIMEOUT`).
    pub shutdown_timeout: Duration,
    /// How long, after a shutdown signal, latchkey goes on serving while
    /// `/readyz` answers `503`, so a load balancer stops sending before the
    /// listener closes (`SHUTDOWN_DELAY`).
    pub shutdown_delay: Duration,
    /// Where `GET /metrics` is served, on a listener of its own; `None`: not
    /// served (`METRICS_BIND`; README, "Metrics").
    pub metrics_bind: Option<SocketAddr>,
}

/// HTTPS on `BIND` (README, "TLS"). The files are named here and read when
/// serving starts (and again on `SIGHUP`), not while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain in PEM, the server's own certificate first
    /// (`TLS_CERT_FILE`).
    pub cert_file: PathBuf,
    /// Its private key in PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`TLS_KEY_FILE`).
    pub key_file: PathBuf,
    /// How long browsers are told to reach this host over HTTPS only, in the
    /// `Strict-Transport-Security` header of every response (`HSTS_MAX_AGE`).
    pub hsts_max_age: Duration,
}

/// `HSTS_MAX_AGE` unless configured: two years, what hstspreload.org
/// recommends (its list takes no site with less than one).
pub const DEFAULT_HSTS_MAX_AGE: Duration = Duration::from_secs(63_072_000);

/// The connection limits `server.rs` enforces; [`ServeLimits::default`] holds the
/// defaults of `HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT` and `MAX_CONNECTIONS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// A connection is closed unless a complete request head arrives within
    /// this long of its opening, or of the first byte after an idle spell.
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request in flight is closed after
    /// this long.
    pub idle_timeout: Duration,
    /// Most connections open at once. A new one beyond it takes the place of
    /// the connection idle the longest, or is closed if none is idle.
    pub max_connections: usize,
}

impl ServeLimits {
    /// The defaults of `HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT` and `MAX_CONNECTIONS`.
    pub const DEFAULT: Self = Self {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        // Far above what a reverse proxy or the browsers of a busy site keep
        // open (a few per browser), small enough that every connection fits
        // in the usual 4,096 hard limit on open files with room to spare
        // (`fit_open_file_limit`) and that all of them idle together take a
        // few tens of MiB (README, Security model).
        max_connections: 2048,
    };
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Deleting what can never be used again (README, "Housekeeping").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://latchkey.db".into());
        let database = parse_database_url(&database_url)?;
        let origins = origins(&get)?;
        let tokens = tokens(&get, production, origins.public_origin.as_deref())?;
        let cookies = cookies(&get, production)?;
        let accounts = AccountSettings {
            registration_open: boolean(&get, "REGISTRATION_OPEN", !production)?,
            bcrypt_cost: match get("BCRYPT_COST") {
                None => 12,
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|c| (4..=31).contains(c))
                    .ok_or_else(|| invalid("BCRYPT_COST", "must be a whole number from 4 to 31"))?,
            },
            max_sessions_per_user: number(&get, "MAX_SESSIONS_PER_USER", 50, 1)?,
        };
        let throttle = ThrottlePolicy {
            login_pair: number(&get, "THROTTLE_LOGIN_PAIR", 5, 1)?,
            login_address: number(&get, "THROTTLE_LOGIN_ADDRESS", 30, 1)?,
            login_account: number(&get, "THROTTLE_LOGIN_ACCOUNT", 50, 1)?,
            register_address: number(&get, "THROTTLE_REGISTER_ADDRESS", 10, 1)?,
            max_delay: seconds(&get, "THROTTLE_MAX_DELAY", Duration::from_secs(900), 1)?,
        };
        let server = server(&get)?;
        let housekeeping = HousekeepingSettings {
            interval: seconds(&get, "HOUSEKEEPING_INTERVAL", Duration::from_secs(300), 1)?,
            audit_retention: seconds(&get, "AUDIT_RETENTION", Duration::from_secs(90 * 86_400), 1)?,
        };
        let log_format = match get("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(invalid("LOG_FORMAT", "must be `text` or `json`")),
        };

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
        })
    }
}

fn tokens(
    get: &impl Fn(&str) -> Option<String>,
    production: bool,
    public_origin: Option<&str>,
) -> Result<TokenSettings, ConfigError> {
    let access_ttl = seconds(get, "JWT_EXPIRATION", Duration::from_secs(900), 1)?;
    let refresh_ttl = seconds(
        get,
        "JWT_REFRESH_EXPIRATION",
        Duration::from_secs(86_400),
        1,
    )?;
    let session_lifetime = seconds(
        get,
        "SESSION_MAX_LIFETIME",
        Duration::from_secs(2_592_000),
        1,
    )?;
    // "Keep me signed in" unticked ends the session sooner, never later.
    let refresh_ttl_not_remembered = seconds(
        get,
        "SESSION_IDLE_TIMEOUT_NO_REMEMBER",
        Duration::from_secs(12 * 3600),
        1,
    )?
    .min(refresh_ttl);
    let reauth_max_age = seconds(get, "REAUTH_MAX_AGE", Duration::from_secs(600), 1)?;
    let reuse_grace = seconds(get, "REFRESH_REUSE_GRACE", Duration::from_secs(10), 0)?;
    // The grace window covers two tabs refreshing at once or a response
    // lost on the way: seconds. For as long as it lasts a copied token
    // still works, so a long one turns reuse detection off (README,
    // "Rotation rules").
    if reuse_grace > MAX_REFRESH_REUSE_GRACE {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            format!(
                "must be at most {} seconds (a longer grace lets a copied refresh token \
                 through unnoticed)",
                MAX_REFRESH_REUSE_GRACE.as_secs()
            ),
        ));
    }
    if reuse_grace >= refresh_ttl {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            "must be shorter than JWT_REFRESH_EXPIRATION",
        ));
    }
    if reuse_grace >= refresh_ttl_not_remembered {
        return Err(invalid(
            "REFRESH_REUSE_GRACE",
            "must be shorter than SESSION_IDLE_TIMEOUT_NO_REMEMBER",
        ));
    }
    let algorithm = match get("ACCESS_TOKEN_ALGORITHM").as_deref() {
        None | Some("HS256") => AccessAlgorithm::Hs256,
        Some("EdDSA") => AccessAlgorithm::EdDsa,
        Some("ES256") => AccessAlgorithm::Es256,
        Some(_) => {
            return Err(invalid(
                "ACCESS_TOKEN_ALGORITHM",
                "must be `HS256`, `EdDSA` or `ES256`",
            ));
        }
    };
    let access_secret = get("JWT_SECRET").map(Secret);
    let refresh_secret = get("JWT_REFRESH_SECRET").map(Secret);
    if production {
        let mut required = vec![("JWT_REFRESH_SECRET", &refresh_secret)];
        if !algorithm.is_asymmetric() {
            required.insert(0, ("JWT_SECRET", &access_secret));
        }
        for (name, secret) in required {
            if secret.is_none() {
                return Err(invalid(name, "is required in production"));
            }
        }
    }
    let jwks_max_age = seconds(get, "JWKS_MAX_AGE", Duration::from_secs(300), 0)?;
    let key_rotation_interval = Some(seconds(
        get,
        "KEY_ROTATION_INTERVAL",
        Duration::from_secs(30 * 86_400),
        0,
    )?)
    .filter(|interval| !interval.is_zero());
    // A new key waits JWKS_MAX_AGE and up to a minute more before it signs
    // (README, "Signing keys"): a shorter interval would make the next key
    // before the last one ever signed.
    if key_rotation_interval
        .is_some_and(|interval| interval <= jwks_max_age + Duration::from_secs(60))
    {
        return Err(invalid(
            "KEY_ROTATION_INTERVAL",
            "must be longer than JWKS_MAX_AGE plus a minute (or 0, to rotate only by hand)",
        ));
    }
    // Verifiers discover keys from the issuer (OpenID Connect Discovery
    // 1.0 §4), so it is this service's URL when there is one.
    let issuer = get("JWT_ISSUER")
        .or_else(|| public_origin.map(str::to_owned))
        .unwrap_or_else(|| "latchkey".into());
    if production && algorithm.is_asymmetric() && !issuer.starts_with("https://") {
        return Err(invalid(
            "JWT_ISSUER",
            "must be an https:// URL with ACCESS_TOKEN_ALGORITHM EdDSA or ES256 in production \
             (set it or PUBLIC_ORIGIN): verifiers find the keys from it",
        ));
    }
    let tokens = TokenSettings {
        algorithm,
        access_secret,
        refresh_secret,
        previous_access_secret: get("JWT_SECRET_PREVIOUS").map(Secret),
        previous_refresh_secret: get("JWT_REFRESH_SECRET_PREVIOUS").map(Secret),
        jwks_max_age,
        key_rotation_interval,
        generated_secrets: false,
        access_ttl,
        refresh_ttl,
        refresh_ttl_not_remembered,
        reauth_max_age,
        session_lifetime,
        reuse_grace,
        max_refreshes_per_minute: number(get, "MAX_REFRESHES_PER_MINUTE", 60, 1)?,
        issuer,
        audience: get("JWT_AUDIENCE").unwrap_or_else(|| "latchkey".into()),
    };
    tokens.check_secrets()?;
    Ok(tokens)
}

fn secret_set<'a>(
    secret: &'a Option<Secret>,
    name: &'static str,
) -> Result<&'a Secret, ConfigError> {
    secret.as_ref().ok_or_else(|| {
        invalid(
            name,
            "is not set (in development, Config::with_development_secrets supplies it)",
        )
    })
}

impl TokenSettings {
    /// Each secret set is long enough, and the two differ.
    pub(crate) fn check_secrets(&self) -> Result<(), ConfigError> {
        for (name, secret) in [
            ("JWT_SECRET", &self.access_secret),
            ("JWT_REFRESH_SECRET", &self.refresh_secret),
            ("JWT_SECRET_PREVIOUS", &self.previous_access_secret),
            ("JWT_REFRESH_SECRET_PREVIOUS", &self.previous_refresh_secret),
        ] {
            if secret
                .as_ref()
                .is_some_and(|s| s.expose().len() < MIN_SECRET_BYTES)
            {
                return Err(invalid(
                    name,
                    format!("must be at least {MIN_SECRET_BYTES} bytes"),
                ));
            }
        }
        if self.access_secret.is_some() && self.access_secret == self.refresh_secret {
            return Err(invalid("JWT_REFRESH_SECRET", "must differ from JWT_SECRET"));
        }
        Ok(())
    }

    /// `JWT_REFRESH_SECRET`, or an error naming it when it is missing
    /// (development secrets not loaded).
    pub(crate) fn refresh_secret(&self) -> Result<&Secret, ConfigError> {
        secret_set(&self.refresh_secret, "JWT_REFRESH_SECRET")
    }

    /// `JWT_SECRET`, or an error naming it when it is missing.
    pub(crate) fn access_secret(&self) -> Result<&Secret, ConfigError> {
        secret_set(&self.access_secret, "JWT_SECRET")
    }
}

fn cookies(
    get: &impl Fn(&str) -> Option<String>,
    production: bool,
) -> Result<CookieSettings, ConfigError> {
    let secure = boolean(get, "COOKIE_SECURE", true)?;
    let same_site = match get("COOKIE_SAMESITE")
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

fn origins(get: &impl Fn(&str) -> Option<String>) -> Result<OriginSettings, ConfigError> {
    let cors_allowed = match get("CORS_ALLOWED_ORIGINS") {
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
    let proxy_header = match get("TRUSTED_PROXY_HEADER")
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

fn server(get: &impl Fn(&str) -> Option<String>) -> Result<ServerSettings, ConfigError> {
    let bind = match get("BIND") {
        None => SocketAddr::from(([127, 0, 0, 1], 3000)),
        Some(v) => v
            .parse()
            .map_err(|_| invalid("BIND", "must be an address such as 127.0.0.1:3000"))?,
    };
    let metrics_bind =
        match get("METRICS_BIND") {
            None => None,
            Some(v) => Some(v.parse::<SocketAddr>().map_err(|_| {
                invalid("METRICS_BIND", "must be an address such as 127.0.0.1:9464")
            })?),
        };
    // The metrics tell an operator what no client should see: never on the
    // public listener. (Port 0 asks for any free port, so two of them differ.)
    if metrics_bind.is_some_and(|m| m == bind && m.port() != 0) {
        return Err(invalid(
            "METRICS_BIND",
            "must differ from BIND: the metrics are never served on the public listener",
        ));
    }
    let defaults = ServeLimits::DEFAULT;
    // A zero timeout would close everything at once: at least one second.
    let limits = ServeLimits {
        header_read_timeout: seconds(get, "HEADER_READ_TIMEOUT", defaults.header_read_timeout, 1)?,
        idle_timeout: seconds(get, "IDLE_TIMEOUT", defaults.idle_timeout, 1)?,
        max_connections: match get("MAX_CONNECTIONS") {
            None => defaults.max_connections,
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
        },
    };
    Ok(ServerSettings {
        bind,
        tls: tls(get)?,
        limits,
        request_timeout: seconds(get, "REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT, 1)?,
        shutdown_timeout: seconds(get, "SHUTDOWN_TIMEOUT", Duration::from_secs(10), 0)?,
        shutdown_delay: seconds(get, "SHUTDOWN_DELAY", Duration::ZERO, 0)?,
        metrics_bind,
    })
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither. `HSTS_MAX_AGE` is
/// checked either way, and used only with TLS (browsers ignore the header
/// over plain HTTP: RFC 6797 §8.1).
fn tls(get: &impl Fn(&str) -> Option<String>) -> Result<Option<TlsSettings>, ConfigError> {
    // 0 is meaningful: it tells browsers to forget the policy (RFC 6797 §6.1.1).
    let hsts_max_age = seconds(get, "HSTS_MAX_AGE", DEFAULT_HSTS_MAX_AGE, 0)?;
    match (get("TLS_CERT_FILE"), get("TLS_KEY_FILE")) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(TlsSettings {
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            hsts_max_age,
        })),
        (Some(_), None) => Err(invalid(
            "TLS_KEY_FILE",
            "must be set with TLS_CERT_FILE (the certificate's private key, PEM)",
        )),
        (None, Some(_)) => Err(invalid(
            "TLS_CERT_FILE",
            "must be set with TLS_KEY_FILE (the certificate chain, PEM)",
        )),
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

/// A whole number of seconds, at least `min`, as a duration.
fn seconds(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: Duration,
    min: i64,
) -> Result<Duration, ConfigError> {
    let default = i64::try_from(default.as_secs()).unwrap_or(i64::MAX);
    let value = number(get, name, default, min)?;
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
/// returns it as browsers send `Origin` (RFC 6454 §6.2): lower-cased, without
/// a trailing slash, and without the scheme's default port.
pub fn parse_origin(value: &str) -> Option<String> {
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

    use super::{Config, ServeLimits, parse_origin};

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

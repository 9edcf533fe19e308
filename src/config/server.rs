//! The listening socket, TLS and the connection limits (README, "Limits
//! under attack", "TLS").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{ConfigError, Lookup, invalid};

/// Largest `MAX_CONNECTIONS` accepted: Linux's default ceiling on open files
/// per process (`fs.nr_open`).
const MAX_CONNECTIONS_LIMIT: usize = 1 << 20;

/// The listening socket and what each connection may take (README,
/// "Limits under attack").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

pub(super) fn parse(
    get: &Lookup<impl Fn(&str) -> Option<String>>,
) -> Result<ServerSettings, ConfigError> {
    let bind = get
        .get("BIND")
        .and_then(|v| v.parse::<SocketAddr>().ok())
        .ok_or_else(|| invalid("BIND", "must be an address such as 127.0.0.1:3000"))?;
    let metrics_bind =
        match get.get("METRICS_BIND") {
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
    // A zero timeout would close everything at once: at least one second.
    let limits = ServeLimits {
        header_read_timeout: get.seconds("HEADER_READ_TIMEOUT", 1)?,
        idle_timeout: get.seconds("IDLE_TIMEOUT", 1)?,
        max_connections: get
            .get("MAX_CONNECTIONS")
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| (1..=MAX_CONNECTIONS_LIMIT).contains(n))
            .ok_or_else(|| {
                invalid(
                    "MAX_CONNECTIONS",
                    format!("must be a whole number from 1 to {MAX_CONNECTIONS_LIMIT}"),
                )
            })?,
    };
    Ok(ServerSettings {
        bind,
        tls: tls(get)?,
        limits,
        request_timeout: get.seconds("REQUEST_TIMEOUT", 1)?,
        shutdown_timeout: get.seconds("SHUTDOWN_TIMEOUT", 0)?,
        shutdown_delay: get.seconds("SHUTDOWN_DELAY", 0)?,
        metrics_bind,
    })
}

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`: both or neither. `HSTS_MAX_AGE` is
/// checked either way, and used only with TLS (browsers ignore the header
/// over plain HTTP: RFC 6797 §8.1).
fn tls(get: &Lookup<impl Fn(&str) -> Option<String>>) -> Result<Option<TlsSettings>, ConfigError> {
    // 0 is meaningful: it tells browsers to forget the policy (RFC 6797 §6.1.1).
    let hsts_max_age = get.seconds("HSTS_MAX_AGE", 0)?;
    match (get.get("TLS_CERT_FILE"), get.get("TLS_KEY_FILE")) {
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

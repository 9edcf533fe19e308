//! HTTPS on `BIND` (README, "TLS"): the certificate chain and key of
//! `TLS_CERT_FILE` and `TLS_KEY_FILE`, served by rustls with TLS 1.2 and 1.3
//! only, and HTTP/2 or HTTP/1.1 as the client's ALPN offer says.
//!
//! The pair is replaced while serving, on `SIGHUP` and when the files
//! change, without touching open connections: rustls asks the resolver
//! below for the pair at each handshake, so a new one reaches new
//! connections only, and an open connection keeps the keys it agreed on. A
//! replacement that does not load (a file missing or unreadable, no
//! certificate, no key, a key that is not the certificate's) is refused with
//! an error log, and the pair already loaded goes on serving.

use std::fmt;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig, version};

use crate::config::TlsSettings;

/// What ALPN may settle on, in the server's order of preference (RFC 7301
/// §3.2; RFC 9113 §3.2 names HTTP/2 over TLS `h2`).
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// How often the files are looked at for a change: two `stat` calls, so
/// nearly free; a renewed certificate is served within two periods.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_secs(10);

/// Why a certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{variable}: cannot read {}: {source}", path.display())]
    Read {
        /// `TLS_CERT_FILE` or `TLS_KEY_FILE`.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file is not PEM, or holds nothing of what it should.
    #[error("{variable}: {} holds no {what} in PEM: {source}", path.display())]
    Pem {
        /// `TLS_CERT_FILE` or `TLS_KEY_FILE`.
        variable: &'static str,
        /// The file.
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        /// What the PEM parser said.
        source: pem::Error,
    },
    /// The key is not the certificate's: its public half is not the
    /// certificate's subject public key.
    #[error("TLS_KEY_FILE is not the key of the certificate in TLS_CERT_FILE")]
    KeyMismatch,
    /// rustls refused the pair otherwise: a key of a kind it cannot sign
    /// with, or a certificate it cannot parse.
    #[error("TLS_CERT_FILE and TLS_KEY_FILE do not make a usable pair: {0}")]
    Pair(rustls::Error),
}

/// The pair being served, and what replaces it. Cloning gives another handle
/// on the same pair: a reload through any handle reaches every connection
/// made after it.
#[derive(Clone)]
pub struct Tls {
    config: Arc<ServerConfig>,
    current: Arc<Current>,
}

/// Shared between the handles and the resolver rustls calls.
struct Current {
    cert_file: PathBuf,
    key_file: PathBuf,
    provider: Arc<CryptoProvider>,
    pair: RwLock<Arc<CertifiedKey>>,
    /// The files as they were when last read, loaded or refused: the watch
    /// reloads only what it has not tried yet, so a broken pair is refused
    /// (and logged) once, not at every look.
    tried: Mutex<Option<Stamp>>,
}

impl Tls {
    /// Reads and checks the pair that `settings` name, and the server
    /// configuration that serves it.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = Stamp::of(&settings.cert_file, &settings.key_file);
        let pair = read_pair(&settings.cert_file, &settings.key_file, &provider)?;
        let current = Arc::new(Current {
            cert_file: settings.cert_file.clone(),
            key_file: settings.key_file.clone(),
            provider: provider.clone(),
            pair: RwLock::new(Arc::new(pair)),
            tried: Mutex::new(stamp),
        });
        // TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 stays for clients
        // that have nothing newer.
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13, &version::TLS12])
            .map_err(TlsError::Pair)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(current.clone())));
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Self {
            config: Arc::new(config),
            current,
        })
    }

    /// Reads the files again and, if they make a usable pair, serves it to
    /// every connection from now on; otherwise keeps the pair it has and says
    /// why. Connections already open are not touched either way. This is
    /// what `SIGHUP` does.
    pub fn reload(&self) -> Result<(), TlsError> {
        let current = &self.current;
        let stamp = Stamp::of(&current.cert_file, &current.key_file);
        *current.tried.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let pair = read_pair(&current.cert_file, &current.key_file, &current.provider)?;
        *current.pair.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// The rustls configuration connections are accepted with.
    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// Reloads, and logs the outcome; `why` names what asked for it.
    pub(crate) fn reload_logged(&self, why: &'static str) {
        let current = &self.current;
        match self.reload() {
            Ok(()) => tracing::info!(
                cert_file = %current.cert_file.display(),
                reason = why,
                "TLS certificate reloaded: new connections get it"
            ),
            Err(e) => tracing::error!(
                error = %e,
                reason = why,
                "TLS certificate not reloaded: still serving the one loaded before"
            ),
        }
    }

    /// Reloads when the files have changed and have stayed as they are for
    /// one `period` (a renewal writes the certificate and the key one after
    /// the other: reading between the two would refuse a mismatched pair).
    /// Runs until dropped.
    pub async fn watch(self, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_look: Option<Stamp> = None;
        loop {
            ticks.tick().await;
            let (cert, key) = (
                self.current.cert_file.clone(),
                self.current.key_file.clone(),
            );
            // `stat` may block on a slow disk: not on the runtime's workers.
            let Ok(now) = tokio::task::spawn_blocking(move || Stamp::of(&cert, &key)).await else {
                continue;
            };
            let tried = self
                .current
                .tried
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let settled = now.is_some() && now == last_look;
            if settled && now != tried {
                let tls = self.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    tls.reload_logged("the files changed");
                })
                .await;
            }
            last_look = now;
        }
    }

    /// Reloads on every `SIGHUP`, until dropped.
    #[cfg(unix)]
    pub async fn reload_on_hangup(self) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: the TLS certificate will be reloaded only when its files change");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let tls = self.clone();
            let _ = tokio::task::spawn_blocking(move || tls.reload_logged("SIGHUP")).await;
        }
    }

    /// Elsewhere there is no `SIGHUP`; the files are still watched.
    #[cfg(not(unix))]
    pub async fn reload_on_hangup(self) {
        std::future::pending::<()>().await
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert_file", &self.current.cert_file)
            .field("key_file", &self.current.key_file)
            .finish_non_exhaustive()
    }
}

impl Current {
    fn pair(&self) -> Arc<CertifiedKey> {
        self.pair
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Hands rustls the pair loaded last, at each handshake.
struct Resolver(Arc<Current>);

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.pair())
    }
}

fn read_pair(
    cert_file: &Path,
    key_file: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let read = |variable, path: &Path| {
        fs::read(path).map_err(|source| TlsError::Read {
            variable,
            path: path.to_owned(),
            source,
        })
    };
    let not_a_certificate = |source| TlsError::Pem {
        variable: "TLS_CERT_FILE",
        path: cert_file.to_owned(),
        what: "certificate",
        source,
    };
    let certs = read("TLS_CERT_FILE", cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&certs)
        .collect::<Result<Vec<_>, _>>()
        .map_err(not_a_certificate)?;
    if chain.is_empty() {
        return Err(not_a_certificate(pem::Error::NoItemsFound));
    }
    let key = read("TLS_KEY_FILE", key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|source| TlsError::Pem {
        variable: "TLS_KEY_FILE",
        path: key_file.to_owned(),
        what: "private key",
        source,
    })?;
    // Also checks that the key is the certificate's.
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => TlsError::KeyMismatch,
        e => TlsError::Pair(e),
    })
}

/// What `stat` says of the two files: enough to tell that one was written
/// or replaced (a renewal tool writes new files, or moves a link).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp([FileStamp; 2]);

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    /// `None` while either file cannot be looked at (being replaced).
    fn of(cert_file: &Path, key_file: &Path) -> Option<Self> {
        let cert = fs::metadata(cert_file).ok()?;
        let key = fs::metadata(key_file).ok()?;
        Some(Self([FileStamp::of(&cert), FileStamp::of(&key)]))
    }
}

impl FileStamp {
    fn of(metadata: &Metadata) -> Self {
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(metadata);
        #[cfg(not(unix))]
        let inode = 0;
        Self {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            inode,
        }
    }
}

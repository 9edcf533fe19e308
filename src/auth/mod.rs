//! The auth core: every flow latchkey has is a method of [`Auth`]. The HTTP
//! handlers (`routes/`), the `latchkey` command (`cli.rs`) and applications
//! that embed latchkey all call these methods; nothing else talks to the store.
//!
//! One file per flow:
//! - `login.rs`: signing in (a checked password starts a session);
//! - `rotation.rs`: exchanging the refresh cookie (README, "Rotation rules"),
//!   at most `MAX_REFRESHES_PER_MINUTE` a session (`refresh_limit.rs`);
//! - `logout.rs`: ending the cookie's session;
//! - `password_change.rs` and `registration.rs`;
//! - `sessions.rs`: listing and revoking sessions, for users and operators;
//! - `step_up.rs`: re-authentication, and asking for a recent password;
//! - `account_deletion.rs`: erasing an account, by its user or an operator;
//! - `accounts.rs`: an operator's other actions on accounts;
//! - `recovery.rs`: a reset link for a forgotten password, and its use;
//! - `verification.rs`: verifying an address, and changing it;
//! - `outbox.rs`: queueing mail and the worker that sends it;
//! - `second_factor.rs`: TOTP and recovery codes, enrolment and checks;
//! - `housekeeping.rs`: deleting what can never be used again.
//!
//! What they share, in folders by concern:
//! - `credentials/`: one password check for logins, password changes and
//!   step-ups (`mod.rs`), admitted (`admission.rs`), throttled
//!   (`throttle.rs`), with the device cookies that exempt their owner
//!   (`devices.rs`);
//! - `password/`: hashing on bounded threads (`mod.rs`, `hash_pool.rs`) and
//!   the rules a new password keeps (`policy.rs`);
//! - `keys/`: key material (`key_set.rs`), the tokens signed with it
//!   (`tokens.rs`) and the asymmetric keys' ring in the store (`ring.rs`);
//!
//! and in files of their own: `live.rs` (the live-session check of account
//! actions), `email.rs` (the address rule), `links.rs` (the tokens in mailed
//! links), `sealed.rs` (secrets sealed at rest), `audit.rs`, `metrics.rs`, `cookies.rs` and `error.rs`. Below
//! this file, the service that every flow extends, no module names by path
//! one that names it back (`tests/it/layout.rs`).

// The flows, one file each.
mod account_deletion;
mod accounts;
pub(crate) mod email;
pub(crate) mod housekeeping;
mod login;
mod logout;
pub(crate) mod outbox;
mod password_change;
mod recovery;
mod registration;
mod rotation;
mod sessions;
mod step_up;
mod verification;

// What they share.
pub(crate) mod audit;
pub(crate) mod cookies;
pub(crate) mod credentials;
pub(crate) mod error;
pub(crate) mod keys;
mod links;
mod live;
pub(crate) mod metrics;
pub(crate) mod password;
mod refresh_limit;
mod sealed;
pub(crate) mod second_factor;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::mail::Mailer;
use crate::store::Store;
use audit::Aggregator;
use cookies::CookiePolicy;
use credentials::admission::Admission;
use keys::ring::AccessKeys;
use keys::tokens::TokenKeys;
use links::LinkKey;
use metrics::Metrics;
use password::Hasher;
use refresh_limit::RefreshLimiter;

pub use audit::{AuditKind, Event};
pub use cookies::{BrowserCookies, Presented, SetCookies};
pub use error::ApiError;
pub use keys::key_set::PublicJwk;
pub use keys::ring::{KeyInfo, KeyRevocation, KeyRotation, KeyState};
pub use keys::tokens::AccessClaims;
pub use live::LiveToken;
pub use login::{LoginCompleted, SecondFactorChallenge, SignIn};
pub use password::policy::Weakness;
pub use rotation::Refused;
pub use second_factor::{SecondFactorProof, TotpEnrolment};

/// Requests' work in flight after their answer, at most: past it, more is
/// dropped (a reset link asked for is not sent, which the asker cannot
/// tell from any other answer).
const BACKGROUND: usize = 256;

/// latchkey's auth service: the store, the signing keys, the cookie policy,
/// the password hasher, the clock and the configuration, with every flow as
/// a method. Cheap to clone (one reference count); every clone is the same
/// service.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    keys: TokenKeys,
    access_keys: AccessKeys,
    cookies: CookiePolicy,
    hasher: Hasher,
    /// Password checks in flight per address and account.
    admission: Admission,
    /// Counts of repeated rejections not yet written to the audit trail.
    audit: Aggregator,
    /// Refreshes per session (`MAX_REFRESHES_PER_MINUTE`).
    refresh_limit: RefreshLimiter,
    /// A shutdown has begun ([`Auth::begin_draining`]).
    draining: AtomicBool,
    /// Where mail goes (README, "Mail").
    mailer: Mailer,
    /// The key mailed links are made with (`links.rs`).
    links: LinkKey,
    /// The keys second factors' secrets are sealed with (`sealed.rs`).
    sealer: sealed::Sealer,
    /// Wakes the mail worker when this instance queues a mail.
    mail_queued: tokio::sync::Notify,
    /// Work that goes on after its request was answered (a reset link
    /// asked for): one permit each, so it is bounded.
    background: Arc<tokio::sync::Semaphore>,
    metrics: Metrics,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

/// What the audit trail and the sessions list record about a client. The
/// HTTP layer reads it from the request (the address through
/// `TRUSTED_PROXIES`, README "Several instances behind a reverse proxy"); other callers fill
/// in what they know.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    /// The client's address.
    pub ip: Option<String>,
    /// Its `User-Agent`, cut to a bounded length.
    pub user_agent: Option<String>,
    /// The request's `x-request-id`, to find its log lines.
    pub request_id: Option<String>,
}

/// A successful login or refresh: the access token for the JSON body, and
/// the cookies the browser must store.
#[derive(Debug)]
pub struct Issued {
    /// A JWT for `Authorization: Bearer` (README, "Tokens").
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The refresh cookie, and after a login the device cookie.
    pub cookies: SetCookies,
}

impl Auth {
    /// The service over `store`, on the system clock. Refused when a
    /// secret is missing (development secrets not loaded: see
    /// [`Config::with_development_secrets`]).
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Self, ConfigError> {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// As [`Auth::new`], with time taken from `clock` (tests move a
    /// [`ManualClock`](crate::clock::ManualClock) by hand).
    pub fn with_clock(
        config: Config,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let hasher = Hasher::new(config.accounts.bcrypt_cost);
        let metrics = Metrics::new(&hasher);
        store.observe_commits(metrics.commit_observer());
        Ok(Self {
            inner: Arc::new(Inner {
                access_keys: AccessKeys::new(&config.tokens)?,
                keys: TokenKeys::new(&config.tokens)?,
                cookies: CookiePolicy::new(&config),
                admission: Admission::new(hasher.threads()),
                hasher,
                audit: Aggregator::default(),
                refresh_limit: RefreshLimiter::new(config.tokens.max_refreshes_per_minute),
                draining: AtomicBool::new(false),
                mailer: Mailer::new(&config.mail)?,
                links: LinkKey::new(config.tokens.refresh_secret.as_ref().ok_or_else(|| {
                    crate::config::invalid(
                        "JWT_REFRESH_SECRET",
                        "must be set: it keys mailed links",
                    )
                })?),
                sealer: sealed::Sealer::new(
                    config.tokens.refresh_secret.as_ref().ok_or_else(|| {
                        crate::config::invalid(
                            "JWT_REFRESH_SECRET",
                            "must be set: it keys second factors",
                        )
                    })?,
                    config.tokens.previous_refresh_secret.as_ref(),
                ),
                mail_queued: tokio::sync::Notify::new(),
                background: Arc::new(tokio::sync::Semaphore::new(BACKGROUND)),
                metrics,
                config,
                store,
                clock,
            }),
        })
    }

    /// Opens the store `config` names (applying its migrations) and builds
    /// the service over it.
    pub async fn open(config: Config) -> anyhow::Result<Self> {
        // Checked before the store opens, so a bad setting creates no file.
        AccessKeys::new(&config.tokens)?;
        TokenKeys::new(&config.tokens)?;
        let store = crate::store::open(&config.database).await?;
        Ok(Self::new(config, store)?)
    }

    /// The configuration the service was built from.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The refresh and device cookies a request carries.
    pub fn cookies_of(&self, headers: &axum::http::HeaderMap) -> BrowserCookies {
        self.inner.cookies.read(headers)
    }

    /// The cookie that makes a browser forget its refresh token.
    pub fn clearing_cookies(&self) -> SetCookies {
        SetCookies(vec![self.inner.cookies.clear()])
    }

    /// The refresh cookie's name (`__Host-refresh_token` when secure).
    pub fn refresh_cookie_name(&self) -> &'static str {
        self.inner.cookies.name()
    }

    /// Checks an access token: signature, type, issuer, audience and expiry
    /// (README, "Tokens"). Stateless: a revoked session's token passes until
    /// it expires; [`Auth::live_session`] is the check that does not.
    pub async fn verify_access(&self, token: &str) -> Result<AccessClaims, ApiError> {
        let keys = self.access_keys().await?;
        let claims = self
            .inner
            .keys
            .verify_access(&keys, token, self.now())
            .map_err(|_| ApiError::InvalidToken)?;
        // A session from before its role required a second factor (README,
        // "Second factor"): refused at once, not when its token expires.
        let accounts = &self.config().accounts;
        if accounts.second_factor_required(&claims.role) && !claims.used_second_factor() {
            return Err(ApiError::InvalidToken);
        }
        Ok(claims)
    }

    /// Answers when the store does.
    pub async fn ping(&self) -> Result<(), ApiError> {
        // An outage is logged by the store, once; anything else is no answer either.
        self.store().ping().await.map_err(|e| {
            tracing::debug!(error = %e, "health check failed");
            ApiError::Unavailable
        })
    }

    /// Ready for traffic (`GET /readyz`): no shutdown has begun, and the
    /// store answers.
    pub async fn ready(&self) -> Result<(), ApiError> {
        if self.inner.draining.load(Ordering::Relaxed) {
            return Err(ApiError::ShuttingDown);
        }
        self.ping().await
    }

    /// Marks the start of a shutdown: from now on [`Auth::ready`] refuses,
    /// while every other request is still served. [`run_on`](crate::run_on)
    /// calls it on the shutdown signal; an embedding app with a server of
    /// its own calls it when its shutdown begins.
    pub fn begin_draining(&self) {
        self.inner.draining.store(true, Ordering::Relaxed);
    }

    /// Warms the dummy hash unknown usernames are checked against, so the
    /// first such login takes no longer than the rest.
    pub async fn warm_up(&self) {
        if let Err(e) = self.inner.hasher.warm_up().await {
            tracing::warn!(error = %e, "could not prepare the dummy password hash");
        }
    }

    /// Waits until the work requests left behind them is done (a reset link
    /// asked for is queued); a hook for latchkey's own tests, and for a
    /// shutdown.
    #[doc(hidden)]
    pub async fn settled(&self) {
        let all = u32::try_from(BACKGROUND).unwrap_or(u32::MAX);
        // Every permit free means no task holds one; the semaphore is never
        // closed, so this only waits.
        let _ = self.inner.background.acquire_many(all).await;
    }

    /// Closes the store; in-flight queries finish first.
    pub async fn close(&self) {
        self.store().close().await;
    }

    /// Every metric of this service in Prometheus' text format (version
    /// 0.0.4; README, "Metrics"), as [`metrics_router`](crate::metrics_router)
    /// serves it. Its `Content-Type` is [`METRICS_CONTENT_TYPE`](crate::METRICS_CONTENT_TYPE).
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.text(self.store(), self.hasher())
    }

    pub(crate) fn now(&self) -> i64 {
        self.inner.clock.now()
    }

    pub(crate) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    pub(crate) fn cookie_policy(&self) -> &CookiePolicy {
        &self.inner.cookies
    }

    /// The password hasher; a hook for latchkey's own tests, which hold its
    /// threads.
    #[doc(hidden)]
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// The tokens' checks and the refresh keys; a hook for latchkey's own
    /// benchmarks.
    #[doc(hidden)]
    pub fn token_keys(&self) -> &TokenKeys {
        &self.inner.keys
    }
}

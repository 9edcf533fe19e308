//! Security events: written to the store's audit trail and to the log. Only
//! identifiers go in (user, session, address, request id), never a secret.
//!
//! Rejections an attacker can repeat at will (a refused origin, a throttled
//! login or sign-up, a busy refusal) are aggregated: the first of a minute
//! from one address is written and logged at once, the rest of that minute
//! only add to its `count`, written when the minute is over (README, "Audit
//! trail and logs"). A flood of them costs one row and two log lines a
//! minute, not a durable write each.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::{Auth, ClientInfo};
use crate::store::{AuditEvent, Store, StoreError};

/// Declares every kind of audit event once: its variant, its stored name,
/// and whether repeats are aggregated (README, "Audit trail and logs").
macro_rules! audit_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal $(, $aggregated:ident)?;)+) => {
        /// What happened. Stored and logged by [`AuditKind::as_str`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum AuditKind {
            $($(#[$doc])* $variant,)+
        }

        impl AuditKind {
            /// Every kind, in declaration order.
            pub const ALL: &[AuditKind] = &[$(AuditKind::$variant,)+];

            /// The name stored in the audit trail and written in logs.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(AuditKind::$variant => $name,)+
                }
            }

            /// Whether repeats from one address are kept as one row per minute.
            fn aggregated(self) -> bool {
                match self {
                    $(AuditKind::$variant => audit_kinds!(@aggregated $($aggregated)?),)+
                }
            }
        }
    };
    (@aggregated aggregated) => { true };
    (@aggregated) => { false };
}

audit_kinds! {
    /// A password was verified and a session started.
    LoginSucceeded = "login_succeeded";
    /// An unknown user, a wrong password or a disabled account.
    LoginFailed = "login_failed";
    /// A login refused by the throttle.
    LoginThrottled = "login_throttled", aggregated;
    /// A password check refused: too many in flight, or the hashing queue full.
    LoginBusy = "login_busy", aggregated;
    /// A sign-up refused by the throttle.
    RegistrationThrottled = "registration_throttled", aggregated;
    /// A cookie endpoint called from an origin that is not allowed.
    OriginRejected = "origin_rejected", aggregated;
    /// An account was created through `POST /register`.
    UserRegistered = "user_registered";
    /// A password change with a wrong current password.
    PasswordChangeFailed = "password_change_failed";
    /// A password changed; the user's other sessions ended.
    PasswordChanged = "password_changed";
    /// An old refresh token came back; its session was revoked.
    RefreshTokenReused = "refresh_token_reused";
    /// A session ended by logging out.
    Logout = "logout";
    /// A session ended because the browser signed in again.
    ReplacedByLogin = "replaced_by_login";
    /// A session pushed out by `MAX_SESSIONS_PER_USER`.
    SessionEvicted = "session_evicted";
    /// A user revoked one of their sessions.
    SessionRevoked = "session_revoked";
    /// A user logged out everywhere.
    SessionsRevokedAll = "sessions_revoked_all";
    /// An operator revoked sessions of a user.
    SessionsRevokedByOperator = "sessions_revoked_by_operator";
    /// An operator disabled an account.
    UserDisabled = "user_disabled";
    /// An operator enabled an account again.
    UserEnabled = "user_enabled";
    /// A user's password was verified again for their session (step-up).
    Reauthenticated = "reauthenticated";
    /// A re-authentication with a wrong password.
    ReauthenticationFailed = "reauthentication_failed";
    /// An account was deleted, by its user or an operator; the events that
    /// concern it keep the user id alone (README, "Deleting an account").
    AccountDeleted = "account_deleted";
    /// A password reset link was asked for a known account (README,
    /// "Account recovery"); unknown names leave no event.
    PasswordResetRequested = "password_reset_requested";
    /// A password was set with a reset link; every session ended.
    PasswordReset = "password_reset";
    /// An address was verified with its link.
    EmailVerified = "email_verified";
    /// The mail transport accepted a mail (`detail`: its kind).
    MailSent = "mail_sent";
    /// A mail was given up on: refused for good, or out of attempts.
    MailFailed = "mail_failed";
    /// A second factor was turned on (README, "Second factor").
    SecondFactorEnrolled = "second_factor_enrolled";
    /// A second factor was removed, by its user or an operator.
    SecondFactorRemoved = "second_factor_removed";
    /// A TOTP code was accepted.
    SecondFactorUsed = "second_factor_used";
    /// A recovery code was used (it works no more).
    RecoveryCodeUsed = "recovery_code_used";
    /// A wrong, reused or expired second factor.
    SecondFactorFailed = "second_factor_failed";
    /// Sessions signed in with a password alone ended: their user turned a
    /// second factor on from another session, or their user's role
    /// requires one (`SECOND_FACTOR_REQUIRED_ROLES`).
    PasswordOnlySessionsEnded = "password_only_sessions_ended";
}

impl std::fmt::Display for AuditKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Addresses tracked at once; past it, every count is written out.
const MAX_TRACKED: usize = 10_000;

/// An event about to be recorded, built from its kind and the client.
#[derive(Debug, Clone)]
pub struct Event {
    kind: AuditKind,
    row: AuditEvent,
}

impl Event {
    /// An event of `kind` caused by `client`.
    pub fn new(kind: AuditKind, client: &ClientInfo) -> Self {
        Self {
            kind,
            row: AuditEvent {
                kind: kind.as_str().to_owned(),
                ip: client.ip.clone(),
                request_id: client.request_id.clone(),
                ..AuditEvent::default()
            },
        }
    }

    /// The user it concerns.
    pub fn user(mut self, id: i64, username: &str) -> Self {
        self.row.user_id = Some(id);
        self.row.username = Some(username.to_owned());
        self
    }

    /// The name a client tried (it may name no user).
    pub fn username(mut self, username: &str) -> Self {
        self.row.username = Some(username.chars().take(64).collect());
        self
    }

    /// The user it concerns, by id alone.
    pub fn user_id(mut self, id: i64) -> Self {
        self.row.user_id = Some(id);
        self
    }

    /// The session it concerns.
    pub fn session(mut self, id: &str) -> Self {
        self.row.session_id = Some(id.to_owned());
        self
    }

    /// Words for the operator; never a secret.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.row.detail = Some(detail.into());
        self
    }
}

/// The counts of aggregated events not yet written.
#[derive(Debug, Default)]
pub struct Aggregator {
    open: Mutex<HashMap<(String, Option<String>), Open>>,
}

#[derive(Debug, Clone)]
struct Open {
    minute: i64,
    /// The row written for the minute's first event.
    row: i64,
    /// Events since that row, not yet added to its count.
    more: i64,
}

/// Where an event goes.
enum Route {
    /// A first of its minute (or not aggregated): write and log it.
    Write,
    /// Counted in memory.
    Counted,
}

impl Aggregator {
    fn route(&self, kind: AuditKind, event: &AuditEvent) -> (Route, Vec<Open>) {
        if !kind.aggregated() {
            return (Route::Write, Vec::new());
        }
        let Ok(mut open) = self.open.lock() else {
            return (Route::Write, Vec::new());
        };
        let minute = event.at.div_euclid(60);
        let key = (event.kind.clone(), event.ip.clone());
        if let Some(o) = open.get_mut(&key)
            && o.minute == minute
        {
            o.more += 1;
            return (Route::Counted, Vec::new());
        }
        let mut done: Vec<Open> = open.remove(&key).into_iter().collect();
        if open.len() >= MAX_TRACKED {
            done.extend(open.drain().map(|(_, o)| o));
        }
        (Route::Write, done)
    }

    fn opened(&self, kind: AuditKind, event: &AuditEvent, row: i64) {
        if !kind.aggregated() {
            return;
        }
        if let Ok(mut open) = self.open.lock() {
            let key = (event.kind.clone(), event.ip.clone());
            let minute = event.at.div_euclid(60);
            match open.get_mut(&key) {
                // Two firsts raced; the other row stands, this one stays at 1.
                Some(o) if o.minute == minute => {}
                _ => {
                    open.insert(
                        key,
                        Open {
                            minute,
                            row,
                            more: 0,
                        },
                    );
                }
            }
        }
    }

    /// Takes the counts of minutes before `now`'s (of every minute when
    /// `now` is `None`).
    fn take(&self, now: Option<i64>) -> Vec<Open> {
        let Ok(mut open) = self.open.lock() else {
            return Vec::new();
        };
        match now {
            None => open.drain().map(|(_, o)| o).collect(),
            Some(now) => {
                let minute = now.div_euclid(60);
                let done: Vec<_> = open
                    .iter()
                    .filter(|(_, o)| o.minute < minute)
                    .map(|(k, _)| k.clone())
                    .collect();
                done.into_iter().filter_map(|k| open.remove(&k)).collect()
            }
        }
    }
}

impl Auth {
    /// Records the event in the audit trail and the log. A failed write is
    /// logged and does not fail the request: the action the event describes
    /// has already happened. An embedding application records its own
    /// events with it.
    pub async fn record(
        &self,
        Event {
            kind,
            row: mut event,
        }: Event,
    ) {
        event.at = self.now();
        let aggregator = &self.inner.audit;
        let (route, done) = aggregator.route(kind, &event);
        write_counts(self.store(), done).await;
        if let Route::Counted = route {
            return;
        }
        log_event(kind, &event);
        match self.store().record_event(event.clone()).await {
            Ok(row) => aggregator.opened(kind, &event, row),
            Err(err) => not_recorded(&err),
        }
    }

    /// Records several events as [`Auth::record`] does each, written to the
    /// store together: one commit however many there are, so that a login
    /// ending many sessions at once does not wait for a commit per session.
    /// Events of a kind kept as one row a minute go one by one.
    pub(crate) async fn record_all(&self, events: Vec<Event>) {
        let now = self.now();
        let mut rows = Vec::with_capacity(events.len());
        for Event {
            kind,
            row: mut event,
        } in events
        {
            if kind.aggregated() {
                self.record(Event { kind, row: event }).await;
                continue;
            }
            event.at = now;
            log_event(kind, &event);
            rows.push(event);
        }
        if !rows.is_empty()
            && let Err(err) = self.store().record_events(rows).await
        {
            not_recorded(&err);
        }
    }

    /// A request to a cookie endpoint from an origin that is not allowed
    /// (README, "Cross-site protection and CORS"): recorded, aggregated per
    /// address and minute, and refused.
    pub(crate) async fn origin_rejected(
        &self,
        client: &ClientInfo,
        detail: String,
    ) -> crate::auth::ApiError {
        self.record(Event::new(AuditKind::OriginRejected, client).detail(detail))
            .await;
        crate::auth::ApiError::ForbiddenOrigin
    }

    /// Writes the counts of aggregated events whose minute is over (all of
    /// them when `everything`, at shutdown). A hook for latchkey's own tests.
    #[doc(hidden)]
    pub async fn flush_audit(&self, everything: bool) {
        let now = (!everything).then(|| self.now());
        let done = self.inner.audit.take(now);
        write_counts(self.store(), done).await;
    }

    /// Audit events at or after `since` (Unix seconds), of one user when
    /// given, oldest first.
    pub async fn audit_events(
        &self,
        user: Option<&crate::store::User>,
        since: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, crate::auth::ApiError> {
        Ok(self
            .store()
            .events(user.map(|u| u.id), since, limit)
            .await?)
    }
}

/// Every few seconds, writes the counts of minutes that are over, until
/// `stop` turns true; then writes what is left.
pub(crate) async fn run_flusher(auth: Auth, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(5));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stopped| *stopped) => break,
        }
        auth.flush_audit(false).await;
    }
    auth.flush_audit(true).await;
}

async fn write_counts(store: &dyn Store, done: Vec<Open>) {
    for o in done.into_iter().filter(|o| o.more > 0) {
        tracing::info!(
            row = o.row,
            more = o.more,
            "audit: repeated events of one address in one minute, counted on the first one's row"
        );
        if let Err(err) = store.add_to_event_count(o.row, o.more).await {
            tracing::error!(error = %err, "could not record audit event counts");
        }
    }
}

/// An audit event's log line.
fn log_event(kind: AuditKind, e: &AuditEvent) {
    if kind == AuditKind::RefreshTokenReused {
        tracing::warn!(event = %e.kind, user_id = e.user_id, session_id = e.session_id, ip = e.ip, "refresh token reuse detected; session revoked");
    } else {
        tracing::info!(event = %e.kind, user_id = e.user_id, username = e.username, session_id = e.session_id, ip = e.ip, detail = e.detail, "audit");
    }
}

/// A failed audit write does not fail the request; it is logged.
fn not_recorded(err: &StoreError) {
    match err {
        // During an outage the store has said so once already.
        StoreError::Unavailable(_) => tracing::debug!(error = %err, "could not record audit event"),
        _ => tracing::error!(error = %err, "could not record audit event"),
    }
}

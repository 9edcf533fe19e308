//! Sessions and their refresh-token chains.

use async_trait::async_trait;

use super::{StoreResult, User};

/// A session: one sign-in on one device, with its refresh-token chain.
///
/// No token material is stored. The chain's position is `generation`; the
/// current refresh token is the JWT that signs (`id`, `generation`,
/// `rotated_at`, `idle_expires_at`), so only the holder of the refresh secret
/// can produce it.
///
/// Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// A random string; access tokens carry it as `sid`.
    pub id: String,
    /// The signed-in account ([`User::id`]).
    pub user_id: i64,
    /// How many times the refresh-token chain has advanced; 0 at login.
    pub generation: i64,
    /// When the chain last advanced (the session's start for generation 0).
    pub rotated_at: i64,
    /// When the session began (the login).
    pub created_at: i64,
    /// When the session was last refreshed, or began; the least recently
    /// used sessions are the first pushed out (`MAX_SESSIONS_PER_USER`).
    pub last_used_at: i64,
    /// The session ends unless refreshed before this; each rotation moves it
    /// (`JWT_REFRESH_EXPIRATION`), never past `absolute_expires_at`.
    pub idle_expires_at: i64,
    /// The session ends at this time however much it is used
    /// (`SESSION_MAX_LIFETIME`).
    pub absolute_expires_at: i64,
    /// When the session was revoked; `None` while it is not.
    pub revoked_at: Option<i64>,
    /// Why it was revoked: a [`RevokeReason::as_str`] name.
    pub revoked_reason: Option<String>,
    /// The `User-Agent` of the login that began it.
    pub user_agent: Option<String>,
    /// The client address of the login that began it.
    pub ip: Option<String>,
    /// The user's credentials version when the session began (or when this
    /// session itself changed the password); it lives only while they agree.
    pub credentials_version: i64,
    /// When the password was last verified for this session: its login, or
    /// its latest re-authentication. Access tokens carry it as `auth_time`
    /// (RFC 9068 §2.2.1), unchanged by rotation.
    pub auth_time: i64,
    /// The login's "Keep me signed in": when false, the refresh cookie lasts
    /// only as long as the browser does, and the idle expiry is the shorter
    /// [`IdleTimeouts::not_remembered`].
    pub remember: bool,
    /// How the user proved who they are for this session: RFC 8176 method
    /// values, space-separated (`pwd`). Access tokens carry it as `amr`,
    /// unchanged by rotation.
    pub amr: String,
}

impl Session {
    /// Whether the session can still be used at `now`: not revoked, and
    /// neither expiry reached.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at() > now
    }

    /// When the session ends unless refreshed first: the sooner of its idle
    /// and absolute expiries.
    pub fn expires_at(&self) -> i64 {
        self.idle_expires_at.min(self.absolute_expires_at)
    }
}

/// A session as a rotation left it, with its user as the user is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The session at its new generation.
    pub session: Session,
    /// The session's user, read in the same statement.
    pub user: User,
}

/// A session for [`Sessions::create_session`] to begin, at generation 0.
/// Times are Unix seconds.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// A fresh random id ([`Session::id`]).
    pub id: String,
    /// The account signing in.
    pub user_id: i64,
    /// The version of the credentials that were verified for this login:
    /// the session is created only if it is still the user's.
    pub credentials_version: i64,
    /// The login's time: the session's `created_at`, `rotated_at` and
    /// `last_used_at`.
    pub now: i64,
    /// See [`Session::idle_expires_at`].
    pub idle_expires_at: i64,
    /// See [`Session::absolute_expires_at`].
    pub absolute_expires_at: i64,
    /// See [`Session::user_agent`].
    pub user_agent: Option<String>,
    /// See [`Session::ip`].
    pub ip: Option<String>,
    /// See [`Session::remember`]. Its `auth_time` is `now`.
    pub remember: bool,
    /// See [`Session::amr`].
    pub amr: String,
}

/// How long a session may go unused, by its [`Session::remember`]; a
/// rotation slides the idle expiry by one of them (in seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleTimeouts {
    /// For a session signed in with "Keep me signed in" (`JWT_REFRESH_EXPIRATION`).
    pub remembered: i64,
    /// For one without (`SESSION_IDLE_TIMEOUT_NO_REMEMBER`).
    pub not_remembered: i64,
}

impl IdleTimeouts {
    /// The one that applies to a session remembered or not.
    pub fn of(&self, remember: bool) -> i64 {
        if remember {
            self.remembered
        } else {
            self.not_remembered
        }
    }
}

/// A session just created, and the least recently used sessions of the
/// same user it pushed out (`MAX_SESSIONS_PER_USER`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The new session.
    pub session: Session,
    /// The ids of the sessions revoked to make room (`session_evicted`).
    pub evicted: Vec<String>,
}

/// Declares every reason a session ends once: its variant and the name the
/// store keeps (and the metrics use as `reason`).
macro_rules! revoke_reasons {
    ($($(#[$doc:meta])* $variant:ident = $name:literal;)+) => {
        /// Why a session ended, as the store keeps it in `revoked_reason`. Every
        /// reason is declared here once; the audit trail names the same events.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[non_exhaustive]
        pub enum RevokeReason {
            $($(#[$doc])* $variant,)+
        }

        impl RevokeReason {
            /// Every reason, in declaration order.
            pub const ALL: &[RevokeReason] = &[$(RevokeReason::$variant,)+];

            /// The name kept in `revoked_reason`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }
        }
    };
}

revoke_reasons! {
    /// Its refresh cookie was sent to `POST /logout`.
    Logout = "logout";
    /// The browser signed in again with its cookie.
    ReplacedByLogin = "replaced_by_login";
    /// An old refresh token of it came back (README, "Rotation rules").
    RefreshTokenReused = "refresh_token_reused";
    /// Its user revoked it from the sessions list.
    RevokedByUser = "revoked_by_user";
    /// Its user logged out everywhere.
    RevokedEverywhere = "revoked_everywhere";
    /// An operator revoked it.
    RevokedByOperator = "revoked_by_operator";
    /// Its user changed the password from another session.
    PasswordChanged = "password_changed";
    /// An operator set a new password.
    PasswordReset = "password_reset";
    /// An operator disabled its user.
    UserDisabled = "user_disabled";
    /// A newer login pushed it out (`MAX_SESSIONS_PER_USER`).
    SessionEvicted = "session_evicted";
    /// Its user turned a second factor on from another session.
    SecondFactorEnrolled = "second_factor_enrolled";
    /// It was signed in without a second factor, which its user's role now
    /// requires (`SECOND_FACTOR_REQUIRED_ROLES`).
    SecondFactorRequired = "second_factor_required";
    /// Its user's account was deleted. Never kept in `revoked_reason`: the
    /// session's row goes with the account; the metrics count it.
    AccountDeleted = "account_deleted";
}

/// Sessions and their refresh-token chains. A revoked session keeps its row,
/// with `revoked_at` and `revoked_reason` set, until
/// [`Sessions::delete_expired_sessions`] removes it past its absolute expiry.
#[async_trait]
pub trait Sessions: Send + Sync {
    /// Creates the session only if the user is enabled and still at the
    /// session's credentials version (else `None`), and revokes the least
    /// recently used live sessions beyond `max_per_user`
    /// (`session_evicted`), in one transaction.
    async fn create_session(
        &self,
        session: NewSession,
        max_per_user: i64,
    ) -> StoreResult<Option<Created>>;
    /// The session with this id, live or not.
    async fn session(&self, id: &str) -> StoreResult<Option<Session>>;
    /// Advances the chain only if it is still at `generation` and the session
    /// is live: one atomic compare-and-set, so concurrent callers presenting
    /// the same token can never both win. The idle expiry slides to
    /// `now` plus the session's own idle timeout (`idle`), capped at the
    /// absolute expiry. The session's user comes back from the same
    /// statement: a rotation is one round trip.
    async fn rotate_session(
        &self,
        id: &str,
        generation: i64,
        now: i64,
        idle: IdleTimeouts,
    ) -> StoreResult<Option<Rotated>>;
    /// Records a fresh password check for a live session: its `auth_time`
    /// becomes `now`, only if the user's stored hash is still
    /// `verified_hash` and the session still at the user's credentials
    /// version (a password change or disable that won the race leaves it
    /// as it was). The session as updated, or `None`.
    async fn reauthenticate_session(
        &self,
        id: &str,
        verified_hash: &str,
        now: i64,
        amr: &str,
    ) -> StoreResult<Option<Session>>;
    /// Revokes a live session; with `owner`, only if it belongs to that user.
    /// Returns whether a session was revoked by this call.
    async fn revoke_session(
        &self,
        id: &str,
        owner: Option<i64>,
        reason: RevokeReason,
        now: i64,
    ) -> StoreResult<bool>;
    /// Revokes every live session of a user, but `except` when given;
    /// returns how many.
    async fn revoke_user_sessions(
        &self,
        user_id: i64,
        except: Option<&str>,
        reason: RevokeReason,
        now: i64,
    ) -> StoreResult<u64>;
    /// The user's sessions that are neither revoked nor expired, newest first.
    async fn active_sessions(&self, user_id: i64, now: i64) -> StoreResult<Vec<Session>>;
    /// Deletes up to `limit` sessions whose absolute expiry is at or before
    /// `now`; returns how many. Such a session can never be used again.
    async fn delete_expired_sessions(&self, now: i64, limit: i64) -> StoreResult<u64>;
}

//! Mail waiting to be sent, and the one-time links it carries (README,
//! "Account recovery").

use async_trait::async_trait;

use super::{StoreResult, User};

/// What a mail is for; a link's kind is its mail's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MailKind {
    /// A link to set a new password.
    PasswordReset,
    /// A link that verifies an address for its account.
    EmailVerification,
    /// A notice to an account's old address that a new one replaced it.
    EmailChanged,
}

impl MailKind {
    /// Every kind.
    pub const ALL: &[MailKind] = &[
        MailKind::PasswordReset,
        MailKind::EmailVerification,
        MailKind::EmailChanged,
    ];

    /// The name stored, logged and shown by `latchkey mail queue`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::EmailVerification => "email_verification",
            Self::EmailChanged => "email_changed",
        }
    }

    /// The kind stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }
}

/// A one-time link to issue with a mail.
#[derive(Clone)]
pub struct NewLink<'a> {
    /// The random id the token is rebuilt from; not the token.
    pub id: &'a str,
    /// SHA-256 of the token: all the store keeps of it.
    pub hash: &'a [u8],
    /// For a verification, the address it verifies.
    pub email: Option<&'a str>,
    /// When it stops working, in Unix seconds.
    pub expires_at: i64,
    /// Whether it ends the account's other live links of its kind (a newer
    /// address to verify replaces the older).
    pub supersedes: bool,
}

/// A mail for [`Outbox::queue_mail`].
#[derive(Clone)]
pub struct NewMail<'a> {
    /// What it is for.
    pub kind: MailKind,
    /// The recipient's address.
    pub to: &'a str,
    /// The account it concerns.
    pub user_id: i64,
    /// The link it carries, issued in the same transaction.
    pub link: Option<NewLink<'a>>,
}

/// A mail in the outbox. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// The row id.
    pub id: i64,
    /// Its [`MailKind`], as stored.
    pub kind: String,
    /// The recipient's address.
    pub recipient: String,
    /// The account it concerns.
    pub user_id: Option<i64>,
    /// The id of the link it carries; gone once the mail failed for good.
    pub link_id: Option<String>,
    /// Attempts so far, the current one included once claimed.
    pub attempts: i64,
    /// When it was queued.
    pub created_at: i64,
    /// When it is due (again).
    pub next_attempt_at: i64,
    /// When it was given up on, if it was.
    pub failed_at: Option<i64>,
    /// What the relay (or the transport) last said, if it failed.
    pub last_error: Option<String>,
}

/// How a claimed mail's attempt ended, for [`Outbox::finish_mail`].
#[derive(Debug, Clone, Copy)]
pub enum MailOutcome<'a> {
    /// Accepted: the row goes.
    Sent,
    /// Not sent this time: due again at `at`.
    Retry {
        /// When to try again, in Unix seconds.
        at: i64,
        /// Why it was not sent.
        error: &'a str,
    },
    /// Given up on: kept for `latchkey mail queue`, without its link.
    Failed {
        /// Why.
        error: &'a str,
        /// When, in Unix seconds.
        at: i64,
    },
}

/// The mail queue: durable, so that a crash or a relay's outage loses no
/// mail, and claimed by lease, so that instances sharing a database never
/// send one twice.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Queues `mail` (and issues its link) in one transaction at `now`, due
    /// at once. `None` when the account no longer exists.
    async fn queue_mail(&self, mail: NewMail<'_>, now: i64) -> StoreResult<Option<i64>>;
    /// Claims up to `limit` due mails, oldest first, for `lease` seconds:
    /// their attempts go up by one, and no other claim takes them until the
    /// lease runs out.
    async fn claim_mail(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<QueuedMail>>;
    /// Settles a claimed mail, only if no later claim took it (`attempts`
    /// still the claim's). Returns whether it applied.
    async fn finish_mail(
        &self,
        id: i64,
        attempts: i64,
        outcome: MailOutcome<'_>,
    ) -> StoreResult<bool>;
    /// Up to `limit` mails not sent yet (waiting, or given up on), oldest first.
    async fn unsent_mail(&self, limit: i64) -> StoreResult<Vec<QueuedMail>>;
    /// When the oldest mail still to be sent was queued.
    async fn oldest_unsent_mail(&self) -> StoreResult<Option<i64>>;
    /// Deletes up to `limit` mails given up on before `before`, and links
    /// expired before it.
    async fn delete_old_mail(&self, before: i64, limit: i64) -> StoreResult<u64>;
}

/// A link that still works: unused, unexpired, its account enabled (and, for
/// a reset, its credentials unchanged since it was issued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveLink {
    /// The account.
    pub user_id: i64,
    /// For a verification, the address it verifies.
    pub email: Option<String>,
}

/// A verified address, from [`Links::use_verification_link`].
#[derive(Debug, Clone)]
pub struct EmailVerified {
    /// The account, with its new address.
    pub user: User,
    /// The verified address it replaced, if it had one and it differs.
    pub replaced: Option<String>,
}

/// Using the links mail carries. Each use is one transaction that marks the
/// link used only if it still works, so a link used twice at the same
/// instant works once.
#[async_trait]
pub trait Links: Send + Sync {
    /// The link whose token hashes to `hash`, if it is of `kind` and still
    /// works at `now`; nothing changes.
    async fn live_link(
        &self,
        hash: &[u8],
        kind: MailKind,
        now: i64,
    ) -> StoreResult<Option<LiveLink>>;
    /// Uses a reset link: its account's password hash becomes `new_hash`,
    /// the credentials version moves (so the account's other reset links,
    /// device cookies and logins in flight lose) and every session is
    /// revoked (`password_reset`). `None` when the link no longer works;
    /// otherwise the account, and the sessions revoked.
    async fn use_reset_link(
        &self,
        hash: &[u8],
        new_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(User, u64)>>;
    /// Uses a verification link: its address becomes the account's,
    /// verified. `None` when the link no longer works;
    /// [`StoreError::EmailTaken`](super::StoreError::EmailTaken) (and the
    /// link unused) when another account has the address verified.
    async fn use_verification_link(
        &self,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<EmailVerified>>;
}

//! Accounts and their credentials.

use async_trait::async_trait;

use super::StoreResult;

/// An account, as the `users` table keeps it. Times are Unix seconds.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    /// The row id; access tokens carry it as `sub`, sessions as `user_id`.
    pub id: i64,
    /// The sign-in name, unique among accounts.
    pub username: String,
    /// The stored password hash (README, "Passwords and login"); never part
    /// of `Debug` output.
    pub password_hash: String,
    /// The role access tokens carry as their `role` claim (`user` for sign-ups).
    pub role: String,
    /// When the account was created.
    pub created_at: i64,
    /// When the account was disabled; `None` while it is enabled.
    pub disabled_at: Option<i64>,
    /// Bumped by every password change and by disabling, in the same
    /// transaction that revokes the user's sessions: a login or rotation that
    /// verified older credentials finds it moved and creates nothing.
    pub credentials_version: i64,
    /// The account's email address, lower-cased (README, "Email
    /// addresses"), if it has one.
    pub email: Option<String>,
    /// Whether the address is verified: only then may it sign in in place
    /// of the username, and only one account has it so.
    pub email_verified: bool,
}

// The hash stays out of `Debug`, and so out of any log line that prints a user.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("credentials_version", &self.credentials_version)
            .field("email_verified", &self.email_verified)
            .finish_non_exhaustive()
    }
}

/// An account for [`Users::create_user`] to add.
#[derive(Clone)]
pub struct NewUser<'a> {
    /// The sign-in name; [`StoreError::UsernameTaken`](super::StoreError::UsernameTaken)
    /// if an account has it already.
    pub username: &'a str,
    /// The password hash to store, already computed.
    pub password_hash: &'a str,
    /// The account's role (see [`User::role`]).
    pub role: &'a str,
    /// The account's email address, lower-cased, unverified.
    pub email: Option<&'a str>,
}

/// A password change: applied only if the stored hash is still the one the
/// current password was verified against (compare-and-set).
#[derive(Debug, Clone)]
pub struct PasswordChange<'a> {
    /// The account whose password changes.
    pub user_id: i64,
    /// The stored hash the current password was verified against.
    pub verified_hash: &'a str,
    /// The hash of the new password.
    pub new_hash: &'a str,
    /// The session making the change, which stays signed in.
    pub keep_session: Option<&'a str>,
    /// The time of the change, in Unix seconds: the revoked sessions'
    /// `revoked_at`.
    pub now: i64,
}

/// An account to erase ([`Users::delete_user`]): the user, and the
/// throttle counters that name them.
#[derive(Debug, Clone)]
pub struct Erasure<'a> {
    /// The account.
    pub user_id: i64,
    /// Throttle counters to delete: these exact keys…
    pub throttle_keys: &'a [String],
    /// …and every key that starts with one of these.
    pub throttle_prefixes: &'a [String],
    /// The time of the deletion, in Unix seconds: which sessions were live.
    pub now: i64,
}

/// Accounts. A password reset, a password change and a disable each revoke
/// the user's sessions in the same transaction (see each method).
#[async_trait]
pub trait Users: Send + Sync {
    /// Adds an enabled account created at `now` (Unix seconds);
    /// [`StoreError::UsernameTaken`](super::StoreError::UsernameTaken) if the
    /// name is in use.
    async fn create_user(&self, user: NewUser<'_>, now: i64) -> StoreResult<User>;
    /// The account with this username, enabled or not.
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>>;
    /// The account with this id, enabled or not.
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>>;
    /// The account whose verified email address is `email` (lower-cased),
    /// enabled or not.
    async fn user_by_verified_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// Sets the account's email address (`None` removes it), verified or
    /// not; [`StoreError::EmailTaken`](super::StoreError::EmailTaken) if
    /// another account has it verified. False when there is no such user.
    async fn set_email(
        &self,
        user_id: i64,
        email: Option<&str>,
        verified: bool,
        now: i64,
    ) -> StoreResult<bool>;
    /// Sets a new password hash outright (an operator's reset): the
    /// credentials version moves and every session of the user is revoked,
    /// in one transaction. Returns the sessions revoked.
    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<u64>;
    /// Re-hashes the same password (a stronger cost or format), only if the
    /// stored hash is still `verified_hash`, so it never overwrites a newer
    /// password. The credentials version does not move. Returns whether it applied.
    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        verified_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool>;
    /// Changes the password if the stored hash is still the verified one; in
    /// the same transaction the credentials version moves, every other
    /// session is revoked (`password_changed`) and the kept session moves to
    /// the new version. `None` when the hash had changed meanwhile.
    async fn change_password(&self, change: PasswordChange<'_>) -> StoreResult<Option<u64>>;
    /// Disables the account: the credentials version moves and every session
    /// is revoked (`user_disabled`), in one transaction. `None` when there is
    /// no such user; otherwise the sessions revoked.
    async fn disable_user(&self, user_id: i64, now: i64) -> StoreResult<Option<u64>>;
    /// Re-enables a disabled account; false when there is no such user.
    async fn enable_user(&self, user_id: i64) -> StoreResult<bool>;
    /// Erases the account, in one transaction: the user's row, every
    /// session of theirs, the throttle counters named, and the personal data
    /// of every audit event that concerns them (by id or by name): the
    /// events stay, with the user id alone. `None` when there is no such
    /// user; otherwise how many sessions were live.
    async fn delete_user(&self, erasure: Erasure<'_>) -> StoreResult<Option<u64>>;
}

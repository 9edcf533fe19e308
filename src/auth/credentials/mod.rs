//! One password check, shared by logins and password changes: admitted (a
//! bounded number in flight per address and account or device), counted by
//! the throttle before the password is checked, then settled (README,
//! "Limits under attack"). Timing does not reveal which usernames exist.

pub(crate) mod admission;
mod devices;
pub(crate) mod throttle;

use crate::auth::credentials::admission::Ticket;
use crate::auth::email::normalize_email;
use crate::auth::password::policy as password_policy;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::store::User;

/// The username rule, the one home of it (the OpenAPI description is
/// built from it too): 1 to this many characters…
pub const MAX_USERNAME_CHARS: usize = 64;
/// …of ASCII letters, digits and these.
pub const USERNAME_PUNCTUATION: [char; 5] = ['.', '_', '-', '@', '+'];

/// Whether `c` may be part of a username.
pub fn username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || USERNAME_PUNCTUATION.contains(&c)
}

/// `USERNAME_PUNCTUATION` as people read it: `. _ - @ +`.
pub fn username_punctuation() -> String {
    let marks: Vec<String> = USERNAME_PUNCTUATION.iter().map(char::to_string).collect();
    marks.join(" ")
}

/// Usernames are compared case-insensitively: stored and looked up lower-cased.
pub fn normalize_username(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim().to_lowercase();
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && name.chars().all(username_char);
    if valid {
        Ok(name)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "usernames are 1 to {MAX_USERNAME_CHARS} characters: letters, digits and {}",
            username_punctuation()
        )))
    }
}

impl Auth {
    /// A new password's hash, once it keeps the rules (`password/policy.rs`;
    /// README, "Passwords and login").
    pub(crate) async fn hash_new_password(&self, password: &str) -> Result<String, ApiError> {
        password_policy::check(password).map_err(ApiError::WeakPassword)?;
        self.hasher().hash(password).await.map_err(ApiError::from)
    }
}

/// A login's verified credentials: the user as verified (its credentials
/// version is what the session will be created under) and the known device
/// it came from, if any (`devices.rs`).
#[derive(Debug, Clone)]
pub struct Verified {
    pub user: User,
    pub device: Option<String>,
}

impl Auth {
    /// Checks a login attempt. Unknown users, wrong passwords, over-long
    /// passwords and disabled accounts all give the same `InvalidCredentials`,
    /// after the same bcrypt work. The attempt is admitted (a bounded number in
    /// flight per address and account or device) and counted by the throttle
    /// before the password is checked (`credentials/throttle.rs`).
    #[tracing::instrument(skip_all)]
    pub(crate) async fn authenticate(
        &self,
        username: &str,
        password: &str,
        client: &ClientInfo,
        device_cookies: &[String],
    ) -> Result<Verified, ApiError> {
        let by_email = match normalize_email(username) {
            Ok(email) => self.store().user_by_verified_email(&email).await?,
            Err(_) => None,
        };
        // Both lookups whatever the first found, so the time taken does not
        // tell a verified address from any other name.
        let by_name = match normalize_username(username) {
            Ok(name) => {
                let user = self.store().user_by_name(&name).await?;
                Ok((name, user))
            }
            Err(e) => Err(e),
        };
        let (name, user) = match (by_email, by_name) {
            // A verified address is the account's other name: counted and
            // recorded under its username, one set of counters whichever is
            // typed. It wins over a username of the same spelling, so a
            // username shaped like someone's verified address never catches
            // their logins.
            (Some(user), _) => (user.username.clone(), Some(user)),
            (None, Ok((name, user))) => (name, user),
            // No account has such a name, but the attempt is still counted
            // and recorded under it: bounded, and without the control
            // characters (a NUL) that no database column or log line takes.
            (None, Err(_)) => (printable(username), None),
        };
        let device = match &user {
            Some(u) => self.known_device(u, device_cookies).await?,
            None => None,
        };
        let counters = throttle::login_counters(
            &self.config().throttle,
            &name,
            client.ip.as_deref(),
            user.as_ref()
                .zip(device.as_deref())
                .map(|(u, id)| throttle::Device { user_id: u.id, id }),
        );
        let _admitted = admit(self, client, &name, device.as_deref()).await?;
        reserve(self, &counters, client, &name).await?;

        let usable = user.as_ref().filter(|u| u.disabled_at.is_none());
        let hash = usable.map(|u| u.password_hash.as_str());
        let verified = match check(self, password, hash, client, &name).await {
            Ok(v) => v,
            Err(e) => {
                // Not checked, so not an attempt: the reservation is given back.
                self.release_attempt(&counters).await?;
                return Err(e);
            }
        };

        match usable {
            Some(user) if verified => {
                self.settle_success(&counters).await?;
                upgrade_hash_if_weak(self, user, password).await;
                // `login_succeeded` is recorded by `session::start`, with the session.
                Ok(Verified {
                    user: user.clone(),
                    device,
                })
            }
            _ => {
                let event = Event::new(AuditKind::LoginFailed, client).username(&name);
                let event = match &user {
                    Some(u) => event.user_id(u.id),
                    None => event.detail("unknown user"),
                };
                self.record(event).await;
                Err(ApiError::InvalidCredentials)
            }
        }
    }

    /// Checks the password of a signed-in user again (a password change, a
    /// step-up): admitted, throttled and settled exactly as a login.
    /// `Ok(false)` for a wrong password, already counted.
    pub(crate) async fn recheck(
        &self,
        user: &User,
        password: &str,
        client: &ClientInfo,
        device_cookies: &[String],
    ) -> Result<bool, ApiError> {
        let device = self.known_device(user, device_cookies).await?;
        let counters = throttle::login_counters(
            &self.config().throttle,
            &user.username,
            client.ip.as_deref(),
            device.as_deref().map(|id| throttle::Device {
                user_id: user.id,
                id,
            }),
        );
        let _admitted = admit(self, client, &user.username, device.as_deref()).await?;
        reserve(self, &counters, client, &user.username).await?;
        let hash = Some(user.password_hash.as_str());
        let verified = match check(self, password, hash, client, &user.username).await {
            Ok(v) => v,
            Err(e) => {
                self.release_attempt(&counters).await?;
                return Err(e);
            }
        };
        if verified {
            self.settle_success(&counters).await?;
        }
        Ok(verified)
    }
}

/// `raw` trimmed, lower-cased, cut to the longest username, with every
/// control character replaced (U+FFFD), so it stays distinct from a real name.
fn printable(raw: &str) -> String {
    raw.trim()
        .to_lowercase()
        .chars()
        .take(MAX_USERNAME_CHARS)
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect()
}

/// A place among the password checks in flight, keyed by the client's
/// address and by the account (or, for a known device, the device).
async fn admit(
    auth: &Auth,
    client: &ClientInfo,
    username: &str,
    device: Option<&str>,
) -> Result<Ticket, ApiError> {
    let mut keys = vec![match device {
        Some(d) => format!("device:{d}"),
        None => format!("account:{username}"),
    }];
    if let Some(ip) = client.ip.as_deref() {
        keys.push(format!("ip:{}", throttle::address_key(ip)));
    }
    match auth.admission().enter(keys).await {
        Ok(ticket) => Ok(ticket),
        Err(e) => {
            auth.record(Event::new(AuditKind::LoginBusy, client).username(username))
                .await;
            Err(e)
        }
    }
}

async fn reserve(
    auth: &Auth,
    counters: &throttle::Counters,
    client: &ClientInfo,
    username: &str,
) -> Result<(), ApiError> {
    match auth.reserve_attempt(counters).await {
        Err(e @ ApiError::TooManyAttempts { .. }) => {
            auth.record(Event::new(AuditKind::LoginThrottled, client).username(username))
                .await;
            Err(e)
        }
        other => other,
    }
}

/// The bcrypt check, refused at once when the hashing queue is full: a
/// `login_busy` like a refusal at admission (README, "Limits under attack").
async fn check(
    auth: &Auth,
    password: &str,
    hash: Option<&str>,
    client: &ClientInfo,
    username: &str,
) -> Result<bool, ApiError> {
    if !password_policy::within_max_length(password) {
        return Ok(false);
    }
    let checked = auth
        .hasher()
        .verify(password, hash)
        .await
        .map_err(ApiError::from);
    if let Err(ApiError::ServerBusy { .. }) = checked {
        auth.record(Event::new(AuditKind::LoginBusy, client).username(username))
            .await;
    }
    checked
}

/// Re-hashes at the configured cost when the stored hash is cheaper, only
/// over the very hash this login verified: a password changed meanwhile is
/// never overwritten by the old one. Failure only delays the upgrade to the
/// next login, so it does not fail this one.
async fn upgrade_hash_if_weak(auth: &Auth, user: &User, password: &str) {
    if !auth.hasher().needs_upgrade(&user.password_hash) {
        return;
    }
    let result = async {
        let hash = auth.hasher().hash(password).await?;
        let applied = auth
            .store()
            .upgrade_password_hash(user.id, &user.password_hash, &hash)
            .await?;
        anyhow::Ok(applied)
    }
    .await;
    match result {
        Ok(true) => tracing::info!(
            user_id = user.id,
            cost = auth.hasher().cost(),
            "password hash upgraded"
        ),
        Ok(false) => tracing::info!(
            user_id = user.id,
            "password hash not upgraded: the password changed meanwhile"
        ),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "password hash upgrade failed"),
    }
}

//! Accounts and credentials: creating a user, and checking a username and
//! password at login with throttling and timing that does not reveal which
//! usernames exist.

use crate::audit::{self, Event};
use crate::auth::admission::Ticket;
use crate::auth::extract::ClientInfo;
use crate::auth::password::Hasher;
use crate::auth::password_policy;
use crate::auth::throttle;
use crate::error::ApiError;
use crate::random;
use crate::state::AppState;
use crate::store::{NewUser, Store, User};

pub const MAX_USERNAME_CHARS: usize = 64;

/// Usernames are compared case-insensitively: stored and looked up lower-cased.
pub fn normalize_username(raw: &str) -> Result<String, ApiError> {
    let name = raw.trim().to_lowercase();
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_USERNAME_CHARS
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'));
    if valid {
        Ok(name)
    } else {
        Err(ApiError::InvalidRequest(format!(
            "usernames are 1 to {MAX_USERNAME_CHARS} characters: letters, digits and . _ - @ +"
        )))
    }
}

/// The rules for a new password (`password_policy.rs`), as an API error.
pub fn check_password_strength(password: &str) -> Result<(), ApiError> {
    password_policy::check(password).map_err(ApiError::WeakPassword)
}

/// Creates a user after validating the name and password; used by
/// `/register` and by `latchkey user add`.
pub async fn create_account(
    store: &dyn Store,
    hasher: &Hasher,
    username: &str,
    password: &str,
    role: &str,
    now: i64,
) -> Result<User, ApiError> {
    let username = normalize_username(username)?;
    check_password_strength(password)?;
    let hash = hasher
        .hash(password)
        .await
        .map_err(ApiError::from_hashing)?;
    let user = store
        .create_user(
            NewUser {
                username: &username,
                password_hash: &hash,
                role,
            },
            now,
        )
        .await?;
    Ok(user)
}

/// A login's verified credentials: the user as verified (its credentials
/// version is what the session will be created under) and the device id the
/// device cookie will carry.
#[derive(Debug, Clone)]
pub struct Verified {
    pub user: User,
    pub device: String,
}

/// Checks a login attempt. Unknown users, wrong passwords, over-long
/// passwords and disabled accounts all give the same `InvalidCredentials`,
/// after the same bcrypt work. The attempt is admitted (a bounded number in
/// flight per address and account or device) and counted by the throttle
/// before the password is checked (`auth::throttle`).
#[tracing::instrument(skip_all)]
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: &str,
    client: &ClientInfo,
    device_cookies: &[String],
) -> Result<Verified, ApiError> {
    let name = username.trim().to_lowercase();
    let user = match normalize_username(&name) {
        Ok(n) => state.store.user_by_name(&n).await?,
        Err(_) => None,
    };
    let device = user
        .as_ref()
        .and_then(|u| known_device(state, u.id, device_cookies));
    let counters = throttle::login_counters(
        &state.config.throttle,
        &name,
        client.ip.as_deref(),
        device.as_deref(),
    );
    let _admitted = admit(state, client, &name, device.as_deref()).await?;
    reserve(state, &counters, client, &name).await?;

    let usable = user.as_ref().filter(|u| u.disabled_at.is_none());
    let verified = match check(state, password, usable.map(|u| u.password_hash.as_str())).await {
        Ok(v) => v,
        Err(e) => {
            // Not checked, so not an attempt: the reservation is given back.
            throttle::release(state, &counters).await?;
            return Err(e);
        }
    };

    match usable {
        Some(user) if verified => {
            throttle::settle_success(state, &counters).await?;
            upgrade_hash_if_weak(state, user, password).await;
            // `login_succeeded` is recorded by `session::start`, with the session.
            Ok(Verified {
                user: user.clone(),
                device: device.unwrap_or_else(random::device_id),
            })
        }
        _ => {
            let event = Event::new("login_failed", client).username(&name);
            let event = match &user {
                Some(u) => event.user_id(u.id),
                None => event.detail("unknown user"),
            };
            audit::record(state, event).await;
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// Checks the current password of a signed-in user (a password change):
/// admitted, throttled and settled exactly as a login. `Ok(false)` for a
/// wrong password, already counted.
pub async fn recheck(
    state: &AppState,
    user: &User,
    password: &str,
    client: &ClientInfo,
    device_cookies: &[String],
) -> Result<bool, ApiError> {
    let device = known_device(state, user.id, device_cookies);
    let counters = throttle::login_counters(
        &state.config.throttle,
        &user.username,
        client.ip.as_deref(),
        device.as_deref(),
    );
    let _admitted = admit(state, client, &user.username, device.as_deref()).await?;
    reserve(state, &counters, client, &user.username).await?;
    let verified = match check(state, password, Some(&user.password_hash)).await {
        Ok(v) => v,
        Err(e) => {
            throttle::release(state, &counters).await?;
            return Err(e);
        }
    };
    if verified {
        throttle::settle_success(state, &counters).await?;
    }
    Ok(verified)
}

/// The device id of the first genuine device cookie for this account.
fn known_device(state: &AppState, user_id: i64, cookies: &[String]) -> Option<String> {
    let now = state.clock.now();
    let user = user_id.to_string();
    cookies.iter().find_map(|token| {
        let claims = state.keys.verify_device(token, now).ok()?;
        (claims.sub == user).then_some(claims.did)
    })
}

/// A place among the password checks in flight, keyed by the client's
/// address and by the account (or, for a known device, the device).
async fn admit(
    state: &AppState,
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
    match state.admission.enter(keys).await {
        Ok(ticket) => Ok(ticket),
        Err(e) => {
            audit::record(state, Event::new("login_busy", client).username(username)).await;
            Err(e)
        }
    }
}

async fn reserve(
    state: &AppState,
    counters: &throttle::Counters,
    client: &ClientInfo,
    username: &str,
) -> Result<(), ApiError> {
    match throttle::reserve(state, counters).await {
        Err(e @ ApiError::TooManyAttempts { .. }) => {
            audit::record(
                state,
                Event::new("login_throttled", client).username(username),
            )
            .await;
            Err(e)
        }
        other => other,
    }
}

async fn check(state: &AppState, password: &str, hash: Option<&str>) -> Result<bool, ApiError> {
    if !password_policy::within_max_length(password) {
        return Ok(false);
    }
    state
        .hasher
        .verify(password, hash)
        .await
        .map_err(ApiError::from_hashing)
}

/// Re-hashes at the configured cost when the stored hash is cheaper, only
/// over the very hash this login verified: a password changed meanwhile is
/// never overwritten by the old one. Failure only delays the upgrade to the
/// next login, so it does not fail this one.
async fn upgrade_hash_if_weak(state: &AppState, user: &User, password: &str) {
    if !state.hasher.needs_upgrade(&user.password_hash) {
        return;
    }
    let result = async {
        let hash = state.hasher.hash(password).await?;
        let applied = state
            .store
            .upgrade_password_hash(user.id, &user.password_hash, &hash)
            .await?;
        anyhow::Ok(applied)
    }
    .await;
    match result {
        Ok(true) => tracing::info!(
            user_id = user.id,
            cost = state.hasher.cost(),
            "password hash upgraded"
        ),
        Ok(false) => tracing::info!(
            user_id = user.id,
            "password hash not upgraded: the password changed meanwhile"
        ),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "password hash upgrade failed"),
    }
}

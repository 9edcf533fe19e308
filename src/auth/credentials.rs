//! Accounts and credentials: creating a user, and checking a username and
//! password at login with throttling and timing that does not reveal which
//! usernames exist.

use crate::audit::{self, Event};
use crate::auth::extract::ClientInfo;
use crate::auth::password::Hasher;
use crate::auth::password_policy;
use crate::auth::throttle;
use crate::error::ApiError;
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
    let hash = hasher.hash(password).await.map_err(ApiError::Internal)?;
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

/// Checks a login attempt. Unknown users, wrong passwords, over-long
/// passwords and disabled accounts all give the same `InvalidCredentials`,
/// after the same bcrypt work.
#[tracing::instrument(skip_all)]
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: &str,
    client: &ClientInfo,
) -> Result<User, ApiError> {
    let name = username.trim().to_lowercase();
    let counters = throttle::login_counters(&state.config.throttle, &name, client.ip.as_deref());
    if let Err(e) = throttle::check(state, &counters).await {
        audit::record(state, Event::new("login_throttled", client).username(&name)).await;
        return Err(e);
    }

    let user = match normalize_username(&name) {
        Ok(n) => state.store.user_by_name(&n).await?,
        Err(_) => None,
    };
    let usable = user.as_ref().filter(|u| u.disabled_at.is_none());
    let verified = password_policy::within_max_length(password)
        && state
            .hasher
            .verify(password, usable.map(|u| u.password_hash.as_str()))
            .await
            .map_err(ApiError::Internal)?;

    match usable {
        Some(user) if verified => {
            throttle::record_success(state, &counters).await?;
            upgrade_hash_if_weak(state, user, password).await;
            // `login_succeeded` is recorded by `session::start`, with the session.
            Ok(user.clone())
        }
        _ => {
            throttle::record_failure(state, &counters).await?;
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

/// Re-hashes at the configured cost when the stored hash is cheaper. Failure
/// only delays the upgrade to the next login, so it does not fail this one.
async fn upgrade_hash_if_weak(state: &AppState, user: &User, password: &str) {
    if !state.hasher.needs_upgrade(&user.password_hash) {
        return;
    }
    let result = async {
        let hash = state.hasher.hash(password).await?;
        state
            .store
            .set_password_hash(user.id, &hash, state.clock.now())
            .await?;
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => tracing::info!(
            user_id = user.id,
            cost = state.hasher.cost(),
            "password hash upgraded"
        ),
        Err(e) => tracing::warn!(user_id = user.id, error = %e, "password hash upgrade failed"),
    }
}

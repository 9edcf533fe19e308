//! Creating accounts: open sign-up when `REGISTRATION_OPEN` allows it
//! (README, "Endpoints": `POST /register`), and an operator's
//! `latchkey user add`.

use crate::auth::credentials::normalize_username;
use crate::auth::credentials::throttle;
use crate::auth::email::normalize_email;
use crate::auth::metrics::RegistrationOutcome;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::store::{NewUser, User};

impl Auth {
    /// Signs a new user up, with the role `user` and, if given, an email
    /// address (unverified: README, "Email addresses"). Sign-ups are counted
    /// per address before the password is hashed, so sign-ups sent at the
    /// same instant cannot create more accounts than the allowance.
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        client: &ClientInfo,
    ) -> Result<User, ApiError> {
        let result = self.sign_up(username, password, email, client).await;
        self.metrics().registration(outcome(&result));
        result
    }

    async fn sign_up(
        &self,
        username: &str,
        password: &str,
        email: Option<&str>,
        client: &ClientInfo,
    ) -> Result<User, ApiError> {
        if !self.config().accounts.registration_open {
            return Err(ApiError::RegistrationClosed);
        }
        // Checked before anything is counted or hashed, as the username is.
        // A blank field (a form's empty input) gives no address.
        let email = email
            .filter(|e| !e.trim().is_empty())
            .map(normalize_email)
            .transpose()?;
        let counters =
            throttle::registration_counters(&self.config().throttle, client.ip.as_deref());
        if let Err(e) = self.reserve_attempt(&counters).await {
            if matches!(e, ApiError::TooManyAttempts { .. }) {
                self.record(Event::new(AuditKind::RegistrationThrottled, client))
                    .await;
            }
            return Err(e);
        }
        let user = self
            .new_user(username, password, "user", email.as_deref())
            .await?;
        self.record(Event::new(AuditKind::UserRegistered, client).user(user.id, &user.username))
            .await;
        self.verify_new_address(&user).await;
        Ok(user)
    }

    /// Creates a user after checking the name and the password rules
    /// (README, "Passwords and login"), whatever `REGISTRATION_OPEN` says:
    /// the operator's way in.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        role: &str,
    ) -> Result<User, ApiError> {
        self.new_user(username, password, role, None).await
    }

    async fn new_user(
        &self,
        username: &str,
        password: &str,
        role: &str,
        email: Option<&str>,
    ) -> Result<User, ApiError> {
        let username = normalize_username(username)?;
        let hash = self.hash_new_password(password).await?;
        let user = self
            .store()
            .create_user(
                NewUser {
                    username: &username,
                    password_hash: &hash,
                    role,
                    email,
                },
                self.now(),
            )
            .await?;
        Ok(user)
    }
}

/// What a sign-up came to, for `latchkey_registrations_total` (README, "Metrics").
fn outcome(result: &Result<User, ApiError>) -> RegistrationOutcome {
    match result {
        Ok(_) => RegistrationOutcome::Succeeded,
        Err(ApiError::TooManyAttempts { .. }) => RegistrationOutcome::Throttled,
        Err(ApiError::RegistrationClosed) => RegistrationOutcome::Closed,
        Err(ApiError::UsernameTaken) => RegistrationOutcome::UsernameTaken,
        Err(ApiError::WeakPassword(_)) => RegistrationOutcome::WeakPassword,
        Err(ApiError::InvalidRequest(_)) => RegistrationOutcome::Invalid,
        Err(ApiError::ServerBusy { .. }) => RegistrationOutcome::Busy,
        Err(_) => RegistrationOutcome::Error,
    }
}

//! Signing in: a password checked by `credentials/` starts a session, with
//! its refresh cookie and device cookie (README, "Endpoints": `POST /login`).

use crate::auth::credentials::Verified;
use crate::auth::metrics::LoginOutcome;
use crate::auth::{ApiError, AuditKind, Auth, BrowserCookies, ClientInfo, Event, Issued};
use crate::clock::seconds;
use crate::random;
use crate::store::NewSession;
use crate::store::RevokeReason;

/// The `amr` of a session signed in with a password (RFC 8176 §2).
const PASSWORD_AMR: &str = "pwd";

impl Auth {
    /// Signs in with a username and password. Any refresh cookie the
    /// browser sent along loses its session: the browser is about to
    /// replace it. Every refusal of the password itself is
    /// `InvalidCredentials`, whatever the reason. Without `remember` ("Keep
    /// me signed in" unticked) the refresh cookie is a session cookie and
    /// the session ends sooner when unused (README, "How sessions work").
    pub async fn log_in(
        &self,
        username: &str,
        password: &str,
        remember: bool,
        cookies: &BrowserCookies,
        client: &ClientInfo,
    ) -> Result<Issued, ApiError> {
        let result = self
            .check_and_start(username, password, remember, cookies, client)
            .await;
        self.metrics().login(outcome(&result));
        result
    }

    async fn check_and_start(
        &self,
        username: &str,
        password: &str,
        remember: bool,
        cookies: &BrowserCookies,
        client: &ClientInfo,
    ) -> Result<Issued, ApiError> {
        if username.trim().is_empty() || password.is_empty() {
            return Err(ApiError::InvalidRequest(
                "username and password are required".into(),
            ));
        }
        let verified = self
            .authenticate(username, password, client, &cookies.devices)
            .await?;
        for old in cookies.refresh.clone().all() {
            self.end_session(&old, RevokeReason::ReplacedByLogin, client)
                .await?;
        }
        self.start_session(verified, remember, client).await
    }

    /// Starts a session for credentials just verified. It is created only if
    /// they are still the user's: a password change or a disable that won
    /// the race since the check leaves this login with `401` and no session.
    async fn start_session(
        &self,
        verified: Verified,
        remember: bool,
        client: &ClientInfo,
    ) -> Result<Issued, ApiError> {
        let Verified { user, device } = verified;
        let now = self.now();
        // Before the session exists: a login that commits must be able to sign.
        let access_keys = self.signing_access_keys(now).await?;
        let config = self.config();
        let absolute_expires_at = now + seconds(config.tokens.session_lifetime);
        let created = self
            .store()
            .create_session(
                NewSession {
                    id: random::session_id(),
                    user_id: user.id,
                    credentials_version: user.credentials_version,
                    now,
                    idle_expires_at: (now + self.idle_timeouts().of(remember))
                        .min(absolute_expires_at),
                    absolute_expires_at,
                    user_agent: client.user_agent.clone(),
                    ip: client.ip.clone(),
                    remember,
                    amr: PASSWORD_AMR.to_owned(),
                },
                config.accounts.max_sessions_per_user,
            )
            .await?;
        let Some(created) = created else {
            // By id alone: the change may have been the account's deletion.
            self.record(
                Event::new(AuditKind::LoginFailed, client)
                    .user_id(user.id)
                    .detail("credentials changed during the login"),
            )
            .await;
            return Err(ApiError::InvalidCredentials);
        };
        let session = created.session;
        self.record(
            Event::new(AuditKind::LoginSucceeded, client)
                .user(user.id, &user.username)
                .session(&session.id),
        )
        .await;
        for evicted in &created.evicted {
            self.sessions_ended(RevokeReason::SessionEvicted, 1, client, |event| {
                event
                    .user(user.id, &user.username)
                    .session(evicted)
                    .detail(format!(
                        "more than {} sessions; least recently used ended",
                        config.accounts.max_sessions_per_user
                    ))
            })
            .await;
        }
        let device = self.remember_device(&user, device).await;
        let device_token = self
            .token_keys()
            .issue_device(user.id, &device, now)
            .map_err(ApiError::Internal)?;
        let mut issued = self.issue(&access_keys, &session, &user, now)?;
        issued
            .cookies
            .0
            .push(self.cookie_policy().device(device_token, remember));
        Ok(issued)
    }
}

/// What a login came to, for `latchkey_logins_total` (README, "Metrics").
fn outcome(result: &Result<Issued, ApiError>) -> LoginOutcome {
    match result {
        Ok(_) => LoginOutcome::Succeeded,
        Err(ApiError::InvalidCredentials) => LoginOutcome::Failed,
        Err(ApiError::TooManyAttempts { .. }) => LoginOutcome::Throttled,
        Err(ApiError::ServerBusy { .. }) => LoginOutcome::Busy,
        Err(ApiError::InvalidRequest(_)) => LoginOutcome::Invalid,
        Err(_) => LoginOutcome::Error,
    }
}

//! A way back into a forgotten account (README, "Account recovery"):
//! `POST /password/forgot` mails a reset link to the account's verified
//! address, and `POST /password/reset` sets a new password with it.
//!
//! Asking answers the same, at once, whoever asks about whatever name: the
//! lookup, the allowances and the queueing happen after the answer, in a
//! task of their own, so neither the answer nor its timing tells an account
//! that exists from one that does not, one with a verified address from one
//! without, or a request over its allowance from one within it.

use crate::auth::credentials::normalize_username;
use crate::auth::credentials::throttle::{self, WINDOW};
use crate::auth::email::normalize_email;
use crate::auth::links;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::store::{MailKind, Reservation, RevokeReason, User};

/// How many times `MAIL_PER_HOUR` one client address may ask for reset
/// links an hour, whatever names it asks about: one sprayer of names meets
/// it long before it floods many mailboxes.
pub(crate) const ADDRESS_FACTOR: i64 = 10;

impl Auth {
    /// Asks for a reset link for the account `login` names (its username
    /// or its verified address). Returns at once: the work goes on in the
    /// background, bounded; when too much of it is in flight the request is
    /// dropped, which the caller cannot tell either.
    pub fn forgot_password(&self, login: &str, client: &ClientInfo) {
        let Ok(permit) = self.inner.background.clone().try_acquire_owned() else {
            tracing::warn!("too many password reset requests in flight: one dropped");
            return;
        };
        let auth = self.clone();
        let login = login.to_owned();
        let client = client.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = auth.send_reset_link(&login, &client).await {
                tracing::debug!(error = %e, "password reset request not served");
            }
        });
    }

    async fn send_reset_link(&self, login: &str, client: &ClientInfo) -> Result<(), ApiError> {
        if let Some(ip) = &client.ip {
            let key = throttle::mail_ip_key(ip);
            let allowance = self.config().mail.per_hour.saturating_mul(ADDRESS_FACTOR);
            let reserved = self
                .store()
                .quota_take(&[&key], allowance, self.now(), WINDOW)
                .await?;
            if matches!(reserved, Reservation::Refused { .. }) {
                return Ok(());
            }
        }
        let Some(user) = self.account_named(login).await? else {
            return Ok(());
        };
        let event =
            Event::new(AuditKind::PasswordResetRequested, client).user(user.id, &user.username);
        let to = match (&user.email, user.email_verified, user.disabled_at) {
            (Some(email), true, None) => email.clone(),
            _ => {
                self.record(
                    event.detail("no mail: no verified address, or the account is disabled"),
                )
                .await;
                return Ok(());
            }
        };
        match self
            .queue_mail(MailKind::PasswordReset, &user, &to, None)
            .await
        {
            Ok(()) => self.record(event.detail("link queued")).await,
            Err(ApiError::TooManyAttempts { .. }) => {
                self.record(event.detail("no mail: MAIL_PER_HOUR reached"))
                    .await;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// The account `login` names, as a login reads it: a verified address
    /// first, then a username.
    async fn account_named(&self, login: &str) -> Result<Option<User>, ApiError> {
        if let Ok(email) = normalize_email(login)
            && let Some(user) = self.store().user_by_verified_email(&email).await?
        {
            return Ok(Some(user));
        }
        match normalize_username(login) {
            Ok(name) => Ok(self.store().user_by_name(&name).await?),
            Err(_) => Ok(None),
        }
    }

    /// Sets a new password with a reset link's token: the password is held
    /// to the rules of a new one (`422 weak_password`, and the link still
    /// works), then in one transaction the link is used, the password set,
    /// the credentials version moved (every other reset link, device cookie
    /// and login in flight loses) and every session of the account ended.
    /// It signs nobody in. `InvalidLink` for a token unknown, used or
    /// expired alike.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        // Checked before the password is hashed: a made-up token costs no
        // bcrypt, and one made under a secret since changed works no more.
        if !self.inner.links.genuine(token) {
            return Err(ApiError::InvalidLink);
        }
        let hash = links::hash(token);
        self.store()
            .live_link(&hash, MailKind::PasswordReset, self.now())
            .await?
            .ok_or(ApiError::InvalidLink)?;
        let new_hash = self.hash_new_password(new_password).await?;
        let (user, ended) = self
            .store()
            .use_reset_link(&hash, &new_hash, self.now())
            .await?
            .ok_or(ApiError::InvalidLink)?;
        self.sessions_ended(RevokeReason::PasswordReset, ended, client, |event| {
            event
                .user(user.id, &user.username)
                .detail(format!("with a mailed link; {ended} sessions revoked"))
        })
        .await;
        Ok(())
    }
}

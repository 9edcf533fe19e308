//! Verified addresses (README, "Email addresses", "Account recovery"): a
//! link mailed to an address proves the account holder reads it. A new
//! address replaces the account's only once verified, and the old one, if
//! verified, is told (in the same transaction, beyond any allowance).

use crate::auth::email::normalize_email;
use crate::auth::links;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event, LiveToken};
use crate::store::{MailKind, StoreError, User};

impl Auth {
    /// Mails a verification link to `address` for the token's account
    /// (`PUT /me/email`; the caller asks for a recent password). The address
    /// becomes the account's when the link is used.
    pub async fn change_email(&self, token: &LiveToken, address: &str) -> Result<(), ApiError> {
        let email = normalize_email(address)?;
        let user = self.enabled_user(token).await?;
        self.queue_mail(MailKind::EmailVerification, &user, &email, Some(&email))
            .await
    }

    /// Mails the verification link again for the account's unverified
    /// address (`POST /me/email/verification`).
    pub async fn resend_verification(&self, token: &LiveToken) -> Result<(), ApiError> {
        let user = self.enabled_user(token).await?;
        match (&user.email, user.email_verified) {
            (Some(email), false) => {
                let email = email.clone();
                self.queue_mail(MailKind::EmailVerification, &user, &email, Some(&email))
                    .await
            }
            _ => Err(ApiError::InvalidRequest(
                "the account has no address waiting to be verified".to_owned(),
            )),
        }
    }

    /// After a sign-up with an address: its verification link, if latchkey
    /// sends mail. A sign-up over the allowance still stands.
    pub(crate) async fn verify_new_address(&self, user: &User) {
        let (Some(email), false) = (&user.email, user.email_verified) else {
            return;
        };
        if !self.config().mail.sends() {
            return;
        }
        if let Err(e) = self
            .queue_mail(MailKind::EmailVerification, user, email, Some(email))
            .await
        {
            tracing::debug!(error = %e, "no verification mail after a sign-up");
        }
    }

    /// Verifies an address with its link's token (`POST /email/verify`): it
    /// becomes the account's, verified, and the address it replaces is
    /// told. `InvalidLink` for a token unknown, used or expired alike.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<(), ApiError> {
        if !self.inner.links.genuine(token) {
            return Err(ApiError::InvalidLink);
        }
        let hash = links::hash(token);
        let link = self
            .store()
            .live_link(&hash, MailKind::EmailVerification, self.now())
            .await?
            .ok_or(ApiError::InvalidLink)?;
        // As `Auth::set_email`: an address that is another account's
        // username would let either sign in as the other.
        if let Some(email) = &link.email
            && let Some(other) = self.store().user_by_name(email).await?
            && other.id != link.user_id
        {
            return Err(ApiError::InvalidRequest(
                "that email address is another account's username".to_owned(),
            ));
        }
        let verified = match self.store().use_verification_link(&hash, self.now()).await {
            Ok(Some(verified)) => verified,
            Ok(None) => return Err(ApiError::InvalidLink),
            Err(StoreError::EmailTaken) => {
                return Err(ApiError::InvalidRequest(
                    "that email address is verified on another account".to_owned(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let user = &verified.user;
        self.record(Event::new(AuditKind::EmailVerified, client).user(user.id, &user.username))
            .await;
        // The store queued the old address's notice with the change.
        if verified.replaced.is_some() {
            self.metrics().mail_queued(MailKind::EmailChanged);
            self.inner.mail_queued.notify_one();
        }
        Ok(())
    }

    async fn enabled_user(&self, token: &LiveToken) -> Result<User, ApiError> {
        match self.store().user_by_id(token.user_id()).await? {
            Some(user) if user.disabled_at.is_none() => Ok(user),
            _ => Err(ApiError::InvalidToken),
        }
    }
}

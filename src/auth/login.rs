//! Signing in: a password checked by `credentials/` starts a session, with
//! its refresh cookie and device cookie (README, "Endpoints": `POST /login`)
//! or, for an account with a second factor, a pending login that a code
//! completes (`POST /login/second-factor`; README, "Second factor").

use crate::auth::credentials::Verified;
use crate::auth::metrics::LoginOutcome;
use crate::auth::second_factor::{
    FACTORS, SECOND_FACTOR_AMR, SecondFactorProof, TotpEnrolment, pending_login_hash,
    pending_login_token,
};
use crate::auth::{ApiError, AuditKind, Auth, BrowserCookies, ClientInfo, Event, Issued, Refused};
use crate::auth::{SetCookies, cookies::MFA_LIFETIME};
use crate::clock::seconds;
use crate::random;
use crate::store::NewSession;
use crate::store::PendingLogin;
use crate::store::RevokeReason;

/// The `amr` of a session signed in with a password (RFC 8176 §2).
const PASSWORD_AMR: &str = "pwd";

/// Codes a pending login may try before it dies: sign in again.
const PENDING_LOGIN_ATTEMPTS: i64 = 5;

/// What enrolment at sign-in offers: TOTP, the one factor that can be set
/// up before anything is signed in.
const ENROLMENT_FACTORS: &[&str] = &["totp"];

impl std::fmt::Debug for SecondFactorChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondFactorChallenge")
            .field("factors", &self.factors)
            .field("enrolment", &self.enrolment)
            .finish_non_exhaustive()
    }
}

/// What a login with the right password came to.
#[derive(Debug)]
#[non_exhaustive]
pub enum SignIn {
    /// Signed in: the tokens and cookies.
    Issued(Issued),
    /// The account has a second factor: nothing is signed in yet, and the
    /// login goes on with a code (`Auth::complete_login`).
    SecondFactorRequired(SecondFactorChallenge),
    /// The account's role requires a second factor
    /// (`SECOND_FACTOR_REQUIRED_ROLES`) and it has none: nothing is signed
    /// in yet; the challenge's `enrolment` is a new TOTP secret, and a code
    /// of it completes the login (`Auth::complete_login`), turning it on.
    EnrollmentRequired(SecondFactorChallenge),
}

/// A login completed by its second factor.
#[non_exhaustive]
pub struct LoginCompleted {
    /// The tokens and cookies, as a login's.
    pub issued: Issued,
    /// When the login turned a factor on (enrolment at sign-in): its
    /// recovery codes, shown this once. Empty otherwise.
    pub recovery_codes: Vec<String>,
}

// The recovery codes stay out of logs.
impl std::fmt::Debug for LoginCompleted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginCompleted")
            .field("issued", &self.issued)
            .field("recovery_codes", &self.recovery_codes.len())
            .finish()
    }
}

/// A login waiting for its second factor. Its `Debug` output shows no
/// cookie.
pub struct SecondFactorChallenge {
    /// What may complete it (`totp`, `recovery_code`).
    pub factors: &'static [&'static str],
    /// With [`SignIn::EnrollmentRequired`], the TOTP secret to set up.
    pub enrolment: Option<TotpEnrolment>,
    /// The `__Host-mfa` cookie that ties the second step to this password
    /// check.
    pub cookies: SetCookies,
}

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
    ) -> Result<SignIn, ApiError> {
        let result = self
            .check_and_start(username, password, remember, cookies, client)
            .await;
        self.metrics().login(match &result {
            Ok(SignIn::SecondFactorRequired(_)) => LoginOutcome::SecondFactorRequired,
            Ok(SignIn::EnrollmentRequired(_)) => LoginOutcome::EnrollmentRequired,
            Ok(SignIn::Issued(_)) => LoginOutcome::Succeeded,
            Err(e) => outcome(e),
        });
        result
    }

    /// Completes a login waiting for its second factor (the request's
    /// `__Host-mfa` cookie) with `proof`: the code is counted before it is
    /// checked, for the account and for this login, which dies after
    /// five; a right one starts the session as a login does, its `amr`
    /// `["pwd", "otp"]`. For [`SignIn::EnrollmentRequired`], the code is of
    /// the new secret, and turns it on. `InvalidCode` for a wrong or used
    /// code and for a login gone (expired, spent, or its password changed
    /// since), which also clears the `__Host-mfa` cookie.
    pub async fn complete_login(
        &self,
        cookies: &BrowserCookies,
        proof: SecondFactorProof<'_>,
        client: &ClientInfo,
    ) -> Result<LoginCompleted, Refused> {
        let result = self.second_step(cookies, proof, client).await;
        self.metrics().login(match &result {
            Ok(_) => LoginOutcome::Succeeded,
            Err(refused) => outcome(&refused.error),
        });
        result
    }

    /// The TOTP secret a login waiting to set its factor up showed (the
    /// request's `__Host-mfa` cookie), for showing its page again after a
    /// wrong code. No attempt is counted.
    pub(crate) async fn pending_enrolment(
        &self,
        cookies: &BrowserCookies,
    ) -> Result<Option<TotpEnrolment>, ApiError> {
        let Some(value) = cookies.pending_login.as_deref() else {
            return Ok(None);
        };
        let hash = pending_login_hash(value);
        let Some(pending) = self.store().pending_login(&hash, self.now()).await? else {
            return Ok(None);
        };
        match self.store().user_by_id(pending.user_id).await? {
            Some(user) if self.config().accounts.second_factor_required(&user.role) => {
                self.pending_totp(&user).await
            }
            _ => Ok(None),
        }
    }

    async fn second_step(
        &self,
        cookies: &BrowserCookies,
        proof: SecondFactorProof<'_>,
        client: &ClientInfo,
    ) -> Result<LoginCompleted, Refused> {
        // No login waiting: the browser forgets its cookie.
        let gone = || Refused {
            error: ApiError::InvalidCode,
            cookies: SetCookies(vec![self.cookie_policy().clear_mfa()]),
        };
        let Some(value) = cookies.pending_login.as_deref() else {
            return Err(ApiError::InvalidCode.into());
        };
        let hash = pending_login_hash(value);
        let pending = self
            .store()
            .attempt_pending_login(&hash, self.now(), PENDING_LOGIN_ATTEMPTS)
            .await?
            .ok_or_else(gone)?;
        let user = match self.store().user_by_id(pending.user_id).await? {
            Some(u)
                if u.disabled_at.is_none()
                    && u.credentials_version == pending.credentials_version =>
            {
                u
            }
            _ => {
                self.store().end_pending_login(&hash).await?;
                return Err(gone());
            }
        };
        let recovery_codes = if self.has_second_factor(user.id).await? {
            self.check_second_factor(&user, proof, client).await?;
            Vec::new()
        } else if self.config().accounts.second_factor_required(&user.role) {
            // Setting the factor up: a code of the new secret, nothing else.
            let SecondFactorProof::Code(code) = proof else {
                return Err(ApiError::InvalidCode.into());
            };
            match self.confirm_pending_totp(&user, code, client).await {
                Ok(codes) => codes,
                // Confirmed meanwhile by another request of this login.
                Err(ApiError::InvalidRequest(_)) => return Err(gone()),
                Err(e) => return Err(e.into()),
            }
        } else {
            // The factor went (an operator's reset) since the password.
            self.store().end_pending_login(&hash).await?;
            return Err(gone());
        };
        // Once: of two right codes at the same instant, one signs in.
        if !self.store().end_pending_login(&hash).await? {
            return Err(gone());
        }
        let mut issued = self
            .start_session(
                Verified { user, device: None },
                pending.remember,
                SECOND_FACTOR_AMR,
                client,
            )
            .await?;
        issued.cookies.0.push(self.cookie_policy().clear_mfa());
        Ok(LoginCompleted {
            issued,
            recovery_codes,
        })
    }

    async fn check_and_start(
        &self,
        username: &str,
        password: &str,
        remember: bool,
        cookies: &BrowserCookies,
        client: &ClientInfo,
    ) -> Result<SignIn, ApiError> {
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
        // So does a login that was waiting for its second factor.
        if let Some(value) = cookies.pending_login.as_deref() {
            self.store()
                .end_pending_login(&pending_login_hash(value))
                .await?;
        }
        let user = &verified.user;
        // A device cookie never skips the second factor: nothing is signed
        // in until it is given, or, where the role requires one and there
        // is none, set up.
        let enrolment = if self.has_second_factor(user.id).await? {
            None
        } else if self.config().accounts.second_factor_required(&user.role) {
            Some(self.pending_or_new_totp(user).await?)
        } else {
            return Ok(SignIn::Issued(
                self.start_session(verified, remember, PASSWORD_AMR, client)
                    .await?,
            ));
        };
        {
            let (value, hash) = pending_login_token();
            self.store()
                .begin_pending_login(
                    &hash,
                    &PendingLogin {
                        user_id: user.id,
                        credentials_version: user.credentials_version,
                        remember,
                        expires_at: self.now() + MFA_LIFETIME,
                        attempts: 0,
                    },
                )
                .await?;
            let cookies = SetCookies(vec![self.cookie_policy().mfa(value)]);
            Ok(match enrolment {
                None => SignIn::SecondFactorRequired(SecondFactorChallenge {
                    factors: FACTORS,
                    enrolment: None,
                    cookies,
                }),
                Some(enrolment) => SignIn::EnrollmentRequired(SecondFactorChallenge {
                    factors: ENROLMENT_FACTORS,
                    enrolment: Some(enrolment),
                    cookies,
                }),
            })
        }
    }

    /// Starts a session for credentials just verified. It is created only if
    /// they are still the user's: a password change or a disable that won
    /// the race since the check leaves this login with `401` and no session.
    async fn start_session(
        &self,
        verified: Verified,
        remember: bool,
        amr: &str,
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
                    amr: amr.to_owned(),
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
        // Usually one; many when the cap was lowered since the last login.
        let detail = format!(
            "more than {} sessions; least recently used ended",
            config.accounts.max_sessions_per_user
        );
        self.each_session_ended(
            RevokeReason::SessionEvicted,
            &created.evicted,
            client,
            |event, evicted| {
                event
                    .user(user.id, &user.username)
                    .session(evicted)
                    .detail(detail.clone())
            },
        )
        .await;
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

/// What a refused login came to, for `latchkey_logins_total` (README,
/// "Metrics").
fn outcome(refusal: &ApiError) -> LoginOutcome {
    match refusal {
        ApiError::InvalidCredentials | ApiError::InvalidCode => LoginOutcome::Failed,
        ApiError::TooManyAttempts { .. } | ApiError::SecondFactorLocked => LoginOutcome::Throttled,
        ApiError::ServerBusy { .. } => LoginOutcome::Busy,
        ApiError::InvalidRequest(_) => LoginOutcome::Invalid,
        _ => LoginOutcome::Error,
    }
}

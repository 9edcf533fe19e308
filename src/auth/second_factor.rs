//! A second factor (README, "Second factor"): TOTP (RFC 6238: SHA-1, six
//! digits, 30-second steps, what every authenticator app reads) with ten
//! single-use recovery codes. Enrolment is pending until a code confirms it;
//! then a correct password alone no longer signs in (`login.rs`), a step-up
//! asks for a code too (`step_up.rs`), and access tokens say which factors
//! a session proved (`amr`).
//!
//! Codes hold under attack: a code is checked only after the attempt is
//! counted (per account, and per pending login), each time step is accepted
//! once (a code cannot be replayed, even at the same instant), and one step
//! of clock skew either way is allowed.

use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

use crate::auth::credentials::throttle;
use crate::auth::metrics::SecondFactorOutcome;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event, LiveToken};
use crate::store::{RevokeReason, User};

/// Seconds per code (RFC 6238 §5.2).
const STEP: u64 = 30;
/// Wrong TOTP codes in a row after which no code is checked (NIST SP
/// 800-63B §5.2.2: at most 100 consecutive failed attempts per account).
const MAX_FAILED_CODES: i64 = 100;
/// Recovery codes issued at once.
const RECOVERY_CODES: usize = 10;
/// The `amr` of a session that proved a password and a second factor
/// (RFC 8176 §2: `otp`, a one-time password; recovery codes are one too).
pub(crate) const SECOND_FACTOR_AMR: &str = "pwd otp";
/// The `amr` values (RFC 8176 §2) that prove a factor beside the password:
/// a one-time password, a hardware or software key.
const SECOND_FACTOR_METHODS: &[&str] = &["otp", "hwk", "swk"];

/// Whether a session's `amr` proves a second factor.
pub(crate) fn proves_second_factor<'a>(mut amr: impl Iterator<Item = &'a str>) -> bool {
    amr.any(|method| SECOND_FACTOR_METHODS.contains(&method))
}

/// What the factors are called in `second_factor_required`'s `factors`.
pub(crate) const FACTORS: &[&str] = &["totp", "recovery_code"];

/// A pending TOTP enrolment, for the user's authenticator app.
#[derive(Clone)]
pub struct TotpEnrolment {
    /// The secret in base32 (RFC 4648, no padding), for typing in.
    pub secret: String,
    /// The `otpauth://totp/…` URI, for a QR code.
    pub otpauth_uri: String,
}

// The secret stays out of logs.
impl std::fmt::Debug for TotpEnrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrolment(…)")
    }
}

/// What proves the second factor.
#[derive(Clone, Copy)]
pub enum SecondFactorProof<'a> {
    /// A code from the authenticator app.
    Code(&'a str),
    /// One of the recovery codes.
    RecoveryCode(&'a str),
}

// The code stays out of `Debug` output.
impl std::fmt::Debug for SecondFactorProof<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Code(_) => "Code(…)",
            Self::RecoveryCode(_) => "RecoveryCode(…)",
        })
    }
}

fn totp(secret: Vec<u8>, username: &str) -> Result<TOTP, ApiError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        STEP,
        secret,
        Some("latchkey".to_owned()),
        username.replace(':', "_"),
    )
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("TOTP: {e}")))
}

/// The time step a six-digit `code` is right for at `now`, allowing one
/// step either side; compared in constant time.
fn matching_step(totp: &TOTP, code: &str, now: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(now).ok()?;
    let current = now / STEP;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = totp.generate(step * STEP);
        let same = expected
            .bytes()
            .zip(code.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0;
        if same && found.is_none() {
            found = i64::try_from(step).ok();
        }
    }
    found
}

/// A recovery code as stored: SHA-256 of the account's id and the code's
/// letters and digits, lower-cased, without dashes. 80 random bits each, so
/// a fast hash is enough (no sweep of 2^80 is), with the id so that no sweep
/// covers two accounts, and no bcrypt queue is spent on them.
fn recovery_hash(user_id: i64, code: &str) -> [u8; 32] {
    let normal: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut hash = Sha256::new();
    hash.update(user_id.to_be_bytes());
    hash.update(normal.as_bytes());
    hash.finalize().into()
}

/// Ten new recovery codes (`xxxx-xxxx-xxxx-xxxx`, base32: 80 bits) and
/// their hashes for `user_id`.
fn recovery_codes(user_id: i64) -> (Vec<String>, Vec<[u8; 32]>) {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let codes: Vec<String> = (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 16];
            #[allow(clippy::expect_used)]
            getrandom::fill(&mut bytes).expect("the operating system's random source failed");
            let letters: String = bytes
                .iter()
                .map(|b| char::from(ALPHABET[usize::from(b % 32)]))
                .collect();
            format!(
                "{}-{}-{}-{}",
                &letters[..4],
                &letters[4..8],
                &letters[8..12],
                &letters[12..]
            )
        })
        .collect();
    let hashes = codes.iter().map(|c| recovery_hash(user_id, c)).collect();
    (codes, hashes)
}

impl Auth {
    /// Starts a TOTP enrolment for the token's account (the caller asks for
    /// a recent password): a new 160-bit secret, pending until
    /// [`Auth::confirm_totp`]. Refused while a confirmed factor is on.
    pub async fn enroll_totp(&self, token: &LiveToken) -> Result<TotpEnrolment, ApiError> {
        let user = self.enabled_account(token).await?;
        self.begin_totp(&user).await
    }

    /// `user`'s pending TOTP enrolment, if one opens; otherwise a new one.
    /// A sign-in that must set a factor up shows the same secret each time,
    /// so two tabs, or an enrolment begun on `/app`, do not undo each other.
    pub(crate) async fn pending_or_new_totp(&self, user: &User) -> Result<TotpEnrolment, ApiError> {
        match self.pending_totp(user).await? {
            Some(enrolment) => Ok(enrolment),
            None => self.begin_totp(user).await,
        }
    }

    /// `user`'s pending (not confirmed) TOTP enrolment, if it opens.
    pub(crate) async fn pending_totp(
        &self,
        user: &User,
    ) -> Result<Option<TotpEnrolment>, ApiError> {
        let factor = self.store().totp_factor(user.id).await?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_none()) else {
            return Ok(None);
        };
        let Some((secret, _)) = self.inner.sealer.open(&factor.secret, user.id) else {
            return Ok(None);
        };
        let totp = totp(secret, &user.username)?;
        Ok(Some(TotpEnrolment {
            secret: totp.get_secret_base32(),
            otpauth_uri: totp.get_url(),
        }))
    }

    /// A new pending TOTP secret for `user`, in place of any pending one.
    pub(crate) async fn begin_totp(&self, user: &User) -> Result<TotpEnrolment, ApiError> {
        let mut secret = vec![0u8; 20];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut secret).expect("the operating system's random source failed");
        let sealed = self.inner.sealer.seal(&secret, user.id);
        if !self
            .store()
            .begin_totp(user.id, &sealed, self.now())
            .await?
        {
            return Err(ApiError::InvalidRequest(
                "a second factor is already on: remove it first".to_owned(),
            ));
        }
        let totp = totp(secret, &user.username)?;
        Ok(TotpEnrolment {
            secret: totp.get_secret_base32(),
            otpauth_uri: totp.get_url(),
        })
    }

    /// Turns the pending TOTP factor on when `code` is right now, and
    /// answers the recovery codes, shown this once (only their hashes are
    /// kept). The account's other sessions end: they were signed in with
    /// the password alone, which no longer signs in.
    pub async fn confirm_totp(
        &self,
        token: &LiveToken,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, ApiError> {
        let user = self.enabled_account(token).await?;
        let codes = self.confirm_pending_totp(&user, code, client).await?;
        let reason = RevokeReason::SecondFactorEnrolled;
        let session = &token.session().id;
        let ended = self
            .store()
            .revoke_user_sessions(user.id, Some(session), reason, self.now())
            .await?;
        if ended > 0 {
            self.sessions_ended(reason, ended, client, |event| {
                event
                    .user(user.id, &user.username)
                    .session(session)
                    .detail(format!("{ended} other sessions"))
            })
            .await;
        }
        Ok(codes)
    }

    /// Confirms `user`'s pending TOTP factor with `code`: the recovery
    /// codes, or `InvalidCode`.
    pub(crate) async fn confirm_pending_totp(
        &self,
        user: &User,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>, ApiError> {
        let factor = self.store().totp_factor(user.id).await?;
        let Some(factor) = factor.filter(|f| f.confirmed_at.is_none()) else {
            return Err(ApiError::InvalidRequest(
                "no enrolment is pending: POST /me/totp first".to_owned(),
            ));
        };
        let counters = throttle::second_factor_counters(&self.config().throttle, user.id);
        self.reserve_attempt(&counters).await?;
        let now = self.now();
        let step = match self.inner.sealer.open(&factor.secret, user.id) {
            Some((secret, _)) => matching_step(&totp(secret, &user.username)?, code, now),
            None => None,
        };
        let (codes, hashes) = recovery_codes(user.id);
        let confirmed = match step {
            // Only over the secret that code was checked against.
            Some(step) => {
                self.store()
                    .confirm_totp(user.id, &factor.secret, step, &hashes, now)
                    .await?
            }
            None => false,
        };
        if !confirmed {
            self.metrics().second_factor(SecondFactorOutcome::Rejected);
            self.record(
                Event::new(AuditKind::SecondFactorFailed, client)
                    .user(user.id, &user.username)
                    .detail("enrolment"),
            )
            .await;
            return Err(ApiError::InvalidCode);
        }
        self.settle_success(&counters).await?;
        self.metrics().second_factor(SecondFactorOutcome::Accepted);
        self.record(
            Event::new(AuditKind::SecondFactorEnrolled, client).user(user.id, &user.username),
        )
        .await;
        Ok(codes)
    }

    /// Removes the token's account's second factor (the caller asks for a
    /// recent authentication that used it). For an account whose role
    /// requires one (`SECOND_FACTOR_REQUIRED_ROLES`), every session ends
    /// too, this one with them: the next sign-in sets a factor up again.
    pub async fn remove_totp(
        &self,
        token: &LiveToken,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let user = self.enabled_account(token).await?;
        if !self.store().remove_second_factor(user.id).await? {
            return Err(ApiError::NotFound);
        }
        self.record(
            Event::new(AuditKind::SecondFactorRemoved, client).user(user.id, &user.username),
        )
        .await;
        if self.config().accounts.second_factor_required(&user.role) {
            let reason = RevokeReason::SecondFactorRequired;
            let ended = self
                .store()
                .revoke_user_sessions(user.id, None, reason, self.now())
                .await?;
            self.sessions_ended(reason, ended, client, |event| {
                event
                    .user(user.id, &user.username)
                    .detail(format!("the factor removed; {ended} sessions"))
            })
            .await;
        }
        Ok(())
    }

    /// New recovery codes in place of the old (the caller asks for a recent
    /// authentication that used the second factor).
    pub async fn new_recovery_codes(&self, token: &LiveToken) -> Result<Vec<String>, ApiError> {
        let user = self.enabled_account(token).await?;
        let (codes, hashes) = recovery_codes(user.id);
        if !self
            .store()
            .replace_recovery_codes(user.id, &hashes)
            .await?
        {
            return Err(ApiError::NotFound);
        }
        Ok(codes)
    }

    /// An operator's reset (`latchkey user reset-second-factor`, a lost
    /// phone): the factor and its codes go, and every session of the user
    /// ends. Returns the sessions ended.
    pub async fn reset_second_factor(&self, user: &User) -> Result<u64, ApiError> {
        self.store().remove_second_factor(user.id).await?;
        let ended = self.revoke_user_sessions(user, None).await?;
        let client = ClientInfo::default();
        self.record(
            Event::new(AuditKind::SecondFactorRemoved, &client)
                .user(user.id, &user.username)
                .detail(format!("by an operator; {ended} sessions ended")),
        )
        .await;
        Ok(ended)
    }

    /// Whether the account has a confirmed second factor.
    pub(crate) async fn has_second_factor(&self, user_id: i64) -> Result<bool, ApiError> {
        Ok(self
            .store()
            .totp_factor(user_id)
            .await?
            .is_some_and(|f| f.confirmed_at.is_some()))
    }

    /// Checks a second factor for `user`: counted before it is checked
    /// (`TooManyAttempts` once the account's allowance is spent), a code
    /// accepted once per time step, a recovery code once. `InvalidCode`
    /// otherwise.
    pub(crate) async fn check_second_factor(
        &self,
        user: &User,
        proof: SecondFactorProof<'_>,
        client: &ClientInfo,
    ) -> Result<(), ApiError> {
        let counters = throttle::second_factor_counters(&self.config().throttle, user.id);
        if let Err(e) = self.reserve_attempt(&counters).await {
            if matches!(e, ApiError::TooManyAttempts { .. }) {
                self.metrics().second_factor(SecondFactorOutcome::Throttled);
            }
            return Err(e);
        }
        let now = self.now();
        let accepted = match proof {
            SecondFactorProof::Code(code) => match self.store().totp_factor(user.id).await? {
                Some(factor) if factor.confirmed_at.is_some() => {
                    if !self
                        .store()
                        .count_totp_code(user.id, MAX_FAILED_CODES)
                        .await?
                    {
                        self.metrics().second_factor(SecondFactorOutcome::Locked);
                        self.record(
                            Event::new(AuditKind::SecondFactorFailed, client)
                                .user(user.id, &user.username)
                                .detail("locked: too many wrong codes in a row"),
                        )
                        .await;
                        return Err(ApiError::SecondFactorLocked);
                    }
                    let opened = self.inner.sealer.open(&factor.secret, user.id);
                    let step = match opened {
                        Some((secret, current)) => {
                            if !current {
                                // Sealed under the previous secret: sealed
                                // again under the current one, so that
                                // dropping the previous loses nothing.
                                let resealed = self.inner.sealer.seal(&secret, user.id);
                                self.store()
                                    .reseal_totp(user.id, &factor.secret, &resealed)
                                    .await?;
                            }
                            matching_step(&totp(secret, &user.username)?, code, now)
                        }
                        None => {
                            tracing::warn!(
                                user_id = user.id,
                                "a TOTP secret opens with no key: JWT_REFRESH_SECRET changed \
                                     without JWT_REFRESH_SECRET_PREVIOUS"
                            );
                            None
                        }
                    };
                    match step {
                        Some(step) => self.store().use_totp_step(user.id, step).await?,
                        None => false,
                    }
                }
                _ => false,
            },
            SecondFactorProof::RecoveryCode(code) => {
                self.store()
                    .use_recovery_code(user.id, &recovery_hash(user.id, code), now)
                    .await?
            }
        };
        let used = match proof {
            SecondFactorProof::Code(_) => "totp",
            SecondFactorProof::RecoveryCode(_) => "recovery_code",
        };
        if !accepted {
            self.metrics().second_factor(SecondFactorOutcome::Rejected);
            self.record(
                Event::new(AuditKind::SecondFactorFailed, client)
                    .user(user.id, &user.username)
                    .detail(used),
            )
            .await;
            return Err(ApiError::InvalidCode);
        }
        self.settle_success(&counters).await?;
        let (kind, outcome) = match proof {
            SecondFactorProof::Code(_) => {
                (AuditKind::SecondFactorUsed, SecondFactorOutcome::Accepted)
            }
            SecondFactorProof::RecoveryCode(_) => (
                AuditKind::RecoveryCodeUsed,
                SecondFactorOutcome::RecoveryCodeAccepted,
            ),
        };
        self.metrics().second_factor(outcome);
        self.record(Event::new(kind, client).user(user.id, &user.username))
            .await;
        Ok(())
    }

    async fn enabled_account(&self, token: &LiveToken) -> Result<User, ApiError> {
        match self.store().user_by_id(token.user_id()).await? {
            Some(user) if user.disabled_at.is_none() => Ok(user),
            _ => Err(ApiError::InvalidToken),
        }
    }
}

/// A pending login's cookie value and the hash the store keeps of it.
pub(crate) fn pending_login_token() -> (String, [u8; 32]) {
    let value = crate::random::token(32);
    let hash = pending_login_hash(&value);
    (value, hash)
}

pub(crate) fn pending_login_hash(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed expectation should panic with its message
mod tests {
    use super::{matching_step, recovery_codes, recovery_hash, totp};

    #[test]
    fn a_code_matches_its_step_and_one_either_side_only() {
        // RFC 6238 Appendix B's SHA-1 secret; six digits of its 59 s vector
        // (94287082) are 287082.
        let totp = totp(b"12345678901234567890".to_vec(), "ann").unwrap();
        assert_eq!(totp.generate(59), "287082");
        assert_eq!(matching_step(&totp, "287082", 59), Some(1));
        assert_eq!(
            matching_step(&totp, "287082", 59 + 30),
            Some(1),
            "one step late"
        );
        assert_eq!(
            matching_step(&totp, "287082", 59 + 60),
            None,
            "two steps late"
        );
        assert_eq!(
            matching_step(&totp, "287 082", 59),
            Some(1),
            "as the form groups it"
        );
        assert_eq!(matching_step(&totp, "28708", 59), None);
        assert_eq!(matching_step(&totp, "abcdef", 59), None);
    }

    #[test]
    fn recovery_codes_are_ten_and_read_in_any_case_with_or_without_the_dashes() {
        let (codes, hashes) = recovery_codes(7);
        assert_eq!(codes.len(), 10);
        assert_eq!(codes[0].len(), 19, "{}", codes[0]);
        assert_eq!(recovery_hash(7, &codes[0]), hashes[0]);
        let typed = codes[0].to_uppercase().replace('-', "");
        assert_eq!(recovery_hash(7, &typed), hashes[0]);
        assert_ne!(recovery_hash(8, &codes[0]), hashes[0], "another account's");
        assert_ne!(hashes[0], hashes[1]);
    }
}

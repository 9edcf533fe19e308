//! Refusals: each variant names an outcome, with the stable code clients
//! match on and the words people read. How each is answered over HTTP (its
//! status, JSON body and headers) is `routes/error.rs`; nothing here names a
//! web framework, so the CLI and embedders match on outcomes, not statuses.

use crate::auth::password::HashError;
use crate::auth::password::policy::Weakness;
use crate::store::StoreError;

/// Declares every refusal in one place: its variant (with its fields), its
/// stable code and its message (a `thiserror` format string over the
/// fields). The enum, `Display`, [`ApiError::code`] and [`ApiError::CODES`]
/// (the OpenAPI enum of codes) all come from here, so a new refusal is one
/// more line below and cannot be half-declared; `routes/error.rs` matches
/// every variant to its status, so a new one does not compile until it has
/// one. Each variant's rustdoc is its doc comment, if any, then its message
/// and code; fields take doc comments as struct fields do.
macro_rules! api_errors {
    ($(
        $(#[$meta:meta])*
        $variant:ident
            $(( $($(#[$field_meta:meta])* $field:ty),+ ))?
            $({ $($(#[$named_meta:meta])* $name:ident: $named:ty),+ })?
        => $code:literal, $message:literal;
    )+) => {
        /// Every refusal the API answers with: a stable code
        /// ([`ApiError::code`]) and a message (its `Display`). Over HTTP it
        /// is a status, a JSON body of the two and for some a header
        /// (README, "Errors").
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum ApiError {
            $(
                $(#[$meta])*
                #[doc = ""]
                #[doc = concat!(
                    "\"", $message, "\" (code `", $code, "`)."
                )]
                #[error($message)]
                $variant
                    $(( $($(#[$field_meta])* $field),+ ))?
                    $({ $($(#[$named_meta])* $name: $named),+ })?,
            )+
        }

        impl ApiError {
            /// Every variant's [`ApiError::code`], in declaration order (a
            /// code two variants share appears twice).
            pub const CODES: &[&str] = &[$($code),+];

            /// The stable, machine-readable code: the JSON body's `error`.
            pub fn code(&self) -> &'static str {
                match self {
                    $(Self::$variant { .. } => $code,)+
                }
            }
        }
    };
}

api_errors! {
    /// A malformed request, or a field that breaks its rules.
    InvalidRequest(
        /// What is wrong with it: the message.
        String
    ) => "invalid_request", "{0}";
    InvalidCredentials => "invalid_credentials", "invalid username or password";
    /// The password was right and the account has a second factor: the
    /// login goes on at `POST /login/second-factor` (README, "Second
    /// factor"); a step-up asks for a code beside the password.
    SecondFactorRequired => "second_factor_required",
        "the account has a second factor: give a code";
    /// The password was right, but the account's role requires a second
    /// factor (`SECOND_FACTOR_REQUIRED_ROLES`) and it has none: it is set up
    /// before anything is signed in, at `POST /login/second-factor` with a
    /// code of the secret this answer gives (README, "Second factor").
    SecondFactorEnrollmentRequired => "second_factor_enrollment_required",
        "your role requires a second factor: set one up to sign in";
    /// A second factor that is wrong, already used, or for a pending login
    /// that is gone (expired, or out of attempts: sign in again).
    InvalidCode => "invalid_code", "the code is wrong or used, or the sign-in has expired";
    /// 100 wrong TOTP codes in a row for the account (NIST SP 800-63B
    /// §5.2.2): codes are no longer checked. A recovery code still works;
    /// after it, remove the factor and set it up again, or an operator
    /// resets it (README, "Second factor").
    SecondFactorLocked => "second_factor_locked",
        "too many wrong codes: use a recovery code, or ask for the second factor to be reset";
    WrongCurrentPassword => "wrong_current_password", "the current password is wrong";
    HeadersTooLarge => "headers_too_large",
        "request headers are too large";
    TooManyAttempts {
        /// Seconds until the next attempt may go ahead (`Retry-After`).
        retry_after: i64
    } => "too_many_attempts", "too many attempts; try again later";
    MissingRefreshToken => "missing_refresh_token", "no refresh token was sent";
    InvalidRefreshToken => "invalid_refresh_token",
        "the refresh token is invalid or expired";
    RefreshTokenReused => "refresh_token_reused",
        "the refresh token was already used; the session has been revoked";
    ForbiddenOrigin => "forbidden_origin", "requests from this origin are not allowed";
    /// No access token was sent (RFC 6750 §3.1: no error code in the challenge).
    Unauthenticated => "unauthenticated", "an access token is required";
    /// Its code and message are also the challenge's `error` and
    /// `error_description` (RFC 6750 §3).
    InvalidToken => "invalid_token", "the access token is invalid or expired";
    /// The action needs a password checked more recently than the token's
    /// `auth_time` (RFC 9470 §3), or one checked with a second factor:
    /// `POST /reauthenticate`, then try again. Its code and message are also
    /// the challenge's `error` and `error_description`.
    InsufficientUserAuthentication {
        /// The most seconds since the password check that the action accepts
        /// (the challenge's `max_age`).
        max_age: i64,
        /// Whether the action needs a second factor as well (the
        /// challenge's `acr_values="mfa"`; README, "Second factor").
        second_factor: bool
    } => "insufficient_user_authentication",
        "this action needs your password again: reauthenticate and retry";
    /// A mailed link's token (a password reset, an address to verify) that
    /// is unknown, used or expired: one answer for all three (README,
    /// "Account recovery"). It shares its code with
    /// [`ApiError::InvalidToken`], as the API names it; the status (`400`,
    /// not `401`) tells the two apart.
    InvalidLink => "invalid_token", "the link is invalid, used or expired";
    NotFound => "not_found", "not found";
    MethodNotAllowed => "method_not_allowed", "method not allowed";
    UsernameTaken => "username_taken", "that username is taken";
    /// A new password that breaks the rules of `auth/password/policy.rs`;
    /// the message says which.
    WeakPassword(
        /// The rule broken: the message.
        Weakness
    ) => "weak_password", "{0}";
    RegistrationClosed => "registration_closed", "registration is closed";
    PayloadTooLarge => "payload_too_large", "the request body is too large";
    UnsupportedMediaType => "unsupported_media_type",
        "expected a JSON or form-encoded body";
    /// The body, or the answer, took longer than `REQUEST_TIMEOUT`.
    RequestTimeout => "request_timeout", "the request took too long";
    /// The database does not answer (README, "When the database goes
    /// away"): try again after `Retry-After`.
    Unavailable => "unavailable", "the store is unavailable";
    /// A shutdown has begun: `/readyz` asks load balancers to stop sending.
    ShuttingDown => "shutting_down", "the service is shutting down";
    /// Too much password checking in flight (README, "Limits under attack").
    ServerBusy {
        /// Seconds to wait before trying again (`Retry-After`).
        retry_after: i64
    } => "server_busy", "the server is busy; try again shortly";
    Internal(
        /// The cause, logged and never sent.
        #[source] anyhow::Error
    ) => "internal_error", "internal error";
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => Self::UsernameTaken,
            StoreError::Unavailable(_) => Self::Unavailable,
            StoreError::Database(cause) => Self::Internal(cause.into()),
            // A kind of failure this version does not know: not the client's.
            #[allow(unreachable_patterns)]
            _ => Self::Internal(anyhow::anyhow!("{e}")),
        }
    }
}

/// A failed password hash or check: a full hashing queue is `503
/// server_busy`, anything else is internal.
impl From<HashError> for ApiError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::ServerBusy { retry_after: 1 },
            HashError::Failed(cause) => Self::Internal(cause),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::ApiError;
    use crate::auth::password::policy::Weakness;

    /// `api_errors!` gives every variant a code; what it cannot stop is two
    /// variants sharing one, or a code clients could not match on plainly.
    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = HashSet::new();
        for code in ApiError::CODES {
            // The one code the API gives two refusals: an access token's
            // (`401`) and a mailed link's (`400`).
            let shared = *code == ApiError::InvalidLink.code();
            assert!(seen.insert(code) || shared, "{code} is declared twice");
            let snake = code
                .split('_')
                .all(|word| !word.is_empty() && word.bytes().all(|b| b.is_ascii_lowercase()));
            assert!(snake, "{code} is not snake_case");
        }
    }

    #[test]
    fn a_weak_password_says_why_under_one_code() {
        for reason in [Weakness::TooShort, Weakness::TooLong, Weakness::TooCommon] {
            let error = ApiError::WeakPassword(reason);
            assert_eq!(error.code(), "weak_password");
            assert_eq!(error.to_string(), reason.message());
        }
    }
}

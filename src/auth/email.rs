//! Email addresses on accounts (README, "Email addresses"): the one rule for
//! which addresses are accepted and how they are compared, and setting one on
//! an account.

use email_address::{EmailAddress, Options};

use crate::auth::{ApiError, Auth};
use crate::store::{StoreError, User};

/// The longest address accepted: the most a forward path carries
/// (RFC 5321 §4.5.3.1.3, 256 octets with its angle brackets).
pub const MAX_EMAIL_CHARS: usize = 254;

/// The address as stored and compared: lower-cased whole, once it is an
/// address mail can be sent to. Parsed by `email_address` (RFC 5322's
/// addr-spec) without a display name or an IP-literal domain, and with a
/// dot in the domain; ASCII only, since a relay without SMTPUTF8 could not
/// deliver to anything else; and no quoted local part (`"ann"@example.com`
/// is `ann@example.com` written another way, so two accounts could hold one
/// mailbox). Mailboxes whose local part differs only in case are one address
/// here, as every common mail provider treats them.
pub fn normalize_email(raw: &str) -> Result<String, ApiError> {
    let address = raw.trim();
    let options = Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    let valid = address.len() <= MAX_EMAIL_CHARS
        && address.is_ascii()
        && !address.contains('"')
        && EmailAddress::parse_with_options(address, options).is_ok();
    if valid {
        Ok(address.to_ascii_lowercase())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "an email address is `name@domain.tld`, in ASCII, at most {MAX_EMAIL_CHARS} characters"
        )))
    }
}

impl Auth {
    /// Sets `user`'s email address, as `latchkey user set-email` does: an
    /// operator's word stands for verification when `verified` is set. An
    /// address verified on another account is refused.
    pub async fn set_email(
        &self,
        user: &User,
        address: &str,
        verified: bool,
    ) -> Result<User, ApiError> {
        let email = normalize_email(address)?;
        // Verified, an address signs in before a username does: one that is
        // another account's username would take that account's logins.
        if verified
            && let Some(other) = self.store().user_by_name(&email).await?
            && other.id != user.id
        {
            return Err(ApiError::InvalidRequest(
                "that email address is another account's username".to_owned(),
            ));
        }
        match self
            .store()
            .set_email(user.id, Some(&email), verified, self.now())
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(ApiError::NotFound),
            Err(StoreError::EmailTaken) => {
                return Err(ApiError::InvalidRequest(
                    "that email address is verified on another account".to_owned(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        self.store()
            .user_by_id(user.id)
            .await?
            .ok_or(ApiError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_email;

    #[test]
    fn addresses_are_parsed_strictly_and_lower_cased() {
        for (raw, stored) in [
            ("Ann@Example.COM", "ann@example.com"),
            ("  ann+tag@mail.example.org ", "ann+tag@mail.example.org"),
        ] {
            assert_eq!(normalize_email(raw).ok().as_deref(), Some(stored), "{raw}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "ann",
            "ann@localhost",
            "ann@[127.0.0.1]",
            "Ann <ann@example.com>",
            "ann@example..com",
            "ann.@example.com",
            "ann@-example.com",
            "ü@example.com",
            "ann@exämple.com",
            "\"ann\"@example.com",
            long.as_str(),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
    }
}

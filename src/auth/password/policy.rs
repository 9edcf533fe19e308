//! The rules a new password must meet (NIST SP 800-63B §3.1.1.2; README
//! "Passwords and login"): 8 to 256 Unicode code points of any script, counted
//! after NFKC normalisation (and as sent), and not one of the 10,000 most
//! common passwords.
//! Also the normalisation itself, which hashing and verifying share, so that
//! the same password typed as different code points opens the same account.

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use unicode_normalization::UnicodeNormalization;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 256;

/// The 10,000 most common passwords, lower-cased and already NFKC-normalised
/// (`data/README.md` says where they come from; a unit test below holds the
/// file to that form, so lookups need no work on the list's side).
const COMMON_PASSWORDS: &str = include_str!("../../../data/common-passwords.txt");

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS.lines().collect());

/// Why a new password is refused; its text is the `message` of
/// `422 weak_password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Each reads as the sentence it stands for: "too short", "too common".
#[allow(clippy::enum_variant_names)]
#[non_exhaustive]
pub enum Weakness {
    /// Fewer than 8 code points, as sent or after NFKC.
    TooShort,
    /// More than 256 code points, as sent or after NFKC.
    TooLong,
    /// On the list of the most common passwords.
    TooCommon,
}

impl Weakness {
    /// The words the refusal carries.
    pub fn message(self) -> &'static str {
        match self {
            Self::TooShort => "passwords must be at least 8 characters long",
            Self::TooLong => "passwords must be at most 256 characters long",
            Self::TooCommon => "that password is one of the most common ones; choose another",
        }
    }
}

impl fmt::Display for Weakness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A password in NFKC form: what is counted, compared with the common list,
/// and hashed. Its `Debug` never shows the text, so it cannot reach a log
/// through a `?` field or an error's context.
pub struct NormalizedPassword(String);

impl NormalizedPassword {
    pub fn new(password: &str) -> Self {
        Self(password.nfkc().collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Code points, as NIST SP 800-63B counts characters.
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl fmt::Debug for NormalizedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NormalizedPassword([redacted])")
    }
}

/// Checks a new password (sign-up, password change, `latchkey user add`).
/// The length holds both after NFKC and as sent: NFKC can lengthen a
/// password (a ligature becomes two letters) or shorten it (`e` + a combining
/// accent becomes `é`), and the OpenAPI description's `minLength` and
/// `maxLength`, which count code points as sent, must never be looser than
/// what is accepted.
pub fn check(password: &str) -> Result<(), Weakness> {
    let normalized = NormalizedPassword::new(password);
    let shortest = normalized.chars().min(password.chars().count());
    let longest = normalized.chars().max(password.chars().count());
    if shortest < MIN_PASSWORD_CHARS {
        Err(Weakness::TooShort)
    } else if longest > MAX_PASSWORD_CHARS {
        Err(Weakness::TooLong)
    } else if is_common(&normalized) {
        Err(Weakness::TooCommon)
    } else {
        Ok(())
    }
}

/// True when `password` could have been accepted by [`check`] for its
/// length: at login, a longer one cannot be anyone's password.
pub fn within_max_length(password: &str) -> bool {
    NormalizedPassword::new(password).chars() <= MAX_PASSWORD_CHARS
}

/// Compared case-insensitively: `Password1` is as common as `password1`.
fn is_common(password: &NormalizedPassword) -> bool {
    COMMON.contains(password.as_str().to_lowercase().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_list_is_lower_cased_nfkc_without_blanks_or_duplicates() {
        let lines: Vec<&str> = COMMON_PASSWORDS.lines().collect();
        assert_eq!(lines.len(), 10_000);
        assert_eq!(COMMON.len(), lines.len(), "duplicates");
        for line in lines {
            assert!(!line.trim().is_empty(), "a blank line");
            assert_eq!(line.trim(), line, "{line:?} has spaces around it");
            let canonical = NormalizedPassword::new(line).as_str().to_lowercase();
            assert_eq!(canonical, line, "{line:?} is not lower-cased NFKC");
        }
    }

    #[test]
    fn well_known_passwords_are_common_in_any_case() {
        for password in [
            "password",
            "12345678",
            "qwertyuiop",
            "password1",
            "PassWord1",
            "QWERTYUIOP",
        ] {
            assert_eq!(check(password), Err(Weakness::TooCommon), "{password}");
        }
    }

    #[test]
    fn lengths_are_code_points_after_nfkc() {
        // Two emoji: 8 bytes, 2 code points.
        assert_eq!(check("😀😀"), Err(Weakness::TooShort));
        // Eight `e` + combining acute (16 code points) compose to eight `é`;
        // four of them are 8 code points as sent, but 4 after NFKC.
        assert_eq!(check(&"e\u{301}".repeat(8)), Ok(()));
        assert_eq!(check(&"e\u{301}".repeat(4)), Err(Weakness::TooShort));
        // U+FB01 (the `fi` ligature) is two code points under NFKC.
        assert_eq!(check(&"\u{fb01}".repeat(129)), Err(Weakness::TooLong));
        assert_eq!(check(&"\u{fb01}".repeat(128)), Ok(()));
        assert!(within_max_length(&"\u{fb01}".repeat(128)));
        assert!(!within_max_length(&"\u{fb01}".repeat(129)));
    }

    #[test]
    fn what_the_openapi_bounds_refuse_as_sent_is_refused_whatever_nfkc_makes_of_it() {
        // Seven ligatures are 14 letters after NFKC, but 7 characters as sent.
        assert_eq!(check(&"\u{fb01}".repeat(7)), Err(Weakness::TooShort));
        // 257 code points as sent that compose to 129 after NFKC.
        let composed = format!("{}x", "e\u{301}".repeat(128));
        assert_eq!(composed.chars().count(), 257);
        assert_eq!(check(&composed), Err(Weakness::TooLong));
        // At login only the NFKC count matters: that is what was stored.
        assert!(within_max_length(&composed));
    }

    #[test]
    fn a_normalized_password_does_not_show_itself_in_debug() {
        let shown = format!("{:?}", NormalizedPassword::new("correct horse battery"));
        assert!(!shown.contains("horse"), "{shown}");
    }
}

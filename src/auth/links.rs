//! The tokens in mailed links (README, "Account recovery").
//!
//! A token is a random id (128 bits) followed by an HMAC-SHA256 of that id
//! under a key derived from `JWT_REFRESH_SECRET`. The store keeps the id and
//! the token's SHA-256, never the token: a copy of the database rebuilds no
//! link, and neither does the mail queue, which holds the id alone. The mail
//! worker, which has the key, rebuilds the token as it sends. A changed
//! `JWT_REFRESH_SECRET` therefore ends every link not yet sent.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// What the key is derived for: no other use of the secret meets it.
const PURPOSE: &[u8] = b"latchkey mail link tokens v1";

/// The id's length in a token: 16 random bytes in base64url.
const ID_CHARS: usize = 22;

/// The key links are made with.
#[derive(Clone)]
pub(crate) struct LinkKey([u8; 32]);

// Never printed.
impl std::fmt::Debug for LinkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkKey(…)")
    }
}

/// A new link: the id the store keeps, the token the mail carries, and the
/// hash the store keeps of it.
pub(crate) struct NewToken {
    pub(crate) id: String,
    pub(crate) hash: [u8; 32],
}

impl LinkKey {
    pub(crate) fn new(secret: &Secret) -> Self {
        Self(mac(secret.expose(), PURPOSE))
    }

    /// A keyed tag of `value` (an address), to name it in a throttle key
    /// without writing it down: the counters hold no address in clear.
    pub(crate) fn tag(&self, value: &str) -> String {
        let mut tagged = b"tag:".to_vec();
        tagged.extend_from_slice(value.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac(&self.0, &tagged)[..16])
    }

    /// A new link's id and the hash of its token.
    pub(crate) fn issue(&self) -> NewToken {
        let id = crate::random::token(16);
        let hash = hash(&self.token(&id));
        NewToken { id, hash }
    }

    /// Whether `token` is one this key made: its tail is the HMAC of its
    /// id, compared in constant time. A made-up token, or one made under a
    /// secret since changed, fails here before anything is looked up.
    pub(crate) fn genuine(&self, token: &str) -> bool {
        let Some((id, tag)) = token.split_at_checked(ID_CHARS) else {
            return false;
        };
        let Ok(tag) = URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(id.as_bytes());
        mac.verify_slice(&tag).is_ok()
    }

    /// The token of the link `id`.
    pub(crate) fn token(&self, id: &str) -> String {
        format!(
            "{id}{}",
            URL_SAFE_NO_PAD.encode(mac(&self.0, id.as_bytes()))
        )
    }
}

/// What the store looks a presented token up by.
pub(crate) fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::{LinkKey, hash};
    use crate::config::Secret;

    #[test]
    fn a_token_is_rebuilt_from_its_id_only_with_the_key() {
        let key = LinkKey::new(&Secret::new("a-secret-of-enough-length-0123456789"));
        let issued = key.issue();
        let token = key.token(&issued.id);
        assert_eq!(hash(&token), issued.hash);
        assert!(token.starts_with(&issued.id) && token.len() == 22 + 43);
        let other = LinkKey::new(&Secret::new("another-secret-of-enough-length-0123"));
        assert_ne!(other.token(&issued.id), token);
        assert!(key.genuine(&token));
        assert!(!other.genuine(&token), "made under another secret");
        let mut forged = token.clone();
        forged.replace_range(30..31, if &token[30..31] == "A" { "B" } else { "A" });
        assert!(!key.genuine(&forged));
        assert!(!key.genuine("short") && !key.genuine(""));
    }
}

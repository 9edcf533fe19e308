//! Secrets at rest (README, "Second factor"): a TOTP secret is sealed with
//! XChaCha20-Poly1305 before it reaches the store, so a copy of the database
//! gives no working secret. The key is derived from `JWT_REFRESH_SECRET`;
//! each sealed value names its key by a short id (its version), so values
//! sealed under `JWT_REFRESH_SECRET_PREVIOUS` still open during a rotation,
//! and are sealed again under the current key when next used.
//!
//! Layout: `1` (format), the key's id (4 bytes), a random nonce (24 bytes),
//! the ciphertext with its tag.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// What the key is derived for: no other use of the secret meets it.
const PURPOSE: &[u8] = b"latchkey second factor secrets v1";
const FORMAT: u8 = 1;
const NONCE: usize = 24;

struct Key {
    id: [u8; 4],
    cipher: XChaCha20Poly1305,
}

/// The keys secrets are sealed and opened with.
pub(crate) struct Sealer {
    current: Key,
    previous: Option<Key>,
}

// Never printed.
impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

fn mac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl Key {
    fn derive(secret: &Secret) -> Self {
        let key = mac(secret.expose(), PURPOSE);
        let tag = mac(&key, b"key id");
        Self {
            id: [tag[0], tag[1], tag[2], tag[3]],
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }
}

impl Sealer {
    pub(crate) fn new(secret: &Secret, previous: Option<&Secret>) -> Self {
        Self {
            current: Key::derive(secret),
            previous: previous.map(Key::derive),
        }
    }

    /// `plain`, sealed under the current key for `owner` (its associated
    /// data: a sealed value copied into another account's row opens no more).
    pub(crate) fn seal(&self, plain: &[u8], owner: i64) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        #[allow(clippy::expect_used)]
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let payload = Payload {
            msg: plain,
            aad: &owner.to_be_bytes(),
        };
        let sealed = match self.current.cipher.encrypt(&XNonce::from(nonce), payload) {
            Ok(sealed) => sealed,
            Err(_) => unreachable!("encryption of a short secret cannot fail"),
        };
        let mut out = Vec::with_capacity(1 + 4 + NONCE + sealed.len());
        out.push(FORMAT);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// What `sealed` holds, and whether it was sealed under the current key;
    /// `None` when no key of ours sealed it for `owner`, or it was changed.
    pub(crate) fn open(&self, sealed: &[u8], owner: i64) -> Option<(Vec<u8>, bool)> {
        if sealed.len() < 1 + 4 + NONCE || sealed[0] != FORMAT {
            return None;
        }
        let (id, rest) = sealed[1..].split_at(4);
        let (nonce, body) = rest.split_at(NONCE);
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.id == id)?;
        let nonce: [u8; NONCE] = nonce.try_into().ok()?;
        let plain = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: body,
                    aad: &owner.to_be_bytes(),
                },
            )
            .ok()?;
        Some((plain, std::ptr::eq(key, &self.current)))
    }
}

#[cfg(test)]
mod tests {
    use super::Sealer;
    use crate::config::Secret;

    #[test]
    fn a_sealed_secret_opens_with_its_key_only_and_says_which() {
        let old = Secret::new("the-old-refresh-secret-0123456789abcdef");
        let new = Secret::new("the-new-refresh-secret-0123456789abcdef");
        let secret = b"twenty bytes secret!".to_vec();
        let before = Sealer::new(&old, None);
        let sealed = before.seal(&secret, 7);
        assert!(!sealed.windows(20).any(|w| w == secret.as_slice()));
        assert_eq!(before.open(&sealed, 7), Some((secret.clone(), true)));
        assert_eq!(before.open(&sealed, 8), None, "another account's row");
        let rotating = Sealer::new(&new, Some(&old));
        assert_eq!(rotating.open(&sealed, 7), Some((secret.clone(), false)));
        assert_eq!(Sealer::new(&new, None).open(&sealed, 7), None);
        let mut changed = sealed.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        assert_eq!(before.open(&changed, 7), None);
    }
}

//! Secure random values: session ids, token ids and generated secrets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `bytes` bytes from the operating system's CSPRNG, base64url without padding.
///
/// Panics only if the OS cannot provide randomness, in which case no secure
/// id can be made and carrying on would be worse.
pub fn token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    #[allow(clippy::expect_used)]
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    URL_SAFE_NO_PAD.encode(buf)
}

/// A session id: 256 random bits (README, "Tokens").
pub fn session_id() -> String {
    token(32)
}

/// A device cookie's id: 128 bits.
pub fn device_id() -> String {
    token(16)
}

//! The tests' own RFC 6238, written from the RFC: codes that latchkey's
//! TOTP crate did not compute, so a bug the two shared could not pass.

use hmac::{Hmac, Mac};

/// RFC 4648 base32 without padding, as the enrolment answers the secret.
pub fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = 0u64;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').chars() {
        let value = ALPHABET.find(c.to_ascii_uppercase()).expect("base32") as u64;
        bits = (bits << 5) | value;
        count += 5;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}

/// RFC 6238 (HMAC-SHA-1, six digits, 30-second steps) at `unix`, written
/// here from the RFC.
pub fn totp_code(secret_base32: &str, unix: i64) -> String {
    let key = base32_decode(secret_base32);
    let counter = (unix / 30) as u64;
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[19] & 0x0f);
    let binary = (u32::from(hash[offset] & 0x7f) << 24)
        | (u32::from(hash[offset + 1]) << 16)
        | (u32::from(hash[offset + 2]) << 8)
        | u32::from(hash[offset + 3]);
    format!("{:06}", binary % 1_000_000)
}

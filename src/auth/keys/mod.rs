//! Key material: what tokens are signed and checked with (`key_set.rs`), the
//! tokens themselves (`tokens.rs`: access and refresh tokens, device cookies)
//! and the asymmetric keys' ring in the store, with its life, rotation and
//! revocation (`ring.rs`; README, "Signing keys").

pub(crate) mod key_set;
pub(crate) mod ring;
pub(crate) mod tokens;

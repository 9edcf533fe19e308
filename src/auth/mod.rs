//! Authentication: passwords, tokens, the refresh cookie, the session
//! lifecycle, and the checks a request passes before a handler runs.

pub mod admission;
pub mod cookies;
pub mod credentials;
pub mod extract;
pub mod forwarded;
mod hash_pool;
pub mod origin;
pub mod password;
pub mod password_policy;
pub mod session;
pub mod throttle;
pub mod tokens;

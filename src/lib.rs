//! latchkey: a session backend for browsers. Short-lived JWT access tokens in
//! JSON, a rotating refresh token in an `HttpOnly` cookie, reuse detection
//! (README, "The HTTP contract").
//!
//! The public API is small (README, "Public API"):
//! - [`Config`] reads the settings; [`Auth`] is the service, with every flow
//!   as a method; [`router`] serves it over HTTP, nestable under any prefix;
//!   [`metrics_router`] serves its metrics; [`run`] and [`run_on`] do
//!   everything the `latchkey` binary does.
//! - [`Authenticated`], `Option<Authenticated>`, [`LiveSession`] and
//!   [`RecentAuthentication`] protect an application's own routes, with any
//!   state that gives an [`Auth`] through `FromRef` (README, "Embedding").
//! - [`store`] and [`clock`] are the seams: where latchkey keeps its rows,
//!   and where "now" comes from.

#![warn(missing_docs)]

mod auth;
/// The `latchkey` command, for `main.rs`; not part of the API.
#[doc(hidden)]
pub mod cli;
pub mod clock;
pub mod config;
mod dev_secrets;
mod mail;
mod random;
mod routes;
mod run;
mod server;
pub mod store;
mod tls;

pub use auth::metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use auth::{
    AccessClaims, ApiError, AuditKind, Auth, BrowserCookies, ClientInfo, Event, Issued, KeyInfo,
    KeyRevocation, KeyRotation, KeyState, LiveToken, LoginCompleted, Presented, PublicJwk, Refused,
    SecondFactorChallenge, SecondFactorProof, SetCookies, SignIn, TotpEnrolment, Weakness,
};
pub use config::Config;
pub use config::ServeLimits;
pub use routes::extract::{Authenticated, LiveSession, RecentAuthentication};
pub use routes::metrics::metrics_router;
pub use routes::router;
pub use run::{run, run_on, serve};
pub use tls::{Tls, TlsError};

/// Hooks for latchkey's own tests and benchmarks; not part of the API.
#[doc(hidden)]
pub mod testing {
    pub use crate::auth::housekeeping::{BATCH, Swept};
    pub use crate::auth::keys::key_set::KeySet;
    pub use crate::auth::keys::tokens::TokenKeys;
    pub use crate::auth::password::{Hasher, HoldGuard};
    pub use crate::random::token;
    pub use crate::server::fit_open_file_limit;
}

//! One integration-test binary (one link step); each module covers one area.

// A failed expectation in a test should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod helpers;

/// The behaviour suite: endpoints, rotation, tokens, bad input. Stamped once
/// per store (as tower-sessions' `route_tests!`), so `sqlite::rotation::…` and
/// `postgres::rotation::…` are the same tests; `test_app!` in them opens the
/// store of the module that stamped them.
macro_rules! store_suite {
    () => {
        #[path = "accounts.rs"]
        mod accounts;
        #[path = "attack.rs"]
        mod attack;
        #[path = "bad_input.rs"]
        mod bad_input;
        #[path = "email.rs"]
        mod email;
        #[path = "endpoints/mod.rs"]
        mod endpoints;
        #[path = "housekeeping.rs"]
        mod housekeeping;
        #[path = "login.rs"]
        mod login;
        #[path = "metrics.rs"]
        mod metrics;
        #[path = "model.rs"]
        mod model;
        #[path = "passwords.rs"]
        mod passwords;
        #[path = "proxies.rs"]
        mod proxies;
        #[path = "recovery.rs"]
        mod recovery;
        #[path = "rotation.rs"]
        mod rotation;
        #[path = "second_factor.rs"]
        mod second_factor;
        #[path = "session_controls.rs"]
        mod session_controls;
        #[path = "signing_keys.rs"]
        mod signing_keys;
        #[path = "tokens.rs"]
        mod tokens;
    };
}

mod postgres;
mod sqlite;

// Once, not per store: configuration parsing and development secrets (SQLite
// file), the log canary (reads SQLite's files), and the browser.
mod browser;
mod config;
mod embedding;
mod layout;
mod logs;
// Mail through a real SMTP server (aiosmtpd), and the development outbox.
mod mail;
mod openapi;
mod outage;

// Another service checking latchkey's access tokens against its published
// keys; no store.
mod resource_server;

// Several instances on one database, and SIGKILL in mid-rotation (both stores).
mod connections;
mod crash;
mod instances;
mod shutdown;

// HTTPS on BIND: in this process and in the binary (SIGHUP).
mod tls;

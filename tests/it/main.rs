//! One integration-test binary (one link step); each module covers one area.

// A failed expectation in a test should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod bad_input;
mod browser;
mod config;
mod endpoints;
mod login;
mod logs;
mod rotation;
mod tokens;

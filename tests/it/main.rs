//! One integration-test binary (one link step); each module covers one area.

mod helpers;

mod login;

//! The behaviour suite on SQLite: each test has its own database file.

// The suite's files are loaded once per store, on purpose.
#![allow(clippy::duplicate_mod)]

use crate::helpers::StoreKind;

const STORE: StoreKind = StoreKind::Sqlite;

store_suite!();

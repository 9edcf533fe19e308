//! The behaviour suite on PostgreSQL: each test has a fresh database on the
//! server of `TEST_DATABASE_URL`, dropped when it ends. Without that variable
//! these tests skip with a notice, except under `CI=true`, where they fail.

// The suite's files are loaded once per store, on purpose.
#![allow(clippy::duplicate_mod)]

use crate::helpers::StoreKind;

const STORE: StoreKind = StoreKind::Postgres;

store_suite!();

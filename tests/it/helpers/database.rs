//! A fresh PostgreSQL database per test, created on the server named by
//! `TEST_DATABASE_URL` and dropped when the test ends (pass or panic).
//!
//! Without `TEST_DATABASE_URL` the PostgreSQL tests skip with a notice, except
//! under `CI=true`, where skipping them would hide a broken setup: there a
//! missing URL fails the test.

use std::io::Write;
use std::sync::{Arc, LazyLock, Once};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Test databases alive at once. Each test's pool may open up to 10
/// connections; this keeps a machine with many cores (as many test threads)
/// under the server's default `max_connections` of 100.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(6)));

/// One test's database; dropping it drops the database.
pub struct TestDatabase {
    /// `DATABASE_URL` for latchkey: the server of `TEST_DATABASE_URL`, this database.
    pub url: String,
    admin_url: String,
    name: String,
    _slot: OwnedSemaphorePermit,
}

impl TestDatabase {
    /// Creates `latchkey_test_<random>`, or returns `None` (after a notice)
    /// when no server is configured outside CI.
    pub async fn create() -> Option<Self> {
        let Some(admin_url) = std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|url| !url.trim().is_empty())
        else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "CI=true but TEST_DATABASE_URL is not set: the PostgreSQL tests must run in CI \
                 (.ci/run sets it to postgres://postgres@127.0.0.1:5432/test)"
            );
            skip_notice();
            return None;
        };
        let slot = SLOTS.clone().acquire_owned().await.expect("semaphore open");
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random bytes");
        let suffix: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("latchkey_test_{suffix}");

        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL: cannot connect: {e}"));
        admin
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        let _ = admin.close().await;
        Some(Self {
            url: with_database(&admin_url, &name),
            admin_url,
            name,
            _slot: slot,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs on the test's runtime, which cannot wait on itself: a
        // thread with a runtime of its own drops the database, and is waited
        // for. FORCE ends the connections the test's pools still hold.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                admin
                    .execute(AssertSqlSafe(sql))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok(())
            })
        })
        .join();
        // Never panic here: a panic while the test is already unwinding aborts.
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: test database {} not dropped: {e}", self.name),
            Err(_) => eprintln!("warning: test database {} not dropped", self.name),
        }
    }
}

/// One line per run on the real stderr (test output is captured, so a line
/// per test would only show with `--nocapture`), and one per skipped test.
fn skip_notice() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(
            std::io::stderr(),
            "notice: TEST_DATABASE_URL is not set: the PostgreSQL tests are skipped \
             (e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test)"
        );
    });
    eprintln!("notice: skipping a PostgreSQL test: TEST_DATABASE_URL is not set");
}

/// `url` with its database replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

//! Throttle counters on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::throttle::throttle_delay;
use crate::store::{Allowance, OrDatabase, Reservation, StoreResult, Throttles};

#[async_trait]
impl Throttles for PostgresStore {
    /// One transaction: each upsert locks its counter's row, so a concurrent
    /// reservation on any instance waits for this one to commit and then sees
    /// its count and back-off (`ON CONFLICT DO UPDATE` re-reads the newest
    /// row version). Counters are taken in one order (the caller sorts them),
    /// so two reservations never deadlock.
    async fn throttle_reserve(
        &self,
        counters: &[Allowance],
        now: i64,
        window: i64,
        max_delay: i64,
    ) -> StoreResult<Reservation> {
        let mut tx = self.pool.begin().await.db()?;
        for c in counters {
            // No row comes back while the counter is in its back-off.
            let count: Option<i64> = sqlx::query_scalar(
                "INSERT INTO throttle (key, failures, blocked_until, updated_at) \
                 VALUES ($1, 1, 0, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN throttle.updated_at < $2 - $3 THEN 1 \
                         ELSE throttle.failures + 1 END, \
                     updated_at = $2 \
                 WHERE throttle.blocked_until <= $2 \
                 RETURNING failures",
            )
            .bind(&c.key)
            .bind(now)
            .bind(window)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
            let Some(count) = count else {
                let until: i64 =
                    sqlx::query_scalar("SELECT blocked_until FROM throttle WHERE key = $1")
                        .bind(&c.key)
                        .fetch_one(&mut *tx)
                        .await
                        .db()?;
                // Dropping the transaction rolls back what was counted so far.
                return Ok(Reservation::Refused { until });
            };
            if let Some(delay) = throttle_delay(count, c.free, max_delay) {
                sqlx::query("UPDATE throttle SET blocked_until = $1 WHERE key = $2")
                    .bind(now + delay)
                    .bind(&c.key)
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
        }
        tx.commit().await.db()?;
        Ok(Reservation::Granted)
    }

    async fn quota_take(
        &self,
        keys: &[&str],
        limit: i64,
        now: i64,
        window: i64,
    ) -> StoreResult<Reservation> {
        // In key order, as every transaction here takes its rows: no deadlock.
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        let mut tx = self.pool.begin().await.db()?;
        for key in keys {
            // No row comes back while the quota is spent.
            let counted: Option<i64> = sqlx::query_scalar(
                "INSERT INTO throttle (key, failures, blocked_until, updated_at) \
                 VALUES ($1, 1, 0, $2) \
                 ON CONFLICT (key) DO UPDATE SET \
                     failures = CASE WHEN throttle.updated_at <= $2 - $3 THEN 1 \
                         ELSE throttle.failures + 1 END, \
                     updated_at = $2 \
                 WHERE throttle.updated_at <= $2 - $3 OR throttle.failures < $4 \
                 RETURNING failures",
            )
            .bind(key)
            .bind(now)
            .bind(window)
            .bind(limit)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
            if counted.is_none() {
                let last: i64 =
                    sqlx::query_scalar("SELECT updated_at FROM throttle WHERE key = $1")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await
                        .db()?;
                // Dropping the transaction rolls back what was counted so far.
                return Ok(Reservation::Refused {
                    until: last + window,
                });
            }
        }
        tx.commit().await.db()?;
        Ok(Reservation::Granted)
    }

    /// Rows are taken in key order, whatever is done to each, as
    /// reservations take theirs: a settlement that cleared one counter and
    /// then waited for another that a reservation held, while that
    /// reservation waited for the first, was a deadlock.
    async fn throttle_settle(&self, clear: &[&str], release: &[&str]) -> StoreResult<()> {
        let mut keys: Vec<(&str, bool)> = clear
            .iter()
            .map(|k| (*k, true))
            .chain(release.iter().map(|k| (*k, false)))
            .collect();
        keys.sort_unstable();
        let mut tx = self.pool.begin().await.db()?;
        for (key, clear) in keys {
            let statement = if clear {
                "DELETE FROM throttle WHERE key = $1"
            } else {
                "UPDATE throttle SET failures = failures - 1 WHERE key = $1 AND failures > 0"
            };
            sqlx::query(statement)
                .bind(key)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn delete_stale_throttles(&self, before: i64, now: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM throttle WHERE key IN \
             (SELECT key FROM throttle WHERE updated_at < $1 AND blocked_until <= $2 LIMIT $3)",
        )
        .bind(before)
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}

//! Device records on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::{Devices, NewDevice, OrDatabase, StoreResult};

#[async_trait]
impl Devices for PostgresStore {
    async fn device_credentials(&self, user_id: i64, id: &str) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT credentials_version FROM devices WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()
    }

    async fn remember_device(&self, d: NewDevice<'_>, keep: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.db()?;
        // Logins of one account record their devices one at a time, so two
        // at once cannot each keep the other's dropped row.
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
            .bind(d.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO devices (user_id, id, credentials_version, created_at, last_used_at) \
             SELECT $1, $2, $3, $4, $4 \
             WHERE EXISTS (SELECT 1 FROM users WHERE id = $1 AND credentials_version = $3) \
             ON CONFLICT (user_id, id) DO UPDATE SET \
                 credentials_version = EXCLUDED.credentials_version, \
                 last_used_at = EXCLUDED.last_used_at",
        )
        .bind(d.user_id)
        .bind(d.id)
        .bind(d.credentials_version)
        .bind(d.now)
        .execute(&mut *tx)
        .await
        .db()?;
        // Recorded only under the account's credentials as they still are: a
        // password change that committed since the login verified them leaves
        // this device unrecorded. Devices of older credentials exempt no one
        // any more; beyond them, the least recently used go first. The one
        // just recorded is the most recent, so it always stays.
        let dropped = sqlx::query(
            "DELETE FROM devices WHERE user_id = $1 AND (credentials_version < $2 OR id IN ( \
                 SELECT id FROM devices WHERE user_id = $1 AND credentials_version = $2 \
                 ORDER BY last_used_at DESC, (id = $3) DESC, id OFFSET $4))",
        )
        .bind(d.user_id)
        .bind(d.credentials_version)
        .bind(d.id)
        .bind(keep)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(dropped.rows_affected())
    }
}

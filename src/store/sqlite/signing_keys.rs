//! Signing keys on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::from_sqlx::{Row, all};
use crate::store::{OrDatabase, SigningKeys, StoreResult, StoredKey};

#[async_trait]
impl SigningKeys for SqliteStore {
    async fn signing_keys(&self, algorithm: &str) -> StoreResult<Vec<StoredKey>> {
        sqlx::query_as::<_, Row<StoredKey>>(
            "SELECT algorithm, seq, kid, public_key, created_at, signs_from, revoked_at \
             FROM signing_keys WHERE algorithm = ?1 ORDER BY seq",
        )
        .bind(algorithm)
        .fetch_all(&self.pool)
        .await
        .db()
        .map(all)
    }

    async fn add_signing_key(&self, key: &StoredKey) -> StoreResult<bool> {
        let added = sqlx::query(
            "INSERT INTO signing_keys \
                 (algorithm, seq, kid, public_key, created_at, signs_from) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
        )
        .bind(&key.algorithm)
        .bind(key.seq)
        .bind(&key.kid)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.signs_from)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(added.rows_affected() == 1)
    }

    async fn revoke_signing_key(&self, kid: &str, now: i64) -> StoreResult<bool> {
        let revoked = sqlx::query(
            "UPDATE signing_keys SET revoked_at = ?2 WHERE kid = ?1 AND revoked_at IS NULL",
        )
        .bind(kid)
        .bind(now)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(revoked.rows_affected() == 1)
    }

    async fn delete_signing_keys_before(&self, algorithm: &str, seq: i64) -> StoreResult<u64> {
        let deleted = sqlx::query("DELETE FROM signing_keys WHERE algorithm = ?1 AND seq < ?2")
            .bind(algorithm)
            .bind(seq)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(deleted.rows_affected())
    }
}

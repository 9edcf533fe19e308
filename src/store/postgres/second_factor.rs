//! Second factors on PostgreSQL.

use async_trait::async_trait;

use super::PostgresStore;
use crate::store::second_factor::PendingLoginRow;
use crate::store::{OrDatabase, PendingLogin, SecondFactors, StoreResult, TotpFactor};

#[async_trait]
impl SecondFactors for PostgresStore {
    async fn totp_factor(&self, user_id: i64) -> StoreResult<Option<TotpFactor>> {
        let row: Option<(Vec<u8>, Option<i64>, i64)> = sqlx::query_as(
            "SELECT secret, confirmed_at, last_step FROM totp_factors WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(row.map(|(secret, confirmed_at, last_step)| TotpFactor {
            secret,
            confirmed_at,
            last_step,
        }))
    }

    async fn begin_totp(&self, user_id: i64, secret: &[u8], now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "INSERT INTO totp_factors (user_id, secret, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET secret = $2, created_at = $3, last_step = 0 \
             WHERE totp_factors.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret)
        .bind(now)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn confirm_totp(
        &self,
        user_id: i64,
        secret: &[u8],
        step: i64,
        codes: &[[u8; 32]],
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let done = sqlx::query(
            "UPDATE totp_factors SET confirmed_at = $3, last_step = $4 \
             WHERE user_id = $1 AND secret = $2 AND confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        replace_codes(&mut tx, user_id, codes).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn reseal_totp(&self, user_id: i64, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE totp_factors SET secret = $3 WHERE user_id = $1 AND secret = $2")
                .bind(user_id)
                .bind(old)
                .bind(new)
                .execute(&self.pool)
                .await
                .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn use_totp_step(&self, user_id: i64, step: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE totp_factors SET last_step = $2, failed_codes = 0 \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL AND last_step < $2",
        )
        .bind(user_id)
        .bind(step)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_totp_code(&self, user_id: i64, cap: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE totp_factors SET failed_codes = failed_codes + 1 \
             WHERE user_id = $1 AND confirmed_at IS NOT NULL AND failed_codes < $2",
        )
        .bind(user_id)
        .bind(cap)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn use_recovery_code(&self, user_id: i64, hash: &[u8], now: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND hash = $2 AND used_at IS NULL",
        )
        .bind(user_id)
        .bind(hash)
        .bind(now)
        .execute(&self.pool)
        .await
        .db()?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE totp_factors SET failed_codes = 0 WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(true)
    }

    async fn replace_recovery_codes(&self, user_id: i64, codes: &[[u8; 32]]) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let confirmed: Option<i64> = sqlx::query_scalar(
            "SELECT user_id FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL \
             FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        if confirmed.is_none() {
            return Ok(false);
        }
        replace_codes(&mut tx, user_id, codes).await?;
        tx.commit().await.db()?;
        Ok(true)
    }

    async fn recovery_codes_left(&self, user_id: i64) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await
        .db()
    }

    async fn remove_second_factor(&self, user_id: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.db()?;
        let done = sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        for sql in [
            "DELETE FROM recovery_codes WHERE user_id = $1",
            "DELETE FROM pending_logins WHERE user_id = $1",
        ] {
            sqlx::query(sql)
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn begin_pending_login(&self, hash: &[u8], login: &PendingLogin) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO pending_logins (hash, user_id, credentials_version, remember, \
                 expires_at, attempts) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hash)
        .bind(login.user_id)
        .bind(login.credentials_version)
        .bind(login.remember)
        .bind(login.expires_at)
        .bind(login.attempts)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn attempt_pending_login(
        &self,
        hash: &[u8],
        now: i64,
        max_attempts: i64,
    ) -> StoreResult<Option<PendingLogin>> {
        let mut tx = self.pool.begin().await.db()?;
        let row: Option<PendingLoginRow> = sqlx::query_as(
            "UPDATE pending_logins SET attempts = attempts + 1 \
             WHERE hash = $1 AND expires_at > $2 AND attempts < $3 \
             RETURNING user_id, credentials_version, remember, expires_at, attempts",
        )
        .bind(hash)
        .bind(now)
        .bind(max_attempts)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        if row.is_none() {
            // Spent or expired: gone for good.
            sqlx::query("DELETE FROM pending_logins WHERE hash = $1")
                .bind(hash)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(row.map(PendingLogin::from))
    }

    async fn pending_login(&self, hash: &[u8], now: i64) -> StoreResult<Option<PendingLogin>> {
        let row: Option<PendingLoginRow> = sqlx::query_as(
            "SELECT user_id, credentials_version, remember, expires_at, attempts \
             FROM pending_logins WHERE hash = $1 AND expires_at > $2",
        )
        .bind(hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(row.map(PendingLogin::from))
    }

    async fn end_pending_login(&self, hash: &[u8]) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM pending_logins WHERE hash = $1")
            .bind(hash)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_expired_pending_logins(&self, now: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM pending_logins WHERE hash IN \
             (SELECT hash FROM pending_logins WHERE expires_at <= $1 LIMIT $2)",
        )
        .bind(now)
        .bind(limit)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}

/// The account's recovery codes become `codes`, unused.
async fn replace_codes(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    user_id: i64,
    codes: &[[u8; 32]],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut **tx)
        .await
        .db()?;
    for code in codes {
        sqlx::query("INSERT INTO recovery_codes (user_id, hash) VALUES ($1, $2)")
            .bind(user_id)
            .bind(&code[..])
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

//! Accounts on SQLite.

use async_trait::async_trait;

use super::sessions::revoke_all_in;
use super::{SqliteStore, begin_write};
use crate::store::from_sqlx::{Row, is_unique_violation, one, optional};
use crate::store::{
    Erasure, NewUser, OrDatabase, PasswordChange, RevokeReason, StoreError, StoreResult, User,
    Users,
};

#[async_trait]
impl Users for SqliteStore {
    async fn create_user(&self, user: NewUser<'_>, now: i64) -> StoreResult<User> {
        let sql = concat!(
            "INSERT INTO users (username, password_hash, role, created_at, updated_at, email) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5) RETURNING ",
            user_columns!(),
            ""
        );
        let created = sqlx::query_as::<_, Row<User>>(sql)
            .bind(user.username)
            .bind(user.password_hash)
            .bind(user.role)
            .bind(now)
            .bind(user.email)
            .fetch_one(&self.pool)
            .await;
        match created {
            Err(e) if is_unique_violation(&e) => Err(StoreError::UsernameTaken),
            created => created.db().map(one),
        }
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<User>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = ?1"
        );
        sqlx::query_as::<_, Row<User>>(sql)
            .bind(username)
            .fetch_optional(&self.pool)
            .await
            .db()
            .map(optional)
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<User>> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?1");
        sqlx::query_as::<_, Row<User>>(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .db()
            .map(optional)
    }

    async fn user_by_verified_email(&self, email: &str) -> StoreResult<Option<User>> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = ?1 AND email_verified = 1"
        );
        sqlx::query_as::<_, Row<User>>(sql)
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .db()
            .map(optional)
    }

    async fn set_email(
        &self,
        user_id: i64,
        email: Option<&str>,
        verified: bool,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let set = sqlx::query(
            "UPDATE users SET email = ?1, email_verified = ?2, updated_at = ?3 \
             WHERE id = ?4",
        )
        .bind(email)
        .bind(verified && email.is_some())
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await;
        let set = match set {
            Err(e) if is_unique_violation(&e) => return Err(StoreError::EmailTaken),
            set => set.db()?.rows_affected() == 1,
        };
        // Links mailed for the account's old address go with it (README,
        // "Account recovery": what ends a link).
        sqlx::query("UPDATE links SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(set)
    }

    async fn set_password_hash(&self, user_id: i64, hash: &str, now: i64) -> StoreResult<u64> {
        let mut tx = begin_write(&self.pool).await.db()?;
        sqlx::query(
            "UPDATE users SET password_hash = ?1, updated_at = ?2, \
                 credentials_version = credentials_version + 1 WHERE id = ?3",
        )
        .bind(hash)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .db()?;
        let revoked = revoke_all_in(&mut *tx, user_id, None, RevokeReason::PasswordReset, now)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(revoked)
    }

    async fn upgrade_password_hash(
        &self,
        user_id: i64,
        verified_hash: &str,
        new_hash: &str,
    ) -> StoreResult<bool> {
        let done =
            sqlx::query("UPDATE users SET password_hash = ?1 WHERE id = ?2 AND password_hash = ?3")
                .bind(new_hash)
                .bind(user_id)
                .bind(verified_hash)
                .execute(&self.pool)
                .await
                .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn change_password(&self, c: PasswordChange<'_>) -> StoreResult<Option<u64>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let version: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET password_hash = ?1, updated_at = ?2, \
                 credentials_version = credentials_version + 1 \
             WHERE id = ?3 AND password_hash = ?4 RETURNING credentials_version",
        )
        .bind(c.new_hash)
        .bind(c.now)
        .bind(c.user_id)
        .bind(c.verified_hash)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(version) = version else {
            return Ok(None);
        };
        let revoked = revoke_all_in(
            &mut *tx,
            c.user_id,
            c.keep_session,
            RevokeReason::PasswordChanged,
            c.now,
        )
        .await
        .db()?;
        sqlx::query("UPDATE sessions SET credentials_version = ?1 WHERE id = ?2 AND user_id = ?3")
            .bind(version)
            .bind(c.keep_session)
            .bind(c.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(Some(revoked))
    }

    async fn disable_user(&self, user_id: i64, now: i64) -> StoreResult<Option<u64>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let found = sqlx::query(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, ?1), \
                 credentials_version = credentials_version + 1 WHERE id = ?2",
        )
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        if found == 0 {
            return Ok(None);
        }
        let revoked = revoke_all_in(&mut *tx, user_id, None, RevokeReason::UserDisabled, now)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(Some(revoked))
    }

    async fn enable_user(&self, user_id: i64) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = ?1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_user(&self, e: Erasure<'_>) -> StoreResult<Option<u64>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let username: Option<String> =
            sqlx::query_scalar("SELECT username FROM users WHERE id = ?1")
                .bind(e.user_id)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        let Some(username) = username else {
            return Ok(None);
        };
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL \
                 AND idle_expires_at > ?2 AND absolute_expires_at > ?2",
        )
        .bind(e.user_id)
        .bind(e.now)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        sqlx::query("DELETE FROM sessions WHERE user_id = ?1")
            .bind(e.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        for key in e.throttle_keys {
            sqlx::query("DELETE FROM throttle WHERE key = ?1")
                .bind(key)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        // A prefix as a range of the primary key, so the index finds it.
        for prefix in e.throttle_prefixes {
            sqlx::query("DELETE FROM throttle WHERE key >= ?1 AND key < ?2")
                .bind(prefix)
                .bind(past_prefix(prefix))
                .execute(&mut *tx)
                .await
                .db()?;
        }
        sqlx::query(
            "UPDATE audit_events SET username = NULL, ip = NULL, request_id = NULL \
             WHERE user_id = ?1 OR username = ?2",
        )
        .bind(e.user_id)
        .bind(&username)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query("DELETE FROM users WHERE id = ?1")
            .bind(e.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(Some(u64::try_from(live).unwrap_or_default()))
    }
}

/// The least string after every string that starts with `prefix` (in
/// SQLite's byte order): `prefix` with its last character one higher.
/// Key prefixes end in an ASCII delimiter, which always has a successor.
fn past_prefix(prefix: &str) -> String {
    let mut past = prefix.to_owned();
    match past
        .pop()
        .and_then(|last| char::from_u32(u32::from(last) + 1))
    {
        Some(next) => past.push(next),
        None => past.push(char::MAX),
    }
    past
}

//! The mail queue and its links on SQLite. One writer at a time, so a claim
//! (one `UPDATE … RETURNING`) never races another.

use async_trait::async_trait;

use super::sessions::revoke_all_in;
use super::{SqliteStore, begin_write};
use crate::store::from_sqlx::{Row, all, is_unique_violation, one};
use crate::store::{
    EmailVerified, Links, LiveLink, MailKind, MailOutcome, NewMail, OrDatabase, Outbox, QueuedMail,
    RevokeReason, StoreError, StoreResult, User,
};

macro_rules! mail_columns {
    () => {
        "id, kind, recipient, user_id, link_id, attempts, created_at, next_attempt_at, failed_at, \
         last_error"
    };
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn queue_mail(&self, mail: NewMail<'_>, now: i64) -> StoreResult<Option<i64>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        if let Some(link) = &mail.link {
            if link.supersedes {
                sqlx::query(
                    "UPDATE links SET used_at = ?1 \
                     WHERE user_id = ?2 AND kind = ?3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(mail.user_id)
                .bind(mail.kind.as_str())
                .execute(&mut *tx)
                .await
                .db()?;
            }
            let issued = sqlx::query(
                "INSERT INTO links (id, hash, kind, user_id, email, credentials_version, \
                     created_at, expires_at) \
                 SELECT ?1, ?2, ?3, id, ?4, credentials_version, ?5, ?6 FROM users \
                 WHERE id = ?7 AND (?3 <> 'password_reset' OR (email = ?8 AND email_verified = 1))",
            )
            .bind(link.id)
            .bind(link.hash)
            .bind(mail.kind.as_str())
            .bind(link.email)
            .bind(now)
            .bind(link.expires_at)
            .bind(mail.user_id)
            .bind(mail.to)
            .execute(&mut *tx)
            .await
            .db()?;
            if issued.rows_affected() == 0 {
                return Ok(None);
            }
        }
        let id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO mail_outbox (kind, recipient, user_id, link_id, created_at, \
                 next_attempt_at) \
             SELECT ?1, ?2, id, ?3, ?4, ?4 FROM users WHERE id = ?5 RETURNING id",
        )
        .bind(mail.kind.as_str())
        .bind(mail.to)
        .bind(mail.link.as_ref().map(|l| l.id))
        .bind(now)
        .bind(mail.user_id)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(id)
    }

    async fn claim_mail(&self, now: i64, lease: i64, limit: i64) -> StoreResult<Vec<QueuedMail>> {
        let sql = concat!(
            "UPDATE mail_outbox SET attempts = attempts + 1, leased_until = ?1 + ?2 \
             WHERE id IN (SELECT id FROM mail_outbox \
                 WHERE failed_at IS NULL AND next_attempt_at <= ?1 AND leased_until <= ?1 \
                 ORDER BY id LIMIT ?3) \
             RETURNING ",
            mail_columns!()
        );
        let mut claimed = all(sqlx::query_as::<_, Row<QueuedMail>>(sql)
            .bind(now)
            .bind(lease)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .db()?);
        claimed.sort_by_key(|m| m.id);
        Ok(claimed)
    }

    async fn finish_mail(
        &self,
        id: i64,
        attempts: i64,
        outcome: MailOutcome<'_>,
    ) -> StoreResult<bool> {
        let query = match outcome {
            MailOutcome::Sent => {
                let mut tx = begin_write(&self.pool).await.db()?;
                // The link's id rebuilds its token (with the key): once sent,
                // it gives way to its hash, from which nothing is rebuilt.
                sqlx::query(
                    "UPDATE links SET id = 'sent:' || hex(hash) WHERE id = \
                     (SELECT link_id FROM mail_outbox WHERE id = ?1 AND attempts = ?2)",
                )
                .bind(id)
                .bind(attempts)
                .execute(&mut *tx)
                .await
                .db()?;
                let done = sqlx::query("DELETE FROM mail_outbox WHERE id = ?1 AND attempts = ?2")
                    .bind(id)
                    .bind(attempts)
                    .execute(&mut *tx)
                    .await
                    .db()?;
                tx.commit().await.db()?;
                return Ok(done.rows_affected() > 0);
            }
            MailOutcome::Retry { at, error } => sqlx::query(
                "UPDATE mail_outbox SET leased_until = 0, next_attempt_at = ?3, last_error = ?4 \
                 WHERE id = ?1 AND attempts = ?2",
            )
            .bind(id)
            .bind(attempts)
            .bind(at)
            .bind(error),
            MailOutcome::Failed { error, at } => {
                let mut tx = begin_write(&self.pool).await.db()?;
                // A mail given up on takes its link with it.
                sqlx::query(
                    "UPDATE links SET used_at = ?3 WHERE id = \
                     (SELECT link_id FROM mail_outbox WHERE id = ?1 AND attempts = ?2)",
                )
                .bind(id)
                .bind(attempts)
                .bind(at)
                .execute(&mut *tx)
                .await
                .db()?;
                let done = sqlx::query(
                    "UPDATE mail_outbox SET leased_until = 0, failed_at = ?3, last_error = ?4, \
                         link_id = NULL \
                     WHERE id = ?1 AND attempts = ?2",
                )
                .bind(id)
                .bind(attempts)
                .bind(at)
                .bind(error)
                .execute(&mut *tx)
                .await
                .db()?;
                tx.commit().await.db()?;
                return Ok(done.rows_affected() > 0);
            }
        };
        let done = query.execute(&self.pool).await.db()?;
        Ok(done.rows_affected() > 0)
    }

    async fn unsent_mail(&self, limit: i64) -> StoreResult<Vec<QueuedMail>> {
        let sql = concat!(
            "SELECT ",
            mail_columns!(),
            " FROM mail_outbox ORDER BY id LIMIT ?1"
        );
        Ok(all(sqlx::query_as::<_, Row<QueuedMail>>(sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .db()?))
    }

    async fn oldest_unsent_mail(&self) -> StoreResult<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(created_at) FROM mail_outbox WHERE failed_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .db()
    }

    async fn delete_old_mail(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let mail = sqlx::query(
            "DELETE FROM mail_outbox WHERE id IN \
             (SELECT id FROM mail_outbox WHERE failed_at < ?1 LIMIT ?2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .db()?;
        let links = sqlx::query(
            "DELETE FROM links WHERE id IN (SELECT id FROM links WHERE expires_at < ?1 LIMIT ?2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(mail.rows_affected() + links.rows_affected())
    }
}

#[async_trait]
impl Links for SqliteStore {
    async fn live_link(
        &self,
        hash: &[u8],
        kind: MailKind,
        now: i64,
    ) -> StoreResult<Option<LiveLink>> {
        let row: Option<(i64, Option<String>)> = sqlx::query_as(
            "SELECT l.user_id, l.email FROM links l JOIN users u ON u.id = l.user_id \
             WHERE l.hash = ?1 AND l.kind = ?2 AND l.used_at IS NULL AND l.expires_at > ?3 \
                 AND u.disabled_at IS NULL AND l.credentials_version = u.credentials_version",
        )
        .bind(hash)
        .bind(kind.as_str())
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .db()?;
        Ok(row.map(|(user_id, email)| LiveLink { user_id, email }))
    }

    async fn use_reset_link(
        &self,
        hash: &[u8],
        new_hash: &str,
        now: i64,
    ) -> StoreResult<Option<(User, u64)>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let Some((user_id, version)) =
            use_link(&mut tx, hash, MailKind::PasswordReset, now).await?
        else {
            return Ok(None);
        };
        let sql = concat!(
            "UPDATE users SET password_hash = ?1, updated_at = ?2, \
                 credentials_version = credentials_version + 1 \
             WHERE id = ?3 AND credentials_version = ?4 AND disabled_at IS NULL RETURNING ",
            user_columns!()
        );
        let user = sqlx::query_as::<_, Row<User>>(sql)
            .bind(new_hash)
            .bind(now)
            .bind(user_id)
            .bind(version)
            .fetch_optional(&mut *tx)
            .await
            .db()?;
        let Some(user) = user.map(one) else {
            return Ok(None);
        };
        let revoked = revoke_all_in(&mut *tx, user_id, None, RevokeReason::PasswordReset, now)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(Some((user, revoked)))
    }

    async fn use_verification_link(
        &self,
        hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<EmailVerified>> {
        let mut tx = begin_write(&self.pool).await.db()?;
        let Some((user_id, version)) =
            use_link(&mut tx, hash, MailKind::EmailVerification, now).await?
        else {
            return Ok(None);
        };
        let email: Option<String> = sqlx::query_scalar("SELECT email FROM links WHERE hash = ?1")
            .bind(hash)
            .fetch_one(&mut *tx)
            .await
            .db()?;
        let Some(email) = email else {
            return Ok(None);
        };
        let before: Option<(Option<String>, bool)> = sqlx::query_as(
            "SELECT email, email_verified FROM users \
             WHERE id = ?1 AND credentials_version = ?2 AND disabled_at IS NULL",
        )
        .bind(user_id)
        .bind(version)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let Some(before) = before else {
            return Ok(None);
        };
        let sql = concat!(
            "UPDATE users SET email = ?1, email_verified = 1, updated_at = ?2 WHERE id = ?3 \
             RETURNING ",
            user_columns!()
        );
        let updated = sqlx::query_as::<_, Row<User>>(sql)
            .bind(&email)
            .bind(now)
            .bind(user_id)
            .fetch_one(&mut *tx)
            .await;
        let user = match updated {
            Ok(row) => one(row),
            // Dropping the transaction leaves the link unused.
            Err(e) if is_unique_violation(&e) => return Err(StoreError::EmailTaken),
            Err(e) => return Err(e).db(),
        };
        // Links issued for the account before (a reset to the old address,
        // another address to verify) go with the address they were for.
        sqlx::query("UPDATE links SET used_at = ?1 WHERE user_id = ?2 AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        let replaced = match before {
            (Some(old), true) if old != email => Some(old),
            _ => None,
        };
        // The old address is told in the same step, so neither a crash nor
        // an allowance spent by someone else can keep it from knowing.
        if let Some(old) = &replaced {
            sqlx::query(
                "INSERT INTO mail_outbox (kind, recipient, user_id, created_at, next_attempt_at) \
                 VALUES (?1, ?2, ?3, ?4, ?4)",
            )
            .bind(MailKind::EmailChanged.as_str())
            .bind(old)
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(Some(EmailVerified { user, replaced }))
    }
}

/// Marks the link of `kind` whose token hashes to `hash` used, if it still
/// works; its account and the credentials version it was issued under.
async fn use_link(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    hash: &[u8],
    kind: MailKind,
    now: i64,
) -> StoreResult<Option<(i64, i64)>> {
    sqlx::query_as(
        "UPDATE links SET used_at = ?1 \
         WHERE hash = ?2 AND kind = ?3 AND used_at IS NULL AND expires_at > ?1 \
         RETURNING user_id, credentials_version",
    )
    .bind(now)
    .bind(hash)
    .bind(kind.as_str())
    .fetch_optional(&mut **tx)
    .await
    .db()
}

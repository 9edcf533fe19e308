//! The audit trail on SQLite.

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::from_sqlx::{Row, all};
use crate::store::{AuditEvent, AuditLog, OrDatabase, StoreResult};

#[async_trait]
impl AuditLog for SqliteStore {
    async fn record_event(&self, e: AuditEvent) -> StoreResult<i64> {
        insert(&self.pool, &e).await
    }

    async fn record_events(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        let mut tx = super::begin_write(&self.pool).await.db()?;
        for e in &events {
            insert(&mut *tx, e).await?;
        }
        tx.commit().await.db()
    }

    async fn add_to_event_count(&self, id: i64, more: i64) -> StoreResult<()> {
        sqlx::query("UPDATE audit_events SET count = count + ?1 WHERE id = ?2")
            .bind(more)
            .bind(id)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(())
    }

    async fn events(
        &self,
        user_id: Option<i64>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>> {
        sqlx::query_as::<_, Row<AuditEvent>>(
            "SELECT at, kind, user_id, username, session_id, ip, request_id, detail, count \
             FROM audit_events WHERE at >= ?1 AND (?2 IS NULL OR user_id = ?2) \
             ORDER BY at, id LIMIT ?3",
        )
        .bind(since)
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .db()
        .map(all)
    }

    async fn delete_events_before(&self, before: i64, limit: i64) -> StoreResult<u64> {
        let done = sqlx::query(
            "DELETE FROM audit_events WHERE id IN \
             (SELECT id FROM audit_events WHERE at < ?1 ORDER BY at LIMIT ?2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(done.rows_affected())
    }
}

/// One event's row; its id.
///
/// SQLite has one writer at a time: this insert comes wholly before an
/// account's erasure (which then clears it) or wholly after (and sees
/// the user gone).
async fn insert<'e>(executor: impl sqlx::SqliteExecutor<'e>, e: &AuditEvent) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO audit_events \
                 (at, kind, user_id, username, session_id, ip, request_id, detail, count) \
             SELECT ?1, ?2, ?3, CASE WHEN kept THEN ?4 END, ?5, CASE WHEN kept THEN ?6 END, \
                 CASE WHEN kept THEN ?7 END, ?8, ?9 \
             FROM (SELECT ?3 IS NULL OR EXISTS (SELECT 1 FROM users WHERE id = ?3) AS kept) \
             RETURNING id",
    )
    .bind(e.at)
    .bind(&e.kind)
    .bind(e.user_id)
    .bind(&e.username)
    .bind(&e.session_id)
    .bind(&e.ip)
    .bind(&e.request_id)
    .bind(&e.detail)
    .bind(e.count)
    .fetch_one(executor)
    .await
    .db()
}

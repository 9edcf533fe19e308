//! The audit trail.

use async_trait::async_trait;

use super::StoreResult;

/// A security event, kept for the audit trail. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub kind: String,
    pub user_id: Option<i64>,
    pub username: Option<String>,
    pub session_id: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: Option<String>,
    /// How many identical events this row stands for (repeated rejections
    /// from one address within a minute are kept as one row).
    pub count: i64,
}

impl Default for AuditEvent {
    fn default() -> Self {
        Self {
            at: 0,
            kind: String::new(),
            user_id: None,
            username: None,
            session_id: None,
            ip: None,
            request_id: None,
            detail: None,
            count: 1,
        }
    }
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes an event; returns its row id.
    async fn record_event(&self, event: AuditEvent) -> StoreResult<i64>;
    /// Adds `more` to the count of the event in row `id`.
    async fn add_to_event_count(&self, id: i64, more: i64) -> StoreResult<()>;
    /// Audit events at or after `since`, of one user when given, oldest first.
    async fn events(
        &self,
        user_id: Option<i64>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<AuditEvent>>;
    /// Deletes up to `limit` audit events older than `before`, oldest first.
    async fn delete_events_before(&self, before: i64, limit: i64) -> StoreResult<u64>;
}

//! The audit trail.

use async_trait::async_trait;

use super::StoreResult;

/// A security event, kept for the audit trail. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When it happened, in Unix seconds.
    pub at: i64,
    /// What happened: an [`AuditKind::as_str`](crate::AuditKind::as_str) name.
    pub kind: String,
    /// The account it concerns, if known.
    pub user_id: Option<i64>,
    /// The account's name, or the name a client tried (which may name no
    /// account).
    pub username: Option<String>,
    /// The session it concerns, if any.
    pub session_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The request's `x-request-id`, to find its log lines.
    pub request_id: Option<String>,
    /// Words for the operator; never a secret.
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

/// The audit trail: security events, kept until housekeeping deletes them
/// (`AUDIT_RETENTION`).
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Writes an event; returns its row id. An event about a user id that
    /// no longer exists (a request that was in flight when the account was
    /// erased) keeps the id alone: no name, address or request id.
    async fn record_event(&self, event: AuditEvent) -> StoreResult<i64>;
    /// Writes several events together, all or none: in one transaction, so
    /// one commit however many there are (a login that ends many sessions
    /// at once). The default writes them one by one.
    async fn record_events(&self, events: Vec<AuditEvent>) -> StoreResult<()> {
        for event in events {
            self.record_event(event).await?;
        }
        Ok(())
    }
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

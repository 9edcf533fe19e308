//! Security events: written to the store's audit trail and to the log. Only
//! identifiers go in (user, session, address, request id), never a secret.

use crate::auth::extract::ClientInfo;
use crate::state::AppState;
use crate::store::AuditEvent;

pub struct Event(AuditEvent);

impl Event {
    pub fn new(kind: &str, client: &ClientInfo) -> Self {
        Self(AuditEvent {
            kind: kind.to_owned(),
            ip: client.ip.clone(),
            request_id: client.request_id.clone(),
            ..AuditEvent::default()
        })
    }

    pub fn user(mut self, id: i64, username: &str) -> Self {
        self.0.user_id = Some(id);
        self.0.username = Some(username.to_owned());
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.0.username = Some(username.chars().take(64).collect());
        self
    }

    pub fn user_id(mut self, id: i64) -> Self {
        self.0.user_id = Some(id);
        self
    }

    pub fn session(mut self, id: &str) -> Self {
        self.0.session_id = Some(id.to_owned());
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }
}

/// Records the event. A failed write is logged and does not fail the request:
/// the action the event describes has already happened.
pub async fn record(state: &AppState, Event(mut event): Event) {
    event.at = state.clock.now();
    let e = &event;
    if e.kind == "refresh_token_reused" {
        tracing::warn!(event = %e.kind, user_id = e.user_id, session_id = e.session_id, ip = e.ip, "refresh token reuse detected; session revoked");
    } else {
        tracing::info!(event = %e.kind, user_id = e.user_id, username = e.username, session_id = e.session_id, ip = e.ip, detail = e.detail, "audit");
    }
    if let Err(err) = state.store.record_event(event).await {
        tracing::error!(error = %err, "could not record audit event");
    }
}

//! Operator actions behind the CLI: accounts and sessions by username, and
//! reading the audit trail. Every change is itself an audit event.

use anyhow::{Context, bail};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::credentials::normalize_username;
use crate::store::{AuditEvent, Session, Store, User};

pub async fn user(store: &dyn Store, name: &str) -> anyhow::Result<User> {
    let name = normalize_username(name).map_err(|e| anyhow::anyhow!("{e}"))?;
    store
        .user_by_name(&name)
        .await?
        .with_context(|| format!("no user named {name}"))
}

async fn record(
    store: &dyn Store,
    kind: &str,
    user: &User,
    detail: String,
    now: i64,
) -> anyhow::Result<()> {
    store
        .record_event(AuditEvent {
            at: now,
            kind: kind.to_owned(),
            user_id: Some(user.id),
            username: Some(user.username.clone()),
            detail: Some(detail),
            ..AuditEvent::default()
        })
        .await?;
    Ok(())
}

/// Disables the account: every session is revoked at once and logins are
/// refused with the same answer as a wrong password. The credentials version
/// moves in the same transaction, so a login or refresh that checked the
/// account just before cannot leave a session behind. Returns the sessions ended.
pub async fn disable_user(store: &dyn Store, name: &str, now: i64) -> anyhow::Result<u64> {
    let user = user(store, name).await?;
    let ended = store
        .disable_user(user.id, now)
        .await?
        .with_context(|| format!("no user named {}", user.username))?;
    record(
        store,
        "user_disabled",
        &user,
        format!("by the CLI; {ended} sessions revoked"),
        now,
    )
    .await?;
    Ok(ended)
}

pub async fn enable_user(store: &dyn Store, name: &str, now: i64) -> anyhow::Result<()> {
    let user = user(store, name).await?;
    store.enable_user(user.id).await?;
    record(store, "user_enabled", &user, "by the CLI".to_owned(), now).await
}

pub async fn sessions(store: &dyn Store, name: &str, now: i64) -> anyhow::Result<Vec<Session>> {
    let user = user(store, name).await?;
    Ok(store.active_sessions(user.id, now).await?)
}

/// Revokes one session of the user (`session`), or all of them.
pub async fn revoke_sessions(
    store: &dyn Store,
    name: &str,
    session: Option<&str>,
    now: i64,
) -> anyhow::Result<u64> {
    let user = user(store, name).await?;
    let ended = match session {
        Some(id) => {
            if !store
                .revoke_session(id, Some(user.id), "revoked_by_operator", now)
                .await?
            {
                bail!("{} has no live session {id}", user.username);
            }
            1
        }
        None => {
            store
                .revoke_user_sessions(user.id, None, "revoked_by_operator", now)
                .await?
        }
    };
    record(
        store,
        "sessions_revoked_by_operator",
        &user,
        format!("{ended} sessions"),
        now,
    )
    .await?;
    Ok(ended)
}

/// Audit events since `since` (Unix seconds), of one user when named.
pub async fn audit(
    store: &dyn Store,
    name: Option<&str>,
    since: i64,
    limit: i64,
) -> anyhow::Result<Vec<AuditEvent>> {
    let user_id = match name {
        Some(n) => Some(user(store, n).await?.id),
        None => None,
    };
    Ok(store.events(user_id, since, limit).await?)
}

/// `--since`: RFC 3339 (`2026-11-22T08:00:00Z`), Unix seconds, or an age
/// such as `90s`, `30m`, `24h`, `7d`.
pub fn parse_since(value: &str, now: i64) -> anyhow::Result<i64> {
    let value = value.trim();
    if let Ok(t) = OffsetDateTime::parse(value, &Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    if let Ok(unix) = value.parse::<i64>() {
        return Ok(unix);
    }
    let (number, unit) = value.split_at(value.len().saturating_sub(1));
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since takes a time (2026-11-22T08:00:00Z) or an age (30m, 24h, 7d)"),
    };
    let n: i64 = number
        .parse()
        .with_context(|| format!("`{value}` is not an age such as 24h"))?;
    Ok(now - n.saturating_mul(scale))
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_takes_times_and_ages() {
        let now = 1_800_000_000;
        assert_eq!(parse_since("24h", now).ok(), Some(now - 86_400));
        assert_eq!(parse_since("30m", now).ok(), Some(now - 1800));
        assert_eq!(parse_since("1700000000", now).ok(), Some(1_700_000_000));
        assert_eq!(
            parse_since("2026-01-01T00:00:00Z", now).ok(),
            Some(1_767_225_600)
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("h", now).is_err());
    }
}

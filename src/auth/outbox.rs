//! Mail out (README, "Mail"): queued in the store with the change that
//! calls for it, and sent by a background worker after the request has been
//! answered, so no request waits on a relay, a crash or a relay's outage
//! loses nothing, and instances sharing a database send each mail once.
//!
//! A mail is claimed alone for [`LEASE`] seconds (four times the longest a
//! send may take), tried, then settled by the claim that holds it: deleted
//! once sent, due again after a back-off when the relay could not take it,
//! kept as failed (without its link) when refused for good, out of
//! attempts, or when its link no longer works. Delivery is at least once: a
//! crash between the relay's `250` and the settling sends the mail again
//! when the lease runs out.

use std::time::Duration;

use askama::Template;
use tokio::sync::watch;

use crate::auth::credentials::throttle::{self, WINDOW};
use crate::auth::links;
use crate::auth::{ApiError, AuditKind, Auth, ClientInfo, Event};
use crate::clock::seconds;
use crate::mail::{Letter, Sent};
use crate::store::{
    MailKind, MailOutcome, NewLink, NewMail, QueuedMail, Reservation, StoreResult, User,
};

/// Seconds a claim holds its one mail: four times the transport's own
/// time-out (`mail.rs`), so a mail is never taken by a second worker while
/// the first is still sending it (instances' clocks must agree to within
/// the difference, as NTP keeps them).
const LEASE: i64 = 120;

/// Attempts before a mail is given up on. With [`backoff`], the last comes
/// about six hours after the first: a relay's outage of a morning. A reset
/// link lives half an hour anyway.
pub(crate) const MAX_ATTEMPTS: i64 = 12;

/// How often the worker looks for due mail when nothing wakes it: retries,
/// and mail queued by another instance.
const POLL: Duration = Duration::from_secs(5);

/// The wait after the `attempts`-th failed attempt: 30 s, doubling, at most
/// an hour.
fn backoff(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(1, 8) - 1).unwrap_or(0);
    (30 * 2_i64.pow(doublings)).min(3600)
}

#[derive(Template)]
#[template(path = "mail/reset.txt")]
struct ResetText<'a> {
    username: &'a str,
    url: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetHtml<'a> {
    username: &'a str,
    url: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyText<'a> {
    username: &'a str,
    address: &'a str,
    url: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyHtml<'a> {
    username: &'a str,
    address: &'a str,
    url: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/changed.txt")]
struct ChangedText<'a> {
    username: &'a str,
}

#[derive(Template)]
#[template(path = "mail/changed.html")]
struct ChangedHtml<'a> {
    username: &'a str,
}

/// Sends due mail until `stop`, woken by each mail this instance queues and
/// every [`POLL`] otherwise.
pub(crate) async fn run(auth: Auth, mut stop: watch::Receiver<bool>) {
    if !auth.config().mail.sends() {
        return;
    }
    let mut ticker = tokio::time::interval(POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = auth.inner.mail_queued.notified() => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        // An outage is logged by the store, once.
        if let Err(e) = auth.deliver_mail_until(&stop).await {
            tracing::debug!(error = %e, "mail worker: the store did not answer");
        }
    }
}

impl Auth {
    /// Queues a mail of `kind` to `to` about `user`, with its link when the
    /// kind has one (verifying `verifies`), counted first against
    /// `MAIL_PER_HOUR`: a reset per account; a verification per account and
    /// per address. `TooManyAttempts` when one is spent, and nothing is
    /// queued.
    pub(crate) async fn queue_mail(
        &self,
        kind: MailKind,
        user: &User,
        to: &str,
        verifies: Option<&str>,
    ) -> Result<(), ApiError> {
        let mail = &self.config().mail;
        let mut keys = match kind {
            MailKind::PasswordReset => vec![throttle::mail_reset_key(user.id)],
            _ => vec![
                throttle::mail_verify_key(user.id),
                throttle::mail_verify_to_key(&self.inner.links.tag(to)),
            ],
        };
        // In one order everywhere, so two reservations never deadlock.
        keys.sort();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let now = self.now();
        if let Reservation::Refused { until } = self
            .store()
            .quota_take(&keys, mail.per_hour, now, WINDOW)
            .await?
        {
            return Err(ApiError::TooManyAttempts {
                retry_after: (until - now).max(1),
            });
        }
        let ttl = match kind {
            MailKind::PasswordReset => Some(mail.reset_ttl),
            MailKind::EmailVerification => Some(mail.verification_ttl),
            _ => None,
        };
        let token = ttl.map(|_| self.inner.links.issue());
        let link = token.as_ref().zip(ttl).map(|(token, ttl)| NewLink {
            id: &token.id,
            hash: &token.hash,
            email: verifies,
            expires_at: now + seconds(ttl),
            // The newest address to verify is the one the user means.
            supersedes: kind == MailKind::EmailVerification,
        });
        let queued = self
            .store()
            .queue_mail(
                NewMail {
                    kind,
                    to,
                    user_id: user.id,
                    link,
                },
                now,
            )
            .await?;
        if queued.is_some() {
            self.metrics().mail_queued(kind);
            self.inner.mail_queued.notify_one();
        }
        Ok(())
    }

    /// Mails not sent yet, waiting or given up on, oldest first (`latchkey
    /// mail queue`).
    pub async fn unsent_mail(&self, limit: i64) -> Result<Vec<QueuedMail>, ApiError> {
        Ok(self.store().unsent_mail(limit.clamp(1, 10_000)).await?)
    }

    /// Sends every mail due now, one claim at a time; returns how many the
    /// transport accepted. The worker's one step, and a hook for latchkey's
    /// own tests, which drive it by hand.
    #[doc(hidden)]
    pub async fn deliver_mail(&self) -> StoreResult<usize> {
        let (_keep, never) = watch::channel(false);
        self.deliver_mail_until(&never).await
    }

    /// As [`Auth::deliver_mail`], stopping between mails once `stop` says so.
    async fn deliver_mail_until(&self, stop: &watch::Receiver<bool>) -> StoreResult<usize> {
        let mut sent = 0;
        while !*stop.borrow() {
            let Some(mail) = self.store().claim_mail(self.now(), LEASE, 1).await?.pop() else {
                break;
            };
            sent += usize::from(self.deliver(mail).await?);
        }
        let oldest = self.store().oldest_unsent_mail().await?;
        self.metrics()
            .mail_queue_age(oldest.map_or(0, |queued| self.now() - queued));
        Ok(sent)
    }

    /// One claimed mail: built, sent, settled. True when it was accepted.
    async fn deliver(&self, mail: QueuedMail) -> StoreResult<bool> {
        let kind = MailKind::parse(&mail.kind);
        let outcome = match kind {
            Some(kind) => match self.letter(kind, &mail).await? {
                Ok(letter) => self.inner.mailer.send(&letter).await,
                Err(why) => Sent::Refused(why),
            },
            None => Sent::Refused(format!(
                "a kind of mail this version cannot build: {}",
                mail.kind
            )),
        };
        let kind_name = kind.map_or("unknown", MailKind::as_str);
        let event = |audit: AuditKind| {
            let event = Event::new(audit, &ClientInfo::default()).detail(kind_name);
            match mail.user_id {
                Some(id) => event.user_id(id),
                None => event,
            }
        };
        let now = self.now();
        match outcome {
            Sent::Accepted(said) => {
                let settled = self
                    .store()
                    .finish_mail(mail.id, mail.attempts, MailOutcome::Sent)
                    .await?;
                if !settled {
                    tracing::warn!(
                        mail = mail.id,
                        "mail sent after its claim ran out: another worker may send it too"
                    );
                }
                tracing::info!(mail = mail.id, kind = kind_name, relay = %said, "mail sent");
                if let Some(kind) = kind {
                    self.metrics().mail_sent(kind);
                }
                self.record(event(AuditKind::MailSent)).await;
                Ok(true)
            }
            Sent::Failed(why) if mail.attempts < MAX_ATTEMPTS => {
                let at = now + backoff(mail.attempts);
                let settled = self
                    .store()
                    .finish_mail(
                        mail.id,
                        mail.attempts,
                        MailOutcome::Retry { at, error: &why },
                    )
                    .await?;
                if !settled {
                    // Another claim has it now, and settles it.
                    return Ok(false);
                }
                tracing::warn!(
                    mail = mail.id,
                    kind = kind_name,
                    attempts = mail.attempts,
                    retry_in = at - now,
                    error = %why,
                    "mail not sent; will try again"
                );
                Ok(false)
            }
            Sent::Failed(why) | Sent::Refused(why) => {
                let settled = self
                    .store()
                    .finish_mail(
                        mail.id,
                        mail.attempts,
                        MailOutcome::Failed {
                            error: &why,
                            at: now,
                        },
                    )
                    .await?;
                if !settled {
                    return Ok(false);
                }
                tracing::warn!(mail = mail.id, kind = kind_name, attempts = mail.attempts, error = %why, "mail given up on");
                if let Some(kind) = kind {
                    self.metrics().mail_failed(kind);
                }
                // The relay's words may name the recipient: the trail keeps
                // its code alone, the queue (`latchkey mail queue`) the rest.
                let code = why
                    .split_whitespace()
                    .next()
                    .filter(|w| w.len() == 3 && w.bytes().all(|b| b.is_ascii_digit()));
                let detail = match code {
                    Some(code) => format!("{kind_name}: {code}"),
                    None => kind_name.to_owned(),
                };
                self.record(event(AuditKind::MailFailed).detail(detail))
                    .await;
                Ok(false)
            }
        }
    }

    /// The mail `queued` stands for, its link rebuilt from the link's id;
    /// `Err` with the reason when it cannot be built.
    async fn letter(
        &self,
        kind: MailKind,
        queued: &QueuedMail,
    ) -> StoreResult<Result<Letter, String>> {
        let user = match queued.user_id {
            Some(id) => self.store().user_by_id(id).await?,
            None => None,
        };
        let Some(user) = user else {
            return Ok(Err("the account is gone".to_owned()));
        };
        let mail = &self.config().mail;
        // A link used, superseded, expired or ended by a password change is
        // not worth a mail: the mail is given up on.
        if let (Some(id), MailKind::PasswordReset | MailKind::EmailVerification) =
            (&queued.link_id, kind)
        {
            let hash = links::hash(&self.inner.links.token(id));
            if self
                .store()
                .live_link(&hash, kind, self.now())
                .await?
                .is_none()
            {
                return Ok(Err("its link no longer works".to_owned()));
            }
        }
        let url = |path: &str| {
            let origin = mail.link_origin.as_deref().unwrap_or_default();
            queued.link_id.as_deref().map(|id| {
                // In the fragment: browsers send it to no server, so the
                // token stays out of access logs and `Referer` (README,
                // "Account recovery"); the page's script reads it.
                format!("{origin}{path}#token={}", self.inner.links.token(id))
            })
        };
        let minutes = |ttl: Duration| seconds(ttl) / 60;
        let username = user.username.as_str();
        let rendered = match kind {
            MailKind::PasswordReset => {
                let Some(url) = url("/password/reset") else {
                    return Ok(Err("the link is gone".to_owned()));
                };
                let minutes = minutes(mail.reset_ttl);
                (
                    "Reset your latchkey password",
                    ResetText {
                        username,
                        url: &url,
                        minutes,
                    }
                    .render(),
                    ResetHtml {
                        username,
                        url: &url,
                        minutes,
                    }
                    .render(),
                )
            }
            MailKind::EmailVerification => {
                let Some(url) = url("/email/verify") else {
                    return Ok(Err("the link is gone".to_owned()));
                };
                let minutes = minutes(mail.verification_ttl);
                let address = queued.recipient.as_str();
                (
                    "Confirm your email address for latchkey",
                    VerifyText {
                        username,
                        address,
                        url: &url,
                        minutes,
                    }
                    .render(),
                    VerifyHtml {
                        username,
                        address,
                        url: &url,
                        minutes,
                    }
                    .render(),
                )
            }
            MailKind::EmailChanged => (
                "Your latchkey account has a new email address",
                ChangedText { username }.render(),
                ChangedHtml { username }.render(),
            ),
        };
        Ok(match rendered {
            (subject, Ok(text), Ok(html)) => Ok(Letter {
                to: queued.recipient.clone(),
                subject: subject.to_owned(),
                text,
                html,
            }),
            (_, Err(e), _) | (_, _, Err(e)) => Err(format!("a mail template failed: {e}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ATTEMPTS, backoff};

    #[test]
    fn retries_back_off_to_an_hour_over_about_six_hours() {
        assert_eq!(backoff(1), 30);
        assert_eq!(backoff(2), 60);
        assert_eq!(backoff(8), 3600);
        assert_eq!(backoff(40), 3600);
        let total: i64 = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!((5 * 3600..8 * 3600).contains(&total), "{total}");
    }
}

//! Mail out, through a real SMTP server (Debian's `python3-aiosmtpd`,
//! `tests/smtp/server.py`) on loopback: STARTTLS with a certificate made
//! here, plain SMTP to this machine, a relay that refuses or is not there,
//! and the development outbox. `latchkey mail test` drives the transport as
//! an operator does.

use std::path::Path;
use std::process::Command;

use std::sync::Arc;

use latchkey::Auth;

use crate::helpers::smtp::{SmtpServer, free_port};
use crate::helpers::{PASSWORD, StoreKind, TestApp, TestStore, config_from};

/// `latchkey mail test ADDRESS` with `vars` (and nothing else of this
/// process's environment), in `dir`.
fn mail_test(dir: &Path, vars: &[(&str, &str)], address: &str) -> (bool, String, String) {
    let database = format!("sqlite://{}", dir.join("latchkey.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["mail", "test", address])
        .env_clear()
        .env("DATABASE_URL", database)
        .envs(vars.iter().copied())
        .current_dir(dir)
        .output()
        .expect("run latchkey");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_mail_goes_through_starttls_to_a_relay_with_a_private_ca() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}?tls=required", smtp.starttls);
    let ca = smtp.ca_file.to_str().unwrap().to_owned();
    let vars = [
        ("SMTP_URL", url.as_str()),
        ("SMTP_CA_FILE", ca.as_str()),
        ("MAIL_FROM", "Latchkey <no-reply@example.com>"),
    ];

    let (ok, out, err) = mail_test(smtp.dir.path(), &vars, "ann@example.com");

    assert!(ok, "{out}{err}");
    assert!(out.contains("sent to ann@example.com"), "{out}");
    assert!(
        out.contains("250 2.0.0 queued as 1"),
        "the relay's answer: {out}"
    );
    let delivered = smtp.delivered();
    assert_eq!(delivered.len(), 1);
    let mail = &delivered[0];
    for header in [
        "From: Latchkey <no-reply@example.com>",
        "To: ann@example.com",
        "Subject: latchkey: a test mail",
        "Content-Type: multipart/alternative",
        "Content-Type: text/plain",
        "Content-Type: text/html",
    ] {
        assert!(mail.contains(header), "{header} in:\n{mail}");
    }
    assert!(mail.contains("Message-ID: <"), "{mail}");
}

#[test]
fn a_relay_whose_certificate_is_not_trusted_gets_nothing() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}?tls=required", smtp.starttls);
    let vars = [("SMTP_URL", url.as_str())];

    let (ok, out, err) = mail_test(smtp.dir.path(), &vars, "ann@example.com");

    assert!(!ok, "{out}");
    assert!(err.contains("not sent"), "{err}");
    assert!(smtp.delivered().is_empty());
}

#[test]
fn plain_smtp_reaches_a_relay_on_this_machine_and_its_refusals_are_reported() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}", smtp.plain);
    let vars = [("SMTP_URL", url.as_str())];

    let (ok, out, err) = mail_test(smtp.dir.path(), &vars, "ann@example.com");
    assert!(ok, "{out}{err}");

    let (ok, _, err) = mail_test(smtp.dir.path(), &vars, "reject@example.com");
    assert!(!ok);
    assert!(err.contains("refused") && err.contains("550"), "{err}");
    let (ok, _, err) = mail_test(smtp.dir.path(), &vars, "tempfail@example.com");
    assert!(!ok);
    assert!(err.contains("not sent") && err.contains("451"), "{err}");
    assert_eq!(smtp.delivered().len(), 1, "only the first was accepted");

    // A relay that is not there: said so, not hung.
    let gone = format!("smtp://127.0.0.1:{}", free_port());
    let (ok, _, err) = mail_test(
        smtp.dir.path(),
        &[("SMTP_URL", gone.as_str())],
        "a@b.example",
    );
    assert!(!ok);
    assert!(err.contains("not sent"), "{err}");
}

#[test]
fn plain_smtp_to_another_machine_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [("SMTP_URL", "smtp://smtp.example.com:25")];
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["mail", "test", "ann@example.com"])
        .env_clear()
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("l.db").display()),
        )
        .envs(vars)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("SMTP_URL") && err.contains("loopback"),
        "{err}"
    );
}

#[test]
fn in_development_without_smtp_mail_is_written_to_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = mail_test(dir.path(), &[], "ann@example.com");
    assert!(ok, "{out}{err}");
    assert!(out.contains("latchkey-outbox"), "{out}");
    let files: Vec<_> = std::fs::read_dir(dir.path().join("latchkey-outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    let mail = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        mail.contains("From: latchkey <latchkey@localhost>"),
        "{mail}"
    );
    // Mail carries links that sign people in: the owner's alone.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("latchkey-outbox")), 0o700);
    assert_eq!(mode(&files[0]), 0o600);
}

/// `n` accounts with verified addresses `user{i}@example.com`, each of
/// which has asked for a reset link.
async fn queue_resets(app: &TestApp, n: usize) {
    for i in 0..n {
        let name = format!("user{i}");
        let user = app.add_user(&name, PASSWORD).await;
        app.auth
            .set_email(&user, &format!("{name}@example.com"), true)
            .await
            .unwrap();
        app.auth
            .forgot_password(&name, &latchkey::ClientInfo::default());
    }
    app.auth.settled().await;
}

#[tokio::test]
async fn a_relay_that_is_down_gets_the_mail_once_it_is_back() {
    let port = free_port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::with(&[("SMTP_URL", &url)]).await;
    queue_resets(&app, 1).await;

    // Nobody listens: not sent, kept, due again after a back-off.
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0);
    let waiting = app.auth.unsent_mail(10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].attempts, 1);
    assert_eq!(waiting[0].failed_at, None);
    assert!(waiting[0].last_error.is_some());
    // What an operator sees of it.
    let listed = app.cli(&["mail", "queue"], "");
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{out}");
    for part in [
        "password_reset",
        "to=user0@example.com",
        "attempts=1",
        "due ",
    ] {
        assert!(out.contains(part), "{part} in {out}");
    }

    // Back, on the same port: not before the back-off, then once.
    let Some(smtp) = SmtpServer::start_on(port, free_port()) else {
        return;
    };
    app.advance(10);
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0, "not due yet");
    // The operator's alert: the oldest mail waiting, by age.
    assert!(
        app.auth
            .metrics_text()
            .contains("latchkey_mail_queue_age_seconds 10\n")
    );
    app.advance(20);
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 1);
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0);
    assert!(
        app.auth
            .metrics_text()
            .contains("latchkey_mail_queue_age_seconds 0\n")
    );
    app.advance(3600);
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0);
    let delivered = smtp.delivered();
    assert_eq!(delivered.len(), 1, "once");
    assert!(delivered[0].contains("To: user0@example.com"));
    assert!(app.auth.unsent_mail(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_relay_that_refuses_a_mail_for_good_is_not_asked_again() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}", smtp.plain);
    let app = TestApp::with(&[("SMTP_URL", &url)]).await;
    let user = app.add_user("ann", PASSWORD).await;
    app.auth
        .set_email(&user, "reject@example.com", true)
        .await
        .unwrap();
    app.auth
        .forgot_password("ann", &latchkey::ClientInfo::default());
    app.auth.settled().await;
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0);
    let failed = app.auth.unsent_mail(10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].failed_at.is_some());
    assert_eq!(failed[0].link_id, None, "a mail given up on keeps no link");
    assert!(failed[0].last_error.as_deref().unwrap().contains("550"));
    app.advance(7200);
    assert_eq!(app.auth.deliver_mail().await.unwrap(), 0);
    assert!(smtp.delivered().is_empty());
    app.auth.flush_audit(true).await;
    assert!(app.event_kinds().await.iter().any(|k| k == "mail_failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_send_each_mail_once() {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let url = format!("smtp://127.0.0.1:{}", smtp.plain);
    let overrides = [("SMTP_URL", url.as_str()), ("MAIL_PER_HOUR", "1000")];
    let Some(app) = TestApp::on(StoreKind::Postgres, &overrides).await else {
        return;
    };
    const MAILS: usize = 40;
    queue_resets(&app, MAILS).await;
    // A second instance: its own pool, the same database.
    let config = config_from(&app.vars).unwrap();
    let other_store = TestStore::open(&config.database).await;
    let other =
        Auth::with_clock(config, other_store.shared(), Arc::new(app.clock.clone())).unwrap();

    // Three workers on each instance, all at once.
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let auth = if i % 2 == 0 {
                app.auth.clone()
            } else {
                other.clone()
            };
            tokio::spawn(async move { auth.deliver_mail().await.unwrap() })
        })
        .collect();
    let mut sent = 0;
    for worker in workers {
        sent += worker.await.unwrap();
    }
    assert_eq!(sent, MAILS);
    let mut recipients: Vec<String> = smtp
        .delivered()
        .iter()
        .filter_map(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("To: ").map(str::to_owned))
        })
        .collect();
    assert_eq!(recipients.len(), MAILS, "each mail once");
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), MAILS, "every mail");
    other_store.close().await;
}

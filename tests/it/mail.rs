//! Mail out, through a real SMTP server (Debian's `python3-aiosmtpd`,
//! `tests/smtp/server.py`) on loopback: STARTTLS with a certificate made
//! here, plain SMTP to this machine, a relay that refuses or is not there,
//! and the development outbox. `latchkey mail test` drives the transport as
//! an operator does.

use std::path::Path;
use std::process::Command;

use crate::helpers::smtp::{SmtpServer, free_port};

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

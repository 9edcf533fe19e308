//! The `latchkey` command: run the server, or manage users and signing keys
//! and read the audit trail through the same [`Auth`] methods the HTTP API
//! calls.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing_subscriber::EnvFilter;

use crate::auth::{ApiError, Auth, KeyRevocation, KeyRotation};
use crate::clock::{Clock, SystemClock, rfc3339};
use crate::config::{Config, LogFormat};
use crate::mail::{Letter, Mailer, Sent};
use crate::routes::request_log::{LineFormat, WithRequest};
use crate::store::User;
use crate::tls::TlsError;

/// The `latchkey` command line.
#[derive(Debug, Parser)]
#[command(name = "latchkey", version, about = "A session backend for browsers")]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage the signing keys of access tokens (README, "Signing keys").
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Mail (README, "Mail").
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// Print audit events, oldest first.
    Audit {
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// From this time (2026-11-22T08:00:00Z, Unix seconds) or age (24h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// At most this many events.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum MailCommand {
    /// Send one mail to ADDRESS through the configured transport, and say
    /// what the relay answered.
    Test { address: String },
    /// List the mails not sent yet: waiting (with their attempts and the
    /// relay's last answer) or given up on.
    Queue {
        /// At most this many, oldest first.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List each key: its id, algorithm, state and times.
    List,
    /// Publish a new key, which signs from JWKS_MAX_AGE from now; the key it
    /// replaces stays published until its tokens have expired.
    Rotate,
    /// Withdraw a key at once, after a leak: it no longer signs or verifies
    /// and leaves the JWKS; a fresh key signs if it was signing. Running
    /// instances drop it on SIGHUP, or at their next reload (a minute at most).
    Revoke {
        /// The key's id, as `keys list` shows it.
        // Key ids are base64url: one in 64 starts with `-`.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// Disable a user: every session ends, logins are refused.
    Disable { name: String },
    /// Re-enable a disabled user.
    Enable { name: String },
    /// Delete a user, irreversibly (README, "Deleting an account"): the
    /// account, its sessions and throttle counters, and its name, addresses
    /// and request ids in the audit trail, whose events keep the user id.
    Delete { name: String },
    /// List a user's live sessions.
    Sessions { name: String },
    /// Set a user's email address (README, "Email addresses"); --verified
    /// when you know it is theirs, so it signs in in place of the username.
    SetEmail {
        name: String,
        address: String,
        #[arg(long)]
        verified: bool,
    },
    /// Remove a user's second factor and recovery codes (a lost phone;
    /// README, "Second factor"), and end every session of theirs.
    ResetSecondFactor { name: String },
    /// Revoke a user's sessions: all of them, or one with --session.
    RevokeSessions {
        name: String,
        // Session ids are base64url: one in 64 starts with `-`.
        #[arg(long, allow_hyphen_values = true)]
        session: Option<String>,
    },
}

/// Runs the command `cli` names and says how it went; `main.rs` only
/// parses the arguments.
pub fn main(cli: Cli) -> ExitCode {
    // A `.env` file is optional; a malformed one is worth knowing about.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env().and_then(Config::with_development_secrets) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => crate::run::run(config, shutdown_signal()).await,
            Command::User { command } => user_command(config, command).await,
            Command::Keys { command } => keys_command(config, command).await,
            Command::Mail {
                command: MailCommand::Test { address },
            } => mail_test(&config, &address).await,
            Command::Mail {
                command: MailCommand::Queue { limit },
            } => print_mail_queue(config, limit).await,
            Command::Audit { user, since, limit } => {
                print_audit(config, user.as_deref(), &since, limit).await
            }
        }
    });
    // Whatever is still running (a request cut off at the shutdown timeout)
    // gets a moment, not forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The files TLS_CERT_FILE and TLS_KEY_FILE name are configuration
        // too, read once parsing is done: the same exit code (README,
        // Configuration).
        Err(e)
            if e.downcast_ref::<TlsError>().is_some()
                || e.downcast_ref::<crate::config::ConfigError>().is_some() =>
        {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(crate::config::default_log_filter()));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One JSON object per line, with the request (and so its request
        // id) first in `spans` on every line logged inside a request.
        LogFormat::Json => {
            let lines = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(true);
            logs.json()
                .event_format(WithRequest {
                    inner: lines,
                    format: LineFormat::Json,
                })
                .init();
        }
        // Lines written inside a request are built in a buffer to take its
        // fields, so they go without colours.
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal();
            logs.with_ansi(ansi)
                .event_format(WithRequest {
                    inner: tracing_subscriber::fmt::format().with_ansi(ansi),
                    format: LineFormat::Text,
                })
                .init();
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

async fn keys_command(config: Config, command: KeysCommand) -> anyhow::Result<()> {
    let auth = Auth::open(config).await?;
    let result = keys_action(&auth, command).await;
    auth.close().await;
    result
}

async fn keys_action(auth: &Auth, command: KeysCommand) -> anyhow::Result<()> {
    let time = |at: Option<i64>| at.map_or_else(|| "-".to_owned(), rfc3339);
    match command {
        KeysCommand::List => {
            println!(
                "{:<24} {:<6} {:<11} {:<20} {:<20} {:<20} removed",
                "kid", "alg", "state", "published", "signs from", "retires"
            );
            for key in auth.signing_keys().await? {
                println!(
                    "{:<24} {:<6} {:<11} {:<20} {:<20} {:<20} {}{}",
                    key.kid,
                    key.algorithm,
                    key.state.as_str(),
                    time(key.created_at),
                    time(key.signs_from),
                    time(key.retires_at),
                    time(key.removed_at),
                    if key.can_sign {
                        ""
                    } else {
                        "  (this instance cannot sign with it)"
                    },
                );
            }
        }
        KeysCommand::Rotate => match auth.rotate_keys().await? {
            KeyRotation::Added { kid, signs_from } => {
                println!(
                    "added key {kid}: published now, signs from {}",
                    rfc3339(signs_from)
                );
            }
            KeyRotation::AlreadyPending { kid, signs_from } => {
                println!(
                    "key {kid} already waits to sign from {}; no other was added",
                    rfc3339(signs_from)
                );
            }
            KeyRotation::ConfiguredSecret => bail!(
                "HS256 access tokens are signed with JWT_SECRET: to change it, set the old \
                 value as JWT_SECRET_PREVIOUS and restart each instance (README, \"Signing keys\")"
            ),
        },
        KeysCommand::Revoke { kid } => match auth.revoke_key(&kid).await? {
            KeyRevocation::Revoked { signing } => {
                println!(
                    "revoked key {kid}: it no longer signs or verifies and has left the JWKS; \
                     send SIGHUP to running instances to drop it at once"
                );
                match signing {
                    Some(signing) => println!("key {signing} signs now"),
                    None => println!(
                        "no key signs now: the next token an instance issues makes a fresh one \
                         (if its JWT_REFRESH_SECRET derives no revoked key)"
                    ),
                }
            }
            KeyRevocation::Unknown => bail!("no key {kid} to revoke (see `latchkey keys list`)"),
            KeyRevocation::ConfiguredSecret => bail!(
                "HS256 access tokens are signed with JWT_SECRET: to withdraw it, set a new \
                 JWT_SECRET without JWT_SECRET_PREVIOUS and restart each instance"
            ),
        },
    }
    Ok(())
}

async fn user_command(config: Config, command: UserCommand) -> anyhow::Result<()> {
    // Read before the store opens: nothing is written for a mistyped password.
    let password = match &command {
        UserCommand::Add { .. } => Some(read_password()?),
        _ => None,
    };
    let auth = Auth::open(config).await?;
    let result = user_action(&auth, command, password).await;
    auth.close().await;
    result
}

async fn user_action(
    auth: &Auth,
    command: UserCommand,
    password: Option<String>,
) -> anyhow::Result<()> {
    if let UserCommand::Add { name, role } = &command {
        let password = password.unwrap_or_default();
        let user = auth
            .create_user(name, &password, role)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "created user {} (id {}, role {})",
            word(&user.username),
            user.id,
            word(&user.role)
        );
        return Ok(());
    }
    match command {
        UserCommand::Add { .. } => {}
        UserCommand::Disable { name } => {
            let user = named(auth, &name).await?;
            let ended = match auth.disable_user(&user).await {
                Err(ApiError::NotFound) => bail!("no user named {}", word(&user.username)),
                other => other?,
            };
            println!("disabled {name}; {ended} sessions revoked");
        }
        UserCommand::Enable { name } => {
            let user = named(auth, &name).await?;
            auth.enable_user(&user).await?;
            println!("enabled {name}");
        }
        UserCommand::Delete { name } => {
            let user = named(auth, &name).await?;
            let ended = match auth.delete_user(&user).await {
                Err(ApiError::NotFound) => bail!("no user named {}", word(&user.username)),
                other => other?,
            };
            println!(
                "deleted {} (id {}); {ended} sessions ended",
                word(&user.username),
                user.id
            );
        }
        UserCommand::Sessions { name } => {
            let user = named(auth, &name).await?;
            for s in auth.user_sessions(&user).await? {
                println!(
                    "{}  created {}  last used {}  from {}  {}",
                    word(&s.id),
                    rfc3339(s.created_at),
                    rfc3339(s.last_used_at),
                    word(s.ip.as_deref().unwrap_or("-")),
                    text(s.user_agent.as_deref().unwrap_or("-")),
                );
            }
        }
        UserCommand::SetEmail {
            name,
            address,
            verified,
        } => {
            let user = named(auth, &name).await?;
            let user = auth
                .set_email(&user, &address, verified)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}'s email is {} ({})",
                word(&user.username),
                word(user.email.as_deref().unwrap_or_default()),
                if user.email_verified {
                    "verified"
                } else {
                    "not verified"
                }
            );
        }
        UserCommand::ResetSecondFactor { name } => {
            let user = named(auth, &name).await?;
            let ended = auth.reset_second_factor(&user).await?;
            println!(
                "removed {}'s second factor; {ended} sessions ended",
                word(&user.username)
            );
        }
        UserCommand::RevokeSessions { name, session } => {
            let user = named(auth, &name).await?;
            let ended = match auth.revoke_user_sessions(&user, session.as_deref()).await {
                Err(ApiError::NotFound) => bail!(
                    "{} has no live session {}",
                    user.username,
                    session.as_deref().unwrap_or_default()
                ),
                other => other?,
            };
            println!("revoked {ended} sessions of {name}");
        }
    }
    Ok(())
}

/// `latchkey mail test ADDRESS`: one mail through the transport, and what
/// became of it.
async fn mail_test(config: &Config, address: &str) -> anyhow::Result<()> {
    let mailer = Mailer::new(&config.mail)?;
    let letter = Letter {
        to: address.to_owned(),
        subject: "latchkey: a test mail".to_owned(),
        text: "This mail was sent by `latchkey mail test`: latchkey can send mail.\n".to_owned(),
        html: "<p>This mail was sent by <code>latchkey mail test</code>: latchkey can send \
               mail.</p>\n"
            .to_owned(),
    };
    match mailer.send(&letter).await {
        Sent::Accepted(said) => {
            println!(
                "sent to {} through {}: {}",
                word(address),
                mailer.describe(),
                text(&said)
            );
            Ok(())
        }
        Sent::Refused(why) => bail!("refused by {}: {why}", mailer.describe()),
        Sent::Failed(why) => bail!("not sent through {}: {why}", mailer.describe()),
    }
}

/// The user `name` names, or an error that says there is none.
async fn named(auth: &Auth, name: &str) -> anyhow::Result<User> {
    auth.user_named(name)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .with_context(|| format!("no user named {}", name.trim().to_lowercase()))
}

/// `latchkey mail queue`: one line per mail not sent yet.
async fn print_mail_queue(config: Config, limit: i64) -> anyhow::Result<()> {
    let auth = Auth::open(config).await?;
    let mails = auth.unsent_mail(limit).await?;
    auth.close().await;
    if mails.is_empty() {
        println!("no mail waiting");
    }
    for m in mails {
        let state = match m.failed_at {
            Some(at) => format!("failed {}", rfc3339(at)),
            None => format!("due {}", rfc3339(m.next_attempt_at)),
        };
        println!(
            "{:<6} {}  {:<20} to={} attempts={} {state} {}",
            m.id,
            rfc3339(m.created_at),
            word(&m.kind),
            word(&m.recipient),
            m.attempts,
            text(m.last_error.as_deref().unwrap_or("-")),
        );
    }
    Ok(())
}

async fn print_audit(
    config: Config,
    user: Option<&str>,
    since: &str,
    limit: i64,
) -> anyhow::Result<()> {
    let since = parse_since(since, SystemClock.now())?;
    let auth = Auth::open(config).await?;
    let user = match user {
        Some(name) => Some(named(&auth, name).await?),
        None => None,
    };
    let events = auth.audit_events(user.as_ref(), since, limit).await?;
    auth.close().await;
    for e in events {
        let field = |v: &Option<String>| word(v.as_deref().unwrap_or("-")).into_owned();
        let who = e
            .username
            .clone()
            .or(e.user_id.map(|id| id.to_string()))
            .unwrap_or_else(|| "-".to_owned());
        // An aggregated row stands for `count` events of its minute.
        let times = if e.count > 1 {
            format!(" x{}", e.count)
        } else {
            String::new()
        };
        println!(
            "{}  {:<28} user={} session={} ip={} request={} {}",
            rfc3339(e.at),
            format!("{}{times}", word(&e.kind)),
            word(&who),
            field(&e.session_id),
            field(&e.ip),
            field(&e.request_id),
            text(e.detail.as_deref().unwrap_or("-")),
        );
    }
    Ok(())
}

/// Stored text as the last, free-text column of a line: whatever a client
/// could have put in it (a user agent, a failed login's name) shows as one
/// line of visible characters, so it can neither forge a line of its own nor
/// reorder what the terminal shows (bidi overrides). Control and other
/// non-printing characters (U+2028, U+202E, zero-width ones) and `\` are
/// written as Rust escapes (`\n`, `\u{202e}`, `\\`); quotes are left alone.
fn text(stored: &str) -> Cow<'_, str> {
    escaped(stored, |_| false)
}

/// Stored text as one `key=value` field: as [`text`], with spaces escaped
/// too (`\u{20}`), so an attempted username cannot add fields of its own.
fn word(stored: &str) -> Cow<'_, str> {
    escaped(stored, char::is_whitespace)
}

fn escaped(stored: &str, also: impl Fn(char) -> bool) -> Cow<'_, str> {
    let plain = |c: char| !also(c) && (matches!(c, '"' | '\'') || c.escape_debug().len() == 1);
    if stored.chars().all(plain) {
        return Cow::Borrowed(stored);
    }
    let mut out = String::with_capacity(stored.len() + 8);
    for c in stored.chars() {
        if plain(c) {
            out.push(c);
        } else if c.escape_debug().len() == 1 {
            // Printable, but escaped on request (a space in a field).
            out.extend(c.escape_unicode());
        } else {
            out.extend(c.escape_debug());
        }
    }
    Cow::Owned(out)
}

/// From the terminal without echo, or one line from a pipe.
fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Repeat password: ")?;
        anyhow::ensure!(first == second, "the passwords differ");
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// `--since`: RFC 3339 (`2026-11-22T08:00:00Z`), Unix seconds, or an age
/// such as `90s`, `30m`, `24h`, `7d`.
fn parse_since(value: &str, now: i64) -> anyhow::Result<i64> {
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
    use clap::Parser;

    use super::{Cli, Command, UserCommand, parse_since};

    #[test]
    #[allow(clippy::expect_used, clippy::panic)] // a failed expectation should panic with its message
    fn a_session_id_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from([
            "latchkey",
            "user",
            "revoke-sessions",
            "ann",
            "--session",
            "-kQ3x_session-id",
        ])
        .expect("parses");
        let Some(Command::User {
            command: UserCommand::RevokeSessions { session, .. },
        }) = cli.command
        else {
            panic!("not revoke-sessions: {cli:?}");
        };
        assert_eq!(session.as_deref(), Some("-kQ3x_session-id"));
    }

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

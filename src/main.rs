//! The `latchkey` command: run the server, or manage users. Thin on purpose;
//! everything it does is in the library.

use std::borrow::Cow;
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latchkey::admin;
use latchkey::auth::credentials;
use latchkey::auth::password::Hasher;
use latchkey::clock::rfc3339;
use latchkey::clock::{Clock, SystemClock};
use latchkey::config::{AppEnv, LogFormat};
use latchkey::{AppState, Config, open_store};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "A session backend for browsers")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Manage users.
    User {
        #[command(subcommand)]
        command: UserCommand,
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

#[derive(Subcommand)]
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
    /// List a user's live sessions.
    Sessions { name: String },
    /// Revoke a user's sessions: all of them, or one with --session.
    RevokeSessions {
        name: String,
        #[arg(long)]
        session: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A `.env` file is optional; a malformed one is worth knowing about.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: .env: {e}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
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
            Command::Serve => run_server(config).await,
            Command::User { command } => user_command(config, command).await,
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
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("latchkey=info,tower_http=info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // One JSON object per line, with the request's span (and so its
        // request id) on every line logged inside a request.
        LogFormat::Json => logs
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

async fn run_server(mut config: Config) -> anyhow::Result<()> {
    // Before anything opens files: the connection cap, not the kernel's
    // limit on open files, must be what stops new connections.
    config.max_connections = latchkey::server::fit_open_file_limit(config.max_connections);
    if config.generated_secrets {
        let file = latchkey::dev_secrets::path_for(&config.database);
        tracing::warn!(
            file = %file.display(),
            "JWT_SECRET / JWT_REFRESH_SECRET are not set: using development secrets kept in this \
             file. Every instance must share the same secrets: set both before running several \
             instances or in production."
        );
    }
    if config.env == AppEnv::Development && !config.cookie_secure {
        tracing::warn!("COOKIE_SECURE=false: the refresh cookie is sent over plain HTTP");
    }
    let store = open_store(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let state = AppState::new(config, store);
    let hasher = state.hasher.clone();
    tokio::spawn(async move {
        if let Err(e) = hasher.warm_up().await {
            tracing::warn!(error = %e, "could not prepare the dummy password hash");
        }
    });
    tracing::info!(address = %listener.local_addr()?, "latchkey listening");
    latchkey::run(listener, state, shutdown_signal()).await?;
    tracing::info!("latchkey stopped");
    Ok(())
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

async fn user_command(config: Config, command: UserCommand) -> anyhow::Result<()> {
    let now = SystemClock.now();
    if let UserCommand::Add { name, role } = &command {
        let password = read_password()?;
        let store = open_store(&config).await?;
        let hasher = Hasher::new(config.bcrypt_cost);
        let user = credentials::create_account(store.as_ref(), &hasher, name, &password, role, now)
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
    let store = open_store(&config).await?;
    let store = store.as_ref();
    match command {
        UserCommand::Add { .. } => {}
        UserCommand::Disable { name } => {
            let ended = admin::disable_user(store, &name, now).await?;
            println!("disabled {name}; {ended} sessions revoked");
        }
        UserCommand::Enable { name } => {
            admin::enable_user(store, &name, now).await?;
            println!("enabled {name}");
        }
        UserCommand::Sessions { name } => {
            for s in admin::sessions(store, &name, now).await? {
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
        UserCommand::RevokeSessions { name, session } => {
            let ended = admin::revoke_sessions(store, &name, session.as_deref(), now).await?;
            println!("revoked {ended} sessions of {name}");
        }
    }
    Ok(())
}

async fn print_audit(
    config: Config,
    user: Option<&str>,
    since: &str,
    limit: i64,
) -> anyhow::Result<()> {
    let since = admin::parse_since(since, SystemClock.now())?;
    let store = open_store(&config).await?;
    for e in admin::audit(store.as_ref(), user, since, limit).await? {
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

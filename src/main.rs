//! The `latchkey` command: run the server, or manage users. Thin on purpose;
//! everything it does is in the library.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use latchkey::auth::credentials;
use latchkey::auth::password::Hasher;
use latchkey::clock::{Clock, SystemClock};
use latchkey::config::AppEnv;
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
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input.
    Add {
        name: String,
        #[arg(long, default_value = "user")]
        role: String,
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
    init_logging();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
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
            Command::User {
                command: UserCommand::Add { name, role },
            } => add_user(config, &name, &role).await,
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

fn init_logging() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("latchkey=info,tower_http=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run_server(config: Config) -> anyhow::Result<()> {
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

async fn add_user(config: Config, name: &str, role: &str) -> anyhow::Result<()> {
    let password = read_password()?;
    let store = open_store(&config).await?;
    let hasher = Hasher::new(config.bcrypt_cost);
    let user = credentials::create_account(
        store.as_ref(),
        &hasher,
        name,
        &password,
        role,
        SystemClock.now(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "created user {} (id {}, role {})",
        user.username, user.id, user.role
    );
    Ok(())
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

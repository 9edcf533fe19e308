//! Getting a latchkey ready to be measured: a database with one account and
//! N stored sessions, and clients signed in over HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use hyper::Method;
use hyper::body::Bytes;
use hyper::header::HeaderValue;
use sqlx::{Connection, PgConnection, SqliteConnection};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::http::Conn;
use crate::load::refresh_cookie;

pub const USERNAME: &str = "bench";
pub const PASSWORD: &str = "correct horse battery staple";

/// Creates the account with latchkey's own CLI (which also applies the
/// migrations), as an operator would.
pub async fn add_user(latchkey: &Path, env: &[(String, String)]) -> Result<()> {
    add_user_named(latchkey, env, USERNAME).await
}

/// As [`add_user`], the account named `username` (same password).
pub async fn add_user_named(
    latchkey: &Path,
    env: &[(String, String)],
    username: &str,
) -> Result<()> {
    let mut child = Command::new(latchkey)
        .args(["user", "add", username])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running `latchkey user add`")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
    }
    let output = child.wait_with_output().await?;
    ensure!(
        output.status.success(),
        "`latchkey user add` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Stores `count` live sessions of the first account (user id 1) in one
/// statement, so the store holds as many rows as a busy site would.
pub async fn seed_sessions(database_url: &str, count: u64) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs()
        .cast_signed();
    let (idle, absolute) = (now + 86_400, now + 2_592_000);
    let count = i64::try_from(count)?;
    if database_url.starts_with("postgres") {
        let mut db = PgConnection::connect(database_url).await?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, \
                 last_used_at, idle_expires_at, absolute_expires_at) \
             SELECT 'seeded-' || i, 1, 0, $2, $2, $2, $3, $4 FROM generate_series(1, $1) AS i",
        )
        .bind(count)
        .bind(now)
        .bind(idle)
        .bind(absolute)
        .execute(&mut db)
        .await?;
        db.close().await?;
    } else {
        let mut db = SqliteConnection::connect(database_url).await?;
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1) \
             INSERT INTO sessions (id, user_id, generation, rotated_at, created_at, \
                 last_used_at, idle_expires_at, absolute_expires_at) \
             SELECT 'seeded-' || i, 1, 0, ?2, ?2, ?2, ?3, ?4 FROM n",
        )
        .bind(count)
        .bind(now)
        .bind(idle)
        .bind(absolute)
        .execute(&mut db)
        .await?;
        db.close().await?;
    }
    Ok(())
}

/// The JSON body of a login as the account.
pub fn login_body() -> Bytes {
    Bytes::from(serde_json::json!({ "username": USERNAME, "password": PASSWORD }).to_string())
}

/// A signed-in client: its access token (as a Bearer value) and refresh cookie.
pub struct SignedIn {
    pub bearer: HeaderValue,
    pub cookie: HeaderValue,
}

/// Signs in `count` times, a few at a time (each login is a bcrypt hash).
pub async fn sign_in(addr: SocketAddr, count: usize) -> Result<Vec<SignedIn>> {
    let mut signed_in = Vec::with_capacity(count);
    let mut conn = Conn::open(addr).await?;
    let json = HeaderValue::from_static("application/json");
    for _ in 0..count {
        let reply = conn
            .send(
                Method::POST,
                "/login",
                &[("content-type", &json)],
                login_body(),
            )
            .await?;
        if !reply.status.is_success() {
            bail!(
                "signing in: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
        }
        let body: serde_json::Value = serde_json::from_slice(&reply.body)?;
        let token = body["access_token"]
            .as_str()
            .context("no access_token in the login answer")?;
        signed_in.push(SignedIn {
            bearer: HeaderValue::from_str(&format!("Bearer {token}"))?,
            cookie: refresh_cookie(&reply.headers).context("no refresh cookie at login")?,
        });
    }
    Ok(signed_in)
}

/// A fresh PostgreSQL database on the server `admin_url` points at; its URL.
pub async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String> {
    let mut admin = PgConnection::connect(admin_url)
        .await
        .with_context(|| "connecting to PostgreSQL (--database-url)")?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let mut url = url::Url::parse(admin_url)?;
    url.set_path(name);
    Ok(url.to_string())
}

pub async fn drop_postgres_database(admin_url: &str, name: &str) -> Result<()> {
    let mut admin = PgConnection::connect(admin_url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    Ok(())
}

/// Pins the PostgreSQL server that `database_url` names to `cpu`, the
/// servers' CPU, so that the database shares the core with latchkey rather
/// than taking time from the load generator's: its postmaster (whose later
/// children inherit the pinning) and every child it has now. Needs the
/// right to change their affinity (root, or the server's own user) and the
/// server on this machine; says why not otherwise. Undo with [`unpin`].
pub async fn pin_postgres(database_url: &str, cpu: usize) -> Result<Vec<u32>> {
    let mut db = PgConnection::connect(database_url).await?;
    let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    let postmaster = parent(u32::try_from(backend)?)?;
    let mut pids = vec![postmaster];
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if parent(pid).is_ok_and(|p| p == postmaster) {
            pids.push(pid);
        }
    }
    for &pid in &pids {
        set_affinity(pid, &cpu.to_string())?;
    }
    Ok(pids)
}

/// Gives `pids` every online CPU again.
pub fn unpin(pids: &[u32]) -> Result<()> {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    for &pid in pids {
        // A backend that has exited since needs nothing.
        let _ = set_affinity(pid, online.trim());
    }
    Ok(())
}

/// The parent of process `pid` (the fourth field of `/proc/PID/stat`, after
/// the command name in parentheses, which may itself hold spaces).
fn parent(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').context("a /proc stat line")?.1;
    Ok(after
        .split_whitespace()
        .nth(1)
        .context("a parent pid")?
        .parse()?)
}

fn set_affinity(pid: u32, cpus: &str) -> Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["--all-tasks", "--pid", "--cpu-list", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    ensure!(status.success(), "taskset could not pin process {pid}");
    Ok(())
}

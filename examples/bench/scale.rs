//! `refresh` on SQLite with many stored sessions against few (README,
//! "Rotation cost does not grow with stored sessions"): two databases alike
//! but for the number of sessions stored, each with a latchkey of its own,
//! measured in alternating rounds. The stored sessions belong to an account
//! that never signs in, so the clients' own account has only their sessions
//! and its sign-ins evict nothing.

use std::path::Path;

use anyhow::Result;

use crate::load::Work;
use crate::server::{Launch, Server};
use crate::setup;

/// The stored sessions of the reference database.
pub const FEW: u64 = 10_000;

/// A latchkey on a database of its own with `stored` sessions, and the
/// refresh work of `clients` signed-in clients against it.
pub async fn server_with(
    latchkey: &Path,
    secrets: &[(String, String)],
    dir: &Path,
    launch: &impl Fn(&Path, Vec<(String, String)>, &str) -> Launch,
    stored: u64,
    clients: usize,
) -> Result<(Server, Vec<Work>)> {
    let name = format!("latchkey-scale-{stored}");
    let url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let env = crate::with(secrets, "DATABASE_URL", &url);
    // User 1 holds the stored sessions; the clients sign in as user 2.
    setup::add_user_named(latchkey, &env, "stored").await?;
    setup::add_user(latchkey, &env).await?;
    setup::seed_sessions(&url, stored).await?;
    let (server, _) = launch(latchkey, env, &name).start().await?;
    let signed_in = setup::sign_in(server.addr, clients).await?;
    Ok((server, crate::refresh_work(&signed_in)))
}

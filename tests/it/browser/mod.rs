//! Tests in a real browser: Debian's Chromium, headless, driven through
//! chromedriver (fantoccini) against a real latchkey on a port-0 socket.
//!
//! Without Chromium or chromedriver these tests print a notice and pass as
//! skipped; with `CI=true` a missing browser fails them instead.

mod account;
mod pages;
mod recovery;
mod sessions;
mod spa;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use latchkey::Auth;
use latchkey::store::SqliteStore;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::helpers::{TestServer, config_from, test_vars};

/// Two browsers at a time: each is a handful of processes, and the machine
/// that runs CI has two cores.
static SLOTS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(2)));

const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,900",
];

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>())?;
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A chromedriver of this test's own, and a slot to run browsers in.
pub struct Browser {
    driver: Child,
    url: String,
    chromium: PathBuf,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver, or returns `None` (after a notice) when this
    /// machine has no browser. In CI a missing browser is a failure.
    pub async fn launch() -> Option<Self> {
        let chromium = find(
            "CHROME_BIN",
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find("CHROMEDRIVER", &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true");
            assert!(
                !ci,
                "CI=true but Chromium or chromedriver is missing: .ci/run must install them"
            );
            eprintln!(
                "notice: skipping a browser test: chromium and chromedriver are not installed"
            );
            return None;
        };
        let slot = SLOTS.clone().acquire_owned().await.expect("semaphore open");
        let (driver, url) = start_driver(&driver);
        Some(Self {
            driver,
            url,
            chromium,
            _slot: slot,
        })
    }

    /// A fresh browser profile: its own cookies and storage.
    pub async fn context(&self) -> Client {
        self.context_with(&[]).await
    }

    /// A fresh profile in which pages run no JavaScript at all.
    pub async fn context_without_javascript(&self) -> Client {
        self.context_with(&["--blink-settings=scriptEnabled=false"])
            .await
    }

    async fn context_with(&self, extra: &[&str]) -> Client {
        let args: Vec<&str> = CHROMIUM_ARGS.iter().chain(extra).copied().collect();
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": self.chromium,
                "args": args,
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }))
        .expect("capabilities");
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a chromedriver session")
    }
}

/// Starts chromedriver on a port of its choosing. A driver that exits
/// before it reports one (seen once under a loaded machine, with no word
/// why) is started again, up to three times in all.
fn start_driver(path: &Path) -> (Child, String) {
    for _ in 0..3 {
        let mut child = Command::new(path)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        // "ChromeDriver was started successfully on port 46325."
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            line.split("started successfully on port ")
                .nth(1)
                .map(|p| p.trim_end_matches('.').trim().to_owned())
        });
        let Some(port) = port else {
            let _ = child.kill();
            let _ = child.wait();
            continue;
        };
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        return (child, format!("http://127.0.0.1:{port}"));
    }
    panic!("chromedriver reports its port: it exited without one three times");
}

/// A clock a test moves by hand, starting at the real time (browsers keep
/// real time; the server then sees time pass that the browser did not).
pub fn clock_at_real_now() -> latchkey::clock::ManualClock {
    latchkey::clock::ManualClock::starting_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .try_into()
            .unwrap(),
    )
}

/// latchkey on a real socket, with the real clock (browsers keep real time).
pub struct Latchkey {
    pub server: TestServer,
    pub auth: Auth,
    pub store: Arc<dyn latchkey::store::Store>,
    /// Its settings, for the `latchkey` binary to run against its database.
    pub vars: std::collections::HashMap<String, String>,
    _dir: TempDir,
}

impl Latchkey {
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        Self::start_with_clock(overrides, Arc::new(latchkey::clock::SystemClock)).await
    }

    /// As [`Latchkey::start`], its time read from `clock`: a test moves a
    /// [`ManualClock`](latchkey::clock::ManualClock) started at the real
    /// time forward, and the server sees time pass that the browser did not.
    pub async fn start_with_clock(
        overrides: &[(&str, &str)],
        clock: Arc<dyn latchkey::clock::Clock>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let vars = test_vars(&dir, overrides);
        let config = config_from(&vars).expect("config");
        let path = config.database.sqlite_path().expect("sqlite").to_owned();
        let store = Arc::new(SqliteStore::open(&path).await.expect("store"));
        let bind = vars.contains_key("BIND").then_some(config.server.bind);
        let auth = Auth::with_clock(config, store.clone(), clock).expect("secrets set");
        let server = match bind {
            // Where the test said: the origin mail links point at.
            Some(address) => {
                TestServer::serving_at(address, latchkey::router(auth.clone()), None).await
            }
            None => TestServer::start(auth.clone()).await,
        };
        Self {
            server,
            auth,
            store,
            vars,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn origin(&self) -> String {
        self.server.url("")
    }

    pub async fn add_user(&self, username: &str, password: &str) {
        self.auth
            .create_user(username, password, "user")
            .await
            .expect("create user");
    }
}

/// Browser console entries (errors, CSP violations) via chromedriver's log endpoint.
#[derive(Debug)]
struct BrowserLog;

impl WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(r#"{"type":"browser"}"#.to_owned()),
        )
    }
}

/// Console messages at warning level or above since the last call.
pub async fn console_problems(client: &Client) -> Vec<String> {
    let entries = client.issue_cmd(BrowserLog).await.expect("browser log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| matches!(e["level"].as_str(), Some("SEVERE" | "WARNING")))
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn text(client: &Client, id: &str) -> String {
    match client.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

pub async fn path(client: &Client) -> String {
    client
        .current_url()
        .await
        .map(|u| u.path().to_owned())
        .unwrap_or_default()
}

pub async fn run_js(client: &Client, script: &str) -> Value {
    client.execute(script, vec![]).await.expect("script runs")
}

/// Signs in through the HTML form at `/login` and waits for `/app` to show
/// the `/protected` answer.
pub async fn sign_in(client: &Client, app: &Latchkey, username: &str, password: &str) {
    sign_in_remembering(client, app, username, password, true).await;
}

/// As [`sign_in`], with the form's "Keep me signed in" box (ticked by
/// default) left as `remember` says.
pub async fn sign_in_remembering(
    client: &Client,
    app: &Latchkey,
    username: &str,
    password: &str,
    remember: bool,
) {
    client.goto(&app.url("/login")).await.expect("open /login");
    let keep = client.find(Locator::Id("remember")).await.expect("the box");
    let ticked = keep.prop("checked").await.expect("checked").as_deref() == Some("true");
    assert!(ticked, "Keep me signed in is ticked by default");
    if !remember {
        keep.click().await.expect("untick");
    }
    fill(client, "username", username).await;
    fill(client, "password", password).await;
    submit(client).await;
    wait_until(
        Duration::from_secs(10),
        "/app to show the /protected answer",
        || async {
            path(client).await == "/app"
                && text(client, "protected")
                    .await
                    .contains(&format!("Hello, {username}"))
        },
    )
    .await;
}

/// Types `value` into the field whose id is `id`.
pub async fn fill(client: &Client, id: &str, value: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|_| panic!("#{id}"))
        .send_keys(value)
        .await
        .unwrap_or_else(|_| panic!("type into #{id}"));
}

/// Clicks the element whose id is `id`.
pub async fn click(client: &Client, id: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap_or_else(|_| panic!("#{id}"))
        .click()
        .await
        .unwrap_or_else(|_| panic!("click #{id}"));
}

/// Clicks the page's submit button.
pub async fn submit(client: &Client) {
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .expect("a submit button")
        .click()
        .await
        .expect("click submit");
}

/// Whether `/app` in this window currently shows a signed-in user.
pub async fn signed_in_as(client: &Client, username: &str) -> bool {
    path(client).await == "/app"
        && text(client, "username").await == username
        && text(client, "protected")
            .await
            .contains(&format!("Hello, {username}"))
}

/// Clicks /app's "call /protected" button and waits for a `200` answer, the
/// page still signed in as `username`.
pub async fn call_protected(client: &Client, username: &str, limit: Duration) {
    click(client, "call").await;
    wait_until(limit, "a fresh /protected answer", || async {
        text(client, "protected-at").await.starts_with("Status 200")
            && signed_in_as(client, username).await
    })
    .await;
}

//! latchkey as a child process: the real binary, its output collected on
//! threads (so its pipes never fill), its address read from its log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The child's output, read on threads so its pipes never fill and block it.
pub struct ChildServer {
    child: Child,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    base: String,
}

fn pump(stream: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&line)),
            }
        }
    })
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl ChildServer {
    pub fn start(vars: &HashMap<String, String>, dir: &Path) -> Self {
        Self::spawn(Command::new(env!("CARGO_BIN_EXE_latchkey")), vars, dir)
    }

    /// As `start`, under a soft and hard limit of `limit` open files.
    pub fn start_with_open_file_limit(
        vars: &HashMap<String, String>,
        dir: &Path,
        limit: u32,
    ) -> Self {
        let mut shell = Command::new("/bin/sh");
        shell.args([
            "-c",
            "ulimit -n \"$1\" && exec \"$0\"",
            env!("CARGO_BIN_EXE_latchkey"),
            &limit.to_string(),
        ]);
        Self::spawn(shell, vars, dir)
    }

    fn spawn(mut command: Command, vars: &HashMap<String, String>, dir: &Path) -> Self {
        let mut child = command
            .env_clear()
            .envs(vars)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start latchkey");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            pump(child.stderr.take().unwrap(), stderr.clone()),
            pump(child.stdout.take().unwrap(), stdout.clone()),
        ];
        let mut server = Self {
            child,
            stderr,
            stdout,
            readers,
            base: String::new(),
        };
        server.base = format!("http://{}", server.wait_for_address());
        server
    }

    /// The address from the "latchkey listening" line.
    fn wait_for_address(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = strip_ansi(&self.stderr.lock().unwrap());
            if let Some(line) = text.lines().find(|l| l.contains("latchkey listening")) {
                // `address=127.0.0.1:3000` in text, `"address":"127.0.0.1:3000"` in JSON.
                let address = line
                    .split("address=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .or_else(|| line.split("\"address\":\"").nth(1)?.split('"').next())
                    .unwrap_or_else(|| panic!("no address in {line:?}"));
                return address.to_owned();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("latchkey exited ({status}) before listening:\n{text}");
            }
            assert!(Instant::now() < deadline, "latchkey did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the child and returns everything it wrote (stderr, stdout).
    pub fn stop(mut self) -> (String, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let stderr = self.stderr.lock().unwrap().clone();
        let stdout = self.stdout.lock().unwrap().clone();
        (stderr, stdout)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as a service manager does to stop a service.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Sends SIGHUP, as `systemctl reload` does (with `ExecReload=kill -HUP $MAINPID`).
    pub fn hang_up(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }

    /// `host:port` it listens on.
    pub fn address(&self) -> String {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, address)| address)
            .to_owned()
    }

    /// Kills the process outright (SIGKILL): a crash, as far as it can tell.
    pub fn crash(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Waits up to `limit` for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything it has written to stderr so far, without colours.
    pub fn stderr(&self) -> String {
        strip_ansi(&self.stderr.lock().unwrap())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // Only when a test failed before `stop`: never leave the child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

//! A server under test: a child process pinned to one CPU with `taskset`,
//! whose CPU time and peak memory are read from `/proc` (Linux only, as the
//! benchmark is).

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How a server is started: the program, its environment, the CPU it gets.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub env: Vec<(String, String)>,
    pub cpu: usize,
    /// Where its standard error (the logs) goes.
    pub log: PathBuf,
}

pub struct Server {
    child: Child,
    pid: u32,
    pub addr: SocketAddr,
}

impl Launch {
    /// Starts the server on a free loopback port and waits until it accepts
    /// connections; also says how long that took from the spawn.
    pub async fn start(&self) -> Result<(Server, Duration)> {
        let addr = free_port()?;
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let started = Instant::now();
        let mut child = Command::new("taskset")
            .arg("--cpu-list")
            .arg(self.cpu.to_string())
            .arg(&self.program)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("BIND", addr.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting the server under taskset (util-linux)")?;
        let pid = child.id().context("the server exited at once")?;
        loop {
            if TcpStream::connect(addr).await.is_ok() {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited ({status}) before listening; see {}",
                    self.program.display(),
                    self.log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("{} did not listen within 30 s", self.program.display());
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        let ready = started.elapsed();
        Ok((Server { child, pid, addr }, ready))
    }
}

impl Server {
    /// CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        // taskset execs the program, so the child's pid is the server's.
        cpu_time(self.pid)
    }

    /// Starts a new peak-memory measurement (proc(5): clear_refs, value 5).
    pub fn reset_peak_memory(&self) -> Result<()> {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5")
            .context("resetting the peak RSS")
    }

    /// Peak resident memory since the last reset, in MiB.
    pub fn peak_memory_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")?;
        Ok(kib / 1024.0)
    }

    /// SIGTERM, as a service manager would stop it; SIGKILL after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// CPU time (user + system) that process `pid`, all its threads, has used so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which may itself hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5), 12 and 13 here.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc/<pid>/stat")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // USER_HZ is 100 on every Linux the benchmark runs on.
    Ok(Duration::from_millis(ticks * 10))
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The file a scenario's server logs to.
pub fn log_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

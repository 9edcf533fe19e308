//! Slow clients, as a slowloris attack runs them: connections that start a
//! request head and send one more header line every few seconds, never
//! finishing it, each reopened as soon as the server closes it.
//!
//! They run in a process of their own, this binary started again with the
//! hidden `--slow-clients-at`, so that the load generator measuring the
//! `protected` stream beside them does none of their work: not on its
//! runtime's one thread, nor among the sockets and timers it polls. What the
//! scenario measures is then what they cost the server, as slow clients on
//! other machines would, not what driving them costs the generator. The
//! parent asks the process for its count of reopened connections by writing
//! a line to its standard input, and reads the count back as a line on its
//! standard output; closing its standard input ends it, and its connections
//! with it.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How many slow clients, and how they dribble.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub count: usize,
    /// Between a client's header lines.
    pub every: Duration,
    /// Over which the clients open, evenly, so that once it has passed the
    /// server closes (and the clients reopen) about `count / header timeout`
    /// a second rather than all of them at once.
    pub ramp: Duration,
}

/// The slow clients' process, seen from the load generator.
pub struct SlowClients {
    child: Child,
    pid: u32,
    questions: Option<ChildStdin>,
    answers: Lines<BufReader<ChildStdout>>,
}

impl SlowClients {
    /// Starts the slow clients' process against `addr` and returns once its
    /// clients have begun opening (the ramp runs from just before then).
    ///
    /// It is pinned to `cpu` if given, and otherwise shares the load
    /// generator's CPU (a process's children inherit its `taskset` pinning).
    /// Not the server's: there it would take from the server CPU time that
    /// real slow clients, on machines of their own, never take, and the
    /// server is pinned where the solo figure was measured. On a machine with
    /// two cores that leaves the generator's, where it competes with the
    /// measured stream only through the kernel's scheduler, for some four
    /// hundred short wake-ups a second (a header line per client every three
    /// seconds, a hundred reopenings), instead of inside the generator's
    /// event loop; the report gives the share of a core it used. It keeps the
    /// default priority, so that its lines and reopenings keep their cadence
    /// and the server meets the whole attack (the report's closed
    /// connections a second show that it did). `--slow-cpu` puts it on a
    /// third core where there is one.
    pub async fn start(addr: SocketAddr, settings: Settings, cpu: Option<usize>) -> Result<Self> {
        let program = std::env::current_exe()?;
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("--cpu-list").arg(cpu.to_string()).arg(program);
                taskset
            }
            None => Command::new(program),
        };
        let mut child = command
            .arg("--slow-clients-at")
            .arg(addr.to_string())
            .arg("--slow-connections")
            .arg(settings.count.to_string())
            .arg("--slow-every")
            .arg(settings.every.as_secs_f64().to_string())
            .arg("--slow-ramp")
            .arg(settings.ramp.as_secs_f64().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the slow clients' process")?;
        // taskset execs the program, so the child's pid is the clients'.
        let pid = child
            .id()
            .context("the slow clients' process exited at once")?;
        let questions = child.stdin.take().context("no stdin")?;
        let answers = BufReader::new(child.stdout.take().context("no stdout")?).lines();
        let mut clients = Self {
            child,
            pid,
            questions: Some(questions),
            answers,
        };
        // Its first answer comes once it has started its clients.
        clients.reopened().await?;
        Ok(clients)
    }

    /// How many times a slow client found its connection closed and opened
    /// another, so far.
    pub async fn reopened(&mut self) -> Result<u64> {
        let questions = self.questions.as_mut().context("already stopped")?;
        questions.write_all(b"reopened?\n").await?;
        questions.flush().await?;
        let answer = self
            .answers
            .next_line()
            .await?
            .context("the slow clients' process ended")?;
        answer
            .parse()
            .with_context(|| format!("the slow clients' process answered {answer:?}"))
    }

    /// CPU time (user + system) the slow clients' process has used so far.
    pub fn cpu_time(&self) -> Result<Duration> {
        crate::server::cpu_time(self.pid)
    }

    /// Closes every slow connection: ends the process, SIGKILL after 10 s.
    pub async fn stop(mut self) -> Result<()> {
        drop(self.questions.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}

/// The slow clients' process itself: starts the clients against `addr`,
/// answers each line on standard input with the count of reopened
/// connections, and returns (dropping every connection) at its end.
pub async fn serve(addr: SocketAddr, settings: Settings) -> Result<()> {
    let reopened = Arc::new(AtomicU64::new(0));
    // Dropping the set aborts the clients.
    let mut clients = JoinSet::new();
    let start = Instant::now();
    for i in 0..settings.count {
        let opens_at = start
            + settings
                .ramp
                .mul_f64(i as f64 / settings.count.max(1) as f64);
        clients.spawn(dribble(addr, opens_at, settings.every, reopened.clone()));
    }
    let mut questions = BufReader::new(tokio::io::stdin()).lines();
    while questions.next_line().await?.is_some() {
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", reopened.load(Ordering::Relaxed))?;
        stdout.flush()?;
    }
    Ok(())
}

/// One slow client, forever (until its task is aborted).
async fn dribble(addr: SocketAddr, opens_at: Instant, every: Duration, reopened: Arc<AtomicU64>) {
    tokio::time::sleep_until(opens_at).await;
    let mut first = true;
    loop {
        let Ok(mut stream) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if !first {
            reopened.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        if stream
            .write_all(b"GET /protected HTTP/1.1\r\nHost: bench\r\n")
            .await
            .is_err()
        {
            continue;
        }
        let mut line = 0_u64;
        let mut next = Instant::now() + every;
        let mut buffer = [0_u8; 512];
        loop {
            tokio::select! {
                // A close, or an answer (the head was refused): start over.
                _ = stream.read(&mut buffer) => break,
                () = tokio::time::sleep_until(next) => {
                    line += 1;
                    next += every;
                    let header = format!("X-Slow-{line}: still typing\r\n");
                    if stream.write_all(header.as_bytes()).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

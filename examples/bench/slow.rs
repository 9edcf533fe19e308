//! Slow clients, as a slowloris attack runs them: connections that start a
//! request head and send one more header line every few seconds, never
//! finishing it, each reopened as soon as the server closes it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

pub struct SlowClients {
    tasks: JoinSet<()>,
    reopened: Arc<AtomicU64>,
}

impl SlowClients {
    /// Starts `count` slow clients against `addr`, opening them evenly over
    /// `ramp` so that, once it has passed, the server closes (and the
    /// clients reopen) about `count / header timeout` a second rather than
    /// all of them at once; each sends a header line every `every`.
    pub fn start(addr: SocketAddr, count: usize, every: Duration, ramp: Duration) -> Self {
        let reopened = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        let start = Instant::now();
        for i in 0..count {
            let opens_at = start + ramp.mul_f64(i as f64 / count.max(1) as f64);
            tasks.spawn(dribble(addr, opens_at, every, reopened.clone()));
        }
        Self { tasks, reopened }
    }

    /// How many times a slow client found its connection closed and opened
    /// another, so far.
    pub fn reopened(&self) -> u64 {
        self.reopened.load(Ordering::Relaxed)
    }

    /// Closes every slow connection.
    pub async fn stop(mut self) {
        self.tasks.shutdown().await;
    }
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

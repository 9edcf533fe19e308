//! Virtual users and the loop that drives them: each user owns one keep-alive
//! connection and sends its next request as soon as the last one is answered
//! (a closed loop). Only answers that arrive inside the measuring window
//! count, so the warm-up and the stragglers at the end are left out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;
use hyper::Method;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, SET_COOKIE};
use tokio::task::JoinSet;

use crate::http::Conn;
use crate::stats::Latencies;

/// What one virtual user does, over and over.
#[derive(Clone)]
pub enum Work {
    /// `GET <path>` with `Authorization: Bearer <token>`.
    Protected {
        path: &'static str,
        bearer: HeaderValue,
    },
    /// `POST /token` with its own latest refresh cookie; a chain that breaks
    /// cannot go on, so the user stops at its first failure.
    Refresh { cookie: HeaderValue },
    /// `POST /login` with the same JSON credentials.
    Login { body: Bytes },
}

/// When answers count: from `start` (after the warm-up) to `end`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub start: Instant,
    pub end: Instant,
}

impl Window {
    pub fn after(warmup: Duration, measure: Duration) -> Self {
        let start = Instant::now() + warmup;
        Self {
            start,
            end: start + measure,
        }
    }

    pub fn length(&self) -> Duration {
        self.end - self.start
    }

    fn contains(&self, t: Instant) -> bool {
        self.start <= t && t <= self.end
    }
}

/// Everything measured in one window.
#[derive(Debug, Default)]
pub struct Outcome {
    pub latencies: Latencies,
    pub errors: u64,
    /// The first few failures, to show what went wrong.
    pub first_errors: Vec<String>,
}

impl Outcome {
    pub fn merge(&mut self, other: Outcome) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        for e in other.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// Runs one virtual user per item of `work`, each on its own connection to
/// `addr`, until the window ends. Also hands back each user's work as it
/// ended (a refresh chain's latest cookie), to carry on in a later window.
pub async fn drive(
    addr: SocketAddr,
    work: Vec<Work>,
    window: Window,
) -> Result<(Outcome, Vec<Work>)> {
    let mut users = JoinSet::new();
    for work in work {
        let conn = Conn::open(addr).await?;
        users.spawn(user(conn, work, window));
    }
    let mut outcome = Outcome::default();
    let mut ended = Vec::with_capacity(users.len());
    while let Some(one) = users.join_next().await {
        let (one, work) = one?;
        outcome.merge(one);
        ended.push(work);
    }
    Ok((outcome, ended))
}

async fn user(mut conn: Conn, mut work: Work, window: Window) -> (Outcome, Work) {
    let mut outcome = Outcome::default();
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            break;
        }
        let result = step(&mut conn, &mut work).await;
        let answered = Instant::now();
        let fatal = matches!(work, Work::Refresh { .. }) && result.is_err();
        if window.contains(answered) {
            match result {
                Ok(()) => outcome.latencies.push(answered - sent),
                Err(e) => {
                    outcome.errors += 1;
                    if outcome.first_errors.len() < 5 {
                        outcome.first_errors.push(e);
                    }
                }
            }
        }
        if fatal {
            break;
        }
        if conn.is_closed() {
            match Conn::open(conn.addr()).await {
                Ok(fresh) => conn = fresh,
                Err(_) => break,
            }
        }
    }
    (outcome, work)
}

/// One request of `work`; `Err` says why it did not get the answer it should.
async fn step(conn: &mut Conn, work: &mut Work) -> Result<(), String> {
    match work {
        Work::Protected { path, bearer } => {
            let reply = conn
                .send(
                    Method::GET,
                    path,
                    &[("authorization", bearer)],
                    Bytes::new(),
                )
                .await
                .map_err(|e| format!("{e:#}"))?;
            expect_ok(reply.status, &reply.body)
        }
        Work::Refresh { cookie } => {
            let reply = conn
                .send(Method::POST, "/token", &[("cookie", cookie)], Bytes::new())
                .await
                .map_err(|e| format!("{e:#}"))?;
            expect_ok(reply.status, &reply.body)?;
            *cookie = refresh_cookie(&reply.headers).ok_or("no refresh cookie in a 200")?;
            Ok(())
        }
        Work::Login { body } => {
            let reply = conn
                .send(
                    Method::POST,
                    "/login",
                    &[("content-type", &JSON)],
                    body.clone(),
                )
                .await
                .map_err(|e| format!("{e:#}"))?;
            expect_ok(reply.status, &reply.body)
        }
    }
}

fn expect_ok(status: hyper::StatusCode, body: &[u8]) -> Result<(), String> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(body)))
    }
}

/// `name=value` of the refresh cookie a response sets, ready to send back.
pub fn refresh_cookie(headers: &hyper::HeaderMap) -> Option<HeaderValue> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| {
            pair.split_once('=')
                .is_some_and(|(_, value)| !value.is_empty())
        })
        .and_then(|pair| HeaderValue::from_str(pair).ok())
}

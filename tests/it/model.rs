//! The rotation model: random interleavings of logins, refreshes with the
//! current, previous, an older or a forged token, concurrent refreshes with
//! one cookie, logouts, "log out everywhere", revoking one session, password
//! changes, housekeeping and clock advances, applied through the HTTP router
//! (the real rotation code and the real store, with the injected clock;
//! housekeeping runs its sweep directly) and to a small reference model of
//! the rotation rules 1–4 (README, "Rotation rules"). After every step:
//!
//! - the response is the one the model predicts (`200` with which refresh
//!   token and `Max-Age`, or `401`/`403`/`404` with which error code, the
//!   cookie cleared where the rules say so), and every session row in the store
//!   is the model's (generation, last rotation, idle and absolute expiry,
//!   revoked or not, deleted or not), as is each user's `active_sessions`;
//!   reuse is one audit event per session, however many copies of an old
//!   token arrive at once;
//! - and, checked against the store alone, whatever the model says:
//!   at most one live chain per session (a `200` always carries the token of
//!   the store's current generation; the chain advances by at most one step,
//!   and only for the current token); a revoked session never answers `200`,
//!   never loses its `revoked_at` and never advances again; a session's
//!   absolute expiry never changes after creation and the cookie's `Max-Age`
//!   never reaches past it; a token rotated away `REFRESH_REUSE_GRACE` seconds
//!   ago or more (or two generations old) never works; the grace path never
//!   advances the chain; a forged token changes nothing at all.
//!
//! Settings are short (`REFRESH_REUSE_GRACE=10` < `JWT_EXPIRATION=45` <
//! `JWT_REFRESH_EXPIRATION=60` < `SESSION_MAX_LIFETIME=100`) so that clock
//! advances cross every boundary, and a chain meets its absolute end after a
//! rotation or two. Throttling is set out of reach: wrong passwords are part
//! of the mix, and the throttle has its own tests.
//!
//! Session picks favour the session of the step before and live sessions,
//! and clock steps favour a session's exact limits (one second before the
//! grace window, idle or absolute expiry ends, or exactly on it), so that the
//! sequences that matter ("rotate, wait exactly the grace window, present
//! the previous token") are common rather than lucky.
//!
//! One app (one store) per test, on SQLite and on PostgreSQL alike; each case
//! signs up fresh users, so cases never see each other's sessions, and on
//! PostgreSQL a run creates one database rather than one per case (or per
//! shrinking step). `PROPTEST_CASES` overrides the case count on both stores;
//! `PROPTEST_RNG_SEED` fixes the seed.
//!
//! No `proptest-regressions` files are written: a failure prints the shrunk
//! sequence (proptest's shrinking, then single steps dropped while it still
//! fails), readable, with what happened at each step, and a bug it finds
//! becomes a named test here (an opaque seed file next to the sources would
//! replay a random case, not document the bug, and CI must not write into
//! the checkout).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey::clock::Clock;
use latchkey::store::Session;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};

use crate::helpers::*;

const REFRESH_TTL: i64 = 60;
const MAX_LIFETIME: i64 = 100;
const GRACE: i64 = 10;
const ACCESS_TTL: i64 = 45;

/// The app's settings; `the_settings_are_the_models` keeps them and the
/// constants above in step.
const SETTINGS: &[(&str, &str)] = &[
    ("JWT_REFRESH_EXPIRATION", "60"),
    ("SESSION_MAX_LIFETIME", "100"),
    ("REFRESH_REUSE_GRACE", "10"),
    ("JWT_EXPIRATION", "45"),
    ("THROTTLE_LOGIN_PAIR", "1000000"),
    ("THROTTLE_LOGIN_ADDRESS", "1000000"),
    ("THROTTLE_LOGIN_ACCOUNT", "1000000"),
    // The model is of the rotation rules; the per-session limit has its own
    // tests (`rotation.rs`).
    ("MAX_REFRESHES_PER_MINUTE", "1000000"),
];

/// Users per case.
const USERS: u8 = 3;
/// Session picks are `0..SESSION_PICKS`; those below `LIVE_PICKS` prefer a
/// live session.
const SESSION_PICKS: u8 = 8;
const LIVE_PICKS: u8 = 6;
/// Longest generated sequence.
const MAX_OPS: usize = 40;
const COOKIE_NAME: &str = "__Host-refresh_token";
/// An attacker's key: right length, wrong bytes.
const WRONG_KEY: &str = "not-the-refresh-secret-0123456789abcdefghij";
const WRONG_PASSWORD: &str = "not the password at all";
const INVALID: &str = "invalid_refresh_token";
const REUSED: &str = "refresh_token_reused";

// ---------------------------------------------------------------------------
// Operations and their strategies.

/// Which refresh token a client presents, relative to its session's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Current,
    /// The one rotated away last (only sessions that have one are picked).
    Previous,
    /// Two or more generations old, generation `n % (generation - 1)` (only
    /// sessions that have one are picked).
    Older(u8),
    Forged(Forgery),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Forgery {
    /// The current token with one signature character changed.
    TamperedSignature,
    /// The current token's claims, signed with a guessed key.
    WrongKey,
    /// The next generation, signed with a guessed key.
    WrongKeyNextGeneration,
    /// The next generation, signed with the access-token secret.
    AccessKeyNextGeneration,
    /// The next generation, `alg: none`.
    AlgNone,
    /// The session's access token presented as the refresh cookie.
    AccessToken,
}

/// One step. `session`, `by` and `target` pick among the case's sessions so
/// far (see `Run::pick`; skipped while there are none); `user` among its users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Login {
        user: u8,
    },
    Refresh {
        session: u8,
        token: Tok,
    },
    Advance {
        seconds: i64,
    },
    /// Advance the clock to one second before (`just_before`) or exactly
    /// onto one of a session's time limits; skipped when already past it.
    AdvanceTo {
        session: u8,
        edge: Edge,
        just_before: bool,
    },
    /// `copies` concurrent `POST /token` with the session's current token,
    /// or its previous one.
    RefreshRace {
        session: u8,
        copies: u8,
        previous: bool,
    },
    Logout {
        session: u8,
        cookie: Option<Tok>,
    },
    /// `DELETE /sessions` with the session's newest access token.
    RevokeAll {
        session: u8,
    },
    /// `DELETE /sessions/{target}` with `by`'s newest access token.
    RevokeOne {
        by: u8,
        target: u8,
    },
    /// `POST /password` with the session's newest access token.
    ChangePassword {
        session: u8,
        correct: bool,
    },
    /// A login that sends a session's refresh cookie along (README,
    /// "POST /login": the login ends that session).
    LoginWithCookie {
        user: u8,
        session: u8,
        cookie: Tok,
    },
    LoginWrongPassword {
        user: u8,
    },
    /// One housekeeping sweep (deletes sessions past their absolute expiry).
    Housekeeping,
}

/// A session's time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edge {
    /// `REFRESH_REUSE_GRACE` after the last rotation.
    GraceEnd,
    IdleExpiry,
    AbsoluteExpiry,
    /// The newest access token's expiry.
    AccessExpiry,
}

fn edge() -> impl Strategy<Value = Edge> {
    prop_oneof![
        3 => Just(Edge::GraceEnd),
        2 => Just(Edge::IdleExpiry),
        1 => Just(Edge::AbsoluteExpiry),
        1 => Just(Edge::AccessExpiry),
    ]
}

fn forgery() -> impl Strategy<Value = Forgery> {
    prop_oneof![
        Just(Forgery::TamperedSignature),
        Just(Forgery::WrongKey),
        Just(Forgery::WrongKeyNextGeneration),
        Just(Forgery::AccessKeyNextGeneration),
        Just(Forgery::AlgNone),
        Just(Forgery::AccessToken),
    ]
}

fn token() -> impl Strategy<Value = Tok> {
    prop_oneof![
        6 => Just(Tok::Current),
        3 => Just(Tok::Previous),
        2 => (0..8u8).prop_map(Tok::Older),
        1 => forgery().prop_map(Tok::Forged),
    ]
}

/// Small steps, steps across the grace window, the idle timeout, the access
/// token's life and the absolute lifetime, and steps of exactly those (so
/// that one step after a rotation or a login lands on the boundary).
fn seconds() -> impl Strategy<Value = i64> {
    let boundaries = vec![
        GRACE - 1,
        GRACE,
        REFRESH_TTL - 1,
        REFRESH_TTL,
        ACCESS_TTL,
        MAX_LIFETIME - 1,
        MAX_LIFETIME,
    ];
    prop_oneof![
        4 => 0..=4i64,
        3 => GRACE - 5..=GRACE + 5,
        2 => proptest::sample::select(boundaries),
        1 => REFRESH_TTL - 20..=REFRESH_TTL + 20,
        1 => ACCESS_TTL - 10..=ACCESS_TTL + 10,
        1 => MAX_LIFETIME - 10..=MAX_LIFETIME + 20,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let user = || 0..USERS;
    // 0, "the session of the step before", often.
    let session = || prop_oneof![3 => Just(0), 5 => 1..SESSION_PICKS];
    prop_oneof![
        4 => user().prop_map(|user| Op::Login { user }),
        12 => (session(), token()).prop_map(|(session, token)| Op::Refresh { session, token }),
        4 => seconds().prop_map(|seconds| Op::Advance { seconds }),
        3 => (session(), edge(), any::<bool>())
            .prop_map(|(session, edge, just_before)| Op::AdvanceTo { session, edge, just_before }),
        2 => (session(), 2..=4u8, any::<bool>())
            .prop_map(|(session, copies, previous)| Op::RefreshRace { session, copies, previous }),
        1 => (session(), proptest::option::of(token()))
            .prop_map(|(session, cookie)| Op::Logout { session, cookie }),
        1 => session().prop_map(|session| Op::RevokeAll { session }),
        1 => (session(), session()).prop_map(|(by, target)| Op::RevokeOne { by, target }),
        1 => (session(), any::<bool>())
            .prop_map(|(session, correct)| Op::ChangePassword { session, correct }),
        1 => (user(), session(), token())
            .prop_map(|(user, session, cookie)| Op::LoginWithCookie { user, session, cookie }),
        1 => user().prop_map(|user| Op::LoginWrongPassword { user }),
        1 => Just(Op::Housekeeping),
    ]
}

/// Sequences open with a login: until then every other step is skipped.
fn op_sequences() -> impl Strategy<Value = Vec<Op>> {
    (0..USERS, proptest::collection::vec(op(), 0..MAX_OPS)).prop_map(|(user, mut ops)| {
        ops.insert(0, Op::Login { user });
        ops
    })
}

// ---------------------------------------------------------------------------
// The reference model.

#[derive(Debug, Clone)]
struct MUser {
    name: String,
    id: i64,
    password: String,
}

#[derive(Debug, Clone)]
struct MSession {
    id: String,
    user: usize,
    generation: i64,
    rotated_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    revoked: bool,
    /// Revoked by rule 3 (one audit event, however many copies came back).
    reuse_detected: bool,
    /// Deleted by housekeeping (only ever after its absolute expiry).
    deleted: bool,
    /// The refresh token of each generation, as the client received it.
    tokens: Vec<String>,
    /// The newest access token handed out for the session, and its expiry.
    access: String,
    access_expires_at: i64,
}

impl MSession {
    fn live(&self, now: i64) -> bool {
        !self.revoked
            && !self.deleted
            && self.idle_expires_at > now
            && self.absolute_expires_at > now
    }

    fn current_token(&self) -> &str {
        &self.tokens[usize::try_from(self.generation).expect("generation")]
    }
}

/// What `POST /token` should answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refreshed {
    /// Rule 1: a new token, the chain one step on.
    Rotated,
    /// Rule 2: the session's current token again, the chain where it was.
    Grace,
    Refused(&'static str),
}

struct Model {
    now: i64,
    users: Vec<MUser>,
    sessions: Vec<MSession>,
}

impl Model {
    /// The rotation rules (README, "Rotation rules") for a genuine token of
    /// `presented`.
    fn refresh(&mut self, s: usize, presented: i64) -> Refreshed {
        let now = self.now;
        let session = &mut self.sessions[s];
        // Expired, revoked or deleted: nothing to rotate and nothing to revoke.
        if !session.live(now) {
            return Refreshed::Refused(INVALID);
        }
        // Rule 1: the current token.
        if presented == session.generation {
            session.generation += 1;
            session.rotated_at = now;
            session.idle_expires_at = (now + REFRESH_TTL).min(session.absolute_expires_at);
            return Refreshed::Rotated;
        }
        // Rule 2: the token rotated away less than the grace window ago,
        // unless it is past its own `exp` (never exchanged, RFC 7519 §4.1.4).
        if presented + 1 == session.generation && now - session.rotated_at < GRACE {
            let token = &session.tokens[usize::try_from(presented).expect("generation")];
            if token_expiry(token) <= now {
                return Refreshed::Refused(INVALID);
            }
            return Refreshed::Grace;
        }
        // Rule 3: any older token (a genuine token is never ahead of its chain).
        session.revoked = true;
        session.reuse_detected = true;
        Refreshed::Refused(REUSED)
    }

    /// Revocation sets `revoked_at` on any row not yet revoked, expired or not.
    fn revoke(&mut self, s: usize) {
        let session = &mut self.sessions[s];
        if !session.deleted {
            session.revoked = true;
        }
    }

    fn sessions_of(&self, user: usize) -> impl Iterator<Item = usize> + '_ {
        (0..self.sessions.len()).filter(move |&s| self.sessions[s].user == user)
    }
}

/// The `exp` claim of a token the server issued.
fn token_expiry(token: &str) -> i64 {
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    let claims: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["exp"].as_i64().expect("exp")
}

/// A refresh token as presented: one the server issued, or a forgery.
#[derive(Debug, Clone)]
enum Presented {
    Genuine { generation: i64, token: String },
    Forged { how: Forgery, token: String },
}

impl Presented {
    fn token(&self) -> &str {
        match self {
            Self::Genuine { token, .. } | Self::Forged { token, .. } => token,
        }
    }
}

// ---------------------------------------------------------------------------
// Running a sequence against the app and the model.

/// What the runs exercised: outcome name → count.
type Stats = BTreeMap<&'static str, u64>;

/// The store's session rows of this case, by id (absent: deleted).
type Snapshot = HashMap<String, Session>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

struct Run<'a> {
    app: &'a TestApp,
    case: u64,
    start: i64,
    model: Model,
    passwords_changed: u32,
    stats: Stats,
    /// Session numbers name sessions directly (hand-written sequences).
    exact_picks: bool,
    /// The session the last step was about.
    last: Option<usize>,
}

/// Runs `ops` on `app` with fresh users; the error holds the step-by-step
/// trace and what went wrong.
async fn run_case(
    app: &TestApp,
    case: u64,
    ops: &[Op],
    exact_picks: bool,
    stats: &Mutex<Stats>,
) -> Result<(), String> {
    let now = app.clock.now();
    let mut users = Vec::new();
    for k in 0..USERS {
        let name = format!("model{case}-u{k}");
        let user = app.add_user(&name, PASSWORD).await;
        users.push(MUser {
            name,
            id: user.id,
            password: PASSWORD.to_owned(),
        });
    }
    let mut run = Run {
        app,
        case,
        start: now,
        model: Model {
            now,
            users,
            sessions: Vec::new(),
        },
        passwords_changed: 0,
        stats: Stats::new(),
        exact_picks,
        last: None,
    };
    let mut trace = Vec::new();
    let mut before = run.snapshot().await?;
    for (i, op) in ops.iter().enumerate() {
        let at = run.model.now - run.start;
        let mut step = Step::default();
        let result = run.step(*op, &before, &mut step).await;
        if step.outcome.as_deref() == Some("skipped") {
            run.count(if step.what.contains("no session") {
                "skipped: no session has what it needs"
            } else if step.what.contains("already past") {
                "skipped: already past that time"
            } else {
                "skipped: chain too short"
            });
        }
        let line = format!(
            "{:>3}. t+{at:<5} {} -> {}",
            i + 1,
            step.what,
            step.outcome.as_deref().unwrap_or("?")
        );
        trace.push(line);
        let checked = match result {
            Ok(()) => run.check_store(&before, step.harmless).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(after) => before = after,
            Err(e) => {
                return Err(format!(
                    "what happened (t+ is seconds since the case began; sN is the \
                     N-th session, uN the N-th user):\n{}\nstep {} failed: {e}",
                    trace.join("\n"),
                    i + 1
                ));
            }
        }
    }
    let mut total = stats.lock().expect("stats");
    for (k, v) in run.stats {
        *total.entry(k).or_default() += v;
    }
    Ok(())
}

/// One step's description for the trace.
#[derive(Default)]
struct Step {
    what: String,
    outcome: Option<String>,
    /// The step must leave every session row exactly as it was.
    harmless: bool,
}

impl Run<'_> {
    fn count(&mut self, what: &'static str) {
        *self.stats.entry(what).or_default() += 1;
    }

    /// Session `n` among those that have the token `tok` asks for (a
    /// previous one, an older one): 0 is the session of the step before (so
    /// that "rotate, wait until just past the grace window, present the
    /// previous token" is a likely sequence); below [`LIVE_PICKS`] a live one
    /// while there is one (dead sessions pile up, and a chain is only
    /// interesting while it lives); otherwise any.
    fn pick(&self, n: u8, tok: Option<Tok>) -> Option<usize> {
        let n = usize::from(n);
        if self.exact_picks {
            return (n < self.model.sessions.len()).then_some(n);
        }
        let min_generation = match tok {
            Some(Tok::Previous) => 1,
            Some(Tok::Older(_)) => 2,
            _ => 0,
        };
        if let Some(last) = self.last.filter(|_| n == 0)
            && self.model.sessions[last].generation >= min_generation
        {
            return Some(last);
        }
        let now = self.model.now;
        let eligible: Vec<usize> = (0..self.model.sessions.len())
            .filter(|&s| self.model.sessions[s].generation >= min_generation)
            .collect();
        let live: Vec<usize> = eligible
            .iter()
            .copied()
            .filter(|&s| self.model.sessions[s].live(now))
            .collect();
        if n < usize::from(LIVE_PICKS) && !live.is_empty() {
            return Some(live[n % live.len()]);
        }
        (!eligible.is_empty()).then(|| eligible[n % eligible.len()])
    }

    fn label(&self, s: usize) -> String {
        format!("s{s}(u{})", self.model.sessions[s].user)
    }

    /// The token `tok` stands for in session `s`, or `None` when the chain is
    /// too short for it.
    fn present(&self, s: usize, tok: Tok) -> Option<Presented> {
        let session = &self.model.sessions[s];
        let generation = session.generation;
        let genuine = |g: i64| Presented::Genuine {
            generation: g,
            token: session.tokens[usize::try_from(g).expect("generation")].clone(),
        };
        match tok {
            Tok::Current => Some(genuine(generation)),
            Tok::Previous => (generation >= 1).then(|| genuine(generation - 1)),
            Tok::Older(n) => (generation >= 2).then(|| genuine(i64::from(n) % (generation - 1))),
            Tok::Forged(how) => Some(Presented::Forged {
                how,
                token: self.forge(session, how),
            }),
        }
    }

    fn forge(&self, session: &MSession, how: Forgery) -> String {
        let current = session.current_token();
        let mut claims = payload(current).expect("a genuine token");
        let next = json!(session.generation + 1);
        let signed = |claims: &Value, key: &str| {
            let mut header = Header::new(Algorithm::HS256);
            header.typ = Some("latchkey-rt+jwt".to_owned());
            jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(key.as_bytes()))
                .expect("encode")
        };
        match how {
            Forgery::TamperedSignature => {
                let (signed_part, signature) = current.rsplit_once('.').expect("three segments");
                let mut signature: Vec<char> = signature.chars().collect();
                signature[5] = if signature[5] == 'A' { 'B' } else { 'A' };
                format!(
                    "{signed_part}.{}",
                    signature.into_iter().collect::<String>()
                )
            }
            Forgery::WrongKey => signed(&claims, WRONG_KEY),
            Forgery::WrongKeyNextGeneration => {
                claims["gen"] = next;
                signed(&claims, WRONG_KEY)
            }
            Forgery::AccessKeyNextGeneration => {
                claims["gen"] = next;
                signed(&claims, &self.app.vars["JWT_SECRET"])
            }
            Forgery::AlgNone => {
                claims["gen"] = next;
                let header = json!({ "alg": "none", "typ": "latchkey-rt+jwt" });
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(header.to_string()),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                )
            }
            Forgery::AccessToken => session.access.clone(),
        }
    }

    fn describe(&self, s: usize, presented: &Presented) -> String {
        let current = self.model.sessions[s].generation;
        match presented {
            Presented::Genuine { generation, .. } if *generation == current => {
                format!("its current token (gen {current})")
            }
            Presented::Genuine { generation, .. } if *generation + 1 == current => {
                let ago = self.model.now - self.model.sessions[s].rotated_at;
                format!("its previous token (gen {generation}, rotated away {ago}s ago)")
            }
            Presented::Genuine { generation, .. } => {
                format!("an older token (gen {generation}, current {current})")
            }
            Presented::Forged { how, .. } => format!("a forged token ({how:?})"),
        }
    }

    async fn step(&mut self, op: Op, before: &Snapshot, step: &mut Step) -> Result<(), String> {
        let skip = |step: &mut Step, what: String| {
            step.what = what;
            step.outcome = Some("skipped".into());
            step.harmless = true;
            Ok(())
        };
        match op {
            Op::Login { user } => {
                step.what = format!("login u{user}");
                self.login(usize::from(user), None, step).await
            }
            Op::LoginWithCookie {
                user,
                session,
                cookie,
            } => {
                let Some(s) = self.pick(session, Some(cookie)) else {
                    return skip(
                        step,
                        format!("login u{user} with a {cookie:?} cookie (no session has one)"),
                    );
                };
                self.last = Some(s);
                let Some(presented) = self.present(s, cookie) else {
                    return skip(
                        step,
                        format!(
                            "login u{user} with {}'s {cookie:?} cookie (none)",
                            self.label(s)
                        ),
                    );
                };
                step.what = format!(
                    "login u{user} sending {}'s cookie: {}",
                    self.label(s),
                    self.describe(s, &presented)
                );
                self.login(usize::from(user), Some((s, presented)), step)
                    .await
            }
            Op::LoginWrongPassword { user } => {
                step.what = format!("login u{user} with a wrong password");
                step.harmless = true;
                let name = self.model.users[usize::from(user)].name.clone();
                let response = self.app.login(&name, WRONG_PASSWORD).await;
                step.outcome = Some(summary(&response));
                expect_error(&response, StatusCode::UNAUTHORIZED, "invalid_credentials")?;
                ensure!(
                    response.refresh_cookie().is_none(),
                    "a failed login set a cookie"
                );
                self.count("login refused");
                Ok(())
            }
            Op::Refresh { session, token } => {
                let Some(s) = self.pick(session, Some(token)) else {
                    return skip(step, format!("refresh with {token:?} (no session has one)"));
                };
                self.last = Some(s);
                let Some(presented) = self.present(s, token) else {
                    return skip(
                        step,
                        format!("refresh {} with {token:?} (none)", self.label(s)),
                    );
                };
                step.what = format!(
                    "refresh {} with {}",
                    self.label(s),
                    self.describe(s, &presented)
                );
                self.refresh(s, presented, before, step).await
            }
            Op::RefreshRace {
                session,
                copies,
                previous,
            } => {
                let tok = if previous {
                    Tok::Previous
                } else {
                    Tok::Current
                };
                let Some(s) = self.pick(session, Some(tok)) else {
                    return skip(
                        step,
                        format!("{copies} concurrent refreshes with {tok:?} (no session has one)"),
                    );
                };
                self.last = Some(s);
                let Some(presented) = self.present(s, tok) else {
                    return skip(
                        step,
                        format!(
                            "{copies} concurrent refreshes of {} with {tok:?} (none)",
                            self.label(s)
                        ),
                    );
                };
                step.what = format!(
                    "{copies} concurrent refreshes of {} with {}",
                    self.label(s),
                    self.describe(s, &presented)
                );
                self.race(s, copies, presented, before, step).await
            }
            Op::Logout { session, cookie } => {
                let Some(s) = self.pick(session, cookie) else {
                    return skip(step, format!("logout with {cookie:?} (no session has one)"));
                };
                self.last = Some(s);
                let presented = match cookie {
                    None => None,
                    Some(tok) => match self.present(s, tok) {
                        Some(p) => Some(p),
                        None => {
                            return skip(
                                step,
                                format!("logout {} with {tok:?} (none)", self.label(s)),
                            );
                        }
                    },
                };
                step.what = match &presented {
                    None => "logout without a cookie".into(),
                    Some(p) => format!("logout {} with {}", self.label(s), self.describe(s, p)),
                };
                self.logout(s, presented, step).await
            }
            Op::RevokeAll { session } => {
                let Some(s) = self.pick(session, None) else {
                    return skip(step, "DELETE /sessions (no sessions yet)".into());
                };
                self.last = Some(s);
                step.what = format!("DELETE /sessions with {}'s access token", self.label(s));
                self.revoke_all(s, step).await
            }
            Op::RevokeOne { by, target } => {
                let (Some(by), Some(target)) = (self.pick(by, None), self.pick(target, None))
                else {
                    return skip(step, "DELETE /sessions/{id} (no sessions yet)".into());
                };
                self.last = Some(target);
                step.what = format!(
                    "DELETE /sessions/<{}> with {}'s access token",
                    self.label(target),
                    self.label(by)
                );
                self.revoke_one(by, target, step).await
            }
            Op::ChangePassword { session, correct } => {
                let Some(s) = self.pick(session, None) else {
                    return skip(step, "POST /password (no sessions yet)".into());
                };
                self.last = Some(s);
                step.what = format!(
                    "POST /password with {}'s access token and the {} current password",
                    self.label(s),
                    if correct { "right" } else { "wrong" }
                );
                self.change_password(s, correct, step).await
            }
            Op::Advance { seconds } => {
                step.what = format!("advance the clock {seconds}s");
                self.advance(seconds, step)
            }
            Op::AdvanceTo {
                session,
                edge,
                just_before,
            } => {
                let Some(s) = self.pick(session, None) else {
                    return skip(step, format!("advance to a {edge:?} (no session has one)"));
                };
                self.last = Some(s);
                let m = &self.model.sessions[s];
                let at = match edge {
                    Edge::GraceEnd => m.rotated_at + GRACE,
                    Edge::IdleExpiry => m.idle_expires_at,
                    Edge::AbsoluteExpiry => m.absolute_expires_at,
                    Edge::AccessExpiry => m.access_expires_at,
                } - i64::from(just_before);
                let seconds = at - self.model.now;
                let what = format!(
                    "advance the clock {seconds}s, {} {}'s {edge:?}",
                    if just_before { "to 1s before" } else { "onto" },
                    self.label(s)
                );
                if seconds < 0 {
                    return skip(step, format!("{what} (already past)"));
                }
                step.what = what;
                self.advance(seconds, step)
            }
            Op::Housekeeping => {
                step.what = "housekeeping sweep".into();
                self.housekeeping(step).await
            }
        }
    }

    fn advance(&mut self, seconds: i64, step: &mut Step) -> Result<(), String> {
        step.harmless = true;
        self.app.advance(seconds);
        self.model.now += seconds;
        ensure!(
            self.app.clock.now() == self.model.now,
            "the app's clock is at {}, the model's at {}",
            self.app.clock.now(),
            self.model.now
        );
        step.outcome = Some("ok".into());
        Ok(())
    }

    async fn login(
        &mut self,
        u: usize,
        replacing: Option<(usize, Presented)>,
        step: &mut Step,
    ) -> Result<(), String> {
        let user = &self.model.users[u];
        let body = json!({ "username": user.name, "password": user.password });
        let mut request = Request::post("/login").header(header::CONTENT_TYPE, "application/json");
        if let Some((_, presented)) = &replacing {
            request = request.header(
                header::COOKIE,
                format!("{COOKIE_NAME}={}", presented.token()),
            );
        }
        let response = self
            .app
            .send(request.body(Body::from(body.to_string())).expect("request"))
            .await;
        step.outcome = Some(summary(&response));
        if let Some((s, Presented::Genuine { .. })) = replacing {
            self.model.revoke(s);
            self.count("login ended the cookie's session");
        }
        expect_status(&response, StatusCode::OK)?;
        let (token, max_age) = set_cookie(&response)?;
        let access = access_token(&response)?;
        let now = self.model.now;
        let claims = payload(&token)?;
        let sid = claims["sid"].as_str().unwrap_or_default().to_owned();
        ensure!(!sid.is_empty(), "the refresh token names no session");
        ensure!(
            self.model.sessions.iter().all(|s| s.id != sid),
            "a login reused the session id {sid}"
        );
        let absolute = now + MAX_LIFETIME;
        let idle = (now + REFRESH_TTL).min(absolute);
        ensure!(
            claims["gen"] == json!(0) && claims["exp"] == json!(idle),
            "login token claims {claims}, expected gen 0 and exp {idle}"
        );
        ensure!(
            max_age == idle - now,
            "login cookie Max-Age {max_age}, expected {}",
            idle - now
        );
        let access_claims = payload(&access)?;
        ensure!(
            access_claims["sid"] == json!(sid) && access_claims["exp"] == json!(now + ACCESS_TTL),
            "access token claims {access_claims}"
        );
        self.last = Some(self.model.sessions.len());
        self.model.sessions.push(MSession {
            id: sid,
            user: u,
            generation: 0,
            rotated_at: now,
            idle_expires_at: idle,
            absolute_expires_at: absolute,
            revoked: false,
            reuse_detected: false,
            deleted: false,
            tokens: vec![token],
            access,
            access_expires_at: now + ACCESS_TTL,
        });
        step.outcome = Some(format!(
            "200, new session s{} (Max-Age {max_age})",
            self.model.sessions.len() - 1
        ));
        self.count("login");
        Ok(())
    }

    async fn refresh(
        &mut self,
        s: usize,
        presented: Presented,
        before: &Snapshot,
        step: &mut Step,
    ) -> Result<(), String> {
        let response = self.app.refresh(presented.token()).await;
        step.outcome = Some(summary(&response));
        let expected = match &presented {
            Presented::Genuine { generation, .. } => self.model.refresh(s, *generation),
            Presented::Forged { .. } => {
                step.harmless = true;
                Refreshed::Refused(INVALID)
            }
        };
        self.count(match (&presented, expected) {
            (Presented::Forged { .. }, _) => "refresh: forged token refused",
            (_, Refreshed::Rotated) => "refresh: rotated",
            (_, Refreshed::Grace) => "refresh: grace path",
            (_, Refreshed::Refused(REUSED)) => "refresh: reuse detected",
            (_, Refreshed::Refused(_)) => "refresh: dead session refused",
        });
        self.check_refreshed(s, &response, expected)
            .map_err(|e| format!("model expected {expected:?}: {e}"))?;
        if let Presented::Genuine { generation, .. } = presented {
            self.refresh_invariants(s, generation, &[response], before)
                .await?;
        }
        self.check_reuse_events(s).await
    }

    async fn race(
        &mut self,
        s: usize,
        copies: u8,
        presented: Presented,
        before: &Snapshot,
        step: &mut Step,
    ) -> Result<(), String> {
        let Presented::Genuine { generation, token } = presented else {
            return Err("races are run with genuine tokens".into());
        };
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..copies {
            let router = self.app.router.clone();
            let request = Request::post("/token")
                .header(header::COOKIE, format!("{COOKIE_NAME}={token}"))
                .body(Body::empty())
                .expect("request");
            calls.spawn(async move {
                call(&router, request).await
            });
        }
        let responses: Vec<TestResponse> = calls.join_all().await;
        step.outcome = Some(
            responses
                .iter()
                .map(summary)
                .collect::<Vec<_>>()
                .join(" | "),
        );
        // Rule 4. The current token: one copy rotates; the others, a moment
        // later, present the token just rotated away and get the grace path,
        // the same new cookie. An old token: one copy revokes the session
        // (reuse); the others arrive before (reuse too) or after (a dead
        // session): never a 200.
        let first = self.model.refresh(s, generation);
        let winner = responses
            .iter()
            .position(|r| r.status == StatusCode::OK)
            .or_else(|| {
                responses
                    .iter()
                    .position(|r| json_body(r).is_ok_and(|b| b["error"] == REUSED))
            })
            .unwrap_or(0);
        for (i, response) in responses.iter().enumerate() {
            let expected = match first {
                Refreshed::Rotated if i != winner => Refreshed::Grace,
                Refreshed::Refused(REUSED)
                    if i != winner && json_body(response).is_ok_and(|b| b["error"] == INVALID) =>
                {
                    Refreshed::Refused(INVALID)
                }
                other => other,
            };
            self.check_refreshed(s, response, expected)
                .map_err(|e| format!("copy {}: model expected {expected:?}: {e}", i + 1))?;
        }
        self.count(match first {
            Refreshed::Rotated => "race: one rotation, the rest graced",
            Refreshed::Grace => "race: all graced",
            Refreshed::Refused(REUSED) => "race: reuse detected",
            Refreshed::Refused(_) => "race: dead session refused",
        });
        self.refresh_invariants(s, generation, &responses, before)
            .await?;
        self.check_reuse_events(s).await
    }

    /// Reuse is an audit event, once per session however many copies of old
    /// tokens come back, and only for reuse.
    async fn check_reuse_events(&self, s: usize) -> Result<(), String> {
        let session = &self.model.sessions[s];
        let user = self.model.users[session.user].id;
        let events = self
            .app
            .store
            .events(Some(user), self.start, 10_000)
            .await
            .map_err(|e| e.to_string())?;
        let recorded = events
            .iter()
            .filter(|e| e.kind == REUSED && e.session_id.as_deref() == Some(&session.id))
            .count();
        ensure!(
            recorded == usize::from(session.reuse_detected),
            "{recorded} refresh_token_reused audit events for s{s}, expected {}",
            usize::from(session.reuse_detected)
        );
        Ok(())
    }

    /// The response against the model's prediction (the model already applied).
    fn check_refreshed(
        &mut self,
        s: usize,
        response: &TestResponse,
        expected: Refreshed,
    ) -> Result<(), String> {
        expect_no_store(response)?;
        let code = match expected {
            Refreshed::Refused(code) => code,
            Refreshed::Rotated | Refreshed::Grace => {
                expect_status(response, StatusCode::OK)?;
                let body = json_body(response)?;
                ensure!(
                    body["token_type"] == "Bearer"
                        && body["expires_in"] == json!(ACCESS_TTL)
                        && body.get("refresh_token").is_none(),
                    "token body {body}"
                );
                let (token, max_age) = set_cookie(response)?;
                let access = access_token(response)?;
                let now = self.model.now;
                let session = &mut self.model.sessions[s];
                ensure!(
                    max_age == session.idle_expires_at - now,
                    "Max-Age {max_age}, expected {} (until the idle expiry at t+{})",
                    session.idle_expires_at - now,
                    session.idle_expires_at - self.start
                );
                ensure!(
                    max_age > 0 && max_age <= session.absolute_expires_at - now,
                    "Max-Age {max_age} outside (0, absolute expiry - now = {}]",
                    session.absolute_expires_at - now
                );
                let claims = payload(&token)?;
                ensure!(
                    claims["sid"] == json!(session.id)
                        && claims["gen"] == json!(session.generation)
                        && claims["exp"] == json!(session.idle_expires_at),
                    "refresh token claims {claims}, expected sid {}, gen {}, exp {}",
                    session.id,
                    session.generation,
                    session.idle_expires_at
                );
                if expected == Refreshed::Rotated {
                    ensure!(
                        !session.tokens.contains(&token),
                        "a rotation handed back a token issued before"
                    );
                    ensure!(
                        session.tokens.len() == usize::try_from(session.generation).expect("gen"),
                        "the model lost track of the chain"
                    );
                    session.tokens.push(token);
                } else {
                    ensure!(
                        token == session.current_token(),
                        "the grace path did not hand back the current token byte for byte"
                    );
                }
                let access_claims = payload(&access)?;
                ensure!(
                    access_claims["sid"] == json!(session.id)
                        && access_claims["exp"] == json!(now + ACCESS_TTL),
                    "access token claims {access_claims}"
                );
                session.access = access;
                session.access_expires_at = now + ACCESS_TTL;
                return Ok(());
            }
        };
        expect_error(response, StatusCode::UNAUTHORIZED, code)?;
        expect_cleared(response)
    }

    /// Store-only checks of one refresh (or one race) of a genuine token of
    /// `presented`, whatever the model says.
    async fn refresh_invariants(
        &self,
        s: usize,
        presented: i64,
        responses: &[TestResponse],
        before: &Snapshot,
    ) -> Result<(), String> {
        let now = self.model.now;
        let id = &self.model.sessions[s].id;
        let after = self
            .app
            .store
            .session(id)
            .await
            .map_err(|e| e.to_string())?;
        let accepted: Vec<&TestResponse> = responses
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .collect();
        let (Some(b), Some(a)) = (before.get(id), after) else {
            ensure!(accepted.is_empty(), "a session without a row answered 200");
            return Ok(());
        };
        ensure!(
            a.absolute_expires_at == b.absolute_expires_at,
            "INVARIANT absolute lifetime: {} became {}",
            b.absolute_expires_at,
            a.absolute_expires_at
        );
        ensure!(
            a.generation == b.generation
                || (a.generation == b.generation + 1
                    && presented == b.generation
                    && !accepted.is_empty()),
            "INVARIANT one chain: generation {} became {} for a token of generation {presented}",
            b.generation,
            a.generation
        );
        if accepted.is_empty() {
            return Ok(());
        }
        ensure!(
            b.revoked_at.is_none(),
            "INVARIANT revoked stays revoked: a session revoked at {:?} answered 200",
            b.revoked_at
        );
        ensure!(
            presented + 1 >= b.generation,
            "INVARIANT no old tokens: generation {presented} worked with the chain at {}",
            b.generation
        );
        if presented + 1 == b.generation {
            ensure!(
                now - b.rotated_at < GRACE,
                "INVARIANT grace window: the previous token worked {}s after its rotation",
                now - b.rotated_at
            );
            ensure!(
                a.generation == b.generation,
                "INVARIANT grace never advances: generation {} became {}",
                b.generation,
                a.generation
            );
        }
        let mut tokens = BTreeSet::new();
        for response in accepted {
            let (token, max_age) = set_cookie(response)?;
            let claims = payload(&token)?;
            ensure!(
                claims["gen"] == json!(a.generation),
                "INVARIANT one chain: a 200 carried generation {} with the store at {}",
                claims["gen"],
                a.generation
            );
            ensure!(
                max_age <= a.absolute_expires_at - now,
                "INVARIANT absolute lifetime: Max-Age {max_age} > absolute expiry - now = {}",
                a.absolute_expires_at - now
            );
            tokens.insert(token);
        }
        ensure!(
            tokens.len() == 1,
            "INVARIANT one chain: {} different refresh tokens at once",
            tokens.len()
        );
        Ok(())
    }

    async fn logout(
        &mut self,
        s: usize,
        presented: Option<Presented>,
        step: &mut Step,
    ) -> Result<(), String> {
        let response = match &presented {
            Some(p) => self.app.logout(p.token()).await,
            None => {
                self.app
                    .send(
                        Request::post("/logout")
                            .body(Body::empty())
                            .expect("request"),
                    )
                    .await
            }
        };
        step.outcome = Some(summary(&response));
        match presented {
            Some(Presented::Genuine { .. }) => {
                self.model.revoke(s);
                self.count("logout");
            }
            _ => {
                step.harmless = true;
                self.count("logout: without a cookie or forged");
            }
        }
        expect_no_store(&response)?;
        expect_status(&response, StatusCode::NO_CONTENT)?;
        expect_cleared(&response)
    }

    /// Whether the session's newest access token has expired (and was, as it
    /// must be, refused).
    /// An account action with session `s`'s access token: refused when the
    /// token has expired, or when its session is no longer live (README,
    /// "How sessions work"); `Ok(true)` when it was, as it should be.
    fn expired_access(
        &mut self,
        s: usize,
        response: &TestResponse,
        step: &mut Step,
    ) -> Result<bool, String> {
        expect_no_store(response)?;
        let session = &self.model.sessions[s];
        let refused = if session.access_expires_at <= self.model.now {
            "expired access token refused"
        } else if !session.live(self.model.now) {
            "access token of an ended session refused"
        } else {
            return Ok(false);
        };
        step.harmless = true;
        self.count(refused);
        expect_error(response, StatusCode::UNAUTHORIZED, "invalid_token")?;
        Ok(true)
    }

    async fn revoke_all(&mut self, s: usize, step: &mut Step) -> Result<(), String> {
        let access = self.model.sessions[s].access.clone();
        let response = self.app.delete_with_bearer("/sessions", &access).await;
        step.outcome = Some(summary(&response));
        if self.expired_access(s, &response, step)? {
            return Ok(());
        }
        let user = self.model.sessions[s].user;
        let mine: Vec<usize> = self.model.sessions_of(user).collect();
        for t in mine {
            self.model.revoke(t);
        }
        self.count("revoke all");
        expect_status(&response, StatusCode::NO_CONTENT)
    }

    async fn revoke_one(
        &mut self,
        by: usize,
        target: usize,
        step: &mut Step,
    ) -> Result<(), String> {
        let access = self.model.sessions[by].access.clone();
        let id = self.model.sessions[target].id.clone();
        let response = self
            .app
            .delete_with_bearer(&format!("/sessions/{id}"), &access)
            .await;
        step.outcome = Some(summary(&response));
        if self.expired_access(by, &response, step)? {
            return Ok(());
        }
        let t = &self.model.sessions[target];
        if t.user == self.model.sessions[by].user && !t.revoked && !t.deleted {
            self.model.revoke(target);
            self.count("revoke one");
            expect_status(&response, StatusCode::NO_CONTENT)
        } else {
            step.harmless = true;
            self.count("revoke one: not found");
            expect_error(&response, StatusCode::NOT_FOUND, "not_found")
        }
    }

    async fn change_password(
        &mut self,
        s: usize,
        correct: bool,
        step: &mut Step,
    ) -> Result<(), String> {
        let user = self.model.sessions[s].user;
        let access = self.model.sessions[s].access.clone();
        let new_password = format!("new password {}-{}", self.case, self.passwords_changed);
        let current = if correct {
            self.model.users[user].password.clone()
        } else {
            WRONG_PASSWORD.to_owned()
        };
        let response = self
            .app
            .send(
                Request::post("/password")
                    .header(header::AUTHORIZATION, format!("Bearer {access}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        json!({ "current_password": current, "new_password": new_password })
                            .to_string(),
                    ))
                    .expect("request"),
            )
            .await;
        step.outcome = Some(summary(&response));
        if self.expired_access(s, &response, step)? {
            return Ok(());
        }
        if !correct {
            step.harmless = true;
            self.count("password change: wrong current password");
            return expect_error(&response, StatusCode::FORBIDDEN, "wrong_current_password");
        }
        self.passwords_changed += 1;
        self.model.users[user].password = new_password;
        let others: Vec<usize> = self.model.sessions_of(user).filter(|&t| t != s).collect();
        for t in others {
            self.model.revoke(t);
        }
        self.count("password changed");
        expect_status(&response, StatusCode::NO_CONTENT)
    }

    async fn housekeeping(&mut self, step: &mut Step) -> Result<(), String> {
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        let swept = self.app.auth.sweep(&stopped)
            .await
            .map_err(|e| e.to_string())?;
        let now = self.model.now;
        let mut deleted = 0;
        for session in &mut self.model.sessions {
            if !session.deleted && session.absolute_expires_at <= now {
                session.deleted = true;
                deleted += 1;
            }
        }
        step.outcome = Some(format!("{} sessions deleted", swept.sessions));
        if deleted > 0 {
            self.count("housekeeping deleted sessions");
        } else {
            step.harmless = true;
        }
        // Earlier cases' sessions may go too; never fewer than this case's.
        ensure!(
            swept.sessions >= deleted,
            "housekeeping deleted {} sessions, the model expected at least {deleted}",
            swept.sessions
        );
        Ok(())
    }

    /// The store's rows of this case's sessions.
    async fn snapshot(&self) -> Result<Snapshot, String> {
        let mut rows = Snapshot::new();
        for session in &self.model.sessions {
            if let Some(row) = self
                .app
                .store
                .session(&session.id)
                .await
                .map_err(|e| e.to_string())?
            {
                rows.insert(session.id.clone(), row);
            }
        }
        Ok(rows)
    }

    /// After every step: the store is the model, and the invariants hold
    /// against the previous snapshot. Returns the new snapshot.
    async fn check_store(&self, before: &Snapshot, harmless: bool) -> Result<Snapshot, String> {
        let after = self.snapshot().await?;
        let now = self.model.now;
        for (s, m) in self.model.sessions.iter().enumerate() {
            let row = after.get(&m.id);
            let old = before.get(&m.id);
            if m.deleted {
                ensure!(row.is_none(), "s{s}: housekeeping should have deleted it");
                continue;
            }
            let Some(row) = row else {
                return Err(format!("s{s}: no row in the store"));
            };
            if let Some(old) = old {
                ensure!(
                    row.absolute_expires_at == old.absolute_expires_at,
                    "INVARIANT absolute lifetime: s{s}'s changed from {} to {}",
                    old.absolute_expires_at,
                    row.absolute_expires_at
                );
                ensure!(
                    row.generation == old.generation || row.generation == old.generation + 1,
                    "INVARIANT one chain: s{s} went from generation {} to {}",
                    old.generation,
                    row.generation
                );
                if old.revoked_at.is_some() {
                    ensure!(
                        row.revoked_at == old.revoked_at && row.generation == old.generation,
                        "INVARIANT revoked stays revoked: s{s} was revoked at {:?} at generation \
                         {}, now {:?} at generation {}",
                        old.revoked_at,
                        old.generation,
                        row.revoked_at,
                        row.generation
                    );
                }
            }
            ensure!(
                row.absolute_expires_at == m.absolute_expires_at
                    && row.idle_expires_at <= row.absolute_expires_at,
                "INVARIANT absolute lifetime: s{s} has idle {} and absolute {}, the model {}",
                row.idle_expires_at,
                row.absolute_expires_at,
                m.absolute_expires_at
            );
            ensure!(
                row.user_id == self.model.users[m.user].id,
                "s{s} belongs to user {}",
                row.user_id
            );
            ensure!(
                row.generation == m.generation
                    && row.rotated_at == m.rotated_at
                    && row.idle_expires_at == m.idle_expires_at,
                "s{s}: store at generation {} (rotated at t+{}, idle until t+{}), \
                 the model at generation {} (t+{}, t+{})",
                row.generation,
                row.rotated_at - self.start,
                row.idle_expires_at - self.start,
                m.generation,
                m.rotated_at - self.start,
                m.idle_expires_at - self.start
            );
            ensure!(
                row.revoked_at.is_some() == m.revoked,
                "s{s}: store revoked_at {:?} ({:?}), the model says revoked = {}",
                row.revoked_at,
                row.revoked_reason,
                m.revoked
            );
        }
        if harmless {
            ensure!(
                after == *before,
                "a step that should change nothing changed the sessions"
            );
        }
        for (u, user) in self.model.users.iter().enumerate() {
            let active: BTreeSet<String> = self
                .app
                .store
                .active_sessions(user.id, now)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|s| s.id)
                .collect();
            let expected: BTreeSet<String> = self
                .model
                .sessions_of(u)
                .filter(|&s| self.model.sessions[s].live(now))
                .map(|s| self.model.sessions[s].id.clone())
                .collect();
            ensure!(
                active == expected,
                "u{u}: the store's active sessions {active:?}, the model's {expected:?}"
            );
        }
        Ok(after)
    }
}

// ---------------------------------------------------------------------------
// Reading responses without panicking (a panic would hide the trace).

fn summary(response: &TestResponse) -> String {
    let code = json_body(response)
        .ok()
        .and_then(|b| b["error"].as_str().map(str::to_owned));
    match code {
        Some(code) => format!("{} {code}", response.status.as_u16()),
        None => response.status.as_u16().to_string(),
    }
}

fn json_body(response: &TestResponse) -> Result<Value, String> {
    serde_json::from_slice(&response.body)
        .map_err(|e| format!("not JSON ({e}): {}", response.text()))
}

fn expect_status(response: &TestResponse, status: StatusCode) -> Result<(), String> {
    ensure!(
        response.status == status,
        "expected {status}, got {}: {}",
        response.status,
        response.text()
    );
    Ok(())
}

fn expect_error(response: &TestResponse, status: StatusCode, code: &str) -> Result<(), String> {
    expect_status(response, status)?;
    let body = json_body(response)?;
    ensure!(
        body["error"] == code && body["message"].is_string(),
        "expected error {code}, got {body}"
    );
    Ok(())
}

fn expect_no_store(response: &TestResponse) -> Result<(), String> {
    ensure!(
        response.header("cache-control") == Some("no-store"),
        "Cache-Control: {:?}",
        response.header("cache-control")
    );
    Ok(())
}

fn expect_cleared(response: &TestResponse) -> Result<(), String> {
    let cookie = response
        .refresh_cookie()
        .ok_or("no clearing cookie was sent")?;
    ensure!(
        cookie.name() == COOKIE_NAME
            && cookie.value().is_empty()
            && cookie.path() == Some("/")
            && cookie.max_age().map(|d| d.whole_seconds()) == Some(0),
        "not a clearing cookie: {cookie}"
    );
    Ok(())
}

/// The refresh cookie a response sets: its value and `Max-Age`.
fn set_cookie(response: &TestResponse) -> Result<(String, i64), String> {
    let cookie = response.refresh_cookie().ok_or("no refresh cookie")?;
    ensure!(
        cookie.name() == COOKIE_NAME
            && !cookie.value().is_empty()
            && cookie.http_only() == Some(true)
            && cookie.secure() == Some(true)
            && cookie.path() == Some("/"),
        "a refresh cookie with the wrong shape: {cookie}"
    );
    let max_age = cookie
        .max_age()
        .ok_or("a refresh cookie without Max-Age")?
        .whole_seconds();
    Ok((cookie.value().to_owned(), max_age))
}

fn access_token(response: &TestResponse) -> Result<String, String> {
    json_body(response)?["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no access token: {}", response.text()))
}

/// A JWT's claims, unverified.
fn payload(token: &str) -> Result<Value, String> {
    let segment = token.split('.').nth(1).ok_or("not a JWT")?;
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|e| format!("JWT payload: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("JWT payload: {e}"))
}

// ---------------------------------------------------------------------------
// The tests.

/// 64 cases on SQLite, 32 on PostgreSQL (a few seconds each; the sequences
/// are up to `MAX_OPS` long); `PROPTEST_CASES` for a longer hunt.
fn cases() -> u32 {
    let default = match super::STORE {
        StoreKind::Sqlite => 64,
        StoreKind::Postgres => 32,
    };
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Proptest's shrinking removes steps in one pass, and steps name sessions
/// by position, so a removal it tried early can work once later steps have
/// shrunk: drop single steps until none can go, then report.
fn minimize(
    mut ops: Vec<Op>,
    mut reason: String,
    run: impl Fn(&[Op]) -> Result<(), String>,
) -> String {
    let mut i = 0;
    while i < ops.len() && ops.len() > 1 {
        let mut fewer = ops.clone();
        fewer.remove(i);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&fewer)))
            .unwrap_or_else(|panic| {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("a panic");
                Err(format!("panicked: {message}"))
            });
        match outcome {
            Err(still) => {
                ops = fewer;
                reason = still;
                i = 0;
            }
            Ok(()) => i += 1,
        }
    }
    report(&reason, &ops)
}

fn report(reason: &str, ops: &[Op]) -> String {
    let listed: Vec<String> = ops
        .iter()
        .enumerate()
        .map(|(i, op)| format!("{:>3}. {op:?}", i + 1))
        .collect();
    format!(
        "the rotation model found a difference on {:?}.\n\
         Shrunk sequence ({} operations):\n{}\n{reason}",
        super::STORE,
        ops.len(),
        listed.join("\n")
    )
}

#[test]
fn random_interleavings_agree_with_the_model_and_keep_the_invariants() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let Some(app) = runtime.block_on(TestApp::on(super::STORE, SETTINGS)) else {
        return;
    };
    let cases = cases();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    });
    let stats = Mutex::new(Stats::new());
    let next_case = AtomicU64::new(0);
    let run = |ops: &[Op]| {
        let case = next_case.fetch_add(1, Ordering::Relaxed);
        runtime.block_on(run_case(&app, case, ops, false, &stats))
    };
    let result = runner.run(&op_sequences(), |ops| {
        run(&ops).map_err(TestCaseError::fail)
    });
    let failure = match result {
        Ok(()) => None,
        Err(TestError::Fail(reason, ops)) => Some(minimize(ops, reason.to_string(), run)),
        Err(TestError::Abort(reason)) => Some(format!("proptest aborted: {reason}")),
    };
    runtime.block_on(app.store.close());
    {
        // The pools go inside the runtime's context.
        let _context = runtime.enter();
        drop(app);
    }
    if let Some(failure) = failure {
        panic!("{failure}");
    }

    let stats = stats.into_inner().expect("stats");
    eprintln!(
        "rotation model on {:?}, {cases} cases: {stats:#?}",
        super::STORE
    );
    // A run that never reached a rule proves nothing about it (checked where
    // the default count makes a miss vanishingly unlikely).
    if cases >= 64 {
        for outcome in [
            "refresh: rotated",
            "refresh: grace path",
            "refresh: reuse detected",
            "refresh: dead session refused",
            "refresh: forged token refused",
            "race: one rotation, the rest graced",
            "revoke all",
            "password changed",
        ] {
            assert!(
                stats.get(outcome).copied().unwrap_or(0) > 0,
                "{cases} cases never produced {outcome:?}: {stats:#?}"
            );
        }
    }
}

/// Every operation once, in an order whose answers are easy to check by
/// hand: the model's own smoke test, and an example of reading a trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_written_sequence_agrees_with_the_model() {
    use Op::*;
    let app = test_app!(SETTINGS);
    let s0 = 0; // u0's first session
    let s1 = 1; // u0's second
    let s2 = 2; // u1's
    let ops = [
        Login { user: 0 },
        Login { user: 0 },
        Login { user: 1 },
        Refresh {
            session: s0,
            token: Tok::Current,
        },
        Advance { seconds: 3 },
        Refresh {
            session: s0,
            token: Tok::Previous,
        }, // grace
        Refresh {
            session: s0,
            token: Tok::Current,
        },
        RefreshRace {
            session: s0,
            copies: 3,
            previous: false,
        },
        Refresh {
            session: s0,
            token: Tok::Forged(Forgery::WrongKeyNextGeneration),
        },
        Refresh {
            session: s0,
            token: Tok::Forged(Forgery::AccessToken),
        },
        Refresh {
            session: s0,
            token: Tok::Older(0),
        }, // reuse: s0 revoked
        Refresh {
            session: s0,
            token: Tok::Current,
        }, // dead
        Refresh {
            session: s1,
            token: Tok::Current,
        },
        Advance { seconds: 11 },
        Refresh {
            session: s1,
            token: Tok::Previous,
        }, // past the grace window: reuse
        Login { user: 0 }, // s3
        ChangePassword {
            session: 3,
            correct: false,
        },
        ChangePassword {
            session: 3,
            correct: true,
        }, // nothing else of u0 is live
        Login { user: 0 },               // s4, with the new password
        RevokeOne { by: 4, target: s2 }, // u1's: not found
        RevokeAll { session: s2 },
        LoginWrongPassword { user: 1 },
        LoginWithCookie {
            user: 1,
            session: 4,
            cookie: Tok::Current,
        }, // s5, ends s4
        Logout {
            session: 5,
            cookie: Some(Tok::Forged(Forgery::AlgNone)),
        },
        Advance { seconds: 130 }, // access tokens expire, s5 idles out
        RevokeAll { session: 5 }, // refused: expired access token
        Advance { seconds: 320 },
        Housekeeping,
        Refresh {
            session: 5,
            token: Tok::Current,
        },
        Logout {
            session: 5,
            cookie: None,
        },
    ];
    let stats = Mutex::new(Stats::new());
    if let Err(e) = run_case(&app, 0, &ops, true, &stats).await {
        panic!("{e}");
    }
    let stats = stats.into_inner().expect("stats");
    for (outcome, times) in [
        ("refresh: rotated", 3),
        ("refresh: grace path", 1),
        ("race: one rotation, the rest graced", 1),
        ("refresh: forged token refused", 2),
        ("refresh: reuse detected", 2),
        ("refresh: dead session refused", 2),
        ("password change: wrong current password", 1),
        ("password changed", 1),
        ("revoke one: not found", 1),
        ("revoke all", 1),
        ("login ended the cookie's session", 1),
        ("expired access token refused", 1),
        ("housekeeping deleted sessions", 1),
    ] {
        assert_eq!(
            stats.get(outcome).copied().unwrap_or(0),
            times,
            "{outcome}: {stats:#?}"
        );
    }
}

#[test]
fn the_settings_are_the_models() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_from(&test_vars(&dir, SETTINGS)).expect("valid settings");
    assert_eq!(secs(config.tokens.refresh_ttl), REFRESH_TTL);
    assert_eq!(secs(config.tokens.session_lifetime), MAX_LIFETIME);
    assert_eq!(secs(config.tokens.reuse_grace), GRACE);
    assert_eq!(secs(config.tokens.access_ttl), ACCESS_TTL);
}

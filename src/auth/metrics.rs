//! The metrics (README, "Metrics"). Counted here, in the core, so that the
//! HTTP API, the `latchkey` command and an embedding application count the
//! same events the same way: each flow reports its outcome once, where it is
//! final (`login.rs`, `rotation.rs`, `registration.rs`, and every place a
//! session is revoked).
//!
//! One registry per [`Auth`](crate::Auth). The families whose label values
//! are known up front have every series from the start, at 0, so that a
//! rate or an alert sees the first event; counting one of them is one atomic
//! add, with no lookup and no allocation.

use std::fmt::Write as _;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::MatchedPath;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::auth::password::Hasher;
use crate::store::{CommitObserver, MailKind, RevokeReason, Store};

/// The `Content-Type` of [`Auth::metrics_text`](crate::Auth::metrics_text): Prometheus'
/// text format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The `route` of requests that no route matched: one value for all of them,
/// so that scanners trying paths cannot add series. Route templates start
/// with `/`, so it names no route.
const UNMATCHED: &str = "unmatched";

/// Request durations: from a token check (about a millisecond) to a login
/// waiting its turn for a hashing thread, up to `REQUEST_TIMEOUT`'s default.
const HTTP_SECONDS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One group commit: mostly the disk's flush (a fraction of a millisecond on
/// an SSD), longer when SQLite waits for its write lock.
const COMMIT_SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Declares the values of a label known up front, once: the variants, their
/// label values, and the label's name.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident ($label:literal) { $($(#[$vdoc:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl LabelValues for $name {
            const LABEL: &'static str = $label;
            const ALL: &'static [Self] = &[$(Self::$variant,)+];

            fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }

            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

label_values! {
    /// How a call of [`Auth::log_in`](crate::Auth::log_in) ended.
    LoginOutcome ("outcome") {
        /// A session started.
        Succeeded = "succeeded",
        /// The password was right; the account's second factor is asked
        /// for (`401 second_factor_required`).
        SecondFactorRequired = "second_factor_required",
        /// The password was right; the account's role requires a second
        /// factor and it has none: it is set up before anything is signed
        /// in (`401 second_factor_enrollment_required`).
        EnrollmentRequired = "second_factor_enrollment_required",
        /// An unknown user, a wrong password, a disabled account, or
        /// credentials that changed during the login (`401`).
        Failed = "failed",
        /// Refused by the throttle before any check (`429`).
        Throttled = "throttled",
        /// Refused because too many checks were in flight or the hashing
        /// queue was full (`503 server_busy`).
        Busy = "busy",
        /// A username or password missing: not an attempt (`400`).
        Invalid = "invalid",
        /// The store or the service failed (`5xx`).
        Error = "error",
    }
}

label_values! {
    /// How a check of a second factor ended (a login's second step, a
    /// step-up; README, "Second factor").
    SecondFactorOutcome ("outcome") {
        /// A TOTP code was accepted.
        Accepted = "accepted",
        /// A recovery code was accepted (it works no more).
        RecoveryCodeAccepted = "recovery_code_accepted",
        /// A wrong, reused or expired code.
        Rejected = "rejected",
        /// Refused by the throttle before any check (`429`).
        Throttled = "throttled",
        /// Refused unchecked: 100 wrong codes in a row (`403 second_factor_locked`).
        Locked = "locked",
    }
}

label_values! {
    /// How a call of [`Auth::refresh`](crate::Auth::refresh) ended (README,
    /// "Rotation rules").
    RefreshOutcome ("outcome") {
        /// Rule 1: the current token advanced the chain.
        Rotated = "rotated",
        /// Rule 2: the token just rotated away, within the grace window.
        Grace = "grace",
        /// Rule 3: an older token came back; the session is revoked.
        Reused = "reused",
        /// A token that is not genuine, or whose session was revoked, is
        /// gone, or belongs to a disabled account or to old credentials.
        Invalid = "invalid",
        /// The token or its session ran out (idle or absolute expiry).
        Expired = "expired",
        /// No refresh cookie at all (a page checking whether it is signed in).
        Missing = "missing",
        /// More than `MAX_REFRESHES_PER_MINUTE` for the session (`429`).
        Throttled = "throttled",
        /// The store or the service failed.
        Error = "error",
    }
}

label_values! {
    /// How a call of [`Auth::register`](crate::Auth::register) ended.
    RegistrationOutcome ("outcome") {
        /// An account was created.
        Succeeded = "succeeded",
        /// Refused by the per-address allowance (`429`).
        Throttled = "throttled",
        /// `REGISTRATION_OPEN` is false (`403`).
        Closed = "closed",
        /// The username is in use (`409`).
        UsernameTaken = "username_taken",
        /// The password breaks a rule (`422`).
        WeakPassword = "weak_password",
        /// A malformed username (`400`).
        Invalid = "invalid",
        /// The hashing queue was full (`503 server_busy`).
        Busy = "busy",
        /// The store or the service failed.
        Error = "error",
    }
}

/// A label whose every value is known when the registry is built.
pub(crate) trait LabelValues: Copy + 'static {
    /// The label's name.
    const LABEL: &'static str;
    /// Every value, in the order of [`LabelValues::index`].
    const ALL: &'static [Self];
    /// The value as written.
    fn as_str(self) -> &'static str;
    /// Its position in [`LabelValues::ALL`].
    fn index(self) -> usize;
}

impl LabelValues for RevokeReason {
    const LABEL: &'static str = "reason";
    const ALL: &'static [Self] = RevokeReason::ALL;

    fn as_str(self) -> &'static str {
        RevokeReason::as_str(self)
    }

    // `ALL` is declared in variant order, by the same macro as the variants.
    fn index(self) -> usize {
        self as usize
    }
}

impl LabelValues for MailKind {
    const LABEL: &'static str = "kind";
    const ALL: &'static [Self] = MailKind::ALL;

    fn as_str(self) -> &'static str {
        MailKind::as_str(self)
    }

    fn index(self) -> usize {
        MailKind::ALL
            .iter()
            .position(|k| *k == self)
            .unwrap_or(usize::MAX)
    }
}

/// A counter family over one label of known values, every series made up front.
struct Counted<T> {
    counters: Vec<Counter>,
    label: PhantomData<T>,
}

impl<T: LabelValues> Counted<T> {
    fn register(registry: &mut Registry, name: &str, help: &str) -> Self {
        let family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(name, help, family.clone());
        let counters = T::ALL
            .iter()
            .map(|value| family.get_or_create_owned(&[(T::LABEL, value.as_str())]))
            .collect();
        Self {
            counters,
            label: PhantomData,
        }
    }

    fn add(&self, value: T, n: u64) {
        if let Some(counter) = self.counters.get(value.index()) {
            counter.inc_by(n);
        }
    }
}

/// The `route` label: the template of the route that matched (`/sessions/{id}`),
/// never the path as sent, whose values a client could multiply without end.
#[derive(Debug, Clone)]
pub(crate) struct Route(Option<MatchedPath>);

impl Route {
    /// The route `matched` (axum's `MatchedPath`), or none.
    pub(crate) fn new(matched: Option<&MatchedPath>) -> Self {
        Self(matched.cloned())
    }

    fn as_str(&self) -> &str {
        self.0.as_ref().map_or(UNMATCHED, MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

type HttpDurations = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The group commit histograms, which the store reports each batch to.
struct Commits {
    seconds: Histogram,
    rotations: Histogram,
}

impl CommitObserver for Commits {
    fn committed(&self, rotations: usize, took: Duration) {
        self.seconds.observe(took.as_secs_f64());
        self.rotations.observe(rotations as f64);
    }
}

/// The registry and every family in it.
pub(crate) struct Metrics {
    registry: Registry,
    logins: Counted<LoginOutcome>,
    refreshes: Counted<RefreshOutcome>,
    registrations: Counted<RegistrationOutcome>,
    second_factors: Counted<SecondFactorOutcome>,
    revoked: Counted<RevokeReason>,
    mail_queued: Counted<MailKind>,
    mail_sent: Counted<MailKind>,
    mail_failed: Counted<MailKind>,
    mail_oldest: Gauge,
    http_requests: Family<RequestLabels, Counter>,
    http_durations: HttpDurations,
    hash_queue_depth: Gauge,
    hash_queue_capacity: Gauge,
    db_in_use: Gauge,
    db_idle: Gauge,
    db_max: Gauge,
    /// Held here: the store holds it only weakly.
    commits: Arc<Commits>,
}

impl Metrics {
    /// Every family, registered; the hasher's timings among them.
    pub(crate) fn new(hasher: &Hasher) -> Self {
        let mut registry = Registry::default();
        let r = &mut registry;
        let logins = Counted::register(r, "latchkey_logins", "Login attempts, by outcome");
        let refreshes = Counted::register(
            r,
            "latchkey_refreshes",
            "Refresh-token exchanges (POST /token), by outcome",
        );
        let registrations = Counted::register(
            r,
            "latchkey_registrations",
            "Sign-ups (POST /register), by outcome",
        );
        let second_factors = Counted::register(
            r,
            "latchkey_second_factor_checks",
            "Second factors checked (a login's second step, a step-up), by outcome",
        );
        let revoked = Counted::register(
            r,
            "latchkey_sessions_revoked",
            "Sessions ended before their expiry, by reason",
        );
        let mail_queued = Counted::register(r, "latchkey_mail_queued", "Mails queued, by kind");
        let mail_sent = Counted::register(
            r,
            "latchkey_mail_sent",
            "Mails the transport accepted, by kind",
        );
        let mail_failed = Counted::register(
            r,
            "latchkey_mail_failed",
            "Mails given up on (refused for good, or out of attempts), by kind",
        );
        let mail_oldest = Gauge::default();
        r.register(
            "latchkey_mail_queue_age_seconds",
            "Age of the oldest mail still to be sent, as the mail worker last saw it; 0 when none",
            mail_oldest.clone(),
        );

        let http_requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "latchkey_http_requests",
            "HTTP requests answered, by route template and status",
            http_requests.clone(),
        );
        let http_durations: HttpDurations =
            Family::new_with_constructor(|| Histogram::new(HTTP_SECONDS));
        r.register(
            "latchkey_http_request_duration_seconds",
            "Time from a request's head to its answer, by route template",
            http_durations.clone(),
        );

        let hash_queue_depth = Gauge::default();
        r.register(
            "latchkey_password_hash_queue_depth",
            "Password hashes and checks waiting or running",
            hash_queue_depth.clone(),
        );
        let hash_queue_capacity = Gauge::default();
        r.register(
            "latchkey_password_hash_queue_capacity",
            "Password hashes and checks that may wait or run at once; past it, server_busy",
            hash_queue_capacity.clone(),
        );
        r.register(
            "latchkey_password_hash_duration_seconds",
            "Time one bcrypt hash or verification took on a hashing thread",
            hasher.durations(),
        );

        let db = Family::<StateLabels, Gauge>::default();
        r.register(
            "latchkey_db_connections",
            "Database pool connections open, by state (in_use, idle)",
            db.clone(),
        );
        let db_in_use = db.get_or_create_owned(&StateLabels { state: "in_use" });
        let db_idle = db.get_or_create_owned(&StateLabels { state: "idle" });
        let db_max = Gauge::default();
        r.register(
            "latchkey_db_connections_max",
            "Database pool connections the pool opens at most",
            db_max.clone(),
        );

        let commits = Arc::new(Commits {
            seconds: Histogram::new(COMMIT_SECONDS),
            rotations: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
        });
        r.register(
            "latchkey_group_commit_duration_seconds",
            "Time one group commit of rotations took, statement and COMMIT (SQLite)",
            commits.seconds.clone(),
        );
        r.register(
            "latchkey_group_commit_batch_size",
            "Rotations applied in one group commit (SQLite)",
            commits.rotations.clone(),
        );

        let build = Family::<BuildLabels, Gauge>::default();
        r.register(
            "latchkey_build_info",
            "The running latchkey's version; always 1",
            build.clone(),
        );
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);

        Self {
            registry,
            logins,
            refreshes,
            registrations,
            second_factors,
            revoked,
            mail_queued,
            mail_sent,
            mail_failed,
            mail_oldest,
            http_requests,
            http_durations,
            hash_queue_depth,
            hash_queue_capacity,
            db_in_use,
            db_idle,
            db_max,
            commits,
        }
    }

    /// The group commit histograms, for the store to report batches to.
    pub(crate) fn commit_observer(&self) -> std::sync::Weak<dyn CommitObserver> {
        let commits: Arc<dyn CommitObserver> = self.commits.clone();
        Arc::downgrade(&commits)
    }

    pub(crate) fn login(&self, outcome: LoginOutcome) {
        self.logins.add(outcome, 1);
    }

    pub(crate) fn refresh(&self, outcome: RefreshOutcome) {
        self.refreshes.add(outcome, 1);
    }

    pub(crate) fn registration(&self, outcome: RegistrationOutcome) {
        self.registrations.add(outcome, 1);
    }

    pub(crate) fn second_factor(&self, outcome: SecondFactorOutcome) {
        self.second_factors.add(outcome, 1);
    }

    /// `count` sessions just ended for `reason`.
    pub(crate) fn sessions_revoked(&self, reason: RevokeReason, count: u64) {
        self.revoked.add(reason, count);
    }

    pub(crate) fn mail_queued(&self, kind: MailKind) {
        self.mail_queued.add(kind, 1);
    }

    pub(crate) fn mail_sent(&self, kind: MailKind) {
        self.mail_sent.add(kind, 1);
    }

    pub(crate) fn mail_failed(&self, kind: MailKind) {
        self.mail_failed.add(kind, 1);
    }

    /// The oldest mail still to be sent is `seconds` old.
    pub(crate) fn mail_queue_age(&self, seconds: i64) {
        self.mail_oldest.set(seconds.max(0));
    }

    /// A request answered with `status`, `took` after its head arrived.
    pub(crate) fn http_request(&self, route: Route, status: u16, took: Duration) {
        self.http_durations
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(took.as_secs_f64());
        self.http_requests
            .get_or_create(&RequestLabels { route, status })
            .inc();
    }

    /// Every series in Prometheus' text format, the gauges read from the
    /// store and the hasher as they are now.
    pub(crate) fn text(&self, store: &dyn Store, hasher: &Hasher) -> String {
        let connections = store.connections();
        self.db_in_use.set(connections.in_use.into());
        self.db_idle.set(connections.idle.into());
        self.db_max.set(connections.max.into());
        self.hash_queue_depth.set(gauge(hasher.pending()));
        self.hash_queue_capacity.set(gauge(hasher.capacity()));

        let mut openmetrics = String::new();
        // Writing to a `String` cannot fail; the families encode only labels
        // and numbers declared above.
        let _ =
            prometheus_client::encoding::text::encode_registry(&mut openmetrics, &self.registry);
        prometheus_text(&openmetrics)
    }
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// prometheus-client writes the OpenMetrics 1.0 text format. Prometheus' own
/// text format (version 0.0.4), which `promtool check metrics` and every
/// scraper read, differs from it in one point for what is registered here:
/// a counter's `# HELP` and `# TYPE` lines name it with the `_total` suffix
/// its samples carry, where OpenMetrics names the family without it. (No
/// unit and no `info` metric is registered, and the closing `# EOF` is never
/// written, so nothing else differs.)
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len() + 256);
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            // Written with its `# TYPE`, which says whether the name changes.
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let suffix = if kind == "counter" { "_total" } else { "" };
            if let Some(help) = help.take() {
                let text = help.split_once(' ').map_or("", |(_, text)| text);
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

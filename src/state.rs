//! Shared state handed to every handler; cheap to clone.

use std::sync::Arc;

use crate::audit::Aggregator;
use crate::auth::admission::Admission;
use crate::auth::cookies::RefreshCookies;
use crate::auth::password::Hasher;
use crate::auth::tokens::TokenKeys;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::Store;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub keys: Arc<TokenKeys>,
    pub cookies: Arc<RefreshCookies>,
    pub hasher: Hasher,
    /// Password checks in flight per address and account.
    pub admission: Arc<Admission>,
    /// Counts of repeated rejections not yet written to the audit trail.
    pub audit: Arc<Aggregator>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        Self::with_clock(config, store, Arc::new(SystemClock))
    }

    /// As [`AppState::new`], with time taken from `clock` (tests move it by hand).
    pub fn with_clock(config: Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let hasher = Hasher::new(config.bcrypt_cost);
        Self {
            keys: Arc::new(TokenKeys::new(&config)),
            cookies: Arc::new(RefreshCookies::new(&config)),
            admission: Arc::new(Admission::new(hasher.threads())),
            hasher,
            audit: Arc::new(Aggregator::default()),
            config: Arc::new(config),
            store,
            clock,
        }
    }
}

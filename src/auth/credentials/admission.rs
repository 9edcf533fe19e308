//! How many password checks one client may have in flight at once.
//!
//! Each check is admitted under a few keys (the client's address, and the
//! account or the device cookie it is for); each key lets as many checks run
//! as there are hashing threads and `WAITING` more wait their turn, and
//! answers `503 server_busy` to anything beyond. So one address flooding the
//! login form occupies at most one place per hashing thread, and a login from
//! anywhere else waits for at most one of the flood's hashes to finish, never
//! behind all of them
//! (README, "Limits under attack"). Per process: the throttle in the store is
//! what holds across instances; this bounds the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::error::ApiError;

/// Checks of one key waiting for a place; more are refused at once. Waiting
/// costs a parked task, not hashing; a flood's requests wait here for their
/// turn at the throttle, which then refuses them without a hash.
pub const WAITING: usize = 256;

#[derive(Debug)]
pub struct Admission {
    keys: Arc<Mutex<HashMap<String, Slot>>>,
    /// Checks of one key running at once: the number of hashing threads.
    in_flight: usize,
}

#[derive(Debug)]
struct Slot {
    places: Arc<Semaphore>,
    /// Checks holding or waiting for a place under this key.
    users: usize,
}

/// Held while a check runs; dropping it frees its places.
#[must_use]
pub struct Ticket {
    keys: Arc<Mutex<HashMap<String, Slot>>>,
    names: Vec<String>,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Admission {
    /// Lets `in_flight` checks of each key run at once.
    pub fn new(in_flight: usize) -> Self {
        Self {
            keys: Arc::default(),
            in_flight: in_flight.max(1),
        }
    }

    /// Waits for a place under every key, or refuses at once when a key
    /// already has `WAITING` checks queued.
    pub async fn enter(&self, mut names: Vec<String>) -> Result<Ticket, ApiError> {
        // One order for every caller, so two checks never wait on each other.
        names.sort();
        names.dedup();
        let places = {
            let mut keys = self.keys.lock().map_err(|_| busy())?;
            let full = names.iter().any(|name| {
                keys.get(name)
                    .is_some_and(|slot| slot.users >= self.in_flight + WAITING)
            });
            if full {
                return Err(busy());
            }
            names
                .iter()
                .map(|name| {
                    let slot = keys.entry(name.clone()).or_insert_with(|| Slot {
                        places: Arc::new(Semaphore::new(self.in_flight)),
                        users: 0,
                    });
                    slot.users += 1;
                    slot.places.clone()
                })
                .collect::<Vec<_>>()
        };
        // From here on the ticket owns the registration, so a caller that goes
        // away while waiting (its client hung up) still gives it back.
        let mut ticket = Ticket {
            keys: self.keys.clone(),
            names,
            permits: Vec::with_capacity(places.len()),
        };
        for place in places {
            ticket
                .permits
                .push(place.acquire_owned().await.map_err(|_| busy())?);
        }
        Ok(ticket)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.permits.clear();
        if let Ok(mut keys) = self.keys.lock() {
            for name in &self.names {
                if let Some(slot) = keys.get_mut(name) {
                    slot.users = slot.users.saturating_sub(1);
                    if slot.users == 0 {
                        keys.remove(name);
                    }
                }
            }
        }
    }
}

fn busy() -> ApiError {
    ApiError::ServerBusy { retry_after: 1 }
}

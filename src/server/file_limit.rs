//! Room for `MAX_CONNECTIONS` under the process's open-file limit.

/// File descriptors kept for everything but client connections: the
/// listener, the store's files or sockets, the runtime, standard streams.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft limit on open files (towards the hard limit) so that
/// `max_connections` connections fit beside the descriptors latchkey needs
/// otherwise, and returns the number of connections that do fit: where the
/// hard limit is too low, fewer than asked, with a warning, so that the cap
/// and not the kernel's limit is what binds (a process out of descriptors
/// cannot accept the connection that would let it shed an idle one).
#[cfg(target_os = "linux")]
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

    let wanted = u64::try_from(max_connections)
        .unwrap_or(u64::MAX)
        .saturating_add(RESERVED_DESCRIPTORS);
    let limit = getrlimit(Resource::Nofile);
    // `None` is unlimited.
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if raised > soft {
            let new = Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            };
            match setrlimit(Resource::Nofile, new) {
                Ok(()) => soft = raised,
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
        }
    }
    if soft >= wanted {
        return max_connections;
    }
    let fits = soft
        .saturating_sub(RESERVED_DESCRIPTORS)
        .max(soft / 2)
        .max(1);
    let fits = usize::try_from(fits).unwrap_or(max_connections);
    tracing::warn!(
        open_file_limit = soft,
        max_connections,
        "MAX_CONNECTIONS lowered to {fits}: the open-file limit leaves room for no more (raise \
         the hard limit: `LimitNOFILE=` for systemd, `ulimit -Hn`)"
    );
    fits
}

/// Elsewhere the limit is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    max_connections
}

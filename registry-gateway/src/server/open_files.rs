//! Fitting `limits.max_connections` to the open-files limit (`RLIMIT_NOFILE`), raised first.

use crate::config::Config;

/// File descriptors kept aside for listeners, upstream pools, Redis, logs.
const RESERVED_FDS: u64 = 256;

/// The most connections that fit `nofile` open files: two descriptors per connection (the client's and
/// its upstream) plus [`RESERVED_FDS`]; `configured` when it fits or the limit is unknown; at least 1.
pub(super) fn effective_max_connections(configured: usize, nofile: Option<u64>) -> usize {
    let Some(limit) = nofile else {
        return configured;
    };
    let need = (configured as u64)
        .saturating_mul(2)
        .saturating_add(RESERVED_FDS);
    if need <= limit {
        return configured;
    }
    let fits = limit.saturating_sub(RESERVED_FDS) / 2;
    usize::try_from(fits).unwrap_or(usize::MAX).max(1)
}

/// Raises the soft open-files limit to the hard one, and returns `limits.max_connections` lowered to
/// fit it (with a warning naming the key) when it does not.
pub(super) fn fit_max_connections(config: &Config) -> usize {
    let configured = config.limits.max_connections;
    let nofile = raise_nofile_limit();
    let effective = effective_max_connections(configured, nofile);
    if effective < configured {
        tracing::warn!(
            configured,
            effective,
            "limits.max_connections = {configured} needs {} open files (2 per connection + {RESERVED_FDS}) \
             but RLIMIT_NOFILE is {}: using {effective}; raise the hard limit (ulimit -Hn) or lower \
             limits.max_connections",
            (configured as u64).saturating_mul(2).saturating_add(RESERVED_FDS),
            nofile.unwrap_or(0),
        );
    }
    effective
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft limit now in force, if known.
fn raise_nofile_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(soft) => Some(soft),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-files limit (RLIMIT_NOFILE)");
            current_nofile_limit()
        }
    }
}

#[cfg(unix)]
fn current_nofile_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

#[cfg(not(unix))]
fn current_nofile_limit() -> Option<u64> {
    None
}

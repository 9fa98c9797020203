//! The one place IO code reads the time, through tokio so that tests can pause it.

use std::time::Instant;

/// Now, as the policy code expects it.
pub fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

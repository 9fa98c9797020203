//! Settings a config reload replaces while requests are in flight: a request loads one snapshot and
//! keeps it to its end, so it never mixes old and new values.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// A shared, replaceable value: clones see the same value; [`Live::store`] swaps it for all of them.
pub struct Live<T>(Arc<ArcSwap<T>>);

impl<T> Live<T> {
    /// A live value starting at `value`.
    pub fn new(value: T) -> Self {
        Live(Arc::new(ArcSwap::from_pointee(value)))
    }

    /// The current value, for a short synchronous use (no atomic reference count taken).
    pub fn load(&self) -> arc_swap::Guard<Arc<T>> {
        self.0.load()
    }

    /// The current value, to keep across `.await`s (one request's settings).
    pub fn snapshot(&self) -> Arc<T> {
        self.0.load_full()
    }

    /// Replaces the value: requests that already took a snapshot keep theirs.
    pub fn store(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live(Arc::clone(&self.0))
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.load().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_a_store() {
        let live = Live::new(1);
        let other = live.clone();
        let before = live.snapshot();
        other.store(2);
        assert_eq!(*before, 1);
        assert_eq!(**live.load(), 2);
    }
}

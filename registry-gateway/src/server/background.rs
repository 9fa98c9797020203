//! The registry's background loops: the lease sweeper and the end of each outlier interval.

use std::sync::Arc;
use std::time::Duration;

use crate::clock;
use crate::registry::{EjectSlow, Registry, SweepLeases};
use crate::store::Shared;

/// Removes replicas whose lease ran out, several times per TTL so removal is at most a fraction late.
/// The TTL is read at every round: a reload that changes it changes the pace.
pub(super) async fn sweep_leases(registry: Arc<Registry>, shared: Shared) {
    loop {
        let ttl = registry.policy().lease_ttl;
        tokio::time::sleep((ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(1)))
            .await;
        // While the shared store is unreachable, renewals made through other gateways cannot arrive:
        // keep the last known registry instead of expiring it.
        registry.execute(SweepLeases(shared.lease_expiry()), clock::now());
    }
}

/// Ends an outlier interval every `outlier.interval`: slow replicas are opened. Reads the policy at
/// every round, so a reload can turn ejection on or off and change the interval.
pub(super) async fn eject_slow(registry: Arc<Registry>) {
    loop {
        // A busy runtime makes a longer interval, not two short ones.
        tokio::time::sleep(registry.policy().outlier.interval).await;
        registry.execute(EjectSlow, clock::now());
    }
}

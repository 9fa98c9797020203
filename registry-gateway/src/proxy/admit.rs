//! The head of every attempt loop, HTTP and gRPC alike: may the replica just picked take the next
//! attempt (its half-open probe, the service's retry budget)?

use crate::clock;
use crate::policy::{Attempts, Next};
use crate::registry::{Abandon, Pick, Registry, Service};
use crate::store::Shared;

/// Whether the picked replica takes the next attempt.
pub(crate) enum Admit {
    /// Send it there.
    Go,
    /// Another gateway holds this replica's half-open probe: pick another.
    Skip,
    /// The retry budget refused: the request ends with what the last attempt came to.
    Stop(Next),
}

/// Admits the next attempt on `pick`. The budget is asked only when a retry is about to go out, so
/// that one with no replica left to try costs nothing. Calls that never left draw on it too, as in
/// Envoy and Finagle (whose requeues share the retry budget): a connect that times out is often a
/// replica too busy to accept, and an exempt kind of retry would let a service refusing connections
/// everywhere see `max_attempts` times the connection attempts.
pub(crate) async fn admit(
    pick: &Pick,
    attempts: &mut Attempts,
    svc: &Service,
    registry: &Registry,
    shared: &Shared,
) -> Admit {
    if pick.probe && !shared.claim_probe(pick.replica.address()).await {
        return Admit::Skip;
    }
    if attempts.is_retry() && !svc.allow_retry(clock::now()) {
        registry.execute(Abandon(pick), clock::now());
        return Admit::Stop(attempts.refused_by_budget());
    }
    Admit::Go
}

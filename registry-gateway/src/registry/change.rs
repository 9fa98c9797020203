//! Changes made on this gateway that other gateways must learn (through a shared store such as Redis).

use std::time::Duration;

use uuid::Uuid;

use super::{Metadata, Protocol, ReplicaAddress, ServiceName};

/// Everything another gateway needs to hold the same replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// Registration id (the same on every gateway).
    pub id: Uuid,
    /// Service.
    pub service: ServiceName,
    /// Address.
    pub address: ReplicaAddress,
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// gRPC services served.
    pub grpc_services: Vec<String>,
    /// Labels.
    pub metadata: Metadata,
}

/// One local change, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A replica registered here.
    Registered(ReplicaRecord),
    /// Its lease was renewed here (heartbeat or re-registration).
    Renewed {
        /// Service.
        service: ServiceName,
        /// Replica id.
        id: Uuid,
    },
    /// It left the registry here.
    Removed {
        /// Service.
        service: ServiceName,
        /// Replica id.
        id: Uuid,
        /// Its address.
        address: ReplicaAddress,
        /// Why.
        why: Removal,
    },
    /// An attempt on this replica failed (`true`) or succeeded. Shared when it matters to peers: a
    /// failure, a success that ends a run of failures (`streak`), or any attempt while a failure-ratio
    /// rule is on (the window's counts are shared).
    Attempt {
        /// The replica's address.
        address: ReplicaAddress,
        /// Whether it failed.
        failed: bool,
        /// Whether it changes the shared count of consecutive failures (a failure, or a success after
        /// failures).
        streak: bool,
    },
    /// A half-open probe sent from here succeeded (with several probes, they close it together).
    ProbeSucceeded {
        /// The replica's address.
        address: ReplicaAddress,
    },
    /// Its breaker opened here, for this long.
    Opened {
        /// The replica's address.
        address: ReplicaAddress,
        /// Open timeout.
        open_for: Duration,
    },
    /// Its breaker closed here (a probe succeeded).
    Closed {
        /// The replica's address.
        address: ReplicaAddress,
    },
    /// A half-open probe sent from here has its answer (or was abandoned): the probe may be claimed again.
    ProbeDone {
        /// The replica's address.
        address: ReplicaAddress,
    },
}

/// Why a replica left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// It deregistered.
    Deregistered,
    /// Evicted for failures: peers put it on probation too.
    Failures,
    /// Its lease ran out here. The shared store expires it on its own clock; nothing to tell.
    LeaseExpired,
}

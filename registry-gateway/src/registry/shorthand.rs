//! Test-only shorthand: each method builds one [`Command`] and executes it (events published), so that the
//! tests written before the command API still read as they did.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::command::*;
use super::{
    LeaseExpiry, Pick, Registered, Registration, Registry, RegistryError, RemovedFor, Replica,
    ReplicaAddress, ReplicaRecord, Service, ServiceName,
};
use crate::policy::{Outcome, SlowReason};

#[allow(missing_docs)]
impl Registry {
    pub fn add_static(
        &self,
        service: ServiceName,
        address: ReplicaAddress,
        now: Instant,
    ) -> Arc<Replica> {
        self.execute(AddStatic { service, address }, now)
    }

    pub fn remove_static(&self, service: &str, address: &ReplicaAddress, now: Instant) -> bool {
        self.execute(RemoveStatic { service, address }, now)
    }

    pub fn register(&self, reg: Registration, now: Instant) -> Registered {
        self.execute(Register(reg), now)
    }

    pub fn heartbeat(
        &self,
        service: &str,
        id: &str,
        now: Instant,
    ) -> Result<Arc<Replica>, RegistryError> {
        self.execute(Heartbeat { service, id }, now)
    }

    pub fn deregister(
        &self,
        service: &str,
        id: &str,
        now: Instant,
    ) -> Result<Arc<Replica>, RegistryError> {
        self.execute(Deregister { service, id }, now)
    }

    pub fn pick(
        &self,
        service: &Service,
        tried: &[Uuid],
        now: Instant,
        accept: impl Fn(&Replica) -> bool,
    ) -> Option<Pick> {
        self.execute(
            Select {
                service,
                tried,
                accept,
            },
            now,
        )
    }

    pub fn record(&self, pick: &Pick, outcome: Outcome, now: Instant) {
        self.execute(RecordOutcome { pick, outcome }, now)
    }

    pub fn sweep(&self, now: Instant) -> usize {
        self.execute(SweepLeases(LeaseExpiry::Enforced), now)
    }

    pub fn sweep_leases(&self, now: Instant, expiry: LeaseExpiry) -> usize {
        self.execute(SweepLeases(expiry), now)
    }

    pub fn eject_slow(&self, now: Instant) -> usize {
        self.execute(EjectSlow, now)
    }

    pub fn open_as_slow(&self, replica: &Arc<Replica>, reason: SlowReason, now: Instant) -> bool {
        self.execute(OpenAsSlow { replica, reason }, now)
    }

    pub fn apply_registered(&self, record: ReplicaRecord, lease_left: Duration, now: Instant) {
        self.execute(PeerRegistered { record, lease_left }, now)
    }

    pub fn apply_renewed(&self, service: &str, id: Uuid, now: Instant) -> bool {
        self.execute(PeerRenewed { service, id }, now)
    }

    pub fn apply_removed(&self, service: &str, id: Uuid, why: RemovedFor, now: Instant) {
        self.execute(PeerRemoved { service, id, why }, now)
    }

    pub fn apply_opened(&self, address: &ReplicaAddress, open_for: Duration, now: Instant) -> bool {
        self.execute(PeerOpened { address, open_for }, now)
    }

    pub fn apply_closed(&self, address: &ReplicaAddress, now: Instant) {
        self.execute(PeerClosed(address), now)
    }

    pub fn defer_probe(&self, address: &ReplicaAddress, now: Instant) {
        self.execute(PeerProbing(address), now)
    }

    pub fn apply_shared_failures(
        &self,
        address: &ReplicaAddress,
        total: u64,
        now: Instant,
    ) -> bool {
        self.execute(SharedFailures { address, total }, now)
    }

    pub fn apply_shared_window(
        &self,
        address: &ReplicaAddress,
        requests: u32,
        failures: u32,
        now: Instant,
    ) -> bool {
        let window = SharedWindow {
            address,
            requests,
            failures,
        };
        self.execute(window, now)
    }

    pub fn apply_probe_successes(
        &self,
        address: &ReplicaAddress,
        total: u64,
        now: Instant,
    ) -> bool {
        self.execute(SharedProbeSuccesses { address, total }, now)
    }

    pub fn retain_known(
        &self,
        keep: &HashSet<Uuid>,
        known: impl Fn(Uuid) -> bool,
        now: Instant,
    ) -> usize {
        self.execute(RetainKnown { keep, known }, now)
    }
}

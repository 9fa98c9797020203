//! The rules of a resync, as pure functions: which replica wins when two gateways wrote the same one,
//! what a key read from Redis means, and when a replica missing from Redis has left.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use uuid::Uuid;

use super::message::StoredReplica;
use crate::registry::{ReplicaAddress, ReplicaRecord};

/// What a resync applies: the replicas Redis holds, each with its lease left, and their ids.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Plan {
    /// Replicas to hold here (registered or renewed), with the lease time Redis has left for them.
    pub(super) hold: Vec<(ReplicaRecord, Duration)>,
    /// Their ids: what the next resync knows was in Redis.
    pub(super) ids: HashSet<Uuid>,
}

/// Reads the replica hashes found in Redis with their time to live (`PTTL`, milliseconds):
/// - a key with no time left (expired meanwhile: `-2`; or without expiry: `-1`) is skipped;
/// - a hash that does not validate like a registration is skipped (Redis is input like any other);
/// - one replica per service and address: should two gateways have registered it at the same moment,
///   every gateway keeps the same one, the one with the smaller id.
pub(super) fn plan(found: Vec<(StoredReplica, i64)>) -> Plan {
    let mut chosen: HashMap<(String, String), (ReplicaRecord, u64)> = HashMap::new();
    for (stored, ttl) in found {
        let Ok(ttl) = u64::try_from(ttl) else {
            continue;
        };
        if ttl == 0 {
            continue;
        }
        let Some(rec) = stored.record() else {
            continue;
        };
        let key = (stored.service, stored.address);
        match chosen.get(&key) {
            Some((prev, _)) if prev.id <= rec.id => {}
            _ => {
                chosen.insert(key, (rec, ttl));
            }
        }
    }
    let mut plan = Plan::default();
    for (rec, ttl) in chosen.into_values() {
        plan.ids.insert(rec.id);
        plan.hold.push((rec, Duration::from_millis(ttl)));
    }
    plan.hold.sort_by_key(|(r, _)| r.id);
    plan
}

/// What a resync knows of a replica held here.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sighting {
    /// Its key was among those read.
    pub(super) in_redis: bool,
    /// This gateway saw it in Redis before the read.
    pub(super) seen_before: bool,
    /// Redis was not reconnected during the read.
    pub(super) same_epoch: bool,
}

/// Whether a replica held here whose key is not in Redis left the fleet: only when this gateway saw it
/// in Redis before (else it registered here and its key is not written yet), and only when Redis was not
/// reconnected during the read (what was read may predate the write-back). The registry still leaves
/// one whose lease ran out to its lease sweep.
pub(super) fn left_redis(s: Sighting) -> bool {
    !s.in_redis && s.seen_before && s.same_epoch
}

/// The breakers open in Redis, from the `rgw:open:{address}` keys and their `PTTL`s: those with time
/// left and a valid address, with that time.
pub(super) fn open_breakers(keys: &[String], ttls: &[i64]) -> Vec<(ReplicaAddress, Duration)> {
    keys.iter()
        .zip(ttls)
        .filter_map(|(k, t)| {
            let ms = u64::try_from(*t).ok().filter(|ms| *ms > 0)?;
            let address = ReplicaAddress::parse(k.strip_prefix("rgw:open:")?).ok()?;
            Some((address, Duration::from_millis(ms)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(id: u128, address: &str) -> StoredReplica {
        StoredReplica {
            id: Uuid::from_u128(id),
            service: "orders".into(),
            address: address.into(),
            protocol: "http".into(),
            grpc_services: Vec::new(),
            metadata: Default::default(),
        }
    }

    const A: &str = "http://127.0.0.1:9001";
    const B: &str = "http://127.0.0.1:9002";

    #[test]
    fn the_smaller_id_wins_on_every_gateway_whatever_the_order() {
        let found = vec![
            (stored(7, A), 5_000),
            (stored(3, A), 4_000),
            (stored(9, B), 1),
        ];
        let mut reversed = found.clone();
        reversed.reverse();
        let p = plan(found);
        assert_eq!(p, plan(reversed));
        let held: Vec<(u128, u64)> = p
            .hold
            .iter()
            .map(|(r, ttl)| (r.id.as_u128(), ttl.as_millis() as u64))
            .collect();
        // A: id 3 (with its own lease left), B: id 9
        assert_eq!(held, [(3, 4_000), (9, 1)]);
        assert_eq!(
            p.ids,
            HashSet::from([Uuid::from_u128(3), Uuid::from_u128(9)])
        );
    }

    #[test]
    fn keys_without_time_left_and_invalid_hashes_are_skipped() {
        let mut bad = stored(4, "ftp://127.0.0.1:1");
        bad.service = "orders".into();
        let found = vec![
            (stored(1, A), 0),
            (stored(2, A), -2),
            (stored(3, B), -1),
            (bad, 9_000),
        ];
        assert_eq!(plan(found), Plan::default());
    }

    #[test]
    fn a_missing_key_means_it_left_only_when_seen_before_and_no_reconnect_intervened() {
        let seen = |in_redis, seen_before, same_epoch| Sighting {
            in_redis,
            seen_before,
            same_epoch,
        };
        // (in Redis, seen before, same epoch)
        // in Redis: stays
        assert!(!left_redis(seen(true, true, true)));
        // never seen there: registered here, its key not written yet
        assert!(!left_redis(seen(false, false, true)));
        // seen before, gone now: it left (deregistered or evicted through a gateway that was not heard)
        assert!(left_redis(seen(false, true, true)));
        // a reconnect during the read: what was read may predate the write-back
        assert!(!left_redis(seen(false, true, false)));
    }

    #[test]
    fn open_breakers_are_those_with_time_left() {
        let keys = [
            format!("rgw:open:{A}"),
            format!("rgw:open:{B}"),
            "rgw:open:not an address".to_owned(),
        ];
        let open = open_breakers(&keys, &[2_500, -2, 100]);
        assert_eq!(
            open,
            [(
                ReplicaAddress::parse(A).unwrap(),
                Duration::from_millis(2_500)
            )]
        );
    }
}

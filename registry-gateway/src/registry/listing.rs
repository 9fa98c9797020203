//! The registry read service by service, in parts of a bounded number of replicas, produced as they
//! are asked for: the one walk behind `GET /registry`, gRPC `ListServices`, `StreamServices` and the
//! `Watch` snapshot.

use std::sync::Arc;
use std::time::Instant;

use super::{Protocol, Registry, Replica, Service};
use crate::clock;
use crate::policy::BreakerState;

/// Which replicas a listing keeps, whatever their service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaFilter {
    /// Only replicas whose breaker is in this state.
    pub state: Option<BreakerState>,
    /// Only replicas of this protocol.
    pub protocol: Option<Protocol>,
}

impl ReplicaFilter {
    /// Whether replicas are filtered at all (a service is then listed only with a matching replica).
    pub fn is_active(&self) -> bool {
        self.state.is_some() || self.protocol.is_some()
    }

    /// Whether `r` is kept, its breaker read at `now`.
    pub fn keeps(&self, r: &Replica, now: Instant) -> bool {
        self.protocol.is_none_or(|p| r.protocol() == p)
            && self.state.is_none_or(|s| r.lock().breaker.state(now) == s)
    }
}

/// Which services and replicas a listing shows (`?service=a,b&state=open&protocol=grpc`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListingFilter {
    /// Only these services (unknown names are left out); `None`: every service.
    pub services: Option<Vec<String>>,
    /// Which of their replicas.
    pub replicas: ReplicaFilter,
}

impl ListingFilter {
    fn keeps_service(&self, svc: &Service) -> bool {
        self.services
            .as_ref()
            .is_none_or(|names| names.iter().any(|n| n == svc.name().as_str()))
    }
}

/// One part of a service's listing: at most the listing's maximum number of replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<T> {
    /// 0 for a service's first part, then 1, 2…
    pub index: u32,
    /// Whether no part of this service follows.
    pub last: bool,
    /// The kept items, in the service's order.
    pub items: Vec<T>,
}

/// Splits a snapshot of items into parts of at most `max` kept items, lazily. Every part but an
/// empty first one holds at least one item, and the part that holds the last kept item says so: the
/// filter is asked once per item, so an item that changes meanwhile is never counted twice.
pub struct Parts<T> {
    items: Arc<[T]>,
    keep: Box<dyn FnMut(&T) -> bool + Send>,
    max: usize,
    /// The next item to look at.
    pos: usize,
    /// Whether `items[pos]` is already known to be kept.
    peeked: bool,
    /// Whether an empty first part is given when nothing is kept.
    keep_empty: bool,
    index: u32,
    done: bool,
}

impl<T: Clone> Parts<T> {
    /// The parts of `items` (`max` is at least 1); with `keep_empty`, an empty snapshot still gives
    /// one empty part.
    pub fn new(
        items: Arc<[T]>,
        max: usize,
        keep_empty: bool,
        keep: impl FnMut(&T) -> bool + Send + 'static,
    ) -> Self {
        Parts {
            items,
            keep: Box::new(keep),
            max: max.max(1),
            pos: 0,
            peeked: false,
            keep_empty,
            index: 0,
            done: false,
        }
    }
}

impl<T: Clone> Iterator for Parts<T> {
    type Item = Part<T>;

    fn next(&mut self) -> Option<Part<T>> {
        if self.done {
            return None;
        }
        let len = self.items.len();
        let mut items = Vec::with_capacity(self.max.min(len - self.pos));
        while self.pos < len && items.len() < self.max {
            let item = &self.items[self.pos];
            if std::mem::take(&mut self.peeked) || (self.keep)(item) {
                items.push(item.clone());
            }
            self.pos += 1;
        }
        // Look ahead to the next kept item, so that this part knows whether it is the last.
        while self.pos < len && !(self.keep)(&self.items[self.pos]) {
            self.pos += 1;
        }
        self.peeked = self.pos < len;
        let last = !self.peeked;
        if items.is_empty() && !(self.index == 0 && self.keep_empty) {
            self.done = true;
            return None;
        }
        let part = Part {
            index: self.index,
            last,
            items,
        };
        self.index += 1;
        self.done = last;
        Some(part)
    }
}

/// A part of one service, as the listing reached it.
pub struct ServicePart {
    /// The service.
    pub service: Arc<Service>,
    /// When the listing reached the service (its replicas' views are taken at this instant).
    pub now: Instant,
    /// The part's replicas and its place.
    pub part: Part<Arc<Replica>>,
}

/// The registry's services (sorted by name, those the filter keeps), each one snapshotted only when
/// the listing reaches it and given in parts of at most `max` replicas: memory stays bounded by one
/// part, not the registry.
pub struct Listing {
    services: std::vec::IntoIter<Arc<Service>>,
    replicas: ReplicaFilter,
    max: usize,
    current: Option<(Arc<Service>, Instant, Parts<Arc<Replica>>)>,
}

impl Listing {
    /// The listing of `registry` by `filter`, in parts of at most `max` replicas.
    pub fn new(registry: &Registry, filter: &ListingFilter, max: usize) -> Self {
        let services: Vec<_> = registry
            .services()
            .into_iter()
            .filter(|s| filter.keeps_service(s))
            .collect();
        Listing {
            services: services.into_iter(),
            replicas: filter.replicas,
            max,
            current: None,
        }
    }
}

impl Iterator for Listing {
    type Item = ServicePart;

    fn next(&mut self) -> Option<ServicePart> {
        loop {
            if let Some((svc, now, parts)) = &mut self.current {
                if let Some(part) = parts.next() {
                    return Some(ServicePart {
                        service: Arc::clone(svc),
                        now: *now,
                        part,
                    });
                }
                self.current = None;
            }
            let svc = self.services.next()?;
            let now = clock::now();
            let filter = self.replicas;
            let parts = Parts::new(svc.replicas(), self.max, !filter.is_active(), move |r| {
                filter.keeps(r, now)
            });
            self.current = Some((svc, now, parts));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of `items` (max `max`), keeping the even numbers when `even`, as (index, last, items).
    fn split(items: &[u32], max: usize, even: bool) -> Vec<(u32, bool, Vec<u32>)> {
        Parts::new(items.into(), max, !even, move |i| !even || i % 2 == 0)
            .map(|p| (p.index, p.last, p.items))
            .collect()
    }

    #[test]
    fn parts_hold_at_most_max_items_and_the_last_says_so() {
        // 7 items by 3: [0 1 2] [3 4 5] [6 (last)]
        assert_eq!(
            split(&[0, 1, 2, 3, 4, 5, 6], 3, false),
            vec![
                (0, false, vec![0, 1, 2]),
                (1, false, vec![3, 4, 5]),
                (2, true, vec![6])
            ]
        );
        // 6 items by 3: the second part is the last, no empty third one.
        assert_eq!(
            split(&[0, 1, 2, 3, 4, 5], 3, false),
            vec![(0, false, vec![0, 1, 2]), (1, true, vec![3, 4, 5])]
        );
        // max 0 is taken as 1.
        assert_eq!(
            split(&[7, 8], 0, false),
            vec![(0, false, vec![7]), (1, true, vec![8])]
        );
    }

    #[test]
    fn an_empty_service_is_one_empty_part_unless_replicas_are_filtered() {
        assert_eq!(split(&[], 3, false), vec![(0, true, vec![])]);
        assert_eq!(split(&[], 3, true), vec![]);
        // Nothing kept: left out.
        assert_eq!(split(&[1, 3, 5], 3, true), vec![]);
    }

    #[test]
    fn filtered_parts_count_kept_items_and_skip_trailing_misses() {
        // evens of 0..=9 by 2: [0 2] [4 6] [8 (last)]; 9 is looked at before 8's part is given.
        assert_eq!(
            split(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 2, true),
            vec![
                (0, false, vec![0, 2]),
                (1, false, vec![4, 6]),
                (2, true, vec![8])
            ]
        );
        // [0 2] then only misses: the first part is already the last.
        assert_eq!(
            split(&[1, 0, 2, 3, 5], 2, true),
            vec![(0, true, vec![0, 2])]
        );
    }

    #[test]
    fn the_filter_is_asked_once_per_item() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&asked);
        let items: Arc<[u32]> = (0..10).collect::<Vec<_>>().into();
        // An item kept only the first time it is asked would be lost if asked twice.
        let mut seen = std::collections::HashSet::new();
        let parts: Vec<_> = Parts::new(items, 3, false, move |i: &u32| {
            counter.fetch_add(1, Ordering::SeqCst);
            seen.insert(*i)
        })
        .collect();
        assert_eq!(asked.load(Ordering::SeqCst), 10);
        let all: Vec<u32> = parts.into_iter().flat_map(|p| p.items).collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }
}

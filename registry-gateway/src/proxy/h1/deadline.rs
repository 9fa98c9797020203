//! A coarse per-worker deadline clock: instead of a tokio timer per request, waiters park their waker in a
//! thread-local table and one ticker task per worker wakes the expired ones every [`TICK`] (pingora's
//! timeout idea). A deadline fires up to one tick late, which timeouts counted in seconds do not notice.

use std::cell::RefCell;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::clock;

/// How often the ticker looks at the table.
pub(crate) const TICK: Duration = Duration::from_millis(10);

#[derive(Default)]
struct Table {
    slots: Vec<Option<(Instant, Waker)>>,
    free: Vec<usize>,
    live: usize,
    ticking: bool,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table::default());
}

/// A deadline one task waits on; dropping it forgets the waiter.
#[derive(Debug)]
pub(crate) struct Deadline {
    at: Instant,
    /// Its waker's place in the table ([`NO_SLOT`]: none yet); small, as it sits in every response body.
    slot: u32,
}

const NO_SLOT: u32 = u32::MAX;

impl Deadline {
    /// A deadline at `at`.
    pub(crate) fn at(at: Instant) -> Self {
        Deadline { at, slot: NO_SLOT }
    }

    fn slot(&self) -> Option<usize> {
        (self.slot != NO_SLOT).then_some(self.slot as usize)
    }

    /// Moves the deadline.
    pub(crate) fn reset(&mut self, at: Instant) {
        self.at = at;
        if let Some(i) = self.slot() {
            TABLE.with(|t| {
                if let Some((when, _)) = t.borrow_mut().slots[i].as_mut() {
                    *when = at;
                }
            });
        }
    }

    /// Ready once the deadline has passed; until then the task is woken by the ticker when it does.
    pub(crate) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if clock::now() >= self.at {
            return Poll::Ready(());
        }
        let start_ticker = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            match self.slot() {
                Some(i) => match t.slots[i].as_mut() {
                    Some((_, w)) if w.will_wake(cx.waker()) => {}
                    Some(entry) => entry.1 = cx.waker().clone(),
                    None => t.slots[i] = Some((self.at, cx.waker().clone())),
                },
                None => {
                    let entry = Some((self.at, cx.waker().clone()));
                    let i = match t.free.pop() {
                        Some(i) => {
                            t.slots[i] = entry;
                            i
                        }
                        None => {
                            t.slots.push(entry);
                            t.slots.len() - 1
                        }
                    };
                    t.live += 1;
                    self.slot = i as u32;
                }
            }
            !std::mem::replace(&mut t.ticking, true)
        });
        if start_ticker {
            tokio::task::spawn_local(tick());
        }
        Poll::Pending
    }
}

impl Drop for Deadline {
    fn drop(&mut self) {
        if let Some(i) = self.slot() {
            let _ = TABLE.try_with(|t| {
                let mut t = t.borrow_mut();
                t.slots[i] = None;
                t.free.push(i);
                t.live -= 1;
            });
        }
    }
}

/// The worker's ticker: wakes every expired waiter each tick, and stops when nobody waits.
async fn tick() {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = clock::now();
        let (due, stop) = TABLE.with(|t| {
            let mut t = t.borrow_mut();
            let due: Vec<Waker> = t
                .slots
                .iter()
                .flatten()
                .filter(|(at, _)| *at <= now)
                .map(|(_, w)| w.clone())
                .collect();
            let stop = t.live == 0;
            if stop {
                t.ticking = false;
            }
            (due, stop)
        });
        // Woken outside the borrow: a waker may run code that touches the table.
        due.into_iter().for_each(Waker::wake);
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_fires_within_a_tick_and_a_dropped_one_stops_the_ticker() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let t0 = clock::now();
                let mut d = Deadline::at(t0 + Duration::from_millis(25));
                poll_fn(|cx| d.poll_expired(cx)).await;
                let waited = clock::now() - t0;
                // fired at the first tick past 25 ms: 30 ms
                assert!(
                    waited >= Duration::from_millis(25)
                        && waited <= Duration::from_millis(25) + TICK,
                    "{waited:?}"
                );
                drop(d);
                assert_eq!(TABLE.with(|t| t.borrow().live), 0);
                // moved later: waits for the new instant
                let mut d = Deadline::at(clock::now() + Duration::from_secs(1));
                assert!(poll_fn(|cx| Poll::Ready(d.poll_expired(cx)))
                    .await
                    .is_pending());
                d.reset(clock::now() + Duration::from_millis(5));
                let t1 = clock::now();
                poll_fn(|cx| d.poll_expired(cx)).await;
                assert!(clock::now() - t1 <= TICK);
            })
            .await;
    }
}

//! Compact instants: 8 bytes where `Instant` takes 16, exact to the nanosecond, for the times a million
//! replicas each keep (lease renewals, breaker deadlines, state changes, lease deadlines in the sweep's
//! heap).

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// An instant as nanoseconds from the process's epoch (a fixed instant read once), biased so that it is
/// never zero: `Option<Stamp>` is 8 bytes too. Converts to and from [`Instant`] exactly within ±292 years
/// of the epoch (further ones are clamped), and orders as the instants do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(NonZeroU64);

/// The bias: the offset's sign bit flipped, so that unsigned order is time order.
const BIAS: u64 = 1 << 63;

/// The fixed instant every stamp counts from.
#[allow(clippy::disallowed_methods)] // an arbitrary fixed origin, not a reading of "now" for any policy
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl Stamp {
    /// The stamp of `t`.
    pub fn of(t: Instant) -> Stamp {
        let e = epoch();
        let offset = match t.checked_duration_since(e) {
            Some(after) => i64::try_from(after.as_nanos()).unwrap_or(i64::MAX),
            None => i64::try_from(e.duration_since(t).as_nanos())
                .map_or(i64::MIN + 1, |before| (-before).max(i64::MIN + 1)),
        };
        // `offset` is never i64::MIN, so the biased value is never 0.
        Stamp(NonZeroU64::new(offset as u64 ^ BIAS).unwrap_or(NonZeroU64::MIN))
    }

    /// Its bits: ordered as the instants are, never 0.
    pub fn to_bits(self) -> u64 {
        self.0.get()
    }

    /// The stamp of bits from [`Stamp::to_bits`]; `None` for 0.
    pub fn from_bits(bits: u64) -> Option<Stamp> {
        NonZeroU64::new(bits).map(Stamp)
    }

    /// The instant it stands for.
    pub fn instant(self) -> Instant {
        let offset = (self.0.get() ^ BIAS) as i64;
        let e = epoch();
        if offset >= 0 {
            e + Duration::from_nanos(offset as u64)
        } else {
            e - Duration::from_nanos(offset.unsigned_abs())
        }
    }
}

impl From<Instant> for Stamp {
    fn from(t: Instant) -> Stamp {
        Stamp::of(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly_and_orders_as_instants() {
        let t0 = crate::clock::now();
        let times = [
            t0,
            t0 + Duration::from_nanos(1),
            t0 + Duration::from_millis(14_999),
            t0 + Duration::from_secs(86_400 * 365),
            t0.checked_sub(Duration::from_secs(3)).unwrap_or(t0),
        ];
        for t in times {
            assert_eq!(Stamp::of(t).instant(), t);
        }
        for a in times {
            for b in times {
                assert_eq!(Stamp::of(a).cmp(&Stamp::of(b)), a.cmp(&b));
            }
        }
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}

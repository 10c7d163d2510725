//! Hybrid logical clock: wall-clock milliseconds plus a logical counter, so that events
//! on different nodes order consistently with causality even when clocks drift. The
//! physical time is always passed in: this module never reads a clock.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A timestamp. Ordering is (millis, logical); ties between nodes are broken by the
/// caller with the origin's id.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Hlc {
    pub millis: u64,
    pub logical: u32,
}

impl Hlc {
    pub const fn new(millis: u64, logical: u32) -> Hlc {
        Hlc { millis, logical }
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.millis, self.logical)
    }
}

/// A remote timestamp further ahead of our wall clock than this is not followed: a node
/// with a clock set a year ahead must not drag the whole network's clocks with it.
pub const MAX_FORWARD_DRIFT_MS: u64 = 24 * 60 * 60 * 1000;

/// The clock state of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// Resumes from the last timestamp this node issued (kept in its store), so a restart
    /// with a clock that went backwards still issues increasing timestamps.
    pub fn resume(last: Hlc) -> HlcClock {
        HlcClock { last }
    }

    /// A new timestamp for a local event at wall time `now_ms`, strictly greater than any
    /// issued or observed before.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        self.last = if now_ms > self.last.millis {
            Hlc::new(now_ms, 0)
        } else {
            Hlc::new(self.last.millis, self.last.logical.saturating_add(1))
        };
        self.last
    }

    /// Takes a timestamp received from another node into account.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) {
        if remote.millis > now_ms.saturating_add(MAX_FORWARD_DRIFT_MS) {
            return;
        }
        if remote > self.last {
            self.last = remote;
        }
    }

    pub fn last(&self) -> Hlc {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_strictly_increase_even_when_wall_clock_goes_back() {
        let mut c = HlcClock::default();
        let a = c.tick(1000);
        let b = c.tick(900);
        let d = c.tick(1000);
        assert!(a < b && b < d);
    }

    #[test]
    fn observed_remote_time_orders_later_local_events_after_it() {
        let mut c = HlcClock::default();
        c.tick(1000);
        let remote = Hlc::new(5000, 3);
        c.observe(remote, 1001);
        assert!(c.tick(1002) > remote);
    }

    #[test]
    fn a_clock_far_in_the_future_is_not_followed() {
        let mut c = HlcClock::default();
        c.observe(Hlc::new(u64::MAX / 2, 0), 1000);
        assert_eq!(c.tick(1000), Hlc::new(1000, 0));
    }
}

//! Simulated time: one clock shared by every node of a run, moved forward only by the
//! simulation, so that a seed replays with the same HLCs, business days and prices.

use cardmesh_node::store::Clock;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// 2026-11-21 00:00 UTC: a run starts at 08:00 China time on a business day.
pub const START_MS: u64 = 1_795_219_200_000;

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;

/// The simulation's clock; clones share the time.
#[derive(Clone, Debug)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    pub fn new() -> SimClock {
        SimClock(Arc::new(AtomicU64::new(START_MS)))
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Hours since midnight in China (UTC+8), where every simulated site is.
    pub fn local_hour(&self) -> u64 {
        (self.now_ms() + 8 * HOUR_MS) % DAY_MS / HOUR_MS
    }

    pub fn as_clock(&self) -> Arc<dyn Clock> {
        Arc::new(self.clone())
    }
}

impl Default for SimClock {
    fn default() -> SimClock {
        SimClock::new()
    }
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

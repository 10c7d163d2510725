//! The sync session: one sans-IO state machine that two replicas run to give each other
//! what they lack, the same over an iroh stream, a serial line or any other reliable,
//! ordered byte link. Bytes in, bytes out; time and nonces come from the caller.
//!
//! The flow, for an initiator I and a responder R:
//!
//! ```text
//! I -> R  Hello(I's certificate, HQ's, nonce_i)
//! R -> I  Hello(R's certificate, HQ's, nonce_r), Auth(R signs both nonces)
//! I -> R  Auth(I signs both nonces), Vector(I's)
//! R -> I  Vector(R's)
//! both    Batch.. of what the other lacks, any origin, HQ's feed first; Ack per batch
//! both    Done once everything sent was acked; the session ends when both said Done
//! ```
//!
//! Only the version vectors carry state from one session to the next: after a cut link
//! a new session plans from what the other side actually holds, so what was delivered
//! is never sent again and what was lost in flight is simply sent again.

mod error;
pub mod message;
pub mod packed;
mod pair;
mod session;
mod store;

pub use error::SyncError;
pub use message::{Message, PROTOCOL_VERSION, Side};
pub use pair::{Link, PairOutcome, run_pair};
pub use session::{Session, Stats};
pub use store::{ReplicaNode, SyncStore};

use crate::ids::NodeId;
use crate::vv::{FeedRange, VersionVector};

/// Fresh random bytes from the caller for every session: what the peer signs to prove
/// its key, so that a recorded handshake cannot be replayed.
pub type Nonce = [u8; 32];

/// No frame, sent or accepted, is larger: it bounds what a peer can make a node buffer.
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// No batch holds more entries (nor more certificates).
pub const MAX_BATCH_ENTRIES: usize = 1024;
/// Entries are added to a batch while their encoded size stays within this; a single
/// larger entry travels alone, as long as it fits in a frame.
pub const MAX_BATCH_BYTES: usize = 256 << 10;
/// At most this many batches are sent and not yet acked.
pub const MAX_WINDOW: usize = 4;
/// An ack carries at most this many refusal reasons (the count is always exact)...
pub const MAX_ACK_REASONS: usize = 32;
/// ...each at most this long.
pub const MAX_REASON_BYTES: usize = 256;
/// A session keeps at most this many refusal reasons for the caller to log.
pub const MAX_KEPT_REASONS: usize = 256;

/// How a session batches what it sends; clamped to the protocol's maxima. A slow link
/// (a modem) wants smaller batches, so that a cut costs less to resend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub batch_entries: usize,
    pub batch_bytes: usize,
    pub window: usize,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        batch_entries: MAX_BATCH_ENTRIES,
        batch_bytes: MAX_BATCH_BYTES,
        window: MAX_WINDOW,
    };

    fn clamped(self) -> Limits {
        Limits {
            batch_entries: self.batch_entries.clamp(1, MAX_BATCH_ENTRIES),
            batch_bytes: self.batch_bytes.clamp(1, MAX_BATCH_BYTES),
            window: self.window.clamp(1, MAX_WINDOW),
        }
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// What a replica holding `theirs` lacks of one holding `ours`, HQ's feed first: it
/// carries the enrollments and revocations that decide whether the other feeds verify.
/// Every origin is included, not only the sender's own: that is what relays data across
/// the network.
pub fn plan(ours: &VersionVector, theirs: &VersionVector, hq: NodeId) -> Vec<FeedRange> {
    let mut ranges = theirs.lacks(ours);
    ranges.sort_by_key(|r| (r.origin != hq, r.origin));
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vv(pairs: &[(u8, u64)]) -> VersionVector {
        let mut v = VersionVector::new();
        for (o, s) in pairs {
            v.advance(NodeId([*o; 32]), *s);
        }
        v
    }

    #[test]
    fn plan_sends_hq_feed_first_then_every_other_origin_in_order() {
        let hq = NodeId([9; 32]);
        let ours = vv(&[(1, 4), (3, 2), (9, 5), (5, 1)]);
        let theirs = vv(&[(1, 4), (3, 1), (9, 2)]);
        let origins: Vec<(u8, u64, u64)> = plan(&ours, &theirs, hq)
            .iter()
            .map(|r| (r.origin.0[0], r.from, r.to))
            .collect();
        assert_eq!(origins, vec![(9, 3, 5), (3, 2, 2), (5, 1, 1)]);
    }
}

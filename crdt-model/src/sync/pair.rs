//! An in-memory link between two sessions, for tests and the network simulation: frames
//! go across reliably and in order (as on a QUIC stream), and the link can be cut after
//! a given number of frames to test resuming.

use super::{Limits, Nonce, Session, Side, SyncError, SyncStore};
use std::collections::VecDeque;

/// How the in-memory link behaves.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Deliver only this many frames, both directions together, then drop everything.
    pub cut_after: Option<usize>,
    pub limits: Limits,
    pub now_ms: u64,
    /// The initiator's and the responder's nonce.
    pub nonces: (Nonce, Nonce),
}

impl Default for Link {
    fn default() -> Link {
        Link {
            cut_after: None,
            limits: Limits::DEFAULT,
            now_ms: 0,
            nonces: ([0xa1; 32], [0xb2; 32]),
        }
    }
}

/// Both ends after the link went quiet.
pub struct PairOutcome {
    pub initiator: Session,
    pub responder: Session,
    pub initiator_error: Option<SyncError>,
    pub responder_error: Option<SyncError>,
    pub frames_delivered: usize,
    pub largest_frame: usize,
    /// Bytes of all frames delivered, both directions: what the session costs on a wire
    /// before the transport's own framing.
    pub bytes_delivered: usize,
    /// Frames were dropped because the link was cut.
    pub cut: bool,
}

impl PairOutcome {
    pub fn both_done(&self) -> bool {
        self.initiator.is_done() && self.responder.is_done()
    }
}

/// One end of the link: its session, what it is owed, and how it failed.
struct End {
    session: Session,
    inbox: VecDeque<Vec<u8>>,
    error: Option<SyncError>,
}

impl End {
    fn record(&mut self, result: Result<Vec<Vec<u8>>, SyncError>, peer: &mut End) {
        match result {
            Ok(frames) => peer.inbox.extend(frames),
            Err(e) => {
                peer.inbox.extend(e.farewell());
                self.error = Some(e);
            }
        }
    }
}

/// Runs a session between `a` (initiator) and `b` (responder) until neither has anything
/// more to say, the link is cut, or both fail.
pub fn run_pair(a: &mut impl SyncStore, b: &mut impl SyncStore, link: Link) -> PairOutcome {
    let mut ia = End {
        session: Session::with_limits(Side::Initiator, link.nonces.0, link.now_ms, link.limits),
        inbox: VecDeque::new(),
        error: None,
    };
    let mut rb = End {
        session: Session::with_limits(Side::Responder, link.nonces.1, link.now_ms, link.limits),
        inbox: VecDeque::new(),
        error: None,
    };
    let started = ia.session.start(a);
    ia.record(started, &mut rb);
    let mut delivered = 0;
    let mut largest = 0;
    let mut bytes = 0;
    let mut cut = false;
    loop {
        let mut moved = false;
        for to_b in [true, false] {
            let (to, from) = if to_b {
                (&mut rb, &mut ia)
            } else {
                (&mut ia, &mut rb)
            };
            let Some(frame) = to.inbox.pop_front() else {
                continue;
            };
            if link.cut_after.is_some_and(|k| delivered >= k) {
                cut = true;
                break;
            }
            delivered += 1;
            largest = largest.max(frame.len());
            bytes += frame.len();
            moved = true;
            // A failed end hears nothing more: its side of the link is closed.
            if to.error.is_none() {
                let result = if to_b {
                    to.session.handle(b, &frame)
                } else {
                    to.session.handle(a, &frame)
                };
                to.record(result, from);
            }
        }
        if cut || !moved {
            break;
        }
    }
    PairOutcome {
        initiator: ia.session,
        responder: rb.session,
        initiator_error: ia.error,
        responder_error: rb.error,
        frames_delivered: delivered,
        largest_frame: largest,
        bytes_delivered: bytes,
        cut,
    }
}

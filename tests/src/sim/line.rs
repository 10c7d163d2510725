//! A simulated link between two sans-IO sync sessions, with the faults a slow dial-up
//! line or a flapping LAN brings: frames dropped, delivered twice, or overtaken by later
//! ones, and the line cut after some frames. The sessions must survive all of it: a
//! session may fail or stall, but what was applied stays consistent and the next clean
//! session completes the exchange.

use cardmesh_model::sync::{Limits, Session, Side, SyncStore};
use rand::RngExt;
use rand::rngs::StdRng;
use std::collections::VecDeque;

/// What can go wrong on the line, as probabilities per frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct Faults {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    /// Deliver at most this many frames, then the line goes dead.
    pub cut_after: Option<usize>,
}

impl Faults {
    pub const CLEAN: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        cut_after: None,
    };
}

/// What happened on the line during one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineOutcome {
    pub completed: bool,
    pub frames: usize,
    pub dropped: usize,
    pub duplicated: usize,
    pub reordered: usize,
    pub cut: bool,
    /// Ends that failed with a protocol or store error.
    pub failed_ends: usize,
}

/// No session of the simulation needs more frames than this; more means a livelock.
const MAX_FRAMES: usize = 100_000;

struct End {
    session: Session,
    inbox: VecDeque<Vec<u8>>,
    failed: bool,
}

/// Runs one session, `a` initiating, over a line with `faults`; `rng` decides every
/// fault. Returns once neither end has anything left to say.
pub fn run<A: SyncStore, B: SyncStore>(
    a: &mut A,
    b: &mut B,
    rng: &mut StdRng,
    faults: Faults,
    limits: Limits,
    now_ms: u64,
) -> LineOutcome {
    let mut nonce = || {
        let mut n = [0u8; 32];
        rng.fill(&mut n);
        n
    };
    let mut ends = [
        End {
            session: Session::with_limits(Side::Initiator, nonce(), now_ms, limits),
            inbox: VecDeque::new(),
            failed: false,
        },
        End {
            session: Session::with_limits(Side::Responder, nonce(), now_ms, limits),
            inbox: VecDeque::new(),
            failed: false,
        },
    ];
    let mut out = LineOutcome::default();
    match ends[0].session.start(a) {
        Ok(frames) => ends[1].inbox.extend(frames),
        Err(_) => {
            out.failed_ends = 1;
            return out;
        }
    }
    'line: loop {
        let mut moved = false;
        for to in [1usize, 0] {
            if ends[to].inbox.is_empty() {
                continue;
            }
            if faults.cut_after.is_some_and(|k| out.frames >= k) {
                out.cut = true;
                break 'line;
            }
            let pick = if ends[to].inbox.len() > 1 && rng.random_bool(faults.reorder) {
                out.reordered += 1;
                rng.random_range(1..ends[to].inbox.len())
            } else {
                0
            };
            let frame = ends[to]
                .inbox
                .remove(pick)
                .expect("picked inside the inbox");
            moved = true;
            out.frames += 1;
            if out.frames > MAX_FRAMES {
                panic!("a sync session exchanged over {MAX_FRAMES} frames: livelock");
            }
            if rng.random_bool(faults.drop) {
                out.dropped += 1;
                continue;
            }
            if rng.random_bool(faults.duplicate) {
                out.duplicated += 1;
                ends[to].inbox.push_front(frame.clone());
            }
            if ends[to].failed {
                continue;
            }
            let result = if to == 1 {
                ends[1].session.handle(b, &frame)
            } else {
                ends[0].session.handle(a, &frame)
            };
            let from = 1 - to;
            match result {
                Ok(frames) => ends[from].inbox.extend(frames),
                Err(e) => {
                    ends[from].inbox.extend(e.farewell());
                    ends[to].failed = true;
                }
            }
        }
        if !moved {
            break;
        }
    }
    out.failed_ends = ends.iter().filter(|e| e.failed).count();
    out.completed = ends.iter().all(|e| e.session.is_done());
    out
}

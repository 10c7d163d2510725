//! After a cut link a new session sends only what the other side still lacks, and any
//! two histories converge after one session.

mod common;

use cardmesh_model::sync::{self, Limits, Link, run_pair};
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

fn lacking(to: &sync::ReplicaNode, from: &sync::ReplicaNode) -> u64 {
    to.replica
        .version_vector()
        .lacks(&from.replica.version_vector())
        .iter()
        .map(FeedRange::len)
        .sum()
}

fn missing_both_ways(a: &sync::ReplicaNode, b: &sync::ReplicaNode) -> u64 {
    lacking(a, b) + lacking(b, a)
}

fn sent(out: &sync::PairOutcome) -> u64 {
    out.initiator.stats().entries_sent + out.responder.stats().entries_sent
}

/// Shop-a with HQ's feed and its own, the station with its own.
fn histories(net: &Net) -> (sync::ReplicaNode, sync::ReplicaNode) {
    let mut hq = node(net, 0);
    write(net, &mut hq, 0, 12, 50);
    let mut a = node(net, 1);
    pull(&mut a.replica, &hq.replica);
    write(net, &mut a, 1, 31, 100);
    let mut b = node(net, 2);
    write(net, &mut b, 2, 23, 100);
    (a, b)
}

fn cut_at_every_frame_then_resume(window: usize) {
    let net = Net::new();
    let limits = Limits {
        batch_entries: 5,
        batch_bytes: sync::MAX_BATCH_BYTES,
        window,
    };
    let link = Link {
        limits,
        ..Link::default()
    };
    let (mut a, mut b) = histories(&net);
    let needed = missing_both_ways(&a, &b);
    let frames = run_pair(&mut a, &mut b, link).frames_delivered;
    for k in 0..frames {
        let (mut a, mut b) = histories(&net);
        let first = run_pair(
            &mut a,
            &mut b,
            Link {
                cut_after: Some(k),
                ..link
            },
        );
        assert!(first.cut, "cut after {k} of {frames} frames");
        let still_missing = missing_both_ways(&a, &b);
        let second = run_pair(&mut a, &mut b, link);
        assert!(second.both_done(), "resume after a cut at frame {k}");
        assert_eq!(a.replica.snapshot(), b.replica.snapshot());
        // What was delivered before the cut is never sent again...
        assert_eq!(sent(&second), still_missing, "cut at frame {k}");
        assert_eq!(second.initiator.stats().duplicates_received, 0);
        assert_eq!(second.responder.stats().duplicates_received, 0);
        // ...so the cut costs only the batches that were in flight, per direction. A
        // relayed feed (HQ's, at shop-a) goes in batches that end at a signature the
        // relay holds: its 12 entries at once.
        let resent = sent(&first) + sent(&second) - needed;
        let in_flight = 2 * (window * limits.batch_entries.max(12)) as u64;
        assert!(
            resent <= in_flight,
            "cut at frame {k}: {resent} entries resent, window allows {in_flight}"
        );
    }
}

#[test]
fn a_cut_link_resumes_resending_at_most_the_unacked_batch() {
    cut_at_every_frame_then_resume(1);
}

#[test]
fn a_cut_link_resumes_resending_at_most_the_batches_in_flight() {
    cut_at_every_frame_then_resume(sync::MAX_WINDOW);
}

#[test]
fn an_applied_batch_whose_ack_was_lost_is_not_sent_again() {
    let net = Net::new();
    let link = Link {
        limits: Limits {
            batch_entries: 5,
            batch_bytes: sync::MAX_BATCH_BYTES,
            window: 1,
        },
        ..Link::default()
    };
    let mut a = node(&net, 1);
    write(&net, &mut a, 1, 20, 100);
    let mut b = node(&net, 2);
    // Hello, hello, auth, auth, vector, vector, then batch 1 and its ack, batch 2: the
    // link dies before batch 2's ack gets back.
    let first = run_pair(
        &mut a,
        &mut b,
        Link {
            cut_after: Some(10),
            ..link
        },
    );
    assert_eq!(first.responder.stats().entries_applied, 10);
    assert_eq!(first.initiator.stats().applied_by_peer, 5);
    let second = run_pair(&mut a, &mut b, link);
    assert!(second.both_done());
    assert_eq!(second.initiator.stats().entries_sent, 10);
    assert_eq!(a.replica.snapshot(), b.replica.snapshot());
}

#[derive(Clone, Debug)]
struct Write {
    writer: usize,
    count: usize,
    /// Bit 0: shop-a's node receives it; bit 1: the station's node does.
    give: u8,
}

fn write_op() -> impl Strategy<Value = Write> {
    (0usize..4, 0usize..6, 0u8..4).prop_map(|(writer, count, give)| Write {
        writer,
        count,
        give,
    })
}

/// Shop-a's and the station's nodes after random writes everywhere and partial
/// deliveries, so each holds some prefix of every feed.
fn random_histories(net: &Net, ops: &[Write]) -> (sync::ReplicaNode, sync::ReplicaNode) {
    let mut a = node(net, 1);
    let mut b = node(net, 2);
    let mut hq = node(net, 0);
    let mut desk = node(net, 3);
    for (step, op) in ops.iter().enumerate() {
        let at = 100 + 10 * step as u64;
        let author = match op.writer {
            0 => &mut hq,
            1 => &mut a,
            2 => &mut b,
            _ => &mut desk,
        };
        write(net, author, op.writer, op.count, at);
        let source = match op.writer {
            0 => &hq.replica,
            3 => &desk.replica,
            _ => continue,
        };
        if op.give & 1 != 0 {
            pull(&mut a.replica, source);
        }
        if op.give & 2 != 0 {
            pull(&mut b.replica, source);
        }
    }
    (a, b)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_histories_converge_after_one_session(
        ops in proptest::collection::vec(write_op(), 0..14),
        batch_entries in 1usize..7,
        window in 1usize..=sync::MAX_WINDOW,
    ) {
        let net = Net::new();
        let (mut a, mut b) = random_histories(&net, &ops);
        let (a_lacks, b_lacks) = (lacking(&a, &b), lacking(&b, &a));
        let mut merged = a.replica.version_vector();
        merged.merge(&b.replica.version_vector());
        let link = Link {
            limits: Limits { batch_entries, batch_bytes: sync::MAX_BATCH_BYTES, window },
            ..Link::default()
        };
        let out = run_pair(&mut a, &mut b, link);
        prop_assert!(out.both_done(), "{:?} {:?}", out.initiator_error, out.responder_error);
        prop_assert_eq!(a.replica.snapshot(), b.replica.snapshot());
        prop_assert_eq!(a.replica.version_vector(), merged);
        prop_assert_eq!(out.initiator.stats().entries_sent, b_lacks);
        prop_assert_eq!(out.responder.stats().entries_sent, a_lacks);
    }
}

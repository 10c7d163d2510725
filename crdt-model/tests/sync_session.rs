//! A sync session between two replicas leaves both holding the same feeds, relays other
//! origins' entries, refuses forged entries without losing the rest, and never sends a
//! frame over the limit.

mod common;

use cardmesh_model::body::{Alarm, AlarmKind, Body};
use cardmesh_model::replica::Replica;
use cardmesh_model::sync::{
    self, Limits, Link, MAX_BATCH_BYTES, MAX_BATCH_ENTRIES, MAX_FRAME_BYTES, Message, Session,
    Side, SyncStore, run_pair,
};
use cardmesh_model::*;
use common::*;

fn assert_converged(a: &sync::ReplicaNode, b: &sync::ReplicaNode) {
    assert_eq!(a.replica.snapshot(), b.replica.snapshot());
}

fn lacking(to: &sync::ReplicaNode, from: &sync::ReplicaNode) -> u64 {
    to.replica
        .version_vector()
        .lacks(&from.replica.version_vector())
        .iter()
        .map(FeedRange::len)
        .sum()
}

#[test]
fn disjoint_histories_converge_after_one_session() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 30, 100);
    write(&net, &mut b, 2, 20, 100);
    let out = run_pair(&mut a, &mut b, Link::default());
    assert!(
        out.both_done(),
        "{:?} {:?}",
        out.initiator_error,
        out.responder_error
    );
    assert_converged(&a, &b);
    assert_eq!(a.replica.version_vector().total(), 50);
    assert_eq!(out.initiator.stats().entries_sent, 30);
    assert_eq!(out.responder.stats().entries_sent, 20);
    assert_eq!(out.initiator.stats().applied_by_peer, 30);
    assert_eq!(out.responder.stats().entries_applied, 30);
}

#[test]
fn overlapping_histories_converge_and_send_only_what_is_missing() {
    let net = Net::new();
    let mut hq = node(&net, 0);
    write(&net, &mut hq, 0, 10, 50);
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    pull(&mut a.replica, &hq.replica);
    write(&net, &mut hq, 0, 5, 80);
    pull(&mut b.replica, &hq.replica);
    write(&net, &mut a, 1, 12, 100);
    write(&net, &mut b, 2, 7, 100);
    pull(&mut b.replica, &a.replica);
    write(&net, &mut a, 1, 3, 200);
    let (a_lacks, b_lacks) = (lacking(&a, &b), lacking(&b, &a));
    let out = run_pair(&mut a, &mut b, Link::default());
    assert!(out.both_done());
    assert_converged(&a, &b);
    assert_eq!(out.initiator.stats().entries_sent, b_lacks);
    assert_eq!(out.responder.stats().entries_sent, a_lacks);
    assert_eq!(out.initiator.stats().duplicates_received, 0);
    assert_eq!(out.responder.stats().duplicates_received, 0);
}

#[test]
fn replicas_already_equal_exchange_no_batches() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 5, 100);
    pull(&mut b.replica, &a.replica);
    let out = run_pair(&mut a, &mut b, Link::default());
    assert!(out.both_done());
    assert_eq!(out.initiator.stats().batches_sent, 0);
    assert_eq!(out.responder.stats().batches_sent, 0);
    // Hello, hello + auth, auth + vector, vector, done, done.
    assert_eq!(out.frames_delivered, 8);
}

#[test]
fn entries_are_relayed_across_hops() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    let mut c = node(&net, 3);
    write(&net, &mut a, 1, 9, 100);
    write(&net, &mut b, 2, 4, 100);
    write(&net, &mut c, 3, 6, 100);
    assert!(run_pair(&mut a, &mut b, Link::default()).both_done());
    assert!(run_pair(&mut b, &mut c, Link::default()).both_done());
    let a_id = net.writer(1).0.node_id();
    assert_eq!(c.replica.version_vector().get(&a_id), 9);
    assert_converged(&b, &c);
    assert!(run_pair(&mut c, &mut a, Link::default()).both_done());
    assert_converged(&a, &c);
}

#[test]
fn a_relayed_feed_verifies_with_the_certificate_carried_in_the_batch() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 5, 100);
    assert!(run_pair(&mut a, &mut b, Link::default()).both_done());
    // C knows only HQ and itself: shop-a's certificate reaches it only through B.
    let (k3, _) = net.writer(3);
    let mut c = sync::ReplicaNode::new(
        Replica::new(net.certs[0].clone()).unwrap(),
        k3.clone(),
        net.certs[3].clone(),
    )
    .unwrap();
    let out = run_pair(&mut b, &mut c, Link::default());
    assert!(out.both_done());
    assert!(
        out.responder.refused_here().is_empty(),
        "{:?}",
        out.responder.refused_here()
    );
    assert_eq!(
        c.replica.version_vector().get(&net.writer(1).0.node_id()),
        5
    );
    assert_converged(&b, &c);
}

#[test]
fn hq_feed_travels_first_so_a_revocation_applies_to_the_same_session() {
    let net = Net::new();
    let mut hq = node(&net, 0);
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 6, 100);
    pull(&mut hq.replica, &a.replica);
    let shop_a = net.writer(1).0.node_id();
    // HQ revokes at the head it holds, as `cardmesh revoke` does; the till sells on, and
    // B takes all of it before the news reaches B.
    hq.replica
        .append(
            &net.hq,
            Hlc::new(300, 0),
            Body::Revoke(Revocation {
                node: shop_a,
                upto_seq: 6,
                reason: "till stolen".into(),
            }),
        )
        .unwrap();
    write(&net, &mut a, 1, 2, 400);
    pull(&mut b.replica, &a.replica);
    pull(&mut b.replica, &hq.replica);
    assert_eq!(b.replica.version_vector().get(&shop_a), 8);

    let mut c = node(&net, 3);
    let out = run_pair(&mut b, &mut c, Link::default());
    assert!(out.both_done());
    assert_eq!(c.replica.version_vector().get(&net.hq.node_id()), 1);
    // B's copy of the till's feed is signed only after the revocation, and that entry is
    // refused: C keeps none of the run, since it could not check it again or pass it on.
    assert_eq!(c.replica.version_vector().get(&shop_a), 0);
    assert!(
        out.responder
            .refused_here()
            .iter()
            .any(|r| r.to_string().contains("revoked")),
        "{:?}",
        out.responder.refused_here()
    );
    // HQ's copy is signed at the revocation: from HQ, C takes every entry up to it.
    assert!(run_pair(&mut hq, &mut c, Link::default()).both_done());
    assert_eq!(c.replica.version_vector().get(&shop_a), 6);
}

#[test]
fn a_forged_entry_is_refused_reported_in_the_ack_and_the_rest_converges() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut hq = node(&net, 0);
    write(&net, &mut hq, 0, 8, 50);
    pull(&mut a.replica, &hq.replica);
    write(&net, &mut a, 1, 40, 100);
    let shop_a = net.writer(1).0.node_id();
    let mut liar = Tamper {
        inner: a,
        certificate: None,
        forge: Some(body::EntryRef {
            origin: shop_a,
            seq: 7,
        }),
    };
    let mut b = node(&net, 2);
    write(&net, &mut b, 2, 5, 100);
    let link = Link {
        limits: Limits {
            batch_entries: 4,
            ..Limits::DEFAULT
        },
        ..Link::default()
    };
    let out = run_pair(&mut liar, &mut b, link);
    assert!(
        out.both_done(),
        "{:?} {:?}",
        out.initiator_error,
        out.responder_error
    );
    let refused = out.initiator.refused_by_peer();
    assert!(
        refused[0].contains("bad signature"),
        "first refusal should name the forged entry: {refused:?}"
    );
    assert_eq!(out.responder.refused_here(), refused);
    let held = b.replica.version_vector();
    assert_eq!(
        held.get(&shop_a),
        4,
        "nothing after the last good signature before the forged entry: its batch \
         carried 5 and 6 vouched for only by the forged entry's signature"
    );
    assert_eq!(held.get(&net.hq.node_id()), 8);
    // Once refused, the rest of shop-a's feed is not sent: at most the batches that were
    // already in flight carry more of it.
    let wasted = out.initiator.stats().entries_sent - 8 - 4;
    assert!(
        wasted <= 4 * 4,
        "sent {wasted} entries after the forged one"
    );
    // Everything else went both ways.
    let a = &liar.inner;
    assert_eq!(
        a.replica.version_vector().get(&net.writer(2).0.node_id()),
        5
    );
}

fn alarm(detail_bytes: usize) -> Body {
    Body::Alarm(Alarm {
        kind: AlarmKind::BalanceBreak,
        asn: None,
        detail: "x".repeat(detail_bytes),
    })
}

/// Runs a session by hand, checking every frame against the protocol's limits.
fn run_checking_limits(a: &mut sync::ReplicaNode, b: &mut sync::ReplicaNode) -> (u64, u64) {
    let mut ia = Session::new(Side::Initiator, [1; 32], 0);
    let mut rb = Session::new(Side::Responder, [2; 32], 0);
    let mut to_b = ia.start(a).unwrap();
    let mut to_a = Vec::new();
    while !to_b.is_empty() || !to_a.is_empty() {
        for f in to_b.iter().chain(&to_a) {
            assert!(f.len() <= MAX_FRAME_BYTES, "frame of {} bytes", f.len());
            if let Message::Batch(batch) = Message::decode(f).unwrap() {
                let entries = sync::packed::unpack(&batch.packed).unwrap();
                assert!(entries.len() <= MAX_BATCH_ENTRIES);
                let bytes: usize = entries.iter().map(|e| e.encode().len()).sum();
                assert!(entries.len() == 1 || bytes <= MAX_BATCH_BYTES);
            }
        }
        let mut next_a = Vec::new();
        for f in to_b.drain(..) {
            next_a.extend(rb.handle(b, &f).unwrap());
        }
        let mut next_b = Vec::new();
        for f in to_a.drain(..) {
            next_b.extend(ia.handle(a, &f).unwrap());
        }
        to_a = next_a;
        to_b = next_b;
    }
    assert!(ia.is_done() && rb.is_done());
    (ia.stats().batches_sent, rb.stats().entries_applied)
}

#[test]
fn batches_stay_within_the_entry_limit() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 2 * MAX_BATCH_ENTRIES + 10, 100);
    let (batches, applied) = run_checking_limits(&mut a, &mut b);
    assert_eq!(batches, 3);
    assert_eq!(applied, 2 * MAX_BATCH_ENTRIES as u64 + 10);
    assert_converged(&a, &b);
}

#[test]
fn large_entries_are_split_across_batches_and_no_frame_exceeds_the_limit() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    let (k, _) = net.writer(1);
    for (i, size) in [100_000, 100_000, 100_000, 600_000, 10, 100_000, 10]
        .into_iter()
        .enumerate()
    {
        a.replica
            .append(k, Hlc::new(100 + i as u64, 0), alarm(size))
            .unwrap();
    }
    let (batches, applied) = run_checking_limits(&mut a, &mut b);
    assert_eq!(applied, 7);
    assert!(batches >= 4, "only {batches} batches");
    assert_converged(&a, &b);
}

#[test]
fn an_entry_too_large_for_any_frame_stops_its_feed_and_the_rest_still_syncs() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 3, 100);
    let (k, _) = net.writer(1);
    a.replica
        .append(k, Hlc::new(500, 0), alarm(MAX_FRAME_BYTES + 1))
        .unwrap();
    write(&net, &mut a, 1, 2, 600);
    write(&net, &mut b, 2, 4, 100);
    let out = run_pair(&mut a, &mut b, Link::default());
    assert!(
        out.both_done(),
        "{:?} {:?}",
        out.initiator_error,
        out.responder_error
    );
    assert!(out.largest_frame <= MAX_FRAME_BYTES);
    let not_sent = out.initiator.not_sent();
    assert_eq!(not_sent.len(), 1);
    assert!(not_sent[0].contains("entry 4 "), "{not_sent:?}");
    let shop_a = net.writer(1).0.node_id();
    assert_eq!(b.replica.version_vector().get(&shop_a), 3);
    assert_eq!(
        a.replica.version_vector().get(&net.writer(2).0.node_id()),
        4
    );
}

#[test]
fn stats_count_frames_and_bytes_both_ways() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    write(&net, &mut a, 1, 10, 100);
    let out = run_pair(&mut a, &mut b, Link::default());
    let (i, r) = (out.initiator.stats(), out.responder.stats());
    assert_eq!(i.bytes_sent, r.bytes_received);
    assert_eq!(r.bytes_sent, i.bytes_received);
    assert_eq!(i.frames_sent + r.frames_sent, out.frames_delivered as u64);
    assert_eq!(i.batches_sent, r.batches_received);
    assert_eq!(out.initiator.peer().map(|c| c.node), Some(b.local_node()));
    assert_eq!(out.responder.peer().map(|c| c.node), Some(a.local_node()));
}

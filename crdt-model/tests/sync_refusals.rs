//! A session refuses peers it must not talk to, with a typed error and nothing changed on
//! either side, and garbled or truncated frames give errors, never a panic.

mod common;

use cardmesh_model::body::Body;
use cardmesh_model::sync::message::Hello;
use cardmesh_model::sync::{
    self, Limits, Link, Message, Session, Side, SyncError, SyncStore, run_pair,
};
use cardmesh_model::*;
use common::*;
use proptest::prelude::*;

/// Syncs `a` (initiator) with `b` and checks neither replica changed.
fn refused(a: &mut impl SyncStore, b: &mut impl SyncStore) -> sync::PairOutcome {
    let (va, vb) = (a.version_vector().unwrap(), b.version_vector().unwrap());
    let out = run_pair(a, b, Link::default());
    assert!(!out.initiator.is_done() && !out.responder.is_done());
    assert_eq!(a.version_vector().unwrap(), va, "the initiator changed");
    assert_eq!(b.version_vector().unwrap(), vb, "the responder changed");
    assert_eq!(out.initiator.stats().batches_sent, 0);
    assert_eq!(out.responder.stats().batches_sent, 0);
    out
}

fn site_with_entries(net: &Net, i: usize) -> sync::ReplicaNode {
    let mut n = node(net, i);
    write(net, &mut n, i, 5, 100);
    n
}

#[test]
fn a_peer_of_another_network_is_refused() {
    let net = Net::new();
    let mut shop = site_with_entries(&net, 1);
    let mut stranger = foreign_node(NetworkId([0x77; 16]), 20, 21);
    let out = refused(&mut stranger, &mut shop);
    assert!(
        matches!(out.responder_error, Some(SyncError::WrongNetwork { ours, theirs })
            if ours == NETWORK && theirs == NetworkId([0x77; 16])),
        "{:?}",
        out.responder_error
    );
    // The stranger hears why.
    assert!(matches!(
        &out.initiator_error,
        Some(SyncError::PeerRefused { reason }) if reason.contains("network")
    ));
    // Whoever starts, the session is refused.
    let out = refused(&mut shop, &mut stranger);
    assert!(matches!(
        out.responder_error,
        Some(SyncError::WrongNetwork { .. })
    ));
}

#[test]
fn a_node_enrolled_by_another_hq_is_refused_as_unenrolled() {
    let net = Net::new();
    let mut shop = site_with_entries(&net, 1);
    // Same network id, but its certificate is signed by a key that is not our HQ.
    let mut rogue = foreign_node(NETWORK, 20, 21);
    let out = refused(&mut rogue, &mut shop);
    assert!(
        matches!(out.responder_error, Some(SyncError::NotEnrolled { node, .. })
            if node == rogue.local_node()),
        "{:?}",
        out.responder_error
    );
}

#[test]
fn a_revoked_peer_is_refused_whichever_side_starts() {
    let net = Net::new();
    let mut shop = site_with_entries(&net, 1);
    let mut desk = site_with_entries(&net, 3);
    let desk_id = desk.local_node();
    let mut hq = node(&net, 0);
    hq.replica
        .append(
            &net.hq,
            Hlc::new(300, 0),
            Body::Revoke(Revocation {
                node: desk_id,
                upto_seq: 0,
                reason: "desk closed".into(),
            }),
        )
        .unwrap();
    pull(&mut shop.replica, &hq.replica);
    let out = refused(&mut desk, &mut shop);
    assert!(matches!(out.responder_error, Some(SyncError::Revoked { node }) if node == desk_id));
    assert!(matches!(
        &out.initiator_error,
        Some(SyncError::PeerRefused { reason }) if reason.contains("revoked")
    ));
    let out = refused(&mut shop, &mut desk);
    assert!(matches!(out.initiator_error, Some(SyncError::Revoked { node }) if node == desk_id));
}

#[test]
fn an_impostor_with_a_copied_certificate_fails_the_proof_of_key() {
    let net = Net::new();
    let mut shop = site_with_entries(&net, 1);
    let station_cert = net.certs[2].clone();
    let station = station_cert.node;
    let mut impostor = Tamper {
        inner: site_with_entries(&net, 3),
        certificate: Some(station_cert),
        forge: None,
    };
    let out = refused(&mut impostor, &mut shop);
    assert!(matches!(out.responder_error, Some(SyncError::BadAuth { node }) if node == station));
    let out = refused(&mut shop, &mut impostor);
    assert!(matches!(out.initiator_error, Some(SyncError::BadAuth { node }) if node == station));
}

#[test]
fn a_node_does_not_sync_with_itself() {
    let net = Net::new();
    let mut a = site_with_entries(&net, 1);
    let mut again = node(&net, 1);
    let out = refused(&mut again, &mut a);
    assert!(matches!(
        out.responder_error,
        Some(SyncError::SelfConnection)
    ));
}

#[test]
fn another_protocol_version_is_refused_with_advice_to_upgrade() {
    let net = Net::new();
    let mut a = node(&net, 1);
    let mut b = node(&net, 2);
    let mut initiator = Session::new(Side::Initiator, [1; 32], 0);
    let hello = initiator.start(&mut a).unwrap().remove(0);
    let Message::Hello(h) = Message::decode(&hello).unwrap() else {
        panic!("the first frame is a hello");
    };
    for theirs in [1, 3] {
        let other = Message::Hello(Box::new(Hello {
            protocol: theirs,
            ..(*h).clone()
        }))
        .encode();
        let mut responder = Session::new(Side::Responder, [2; 32], 0);
        let err = responder.handle(&mut b, &other).unwrap_err();
        assert!(
            matches!(err, SyncError::UnsupportedProtocol { ours: 2, theirs: t } if t == theirs),
            "{err}"
        );
        assert!(err.to_string().contains("upgrade"));
    }
}

#[test]
fn data_before_the_handshake_is_a_protocol_violation_and_ends_the_session() {
    let net = Net::new();
    let mut b = node(&net, 2);
    let mut responder = Session::new(Side::Responder, [2; 32], 0);
    let vector = Message::Vector(VersionVector::new()).encode();
    let err = responder.handle(&mut b, &vector).unwrap_err();
    assert!(matches!(
        err,
        SyncError::Unexpected {
            got: "version vector",
            ..
        }
    ));
    assert!(err.farewell().is_some());
    // A failed session stays failed.
    assert!(matches!(
        responder.handle(&mut b, &vector),
        Err(SyncError::Closed)
    ));
}

#[test]
fn an_oversized_frame_is_refused_before_it_is_parsed() {
    let net = Net::new();
    let mut b = node(&net, 2);
    let mut responder = Session::new(Side::Responder, [2; 32], 0);
    let frame = vec![0u8; sync::MAX_FRAME_BYTES + 1];
    assert!(matches!(
        responder.handle(&mut b, &frame),
        Err(SyncError::FrameTooLarge { .. })
    ));
}

/// Two sites with some history each, and small batches so a session has many frames.
fn pair() -> (sync::ReplicaNode, sync::ReplicaNode) {
    let net = Net::new();
    (site_with_entries(&net, 1), site_with_entries(&net, 2))
}

const LIMITS: Limits = Limits {
    batch_entries: 2,
    batch_bytes: sync::MAX_BATCH_BYTES,
    window: 2,
};

struct Replay {
    a: sync::ReplicaNode,
    b: sync::ReplicaNode,
    initiator: Session,
    responder: Session,
}

impl Replay {
    fn new() -> Replay {
        let (a, b) = pair();
        Replay {
            a,
            b,
            initiator: Session::with_limits(Side::Initiator, [1; 32], 0, LIMITS),
            responder: Session::with_limits(Side::Responder, [2; 32], 0, LIMITS),
        }
    }

    fn deliver(&mut self, to_responder: bool, frame: &[u8]) -> Result<Vec<Vec<u8>>, SyncError> {
        if to_responder {
            self.responder.handle(&mut self.b, frame)
        } else {
            self.initiator.handle(&mut self.a, frame)
        }
    }
}

/// Every frame of a reliable session, in delivery order, with its direction.
fn transcript() -> Vec<(bool, Vec<u8>)> {
    let mut r = Replay::new();
    let mut pending: std::collections::VecDeque<(bool, Vec<u8>)> = r
        .initiator
        .start(&mut r.a)
        .unwrap()
        .into_iter()
        .map(|f| (true, f))
        .collect();
    let mut log = Vec::new();
    while let Some((to_responder, frame)) = pending.pop_front() {
        let out = r.deliver(to_responder, &frame).unwrap();
        pending.extend(out.into_iter().map(|f| (!to_responder, f)));
        log.push((to_responder, frame));
    }
    assert!(r.initiator.is_done() && r.responder.is_done());
    log
}

/// A session replayed up to frame `step`, ready for whatever comes next.
fn replay_until(log: &[(bool, Vec<u8>)], step: usize) -> Replay {
    let mut r = Replay::new();
    r.initiator.start(&mut r.a).unwrap();
    for (to_responder, frame) in &log[..step] {
        r.deliver(*to_responder, frame).unwrap();
    }
    r
}

#[test]
fn every_truncated_frame_of_a_real_session_is_a_garbled_error() {
    let log = transcript();
    assert!(log.len() > 12, "the session should have many frames");
    for (step, (to_responder, frame)) in log.iter().enumerate() {
        let stride = (frame.len() / 40).max(1);
        for cut in (0..frame.len()).step_by(stride) {
            let mut r = replay_until(&log, step);
            let err = r.deliver(*to_responder, &frame[..cut]).unwrap_err();
            assert!(
                matches!(err, SyncError::Garbled(_)),
                "frame {step} cut at {cut}: {err}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_bytes_never_panic_a_fresh_responder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let (_, mut b) = pair();
        let mut s = Session::new(Side::Responder, [2; 32], 0);
        prop_assert!(s.handle(&mut b, &bytes).is_err());
    }

    #[test]
    fn garbage_or_bit_flips_at_any_point_of_a_session_never_panic(
        step in 0usize..64,
        garbage in proptest::collection::vec(any::<u8>(), 0..300),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
    ) {
        let log = transcript();
        let step = step % log.len();
        let (to_responder, frame) = &log[step];
        let mut r = replay_until(&log, step);
        // Random bytes behind a valid header, so they reach the message decoder.
        let mut junk = frame[..4].to_vec();
        junk.extend(&garbage);
        let _ = r.deliver(*to_responder, &junk);
        let mut r = replay_until(&log, step);
        let mut flipped = frame.clone();
        for (at, mask) in flips {
            let i = at % flipped.len();
            flipped[i] ^= mask;
        }
        let _ = r.deliver(*to_responder, &flipped);
    }
}

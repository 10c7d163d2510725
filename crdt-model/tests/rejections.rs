//! Bad entries are refused with a typed error and change nothing.

mod common;

use cardmesh_model::auth::AuthError;
use cardmesh_model::body::*;
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::*;
use common::*;

/// A replica holding two good entries of shop-a's feed, and shop-a's key.
fn setup() -> (Net, replica::Replica, Vec<Entry>) {
    let net = Net::new();
    let mut author = net.replica();
    let (k, s) = net.writer(1);
    let e1 = author
        .append(
            k,
            Hlc::new(10, 0),
            purchase(s.clone(), asn(1), 1, 100, 1000),
        )
        .unwrap();
    let e2 = author
        .append(k, Hlc::new(11, 0), purchase(s.clone(), asn(1), 2, 100, 900))
        .unwrap();
    let e3 = author.append(k, Hlc::new(12, 0), block(asn(2))).unwrap();
    let mut r = net.replica();
    assert_eq!(r.ingest([e1.clone(), e2.clone()]).applied, 2);
    (net, r, vec![e1, e2, e3])
}

fn assert_refused(r: &mut replica::Replica, bad: Entry, expect: impl Fn(&EntryError) -> bool) {
    let before = r.snapshot();
    let report = r.ingest([bad]);
    assert_eq!(report.applied, 0);
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(
        expect(&report.rejected[0]),
        "unexpected error: {}",
        report.rejected[0]
    );
    assert_eq!(r.snapshot(), before, "a refused entry changed the replica");
}

#[test]
fn an_entry_with_a_bad_signature_is_refused() {
    let (_, mut r, entries) = setup();
    let mut bad = entries[2].clone();
    bad.sig.as_mut().unwrap().0[10] ^= 1;
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::BadSignature(_)));
}

#[test]
fn an_entry_with_altered_content_is_refused() {
    let (_, mut r, entries) = setup();
    let mut bad = entries[2].clone();
    bad.body = block(asn(3));
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::BadSignature(_)));
}

#[test]
fn an_entry_that_does_not_chain_is_refused() {
    let (net, mut r, _) = setup();
    let (k, s) = net.writer(1);
    let forged_prev = FeedHead {
        seq: 2,
        hash: Hash([7; 32]),
    };
    let bad = Entry::create(
        k,
        forged_prev,
        Hlc::new(12, 0),
        purchase(s, asn(1), 3, 1, 800),
    );
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::BrokenChain(_)));
}

#[test]
fn an_entry_after_a_gap_is_refused() {
    let (net, mut r, entries) = setup();
    let (k, _) = net.writer(1);
    let bad = Entry::create(k, entries[2].head(), Hlc::new(13, 0), block(asn(4)));
    assert_refused(&mut r, bad, |e| {
        matches!(
            e,
            EntryError::Gap {
                expected: 3,
                got: 4,
                ..
            }
        )
    });
}

#[test]
fn an_entry_from_an_unenrolled_origin_is_refused() {
    let (_, mut r, _) = setup();
    let stranger = NodeKey::from_seed(&[66; 32]);
    let bad = Entry::create(&stranger, FeedHead::EMPTY, Hlc::new(5, 0), block(asn(1)));
    assert_refused(&mut r, bad, |e| {
        matches!(e, EntryError::Auth(_, AuthError::UnknownOrigin(_)))
    });
}

#[test]
fn an_entry_claiming_an_enrolled_origin_but_signed_by_another_key_is_refused() {
    let (net, mut r, entries) = setup();
    let stranger = NodeKey::from_seed(&[66; 32]);
    let mut bad = Entry::create(&stranger, entries[1].head(), Hlc::new(12, 0), block(asn(1)));
    bad.origin = net.writer(1).0.node_id();
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::BadSignature(_)));
}

#[test]
fn a_second_history_for_the_same_sequence_is_a_fork() {
    let (net, mut r, entries) = setup();
    let (k, s) = net.writer(1);
    let other = Entry::create(
        k,
        entries[0].head(),
        Hlc::new(11, 5),
        purchase(s, asn(9), 2, 5, 5),
    );
    assert_refused(&mut r, other, |e| matches!(e, EntryError::Fork(_)));
}

#[test]
fn only_hq_may_clear_a_blacklisted_card() {
    let (net, mut r, entries) = setup();
    let (k, _) = net.writer(1);
    let bad = Entry::create(k, entries[1].head(), Hlc::new(12, 0), clear(asn(2), vec![]));
    assert_refused(&mut r, bad, |e| {
        matches!(
            e,
            EntryError::Auth(
                _,
                AuthError::Unauthorized {
                    role: Role::Store,
                    ..
                }
            )
        )
    });
}

#[test]
fn a_store_may_not_load_cards_or_write_for_another_site() {
    let (net, mut r, entries) = setup();
    let (k, s) = net.writer(1);
    let Body::Card(mut load) = purchase(s, asn(1), 3, 100, 800) else {
        unreachable!()
    };
    load.kind = TxnKind::Load;
    let bad = Entry::create(k, entries[1].head(), Hlc::new(12, 0), Body::Card(load));
    assert_refused(&mut r, bad, |e| {
        matches!(e, EntryError::Auth(_, AuthError::Unauthorized { .. }))
    });
    let bad = Entry::create(
        k,
        entries[1].head(),
        Hlc::new(12, 0),
        purchase(site("station-b"), asn(1), 3, 1, 800),
    );
    assert_refused(&mut r, bad, |e| {
        matches!(e, EntryError::Auth(_, AuthError::OtherSite { .. }))
    });
}

#[test]
fn a_site_may_edit_its_own_prices_but_not_the_network_price_book() {
    let net = Net::new();
    let mut r = net.replica();
    let (k, s) = net.writer(1);
    let p: ProductId = "cola".parse().unwrap();
    let set =
        |d: &mut automerge::AutoCommit| pricebook::schedule_price(d, &p, 0, Money::from_fen(300));
    let before = r.snapshot();
    let err = r
        .edit_doc(k, Hlc::new(1, 0), DocName::PriceBook, set)
        .unwrap_err();
    assert!(
        matches!(err, EntryError::Auth(_, AuthError::Unauthorized { .. })),
        "{err}"
    );
    assert_eq!(r.snapshot(), before);
    let err = r
        .edit_doc(
            k,
            Hlc::new(1, 0),
            DocName::SitePrices(site("station-b")),
            set,
        )
        .unwrap_err();
    assert!(
        matches!(err, EntryError::Auth(_, AuthError::OtherSite { .. })),
        "{err}"
    );
    assert!(
        r.edit_doc(k, Hlc::new(1, 0), DocName::SitePrices(s.clone()), set)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        r.snapshot().site_prices[&DocName::SitePrices(s)].at(&p, 5),
        Some((0, Money::from_fen(300)))
    );
}

#[test]
fn a_document_change_that_is_not_automerge_is_refused() {
    let (net, mut r, entries) = setup();
    let (k, s) = net.writer(1);
    let body = Body::Doc(DocChange {
        doc: DocName::SitePrices(s),
        change: vec![1, 2, 3],
    });
    let bad = Entry::create(k, entries[1].head(), Hlc::new(12, 0), body);
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::BadDocChange(..)));
}

#[test]
fn a_revoked_node_is_refused_after_its_last_accepted_entry() {
    let (net, mut r, entries) = setup();
    let revoke = Body::Revoke(Revocation {
        node: net.writer(1).0.node_id(),
        upto_seq: 2,
        reason: "stolen till".into(),
    });
    r.append(&net.hq, Hlc::new(20, 0), revoke).unwrap();
    assert_refused(&mut r, entries[2].clone(), |e| {
        matches!(
            e,
            EntryError::Auth(_, AuthError::Revoked { upto_seq: 2, .. })
        )
    });
    assert_eq!(
        r.views().ledger[&asn(1)].len(),
        2,
        "entries before the revocation stay"
    );
}

#[test]
fn a_certificate_from_another_network_or_not_signed_by_hq_is_refused() {
    let net = Net::new();
    let mut r = net.replica();
    let node = NodeKey::from_seed(&[50; 32]);
    let mut foreign = cert(&net.hq, &node, "shop-z", Role::Store);
    foreign.network = NetworkId([1; 16]);
    assert!(matches!(
        r.admit(foreign),
        Err(AuthError::WrongNetwork { .. })
    ));
    let impostor = NodeKey::from_seed(&[51; 32]);
    let self_made = cert(&impostor, &node, "shop-z", Role::Store);
    assert!(matches!(
        r.admit(self_made),
        Err(AuthError::NotSignedByHq { .. })
    ));
    let sneaky = cert(&net.hq, &node, "shop-z", Role::Hq);
    assert!(matches!(
        r.admit(sneaky),
        Err(AuthError::HqRoleMisuse { .. })
    ));
}

#[test]
fn good_entries_before_a_bad_one_are_kept_and_later_ones_wait() {
    let (net, _, entries) = setup();
    let mut r = net.replica();
    let mut bad = entries[2].clone();
    bad.sig.as_mut().unwrap().0[0] ^= 0x80;
    let report = r.ingest([entries[0].clone(), entries[1].clone(), bad]);
    assert_eq!(report.applied, 2);
    assert_eq!(report.rejected.len(), 1);
    assert!(matches!(report.rejected[0], EntryError::BadSignature(_)));
    assert_eq!(r.version_vector().get(&entries[0].origin), 2);
    let report = r.ingest(entries.clone());
    assert_eq!((report.applied, report.duplicates), (1, 2));
}

#[test]
fn a_bad_signature_the_next_entry_vouches_for_is_dropped_not_kept() {
    let (net, _, entries) = setup();
    let origin = entries[0].origin;
    let mut r = net.replica();
    let mut damaged = entries[1].clone();
    damaged.sig.as_mut().unwrap().0[0] ^= 0x80;
    let report = r.ingest([entries[0].clone(), damaged, entries[2].clone()]);
    assert_eq!((report.applied, report.rejected.len()), (3, 0));
    let held = r.entries(FeedRange {
        origin,
        from: 1,
        to: 3,
    });
    let signed: Vec<bool> = held.iter().map(|e| e.sig.is_some()).collect();
    assert_eq!(signed, [false, false, true]);
}

#[test]
fn entries_after_the_last_signature_are_refused_as_unauthenticated() {
    let (net, _, entries) = setup();
    let mut r = net.replica();
    let mut tail = entries[2].clone();
    tail.sig = None;
    let report = r.ingest([entries[0].clone(), entries[1].clone(), tail]);
    assert_eq!(report.applied, 2);
    assert!(matches!(report.rejected[..], [EntryError::Unsigned(_)]));
    let mut alone = entries[2].clone();
    alone.sig = None;
    let report = r.ingest([alone]);
    assert_eq!(report.applied, 0);
    assert!(matches!(report.rejected[..], [EntryError::Unsigned(_)]));
}

#[test]
fn an_entry_numbered_zero_is_refused_not_a_crash() {
    let (net, mut r, _) = setup();
    let (k, _) = net.writer(1);
    let mut bad = Entry::create(k, FeedHead::EMPTY, Hlc::new(1, 0), block(asn(1)));
    bad.seq = 0;
    assert_refused(&mut r, bad, |e| matches!(e, EntryError::Gap { got: 0, .. }));
}

//! The store's contract with its callers: what it accepts, what it refuses, and that
//! what it reported as done is still there after a reopen.

mod store_support;

use cardmesh_model::auth::AuthError;
use cardmesh_model::docs::{DocName, pricebook};
use cardmesh_model::*;
use cardmesh_node::store::{Store, StoreError};
use std::collections::BTreeSet;
use store_support::*;

#[test]
fn reopen_after_close_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node0.redb");
    let store = net.store(dir.path(), 0);
    let blocked = store.append_local(block(asn(1))).unwrap();
    store.append_local(holder(asn(2), "Li")).unwrap();
    store
        .append_local(purchase(site("hq"), asn(3), 1, 500))
        .unwrap();
    store
        .edit_doc(DocName::PriceBook, |d| {
            pricebook::schedule_price(d, &"diesel-0".parse().unwrap(), 0, Money::from_fen(789))
        })
        .unwrap()
        .unwrap();
    store.config_set("printer", b"/dev/usb/lp0").unwrap();
    let seq = store.next_term_seq(&terminal(1)).unwrap();
    let vv = store.version_vector().unwrap();
    drop(store);

    let store = Store::open(&path, net.keys[0].clone(), TestClock::new(2_000_000)).unwrap();
    assert_eq!(store.version_vector().unwrap(), vv);
    assert_eq!(vv.get(&net.keys[0].node_id()), 4);
    assert!(store.is_blocked(&asn(1)).unwrap());
    assert_eq!(
        store.blacklist(&asn(1)).unwrap().unwrap().open_blocks()[0].at,
        blocked.entry_ref()
    );
    assert!(store.card(&asn(2)).unwrap().unwrap().is_named());
    assert_eq!(store.card_history(&asn(3)).unwrap().len(), 1);
    assert_eq!(store.day_ledger(&site("hq"), day()).unwrap().len(), 1);
    assert_eq!(
        store
            .terminal_ledger(&site("hq"), &terminal(1), day())
            .unwrap()
            .len(),
        1
    );
    let book = pricebook::read(&store.doc(&DocName::PriceBook).unwrap().unwrap());
    assert_eq!(
        book.prices.at(&"diesel-0".parse().unwrap(), 10),
        Some((0, Money::from_fen(789)))
    );
    assert_eq!(
        store.config_get("printer").unwrap().as_deref(),
        Some(&b"/dev/usb/lp0"[..])
    );
    assert_eq!(store.next_term_seq(&terminal(1)).unwrap(), seq + 1);
    assert_eq!(store.own_certificate(), net.certs[0]);
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.total_entries, stats.blacklisted, stats.cards),
        (4, 1, 1)
    );
    store.verify_views().unwrap();
}

#[test]
fn local_entries_chain_and_get_increasing_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 1);
    let a = store.append_local(block(asn(1))).unwrap();
    let b = store.append_local(block(asn(2))).unwrap();
    assert_eq!((a.seq, b.seq), (1, 2));
    assert_eq!(b.prev, a.hash());
    assert!(b.hlc > a.hlc);
    assert_eq!(store.head(&net.keys[1].node_id()).unwrap(), b.head());
}

/// Tills appending at once share group commits, and each commit signs only its last own
/// entry (and the checkpoints): whatever the grouping was, the newest entry and every
/// checkpoint carry a valid signature, every entry is vouched for by a signature after
/// it, and another node takes the whole feed.
#[test]
fn concurrent_appends_leave_a_feed_whose_signatures_vouch_for_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 1);
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let store = &store;
            s.spawn(move || {
                for n in 0..30u8 {
                    store.append_local(block(asn(t * 30 + n))).unwrap();
                }
            });
        }
    });
    let own = net.keys[1].node_id();
    let feed = store
        .entries(
            FeedRange {
                origin: own,
                from: 1,
                to: 240,
            },
            usize::MAX,
        )
        .unwrap();
    assert_eq!(feed.len(), 240);
    let key = sign::PublicKey::of(&own).unwrap();
    for e in &feed {
        if e.sig.is_some() || e.seq % entry::CHECKPOINT_EVERY == 0 || e.seq == 240 {
            assert!(e.signature_valid(&key), "entry {} is badly signed", e.seq);
        }
    }
    store.verify_views().unwrap();

    let hq = net.store(dir.path(), 0);
    hq.admit(net.certs[1].clone()).unwrap();
    let report = hq.ingest(feed).unwrap();
    assert!(report.rejected.is_empty(), "{:?}", report.rejected);
    assert_eq!(report.applied, 240);
}

#[test]
fn a_key_that_is_not_the_stores_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    drop(net.store(dir.path(), 0));
    let err = Store::open(
        &dir.path().join("node0.redb"),
        net.keys[1].clone(),
        TestClock::new(0),
    )
    .err()
    .unwrap();
    assert!(matches!(err, StoreError::WrongNode { .. }), "{err}");
}

#[test]
fn missing_existing_and_busy_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node0.redb");
    let missing = Store::open(&path, net.keys[0].clone(), TestClock::new(0));
    assert!(matches!(missing, Err(StoreError::Missing(_))));
    let store = net.store(dir.path(), 0);
    let again = Store::create(
        &path,
        net.keys[0].clone(),
        net.certs[0].clone(),
        net.certs[0].clone(),
        TestClock::new(0),
    );
    assert!(matches!(again, Err(StoreError::AlreadyExists(_))));
    let busy = Store::open(&path, net.keys[0].clone(), TestClock::new(0));
    assert!(
        matches!(busy, Err(StoreError::InUse(_))),
        "{:?}",
        busy.err()
    );
    drop(store);
}

#[test]
fn ingest_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 1);
    let mut hq = net.replica();
    let mut hlc = HlcClock::default();
    let mut batch = net.enrollments(&mut hq, &mut hlc);
    let b = hq.append(&net.hq, hlc.tick(20), block(asn(7))).unwrap();
    batch.push(b.clone());
    let first = store.ingest(batch.clone()).unwrap();
    assert_eq!((first.applied, first.duplicates), (4, 0));
    assert!(first.rejected.is_empty());
    let vv = store.version_vector().unwrap();

    let mut again = batch.clone();
    again.push(b);
    let second = store.ingest(again).unwrap();
    assert_eq!((second.applied, second.duplicates), (0, 5));
    assert!(second.rejected.is_empty());
    assert_eq!(store.version_vector().unwrap(), vv);
    assert!(store.is_blocked(&asn(7)).unwrap());
    store.verify_views().unwrap();
}

#[test]
fn entries_of_an_unenrolled_origin_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    let stranger = NodeKey::from_seed(&[9; 32]);
    let e = Entry::create(&stranger, FeedHead::EMPTY, Hlc::new(5, 0), block(asn(3)));
    let report = store.ingest(vec![e]).unwrap();
    assert_eq!(report.applied, 0);
    assert!(matches!(
        report.rejected.as_slice(),
        [EntryError::Auth(_, AuthError::UnknownOrigin(_))]
    ));
    assert_eq!(store.version_vector().unwrap(), VersionVector::new());
    assert!(!store.is_blocked(&asn(3)).unwrap());
    assert_eq!(store.blacklist(&asn(3)).unwrap(), None);
    store.verify_views().unwrap();
}

#[test]
fn entries_of_a_revoked_origin_after_the_revocation_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 3);
    let mut hq = net.replica();
    let mut hlc = HlcClock::default();
    let mut batch = net.enrollments(&mut hq, &mut hlc);
    let shop = &net.keys[1];
    let mut rogue = net.replica();
    let mut written = Vec::new();
    for card in 1..=3 {
        written.push(rogue.append(shop, hlc.tick(30), block(asn(card))).unwrap());
    }
    batch.push(
        hq.append(
            &net.hq,
            hlc.tick(40),
            Body::Revoke(Revocation {
                node: shop.node_id(),
                upto_seq: 2,
                reason: "till stolen".into(),
            }),
        )
        .unwrap(),
    );
    // The revocation is in HQ's feed, which is applied first whatever the batch order.
    let mut delivered = written.clone();
    delivered.extend(batch);
    let report = store.ingest(delivered).unwrap();
    assert!(matches!(
        report.rejected.as_slice(),
        [EntryError::Auth(r, AuthError::Revoked { upto_seq: 2, .. })] if r.seq == 3
    ));
    assert_eq!(store.version_vector().unwrap().get(&shop.node_id()), 2);
    assert!(store.is_blocked(&asn(2)).unwrap());
    assert!(!store.is_blocked(&asn(3)).unwrap());

    let late = rogue.append(shop, hlc.tick(50), block(asn(4))).unwrap();
    let report = store.ingest(vec![written[2].clone(), late]).unwrap();
    assert_eq!(report.applied, 0);
    assert!(!store.is_blocked(&asn(4)).unwrap());
    store.verify_views().unwrap();
}

#[test]
fn a_bad_entry_mid_batch_keeps_the_good_prefix_and_the_other_origins() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    let mut others = net.replica();
    let mut hlc = HlcClock::default();
    store.admit(net.certs[1].clone()).unwrap();
    store.admit(net.certs[2].clone()).unwrap();
    let mut shop = Vec::new();
    let mut station = Vec::new();
    for card in 1..=5 {
        shop.push(
            others
                .append(&net.keys[1], hlc.tick(10), block(asn(card)))
                .unwrap(),
        );
        station.push(
            others
                .append(&net.keys[2], hlc.tick(10), block(asn(card + 10)))
                .unwrap(),
        );
    }
    // A forged third entry: its body changed after signing.
    shop[2].body = block(asn(99));
    let mut batch = shop.clone();
    batch.extend(station);
    let report = store.ingest(batch).unwrap();
    assert_eq!(report.applied, 2 + 5);
    assert_eq!(
        report.rejected,
        vec![EntryError::BadSignature(shop[2].entry_ref())]
    );
    let vv = store.version_vector().unwrap();
    assert_eq!(vv.get(&net.keys[1].node_id()), 2);
    assert_eq!(vv.get(&net.keys[2].node_id()), 5);
    assert!(store.is_blocked(&asn(2)).unwrap());
    assert!(!store.is_blocked(&asn(3)).unwrap());
    assert!(!store.is_blocked(&asn(99)).unwrap());
    assert!(store.is_blocked(&asn(15)).unwrap());
    store.verify_views().unwrap();
}

#[test]
fn a_write_the_nodes_role_may_not_make_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 1);
    let err = store.append_local(clear(asn(1), vec![])).unwrap_err();
    assert!(matches!(
        err,
        StoreError::Entry(EntryError::Auth(_, AuthError::Unauthorized { .. }))
    ));
    let err = store
        .edit_doc(DocName::PriceBook, |d| {
            pricebook::schedule_price(d, &"diesel-0".parse().unwrap(), 0, Money::from_fen(1))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Entry(_)), "{err}");
    assert_eq!(store.version_vector().unwrap(), VersionVector::new());
    assert!(store.doc(&DocName::PriceBook).unwrap().is_none());
}

#[test]
fn next_term_seq_never_repeats_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let path = dir.path().join("node1.redb");
    let mut seen = BTreeSet::new();
    drop(net.store(dir.path(), 1));
    for _ in 0..3 {
        let store = Store::open(&path, net.keys[1].clone(), TestClock::new(0)).unwrap();
        for _ in 0..5 {
            assert!(seen.insert(store.next_term_seq(&terminal(1)).unwrap()));
        }
        assert_eq!(
            store.next_term_seq(&terminal(2)).unwrap() as usize,
            seen.len() / 5
        );
    }
    assert_eq!(seen, (1..=15).collect());
}

#[test]
fn concurrent_appends_all_land_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    let handles: Vec<_> = (0..16u8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25u8)
                    .map(|i| {
                        store
                            .append_local(block(CardAsn([t, i, 0, 0, 0, 0, 0, 1])))
                            .unwrap()
                            .seq
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let seqs: BTreeSet<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(seqs, (1..=400).collect());
    assert_eq!(store.stats().unwrap().blacklisted, 400);
    store.verify_views().unwrap();
}

#[test]
fn subscribers_hear_of_new_entries() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    let notices = store.subscribe();
    store.append_local(block(asn(1))).unwrap();
    store.config_set("k", b"v").unwrap();
    let vv = notices.recv().unwrap();
    assert_eq!(vv.get(&net.keys[0].node_id()), 1);
    assert!(
        notices.try_recv().is_err(),
        "a config change applies no entry"
    );
}

#[test]
fn documents_survive_compaction_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    let product: ProductId = "diesel-0".parse().unwrap();
    for i in 0..150 {
        store
            .edit_doc(DocName::PriceBook, |d| {
                pricebook::schedule_price(d, &product, i, Money::from_fen(700 + i))
            })
            .unwrap()
            .unwrap();
    }
    let unchanged = store.edit_doc(DocName::PriceBook, |_| Ok(())).unwrap();
    assert!(unchanged.is_none());
    store.verify_views().unwrap();
    drop(store);
    let store = Store::open(
        &dir.path().join("node0.redb"),
        net.keys[0].clone(),
        TestClock::new(0),
    )
    .unwrap();
    let book = pricebook::read(&store.doc(&DocName::PriceBook).unwrap().unwrap());
    assert_eq!(
        book.prices.at(&product, 1_000),
        Some((149, Money::from_fen(849)))
    );
    store.verify_views().unwrap();
}

#[test]
fn entries_come_in_bounded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let store = net.store(dir.path(), 0);
    for card in 0..10 {
        store.append_local(block(asn(card))).unwrap();
    }
    let origin = net.keys[0].node_id();
    let got = store
        .entries(
            FeedRange {
                origin,
                from: 3,
                to: 9,
            },
            4,
        )
        .unwrap();
    assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5, 6]);
    let mut peer = net.replica();
    let report = peer.ingest(
        store
            .entries(
                FeedRange {
                    origin,
                    from: 1,
                    to: 10,
                },
                100,
            )
            .unwrap(),
    );
    assert_eq!(report.applied, 10);
}

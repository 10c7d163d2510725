//! Frauds HQ finds and answers: a cloned card used at two sites with the same counter, a
//! transaction whose TAC the card did not compute, and a grey lock left open. Each
//! clone or bad TAC ends with an alarm and a block in HQ's feed that reaches every node.

mod hq_support;

use cardmesh_drivers::types::BcdDateTime;
use cardmesh_model::CardAsn;
use cardmesh_model::body::{AlarmKind, BlacklistEvent, Body, TxnKind};
use cardmesh_model::docs::DocName;
use cardmesh_model::report::{AnomalyKind, Scope, locks};
use cardmesh_node::hq::{audit, report};
use hq_support::*;

fn alarms_of(store: &cardmesh_node::store::Store) -> Vec<(AlarmKind, Option<CardAsn>)> {
    store
        .alarms(100)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Alarm(a) => Some((a.kind, a.asn)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cloned_card_used_at_two_sites_ends_blocked_on_every_node() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 2);
    let bday = day(2026, 11, 20);
    let (asn, chip) = chain.card(1);
    chain.load(
        &chip,
        20_000,
        BcdDateTime::new(2026, 11, 20, 8, 0, 0).unwrap(),
        bday,
    );
    // Someone copies the chip: two cards with the same keys, counters and balance.
    let clone = tmp.path().join("clone.chip");
    std::fs::copy(&chip, &clone).unwrap();
    let t1 = chain.sell(
        (1, 1, 1),
        &chip,
        vec![item("cola", 3_000, 300)],
        BcdDateTime::new(2026, 11, 20, 10, 0, 0).unwrap(),
        bday,
    );
    let t2 = chain.sell(
        (2, 1, 1),
        &clone,
        vec![item("petrol-92", 20_000, 768)],
        BcdDateTime::new(2026, 11, 20, 10, 5, 0).unwrap(),
        bday,
    );
    assert_eq!(
        t1.card_counter, t2.card_counter,
        "both copies used counter 0"
    );
    let card = CardAsn(asn.0);
    for n in chain.nodes() {
        assert!(!n.store.is_blocked(&card).unwrap());
    }

    // The shops reach HQ; HQ's audit finds the clone and blocks the card.
    chain.sync_all();
    let found = chain.hq.store.anomalies().unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0.kind, AnomalyKind::CloneSuspected);
    assert!(!found[0].1, "not answered before the audit");
    let r = audit::audit(&chain.hq.store, &tac_key(&chain), 0, u64::MAX).unwrap();
    assert_eq!(r.bad_tacs, 0, "a clone computes genuine TACs");
    assert_eq!(r.blocked, vec![card]);
    assert_eq!(
        alarms_of(&chain.hq.store),
        vec![(AlarmKind::CloneSuspected, Some(card))]
    );
    let block = r
        .appended
        .iter()
        .find(|e| matches!(e.body, Body::Blacklist(BlacklistEvent::Block { .. })))
        .unwrap();
    assert_eq!(block.origin, chain.hq.store.node_id());

    // The block travels: every node now refuses the card.
    chain.sync_all();
    for n in chain.nodes() {
        assert!(n.store.is_blocked(&card).unwrap());
        assert_eq!(alarms_of(&n.store).len(), 1);
    }

    // A second audit, and one after HQ restarts, answer nothing twice.
    let again = audit::audit(&chain.hq.store, &tac_key(&chain), 0, u64::MAX).unwrap();
    assert!(again.appended.is_empty());
    assert_eq!(again.verified, 0, "nothing new to verify");
    let Chain {
        hq,
        shops,
        masters,
        root,
    } = chain;
    drop(hq.store);
    let reopened = cardmesh_node::identity::open(&hq.dir, clock()).unwrap();
    let after_restart = audit::audit(&reopened, &masters.tac, 0, u64::MAX).unwrap();
    assert!(after_restart.appended.is_empty());
    assert_eq!(alarms_of(&reopened).len(), 1);
    drop((shops, root));
}

#[test]
fn a_transaction_whose_tac_the_card_did_not_compute_is_blocked() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 1);
    let bday = day(2026, 11, 20);
    let (good_asn, good_chip) = chain.card(1);
    let (bad_asn, bad_chip) = chain.card(2);
    for chip in [&good_chip, &bad_chip] {
        chain.load(
            chip,
            10_000,
            BcdDateTime::new(2026, 11, 20, 8, 0, 0).unwrap(),
            bday,
        );
    }
    chain.sell(
        (1, 1, 1),
        &good_chip,
        vec![item("cola", 1_000, 300)],
        BcdDateTime::new(2026, 11, 20, 9, 0, 0).unwrap(),
        bday,
    );
    // A till that logs 3.00 for a sale the card made for 30.00: its arithmetic is
    // consistent, so only the TAC shows it.
    let mut sam = chain.sam(1, 2);
    let r = purse(&bad_chip)
        .purchase(
            &mut sam,
            3_000,
            BcdDateTime::new(2026, 11, 20, 9, 30, 0).unwrap(),
        )
        .unwrap();
    let mut forged = purchase_txn(
        &r,
        "shop-1".parse().unwrap(),
        Some(operator(1, 1)),
        bday,
        vec![item("cola", 1_000, 300)],
    );
    forged.amount = cardmesh_model::Money::from_fen(300);
    forged.balance_after = cardmesh_model::Money::from_fen(10_000 - 300);
    chain.shops[0]
        .store
        .append_local(Body::Card(forged))
        .unwrap();
    chain.sync_all();

    let r = audit::audit(&chain.hq.store, &tac_key(&chain), 0, u64::MAX).unwrap();
    assert_eq!(r.verified, 4);
    assert_eq!(r.bad_tacs, 1);
    assert_eq!(r.blocked, vec![CardAsn(bad_asn.0)]);
    assert_eq!(
        alarms_of(&chain.hq.store),
        vec![(AlarmKind::BadTac, Some(CardAsn(bad_asn.0)))]
    );
    chain.sync_all();
    for n in chain.nodes() {
        assert!(n.store.is_blocked(&CardAsn(bad_asn.0)).unwrap());
        assert!(!n.store.is_blocked(&CardAsn(good_asn.0)).unwrap());
    }
}

#[test]
fn a_grey_lock_left_open_is_reported_stale_once_old_enough() {
    let tmp = tempfile::tempdir().unwrap();
    let chain = Chain::new(tmp.path(), 1);
    let bday = day(2026, 11, 20);
    let (asn, chip) = chain.card(1);
    chain.load(
        &chip,
        10_000,
        BcdDateTime::new(2026, 11, 20, 8, 0, 0).unwrap(),
        bday,
    );
    let mut sam = chain.sam(1, 1);
    let lock = purse(&chip)
        .grey_lock(&mut sam, BcdDateTime::new(2026, 11, 20, 9, 0, 0).unwrap())
        .unwrap();
    let txn = cardmesh_model::body::CardTxn {
        kind: TxnKind::GreyLock,
        asn: CardAsn(asn.0),
        site: "shop-1".parse().unwrap(),
        terminal: shop_terminal(1, 1),
        operator: Some(operator(1, 1)),
        business_day: bday,
        card_time: cardmesh_model::CardTime(lock.datetime.0),
        card_counter: lock.offline_counter,
        term_seq: lock.term_seq,
        amount: cardmesh_model::Money::ZERO,
        balance_before: cardmesh_model::Money::from_fen(i64::from(lock.balance)),
        balance_after: cardmesh_model::Money::from_fen(i64::from(lock.balance)),
        mac1: lock.mac1.0,
        mac2: lock.mac2.0,
        tac: lock.gtac.0,
        items: Vec::new(),
        refers_to: None,
    };
    let logged = chain.shops[0].store.append_local(Body::Card(txn)).unwrap();
    chain.sync_all();

    let locked_at = logged.hlc.millis;
    let hq = &chain.hq.store;
    // The network allows a day unless HQ says otherwise; HQ says an hour.
    assert_eq!(report::grey_lock_max_age_ms(hq).unwrap(), 24 * 3_600_000);
    hq.edit_doc(DocName::Network, |d| locks::set_max_age_min(d, 60))
        .unwrap();
    let max_age = report::grey_lock_max_age_ms(hq).unwrap();
    assert_eq!(max_age, 3_600_000);

    let fresh = audit::audit(hq, &tac_key(&chain), locked_at + 1_000, max_age).unwrap();
    assert_eq!(
        fresh.bad_tacs, 0,
        "the GTAC verifies like a zero-amount purchase"
    );
    assert!(fresh.stale_locks.is_empty());
    assert!(alarms_of(hq).is_empty());
    let listed = report::grey_locks(hq, locked_at + 1_000, max_age, &Scope::Network).unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!listed[0].stale);

    // An hour and a minute later the lock is stale: one alarm, whatever how many checks.
    let card = CardAsn(asn.0);
    for minutes in [61, 62, 120, 600] {
        let later =
            audit::audit(hq, &tac_key(&chain), locked_at + minutes * 60_000, max_age).unwrap();
        assert_eq!(later.stale_locks.len(), 1);
        assert_eq!(later.stale_locks[0].at, logged.entry_ref());
        assert_eq!(later.stale_locks[0].asn, card);
        assert!(later.blocked.is_empty(), "a stale lock blocks no card");
        assert_eq!(alarms_of(hq), vec![(AlarmKind::GreyLockStale, Some(card))]);
    }
    assert!(!hq.is_blocked(&card).unwrap());

    // The report says so in every format.
    let now = locked_at + 61 * 60_000;
    let listed = report::grey_locks(hq, now, max_age, &Scope::Network).unwrap();
    assert!(listed[0].stale);
    assert_eq!(listed[0].site.as_ref().map(|s| s.as_str()), Some("shop-1"));
    let json: serde_json::Value = serde_json::from_str(&report::render_grey_locks(
        &listed,
        max_age,
        report::Format::Json,
    ))
    .unwrap();
    assert_eq!(json["locks"][0]["stale"], true);
    assert_eq!(json["locks"][0]["card"], card.to_string());
    let csv = report::render_grey_locks(&listed, max_age, report::Format::Csv);
    let row = csv.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&card.to_string()) && row.ends_with(",stale"),
        "{csv}"
    );
    let risk = report::risk(hq, report::Span::Day(bday), now, max_age, &Scope::Network).unwrap();
    assert!(risk.open_locks[0].stale);
    assert_eq!(
        risk.anomalies
            .iter()
            .map(|(a, answered)| (a.kind, a.at, *answered))
            .collect::<Vec<_>>(),
        vec![(AnomalyKind::StaleGreyLock, logged.entry_ref(), true)]
    );

    // The setting reached the shop too (it is in the network registry).
    chain.sync_all();
    assert_eq!(
        report::grey_lock_max_age_ms(&chain.shops[0].store).unwrap(),
        3_600_000
    );
}

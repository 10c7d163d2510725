//! A station dies after the grey lock: the pump was authorized and the customer fills
//! and drives off with the card. The grey record syncs to a second station over iroh on
//! loopback, which refuses to guess the amount; the first station restarts, reads what
//! the pump delivered and records the deferred debit; after the next sync the card is
//! presented at the second station, which completes the debit with the delivered
//! amount, exactly once: both ledgers equal the card.

mod station_support;

use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::dispenser::flow::Stage;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_model::body::{Body, TxnKind};
use cardmesh_model::{Money, NodeKey};
use cardmesh_node::link::NodeSync;
use cardmesh_node::link::iroh::IrohLink;
use cardmesh_node::store::Store;
use station_support::*;

fn yuan(s: &str) -> Money {
    s.parse().unwrap()
}

async fn link(store: &Store, key: &NodeKey) -> IrohLink {
    IrohLink::bind(
        NodeSync::new(store.clone(), key.clone()),
        "127.0.0.1:0".parse().unwrap(),
        clock(),
    )
    .await
    .unwrap()
}

/// The ledger of card 7 on `store` chains to `chip_balance`, with one entry per card
/// counter and nothing pending.
fn assert_ledger_equals_card(store: &Store, chip_balance: i64) {
    assert!(store.pending_intents(&asn(7)).unwrap().is_empty());
    let mut balance = 0;
    let mut counters = Vec::new();
    for e in store.card_history(&asn(7)).unwrap() {
        let Body::Card(t) = e.body else { continue };
        match t.kind {
            TxnKind::Load => balance += t.amount.fen(),
            TxnKind::GreyLock => {}
            TxnKind::DebitForUnlock => balance -= t.amount.fen(),
            k => panic!("unexpected {k:?}"),
        }
        assert_eq!(t.balance_after.fen(), balance, "balances chain");
        let counter = (t.kind == TxnKind::Load, t.card_counter);
        assert!(!counters.contains(&counter), "two entries for {counter:?}");
        counters.push(counter);
    }
    assert_eq!(balance, chip_balance);
    store.verify_views().unwrap();
}

#[test]
fn a_fill_cut_off_by_a_crash_is_debited_once_at_another_station_after_sync() {
    let (net, desk) = fuel_net();
    let key_1 = net.desk_key();
    let (store_2, key_2) = enroll_station_2(&net, &desk);
    let chip = loaded_card(&net, &desk, 7, "500");
    login(&desk, &key_1, terminal_1(), CASHIER_1);
    login(&store_2, &key_2, terminal_2(), CASHIER_2);
    let rig_1 = Rig::new(net.tmp.path(), "st1", terminal_1());
    let rig_2 = Rig::new(net.tmp.path(), "st2", terminal_2());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (link_1, link_2) =
        rt.block_on(async { (link(&desk, &key_1).await, link(&store_2, &key_2).await) });
    let sync = || {
        rt.block_on(link_1.sync_with(store_2.node_id(), link_2.local_addrs()[0]))
            .unwrap();
    };

    // Station 1 locks the card and authorizes the pump, then dies.
    let station_1 = rig_1.start(&desk, &key_1);
    rig_1.slot.insert(chip);
    wait(&station_1, "the pump authorized", |p| {
        p.stage == Stage::Fuelling
    });
    drop(station_1);
    let locks = desk.card_history(&asn(7)).unwrap();
    assert!(
        locks
            .iter()
            .any(|e| matches!(&e.body, Body::Card(t) if t.kind == TxnKind::GreyLock)),
        "the grey lock entry is durable"
    );
    // The customer fills 12 litres of 92 and leaves with the card.
    rig_1.sim.lift(1).unwrap();
    rig_1.sim.pump(12_000).unwrap();
    rig_1.sim.hang_up().unwrap();
    let chip = rig_1.slot.remove();

    // Station 2 has the grey record but not the amount: it debits nothing.
    sync();
    let station_2 = rig_2.start(&store_2, &key_2);
    rig_2.slot.insert(chip);
    let p = wait(&station_2, "the refusal", |p| p.last_error.is_some());
    let why = p.last_error.unwrap();
    assert!(why.contains("not known here"), "{why}");
    assert!(rig_2.slot.card_locked());
    let chip = rig_2.slot.remove();
    assert_eq!(chip.balance(), 50_000);

    // Station 1 restarts: the pump still holds the fill; the card is gone, so the
    // debit is recorded for whichever station sees the card next.
    let station_1 = rig_1.start(&desk, &key_1);
    wait(&station_1, "the fill recovered", |p| p.fills == 1);
    let r = rig_1.receipt();
    assert!(
        line(&r, "待扣款 Debit pending").ends_with("90.00"),
        "{}",
        r.text()
    );
    assert!(line(&r, "升数 Litres").ends_with("12.000"));
    let pending = desk.pending_intents(&asn(7)).unwrap();
    assert!(
        matches!(&pending[..], [e] if matches!(&e.body, Body::Intent(t) if t.kind == TxnKind::DebitForUnlock && t.amount == yuan("90.00")))
    );

    // After the next sync the card comes to station 2 and is debited there.
    sync();
    wait(&station_2, "the card gone", |p| p.card.is_none());
    rig_2.slot.insert(chip);
    wait(&station_2, "the deferred debit", |p| p.fills == 1);
    let r = rig_2.receipt();
    assert!(
        line(&r, "补扣 Deferred debit").ends_with("90.00"),
        "{}",
        r.text()
    );
    assert!(line(&r, "卡余额 Balance").ends_with("410.00"));
    assert!(!rig_2.slot.card_locked());
    let chip = rig_2.slot.remove();
    drop(station_2);
    drop(station_1);
    sync();

    // Exactly once, on both stations, and each ledger equals the card.
    assert_eq!(chip.balance(), 41_000);
    for store in [&desk, &store_2] {
        let unlocks: Vec<_> = store
            .card_history(&asn(7))
            .unwrap()
            .into_iter()
            .filter_map(|e| match e.body {
                Body::Card(t) if t.kind == TxnKind::DebitForUnlock => Some(t),
                _ => None,
            })
            .collect();
        assert_eq!(unlocks.len(), 1);
        assert_eq!(unlocks[0].amount, yuan("90.00"));
        assert_eq!(unlocks[0].terminal, terminal_2());
        assert_ledger_equals_card(store, 41_000);
    }
    let mut purse = EPurse::new(MemoryReader::new(chip));
    purse.select().unwrap();
    let unlocks_on_card = purse
        .read_records()
        .unwrap()
        .iter()
        .filter(|r| r.tx_type == TxType::UnlockDebit)
        .count();
    assert_eq!(unlocks_on_card, 1);
    rt.block_on(async {
        link_1.shutdown().await;
        link_2.shutdown().await;
    });
}

#[test]
fn a_station_restarted_mid_fill_debits_the_card_still_in_its_reader() {
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let chip = loaded_card(&net, &desk, 7, "500");
    login(&desk, &key, terminal_1(), CASHIER_1);
    let rig = Rig::new(net.tmp.path(), "st1", terminal_1());
    let station = rig.start(&desk, &key);
    rig.slot.insert(chip);
    wait(&station, "the pump authorized", |p| {
        p.stage == Stage::Fuelling
    });
    rig.sim.lift(2).unwrap();
    rig.sim.pump(5_000).unwrap();
    wait(&station, "5 litres", |p| p.volume.milli() == 5_000);
    drop(station);
    // The pump goes on while the node is down.
    rig.sim.pump(5_000).unwrap();
    rig.sim.hang_up().unwrap();

    let station = rig.start(&desk, &key);
    let p = wait(&station, "the fill recovered", |p| p.fills == 1);
    assert_eq!(p.last_error, None);
    let r = rig.receipt();
    assert!(line(&r, "升数 Litres").ends_with("10.000"), "{}", r.text());
    assert!(line(&r, "金额 Amount").ends_with("81.00"));
    assert!(line(&r, "卡余额 Balance").ends_with("419.00"));
    drop(station);
    assert_eq!(rig.slot.remove().balance(), 41_900);
    assert_ledger_equals_card(&desk, 41_900);
}

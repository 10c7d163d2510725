//! The station node over real ptys: a card in the dispenser's slot is grey-locked by the
//! node, the DART pump (simulator at the far end of a socat pty) is authorized and fills,
//! and the node debits the card for unlock and prints the receipt on the ESC/POS
//! printer, whose pty end is decoded here. Also: stop mid-fill, pump fault, a price
//! change during the fill, and the card pulled before its debit.

mod station_support;

use cardmesh_drivers::dispenser::PointState;
use cardmesh_drivers::dispenser::flow::Stage;
use cardmesh_model::body::{Body, CardTxn, TxnKind};
use cardmesh_model::{Money, Quantity};
use cardmesh_node::station::Station;
use cardmesh_node::store::Store;
use station_support::*;

struct Fuel {
    net: Net,
    desk: Store,
    rig: Rig,
}

/// Station 1 with card 7 (500.00) and a cashier on shift.
fn fuel() -> (Fuel, Station) {
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let chip = loaded_card(&net, &desk, 7, "500");
    login(&desk, &key, terminal_1(), CASHIER_1);
    let rig = Rig::new(net.tmp.path(), "st1", terminal_1());
    let station = rig.start(&desk, &key);
    rig.slot.insert(chip);
    let f = Fuel { net, desk, rig };
    (f, station)
}

fn yuan(s: &str) -> Money {
    s.parse().unwrap()
}

/// The card's ledger entries of `kind` on `store`.
fn ledger(store: &Store, kind: TxnKind) -> Vec<CardTxn> {
    store
        .card_history(&asn(7))
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Card(t) if t.kind == kind => Some(t),
            _ => None,
        })
        .collect()
}

fn authorized(station: &Station) {
    wait(station, "the pump authorized", |p| {
        p.stage == Stage::Fuelling && p.state.is_some()
    });
}

#[test]
fn a_card_fill_is_debited_at_the_authorized_price_and_its_receipt_printed() {
    let (f, station) = fuel();
    authorized(&station);
    f.rig.sim.lift(1).unwrap();
    f.rig.sim.pump(10_000).unwrap();
    let live = wait(&station, "10 litres", |p| {
        p.volume == Quantity::from_milli(10_000)
    });
    assert_eq!(live.state, Some(PointState::Filling));
    assert_eq!(live.amount, yuan("75.00"));
    assert_eq!(live.grade, Some("92".parse().unwrap()));
    assert_eq!(live.card, Some(asn(7)));
    f.rig.sim.pump(10_000).unwrap();
    f.rig.sim.hang_up().unwrap();
    let done = wait(&station, "the fill debited", |p| p.fills == 1);
    assert_eq!(done.last_error, None);

    let r = f.rig.receipt();
    let text = r.text();
    assert!(r.cut);
    assert!(
        r.lines[0].large && r.lines[0].text.contains(HEADER),
        "{text}"
    );
    assert!(text.contains(FOOTER), "{text}");
    assert!(
        line(&r, "卡号 Card").ends_with(&asn(7).to_string()),
        "{text}"
    );
    assert!(line(&r, "油品 Grade").ends_with("92"), "{text}");
    assert!(line(&r, "单价 Price/L").ends_with("7.50"), "{text}");
    assert!(line(&r, "升数 Litres").ends_with("20.000"), "{text}");
    assert!(line(&r, "金额 Amount").ends_with("150.00"), "{text}");
    let balance = r
        .lines
        .iter()
        .find(|l| l.text.starts_with("卡余额 Balance"))
        .unwrap();
    assert!(balance.bold && balance.text.ends_with("350.00"), "{text}");

    let unlocks = ledger(&f.desk, TxnKind::DebitForUnlock);
    let locks = ledger(&f.desk, TxnKind::GreyLock);
    assert_eq!((unlocks.len(), locks.len()), (1, 1));
    assert_eq!(unlocks[0].amount, yuan("150.00"));
    assert_eq!(unlocks[0].balance_after, yuan("350.00"));
    assert_eq!(unlocks[0].terminal, terminal_1());
    assert_eq!(f.rig.slot.remove().balance(), 35_000);
    assert!(f.desk.pending_intents(&asn(7)).unwrap().is_empty());

    assert!(station.reprint().unwrap());
    let again = f.rig.receipt();
    assert!(again.text().contains("重印 REPRINT"), "{}", again.text());
    assert!(line(&again, "金额 Amount").ends_with("150.00"));
    // The pump was reset for the next car.
    wait(&station, "the pump idle", |p| {
        p.state == Some(PointState::Idle)
    });
}

#[test]
fn a_fill_stopped_midway_is_charged_for_what_was_delivered() {
    let (f, station) = fuel();
    authorized(&station);
    f.rig.sim.lift(1).unwrap();
    f.rig.sim.start_flow(4_000);
    wait(&station, "a litre", |p| p.volume.milli() >= 1_000);
    station.stop_fill(1).unwrap();
    let p = wait(&station, "the fill debited", |p| p.fills == 1);
    let delivered = p.volume;
    assert!(delivered.milli() >= 1_000 && delivered.milli() < 20_000);
    assert_eq!(p.amount, yuan("7.50").times_quantity(delivered).unwrap());
    let due = yuan("7.50").times_quantity(delivered).unwrap();
    let unlocks = ledger(&f.desk, TxnKind::DebitForUnlock);
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].amount, due);
    let r = f.rig.receipt();
    assert!(r.text().contains("中途停止 Stopped"), "{}", r.text());
    assert!(line(&r, "金额 Amount").ends_with(&due.to_string()));
    assert_eq!(i64::from(f.rig.slot.remove().balance()), 50_000 - due.fen());
    assert!(
        matches!(station.stop_fill(1), Ok(())),
        "a stop with nothing filling is reported on the board"
    );
    wait(&station, "the refused stop", |p| {
        p.last_error
            .as_ref()
            .is_some_and(|e| e.contains("nothing to stop"))
    });
    assert!(station.stop_fill(2).is_err(), "there is no point 2");
}

#[test]
fn a_pump_fault_mid_fill_is_charged_for_what_was_delivered() {
    let (f, station) = fuel();
    authorized(&station);
    f.rig.sim.lift(1).unwrap();
    f.rig.sim.pump(4_000).unwrap();
    wait(&station, "4 litres", |p| {
        p.volume == Quantity::from_milli(4_000)
    });
    f.rig.sim.fault(0x33);
    wait(&station, "the fill debited", |p| p.fills == 1);
    let unlocks = ledger(&f.desk, TxnKind::DebitForUnlock);
    assert_eq!(unlocks[0].amount, yuan("30.00"));
    let r = f.rig.receipt();
    assert!(
        r.text().contains("油机故障 Pump fault 0x33"),
        "{}",
        r.text()
    );
    assert!(line(&r, "卡余额 Balance").ends_with("470.00"));
    assert_eq!(f.rig.slot.remove().balance(), 47_000);
}

#[test]
fn a_price_change_during_the_fill_applies_from_the_next_fill() {
    let (f, station) = fuel();
    authorized(&station);
    f.rig.sim.lift(1).unwrap();
    f.rig.sim.pump(10_000).unwrap();
    wait(&station, "10 litres", |p| p.volume.milli() == 10_000);
    // HQ reprices 92 while the nozzle is out; the price reaches the station.
    price(&f.net.hq, "92", 799);
    deliver(&f.net.hq, &f.desk);
    f.rig.sim.pump(10_000).unwrap();
    let live = wait(&station, "20 litres", |p| p.volume.milli() == 20_000);
    assert_eq!(live.amount, yuan("150.00"), "the live amount keeps 7.50");
    f.rig.sim.hang_up().unwrap();
    wait(&station, "the fill debited", |p| p.fills == 1);
    assert_eq!(
        ledger(&f.desk, TxnKind::DebitForUnlock)[0].amount,
        yuan("150.00")
    );
    assert!(line(&f.rig.receipt(), "单价 Price/L").ends_with("7.50"));

    // The next car is authorized, and charged, at the new price.
    let chip = f.rig.slot.remove();
    wait(&station, "the card gone", |p| p.card.is_none());
    f.rig.slot.insert(chip);
    wait(&station, "the second authorization", |p| {
        p.stage == Stage::Fuelling && p.volume.milli() == 0
    });
    f.rig.sim.lift(1).unwrap();
    f.rig.sim.pump(10_000).unwrap();
    f.rig.sim.hang_up().unwrap();
    wait(&station, "the second fill debited", |p| p.fills == 2);
    let unlocks = ledger(&f.desk, TxnKind::DebitForUnlock);
    assert_eq!(unlocks[1].amount, yuan("79.90"));
    let r = f.rig.receipt();
    assert!(line(&r, "单价 Price/L").ends_with("7.99"));
    assert!(line(&r, "卡余额 Balance").ends_with("270.10"));
}

#[test]
fn a_card_pulled_before_its_debit_is_debited_when_it_comes_back() {
    let (f, station) = fuel();
    authorized(&station);
    f.rig.sim.lift(2).unwrap();
    f.rig.sim.pump(10_000).unwrap();
    wait(&station, "10 litres", |p| p.volume.milli() == 10_000);
    let chip = f.rig.slot.remove();
    f.rig.sim.hang_up().unwrap();
    let p = wait(&station, "the debit deferred", |p| p.fills == 1);
    let why = p.last_error.unwrap();
    assert!(
        why.contains("waits for the card") && why.contains("81.00"),
        "{why}"
    );
    let r = f.rig.receipt();
    assert!(
        line(&r, "待扣款 Debit pending").ends_with("81.00"),
        "{}",
        r.text()
    );
    assert!(
        !r.text().contains("卡余额"),
        "no balance: the card was not debited"
    );
    let pending = f.desk.pending_intents(&asn(7)).unwrap();
    assert_eq!(pending.len(), 1);
    assert!(
        matches!(&pending[0].body, Body::Intent(t) if t.kind == TxnKind::DebitForUnlock && t.amount == yuan("81.00"))
    );
    assert!(ledger(&f.desk, TxnKind::DebitForUnlock).is_empty());

    // The card comes back: still locked, it is debited first.
    wait(&station, "the card seen gone", |p| p.card.is_none());
    f.rig.slot.insert(chip);
    wait(&station, "the deferred debit", |p| p.fills == 2);
    let r = f.rig.receipt();
    assert!(
        line(&r, "补扣 Deferred debit").ends_with("81.00"),
        "{}",
        r.text()
    );
    assert!(line(&r, "卡余额 Balance").ends_with("419.00"));
    assert!(!f.rig.slot.card_locked());
    assert_eq!(f.rig.slot.remove().balance(), 41_900);
    assert!(f.desk.pending_intents(&asn(7)).unwrap().is_empty());
    let unlocks = ledger(&f.desk, TxnKind::DebitForUnlock);
    assert_eq!(unlocks.len(), 1);
    assert_eq!(unlocks[0].amount, yuan("81.00"));
}

#[test]
fn a_blacklisted_card_is_refused_before_anything_is_locked_or_pumped() {
    use cardmesh_model::body::{BlacklistEvent, BlockReason};
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let chip = loaded_card(&net, &desk, 7, "500");
    net.hq
        .append_local(Body::Blacklist(BlacklistEvent::Block {
            asn: asn(7),
            reason: BlockReason::Lost,
            operator: None,
        }))
        .unwrap();
    deliver(&net.hq, &desk);
    login(&desk, &key, terminal_1(), CASHIER_1);
    let rig = Rig::new(net.tmp.path(), "st1", terminal_1());
    let station = rig.start(&desk, &key);
    rig.slot.insert(chip);
    let p = wait(&station, "the refusal", |p| p.last_error.is_some());
    assert!(p.last_error.unwrap().contains("blacklisted"));
    assert_eq!(p.stage, Stage::WaitingForCard);
    assert_ne!(rig.sim.status().state, PointState::Authorized);
    assert!(ledger(&desk, TxnKind::GreyLock).is_empty());
    assert_eq!(rig.slot.remove().balance(), 50_000);
}

#[test]
fn a_customer_preset_caps_the_grey_lock_and_the_fill() {
    let (net, desk) = fuel_net();
    let key = net.desk_key();
    let chip = loaded_card(&net, &desk, 7, "500");
    login(&desk, &key, terminal_1(), CASHIER_1);
    let rig = Rig::new(net.tmp.path(), "st1", terminal_1());
    let station = rig.start(&desk, &key);
    station.preset(1, yuan("20.00")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    rig.slot.insert(chip);
    authorized(&station);
    rig.sim.lift(1).unwrap();
    // The pump stops itself at 20.00: 2.667 litres at 7.50.
    rig.sim.start_flow(20_000);
    let p = wait(&station, "the fill debited", |p| p.fills == 1);
    assert_eq!(p.volume, Quantity::from_milli(2_667));
    assert_eq!(
        ledger(&desk, TxnKind::DebitForUnlock)[0].amount,
        yuan("20.00")
    );
    assert!(line(&rig.receipt(), "卡余额 Balance").ends_with("480.00"));
    assert!(
        station.preset(2, yuan("1.00")).is_err(),
        "there is no point 2"
    );
}

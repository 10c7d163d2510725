//! The console's card desk on the demo network, through the same `Nodes` calls the
//! Cards screen makes: a card reported lost is replaced from its ledger, and a card is
//! handed back for its balance and deposit in cash.

use cardmesh_drivers::card::VirtualCard;
use cardmesh_model::{CardAsn, Money};
use cardmesh_node::demo;
use cardmesh_node::store::SystemClock;
use cardmesh_tui::nodes::Nodes;
use std::sync::Arc;

fn asn(n: u8) -> CardAsn {
    CardAsn([0x10, 0, 0, 0, 0, 0, 0, n])
}

#[test]
fn the_console_replaces_a_lost_card_and_takes_a_card_back() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    let cluster = demo::create(&root, Arc::new(SystemClock)).unwrap();
    let chip = |n: u8| VirtualCard::open(&root.join("wallet").join(format!("{}.card", asn(n))));
    let hq = 0;
    cluster.login(hq, "hq-admin", "9999").unwrap();

    // Card 3 was reported lost at shop-1: its balance is what the ledger says.
    let lost = cluster.card(hq, asn(3), false).unwrap();
    assert!(lost.blocked);
    let on_lost_chip = Money::from_fen(chip(3).unwrap().balance().into());
    let said = cluster.replace_card(hq, asn(3), asn(7), "123456").unwrap();
    assert!(said.contains("from its ledger"), "{said}");
    assert!(said.contains(&on_lost_chip.to_string()), "{said}");
    assert_eq!(
        Money::from_fen(chip(7).unwrap().balance().into()),
        on_lost_chip
    );
    let new = cluster.card(hq, asn(7), true).unwrap();
    assert!(!new.blocked);
    assert_eq!(new.balance, Some(on_lost_chip));

    assert!(
        cluster.replace_card(hq, asn(2), asn(7), "123456").is_err(),
        "a card already issued cannot be the new card"
    );

    let balance = Money::from_fen(chip(2).unwrap().balance().into());
    let said = cluster.return_card(hq, asn(2)).unwrap();
    assert!(said.contains(&format!("balance {balance}")), "{said}");
    assert_eq!(chip(2).unwrap().balance(), 0);
    let returned = cluster.card(hq, asn(2), false).unwrap();
    assert!(returned.status.contains("returned"), "{}", returned.status);
    assert!(
        cluster.card(hq, asn(2), true).is_err(),
        "its chip is blocked: the reader refuses it"
    );
}

#[test]
fn the_demo_station_serves_its_customer_at_the_pump() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("demo");
    let cluster = demo::create(&root, Arc::new(SystemClock)).unwrap();
    let fleet = root.join("forecourt").join("fleet.card");
    let before = VirtualCard::open(&fleet).unwrap().balance();
    let station = 3;
    cluster.login(station, "fuel-cash", "1111").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let receipts = root.join("forecourt").join("receipts.txt");
    while !receipts.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no fill within 90 s; the pump: {:?}",
            cluster.dashboard(station).map(|d| d.pumps)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let pumps = cluster.dashboard(station).unwrap().pumps;
    assert_eq!(pumps.len(), 1, "{pumps:?}");
    assert!(pumps[0].contains("000000000203"), "{pumps:?}");
    drop(cluster);
    let after = VirtualCard::open(&fleet).unwrap().balance();
    assert!(after < before, "the fill was debited: {before} -> {after}");
    // A visit cut short when the demo stops may leave a debit without a receipt, never
    // a receipt without its debit.
    let printed = std::fs::read_to_string(&receipts).unwrap();
    let on_receipts: i64 = printed
        .lines()
        .filter(|l| l.starts_with("金额 Amount"))
        .map(|l| {
            let yuan: Money = l.split_whitespace().last().unwrap().parse().unwrap();
            yuan.fen()
        })
        .sum();
    assert!(on_receipts > 0, "no amount on\n{printed}");
    assert!(
        on_receipts <= i64::from(before - after),
        "receipts say {on_receipts} fen, the card paid {}\n{printed}",
        before - after
    );
}

#[test]
fn the_demo_managers_operator_card_logs_in_and_a_customer_card_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let cluster = demo::create(&tmp.path().join("demo"), Arc::new(SystemClock)).unwrap();
    let shop = 1;
    let err = cluster.login_card(shop, asn(1), "123456").unwrap_err();
    assert!(err.to_string().contains("not an operator card"), "{err}");
    let err = cluster.login_card(shop, asn(9), "000000").unwrap_err();
    assert!(err.to_string().to_lowercase().contains("pin"), "{err}");
    let op = cluster.login_card(shop, asn(9), "123456").unwrap();
    assert_eq!((op.id.as_str(), op.role.as_str()), ("shop1-mgr", "manager"));
}

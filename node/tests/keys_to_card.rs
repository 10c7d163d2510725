//! From the key ceremony to a verified sale: HQ derives the master keys, personalizes a
//! card, a store imports its share and sells to the card with its software SAM, and HQ
//! verifies the card's TAC with the TAC key nobody else holds.

use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto::{debit_tac, mac_eq};
use cardmesh_drivers::epurse::{EPurse, LoadKey};
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::{Asn, BcdDateTime, Pin, TerminalId as CardTerminalId};
use cardmesh_model::{Role, TerminalId};
use cardmesh_node::identity::{self, DataDir};
use cardmesh_node::keys;
use cardmesh_node::sam::software_sam;
use cardmesh_node::store::{Clock, SystemClock};
use std::sync::Arc;

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[test]
fn a_store_sells_with_imported_keys_and_hq_verifies_the_tac() {
    let tmp = tempfile::tempdir().unwrap();
    let (hq_dir, shop_dir) = (
        DataDir::new(tmp.path().join("hq")),
        DataDir::new(tmp.path().join("shop")),
    );
    let hq = identity::init_hq(&hq_dir, "chain", clock()).unwrap();
    let request =
        std::fs::read(identity::init_site(&shop_dir, "till", clock().as_ref()).unwrap()).unwrap();
    let package = identity::enroll(
        &hq,
        &hq_dir,
        &request,
        "shop-1".parse().unwrap(),
        Role::Store,
        clock().as_ref(),
    )
    .unwrap();
    let shop = identity::join(&shop_dir, &package, clock()).unwrap();

    let a = keys::parse_component("0123456789ABCDEFFEDCBA9876543210").unwrap();
    let b = keys::parse_component("1111111111111111222222222222222F").unwrap();
    keys::ceremony(&hq, &a, &b).unwrap();
    let hq_key = identity::load_key(&hq_dir).unwrap();
    let shop_key = identity::load_key(&shop_dir).unwrap();
    let exported = keys::export(&hq, &hq_key, &shop.node_id()).unwrap();
    assert_eq!(
        keys::import(&shop, &shop_key, &exported).unwrap(),
        vec!["purchase", "maintenance"]
    );

    // HQ personalizes and loads a card with its master keys.
    let hq_keys = keys::held(&hq, &hq_key).unwrap();
    let masters_tac = hq_keys.tac().unwrap();
    let asn = Asn::parse("1000000000000001").unwrap();
    let masters = hq_keys.masters().expect("HQ holds every master key");
    assert!(
        keys::held(&shop, &shop_key).unwrap().masters().is_none(),
        "a store holds only its share"
    );
    let card_keys = masters.card_keys(&asn);
    let card = VirtualCard::new(Personalization {
        asn,
        keys: card_keys,
        pin: Pin::parse("123456").unwrap(),
        issue_date: [0x20, 0x26, 0x01, 0x01],
        expiry: [0x20, 0x31, 0x12, 0x31],
        card_class: 1,
        max_balance: 500_000,
    });
    let mut purse = EPurse::new(MemoryReader::new(card));
    purse.select().unwrap();
    let hq_terminal = CardTerminalId::parse("000000000001").unwrap();
    let now = BcdDateTime::new(2026, 11, 21, 10, 0, 0).unwrap();
    purse.verify_pin(&Pin::parse("123456").unwrap()).unwrap();
    purse
        .load(
            &LoadKey::new(hq_keys.load().unwrap()),
            hq_terminal,
            10_000,
            now,
        )
        .unwrap();

    // The store sells 12.50 with its own SAM; two sales use two sequence numbers.
    let terminal: TerminalId = "000000000101".parse().unwrap();
    let mut sam = software_sam(&shop, &shop_key, terminal).unwrap();
    let first = purse.purchase(&mut sam, 1250, now).unwrap();
    let second = purse.purchase(&mut sam, 100, now).unwrap();
    assert_eq!((first.balance_before, first.balance_after), (10_000, 8_750));
    assert_eq!(second.balance_after, 8_650);
    assert!(second.term_seq > first.term_seq);

    // Only the TAC key verifies the card's TAC; a tampered amount does not verify.
    let dtk = masters_tac.diversify(&asn);
    let tac = debit_tac(
        &dtk,
        first.amount,
        TxType::Purchase,
        &first.terminal,
        first.term_seq,
        &first.datetime,
    );
    assert!(mac_eq(&tac, &first.tac));
    let forged = debit_tac(
        &dtk,
        first.amount + 1,
        TxType::Purchase,
        &first.terminal,
        first.term_seq,
        &first.datetime,
    );
    assert!(!mac_eq(&forged, &first.tac));

    // A reopened store continues the terminal sequence; it never reuses one.
    drop(sam);
    let mut sam = software_sam(&shop, &shop_key, terminal).unwrap();
    let third = purse.purchase(&mut sam, 1, now).unwrap();
    assert!(third.term_seq > second.term_seq);
}

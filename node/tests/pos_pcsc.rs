//! The POS through real pcscd: the card and a PSAM are virtual chips in the two vpcd
//! slots, reached through PC/SC like physical readers. Load, purchase signed by the
//! PSAM, grey lock and unlock, a card reported lost that is refused and blocked, and a
//! blank chip personalized (primary issue) and then used.

mod pos_support;

use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::psam::VirtualPsam;
use cardmesh_drivers::reader::CardReader;
use cardmesh_drivers::reader::pcsc::PcscReader;
use cardmesh_drivers::sam::PsamClient;
use cardmesh_drivers::types::{Pin, TerminalId as CardTerminalId};
use cardmesh_drivers::vpcd::{
    CARD_READER_NAME, CARD_SLOT, PSAM_READER_NAME, PSAM_SLOT, VpcdBridge, VpcdSlots,
};
use cardmesh_model::body::{Body, TxnKind};
use cardmesh_model::{CardAsn, Quantity};
use cardmesh_node::keys;
use cardmesh_node::pos::{BasketLine, Pos, PosError};
use pos_support::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn reader(name: &str) -> PcscReader {
    let mut r = PcscReader::open(name).unwrap();
    r.wait_for_removal(WAIT).unwrap();
    r
}

#[test]
fn purchase_load_grey_lock_and_lost_card_through_pcscd() {
    let Some(_slots) = VpcdSlots::for_test() else {
        return;
    };
    let net = Net::create();
    let store = net.desk();
    let pos = Pos::open(&store, &net.desk_key(), terminal(), clock()).unwrap();
    pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
    let purchase_key = keys::held(&store, &net.desk_key())
        .unwrap()
        .purchase()
        .unwrap();

    let mut card_reader = reader(CARD_READER_NAME);
    let mut psam_reader = reader(PSAM_READER_NAME);
    let chip = net.chip(&store, 30, true, [0x20, 0x31, 0x12, 0x31]);
    let inserted = VpcdBridge::insert(chip, CARD_SLOT).unwrap();
    let psam = VpcdBridge::insert(
        VirtualPsam::new(CardTerminalId(terminal().0), purchase_key),
        PSAM_SLOT,
    )
    .unwrap();
    card_reader.wait_for_card(WAIT).unwrap();
    psam_reader.wait_for_card(WAIT).unwrap();
    let mut purse = EPurse::new(card_reader);
    let mut sam = PsamClient::new(psam_reader);

    pos.load(
        &mut purse,
        "200".parse().unwrap(),
        &Pin::parse(CARD_PIN).unwrap(),
    )
    .unwrap();
    let basket = [BasketLine {
        product: "ticket".parse().unwrap(),
        quantity: Quantity::pieces(2),
    }];
    let sale = pos.purchase(&mut purse, &mut sam, &basket, None).unwrap();
    assert_eq!(sale.txn.balance_after.fen(), 20_000 - 9_000);
    assert_eq!(purse.balance().unwrap(), 11_000);

    let lock = pos.grey_lock(&mut purse, &mut sam).unwrap();
    assert_eq!(lock.txn.kind, TxnKind::GreyLock);
    let refused = pos
        .purchase(&mut purse, &mut sam, &basket, None)
        .unwrap_err();
    assert!(
        matches!(refused, PosError::Card(EpurseError::GreyLocked { .. })),
        "{refused}"
    );
    let fuel = pos
        .unlock(&mut purse, &mut sam, Some("45.67".parse().unwrap()))
        .unwrap();
    assert_eq!(fuel.txn.refers_to, Some(lock.entry));
    assert_eq!(purse.balance().unwrap(), 11_000 - 4_567);

    let asn = CardAsn(card(30).0);
    pos.report_lost(asn).unwrap();
    let err = pos
        .purchase(&mut purse, &mut sam, &basket, None)
        .unwrap_err();
    assert!(matches!(err, PosError::Blacklisted(_)), "{err}");
    assert!(matches!(
        purse.select(),
        Err(EpurseError::ApplicationBlocked { .. })
    ));
    let kinds: Vec<TxnKind> = store
        .card_history(&asn)
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.body {
            Body::Card(t) => Some(t.kind),
            _ => None,
        })
        .collect();
    assert_eq!(
        kinds,
        [
            TxnKind::Load,
            TxnKind::Purchase,
            TxnKind::GreyLock,
            TxnKind::DebitForUnlock
        ]
    );
    drop(purse);
    drop(sam);
    inserted.remove();
    psam.remove();
}

/// Primary issue through pcscd: a blank chip file in the card slot, refused with a
/// wrong batch key (still blank), personalized at HQ with the right one, then sold,
/// loaded and spent at the desk; the chip's file holds the card afterwards.
#[test]
fn blank_card_is_personalized_then_sold_loaded_and_spent_through_pcscd() {
    use cardmesh_drivers::card::VirtualCard;
    use cardmesh_drivers::crypto::Key16;
    use cardmesh_drivers::perso::TransportKey;
    use cardmesh_drivers::types::ChipSerial;
    use cardmesh_node::pos::CardOrder;
    use cardmesh_node::sam::software_sam;
    let Some(_slots) = VpcdSlots::for_test() else {
        return;
    };
    let net = Net::create();
    let serial = ChipSerial([0xC0, 0xFF, 0xEE, 0, 0, 0, 0, 0x40]);
    let batch = TransportKey::new(Key16::from_bytes(*b"batch-2026-11-tk"));
    let path = net.path("blank.card");
    VirtualCard::create_blank(&path, serial, batch.for_chip(&serial)).unwrap();
    let mut card_reader = reader(CARD_READER_NAME);
    let inserted = VpcdBridge::insert(VirtualCard::open(&path).unwrap(), CARD_SLOT).unwrap();
    card_reader.wait_for_card(WAIT).unwrap();
    let mut purse = EPurse::new(card_reader);
    let order = CardOrder {
        class: "standard".parse().unwrap(),
        expiry: cardmesh_model::BusinessDay {
            year: 2031,
            month: 12,
            day: 31,
        },
        pin: Pin::parse(CARD_PIN).unwrap(),
    };
    let hq_terminal = HQ_TERMINAL.parse().unwrap();

    let other_batch = TransportKey::new(Key16::from_bytes([0x42; 16]));
    keys::import_transport(&net.hq, &net.hq_key(), &other_batch).unwrap();
    let hq = Pos::open(&net.hq, &net.hq_key(), hq_terminal, clock()).unwrap();
    hq.login(&"hq-admin".parse().unwrap(), "9999").unwrap();
    let err = hq.personalize(&mut purse, &order).unwrap_err();
    assert!(
        matches!(
            err,
            PosError::Card(EpurseError::WrongTransportKey { tries_left: 2 })
        ),
        "{err}"
    );
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));

    keys::import_transport(&net.hq, &net.hq_key(), &batch).unwrap();
    let hq = Pos::open(&net.hq, &net.hq_key(), hq_terminal, clock()).unwrap();
    let done = hq.personalize(&mut purse, &order).unwrap();
    assert_eq!(purse.select().unwrap().asn.0, done.asn.0);

    let desk = net.desk();
    deliver(&net.hq, &desk);
    let pos = Pos::open(&desk, &net.desk_key(), terminal(), clock()).unwrap();
    pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
    pos.issue(&mut purse, None, "20".parse().unwrap()).unwrap();
    pos.load(
        &mut purse,
        "50".parse().unwrap(),
        &Pin::parse(CARD_PIN).unwrap(),
    )
    .unwrap();
    let mut sam = software_sam(&desk, &net.desk_key(), terminal()).unwrap();
    let basket = [BasketLine {
        product: "cola".parse().unwrap(),
        quantity: Quantity::pieces(1),
    }];
    pos.purchase(&mut purse, &mut sam, &basket, None).unwrap();
    assert_eq!(purse.balance().unwrap(), 5_000 - 300);
    drop(purse);
    inserted.remove();
    let chip = VirtualCard::open(&path).unwrap();
    assert_eq!(chip.asn().map(|a| a.0), Some(done.asn.0));
    assert_eq!(chip.balance(), 4_700);
}

/// `cardmesh run`'s console sells to whatever card is on the node's PC/SC reader: the
/// Cards and Sell screens list that card while it is there, and nothing once it is gone.
#[test]
fn the_console_of_a_running_node_serves_the_card_on_its_reader() {
    use cardmesh_node::config::NodeConfig;
    use cardmesh_node::handle::Running;
    use cardmesh_tui::nodes::Nodes;
    let Some(_slots) = VpcdSlots::for_test() else {
        return;
    };
    let net = Net::create();
    let store = net.desk();
    let chip = net.chip(&store, 31, true, [0x20, 0x31, 0x12, 0x31]);
    drop(store);
    let config = NodeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..NodeConfig::default()
    };
    let running = Running::start(&net.desk_dir, config, clock()).unwrap();
    running.login(0, "admin-1", "5555").unwrap();
    let within = |what: &str, done: &dyn Fn(usize) -> bool| {
        let deadline = std::time::Instant::now() + WAIT;
        while !done(running.wallet(0).unwrap().len()) {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // As in the test above: pcscd has seen the last test's card leave before this one
    // comes (vpcd serves one card connection at a time).
    drop(reader(CARD_READER_NAME));
    assert_eq!(
        running.wallet(0).unwrap(),
        vec![],
        "no card on the reader yet"
    );
    let inserted = VpcdBridge::insert(chip, CARD_SLOT).unwrap();
    within("the card on the reader was never listed", &|n| n == 1);
    let listed = running.wallet(0).unwrap().remove(0);
    assert_eq!(listed.asn, CardAsn(card(31).0));
    assert!(listed.label.contains("on the reader"), "{}", listed.label);
    let details = running.card(0, listed.asn, true).unwrap();
    assert_eq!(details.balance, Some(cardmesh_model::Money::ZERO));
    drop(inserted.remove());
    // Waits for pcscd to see the slot empty, without the console touching the reader
    // while the card goes (vpcd then misses the next card: the test after this one).
    drop(reader(CARD_READER_NAME));
    assert_eq!(
        running.wallet(0).unwrap(),
        vec![],
        "the card taken away is not listed"
    );
}

//! End-to-end through real pcscd + vpcd: the virtual card in slot 00 00, the virtual
//! PSAM in slot 00 01, the node's side through the `pcsc` crate.
//!
//! Needs `pcscd` running with `vsmartcard-vpcd`. Without it these tests print a line
//! and pass, unless `CARDMESH_REQUIRE_HW` is set, in which case they fail. There is one
//! pcscd per machine and the vpcd ports are fixed, so the tests take a machine-wide lock
//! ([`VpcdSlots`]).

mod common;

use std::time::Duration;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::psam::VirtualPsam;
use cardmesh_drivers::reader::pcsc::PcscReader;
use cardmesh_drivers::reader::{CardReader, ReaderError};
use cardmesh_drivers::sam::PsamClient;
use cardmesh_drivers::types::Pin;
use cardmesh_drivers::vpcd::{
    CARD_READER_NAME, CARD_SLOT, PSAM_READER_NAME, PSAM_SLOT, VpcdBridge, VpcdSlots,
};
use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// The vpcd slots (a lock shared with every other process), or `None` to skip.
fn slots() -> Option<VpcdSlots> {
    VpcdSlots::for_test()
}

/// Opens a reader and makes sure its slot is empty before the test inserts anything.
fn empty_reader(name: &str) -> PcscReader {
    let mut r = PcscReader::open(name).unwrap();
    r.wait_for_removal(WAIT).unwrap();
    r
}

#[test]
fn load_and_purchase_through_pcscd_with_the_psam_in_the_second_slot() {
    let Some(_slots) = slots() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mk = master_keys();
    let mut card_reader = empty_reader(CARD_READER_NAME);
    let mut psam_reader = empty_reader(PSAM_READER_NAME);

    let card_file = dir.path().join("card.bin");
    let card = VirtualCard::create(&card_file, personalization(&mk)).unwrap();
    let psam = VirtualPsam::create(
        &dir.path().join("psam.bin"),
        terminal(),
        mk.purchase.clone(),
    )
    .unwrap();
    let card_bridge = VpcdBridge::insert(card, CARD_SLOT).unwrap();
    let psam_bridge = VpcdBridge::insert(psam, PSAM_SLOT).unwrap();
    card_reader.wait_for_card(WAIT).unwrap();
    psam_reader.wait_for_card(WAIT).unwrap();

    let mut sam = PsamClient::new(&mut psam_reader);
    let mut purse = EPurse::new(&mut card_reader);
    assert_eq!(purse.select().unwrap().asn, asn());
    purse.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
    let l = purse.load(&load_key(&mk), terminal(), 5000, now()).unwrap();
    assert_eq!(l.balance_after, 5000);
    let p = purse.purchase(&mut sam, 1234, now()).unwrap();
    assert_eq!(
        (p.balance_before, p.balance_after, p.term_seq),
        (5000, 3766, 1)
    );
    assert_eq!(purse.balance().unwrap(), 3766);

    let card = card_bridge.remove();
    let psam = psam_bridge.remove();
    card_reader.wait_for_removal(WAIT).unwrap();
    psam_reader.wait_for_removal(WAIT).unwrap();
    assert_eq!(card.balance(), 3766);
    assert_eq!(psam.last_seq(), 1);
    assert_eq!(
        VirtualCard::open(&card_file).unwrap().balance(),
        3766,
        "state written through"
    );
}

#[test]
fn wrong_pin_through_pcscd_reports_tries_left() {
    let Some(_slots) = slots() else { return };
    let mut reader = empty_reader(CARD_READER_NAME);
    let bridge = VpcdBridge::insert(card(), CARD_SLOT).unwrap();
    reader.wait_for_card(WAIT).unwrap();
    let mut purse = EPurse::new(&mut reader);
    purse.select().unwrap();
    let e = purse
        .verify_pin(&Pin::parse("000000").unwrap())
        .unwrap_err();
    assert!(
        matches!(e, EpurseError::WrongPin { tries_left: 2 }),
        "{e:?}"
    );
    drop(bridge);
    reader.wait_for_removal(WAIT).unwrap();
}

#[test]
fn card_removed_is_a_typed_error_and_the_carried_card_comes_back_with_its_balance() {
    let Some(_slots) = slots() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.bin");
    let mut reader = empty_reader(CARD_READER_NAME);
    let bridge = VpcdBridge::insert(
        VirtualCard::create(&file, personalization(&master_keys())).unwrap(),
        CARD_SLOT,
    )
    .unwrap();
    reader.wait_for_card(WAIT).unwrap();
    {
        let mut purse = EPurse::new(&mut reader);
        purse.select().unwrap();
        purse.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
        purse
            .load(&load_key(&master_keys()), terminal(), 900, now())
            .unwrap();
    }
    drop(bridge);
    let e = EPurse::new(&mut reader).select().unwrap_err();
    assert!(
        matches!(
            e,
            EpurseError::Reader(ReaderError::CardRemoved | ReaderError::NoCard)
        ),
        "{e:?}"
    );
    reader.wait_for_removal(WAIT).unwrap();
    assert!(matches!(
        reader.wait_for_card(Duration::from_millis(300)),
        Err(ReaderError::Timeout)
    ));

    // The card is carried to another node: its file is all there is.
    let bridge = VpcdBridge::insert(VirtualCard::open(&file).unwrap(), CARD_SLOT).unwrap();
    reader.wait_for_card(WAIT).unwrap();
    let mut purse = EPurse::new(&mut reader);
    purse.select().unwrap();
    assert_eq!(purse.balance().unwrap(), 900);
    drop(bridge);
    reader.wait_for_removal(WAIT).unwrap();
}

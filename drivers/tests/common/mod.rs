//! Test fixtures shared by the integration tests: a key set, a personalized card, a
//! software SAM and raw-APDU helpers.
#![allow(dead_code)] // each test binary uses a different subset of the fixtures

use cardmesh_drivers::apdu::{ApduProcessor, Response};
use cardmesh_drivers::card::{Personalization, VirtualCard};
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::epurse::{LoadKey, MaintenanceKey, PinUnblockKey};
use cardmesh_drivers::keys::{KeyComponent, MasterKeys, combine};
use cardmesh_drivers::sam::{MemorySeqStore, SoftwareSam};
use cardmesh_drivers::types::{Asn, BcdDateTime, Pin, TerminalId};

pub const PIN: &str = "123456";
/// 100,000.00 yuan in fen.
pub const MAX_BALANCE: u32 = 10_000_000;

pub fn master_keys() -> MasterKeys {
    let a = KeyComponent::from_bytes([0x11; 16]);
    let b = KeyComponent::from_bytes(*b"cardmesh-testkey");
    MasterKeys::derive(&combine(&a, &b))
}

pub fn asn() -> Asn {
    Asn::parse("3100000000000042").unwrap()
}

pub fn terminal() -> TerminalId {
    TerminalId::parse("112233445566").unwrap()
}

pub fn other_terminal() -> TerminalId {
    TerminalId::parse("990000000001").unwrap()
}

pub fn now() -> BcdDateTime {
    BcdDateTime::new(2025, 3, 1, 12, 34, 56).unwrap()
}

pub fn personalization(mk: &MasterKeys) -> Personalization {
    Personalization {
        asn: asn(),
        keys: mk.card_keys(&asn()),
        pin: Pin::parse(PIN).unwrap(),
        issue_date: [0x20, 0x25, 0x01, 0x01],
        expiry: [0x20, 0x30, 0x12, 0x31],
        card_class: 0x01,
        max_balance: MAX_BALANCE,
    }
}

pub fn card() -> VirtualCard {
    VirtualCard::new(personalization(&master_keys()))
}

pub fn sam(mk: &MasterKeys) -> SoftwareSam<MemorySeqStore> {
    SoftwareSam::new(terminal(), mk.purchase.clone(), MemorySeqStore::default())
}

pub fn load_key(mk: &MasterKeys) -> LoadKey {
    LoadKey::new(mk.load.clone())
}

pub fn maintenance_key(mk: &MasterKeys) -> MaintenanceKey {
    MaintenanceKey::new(mk.maintenance.clone())
}

pub fn pin_unblock_key(mk: &MasterKeys) -> PinUnblockKey {
    PinUnblockKey::new(mk.pin_unblock.clone())
}

pub fn wrong_key() -> Key16 {
    Key16::from_bytes([0x5A; 16])
}

/// Sends a hex APDU (spaces allowed) and returns (data, SW).
pub fn send(chip: &mut impl ApduProcessor, hex: &str) -> (Vec<u8>, u16) {
    send_bytes(chip, &unhex(hex))
}

pub fn send_bytes(chip: &mut impl ApduProcessor, apdu: &[u8]) -> (Vec<u8>, u16) {
    let r = Response::parse(&chip.process(apdu)).expect("a chip always answers with a status word");
    (r.data, r.sw)
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub const SELECT: &str = "00A4040007 D156000001 4550";

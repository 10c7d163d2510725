//! Blank chips and their personalization (primary issue): the blank card's state
//! machine driven with raw APDUs, and the issuer's side (`EPurse::personalize`) ending
//! in the very card a `Personalization` makes.

mod common;

use cardmesh_drivers::apdu::{ApduProcessor, build};
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::constants::sw;
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::epurse::{EPurse, EpurseError};
use cardmesh_drivers::perso::{
    KeyType, TransportKey, WRITTEN_ALL, auth_cryptogram, keys_by_type, sm_mac, transport_key,
    wrap_key,
};
use cardmesh_drivers::reader::MemoryReader;
use cardmesh_drivers::types::{ChipSerial, Pin};
use common::*;

fn transport_master() -> Key16 {
    Key16::from_bytes(*b"manufacturer-tmk")
}

fn serial() -> ChipSerial {
    ChipSerial::parse("C0FFEE0000000001").unwrap()
}

fn tk() -> Key16 {
    transport_key(&transport_master(), &serial())
}

fn blank() -> VirtualCard {
    let mut c = VirtualCard::blank(serial(), tk());
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    c
}

fn challenge(c: &mut VirtualCard) -> [u8; 4] {
    let (d, s) = send(c, "0084000004");
    assert_eq!(s, sw::OK);
    d.try_into().unwrap()
}

fn authenticate(c: &mut VirtualCard, key: &Key16) -> u16 {
    let ch = challenge(c);
    send_bytes(
        c,
        &build(0x00, 0x82, 0x00, 0x00, &auth_cryptogram(key, ch), None),
    )
    .1
}

/// Sends `header data MAC` after a fresh challenge; `tamper` flips a MAC bit.
fn secure(c: &mut VirtualCard, header: [u8; 4], data: &[u8], tamper: bool) -> u16 {
    let ch = challenge(c);
    let mut mac = sm_mac(&tk(), ch, header, data);
    if tamper {
        mac.0[3] ^= 1;
    }
    let [cla, ins, p1, p2] = header;
    send_bytes(c, &build(cla, ins, p1, p2, &[data, &mac.0].concat(), None)).1
}

fn write_key(c: &mut VirtualCard, t: KeyType, value: &[u8]) -> u16 {
    secure(
        c,
        [0x84, 0xD4, 0x00, t.code()],
        &wrap_key(&tk(), value),
        false,
    )
}

fn end(c: &mut VirtualCard) -> u16 {
    secure(c, [0x84, 0xF0, 0x40, 0x0F], &[], false)
}

/// life cycle, tries left, written bits.
fn status(c: &mut VirtualCard) -> (u8, u8, u8) {
    let (d, s) = send(c, "80CADF010B");
    assert_eq!(s, sw::OK);
    assert_eq!(&d[1..9], &serial().0);
    (d[0], d[9], d[10])
}

/// Writes everything through raw APDUs, as `personalization()` would make the card.
fn write_all(c: &mut VirtualCard) {
    let p = personalization(&master_keys());
    for (t, k) in keys_by_type(&p.keys) {
        assert_eq!(write_key(c, t, k.expose_secret()), sw::OK, "{t:?}");
    }
    assert_eq!(write_key(c, KeyType::Pin, &p.pin.to_bcd()), sw::OK);
    assert_eq!(
        secure(c, [0x04, 0xD6, 0x95, 0x00], &issuer_file(), false),
        sw::OK
    );
    assert_eq!(
        secure(
            c,
            [0x04, 0xD6, 0x99, 0x00],
            &MAX_BALANCE.to_be_bytes(),
            false
        ),
        sw::OK
    );
}

fn issuer_file() -> Vec<u8> {
    let p = personalization(&master_keys());
    let mut f = vec![0u8; 30];
    f[8] = 0x02;
    f[9] = 0x01;
    f[12..20].copy_from_slice(&p.asn.0);
    f[20..24].copy_from_slice(&p.issue_date);
    f[24..28].copy_from_slice(&p.expiry);
    f[28] = p.card_class;
    f
}

#[test]
fn blank_card_refuses_every_money_command_until_personalized() {
    let mut c = VirtualCard::blank(serial(), tk());
    assert_eq!(send(&mut c, "805C000204").1, sw::CONDITIONS_NOT_SATISFIED);
    let (fci, s) = send(&mut c, SELECT);
    assert_eq!(s, sw::OK);
    assert_eq!(fci, unhex("6F09 8407 D156000001 4550"));
    for apdu in [
        "805C000204",                         // GET BALANCE
        "0020000003123456",                   // VERIFY PIN
        "805000020B 0100000064 112233445566", // INITIALIZE FOR LOAD
        "805001020B 0100000064 112233445566", // INITIALIZE FOR PURCHASE
        "00B2010C00",                         // READ RECORD
        "E0CA00001E",                         // GREY STATUS
        "E07A080207 01112233445566",          // INITIALIZE FOR GREY LOCK
        "805A000202 0000",                    // GET TRANSACTION PROVE
    ] {
        assert_eq!(
            send(&mut c, apdu).1,
            sw::CONDITIONS_NOT_SATISFIED,
            "{apdu} on a blank card"
        );
    }
    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::blank(serial(), tk())));
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));
}

#[test]
fn wrong_transport_cryptograms_count_down_then_lock_the_chip_for_good() {
    let mut c = blank();
    let wrong = wrong_key();
    assert_eq!(status(&mut c), (0x07, 3, 0));
    assert_eq!(authenticate(&mut c, &wrong), 0x63C2);
    assert_eq!(authenticate(&mut c, &tk()), sw::OK, "a right one restores");
    assert_eq!(status(&mut c).1, 3);
    assert_eq!(authenticate(&mut c, &wrong), 0x63C2);
    assert_eq!(authenticate(&mut c, &wrong), 0x63C1);
    assert_eq!(authenticate(&mut c, &wrong), sw::AUTH_BLOCKED);
    assert_eq!(authenticate(&mut c, &tk()), sw::AUTH_BLOCKED);
    assert_eq!(status(&mut c), (0x83, 0, 0));
    assert_eq!(
        write_key(&mut c, KeyType::Purchase, &[1; 16]),
        sw::SECURITY_NOT_SATISFIED
    );
    let p = personalization(&master_keys());
    let mut purse = EPurse::new(MemoryReader::new(c));
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));
    assert!(matches!(
        purse.personalize(&TransportKey::new(transport_master()), &p),
        Err(EpurseError::TransportLocked)
    ));
}

#[test]
fn writes_need_authentication_and_a_fresh_challenge() {
    let mut c = blank();
    assert_eq!(
        write_key(&mut c, KeyType::Load, &[1; 16]),
        sw::SECURITY_NOT_SATISFIED
    );
    assert_eq!(authenticate(&mut c, &tk()), sw::OK);
    let data = [wrap_key(&tk(), &[1; 16]), vec![0; 4]].concat();
    assert_eq!(
        send_bytes(&mut c, &build(0x84, 0xD4, 0x00, 0x3F, &data, None)).1,
        sw::NO_RANDOM
    );
    c.reset();
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    assert_eq!(
        write_key(&mut c, KeyType::Load, &[1; 16]),
        sw::SECURITY_NOT_SATISFIED,
        "authentication is forgotten at reset"
    );
}

#[test]
fn bad_mac_or_bad_content_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.card");
    let mut c = VirtualCard::create_blank(&path, serial(), tk()).unwrap();
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    assert_eq!(authenticate(&mut c, &tk()), sw::OK);
    let on_disk = std::fs::read(&path).unwrap();
    let wrapped = wrap_key(&tk(), &[9; 16]);
    assert_eq!(
        secure(&mut c, [0x84, 0xD4, 0x00, 0x3E], &wrapped, true),
        sw::SM_MAC_INCORRECT
    );
    assert_eq!(
        secure(&mut c, [0x04, 0xD6, 0x95, 0x00], &issuer_file(), true),
        sw::SM_MAC_INCORRECT
    );
    let mut foreign = issuer_file();
    foreign[0] = 0x99;
    assert_eq!(
        secure(&mut c, [0x04, 0xD6, 0x95, 0x00], &foreign, false),
        sw::WRONG_DATA
    );
    assert_eq!(
        write_key(&mut c, KeyType::Purchase, &[9; 8]),
        sw::WRONG_DATA,
        "a key is 16 bytes"
    );
    assert_eq!(
        secure(&mut c, [0x84, 0xD4, 0x00, 0x3E], &[0x55; 24], false),
        sw::WRONG_DATA,
        "not wrapped under the transport key"
    );
    assert_eq!(status(&mut c).2, 0);
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);
}

#[test]
fn end_personalization_is_refused_until_every_key_and_file_is_written() {
    let mut c = blank();
    assert_eq!(authenticate(&mut c, &tk()), sw::OK);
    assert_eq!(end(&mut c), sw::CONDITIONS_NOT_SATISFIED);
    write_all(&mut c);
    assert_eq!(status(&mut c).2, WRITTEN_ALL);
    let mut fresh = blank();
    assert_eq!(authenticate(&mut fresh, &tk()), sw::OK);
    assert_eq!(write_key(&mut fresh, KeyType::Tac, &[3; 16]), sw::OK);
    assert_eq!(end(&mut fresh), sw::CONDITIONS_NOT_SATISFIED);
    assert_eq!(end(&mut c), sw::OK);
    assert_eq!(c.asn(), Some(asn()));
}

#[test]
fn transport_key_is_dead_after_end_and_the_card_works_like_any_other() {
    let mut c = blank();
    assert_eq!(authenticate(&mut c, &tk()), sw::OK);
    write_all(&mut c);
    assert_eq!(end(&mut c), sw::OK);
    assert_ne!(authenticate(&mut c, &tk()), sw::OK);
    assert_ne!(write_key(&mut c, KeyType::Purchase, &[1; 16]), sw::OK);
    assert_ne!(end(&mut c), sw::OK);
    assert_ne!(send(&mut c, "80CADF010B").1, sw::OK);
    let mut purse = EPurse::new(MemoryReader::new(c));
    assert_eq!(purse.select().unwrap().asn, asn());
    purse.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
    let mk = master_keys();
    purse.load(&load_key(&mk), terminal(), 5000, now()).unwrap();
    let r = purse.purchase(&mut sam(&mk), 1200, now()).unwrap();
    assert_eq!(r.balance_after, 3800);
}

#[test]
fn personalized_card_file_is_the_file_a_personalization_makes() {
    let dir = tempfile::tempdir().unwrap();
    let (made, direct) = (dir.path().join("made.card"), dir.path().join("direct.card"));
    VirtualCard::create_blank(&made, serial(), tk()).unwrap();
    let p = personalization(&master_keys());
    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::open(&made).unwrap()));
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));
    purse
        .personalize(&TransportKey::new(transport_master()), &p)
        .unwrap();
    assert_eq!(purse.select().unwrap().asn, asn());
    VirtualCard::create(&direct, p).unwrap();
    assert_eq!(
        std::fs::read(&made).unwrap(),
        std::fs::read(&direct).unwrap()
    );
}

#[test]
fn wrong_transport_key_is_reported_and_leaves_the_card_blank() {
    let mut purse = EPurse::new(MemoryReader::new(VirtualCard::blank(serial(), tk())));
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));
    let err = purse
        .personalize(
            &TransportKey::new(wrong_key()),
            &personalization(&master_keys()),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        EpurseError::WrongTransportKey { tries_left: 2 }
    ));
    assert!(matches!(purse.select(), Err(EpurseError::NotPersonalized)));
    assert_eq!(purse.chip_status().unwrap().written, 0);
}

#[test]
fn card_pulled_mid_personalization_is_still_blank_and_is_personalized_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blank.card");
    {
        let mut c = VirtualCard::create_blank(&path, serial(), tk()).unwrap();
        assert_eq!(send(&mut c, SELECT).1, sw::OK);
        assert_eq!(authenticate(&mut c, &tk()), sw::OK);
        assert_eq!(write_key(&mut c, KeyType::Purchase, &[1; 16]), sw::OK);
        assert_eq!(write_key(&mut c, KeyType::Load, &[2; 16]), sw::OK);
        // Pulled here: the process holding it is gone.
    }
    let mut c = VirtualCard::open(&path).unwrap();
    assert_eq!(c.asn(), None);
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    assert_eq!(status(&mut c), (0x07, 3, 0x03));
    assert_eq!(
        write_key(&mut c, KeyType::Tac, &[3; 16]),
        sw::SECURITY_NOT_SATISFIED
    );
    let p = personalization(&master_keys());
    let mut purse = EPurse::new(MemoryReader::new(c));
    purse.select().unwrap_err();
    purse
        .personalize(&TransportKey::new(transport_master()), &p)
        .unwrap();
    let mut again = EPurse::new(MemoryReader::new(VirtualCard::open(&path).unwrap()));
    assert_eq!(again.select().unwrap().asn, asn());
    again.verify_pin(&Pin::parse(PIN).unwrap()).unwrap();
    again
        .load(&load_key(&master_keys()), terminal(), 100, now())
        .unwrap();
}

#[test]
fn garbage_apdus_never_panic_a_blank_card() {
    let mut c = blank();
    assert_eq!(authenticate(&mut c, &tk()), sw::OK);
    for cla in [0x00u8, 0x04, 0x80, 0x84] {
        for ins in [0x82u8, 0xCA, 0xD4, 0xD6, 0xF0] {
            for len in 0..40usize {
                let mut apdu = vec![cla, ins, 0x95, 0x3E];
                if len > 0 {
                    apdu.push(len as u8);
                    apdu.extend((0..len).map(|i| i as u8));
                }
                let r = c.process(&apdu);
                assert!(r.len() >= 2);
            }
        }
    }
}

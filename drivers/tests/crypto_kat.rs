//! Known-answer tests for the e-purse crypto. The expected bytes were computed with
//! pycryptodome by tests/vectors/epurse_vectors.py (same inputs), not by this crate.

use cardmesh_drivers::card::admin_mac;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto::{self, Key8, Key16};
use cardmesh_drivers::keys::{KeyComponent, MasterKeys, combine};
use cardmesh_drivers::types::{Asn, BcdDateTime, Mac4, TerminalId};

fn h<const N: usize>(s: &str) -> [u8; N] {
    let v: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect();
    v.try_into().unwrap()
}

fn key(s: &str) -> Key16 {
    Key16::from_bytes(h(s))
}

fn mac(s: &str) -> Mac4 {
    Mac4(h(s))
}

const MK_PURCHASE: &str = "0123456789ABCDEFFEDCBA9876543210";
const MK_LOAD: &str = "00112233445566778899AABBCCDDEEFF";
const MK_TAC: &str = "F0E1D2C3B4A5968778695A4B3C2D1E0F";
const MK_MAINT: &str = "2B7E151628AED2A6ABF7158809CF4F3C";

fn asn() -> Asn {
    Asn(h("3100000000000042"))
}
fn term() -> TerminalId {
    TerminalId(h("112233445566"))
}
fn dt() -> BcdDateTime {
    BcdDateTime(h("20250301123456"))
}

#[test]
fn kcv_is_first_three_bytes_of_encrypted_zero_block() {
    assert_eq!(key(MK_PURCHASE).kcv(), h("08D7B4"));
    assert_eq!(key(MK_LOAD).kcv(), h("FB0975"));
}

#[test]
fn single_des_cbc_mac_pads_with_80() {
    let k = Key8::from_bytes(h("0123456789ABCDEF"));
    assert_eq!(k.mac(b"cardmesh MAC test"), mac("4578E357"));
    // A whole block of data still gets a full padding block.
    assert_eq!(k.mac(&[0; 8]), mac("8B9EFCDE"));
}

#[test]
fn retail_mac_alg3_matches_iso9797_1() {
    assert_eq!(
        key(MK_MAINT).mac_alg3([0; 8], b"cardmesh MAC test"),
        mac("F392DF49")
    );
}

#[test]
fn diversification_uses_asn_and_its_complement() {
    assert_eq!(
        key(MK_PURCHASE).diversify(&asn()),
        key("1975B11E55B1EB99BD17EF41AFEC848D")
    );
    assert_eq!(
        key(MK_LOAD).diversify(&asn()),
        key("B87E9AE9D7DE8240E053EA0A53EF8724")
    );
    let dtk = key(MK_TAC).diversify(&asn());
    assert_eq!(dtk, key("12385565BAE04FE3209CB31046F699D6"));
    assert_eq!(dtk.tac_key(), Key8::from_bytes(h("32A4E675FC16D635")));
}

#[test]
fn purchase_session_key_mac1_mac2_and_tac() {
    let dpk = key(MK_PURCHASE).diversify(&asn());
    let dtk = key(MK_TAC).diversify(&asn());
    let ses = crypto::purchase_session_key(&dpk, h("1A2B3C4D"), 5, 0x123);
    assert_eq!(ses, Key8::from_bytes(h("60CDD6AD39950802")));
    assert_eq!(
        crypto::debit_mac1(&ses, 1234, TxType::Purchase, &term(), &dt()),
        mac("04F79BDB")
    );
    assert_eq!(crypto::debit_mac2(&ses, 1234), mac("97E8C08D"));
    assert_eq!(
        crypto::debit_tac(&dtk, 1234, TxType::Purchase, &term(), 0x123, &dt()),
        mac("AC1554E4")
    );
}

#[test]
fn load_session_key_mac1_mac2_and_tac() {
    let dlk = key(MK_LOAD).diversify(&asn());
    let dtk = key(MK_TAC).diversify(&asn());
    let ses = crypto::load_session_key(&dlk, h("99887766"), 2);
    assert_eq!(ses, Key8::from_bytes(h("041E16073C7B4880")));
    assert_eq!(
        crypto::load_mac1(&ses, 5000, 10000, &term()),
        mac("7F2D97AB")
    );
    assert_eq!(
        crypto::load_mac2(&ses, 10000, &term(), &dt()),
        mac("47DE6DF1")
    );
    assert_eq!(
        crypto::load_tac(&dtk, 15000, 2, 10000, &term(), &dt()),
        mac("E233FEB0")
    );
}

#[test]
fn grey_lock_and_debit_for_unlock_macs() {
    let dpk = key(MK_PURCHASE).diversify(&asn());
    let dtk = key(MK_TAC).diversify(&asn());
    let ses = crypto::purchase_session_key(&dpk, h("0BADF00D"), 7, 0x200);
    assert_eq!(ses, Key8::from_bytes(h("36BA960807CFAB5A")));
    assert_eq!(
        crypto::debit_mac1(&ses, 0, TxType::GreyLock, &term(), &dt()),
        mac("A111D44F")
    );
    assert_eq!(crypto::debit_mac2(&ses, 0), mac("7180D410"));
    let gtac = crypto::debit_tac(&dtk, 0, TxType::GreyLock, &term(), 0x200, &dt());
    assert_eq!(gtac, mac("1AC1C368"));
    let sesuk = crypto::unlock_session_key(&dpk, gtac, 8, 0x201);
    assert_eq!(sesuk, Key8::from_bytes(h("4BF99BEC104FAB88")));
    assert_eq!(
        crypto::debit_mac1(&sesuk, 4567, TxType::UnlockDebit, &term(), &dt()),
        mac("D65A8268")
    );
    assert_eq!(
        crypto::debit_tac(&dtk, 4567, TxType::UnlockDebit, &term(), 0x201, &dt()),
        mac("1EC32CEF")
    );
}

#[test]
fn application_block_secure_messaging_mac() {
    let damk = key(MK_MAINT).diversify(&asn());
    assert_eq!(damk, key("0E485A5E2076F804037FC74AF96AB5AB"));
    assert_eq!(
        admin_mac(&damk, h("CAFEBABE"), 0x1E, 0x00, 0x00),
        mac("C9E2B054")
    );
}

#[test]
fn ceremony_combines_components_and_derives_master_keys() {
    let a = KeyComponent::from_bytes(h("A1A2A3A4A5A6A7A8B1B2B3B4B5B6B7B8"));
    let b = KeyComponent::from_bytes(h("0F1E2D3C4B5A69788796A5B4C3D2E1F0"));
    assert_eq!(a.kcv(), h("7B217F"));
    assert_eq!(b.kcv(), h("819DB1"));
    let combined = combine(&a, &b);
    assert_eq!(combined, key("AEBC8E98EEFCCED03624160076645648"));
    assert_eq!(combined.kcv(), h("0769FA"));
    let mk = MasterKeys::derive(&combined);
    assert_eq!(mk.purchase, key("E5D1FB671011BE14D74654290E01DD63"));
    assert_eq!(mk.load, key("DED95B5E59BA4BB9C37A90F47E19DAF3"));
    assert_eq!(mk.tac, key("E6C920F14ABB0FC631D09CE411AB1AD5"));
    assert_eq!(mk.pin_unblock, key("4A009CBC6B0C2B6D6EE8347F01F69A7F"));
    assert_eq!(mk.maintenance, key("43310CDD42F25EF1A8C7373DDAFEBA06"));
    assert_eq!(mk.purchase.kcv(), h("E0BD08"));
    let ck = mk.card_keys(&asn());
    assert_eq!(ck.dpk, mk.purchase.diversify(&asn()));
    assert_eq!(ck.damk, mk.maintenance.diversify(&asn()));
}

#[test]
fn key_debug_output_never_shows_key_bytes() {
    let mk = MasterKeys::derive(&key(MK_PURCHASE));
    let shown = format!(
        "{mk:?} {:?} {:?}",
        mk.card_keys(&asn()),
        KeyComponent::from_bytes([0xAB; 16])
    );
    assert!(shown.contains("<redacted>"));
    assert!(!shown.to_uppercase().contains("AB, AB") && !shown.contains("171"));
    assert!(!shown.contains("E5D1") && !shown.contains("229"));
}

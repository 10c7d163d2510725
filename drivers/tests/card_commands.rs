//! The virtual card, command by command and status word by status word, driven with raw
//! APDUs (the terminal side's crypto is computed here with the crate's crypto module,
//! whose formulas are pinned by the known-answer tests).

mod common;

use cardmesh_drivers::apdu::{ApduProcessor, build};
use cardmesh_drivers::card::{TxRecord, VirtualCard, admin_mac};
use cardmesh_drivers::constants::{TxType, sw};
use cardmesh_drivers::crypto;
use cardmesh_drivers::types::Mac4;
use common::*;

fn selected() -> VirtualCard {
    let mut c = card();
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    c
}

/// Loads `amount` through raw APDUs and returns the TAC.
fn raw_load(c: &mut VirtualCard, amount: u32) -> Mac4 {
    let mk = master_keys();
    assert_eq!(send(c, "0020000003123456").1, sw::OK);
    let mut data = vec![0x01];
    data.extend_from_slice(&amount.to_be_bytes());
    data.extend_from_slice(&terminal().0);
    let (d, s) = send_bytes(c, &build(0x80, 0x50, 0x00, 0x02, &data, Some(0x10)));
    assert_eq!(s, sw::OK);
    let ctr = u16::from_be_bytes([d[4], d[5]]);
    let ses = crypto::load_session_key(&mk.load.diversify(&asn()), [d[8], d[9], d[10], d[11]], ctr);
    let mac2 = crypto::load_mac2(&ses, amount, &terminal(), &now());
    let (d, s) = send_bytes(
        c,
        &build(
            0x80,
            0x52,
            0x00,
            0x00,
            &[&now().0[..], &mac2.0].concat(),
            Some(4),
        ),
    );
    assert_eq!(s, sw::OK);
    Mac4(d.try_into().unwrap())
}

/// INITIALIZE FOR PURCHASE; returns (data, SW).
fn init_purchase(c: &mut VirtualCard, amount: u32) -> (Vec<u8>, u16) {
    let mut data = vec![0x01];
    data.extend_from_slice(&amount.to_be_bytes());
    data.extend_from_slice(&terminal().0);
    send_bytes(c, &build(0x80, 0x50, 0x01, 0x02, &data, Some(0x0F)))
}

fn debit(c: &mut VirtualCard, init: &[u8], amount: u32, seq: u32, tamper: bool) -> (Vec<u8>, u16) {
    let mk = master_keys();
    let ctr = u16::from_be_bytes([init[4], init[5]]);
    let random = [init[11], init[12], init[13], init[14]];
    let ses = crypto::purchase_session_key(&mk.purchase.diversify(&asn()), random, ctr, seq);
    let mut mac1 = crypto::debit_mac1(&ses, amount, TxType::Purchase, &terminal(), &now());
    if tamper {
        mac1.0[0] ^= 1;
    }
    let data = [&seq.to_be_bytes()[..], &now().0, &mac1.0].concat();
    send_bytes(c, &build(0x80, 0x54, 0x01, 0x00, &data, Some(8)))
}

#[test]
fn commands_before_select_are_refused_and_unknown_aid_is_not_found() {
    let mut c = card();
    assert_eq!(send(&mut c, "805C000204").1, sw::CONDITIONS_NOT_SATISFIED);
    assert_eq!(send(&mut c, "00A4040003 A00000").1, sw::FILE_NOT_FOUND);
    let (fci, s) = send(&mut c, SELECT);
    assert_eq!(s, sw::OK);
    assert_eq!(fci[0], 0x6F);
    assert!(fci.windows(8).any(|w| w == asn().0));
}

#[test]
fn select_is_forgotten_after_reset() {
    let mut c = selected();
    c.reset();
    assert_eq!(send(&mut c, "805C000204").1, sw::CONDITIONS_NOT_SATISFIED);
}

#[test]
fn unknown_instruction_class_and_bad_length_get_their_status_words() {
    let mut c = selected();
    assert_eq!(send(&mut c, "80EE000000").1, sw::INS_NOT_SUPPORTED);
    assert_eq!(send(&mut c, "A05C000204").1, sw::CLA_NOT_SUPPORTED);
    assert_eq!(send(&mut c, "805C").1, sw::WRONG_LENGTH);
    assert_eq!(send(&mut c, "0020000003 1234").1, sw::WRONG_LENGTH);
    assert_eq!(send(&mut c, "805C000104").1, sw::WRONG_P1P2);
    assert_eq!(send(&mut c, "8050010206 010000000100").1, sw::WRONG_LENGTH);
}

#[test]
fn new_card_has_zero_balance() {
    let mut c = selected();
    assert_eq!(send(&mut c, "805C000204"), (vec![0, 0, 0, 0], sw::OK));
}

#[test]
fn wrong_pin_counts_down_then_blocks_and_right_pin_is_refused_once_blocked() {
    let mut c = selected();
    assert_eq!(send(&mut c, "0020000003 999999").1, 0x63C2);
    assert_eq!(send(&mut c, "0020000003 999999").1, 0x63C1);
    assert_eq!(send(&mut c, "0020000003 999999").1, sw::PIN_BLOCKED);
    assert_eq!(send(&mut c, "0020000003 123456").1, sw::PIN_BLOCKED);
}

#[test]
fn right_pin_restores_the_try_counter() {
    let mut c = selected();
    assert_eq!(send(&mut c, "0020000003 999999").1, 0x63C2);
    assert_eq!(send(&mut c, "0020000003 123456").1, sw::OK);
    assert_eq!(send(&mut c, "0020000003 999999").1, 0x63C2);
}

#[test]
fn change_pin_checks_the_old_pin_and_takes_the_new_one() {
    let mut c = selected();
    assert_eq!(send(&mut c, "805E010007 999999 FF 654321").1, 0x63C2);
    assert_eq!(send(&mut c, "805E010007 123456 FF 654321").1, sw::OK);
    assert_eq!(send(&mut c, "0020000003 123456").1, 0x63C2);
    assert_eq!(send(&mut c, "0020000003 654321").1, sw::OK);
    assert_eq!(send(&mut c, "805E010005 654321 FF 12").1, sw::WRONG_DATA);
}

#[test]
fn load_needs_verified_pin() {
    let mut c = selected();
    assert_eq!(
        send(&mut c, "805000020B 01 00000064 112233445566 10").1,
        sw::SECURITY_NOT_SATISFIED
    );
}

#[test]
fn load_credits_balance_and_counts_online_counter() {
    let mut c = selected();
    let tac = raw_load(&mut c, 5000);
    assert_eq!(send(&mut c, "805C000204").0, 5000u32.to_be_bytes());
    let dtk = master_keys().tac.diversify(&asn());
    assert_eq!(
        tac,
        crypto::load_tac(&dtk, 5000, 0, 5000, &terminal(), &now())
    );
    raw_load(&mut c, 1);
    let (d, _) = send(&mut c, "0020000003123456");
    assert!(d.is_empty());
    let (d, s) = send(&mut c, "805000020B 01 00000001 112233445566 10");
    assert_eq!(s, sw::OK);
    assert_eq!(
        &d[..6],
        &[0, 0, 0x13, 0x89, 0, 2],
        "balance 5001, online counter 2"
    );
}

#[test]
fn load_with_wrong_mac2_is_refused_and_changes_nothing() {
    let mut c = selected();
    send(&mut c, "0020000003123456");
    assert_eq!(
        send(&mut c, "805000020B 01 00000064 112233445566 10").1,
        sw::OK
    );
    assert_eq!(
        send(&mut c, "805200000B 20250301123456 DEADBEEF 04").1,
        sw::MAC_ERROR
    );
    assert_eq!(send(&mut c, "805C000204").0, vec![0, 0, 0, 0]);
}

#[test]
fn credit_without_initialize_has_no_random() {
    let mut c = selected();
    assert_eq!(
        send(&mut c, "805200000B 20250301123456 DEADBEEF 04").1,
        sw::NO_RANDOM
    );
}

#[test]
fn load_over_the_card_limit_is_refused() {
    let mut c = selected();
    send(&mut c, "0020000003123456");
    let mut data = vec![0x01];
    data.extend_from_slice(&(MAX_BALANCE + 1).to_be_bytes());
    data.extend_from_slice(&terminal().0);
    assert_eq!(
        send_bytes(&mut c, &build(0x80, 0x50, 0x00, 0x02, &data, Some(0x10))).1,
        sw::BALANCE_LIMIT
    );
}

#[test]
fn purchase_debits_and_returns_verifiable_tac_and_mac2() {
    let mut c = selected();
    raw_load(&mut c, 5000);
    let (init, s) = init_purchase(&mut c, 1234);
    assert_eq!(s, sw::OK);
    assert_eq!(init.len(), 15);
    assert_eq!(&init[..6], &[0, 0, 0x13, 0x88, 0, 0]);
    let (d, s) = debit(&mut c, &init, 1234, 7, false);
    assert_eq!(s, sw::OK);
    let mk = master_keys();
    let dtk = mk.tac.diversify(&asn());
    assert_eq!(
        &d[..4],
        &crypto::debit_tac(&dtk, 1234, TxType::Purchase, &terminal(), 7, &now()).0
    );
    let ses = crypto::purchase_session_key(
        &mk.purchase.diversify(&asn()),
        [init[11], init[12], init[13], init[14]],
        0,
        7,
    );
    assert_eq!(&d[4..], &crypto::debit_mac2(&ses, 1234).0);
    assert_eq!(send(&mut c, "805C000204").0, (5000u32 - 1234).to_be_bytes());
    let (init, _) = init_purchase(&mut c, 1);
    assert_eq!(&init[4..6], &[0, 1], "offline counter counted the purchase");
}

#[test]
fn purchase_over_balance_is_insufficient_funds() {
    let mut c = selected();
    raw_load(&mut c, 100);
    assert_eq!(init_purchase(&mut c, 101).1, sw::INSUFFICIENT_FUNDS);
    assert_eq!(send(&mut c, "805C000204").0, 100u32.to_be_bytes());
}

#[test]
fn purchase_with_wrong_mac1_is_refused_and_changes_nothing() {
    let mut c = selected();
    raw_load(&mut c, 100);
    let (init, _) = init_purchase(&mut c, 50);
    assert_eq!(debit(&mut c, &init, 50, 1, true).1, sw::MAC_ERROR);
    assert_eq!(send(&mut c, "805C000204").0, 100u32.to_be_bytes());
    // The session is gone: a correct MAC1 now finds no random.
    assert_eq!(debit(&mut c, &init, 50, 1, false).1, sw::NO_RANDOM);
}

#[test]
fn wrong_key_index_is_key_not_found() {
    let mut c = selected();
    raw_load(&mut c, 100);
    assert_eq!(
        send(&mut c, "805001020B 02 00000001 112233445566 0F").1,
        sw::KEY_NOT_FOUND
    );
}

#[test]
fn transaction_prove_returns_last_purchase_and_load_proofs() {
    let mut c = selected();
    let load_tac = raw_load(&mut c, 500);
    let (init, _) = init_purchase(&mut c, 20);
    let (d, _) = debit(&mut c, &init, 20, 3, false);
    let (p, s) = send(&mut c, "805A000602 0000 08");
    assert_eq!(s, sw::OK);
    assert_eq!((&p[..4], &p[4..]), (&d[4..8], &d[..4]), "MAC2 then TAC");
    let (p, s) = send(&mut c, "805A000202 0000 08");
    assert_eq!(s, sw::OK);
    assert_eq!(&p[4..], &load_tac.0);
    assert_eq!(send(&mut c, "805A000602 0001 08").1, sw::RECORD_NOT_FOUND);
    assert_eq!(send(&mut c, "805A000902 0000 08").1, sw::WRONG_P1P2);
}

#[test]
fn read_record_returns_latest_first_and_keeps_ten() {
    let mut c = selected();
    assert_eq!(send(&mut c, "00B2010C17").1, sw::RECORD_NOT_FOUND);
    for i in 1..=12 {
        raw_load(&mut c, i);
    }
    let (r, s) = send(&mut c, "00B2010C17");
    assert_eq!(s, sw::OK);
    let rec = TxRecord::from_bytes(&r).unwrap();
    assert_eq!(
        (rec.amount, rec.counter, rec.tx_type),
        (12, 11, TxType::Load)
    );
    let (r, _) = send(&mut c, "00B20A0C17");
    assert_eq!(TxRecord::from_bytes(&r).unwrap().amount, 3);
    assert_eq!(send(&mut c, "00B20B0C17").1, sw::RECORD_NOT_FOUND);
    assert_eq!(send(&mut c, "00B2010417").1, sw::WRONG_P1P2);
}

fn grey_lock(c: &mut VirtualCard, seq: u32) -> (Vec<u8>, u16) {
    let mk = master_keys();
    let (init, s) = send(c, "E07A080207 01 112233445566 0F");
    if s != sw::OK {
        return (init, s);
    }
    let ctr = u16::from_be_bytes([init[4], init[5]]);
    let ses = crypto::purchase_session_key(
        &mk.purchase.diversify(&asn()),
        [init[11], init[12], init[13], init[14]],
        ctr,
        seq,
    );
    let mac1 = crypto::debit_mac1(&ses, 0, TxType::GreyLock, &terminal(), &now());
    let data = [&seq.to_be_bytes()[..], &[0; 4], &now().0, &mac1.0].concat();
    send_bytes(c, &build(0xE0, 0x7C, 0x08, 0x00, &data, Some(8)))
}

fn unlock(c: &mut VirtualCard, amount: u32, ctr: u16, gtac: Mac4, seq: u32) -> (Vec<u8>, u16) {
    let mk = master_keys();
    let ses = crypto::unlock_session_key(&mk.purchase.diversify(&asn()), gtac, ctr, seq);
    let gmac = crypto::debit_mac1(&ses, amount, TxType::UnlockDebit, &other_terminal(), &now());
    let data = [
        &amount.to_be_bytes()[..],
        &ctr.to_be_bytes(),
        &other_terminal().0,
        &seq.to_be_bytes(),
        &now().0,
        &gmac.0,
    ]
    .concat();
    send_bytes(c, &build(0xE0, 0x7E, 0x08, 0x02, &data, Some(4)))
}

#[test]
fn grey_locked_card_refuses_purchase_and_second_lock_until_unlock_debit() {
    let mut c = selected();
    raw_load(&mut c, 10_000);
    let (d, s) = grey_lock(&mut c, 40);
    assert_eq!(s, sw::OK);
    let gtac = Mac4(d[..4].try_into().unwrap());
    let dtk = master_keys().tac.diversify(&asn());
    assert_eq!(
        gtac,
        crypto::debit_tac(&dtk, 0, TxType::GreyLock, &terminal(), 40, &now())
    );

    let (st, s) = send(&mut c, "E0CA00001E");
    assert_eq!(s, sw::OK);
    assert_eq!(st[0], 0x01);
    assert_eq!(&st[9..15], &terminal().0);
    assert_eq!(&st[26..30], &gtac.0);

    assert_eq!(init_purchase(&mut c, 1).1, sw::CONDITIONS_NOT_SATISFIED);
    assert_eq!(grey_lock(&mut c, 41).1, sw::CONDITIONS_NOT_SATISFIED);
    // Wrong counter (the lock used 0, the unlock must use 1), wrong MAC, too much.
    assert_eq!(
        unlock(&mut c, 4567, 0, gtac, 9).1,
        sw::CONDITIONS_NOT_SATISFIED
    );
    assert_eq!(unlock(&mut c, 4567, 1, Mac4([0; 4]), 9).1, sw::MAC_ERROR);
    assert_eq!(unlock(&mut c, 10_001, 1, gtac, 9).1, sw::INSUFFICIENT_FUNDS);

    let (tac, s) = unlock(&mut c, 4567, 1, gtac, 9);
    assert_eq!(s, sw::OK);
    assert_eq!(
        tac,
        crypto::debit_tac(
            &dtk,
            4567,
            TxType::UnlockDebit,
            &other_terminal(),
            9,
            &now()
        )
        .0
    );
    assert_eq!(
        send(&mut c, "805C000204").0,
        (10_000u32 - 4567).to_be_bytes()
    );
    assert_eq!(send(&mut c, "E0CA00001E").0[0], 0x00);
    assert_eq!(init_purchase(&mut c, 1).1, sw::OK);
    assert_eq!(
        unlock(&mut c, 1, 2, gtac, 10).1,
        sw::CONDITIONS_NOT_SATISFIED,
        "not locked any more"
    );
}

fn admin(c: &mut VirtualCard, ins: u8, key: &cardmesh_drivers::crypto::Key16) -> u16 {
    let (ch, s) = send(c, "0084000004");
    assert_eq!(s, sw::OK);
    let mac = admin_mac(&key.diversify(&asn()), ch.try_into().unwrap(), ins, 0, 0);
    send_bytes(c, &build(0x84, ins, 0, 0, &mac.0, None)).1
}

#[test]
fn application_block_refuses_commands_until_unblock() {
    let mk = master_keys();
    let mut c = selected();
    raw_load(&mut c, 100);
    assert_eq!(admin(&mut c, 0x1E, &mk.maintenance), sw::OK);
    let (fci, s) = send(&mut c, SELECT);
    assert_eq!(s, sw::SELECTED_FILE_INVALIDATED);
    assert!(!fci.is_empty());
    assert_eq!(send(&mut c, "805C000204").1, sw::FUNCTION_NOT_SUPPORTED);
    assert_eq!(init_purchase(&mut c, 1).1, sw::FUNCTION_NOT_SUPPORTED);
    assert_eq!(admin(&mut c, 0x18, &mk.maintenance), sw::OK);
    assert_eq!(send(&mut c, SELECT).1, sw::OK);
    assert_eq!(send(&mut c, "805C000204").0, 100u32.to_be_bytes());
}

#[test]
fn admin_commands_need_a_fresh_challenge_and_the_right_key() {
    let mk = master_keys();
    let mut c = selected();
    assert_eq!(send(&mut c, "841E000004 00000000").1, sw::NO_RANDOM);
    assert_eq!(admin(&mut c, 0x1E, &wrong_key()), sw::MAC_ERROR);
    assert_eq!(admin(&mut c, 0x1E, &mk.load), sw::MAC_ERROR);
    assert_eq!(send(&mut c, "805C000204").1, sw::OK, "still unblocked");
}

#[test]
fn card_block_silences_the_card_for_good() {
    let mk = master_keys();
    let mut c = selected();
    assert_eq!(admin(&mut c, 0x16, &mk.maintenance), sw::OK);
    assert_eq!(send(&mut c, SELECT).1, sw::FUNCTION_NOT_SUPPORTED);
    assert_eq!(send(&mut c, "0084000004").1, sw::FUNCTION_NOT_SUPPORTED);
}

#[test]
fn pin_unblock_resets_tries_with_the_pin_unblock_key_only() {
    let mk = master_keys();
    let mut c = selected();
    for _ in 0..3 {
        send(&mut c, "0020000003 999999");
    }
    assert_eq!(send(&mut c, "0020000003 123456").1, sw::PIN_BLOCKED);
    assert_eq!(admin(&mut c, 0x24, &mk.maintenance), sw::MAC_ERROR);
    assert_eq!(admin(&mut c, 0x24, &mk.pin_unblock), sw::OK);
    assert_eq!(send(&mut c, "0020000003 123456").1, sw::OK);
}

#[test]
fn card_state_survives_being_carried_in_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.bin");
    let mut c = VirtualCard::create(&path, personalization(&master_keys())).unwrap();
    send(&mut c, SELECT);
    raw_load(&mut c, 777);
    send(&mut c, "0020000003 999999");
    drop(c);
    let mut c = VirtualCard::open(&path).unwrap();
    assert_eq!(c.balance(), 777);
    send(&mut c, SELECT);
    assert_eq!(
        send(&mut c, "0020000003 999999").1,
        0x63C1,
        "PIN tries persisted"
    );
    assert_eq!(
        TxRecord::from_bytes(&send(&mut c, "00B2010C17").0)
            .unwrap()
            .amount,
        777
    );
}

#[test]
fn card_that_cannot_write_its_file_answers_memory_failure_and_keeps_old_state() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("gone");
    std::fs::create_dir(&sub).unwrap();
    let path = sub.join("card.bin");
    let mut c = VirtualCard::create(&path, personalization(&master_keys())).unwrap();
    send(&mut c, SELECT);
    std::fs::remove_dir_all(&sub).unwrap();
    assert_eq!(send(&mut c, "0020000003 999999").1, sw::MEMORY_FAILURE);
    // Not counted: the next wrong PIN still leaves two tries... once the file is back.
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(send(&mut c, "0020000003 999999").1, 0x63C2);
}

#[test]
fn garbage_apdus_never_panic() {
    let mut c = selected();
    for len in 0..40 {
        for fill in [0x00u8, 0x80, 0xE0, 0xFF] {
            let apdu: Vec<u8> = (0..len).map(|i| fill.wrapping_add(i as u8)).collect();
            let r = c.process(&apdu);
            assert!(r.len() >= 2);
        }
    }
}

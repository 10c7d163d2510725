//! The e-purse client over the in-process reader: whole operations, their receipts and
//! typed errors, torn transactions, malformed answers, SAMs, and the balance property.

mod common;

use std::time::Duration;

use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto;
use cardmesh_drivers::epurse::{EPurse, EpurseError, ProveKind};
use cardmesh_drivers::psam::VirtualPsam;
use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError};
use cardmesh_drivers::sam::{FileSeqStore, MemorySeqStore, PsamClient, Sam, SeqStore, SoftwareSam};
use cardmesh_drivers::types::Pin;
use common::*;
use proptest::prelude::*;

fn purse() -> EPurse<MemoryReader<VirtualCard>> {
    let mut p = EPurse::new(MemoryReader::new(card()));
    p.select().unwrap();
    p
}

fn pin() -> Pin {
    Pin::parse(PIN).unwrap()
}

fn load(p: &mut EPurse<impl CardReader>, amount: u32) {
    p.verify_pin(&pin()).unwrap();
    p.load(&load_key(&master_keys()), terminal(), amount, now())
        .unwrap();
}

#[test]
fn select_reports_card_number_dates_and_class() {
    let mut p = EPurse::new(MemoryReader::new(card()));
    let info = p.select().unwrap();
    assert_eq!(info.asn, asn());
    assert_eq!(info.expiry, [0x20, 0x30, 0x12, 0x31]);
    assert_eq!(info.card_class, 1);
}

#[test]
fn load_then_purchase_gives_chained_receipts_with_verifiable_tacs() {
    let mk = master_keys();
    let mut p = purse();
    p.verify_pin(&pin()).unwrap();
    let l = p.load(&load_key(&mk), terminal(), 10_000, now()).unwrap();
    assert_eq!(
        (l.balance_before, l.balance_after, l.online_counter),
        (0, 10_000, 0)
    );
    let dtk = mk.tac.diversify(&asn());
    assert_eq!(
        l.tac,
        crypto::load_tac(&dtk, 10_000, 0, 10_000, &terminal(), &now())
    );

    let mut sam = sam(&mk);
    let r = p.purchase(&mut sam, 1234, now()).unwrap();
    assert_eq!(
        (
            r.balance_before,
            r.balance_after,
            r.offline_counter,
            r.term_seq
        ),
        (10_000, 8766, 0, 1)
    );
    assert_eq!(
        r.tac,
        crypto::debit_tac(&dtk, 1234, TxType::Purchase, &terminal(), 1, &now())
    );
    let r2 = p.purchase(&mut sam, 766, now()).unwrap();
    assert_eq!(
        (
            r2.balance_before,
            r2.balance_after,
            r2.offline_counter,
            r2.term_seq
        ),
        (8766, 8000, 1, 2)
    );
    assert_eq!(p.balance().unwrap(), 8000);

    let log = p.read_records().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!((log[0].tx_type, log[0].amount), (TxType::Purchase, 766));
    assert_eq!((log[2].tx_type, log[2].amount), (TxType::Load, 10_000));
}

#[test]
fn wrong_pin_reports_tries_left_then_blocked() {
    let mut p = purse();
    let bad = Pin::parse("000000").unwrap();
    assert!(matches!(
        p.verify_pin(&bad),
        Err(EpurseError::WrongPin { tries_left: 2 })
    ));
    assert!(matches!(
        p.verify_pin(&bad),
        Err(EpurseError::WrongPin { tries_left: 1 })
    ));
    assert!(matches!(p.verify_pin(&bad), Err(EpurseError::PinBlocked)));
    assert!(matches!(p.verify_pin(&pin()), Err(EpurseError::PinBlocked)));
    p.pin_unblock(&pin_unblock_key(&master_keys())).unwrap();
    p.verify_pin(&pin()).unwrap();
}

#[test]
fn change_pin_then_old_pin_fails() {
    let mut p = purse();
    let new = Pin::parse("2468").unwrap();
    p.change_pin(&pin(), &new).unwrap();
    assert!(matches!(
        p.verify_pin(&pin()),
        Err(EpurseError::WrongPin { .. })
    ));
    p.verify_pin(&new).unwrap();
}

#[test]
fn load_without_pin_asks_for_the_pin() {
    let mut p = purse();
    let e = p
        .load(&load_key(&master_keys()), terminal(), 100, now())
        .unwrap_err();
    assert!(matches!(e, EpurseError::PinRequired), "{e:?}");
}

#[test]
fn load_with_wrong_issuer_key_is_detected_before_crediting() {
    let mut p = purse();
    p.verify_pin(&pin()).unwrap();
    let e = p
        .load(
            &cardmesh_drivers::epurse::LoadKey::new(wrong_key()),
            terminal(),
            100,
            now(),
        )
        .unwrap_err();
    assert!(matches!(e, EpurseError::CardMacInvalid), "{e:?}");
    assert_eq!(p.balance().unwrap(), 0);
}

#[test]
fn purchase_over_balance_reports_balance_and_changes_nothing() {
    let mut p = purse();
    load(&mut p, 500);
    let e = p
        .purchase(&mut sam(&master_keys()), 501, now())
        .unwrap_err();
    assert!(
        matches!(
            e,
            EpurseError::InsufficientFunds {
                amount: 501,
                balance: Some(500)
            }
        ),
        "{e:?}"
    );
    assert_eq!(p.balance().unwrap(), 500);
}

#[test]
fn purchase_with_a_sam_of_another_network_is_rejected_by_the_card() {
    let mut p = purse();
    load(&mut p, 500);
    let mut foreign = SoftwareSam::new(terminal(), wrong_key(), MemorySeqStore::default());
    let e = p.purchase(&mut foreign, 100, now()).unwrap_err();
    assert!(matches!(e, EpurseError::MacRejected), "{e:?}");
    assert_eq!(p.balance().unwrap(), 500);
}

#[test]
fn expired_card_is_refused_before_touching_it() {
    let mut p = purse();
    load(&mut p, 500);
    let later = cardmesh_drivers::types::BcdDateTime::new(2031, 1, 1, 0, 0, 0).unwrap();
    assert!(matches!(
        p.purchase(&mut sam(&master_keys()), 1, later),
        Err(EpurseError::CardExpired { .. })
    ));
}

#[test]
fn grey_lock_blocks_purchases_and_any_station_can_finish_the_debit() {
    let mk = master_keys();
    let mut p = purse();
    load(&mut p, 20_000);
    let lock = p.grey_lock(&mut sam(&mk), now()).unwrap();
    assert_eq!((lock.balance, lock.offline_counter), (20_000, 0));
    let status = p.grey_status().unwrap();
    assert!(status.locked);
    assert_eq!(status.last_lock.unwrap().gtac, lock.gtac);

    let e = p.purchase(&mut sam(&mk), 100, now()).unwrap_err();
    assert!(
        matches!(e, EpurseError::GreyLocked { terminal: Some(t) } if t == terminal()),
        "{e:?}"
    );
    assert!(matches!(
        p.grey_lock(&mut sam(&mk), now()),
        Err(EpurseError::GreyLocked { .. })
    ));

    // Another station, its own SAM and sequence.
    let mut other = SoftwareSam::new(
        other_terminal(),
        mk.purchase.clone(),
        MemorySeqStore::default(),
    );
    let u = p.debit_for_unlock(&mut other, 4567, now()).unwrap();
    assert_eq!(
        (u.balance_before, u.balance_after, u.offline_counter),
        (20_000, 15_433, 1)
    );
    let dtk = mk.tac.diversify(&asn());
    assert_eq!(
        u.tac,
        crypto::debit_tac(
            &dtk,
            4567,
            TxType::UnlockDebit,
            &other_terminal(),
            u.term_seq,
            &now()
        )
    );
    assert!(!p.grey_status().unwrap().locked);
    assert!(matches!(
        p.debit_for_unlock(&mut other, 1, now()),
        Err(EpurseError::NotGreyLocked)
    ));
    p.purchase(&mut sam(&mk), 433, now()).unwrap();
    assert_eq!(p.balance().unwrap(), 15_000);
}

#[test]
fn blocked_application_is_reported_with_card_number_and_can_be_unblocked() {
    let key = maintenance_key(&master_keys());
    let mut p = purse();
    load(&mut p, 100);
    p.application_block(&key).unwrap();
    let e = p.select().unwrap_err();
    assert!(
        matches!(e, EpurseError::ApplicationBlocked { asn: Some(a) } if a == asn()),
        "{e:?}"
    );
    assert!(matches!(
        p.balance(),
        Err(EpurseError::ApplicationBlocked { .. })
    ));
    p.application_unblock(&key).unwrap();
    p.select().unwrap();
    assert_eq!(p.balance().unwrap(), 100);
    p.card_block(&key).unwrap();
    assert!(matches!(
        p.select(),
        Err(EpurseError::ApplicationBlocked { asn: None })
    ));
}

/// A reader whose card leaves after the `nth` command: the command is executed by the
/// card (`executed`) or not, and the answer is lost either way.
struct PullOut<R> {
    inner: R,
    left: usize,
    executed: bool,
}

impl<R: CardReader> CardReader for PullOut<R> {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        if self.left == 0 {
            return Err(ReaderError::NoCard);
        }
        self.left -= 1;
        if self.left == 0 {
            if self.executed {
                self.inner.transmit(c_apdu)?;
            }
            return Err(ReaderError::CardRemoved);
        }
        self.inner.transmit(c_apdu)
    }
    fn wait_for_card(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.inner.wait_for_card(t)
    }
    fn wait_for_removal(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.inner.wait_for_removal(t)
    }
}

fn torn_purchase(executed: bool) -> (EpurseError, EPurse<MemoryReader<VirtualCard>>) {
    let mut p = purse();
    load(&mut p, 1000);
    // SELECT, INITIALIZE FOR PURCHASE, then the debit is the 3rd command.
    let mut torn = EPurse::new(PullOut {
        inner: p.into_reader(),
        left: 3,
        executed,
    });
    torn.select().unwrap();
    let e = torn
        .purchase(&mut sam(&master_keys()), 300, now())
        .unwrap_err();
    let mut back = EPurse::new(torn.into_reader().inner);
    back.select().unwrap();
    (e, back)
}

#[test]
fn card_pulled_after_debit_is_settled_with_transaction_prove() {
    let (e, mut p) = torn_purchase(true);
    let EpurseError::Interrupted { kind, counter } = e else {
        panic!("{e:?}")
    };
    assert_eq!((kind, counter), (ProveKind::Offline, 0));
    let proof = p
        .transaction_prove(kind, counter)
        .unwrap()
        .expect("debit happened");
    let dtk = master_keys().tac.diversify(&asn());
    assert_eq!(
        proof.tac,
        crypto::debit_tac(&dtk, 300, TxType::Purchase, &terminal(), 1, &now())
    );
    assert_eq!(p.balance().unwrap(), 700);
}

#[test]
fn card_pulled_before_debit_proves_nothing_happened() {
    let (e, mut p) = torn_purchase(false);
    assert!(matches!(e, EpurseError::Interrupted { counter: 0, .. }));
    assert_eq!(p.transaction_prove(ProveKind::Offline, 0).unwrap(), None);
    assert_eq!(p.balance().unwrap(), 1000);
}

/// A reader that answers every command with the same canned bytes.
struct Canned(Vec<u8>);

impl CardReader for Canned {
    fn transmit(&mut self, _: &[u8]) -> Result<Vec<u8>, ReaderError> {
        Ok(self.0.clone())
    }
    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}

/// Runs every operation against a reader that answers `reply` to everything, after a
/// real SELECT so the operations get past the "select first" check.
fn every_operation(reply: &[u8]) -> Vec<Result<(), EpurseError>> {
    let mk = master_keys();
    let mut out = Vec::new();
    let mut bad = EPurse::new(Canned(reply.to_vec()));
    out.push(bad.select().map(|_| ()));
    let mut sel = EPurse::new(SelectThen {
        real: Some(MemoryReader::new(card())),
        canned: reply.to_vec(),
    });
    sel.select().unwrap();
    out.push(sel.balance().map(|_| ()));
    out.push(sel.verify_pin(&pin()));
    out.push(sel.load(&load_key(&mk), terminal(), 1, now()).map(|_| ()));
    out.push(sel.purchase(&mut sam(&mk), 1, now()).map(|_| ()));
    out.push(sel.grey_lock(&mut sam(&mk), now()).map(|_| ()));
    out.push(sel.grey_status().map(|_| ()));
    out.push(sel.debit_for_unlock(&mut sam(&mk), 1, now()).map(|_| ()));
    out.push(sel.transaction_prove(ProveKind::Offline, 0).map(|_| ()));
    out.push(sel.read_records().map(|_| ()));
    out.push(sel.application_block(&maintenance_key(&mk)));
    out
}

/// Answers the first command (SELECT) with a real card, then canned bytes.
struct SelectThen {
    real: Option<MemoryReader<VirtualCard>>,
    canned: Vec<u8>,
}

impl CardReader for SelectThen {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        match self.real.take() {
            Some(mut r) => r.transmit(c_apdu),
            None => Ok(self.canned.clone()),
        }
    }
    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}

#[test]
fn short_or_garbled_answers_are_malformed_response_errors() {
    for reply in [
        vec![],
        vec![0x90],
        vec![0x01, 0x90, 0x00],
        vec![0x6F, 0x05, 0x84, 0x90, 0x00],
    ] {
        for (i, r) in every_operation(&reply).into_iter().enumerate() {
            match r {
                Err(EpurseError::MalformedResponse(_)) => {}
                other => panic!("op {i} with reply {reply:02X?}: {other:?}"),
            }
        }
    }
}

proptest! {
    #[test]
    fn random_answers_never_panic(reply in proptest::collection::vec(any::<u8>(), 0..40)) {
        let _ = every_operation(&reply);
    }

    #[test]
    fn balance_is_loads_minus_purchases_and_never_negative(
        ops in proptest::collection::vec((any::<bool>(), 0u32..5_000), 1..40)
    ) {
        let mk = master_keys();
        let mut p = purse();
        let mut s = sam(&mk);
        let mut expected: u64 = 0;
        for (is_load, amount) in ops {
            if is_load {
                p.verify_pin(&pin()).unwrap();
                let r = p.load(&load_key(&mk), terminal(), amount, now()).unwrap();
                prop_assert_eq!(u64::from(r.balance_before), expected);
                expected += u64::from(amount);
            } else {
                match p.purchase(&mut s, amount, now()) {
                    Ok(r) => {
                        prop_assert!(u64::from(amount) <= expected);
                        prop_assert_eq!(u64::from(r.balance_before), expected);
                        expected -= u64::from(amount);
                    }
                    Err(EpurseError::InsufficientFunds { balance, .. }) => {
                        prop_assert!(u64::from(amount) > expected);
                        prop_assert_eq!(balance.map(u64::from), Some(expected));
                    }
                    Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                }
            }
            prop_assert_eq!(u64::from(p.balance().unwrap()), expected);
        }
    }
}

#[test]
fn file_seq_store_never_hands_out_a_number_twice_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq");
    let mut s = FileSeqStore::open(&path).unwrap();
    assert_eq!(s.reserve_next().unwrap(), 1);
    assert_eq!(s.reserve_next().unwrap(), 2);
    drop(s);
    let mut s = FileSeqStore::open(&path).unwrap();
    assert_eq!(s.reserve_next().unwrap(), 3);
    std::fs::write(&path, b"xx").unwrap();
    assert!(FileSeqStore::open(&path).is_err());
}

#[test]
fn software_sam_sequence_is_durable_before_mac1_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seq");
    let mk = master_keys();
    let mut p = purse();
    load(&mut p, 1000);
    let mut s = SoftwareSam::new(
        terminal(),
        mk.purchase.clone(),
        FileSeqStore::open(&path).unwrap(),
    );
    let r = p.purchase(&mut s, 10, now()).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), r.term_seq.to_be_bytes());
}

#[test]
fn purchase_through_the_virtual_psam_persists_its_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("psam.bin");
    let mk = master_keys();
    let psam = VirtualPsam::create(&path, terminal(), mk.purchase.clone()).unwrap();
    let mut sam = PsamClient::new(MemoryReader::new(psam));
    assert_eq!(sam.terminal_id().unwrap(), terminal());
    let mut p = purse();
    load(&mut p, 1000);
    let r1 = p.purchase(&mut sam, 100, now()).unwrap();
    let r2 = p.purchase(&mut sam, 100, now()).unwrap();
    assert_eq!((r1.term_seq, r2.term_seq), (1, 2));
    assert_eq!(VirtualPsam::open(&path).unwrap().last_seq(), 2);
    let mut sam = PsamClient::new(MemoryReader::new(VirtualPsam::open(&path).unwrap()));
    assert_eq!(p.purchase(&mut sam, 100, now()).unwrap().term_seq, 3);
}

/// Flips a bit of the card's MAC2 in the DEBIT FOR PURCHASE answer, like a cloned card
/// without the real keys would.
struct ForgedMac2<R>(R);

impl<R: CardReader> CardReader for ForgedMac2<R> {
    fn transmit(&mut self, c_apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        let mut r = self.0.transmit(c_apdu)?;
        if c_apdu.starts_with(&[0x80, 0x54]) && r.len() == 10 {
            r[7] ^= 0x01;
        }
        Ok(r)
    }
    fn wait_for_card(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.0.wait_for_card(t)
    }
    fn wait_for_removal(&mut self, t: Duration) -> Result<(), ReaderError> {
        self.0.wait_for_removal(t)
    }
}

#[test]
fn forged_mac2_is_a_fraud_error_that_keeps_the_receipt() {
    let mut p = purse();
    load(&mut p, 1000);
    let mut forged = EPurse::new(ForgedMac2(p.into_reader()));
    forged.select().unwrap();
    let e = forged
        .purchase(&mut sam(&master_keys()), 250, now())
        .unwrap_err();
    let EpurseError::Mac2Invalid { receipt } = e else {
        panic!("{e:?}")
    };
    assert_eq!((receipt.amount, receipt.balance_after), (250, 750));
}

#[test]
fn sam_refuses_mac2_check_without_mac1() {
    let mut s = sam(&master_keys());
    assert!(matches!(
        s.check_mac2(cardmesh_drivers::types::Mac4([0; 4])),
        Err(cardmesh_drivers::sam::SamError::NoMac1Pending)
    ));
}

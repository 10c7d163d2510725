//! The deferred debit: a station grey-locks a card, logs the fuel debit, and loses the
//! card before debiting it. Its records replicate to another node; when the card is
//! presented there, that node completes the debit with the amount the first station
//! logged, and the first station's intent is settled by it everywhere.

mod pos_support;

use cardmesh_drivers::apdu::ApduProcessor;
use cardmesh_drivers::card::VirtualCard;
use cardmesh_drivers::epurse::EPurse;
use cardmesh_drivers::reader::{CardReader, MemoryReader, ReaderError};
use cardmesh_drivers::types::Pin;
use cardmesh_model::body::{Body, TxnKind};
use cardmesh_model::{CardAsn, TerminalId};
use cardmesh_node::pos::{Pos, PosError};
use cardmesh_node::sam::software_sam;
use pos_support::*;
use std::time::Duration;

/// A reader whose card leaves just before DEBIT FOR UNLOCK reaches it.
struct PulledBeforeUnlock(Option<VirtualCard>);

impl CardReader for PulledBeforeUnlock {
    fn transmit(&mut self, apdu: &[u8]) -> Result<Vec<u8>, ReaderError> {
        if apdu.get(1) == Some(&0x7E) {
            return Err(ReaderError::CardRemoved);
        }
        let chip = self.0.as_mut().ok_or(ReaderError::NoCard)?;
        Ok(chip.process(apdu))
    }
    fn wait_for_card(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
    fn wait_for_removal(&mut self, _: Duration) -> Result<(), ReaderError> {
        Ok(())
    }
}

#[test]
fn a_fuel_debit_logged_at_one_station_is_completed_at_another() {
    let net = Net::create();
    let desk = net.desk();
    let pos = Pos::open(&desk, &net.desk_key(), terminal(), clock()).unwrap();
    pos.login(&"admin-1".parse().unwrap(), "5555").unwrap();
    let mut sam = software_sam(&desk, &net.desk_key(), terminal()).unwrap();
    let mut purse = EPurse::new(MemoryReader::new(net.chip(
        &desk,
        40,
        true,
        [0x20, 0x31, 0x12, 0x31],
    )));
    pos.load(
        &mut purse,
        "300".parse().unwrap(),
        &Pin::parse(CARD_PIN).unwrap(),
    )
    .unwrap();
    let lock = pos.grey_lock(&mut purse, &mut sam).unwrap();

    let chip = purse.into_reader().remove().unwrap();
    let mut pulled = EPurse::new(PulledBeforeUnlock(Some(chip)));
    let err = pos
        .unlock(&mut pulled, &mut sam, Some("88.80".parse().unwrap()))
        .unwrap_err();
    assert!(matches!(err, PosError::Interrupted(_)), "{err}");
    let asn = CardAsn(card(40).0);
    assert_eq!(desk.pending_intents(&asn).unwrap().len(), 1);

    // The desk's feed reaches HQ (any sync link would do); the card shows up there.
    deliver(&desk, &net.hq);
    let hq_terminal: TerminalId = HQ_TERMINAL.parse().unwrap();
    let hq_pos = Pos::open(&net.hq, &net.hq_key(), hq_terminal, clock()).unwrap();
    hq_pos.login(&"hq-admin".parse().unwrap(), "9999").unwrap();
    let mut hq_sam = software_sam(&net.hq, &net.hq_key(), hq_terminal).unwrap();
    let chip = pulled.into_reader().0.unwrap();
    let mut purse = EPurse::new(MemoryReader::new(chip));
    // A purchase is refused while the card is locked; the query leaves the debit waiting.
    assert!(hq_pos.query(&mut purse).unwrap().settled.is_empty());
    let done = hq_pos.unlock(&mut purse, &mut hq_sam, None).unwrap();
    assert_eq!(done.txn.amount, "88.80".parse().unwrap());
    assert_eq!(done.txn.kind, TxnKind::DebitForUnlock);
    assert_eq!(done.txn.refers_to, Some(lock.entry));
    assert_eq!(purse.balance().unwrap(), 30_000 - 8_880);
    assert!(net.hq.pending_intents(&asn).unwrap().is_empty());

    // Back at the desk, HQ's entry settles the desk's intent too: one entry per counter.
    deliver(&net.hq, &desk);
    assert!(desk.pending_intents(&asn).unwrap().is_empty());
    let unlocks = desk
        .card_history(&asn)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(&e.body, Body::Card(t) if t.kind == TxnKind::DebitForUnlock))
        .count();
    assert_eq!(unlocks, 1);
    assert!(matches!(
        hq_pos.unlock(&mut purse, &mut hq_sam, None),
        Err(PosError::Card(_))
    ));
}

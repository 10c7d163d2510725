//! Settling a logged intent with the card that comes back: what the card's proof (GET
//! TRANSACTION PROVE) and its transaction log say about the counter the intent used.
//! Pure: the terminal reads the card, this decides.
//!
//! A card counter is consumed by exactly one transaction, so the intent was executed iff
//! the card logged a transaction with that counter at this terminal, for this amount, at
//! this date-time. A counter the card has not reached yet was never consumed.

use cardmesh_drivers::card::TxRecord;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::epurse::TransactionProof;
use cardmesh_model::body::{CardTxn, CounterSpace, TxnKind};

/// What to do with an intent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The card executed it: log the transaction with these MACs (the TAC is zero if
    /// the card's proof has moved on to a later transaction).
    Complete {
        mac: [u8; 4],
        tac: [u8; 4],
        proven: bool,
    },
    /// The card never executed it.
    Void(String),
    /// The card's log no longer reaches back to the counter: leave the intent pending
    /// and tell HQ, whose ledger of every site can settle it.
    Undetermined(String),
}

/// The card's transaction type for a ledger kind that consumes a counter.
pub fn tx_type(kind: &TxnKind) -> Option<TxType> {
    match kind {
        TxnKind::Load | TxnKind::Refund | TxnKind::Reversal => Some(TxType::Load),
        TxnKind::Purchase | TxnKind::Return { .. } => Some(TxType::Purchase),
        TxnKind::GreyLock => Some(TxType::GreyLock),
        TxnKind::DebitForUnlock => Some(TxType::UnlockDebit),
        TxnKind::Issue { .. } | TxnKind::Replace { .. } => None,
    }
}

fn space_of(t: TxType) -> CounterSpace {
    match t {
        TxType::Load => CounterSpace::Online,
        TxType::Purchase | TxType::GreyLock | TxType::UnlockDebit => CounterSpace::Offline,
    }
}

/// Decides an intent from the proof the card gives for its counter (if any) and the
/// card's transaction log (latest first).
pub fn decide(intent: &CardTxn, proof: Option<TransactionProof>, log: &[TxRecord]) -> Decision {
    let Some(want) = tx_type(&intent.kind) else {
        return Decision::Void("this kind of operation sends no money command".into());
    };
    let space = space_of(want);
    let same_space: Vec<&TxRecord> = log
        .iter()
        .filter(|r| space_of(r.tx_type) == space)
        .collect();
    if let Some(r) = same_space.iter().find(|r| r.counter == intent.card_counter) {
        let ours = r.tx_type == want
            && r.terminal.0 == intent.terminal.0
            && r.datetime.0 == intent.card_time.0
            && i64::from(r.amount) == intent.amount.fen();
        if !ours {
            return Decision::Void(format!(
                "card counter {} was used by another transaction",
                intent.card_counter
            ));
        }
        return match proof {
            Some(p) => Decision::Complete {
                mac: p.mac.0,
                tac: p.tac.0,
                proven: true,
            },
            None => Decision::Complete {
                mac: [0; 4],
                tac: [0; 4],
                proven: false,
            },
        };
    }
    let reached = same_space.iter().any(|r| r.counter > intent.card_counter);
    if reached {
        Decision::Undetermined(format!(
            "the card's log no longer shows counter {}",
            intent.card_counter
        ))
    } else {
        Decision::Void(format!(
            "the card never used counter {}",
            intent.card_counter
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_drivers::types::{BcdDateTime, Mac4, TerminalId as CardTerminal};
    use cardmesh_model::{BusinessDay, CardAsn, CardTime, Money, TerminalId};

    fn intent(counter: u16) -> CardTxn {
        CardTxn {
            kind: TxnKind::Purchase,
            asn: CardAsn([1; 8]),
            site: "shop-1".parse().unwrap(),
            terminal: TerminalId([0, 0, 0, 0, 1, 1]),
            operator: None,
            business_day: BusinessDay {
                year: 2026,
                month: 11,
                day: 21,
            },
            card_time: CardTime([0x20, 0x26, 0x11, 0x21, 0x10, 0, 0]),
            card_counter: counter,
            term_seq: 7,
            amount: Money::from_fen(500),
            balance_before: Money::from_fen(1000),
            balance_after: Money::from_fen(500),
            mac1: [1; 4],
            mac2: [0; 4],
            tac: [0; 4],
            items: vec![],
            refers_to: None,
        }
    }

    fn record(counter: u16, tx_type: TxType, terminal: [u8; 6], amount: u32) -> TxRecord {
        TxRecord {
            counter,
            amount,
            tx_type,
            terminal: CardTerminal(terminal),
            datetime: BcdDateTime([0x20, 0x26, 0x11, 0x21, 0x10, 0, 0]),
        }
    }

    const OURS: [u8; 6] = [0, 0, 0, 0, 1, 1];
    const PROOF: TransactionProof = TransactionProof {
        mac: Mac4([2; 4]),
        tac: Mac4([3; 4]),
    };

    #[test]
    fn a_logged_matching_debit_completes_with_the_cards_proof() {
        let log = [record(4, TxType::Purchase, OURS, 500)];
        assert_eq!(
            decide(&intent(4), Some(PROOF), &log),
            Decision::Complete {
                mac: [2; 4],
                tac: [3; 4],
                proven: true
            }
        );
    }

    #[test]
    fn a_counter_the_card_never_reached_is_void() {
        let log = [
            record(3, TxType::Purchase, OURS, 100),
            record(9, TxType::Load, OURS, 500),
        ];
        assert!(matches!(decide(&intent(4), None, &log), Decision::Void(_)));
        assert!(matches!(decide(&intent(0), None, &[]), Decision::Void(_)));
    }

    #[test]
    fn a_counter_used_elsewhere_is_void_even_with_a_proof() {
        let log = [record(4, TxType::Purchase, [9; 6], 500)];
        assert!(matches!(
            decide(&intent(4), Some(PROOF), &log),
            Decision::Void(_)
        ));
        let log = [record(4, TxType::Purchase, OURS, 501)];
        assert!(matches!(decide(&intent(4), None, &log), Decision::Void(_)));
    }

    #[test]
    fn a_debit_the_card_moved_past_completes_unproven() {
        let log = [
            record(5, TxType::Purchase, [9; 6], 100),
            record(4, TxType::Purchase, OURS, 500),
        ];
        assert_eq!(
            decide(&intent(4), None, &log),
            Decision::Complete {
                mac: [0; 4],
                tac: [0; 4],
                proven: false
            }
        );
    }

    #[test]
    fn a_log_that_rolled_past_the_counter_is_undetermined() {
        let log = [record(20, TxType::Purchase, [9; 6], 100)];
        assert!(matches!(
            decide(&intent(4), None, &log),
            Decision::Undetermined(_)
        ));
    }
}

//! Money back onto a card: refunds (goods return) and reversals of the last sale, and
//! the credit-for-load they share with loads.
//!
//! The PBOC e-purse has no refund command: giving money back is a credit-for-load,
//! whose MAC2 needs the load key. Shops do not hold it, so a refund is done where the
//! key is (a card desk, HQ) and a node without it says where to go. Each credit is its
//! own ledger entry (`TxnKind::Refund` / `TxnKind::Reversal`) referring to the sale it
//! gives money back for. The rules (how much is left to refund, what may be reversed)
//! are pure functions; the terminal reads card and ledger around them.

use super::operators::{self, Operation, OperatorRole, Session};
use super::terminal::{Pos, PosError, Receipt, card_asn, card_time, fen_u32};
use cardmesh_drivers::card::TxRecord;
use cardmesh_drivers::constants::TxType;
use cardmesh_drivers::crypto::Key16;
use cardmesh_drivers::epurse::{EPurse, LoadKey};
use cardmesh_drivers::reader::CardReader;
use cardmesh_drivers::types::{Pin, TerminalId as CardTerminalId};
use cardmesh_model::body::{Body, CardTxn, CounterSpace, EntryRef, OperatorActionKind, TxnKind};
use cardmesh_model::{CardAsn, Entry, Money, OperatorId, Role, SiteId, TerminalId};

/// How long after a sale the cashier may reverse it, unless configured otherwise.
pub const DEFAULT_REVERSAL_WINDOW_MS: u64 = 10 * 60 * 1000;

/// A manager's id and PIN, typed in at a cashier's session to authorize one operation.
#[derive(Clone, Debug)]
pub struct ManagerCode {
    pub operator: OperatorId,
    pub pin: String,
}

/// Why money cannot go back to the card as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditRefusal {
    #[error("entry {0} is not a sale: only purchases and fuel debits are refunded")]
    NotASale(String),
    #[error("that sale was made with card {sale}, not with this card {presented}")]
    OtherCard { sale: CardAsn, presented: CardAsn },
    #[error("a refund must be more than 0.00")]
    NothingToRefund,
    #[error("refund of {asked} refused: only {left} of that sale is left unrefunded")]
    OverRefund { asked: Money, left: Money },
    #[error(
        "the card's last transaction is not that sale (the card has been used since): give a refund instead"
    )]
    NotLastTransaction,
    #[error("the sale was made at terminal {sale}: it can only be reversed there")]
    OtherTerminal { sale: TerminalId },
    #[error("the sale is older than the {minutes}-minute reversal window: give a refund instead")]
    WindowPassed { minutes: u64 },
}

/// What is left to refund of a sale after the credits already given for it.
pub fn refundable<'a>(
    sale: &CardTxn,
    credits: impl IntoIterator<Item = &'a CardTxn>,
) -> Result<Money, PosError> {
    credits
        .into_iter()
        .try_fold(sale.amount, |left, c| left.checked_sub(c.amount))
        .map_err(|_| PosError::Amount(sale.amount))
}

/// Whether a sale kind took money off the card (and so can be given back).
fn is_sale(kind: &TxnKind) -> bool {
    matches!(kind, TxnKind::Purchase | TxnKind::DebitForUnlock)
}

/// May `amount` of `sale` go back to `presented`, with `left` still unrefunded?
pub fn check_refund(
    sale: &CardTxn,
    presented: CardAsn,
    left: Money,
    amount: Money,
) -> Result<(), CreditRefusal> {
    if !is_sale(&sale.kind) {
        return Err(CreditRefusal::NotASale(sale.kind.name().into()));
    }
    if sale.asn != presented {
        return Err(CreditRefusal::OtherCard {
            sale: sale.asn,
            presented,
        });
    }
    if amount <= Money::ZERO {
        return Err(CreditRefusal::NothingToRefund);
    }
    if amount > left {
        return Err(CreditRefusal::OverRefund {
            asked: amount,
            left,
        });
    }
    Ok(())
}

/// The card's own proof that `sale` is its last transaction: the newest record of its
/// log is that debit, at that terminal, for that amount.
pub fn is_last_on_card(sale: &CardTxn, log: &[TxRecord]) -> bool {
    let want = match sale.kind {
        TxnKind::Purchase => TxType::Purchase,
        TxnKind::DebitForUnlock => TxType::UnlockDebit,
        _ => return false,
    };
    log.first().is_some_and(|r| {
        r.tx_type == want
            && r.counter == sale.card_counter
            && r.terminal.0 == sale.terminal.0
            && i64::from(r.amount) == sale.amount.fen()
            && r.datetime.0 == sale.card_time.0
    })
}

/// May `sale` (logged at `sale_ms`) be reversed at `here` at `now_ms`?
pub fn check_reversal(
    sale: &CardTxn,
    last_on_card: bool,
    here: TerminalId,
    sale_ms: u64,
    now_ms: u64,
    window_ms: u64,
) -> Result<(), CreditRefusal> {
    if !is_sale(&sale.kind) {
        return Err(CreditRefusal::NotASale(sale.kind.name().into()));
    }
    if !last_on_card {
        return Err(CreditRefusal::NotLastTransaction);
    }
    if sale.terminal != here {
        return Err(CreditRefusal::OtherTerminal {
            sale: sale.terminal,
        });
    }
    if now_ms.saturating_sub(sale_ms) > window_ms {
        return Err(CreditRefusal::WindowPassed {
            minutes: window_ms / 60_000,
        });
    }
    Ok(())
}

/// One credit-for-load as the terminal does it: what and for whom.
pub(super) struct Credit<'a> {
    pub session: &'a Session,
    pub kind: TxnKind,
    pub asn: CardAsn,
    pub amount: Money,
    pub refers_to: Option<EntryRef>,
    pub key: Key16,
    pub pin: &'a Pin,
    /// The crash-test step prefix (`load:begun`, ...).
    pub step: &'static str,
}

impl Pos {
    /// The load key, or the error naming where money can be put back on a card.
    pub(super) fn load_key(&self, what: &'static str) -> Result<Key16, PosError> {
        if let Some(k) = &self.keys.load {
            return Ok(k.clone());
        }
        let mut desks: Vec<SiteId> = self
            .store
            .certificates()?
            .into_iter()
            .filter(|c| matches!(c.role, Role::Issuer | Role::Hq))
            .map(|c| c.site)
            .collect();
        desks.sort();
        desks.dedup();
        Err(PosError::NoLoadKey {
            what,
            desks: desks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Intent -> credit -> completion, with a terminal sequence number reserved for the
    /// receipt. The PIN is checked first: the card refuses a load without it.
    pub(super) fn credit<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        c: Credit<'_>,
    ) -> Result<Receipt, PosError> {
        purse.verify_pin(c.pin)?;
        let term_seq = self.store.next_term_seq(&self.terminal)?;
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let started = purse.load_begin(
            &LoadKey::new(c.key),
            CardTerminalId(self.terminal.0),
            fen_u32(c.amount)?,
            when,
        )?;
        self.stops.at(&format!("{}:begun", c.step));
        let r = started.receipt();
        let mut txn = self.blank_txn(c.kind, c.asn, &c.session.operator, when);
        txn.card_counter = r.online_counter;
        txn.term_seq = term_seq;
        txn.amount = c.amount;
        txn.balance_before = Money::from_fen(r.balance_before.into());
        txn.balance_after = Money::from_fen(r.balance_after.into());
        txn.mac1 = r.mac1.0;
        txn.mac2 = r.mac2.0;
        txn.refers_to = c.refers_to;
        let what = txn.kind.name();
        let intent = self.store.append_local(Body::Intent(txn.clone()))?;
        self.stops.at(&format!("{}:intent-logged", c.step));
        let receipt = purse
            .load_finish(started)
            .map_err(|e| self.unfinished(intent.entry_ref(), c.asn, e, what))?;
        self.stops.at(&format!("{}:card-credited", c.step));
        txn.tac = receipt.tac.0;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        self.stops.at(&format!("{}:completed", c.step));
        Ok(Receipt {
            entry: entry.entry_ref(),
            txn,
            flagged: None,
        })
    }

    /// The operator who authorizes `op`: the logged-in one if their role may, else the
    /// manager whose id and PIN were typed in for this one operation (audited).
    fn approve(
        &self,
        op: Operation,
        manager: Option<&ManagerCode>,
        what: &str,
    ) -> Result<Session, PosError> {
        let session = self.session()?;
        let Some(code) = manager else {
            return self.authorize(op);
        };
        let approver = self.operator_session(&code.operator)?;
        if !matches!(approver.role, OperatorRole::Manager | OperatorRole::Admin)
            || !operators::permits(approver.role, op)
        {
            self.refused(&session.operator, what, "approver is not a manager")?;
            return Err(PosError::NotAManager {
                operator: code.operator.clone(),
                role: approver.role,
            });
        }
        let ok = self
            .docs
            .registry
            .operator_pins
            .get(&code.operator)
            .is_some_and(|v| *v == operators::pin_verifier(&code.operator, &code.pin));
        if !ok {
            self.refused(&code.operator, what, "wrong manager PIN")?;
            return Err(PosError::BadOperatorPin(code.operator.clone()));
        }
        self.audit(
            &code.operator,
            OperatorActionKind::Approved {
                what: format!("{what} for {}", session.operator),
            },
        )?;
        Ok(session)
    }

    /// A card transaction of the ledger, by entry.
    fn ledger_txn(&self, at: EntryRef) -> Result<CardTxn, PosError> {
        let entry = self.store.entry(at)?.ok_or(PosError::NoSuchEntry(at))?;
        match entry.body.card_txn() {
            Some(t) => Ok(t.clone()),
            None => Err(PosError::Credit(CreditRefusal::NotASale(
                entry.body.kind().into(),
            ))),
        }
    }

    /// The credits already given for a sale: completed ones, and ones still pending.
    fn credits_for(&self, sale: EntryRef, asn: &CardAsn) -> Result<Vec<CardTxn>, PosError> {
        let credit = |e: Entry| {
            let t = match e.body {
                Body::Intent(t) => t,
                body => body.card_txn()?.clone(),
            };
            (matches!(t.kind, TxnKind::Refund | TxnKind::Reversal) && t.refers_to == Some(sale))
                .then_some(t)
        };
        let mut out: Vec<CardTxn> = self
            .store
            .card_history(asn)?
            .into_iter()
            .filter_map(credit)
            .collect();
        out.extend(
            self.store
                .pending_intents(asn)?
                .into_iter()
                .filter_map(credit),
        );
        Ok(out)
    }

    /// Goods return: gives `amount` of the sale `sale` back to the card it was paid
    /// with, never more than what is left unrefunded of it. Needs a manager (logged in,
    /// or `manager` typed in at the cashier's session) and this node's load key.
    pub fn refund<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        sale: EntryRef,
        amount: Money,
        pin: &Pin,
        manager: Option<&ManagerCode>,
    ) -> Result<Receipt, PosError> {
        let session = self.approve(Operation::Refund, manager, "refund")?;
        let key = self.load_key("refund")?;
        let (info, _) = self.present(purse, &session, "refund")?;
        let asn = card_asn(&info);
        self.active_record(asn)?;
        let txn = self.ledger_txn(sale)?;
        let credits = self.credits_for(sale, &asn)?;
        let left = refundable(&txn, &credits)?;
        if let Err(refusal) = check_refund(&txn, asn, left, amount) {
            self.refused(&session.operator, "refund", &refusal.to_string())?;
            return Err(refusal.into());
        }
        self.credit(
            purse,
            Credit {
                session: &session,
                kind: TxnKind::Refund,
                asn,
                amount,
                refers_to: Some(sale),
                key,
                pin,
                step: "refund",
            },
        )
    }

    /// Reverses the card's last transaction: a sale made at this terminal within the
    /// reversal window, given back in full. Needs a manager, like a refund.
    pub fn reverse<R: CardReader>(
        &self,
        purse: &mut EPurse<R>,
        pin: &Pin,
        manager: Option<&ManagerCode>,
    ) -> Result<Receipt, PosError> {
        let session = self.approve(Operation::Refund, manager, "reversal")?;
        let key = self.load_key("reversal")?;
        let (info, _) = self.present(purse, &session, "reversal")?;
        let asn = card_asn(&info);
        self.active_record(asn)?;
        let log = purse.read_records()?;
        let last = log
            .first()
            .filter(|r| r.tx_type != TxType::Load)
            .ok_or(CreditRefusal::NotLastTransaction)?;
        let entry = self
            .store
            .counter_entry(&asn, CounterSpace::Offline, last.counter)?
            .ok_or(CreditRefusal::NotLastTransaction)?;
        let (sale, sale_ms) = (entry.entry_ref(), entry.hlc.millis);
        let Body::Card(txn) = entry.body else {
            return Err(CreditRefusal::NotLastTransaction.into());
        };
        let left = refundable(&txn, &self.credits_for(sale, &asn)?)?;
        let checked = check_reversal(
            &txn,
            is_last_on_card(&txn, &log),
            self.terminal,
            sale_ms,
            self.now_ms().max(0) as u64,
            self.reversal_window_ms(),
        )
        .and_then(|()| {
            if left == txn.amount {
                Ok(())
            } else {
                Err(CreditRefusal::OverRefund {
                    asked: txn.amount,
                    left,
                })
            }
        });
        if let Err(refusal) = checked {
            self.refused(&session.operator, "reversal", &refusal.to_string())?;
            return Err(refusal.into());
        }
        self.credit(
            purse,
            Credit {
                session: &session,
                kind: TxnKind::Reversal,
                asn,
                amount: txn.amount,
                refers_to: Some(sale),
                key,
                pin,
                step: "reversal",
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cardmesh_drivers::types::BcdDateTime;
    use cardmesh_model::{BusinessDay, CardTime};

    const HERE: TerminalId = TerminalId([0, 0, 0, 0, 2, 1]);

    fn sale(amount: i64) -> CardTxn {
        CardTxn {
            kind: TxnKind::Purchase,
            asn: CardAsn([1; 8]),
            site: "shop-1".parse().unwrap(),
            terminal: HERE,
            operator: None,
            business_day: BusinessDay {
                year: 2026,
                month: 11,
                day: 22,
            },
            card_time: CardTime([0x20, 0x26, 0x11, 0x22, 0x10, 0, 0]),
            card_counter: 3,
            term_seq: 9,
            amount: Money::from_fen(amount),
            balance_before: Money::from_fen(10_000),
            balance_after: Money::from_fen(10_000 - amount),
            mac1: [0; 4],
            mac2: [0; 4],
            tac: [0; 4],
            items: vec![],
            refers_to: None,
        }
    }

    fn credit(amount: i64) -> CardTxn {
        let mut t = sale(amount);
        t.kind = TxnKind::Refund;
        t
    }

    #[test]
    fn a_refund_never_exceeds_what_is_left_of_the_sale() {
        let s = sale(1_000);
        let left = refundable(&s, &[credit(300), credit(200)]).unwrap();
        assert_eq!(left, Money::from_fen(500));
        assert!(check_refund(&s, s.asn, left, Money::from_fen(500)).is_ok());
        assert_eq!(
            check_refund(&s, s.asn, left, Money::from_fen(501)),
            Err(CreditRefusal::OverRefund {
                asked: Money::from_fen(501),
                left
            })
        );
        assert_eq!(
            check_refund(&s, s.asn, left, Money::ZERO),
            Err(CreditRefusal::NothingToRefund)
        );
        assert!(matches!(
            check_refund(&s, CardAsn([2; 8]), left, Money::from_fen(1)),
            Err(CreditRefusal::OtherCard { .. })
        ));
        let mut load = sale(1_000);
        load.kind = TxnKind::Load;
        assert!(matches!(
            check_refund(&load, load.asn, left, Money::from_fen(1)),
            Err(CreditRefusal::NotASale(_))
        ));
    }

    #[test]
    fn only_the_last_sale_at_this_terminal_within_the_window_is_reversed() {
        let s = sale(1_000);
        let window = DEFAULT_REVERSAL_WINDOW_MS;
        assert!(check_reversal(&s, true, HERE, 1_000, 1_000 + window, window).is_ok());
        assert_eq!(
            check_reversal(&s, true, HERE, 1_000, 1_001 + window, window),
            Err(CreditRefusal::WindowPassed { minutes: 10 })
        );
        assert_eq!(
            check_reversal(&s, false, HERE, 1_000, 1_000, window),
            Err(CreditRefusal::NotLastTransaction)
        );
        assert!(matches!(
            check_reversal(&s, true, TerminalId([9; 6]), 1_000, 1_000, window),
            Err(CreditRefusal::OtherTerminal { .. })
        ));
    }

    #[test]
    fn the_card_log_proves_which_sale_was_last() {
        let s = sale(1_000);
        let rec = |counter, tx_type, amount| TxRecord {
            counter,
            amount,
            tx_type,
            terminal: CardTerminalId(HERE.0),
            datetime: BcdDateTime(s.card_time.0),
        };
        assert!(is_last_on_card(&s, &[rec(3, TxType::Purchase, 1_000)]));
        assert!(!is_last_on_card(
            &s,
            &[rec(0, TxType::Load, 500), rec(3, TxType::Purchase, 1_000)]
        ));
        assert!(!is_last_on_card(&s, &[rec(3, TxType::Purchase, 999)]));
        assert!(!is_last_on_card(&s, &[]));
    }
}

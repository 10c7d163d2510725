//! The card desk's end of a card's life: taking a card back (balance and deposit paid
//! out as cash, the chip emptied and blocked, the registry marking it returned),
//! replacing one (the old card blocked everywhere, its balance moved onto a new card,
//! the registry linking old to new), and the issuance history of a card or a day.
//!
//! A replacement is written so that a crash anywhere is finished by running it again:
//! the old card is blocked first, then the `Replace` entry records where its balance
//! goes, then the credit on the new card refers to that entry, then the registry. A
//! rerun finds what was already done and does only the rest; it never credits twice.

use super::credit::Credit;
use super::operators::Operation;
use super::terminal::{Pos, PosError, Receipt, card_asn, card_time, fen_u32};
use cardmesh_drivers::epurse::{EPurse, EpurseError, MaintenanceKey};
use cardmesh_drivers::reader::CardReader;
use cardmesh_drivers::sam::Sam;
use cardmesh_drivers::types::Pin;
use cardmesh_model::body::{
    BlacklistEvent, BlockReason, Body, CardChange, CardEvent, CardStatus, CardTxn, EntryRef,
    TxnKind,
};
use cardmesh_model::registry::CardRecord;
use cardmesh_model::{BusinessDay, CardAsn, Entry, Money};

/// A card taken back: its last ledger entry, and the cash to hand over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardReturn {
    pub receipt: Receipt,
    pub balance: Money,
    pub deposit: Money,
    pub cash: Money,
}

/// A card replaced: the entry moving the balance, and the credit on the new card
/// (`None` when there was nothing to move).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replacement {
    pub old: CardAsn,
    pub new: CardAsn,
    pub moved: Money,
    pub replace: EntryRef,
    pub credit: Option<Receipt>,
}

/// A card's issuance history: its registry record, the entry that recorded its primary
/// issue (personalization), and the desk operations on it.
#[derive(Clone, Debug)]
pub struct Issuance {
    pub record: Option<CardRecord>,
    pub personalized: Option<Entry>,
    pub entries: Vec<Entry>,
}

/// Whether a ledger transaction is part of a card's issuance history: sold, taken
/// back, replaced, or credited with a replaced card's balance.
pub fn is_issuance(t: &CardTxn) -> bool {
    match t.kind {
        TxnKind::Issue { .. } | TxnKind::Return { .. } | TxnKind::Replace { .. } => true,
        TxnKind::Load => t.refers_to.is_some(),
        _ => false,
    }
}

/// The deposit a card was sold with, from its history (oldest first): the latest sale,
/// or the deposit of the card it replaced.
pub fn deposit_in(history: &[Entry]) -> Option<Money> {
    history.iter().rev().find_map(|e| match &e.body {
        Body::Card(CardTxn {
            kind: TxnKind::Issue { deposit },
            ..
        }) => Some(*deposit),
        _ => None,
    })
}

impl Pos {
    /// The deposit paid for a card, following replacements back to the card sold.
    fn deposit_of(&self, asn: CardAsn) -> Result<Money, PosError> {
        let mut asn = asn;
        // A chain of replacements is short; the bound only stops a corrupt loop.
        for _ in 0..16 {
            let history = self.store.card_history(&asn)?;
            if let Some(d) = deposit_in(&history) {
                return Ok(d);
            }
            let replaced = history.iter().rev().find_map(|e| match e.body.card_txn() {
                Some(t) if t.kind == TxnKind::Load => t.refers_to,
                _ => None,
            });
            let Some(at) = replaced else {
                return Ok(Money::ZERO);
            };
            match self.store.entry(at)?.map(|e| e.body) {
                Some(Body::Card(t)) if matches!(t.kind, TxnKind::Replace { .. }) => asn = t.asn,
                _ => return Ok(Money::ZERO),
            }
        }
        Ok(Money::ZERO)
    }

    fn maintenance_key(&self) -> Result<MaintenanceKey, PosError> {
        self.keys
            .maintenance
            .clone()
            .map(MaintenanceKey::new)
            .ok_or(PosError::MissingKey("maintenance"))
    }

    /// Takes a card back: debits its whole balance (intent -> debit -> completion, a
    /// `Return` entry with the deposit), marks it returned in the registry and blocks
    /// its chip. The customer gets balance + deposit in cash.
    pub fn return_card<R: CardReader, S: Sam>(
        &self,
        purse: &mut EPurse<R>,
        sam: &mut S,
    ) -> Result<CardReturn, PosError> {
        let session = self.authorize(Operation::ReturnCard)?;
        let maintenance = self.maintenance_key()?;
        let (info, _) = self.present(purse, &session, "card return")?;
        let asn = card_asn(&info);
        self.active_record(asn)?;
        let deposit = self.deposit_of(asn)?;
        let balance = Money::from_fen(purse.balance()?.into());
        let when = card_time(self.now_ms(), self.utc_offset())?;
        let started = purse.purchase_begin(sam, fen_u32(balance)?, when)?;
        let mut txn = self.blank_txn(TxnKind::Return { deposit }, asn, &session.operator, when);
        txn.card_counter = started.counter();
        txn.term_seq = started.mac1().term_seq;
        txn.mac1 = started.mac1().mac1.0;
        txn.amount = balance;
        txn.balance_before = Money::from_fen(started.balance().into());
        txn.balance_after = txn
            .balance_before
            .checked_sub(balance)
            .map_err(|_| PosError::Amount(balance))?;
        let intent = self.store.append_local(Body::Intent(txn.clone()))?;
        self.stops.at("return:intent-logged");
        let r = self.finish_debit(purse, sam, started, &txn, intent.entry_ref(), "card return")?;
        txn.mac2 = r.mac2.0;
        txn.tac = r.tac.0;
        let entry = self.store.append_local(Body::Card(txn.clone()))?;
        self.stops.at("return:debited");
        // Returned in the registry before the chip is blocked: a card whose block
        // failed is still refused everywhere, and is never paid out twice.
        self.store.append_local(Body::CardRegistry(CardEvent {
            asn,
            change: CardChange::Status(CardStatus::Returned),
        }))?;
        purse.application_block(&maintenance)?;
        let cash = balance
            .checked_add(deposit)
            .map_err(|_| PosError::Amount(deposit))?;
        Ok(CardReturn {
            receipt: Receipt {
                entry: entry.entry_ref(),
                txn,
                flagged: None,
            },
            balance,
            deposit,
            cash,
        })
    }

    /// Replaces card `old` (in the reader, or lost) by the blank card `new`: blocks the
    /// old card everywhere (and its chip, if present), moves its balance (read from
    /// the chip if present, else HQ's shadow from the ledger) onto the new card, and
    /// links old to new in the registry. `pin` is the new card's PIN.
    pub fn replace_card<R: CardReader, N: CardReader>(
        &self,
        old: CardAsn,
        old_purse: Option<&mut EPurse<R>>,
        new_purse: &mut EPurse<N>,
        pin: &Pin,
    ) -> Result<Replacement, PosError> {
        let session = self.authorize(Operation::ReplaceCard)?;
        let key = self.load_key("card replacement")?;
        let record = self.store.card(&old)?;
        let status = record.as_ref().and_then(CardRecord::status);
        if let Some(s) = status
            && !matches!(s, CardStatus::Active)
        {
            return Err(PosError::CardNotActive {
                asn: old,
                status: format!("{s:?}").to_lowercase(),
            });
        }
        let history = self.store.card_history(&old)?;
        let started = history.iter().rev().find_map(|e| match &e.body {
            Body::Card(CardTxn {
                kind: TxnKind::Replace { new_card },
                amount,
                ..
            }) => Some((e.entry_ref(), *new_card, *amount)),
            _ => None,
        });
        let (new_info, _) = self.present(new_purse, &session, "card replacement")?;
        let new = card_asn(&new_info);
        if new == old {
            return Err(PosError::SameCard(old));
        }
        if let Some((_, to, _)) = started
            && to != new
        {
            return Err(PosError::ReplacedAlready { old, new: to });
        }
        if let Some(s) = self.store.card(&new)?.as_ref().and_then(CardRecord::status) {
            let fresh = matches!(s, CardStatus::Blank | CardStatus::Returned);
            // A rerun finds the new card active already.
            let rerun = started.is_some() && *s == CardStatus::Active;
            if !(fresh || rerun) {
                return Err(PosError::CardNotActive {
                    asn: new,
                    status: format!("{s:?} (not blank)").to_lowercase(),
                });
            }
        }
        let (replace, moved) = match started {
            Some((at, _, moved)) => (at, moved),
            None => {
                let moved = self.old_balance(old, old_purse)?;
                if !self.store.is_blocked(&old)? {
                    self.store
                        .append_local(Body::Blacklist(BlacklistEvent::Block {
                            asn: old,
                            reason: BlockReason::Replaced,
                            operator: Some(session.operator.clone()),
                        }))?;
                }
                self.stops.at("replace:blocked");
                let when = card_time(self.now_ms(), self.utc_offset())?;
                let mut txn = self.blank_txn(
                    TxnKind::Replace { new_card: new },
                    old,
                    &session.operator,
                    when,
                );
                txn.amount = moved;
                txn.balance_before = moved;
                let entry = self.store.append_local(Body::Card(txn))?;
                self.stops.at("replace:logged");
                (entry.entry_ref(), moved)
            }
        };
        let credited = self
            .store
            .card_history(&new)?
            .into_iter()
            .chain(self.store.pending_intents(&new)?)
            .any(|e| match &e.body {
                Body::Intent(t) => t.refers_to == Some(replace),
                body => body
                    .card_txn()
                    .is_some_and(|t| t.refers_to == Some(replace)),
            });
        let credit = if credited || moved == Money::ZERO {
            None
        } else {
            Some(self.credit(
                new_purse,
                Credit {
                    session: &session,
                    kind: TxnKind::Load,
                    asn: new,
                    amount: moved,
                    refers_to: Some(replace),
                    key,
                    pin,
                    step: "replace",
                },
            )?)
        };
        let mut changes = vec![(old, CardChange::Status(CardStatus::ReplacedBy(new)))];
        if let Some(r) = &record {
            if let Some(h) = &r.holder {
                changes.push((new, CardChange::Holder(h.value.clone())));
            }
            if let Some(c) = &r.class {
                changes.push((new, CardChange::Class(c.value.clone())));
            }
        }
        changes.push((new, CardChange::Status(CardStatus::Active)));
        for (asn, change) in changes {
            self.store
                .append_local(Body::CardRegistry(CardEvent { asn, change }))?;
        }
        Ok(Replacement {
            old,
            new,
            moved,
            replace,
            credit,
        })
    }

    /// The balance to move off a card being replaced: from its chip (whose e-purse is
    /// then blocked) if it is here and answers, else the ledger's shadow balance, which
    /// is only trusted when no transaction of the card is left unsettled.
    fn old_balance<R: CardReader>(
        &self,
        old: CardAsn,
        purse: Option<&mut EPurse<R>>,
    ) -> Result<Money, PosError> {
        if let Some(purse) = purse {
            match purse.select() {
                Ok(info) if card_asn(&info) != old => {
                    return Err(PosError::WrongCard {
                        expected: old,
                        presented: card_asn(&info),
                    });
                }
                Ok(_) => {
                    let maintenance = self.maintenance_key()?;
                    self.settle(purse, old)?;
                    let balance = Money::from_fen(purse.balance()?.into());
                    purse.application_block(&maintenance)?;
                    return Ok(balance);
                }
                Err(EpurseError::ApplicationBlocked { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !self.store.pending_intents(&old)?.is_empty() {
            return Err(PosError::UnsettledOldCard(old));
        }
        Ok(self
            .store
            .card_chain(&old)?
            .and_then(|c| c.shadow_balance())
            .unwrap_or(Money::ZERO))
    }

    /// A card's registry record and its issuance history in this node's ledger.
    pub fn issuance_history(&self, asn: CardAsn) -> Result<Issuance, PosError> {
        self.authorize(Operation::Query)?;
        let record = self.store.card(&asn)?;
        // The registry's issuer field is set only by the primary issue's entry.
        let personalized = match record.as_ref().and_then(|r| r.issuer.as_ref()) {
            Some(issuer) => self.store.entry(issuer.stamp.at)?,
            None => None,
        };
        Ok(Issuance {
            record,
            personalized,
            entries: self
                .store
                .card_history(&asn)?
                .into_iter()
                .filter(|e| e.body.card_txn().is_some_and(is_issuance))
                .collect(),
        })
    }

    /// The cards sold, taken back and replaced at this site on one business day.
    pub fn issuances_on(&self, day: BusinessDay) -> Result<Vec<Entry>, PosError> {
        self.authorize(Operation::Query)?;
        Ok(self
            .store
            .day_ledger(&self.site, day)?
            .into_iter()
            .filter(|e| e.body.card_txn().is_some_and(is_issuance))
            .collect())
    }
}

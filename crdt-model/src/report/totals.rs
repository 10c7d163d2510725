//! `Totals`: what a set of operations adds up to (counts and amounts per kind, deposits,
//! refusals by reason, products and volumes, alarms, the change in float). Totals form a
//! commutative monoid: the totals of a set are the merge of the totals of its members in
//! any order, which is what lets a store keep report rows current one entry at a time.

use crate::body::{AlarmKind, CardTxn, TxnKind};
use crate::ids::ProductId;
use crate::money::{Money, MoneyError, Quantity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The kinds of card operation a report counts, one per `TxnKind` without its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TxnClass {
    Purchase,
    Reversal,
    Load,
    Refund,
    Return,
    Issue,
    Replace,
    GreyLock,
    DebitForUnlock,
}

impl TxnClass {
    pub const ALL: [TxnClass; 9] = [
        TxnClass::Purchase,
        TxnClass::Reversal,
        TxnClass::Load,
        TxnClass::Refund,
        TxnClass::Return,
        TxnClass::Issue,
        TxnClass::Replace,
        TxnClass::GreyLock,
        TxnClass::DebitForUnlock,
    ];

    pub fn of(kind: &TxnKind) -> TxnClass {
        match kind {
            TxnKind::Purchase => TxnClass::Purchase,
            TxnKind::Load => TxnClass::Load,
            TxnKind::Refund => TxnClass::Refund,
            TxnKind::Reversal => TxnClass::Reversal,
            TxnKind::GreyLock => TxnClass::GreyLock,
            TxnKind::DebitForUnlock => TxnClass::DebitForUnlock,
            TxnKind::Issue { .. } => TxnClass::Issue,
            TxnKind::Return { .. } => TxnClass::Return,
            TxnKind::Replace { .. } => TxnClass::Replace,
        }
    }

    /// The column name in reports (snake case, stable for CSV and JSON readers).
    pub fn name(self) -> &'static str {
        match self {
            TxnClass::Purchase => "purchase",
            TxnClass::Reversal => "reversal",
            TxnClass::Load => "load",
            TxnClass::Refund => "refund",
            TxnClass::Return => "return",
            TxnClass::Issue => "issue",
            TxnClass::Replace => "replace",
            TxnClass::GreyLock => "grey_lock",
            TxnClass::DebitForUnlock => "debit_for_unlock",
        }
    }
}

/// How many, and for how much.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub amount: Money,
}

/// One product's sales: lines sold, quantity (litres for fuel grades) and amount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductTally {
    pub lines: u64,
    pub quantity: Quantity,
    pub amount: Money,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub kinds: BTreeMap<TxnClass, Tally>,
    /// Deposits taken when cards were sold.
    pub deposits_taken: Money,
    /// Deposits paid back when cards were returned.
    pub deposits_returned: Money,
    /// Chips personalized (primary issue), from the card registry.
    pub cards_personalized: u64,
    /// Operations refused at a terminal, by the reason shown to the operator.
    pub refused: BTreeMap<String, u64>,
    /// Basket lines by product.
    pub products: BTreeMap<ProductId, ProductTally>,
    /// Alarms and risk events by kind.
    pub alarms: BTreeMap<String, u64>,
    /// What these operations changed the sum of all card balances by (loads and refunds
    /// add, purchases take away; a replacement takes the balance off the old, blocked
    /// card and the load it refers to puts it on the new one, which together change
    /// nothing).
    pub float_delta: Money,
    /// Refunds given for this row's sales (goods returned), wherever they were given:
    /// a refund is paid onto the card at a card desk, but the merchant who made the
    /// sale bears it. Counted in the row of the sale's site and terminal, on the day
    /// of the refund. Last, so that a row of schema v4 is a prefix of its v5 encoding.
    pub refunded: Tally,
}

fn add(a: &mut Money, b: Money) -> Result<(), MoneyError> {
    *a = a.checked_add(b)?;
    Ok(())
}

/// A sum `Totals::fits` has checked.
fn sum(a: Money, b: Money) -> Money {
    Money::from_fen(a.fen() + b.fen())
}

/// A stable, snake-case name of an alarm kind for reports.
pub fn alarm_name(kind: &AlarmKind) -> &'static str {
    match kind {
        AlarmKind::BlacklistedCardPresented => "blacklisted_card_presented",
        AlarmKind::CloneSuspected => "clone_suspected",
        AlarmKind::BalanceBreak => "balance_break",
        AlarmKind::BadTac => "bad_tac",
        AlarmKind::RiskLimit => "risk_limit",
        AlarmKind::GreyLockStale => "grey_lock_stale",
        AlarmKind::TransactionUnsettled => "transaction_unsettled",
    }
}

impl Totals {
    /// What one card operation contributes.
    pub fn of_txn(t: &CardTxn) -> Result<Totals, MoneyError> {
        let mut out = Totals::default();
        let class = TxnClass::of(&t.kind);
        out.kinds.insert(
            class,
            Tally {
                count: 1,
                amount: t.amount,
            },
        );
        match &t.kind {
            TxnKind::Issue { deposit } => out.deposits_taken = *deposit,
            TxnKind::Return { deposit } => out.deposits_returned = *deposit,
            _ => {}
        }
        out.float_delta = t.balance_after.checked_sub(t.balance_before)?;
        for line in &t.items {
            let p = out.products.entry(line.product.clone()).or_default();
            p.lines += 1;
            p.quantity = Quantity::from_milli(
                p.quantity
                    .milli()
                    .checked_add(line.quantity.milli())
                    .ok_or(MoneyError::Overflow)?,
            );
            add(&mut p.amount, line.amount)?;
        }
        Ok(out)
    }

    /// One operation refused at a terminal.
    pub fn of_refusal(reason: &str) -> Totals {
        Totals {
            refused: BTreeMap::from([(reason.to_string(), 1)]),
            ..Totals::default()
        }
    }

    /// One chip personalized.
    pub fn of_personalization() -> Totals {
        Totals {
            cards_personalized: 1,
            ..Totals::default()
        }
    }

    /// One alarm raised.
    pub fn of_alarm(kind: &AlarmKind) -> Totals {
        Totals {
            alarms: BTreeMap::from([(alarm_name(kind).to_string(), 1)]),
            ..Totals::default()
        }
    }

    /// Adds `other` in. Commutative and associative; on an overflow it fails and `self`
    /// is left as it was.
    pub fn merge(&mut self, other: &Totals) -> Result<(), MoneyError> {
        self.fits(other)?;
        for (class, t) in &other.kinds {
            let mine = self.kinds.entry(*class).or_default();
            mine.count += t.count;
            mine.amount = sum(mine.amount, t.amount);
        }
        self.deposits_taken = sum(self.deposits_taken, other.deposits_taken);
        self.deposits_returned = sum(self.deposits_returned, other.deposits_returned);
        self.cards_personalized += other.cards_personalized;
        for (why, n) in &other.refused {
            *self.refused.entry(why.clone()).or_default() += n;
        }
        for (product, t) in &other.products {
            let mine = self.products.entry(product.clone()).or_default();
            mine.lines += t.lines;
            mine.quantity = Quantity::from_milli(mine.quantity.milli() + t.quantity.milli());
            mine.amount = sum(mine.amount, t.amount);
        }
        for (kind, n) in &other.alarms {
            *self.alarms.entry(kind.clone()).or_default() += n;
        }
        self.float_delta = sum(self.float_delta, other.float_delta);
        self.refunded.count += other.refunded.count;
        self.refunded.amount = sum(self.refunded.amount, other.refunded.amount);
        Ok(())
    }

    /// Whether `other` can be merged in without an overflow: every sum `merge` makes,
    /// checked, and nothing changed, so that a caller can check several rows before it
    /// changes any (and `merge` checks before it changes anything).
    pub fn fits(&self, other: &Totals) -> Result<(), MoneyError> {
        for (class, t) in &other.kinds {
            self.kind(*class).amount.checked_add(t.amount)?;
        }
        self.deposits_taken.checked_add(other.deposits_taken)?;
        self.deposits_returned
            .checked_add(other.deposits_returned)?;
        for (product, t) in &other.products {
            let mine = self.products.get(product).copied().unwrap_or_default();
            mine.quantity
                .milli()
                .checked_add(t.quantity.milli())
                .ok_or(MoneyError::Overflow)?;
            mine.amount.checked_add(t.amount)?;
        }
        self.float_delta.checked_add(other.float_delta)?;
        self.refunded.amount.checked_add(other.refunded.amount)?;
        Ok(())
    }

    pub fn kind(&self, class: TxnClass) -> Tally {
        self.kinds.get(&class).copied().unwrap_or_default()
    }

    /// Card operations completed.
    pub fn operations(&self) -> u64 {
        self.kinds.values().map(|t| t.count).sum()
    }

    pub fn refusals(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Refused operations per thousand attempted (completed + refused), rounded down;
    /// `None` when nothing was attempted.
    pub fn failure_permille(&self) -> Option<u64> {
        let attempted = self.operations() + self.refusals();
        (attempted > 0).then(|| self.refusals() * 1000 / attempted)
    }

    /// What the merchant is owed for goods and fuel sold on cards: purchases and
    /// debits for unlock, less reversals and less the refunds given for its sales.
    pub fn sales(&self) -> Result<Money, MoneyError> {
        self.kind(TxnClass::Purchase)
            .amount
            .checked_add(self.kind(TxnClass::DebitForUnlock).amount)?
            .checked_sub(self.kind(TxnClass::Reversal).amount)?
            .checked_sub(self.refunded.amount)
    }

    /// Operations that count towards a merchant's sales.
    pub fn sales_count(&self) -> u64 {
        self.kind(TxnClass::Purchase).count
            + self.kind(TxnClass::DebitForUnlock).count
            + self.kind(TxnClass::Reversal).count
    }
}

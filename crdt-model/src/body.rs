//! What a feed entry says: facts (card transactions, blacklist and card registry events,
//! operator actions, alarms, membership) and changes to the shared automerge documents.
//!
//! The codec is postcard, where an enum variant is its index: variants are only ever
//! appended, never reordered or removed, so every older entry still decodes.

use crate::auth::{Certificate, Revocation};
use crate::docs::DocName;
use crate::ids::NodeId;
use crate::ids::{
    BusinessDay, CardAsn, CardTime, MemberClass, OperatorId, ProductId, SiteId, TerminalId,
};
use crate::money::{Money, Quantity};
use serde::{Deserialize, Serialize};

/// Names one entry of one feed: the origin's id and its sequence number there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntryRef {
    pub origin: NodeId,
    pub seq: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    Card(CardTxn),
    Blacklist(BlacklistEvent),
    CardRegistry(CardEvent),
    Operator(OperatorAction),
    Alarm(Alarm),
    Enroll(Certificate),
    Revoke(Revocation),
    Doc(DocChange),
    /// A card transaction about to be sent to the card, logged durably first (MACs and
    /// TAC still zero); the `Card` entry with the same card counter completes it.
    Intent(CardTxn),
    /// A logged intent the card shows was never executed.
    IntentVoid(IntentVoid),
    /// HQ's record of one merchant's clearing run for one period: signed by being in
    /// HQ's feed, it is what makes a period impossible to settle twice.
    Settlement(crate::settlement::SettlementRecord),
    /// An intent of another site completed here, when its card was presented here:
    /// the origin's transaction with the card's MAC2 and TAC. One card counter is one
    /// ledger entry: if the origin (or a third site) completed it too, the folds keep
    /// one of them (see [`CardTxn::same_transaction`]).
    Completion(Completion),
}

impl Body {
    /// A short name for logs and refusal messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Card(t) => t.kind.name(),
            Body::Blacklist(BlacklistEvent::Block { .. }) => "blacklist block",
            Body::Blacklist(BlacklistEvent::Clear { .. }) => "blacklist clear",
            Body::CardRegistry(_) => "card registry change",
            Body::Operator(_) => "operator action",
            Body::Alarm(_) => "alarm",
            Body::Enroll(_) => "enrollment",
            Body::Revoke(_) => "revocation",
            Body::Doc(_) => "document change",
            Body::Intent(_) => "transaction intent",
            Body::IntentVoid(_) => "intent void",
            Body::Settlement(_) => "settlement",
            Body::Completion(_) => "completion",
        }
    }

    /// The card transaction this entry puts in the ledger, if any.
    pub fn card_txn(&self) -> Option<&CardTxn> {
        match self {
            Body::Card(t) | Body::Completion(Completion { txn: t, .. }) => Some(t),
            _ => None,
        }
    }
}

/// See [`Body::Completion`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    pub intent: EntryRef,
    pub txn: CardTxn,
}

/// One operation a card took part in, as the terminal logged it: enough for HQ to verify
/// the TAC, chain the card's balance and settle with the merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTxn {
    pub kind: TxnKind,
    pub asn: CardAsn,
    pub site: SiteId,
    pub terminal: TerminalId,
    pub operator: Option<OperatorId>,
    pub business_day: BusinessDay,
    /// The date-time bytes sent to the card (they are inside MACs and TAC).
    pub card_time: CardTime,
    /// The card's counter for this operation: the offline counter for purchases and grey
    /// operations, the online counter for loads.
    pub card_counter: u16,
    /// The terminal (PSAM) sequence number.
    pub term_seq: u32,
    pub amount: Money,
    pub balance_before: Money,
    pub balance_after: Money,
    pub mac1: [u8; 4],
    pub mac2: [u8; 4],
    pub tac: [u8; 4],
    pub items: Vec<LineItem>,
    /// The transaction this one refunds, reverses or completes (a grey lock).
    pub refers_to: Option<EntryRef>,
}

impl CardTxn {
    /// Whether two entries log the same card transaction: equal but for MAC2 and TAC,
    /// which a completion from the card's log (rather than its proof) lacks. Two sites
    /// completing one intent write the same transaction; a clone writes another one.
    pub fn same_transaction(&self, other: &CardTxn) -> bool {
        let strip = |t: &CardTxn| CardTxn {
            mac2: [0; 4],
            tac: [0; 4],
            ..t.clone()
        };
        strip(self) == strip(other)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnKind {
    Purchase,
    Load,
    Refund,
    Reversal,
    GreyLock,
    DebitForUnlock,
    /// Secondary issue: the card is sold to a customer, with a deposit.
    Issue {
        deposit: Money,
    },
    /// The card comes back: balance and deposit are paid out, and the card is reset by
    /// a debit of its whole balance (which consumes an offline counter).
    Return {
        deposit: Money,
    },
    /// The balance moves to a new card; the old one is blocked. Logged on the old card
    /// (amount = the balance moved, after = 0); the credit on the new card is a `Load`
    /// that refers to it.
    Replace {
        new_card: CardAsn,
    },
}

/// Which of the card's counters a transaction consumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum CounterSpace {
    /// Loads and credits: the online counter.
    Online,
    /// Purchases and grey operations: the offline counter.
    Offline,
}

impl TxnKind {
    /// The card counter this kind consumes; `None` for desk operations that send no
    /// money command to the card.
    pub fn counter_space(&self) -> Option<CounterSpace> {
        match self {
            TxnKind::Load | TxnKind::Refund | TxnKind::Reversal => Some(CounterSpace::Online),
            TxnKind::Purchase
            | TxnKind::GreyLock
            | TxnKind::DebitForUnlock
            | TxnKind::Return { .. } => Some(CounterSpace::Offline),
            TxnKind::Issue { .. } | TxnKind::Replace { .. } => None,
        }
    }

    /// Whether the holder spends with it: what the per-card daily limits count.
    pub fn is_spending(&self) -> bool {
        matches!(self, TxnKind::Purchase | TxnKind::DebitForUnlock)
    }

    pub fn name(&self) -> &'static str {
        match self {
            TxnKind::Purchase => "purchase",
            TxnKind::Load => "load",
            TxnKind::Refund => "refund",
            TxnKind::Reversal => "reversal",
            TxnKind::GreyLock => "grey lock",
            TxnKind::DebitForUnlock => "debit for unlock",
            TxnKind::Issue { .. } => "issue",
            TxnKind::Return { .. } => "return",
            TxnKind::Replace { .. } => "replace",
        }
    }
}

/// The resolution of an intent the card never executed: its counter was not consumed,
/// or was consumed by another transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentVoid {
    pub intent: EntryRef,
    pub asn: CardAsn,
    pub reason: String,
}

/// One line of a basket, priced when it was sold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub product: ProductId,
    pub quantity: Quantity,
    pub unit_price: Money,
    /// Percent of the list amount paid (100 = no discount).
    pub paid_percent: u8,
    pub amount: Money,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlacklistEvent {
    Block {
        asn: CardAsn,
        reason: BlockReason,
        operator: Option<OperatorId>,
    },
    /// Lifts exactly the blocks it names: a block it has not seen keeps the card blocked.
    Clear {
        asn: CardAsn,
        clears: Vec<EntryRef>,
        note: String,
        operator: Option<OperatorId>,
    },
}

impl BlacklistEvent {
    pub fn asn(&self) -> CardAsn {
        match self {
            BlacklistEvent::Block { asn, .. } | BlacklistEvent::Clear { asn, .. } => *asn,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockReason {
    Lost,
    Stolen,
    Replaced,
    Fraud,
    Other(String),
}

/// A change to one card's registry record; each field is last-writer-wins by HLC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardEvent {
    pub asn: CardAsn,
    pub change: CardChange,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardChange {
    /// Primary issue: the chip was personalized.
    Personalized {
        class: MemberClass,
        expiry: BusinessDay,
        issuer: SiteId,
    },
    /// Named cards carry a holder; `None` makes the card anonymous.
    Holder(Option<Holder>),
    Status(CardStatus),
    Class(MemberClass),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub name: String,
    pub id_number: String,
    pub phone: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CardStatus {
    /// Personalized, not yet sold.
    Blank,
    Active,
    Returned,
    ReplacedBy(CardAsn),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAction {
    pub operator: OperatorId,
    pub terminal: Option<TerminalId>,
    pub action: OperatorActionKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorActionKind {
    Login {
        by_card: bool,
    },
    Logout,
    /// A manager's authorization of something a cashier may not do alone.
    Approved {
        what: String,
    },
    /// An operation refused, with the reason shown to the operator.
    Refused {
        what: String,
        reason: String,
    },
    /// A receipt printed again from the ledger entry it was first printed from.
    Reprinted {
        entry: EntryRef,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    pub kind: AlarmKind,
    pub asn: Option<CardAsn>,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlarmKind {
    BlacklistedCardPresented,
    CloneSuspected,
    BalanceBreak,
    BadTac,
    RiskLimit,
    GreyLockStale,
    /// A logged intent the card could not settle with a proof: completed from the
    /// card's log without its TAC, or left pending because the log moved past it.
    TransactionUnsettled,
}

/// One automerge change to a named shared document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocChange {
    pub doc: DocName,
    pub change: Vec<u8>,
}
